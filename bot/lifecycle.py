"""How ``coo run`` stops: signals, one bounded grace for work in flight, and a hard deadline.

A stop (SIGINT or SIGTERM) works in every state:

- while starting (a platform unreachable, the heavy parts loading), the start is given up at once:
  what was opened is closed, and what was stored but not answered stays unfinished for the next start;
  once handling has begun (late in the start: another platform still connecting), replies already under
  way get the grace below, as when running;
- once running, the channels stop receiving, and replies, the outbox's execution and task attempts in
  flight get the grace (:data:`STOP_GRACE_S`, or less with ``COO_STOP_GRACE_S``) to finish, sending
  through channels that are still open; what has not finished by then is cancelled and left as a crash
  leaves it (I3, I7): the next start resumes it;
- a second signal skips what is left of the grace, and :data:`STOP_DEADLINE_S` after the first one the
  process exits whatever it is doing (like ``kill -9``, which the stores are built to survive).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

if TYPE_CHECKING:
    from bot.dispatcher import Dispatcher

log = logging.getLogger(__name__)

T = TypeVar("T")

STOP_GRACE_S = 7.0
"""How long, after a stop is asked for, work in flight may take to finish (a reply, an email being sent)."""
STOP_DEADLINE_S = 9.5
"""After the first signal the process is gone within this, whatever it is doing (a unit's TimeoutStopSec
and Docker's stop grace must be longer)."""
EXIT_OVERRUN = 1


@runtime_checkable
class Receiving(Protocol):
    """A channel that can stop taking updates while it can still send (replies in flight finish)."""

    async def stop_receiving(self) -> None:
        """Stop taking new updates; sending keeps working until ``stop()``."""


class StopSignals:
    """SIGINT and SIGTERM: the first asks for a graceful stop and arms the deadline; the second hurries it."""

    def __init__(
        self,
        grace_s: float = STOP_GRACE_S,
        deadline_s: float = STOP_DEADLINE_S,
        on_overrun: Callable[[], None] | None = None,
    ) -> None:
        """``grace_s``: what the stop's log line promises work in flight (the :class:`Grace` it is given)."""
        self.requested = asyncio.Event()
        self.hurry = asyncio.Event()
        self._grace_s = grace_s
        self._deadline_s = deadline_s
        self._on_overrun = on_overrun or _exit_now
        self._watchdog: threading.Timer | None = None

    def install(self) -> None:
        """Handle SIGINT and SIGTERM on the running loop (instead of KeyboardInterrupt and death)."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._received, sig)

    def _received(self, sig: int) -> None:
        name = signal.Signals(sig).name
        if self.requested.is_set():
            log.warning("%s again: stopping without waiting for work in flight", name)
            self.hurry.set()
            return
        log.info("%s: stopping (work in flight gets up to %g s)", name, self._grace_s)
        self.requested.set()
        # A thread, not the loop: it fires even when the loop is stuck in something that never yields.
        self._watchdog = threading.Timer(self._deadline_s, self._on_overrun)
        self._watchdog.daemon = True
        self._watchdog.start()

    def disarm(self) -> None:
        """The stop finished in time: no hard exit."""
        if self._watchdog is not None:
            self._watchdog.cancel()


def _exit_now() -> None:
    log.error("not stopped within %.1f s of the signal; exiting now (the next start resumes what was left)",
              STOP_DEADLINE_S)  # fmt: skip
    logging.shutdown()
    os._exit(EXIT_OVERRUN)


@dataclass
class Grace:
    """The one grace period a stop gives work in flight; it starts when the stop begins.

    ``hurry`` (a second signal) ends it early.
    """

    seconds: float = STOP_GRACE_S
    hurry: asyncio.Event | None = None
    _ends_at: float | None = field(default=None, init=False)

    def begin(self) -> None:
        """Start counting (once)."""
        if self._ends_at is None:
            self._ends_at = time.monotonic() + self.seconds

    def remaining(self) -> float:
        """Seconds left of the grace (the whole grace before :meth:`begin`)."""
        if self.hurry is not None and self.hurry.is_set():
            return 0.0
        if self._ends_at is None:
            return self.seconds
        return max(0.0, self._ends_at - time.monotonic())

    async def wait(self, tasks: Iterable[asyncio.Future[Any]]) -> None:
        """Until ``tasks`` are done, the grace ends, or a hurry: whichever comes first."""
        pending = {t for t in tasks if not t.done()}
        if not pending or self.remaining() <= 0:
            return
        hurry = asyncio.ensure_future(self.hurry.wait()) if self.hurry is not None else None
        try:
            waiting = pending | ({hurry} if hurry is not None else set())
            while pending and (hurry is None or not hurry.done()) and self.remaining() > 0:
                await asyncio.wait(waiting, timeout=self.remaining(), return_when=asyncio.FIRST_COMPLETED)
                pending = {t for t in pending if not t.done()}
                waiting = pending | ({hurry} if hurry is not None else set())
        finally:
            if hurry is not None:
                hurry.cancel()


@dataclass
class _Loop:
    task: asyncio.Task[Any]
    stop: Callable[[], None] | None


class Background:
    """The loops that run until shutdown (outbox, scheduler, task runner, ...)."""

    def __init__(self) -> None:
        self._loops: list[_Loop] = []

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str, stop: Callable[[], None] | None = None) -> None:
        """Run ``coro`` until shutdown; ``stop`` asks it to finish its work in hand and return.

        A loop that dies is logged at once (it would otherwise fail silently until shutdown).
        """
        task = asyncio.create_task(coro, name=name)
        task.add_done_callback(_log_death)
        self._loops.append(_Loop(task, stop))

    def ask_stop(self) -> None:
        """Ask every loop that can to finish what it holds; the others are cancelled at :meth:`cancel`."""
        for loop in self._loops:
            if loop.stop is not None:
                loop.stop()

    def finishing(self) -> list[asyncio.Task[Any]]:
        """The loops asked to finish (worth waiting for)."""
        return [loop.task for loop in self._loops if loop.stop is not None]

    async def cancel(self) -> None:
        """Cancel what still runs and wait for it."""
        tasks = [loop.task for loop in self._loops]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _log_death(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.error("background task %s stopped", task.get_name(), exc_info=exc)


async def stop_receiving(channels: Iterable[object], grace: Grace) -> None:
    """Stop every channel's intake (bounded: a stuck webhook request must not hold the stop)."""
    for channel in channels:
        if isinstance(channel, Receiving):
            try:
                async with asyncio.timeout(max(grace.remaining(), 1.0)):
                    await channel.stop_receiving()
            except TimeoutError:
                log.error("channel %s did not stop receiving in time; going on", getattr(channel, "name", channel))


async def wind_down(channels: Sequence[object], dispatcher: Dispatcher, background: Background, grace: Grace) -> None:
    """A stop's first step: stop taking updates, let what is in flight finish within the grace, cancel the rest.

    A turn cancelled here leaves its update unfinished (I3): the next start answers it.
    """
    grace.begin()
    await stop_receiving(channels, grace)
    background.ask_stop()
    await grace.wait([*dispatcher.in_flight(), *background.finishing()])
    left = len(dispatcher.in_flight())
    if left:
        log.warning("stopping: %d update(s) not answered yet; the next start answers them", left)
    await dispatcher.drain(0.0)
    await background.cancel()


async def close_channel(channel: Any, timeout_s: float = 5.0) -> None:
    """Stop a channel; one that does not stop within ``timeout_s`` is left behind (logged)."""
    try:
        async with asyncio.timeout(timeout_s):
            await channel.stop()
    except TimeoutError:
        log.error("channel %s did not stop within %.0fs; leaving it", channel.name, timeout_s)


async def in_daemon_thread(fn: Callable[[], T]) -> T:
    """``fn()`` in a daemon thread: unlike ``asyncio.to_thread``, a stop does not wait for it to end
    (the loop's executor is joined at exit; a start given up must not wait for imports to finish)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: T | None, error: BaseException | None) -> None:
        if future.done():
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)  # type: ignore[arg-type]

    def target() -> None:
        try:
            result, error = fn(), None
        except BaseException as exc:  # handed to the awaiting task, which re-raises it
            result, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(settle, result, error)

    threading.Thread(target=target, name=getattr(fn, "__name__", "worker"), daemon=True).start()
    return await future
