"""Grouped calls to SQLite's thread: calls that queue up while the thread is busy go together, and each
still ends on its own (its result, its exception, its rollback)."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

from memory.db import connect_sqlite
from memory.grouped import Grouped, each, in_one_transaction


@pytest.fixture
async def conns(tmp_path: Path) -> AsyncIterator[tuple[aiosqlite.Connection, aiosqlite.Connection]]:
    """A writer for the Grouped under test and a second connection that watches the file."""
    path = tmp_path / "g.sqlite"
    conn = await connect_sqlite(path, 5000)
    await conn.executescript(
        "PRAGMA foreign_keys=ON;"
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL);"
        "CREATE TABLE parent (id INTEGER PRIMARY KEY);"
        "CREATE TABLE child (id INTEGER PRIMARY KEY, "
        "parent INTEGER REFERENCES parent(id) DEFERRABLE INITIALLY DEFERRED);"
    )
    await conn.commit()
    watcher = await connect_sqlite(path, 5000)
    try:
        yield conn, watcher
    finally:
        await watcher.close()
        await conn.close()


def insert(value: str, then_raise: bool = False) -> Callable[[sqlite3.Connection], int]:
    def work(conn: sqlite3.Connection) -> int:
        row = conn.execute("INSERT INTO t (v) VALUES (?)", (value,)).lastrowid
        if then_raise:
            raise ValueError(f"{value} failed after writing")
        assert row is not None
        return row

    return work


async def values(watcher: aiosqlite.Connection) -> list[str]:
    async with watcher.execute("SELECT v FROM t ORDER BY id") as cur:
        return [r[0] for r in await cur.fetchall()]


async def commits_seen(watcher: aiosqlite.Connection) -> int:
    """``PRAGMA data_version`` of another connection: it moves once per commit made elsewhere."""
    async with watcher.execute("PRAGMA data_version") as cur:
        row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def queued_behind(lock: asyncio.Lock, calls: list[Any]) -> list[asyncio.Task[Any]]:
    """Start ``calls`` while ``lock`` (the Grouped's) is held, so that they all wait for one group."""
    tasks = [asyncio.ensure_future(call) for call in calls]
    await asyncio.sleep(0)  # each task runs up to its first await: it is queued
    return tasks


async def test_a_lone_write_is_committed_when_it_returns(conns: tuple[aiosqlite.Connection, ...]) -> None:
    conn, watcher = conns
    grouped = Grouped(conn, in_one_transaction)
    assert await grouped.run(insert("a")) == 1
    assert await values(watcher) == ["a"]


async def test_writes_that_waited_together_share_one_commit_and_keep_their_results(
    conns: tuple[aiosqlite.Connection, ...],
) -> None:
    conn, watcher = conns
    lock = asyncio.Lock()
    grouped = Grouped(conn, in_one_transaction, lock)
    before = await commits_seen(watcher)
    async with lock:
        tasks = await queued_behind(lock, [grouped.run(insert(v)) for v in "abcde"])
    assert await asyncio.gather(*tasks) == [1, 2, 3, 4, 5]
    assert await values(watcher) == list("abcde")
    assert await commits_seen(watcher) == before + 1


async def test_a_write_that_raises_is_rolled_back_alone(conns: tuple[aiosqlite.Connection, ...]) -> None:
    conn, watcher = conns
    lock = asyncio.Lock()
    grouped = Grouped(conn, in_one_transaction, lock)
    async with lock:
        tasks = await queued_behind(
            lock, [grouped.run(insert("a")), grouped.run(insert("b", True)), grouped.run(insert("c"))]
        )
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert results[0] == 1 and results[2] == 2  # "b"'s row was rolled back: its id is used again
    assert isinstance(results[1], ValueError) and "b failed" in str(results[1])
    assert await values(watcher) == ["a", "c"]


async def test_a_lone_write_that_raises_leaves_nothing_and_the_next_one_works(
    conns: tuple[aiosqlite.Connection, ...],
) -> None:
    conn, watcher = conns
    grouped = Grouped(conn, in_one_transaction)
    with pytest.raises(ValueError, match="a failed"):
        await grouped.run(insert("a", True))
    assert await grouped.run(insert("b")) == 1
    assert await values(watcher) == ["b"]


async def test_a_commit_that_fails_fails_every_write_of_the_group_and_keeps_none(
    conns: tuple[aiosqlite.Connection, ...],
) -> None:
    conn, watcher = conns
    lock = asyncio.Lock()
    grouped = Grouped(conn, in_one_transaction, lock)

    def orphan(c: sqlite3.Connection) -> None:
        c.execute("INSERT INTO child (id, parent) VALUES (1, 42)")  # checked only at COMMIT (deferred)

    async with lock:
        tasks = await queued_behind(lock, [grouped.run(insert("a")), grouped.run(orphan)])
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, sqlite3.IntegrityError) for r in results), results
    assert await values(watcher) == []
    assert await grouped.run(insert("b")) == 1  # the connection is not left inside a transaction
    assert await values(watcher) == ["b"]


async def test_a_caller_that_gave_up_before_its_group_left_is_not_run(conns: tuple[aiosqlite.Connection, ...]) -> None:
    conn, watcher = conns
    lock = asyncio.Lock()
    grouped = Grouped(conn, in_one_transaction, lock)
    async with lock:
        gave_up, kept = await queued_behind(lock, [grouped.run(insert("gave up")), grouped.run(insert("kept"))])
        gave_up.cancel()
    assert await kept == 1
    with pytest.raises(asyncio.CancelledError):
        await gave_up
    assert await values(watcher) == ["kept"]


async def test_reads_that_waited_together_each_get_their_own_answer(conns: tuple[aiosqlite.Connection, ...]) -> None:
    conn, _ = conns
    await Grouped(conn, in_one_transaction).run(insert("a"))
    lock = asyncio.Lock()
    reads = Grouped(conn, each, lock)

    def count(c: sqlite3.Connection) -> int:
        return int(c.execute("SELECT COUNT(*) FROM t").fetchone()[0])

    def broken(c: sqlite3.Connection) -> Any:
        return c.execute("SELECT x FROM no_such_table").fetchall()

    async with lock:
        tasks = await queued_behind(lock, [reads.run(count), reads.run(broken), reads.run(count)])
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert results[0] == 1 and results[2] == 1
    assert isinstance(results[1], sqlite3.OperationalError) and "no_such_table" in str(results[1])
