"""Small asyncio helpers shared by the background loops."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable


async def wait_at_most(awaitable: Awaitable[object], seconds: float) -> None:
    """Wait for ``awaitable``, or give up quietly after ``seconds``.

    ``asyncio.timeout``, not ``wait_for``: on Python 3.11 ``wait_for`` swallows a cancellation that
    arrives as the awaited thing completes, and a loop waiting this way then never stopped.
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await awaitable
