"""Calls to SQLite's thread, grouped: calls made while a group is on the thread go there together next.

Each call to an aiosqlite connection is a round trip to its thread: a wake-up on both sides and a
hand-over of the GIL each way. Under load (many conversations at once) those round trips, not the
statements, are what costs. :class:`Grouped` sends the calls that queued up while the thread was
busy in one round trip; each caller still gets its own result or exception, and returns only once
its own call is done. Alone (one conversation) a call goes at once, as before.

Two ways to run a group: :func:`in_one_transaction` (writes: one transaction, a savepoint per call,
one commit; each call still succeeds or fails on its own) and :func:`each` (reads: one after the
other).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import aiosqlite

T = TypeVar("T")
Work = Callable[[sqlite3.Connection], Any]


@dataclass(frozen=True)
class Outcome:
    """How one call of a group ended."""

    ok: bool
    value: Any
    """Its result, or the exception it raised."""


RunGroup = Callable[[sqlite3.Connection, Sequence[Work]], list[Outcome]]


def each(conn: sqlite3.Connection, works: Sequence[Work]) -> list[Outcome]:
    """Run ``works`` one after the other; one that raises does not stop the others."""
    outcomes = []
    for work in works:
        try:
            outcomes.append(Outcome(True, work(conn)))
        except Exception as exc:
            outcomes.append(Outcome(False, exc))
    return outcomes


def in_one_transaction(conn: sqlite3.Connection, works: Sequence[Work]) -> list[Outcome]:
    """Run ``works`` in one transaction (``BEGIN IMMEDIATE``), each in its own savepoint, with one commit.

    Each work's fate is its own: one that raises is rolled back alone and the others are committed.
    If a work's error made SQLite roll the whole transaction back (a full disk can), that work fails
    and the others run again in a new transaction; if the commit itself fails, each work is tried
    again in a transaction of its own. (Works are plain writes on this connection: running one again
    after a rollback is safe.) If the transaction cannot even begin (the database stays locked past
    the busy timeout), that error is raised for all of them.
    """
    outcomes: list[Outcome | None] = [None] * len(works)
    todo = list(range(len(works)))
    while todo:
        spoiler = _together(conn, works, todo, outcomes)
        if spoiler is None:
            break
        todo = [i for i in todo if i != spoiler]
    done = [outcome for outcome in outcomes if outcome is not None]
    assert len(done) == len(works)  # raised on the thread, every caller would hear of it
    return done


def _together(
    conn: sqlite3.Connection, works: Sequence[Work], todo: list[int], outcomes: list[Outcome | None]
) -> int | None:
    """Run ``works[i]`` for ``i`` in ``todo`` in one transaction and set their outcomes; or return the
    index of the work whose error rolled the whole transaction back (its outcome set, the others not)."""
    if len(todo) == 1:
        outcomes[todo[0]] = _alone(conn, works[todo[0]])
        return None
    ran: dict[int, Outcome] = {}
    with _rolled_back_on_error(conn):
        conn.execute("BEGIN IMMEDIATE")
        for i in todo:
            conn.execute("SAVEPOINT grouped")
            try:
                ran[i] = Outcome(True, works[i](conn))
            except Exception as exc:
                if not conn.in_transaction:
                    outcomes[i] = Outcome(False, exc)
                    return i
                conn.execute("ROLLBACK TO grouped")
                ran[i] = Outcome(False, exc)
            conn.execute("RELEASE grouped")
    try:
        with _rolled_back_on_error(conn):
            conn.commit()
    except sqlite3.Error:
        for i in todo:  # which work the commit failed on is unknown: each on its own
            outcomes[i] = _alone(conn, works[i])
        return None
    for i, outcome in ran.items():
        outcomes[i] = outcome
    return None


def _alone(conn: sqlite3.Connection, work: Work) -> Outcome:
    """``work`` in a transaction of its own."""
    try:
        with _rolled_back_on_error(conn):
            conn.execute("BEGIN IMMEDIATE")
            value = work(conn)
            conn.commit()
    except Exception as exc:
        return Outcome(False, exc)
    return Outcome(True, value)


@contextmanager
def _rolled_back_on_error(conn: sqlite3.Connection) -> Iterator[None]:
    # A failed write must not leave its transaction open: every later write would fail behind it.
    try:
        yield
    except BaseException:
        if conn.in_transaction:
            conn.rollback()
        raise


class Grouped:
    """Calls to one connection's thread, sent in groups (see the module's docstring)."""

    def __init__(
        self, conn: aiosqlite.Connection, run_group: RunGroup, lock: asyncio.Lock | None = None, name: str = "sqlite"
    ) -> None:
        """``run_group`` runs a group on the thread; ``lock`` (if given) is held while a group is there,
        so that other users of the connection (a multi-statement transaction) do not interleave."""
        self._conn = conn
        self._run_group = run_group
        self._lock = lock or asyncio.Lock()
        self._name = name
        self._queued: list[tuple[Work, asyncio.Future[Any]]] = []
        self._sender: asyncio.Task[None] | None = None

    async def run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` with the plain ``sqlite3`` connection on its thread; its result or exception."""
        done: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queued.append((work, done))
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send_queued(), name=f"{self._name}-group")
        return await done

    def _as_one(self, works: list[Work]) -> Work:
        return lambda conn: self._run_group(conn, works)

    async def _send_queued(self) -> None:
        while self._queued:
            async with self._lock:
                # Calls whose callers gave up before their group left are not run.
                group = [(work, done) for work, done in self._queued if not done.cancelled()]
                self._queued = []
                if not group:
                    continue
                try:
                    outcomes = await on_thread(self._conn, self._as_one([work for work, _ in group]))
                except Exception as exc:
                    outcomes = [Outcome(False, exc)] * len(group)
                except BaseException:
                    for _, done in group:
                        done.cancel()
                    raise
            for (_, done), outcome in zip(group, outcomes, strict=True):
                if done.done():
                    continue  # its caller gave up while the group was on the thread (what ran stands)
                if outcome.ok:
                    done.set_result(outcome.value)
                else:
                    done.set_exception(outcome.value)


async def on_thread(conn: aiosqlite.Connection, work: Callable[[sqlite3.Connection], T]) -> T:
    """Run ``work`` with the plain ``sqlite3`` connection on aiosqlite's thread, in order with every
    other call on ``conn``: several statements in one round trip.

    aiosqlite (pinned) offers no public call for that; its ``_execute`` is the call every public
    method is built on.
    """

    def run() -> T:
        return work(conn._conn)

    result: T = await conn._execute(run)
    return result
