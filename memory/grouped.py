"""Calls to SQLite's thread, grouped: calls made while a group is on the thread go there together next.

Each call to an aiosqlite connection is a round trip to its thread: a wake-up on both sides and a
hand-over of the GIL each way. Under load (many conversations at once) those round trips, not the
statements, are what costs. :class:`Grouped` sends the calls that queued up while the thread was
busy in one round trip; each caller still gets its own result or exception, and returns only once
its own call is done. Alone (one conversation) a call goes at once, as before.

Two ways to run a group: :func:`in_one_transaction` (writes: one transaction, a savepoint per call,
one commit) and :func:`each` (reads: one after the other).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
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
    """Run ``works`` in one transaction (``BEGIN IMMEDIATE``), each in its own savepoint: one that raises
    is rolled back alone and the others are committed. When the transaction itself fails (the commit,
    or an error after which SQLite rolled everything back: disk full, I/O error) nothing is committed
    and the error is raised for all of them."""
    outcomes: list[Outcome] = []
    conn.execute("BEGIN IMMEDIATE")
    try:
        if len(works) == 1:
            outcomes.append(_alone(conn, works[0]))
        else:
            for work in works:
                conn.execute("SAVEPOINT grouped")
                try:
                    outcomes.append(Outcome(True, work(conn)))
                except Exception as exc:
                    if not conn.in_transaction:
                        raise
                    conn.execute("ROLLBACK TO grouped")
                    outcomes.append(Outcome(False, exc))
                conn.execute("RELEASE grouped")
        if conn.in_transaction:
            conn.commit()
    except BaseException:
        if conn.in_transaction:
            conn.rollback()
        raise
    return outcomes


def _alone(conn: sqlite3.Connection, work: Work) -> Outcome:
    try:
        return Outcome(True, work(conn))
    except Exception as exc:
        if conn.in_transaction:
            conn.rollback()
        return Outcome(False, exc)


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
