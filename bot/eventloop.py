"""The event loop every ``coo`` command runs on: uvloop where it is installed, else asyncio's own.

uvloop's wake-ups (a reply from SQLite's thread, a socket becoming readable) cost a fraction of the
default loop's; under a burst of chats the loop's own machinery was about half of each turn's CPU.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's loop constructor, or None (asyncio's default) where uvloop is not available (Windows)."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to completion on a new loop, like ``asyncio.run``."""
    with asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)
