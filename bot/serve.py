"""``coo run``: open the runtime, print the banner, and run until a signal or the end of console input."""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path
from typing import TextIO, cast

from bot.channels.console import HeldOutput
from bot.lifecycle import Grace, StopSignals
from bot.runtime import open_runtime
from bot.settings import Settings
from bot.status import banner, chat_platforms

log = logging.getLogger(__name__)


NOTHING_TO_TALK_THROUGH = (
    "coo: input ended and no chat platform is configured, so nobody can reach solo-coo: set "
    "COO_TELEGRAM__TOKEN or COO_SLACK__BOT_TOKEN (`coo onboard` writes them) and restart. "
    "Staying up until stopped; `coo chat` ends with its input."
)


async def serve(settings: Settings, *, console: bool | None = None, log_file: Path | None = None) -> None:
    """Run until Ctrl-C, SIGTERM or end of console input.

    A signal during the start gives the start up at once (see :mod:`bot.lifecycle`). The console's
    output is held until the banner is printed, so the banner comes before the first prompt.
    """
    signals = StopSignals(grace_s=settings.stop_grace_s)
    signals.install()
    opened = asyncio.Event()
    run = asyncio.create_task(_serve(settings, console, log_file, signals, opened), name="coo-run")
    asked = asyncio.create_task(signals.requested.wait())
    try:
        await asyncio.wait({run, asked}, return_when=asyncio.FIRST_COMPLETED)
        if not run.done() and not opened.is_set():
            log.info("stopping during the start")
            run.cancel()
        try:
            await run
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if not run.cancelled() or (current is not None and current.cancelling()):
                raise
    finally:
        asked.cancel()
        signals.disarm()


async def _serve(
    settings: Settings, console: bool | None, log_file: Path | None, signals: StopSignals, opened: asyncio.Event
) -> None:
    held = HeldOutput(sys.stdout)
    grace = Grace(seconds=settings.stop_grace_s, hurry=signals.hurry)
    async with open_runtime(settings, console=console, console_output=cast(TextIO, held), grace=grace) as runtime:
        opened.set()
        print(banner(runtime, log_file), file=sys.stderr, flush=True)
        held.release()
        waiters = [asyncio.create_task(signals.requested.wait())]
        if runtime.console is not None:
            waiters.append(asyncio.create_task(runtime.console.closed.wait()))
        _, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        if not signals.requested.is_set() and console is None and not chat_platforms(runtime) and not _a_terminal():
            # Under Docker or systemd stdin is empty: ending here would only be restarted, again and again.
            print(NOTHING_TO_TALK_THROUGH, file=sys.stderr, flush=True)
            await signals.requested.wait()
        log.info("stopping")


def _a_terminal() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except ValueError:  # stdin closed
        return False
