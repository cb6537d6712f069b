"""``wait_at_most``: waits for what it is given, gives up quietly at its limit, and never swallows a
cancellation, even one that arrives as the awaited thing completes (which ``asyncio.wait_for`` on Python
3.11 does swallow, and a loop waiting that way would then never stop)."""

from __future__ import annotations

import asyncio

import pytest

from memory.aio import wait_at_most


async def test_it_returns_once_the_awaited_thing_is_done() -> None:
    done = asyncio.Event()
    waiter = asyncio.create_task(wait_at_most(done.wait(), 3600))
    done.set()
    await waiter
    assert waiter.done() and not waiter.cancelled()


async def test_it_gives_up_quietly_at_its_limit() -> None:
    never = asyncio.Event()
    await wait_at_most(never.wait(), 0)  # no TimeoutError
    assert not never.is_set()


async def test_an_error_of_the_awaited_thing_is_raised() -> None:
    async def broken() -> None:
        raise ValueError("the loop's work failed")

    with pytest.raises(ValueError, match="the loop's work failed"):
        await wait_at_most(broken(), 3600)


async def test_a_cancellation_that_arrives_as_the_wait_ends_is_not_swallowed() -> None:
    started = asyncio.Event()
    finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def work() -> None:
        started.set()
        await finished

    waiter = asyncio.create_task(wait_at_most(work(), 3600))
    await started.wait()
    finished.set_result(None)
    waiter.cancel()  # in the same step: the work completes as the stop arrives
    with pytest.raises(asyncio.CancelledError):
        await waiter
