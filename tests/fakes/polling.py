"""Polling for state nothing signals (the event log, a file, a fake's counters)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable


async def eventually(check: Callable[[], object], timeout: float = 5.0, what: str = "a condition") -> None:  # noqa: ASYNC109
    """Poll ``check`` until it is true; AssertionError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def eventually_async(
    check: Callable[[], Awaitable[object]], timeout: float = 5.0, what: str = "a condition"
) -> None:  # noqa: ASYNC109
    """Like :func:`eventually`, for a check that has to await (a database read)."""
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)
