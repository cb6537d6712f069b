"""The stop's parts on their own: the first signal asks, the second hurries, the deadline ends it."""

from __future__ import annotations

import asyncio
import os
import signal
import threading

from bot.lifecycle import Grace, StopSignals


async def test_a_second_signal_hurries_and_the_deadline_fires_once() -> None:
    overrun = threading.Event()
    signals = StopSignals(deadline_s=0.2, on_overrun=overrun.set)
    signals.install()
    try:
        await hurried(signals, overrun)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().remove_signal_handler(sig)


async def hurried(signals: StopSignals, overrun: threading.Event) -> None:
    grace = Grace(seconds=60, hurry=signals.hurry)
    never = asyncio.get_running_loop().create_future()  # work in flight that never finishes
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(signals.requested.wait(), 5)
    assert not signals.hurry.is_set()
    grace.begin()
    waiting = asyncio.create_task(grace.wait([never]))
    os.kill(os.getpid(), signal.SIGINT)  # the second signal: stop waiting for work in flight
    await asyncio.wait_for(waiting, 5)
    assert grace.remaining() == 0 and not never.done()
    assert await asyncio.to_thread(overrun.wait, 5)  # nothing stopped the process: the deadline fires
    never.cancel()


async def test_the_grace_ends_when_the_work_does() -> None:
    grace = Grace(seconds=60)
    grace.begin()
    work = asyncio.create_task(asyncio.sleep(0))
    await asyncio.wait_for(grace.wait([work]), 5)
    assert work.done() and grace.remaining() > 0
