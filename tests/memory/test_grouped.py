"""Grouped calls to SQLite's thread: calls that queue up while the thread is busy go together, and each
still ends on its own (its result, its exception, its rollback)."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import closing
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

from memory.db import connect_sqlite
from memory.grouped import Grouped, each, in_one_transaction, on_thread
from tests.conftest import ROOT


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


async def transaction_statements(conn: aiosqlite.Connection) -> list[str]:
    """From now on, every BEGIN, COMMIT and ROLLBACK SQLite runs on ``conn`` (its trace callback)."""
    seen: list[str] = []

    def trace(statement: str) -> None:
        words = statement.upper().split()
        if words[:2] == ["ROLLBACK", "TO"]:
            seen.append("ROLLBACK TO")  # to a savepoint: the transaction goes on
        elif words and words[0] in ("BEGIN", "COMMIT", "ROLLBACK"):
            seen.append(words[0])

    await on_thread(conn, lambda c: c.set_trace_callback(trace))
    return seen


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
    transactions = await transaction_statements(conn)
    async with lock:
        tasks = await queued_behind(lock, [grouped.run(insert(v)) for v in "abcde"])
    assert await asyncio.gather(*tasks) == [1, 2, 3, 4, 5]
    assert await values(watcher) == list("abcde")
    assert transactions == ["BEGIN", "COMMIT"]


async def test_a_write_that_raises_is_rolled_back_alone(conns: tuple[aiosqlite.Connection, ...]) -> None:
    conn, watcher = conns
    lock = asyncio.Lock()
    grouped = Grouped(conn, in_one_transaction, lock)
    transactions = await transaction_statements(conn)
    async with lock:
        tasks = await queued_behind(
            lock, [grouped.run(insert("a")), grouped.run(insert("b", True)), grouped.run(insert("c"))]
        )
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert results[0] == 1 and results[2] == 2  # "b"'s row was rolled back: its id is used again
    assert isinstance(results[1], ValueError) and "b failed" in str(results[1])
    assert await values(watcher) == ["a", "c"]
    assert transactions == ["BEGIN", "ROLLBACK TO", "COMMIT"]  # one transaction: "b" undone inside it


async def test_a_lone_write_that_raises_leaves_nothing_and_the_next_one_works(
    conns: tuple[aiosqlite.Connection, ...],
) -> None:
    conn, watcher = conns
    grouped = Grouped(conn, in_one_transaction)
    with pytest.raises(ValueError, match="a failed"):
        await grouped.run(insert("a", True))
    assert await grouped.run(insert("b")) == 1
    assert await values(watcher) == ["b"]


async def test_a_commit_that_fails_is_retried_write_by_write(conns: tuple[aiosqlite.Connection, ...]) -> None:
    conn, watcher = conns
    lock = asyncio.Lock()
    grouped = Grouped(conn, in_one_transaction, lock)
    transactions = await transaction_statements(conn)

    def orphan(c: sqlite3.Connection) -> None:
        c.execute("INSERT INTO child (id, parent) VALUES (1, 42)")  # checked only at COMMIT (deferred)

    async with lock:
        tasks = await queued_behind(lock, [grouped.run(insert("a")), grouped.run(orphan), grouped.run(insert("b"))])
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert results[0] == 1 and results[2] == 2  # the group's commit failed; each was tried again alone
    assert isinstance(results[1], sqlite3.IntegrityError), results
    assert await values(watcher) == ["a", "b"]
    # The group's commit failed and was rolled back, then each write went alone.
    assert transactions == [
        *["BEGIN", "COMMIT", "ROLLBACK"],  # the group
        *["BEGIN", "COMMIT"],  # "a" alone
        *["BEGIN", "COMMIT", "ROLLBACK"],  # the orphan alone: its commit fails
        *["BEGIN", "COMMIT"],  # "b" alone
    ]
    assert await grouped.run(insert("c")) == 3  # the connection is not left inside a transaction


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


async def test_a_write_that_fills_the_disk_fails_alone_and_the_group_commits(
    conns: tuple[aiosqlite.Connection, ...],
) -> None:
    conn, watcher = conns
    await conn.execute("PRAGMA max_page_count = 64")  # ~256 kB: a stand-in for a full disk
    lock = asyncio.Lock()
    grouped = Grouped(conn, in_one_transaction, lock)
    transactions = await transaction_statements(conn)

    def too_big(c: sqlite3.Connection) -> None:
        c.execute("INSERT INTO t (v) VALUES (?)", ("x" * 1_000_000,))

    async with lock:
        tasks = await queued_behind(lock, [grouped.run(insert("a")), grouped.run(too_big), grouped.run(insert("c"))])
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[1], sqlite3.OperationalError) and "full" in str(results[1])
    assert results[0] == 1 and results[2] == 2
    assert await values(watcher) == ["a", "c"]
    # SQLite rolled the whole group back on the full disk (no ROLLBACK statement of ours); the others
    # then went in a new transaction.
    assert transactions == ["BEGIN", *["BEGIN", "COMMIT"]]


# A process that writes "before" alone, then a group of three writes whose last one stops in the middle
# of the group's transaction (it says so, then waits for input that never comes).
_KILLED_MID_GROUP = """
import asyncio, sys
from pathlib import Path
from memory.db import connect_sqlite
from memory.grouped import Grouped, in_one_transaction

def insert(value):
    return lambda c: c.execute("INSERT INTO t (v) VALUES (?)", (value,))

def stops(c):
    c.execute("INSERT INTO t (v) VALUES ('c')")
    print("inside the group", flush=True)
    sys.stdin.read()

async def main():
    conn = await connect_sqlite(Path(sys.argv[1]), 5000)
    lock = asyncio.Lock()
    grouped = Grouped(conn, in_one_transaction, lock)
    await grouped.run(insert("before"))
    async with lock:
        calls = [asyncio.ensure_future(grouped.run(w)) for w in (insert("a"), insert("b"), stops)]
        await asyncio.sleep(0)
    await asyncio.gather(*calls)

asyncio.run(main())
"""


async def test_a_process_killed_inside_a_group_keeps_none_of_it(tmp_path: Path) -> None:
    # kill -9 while a group's transaction is open: none of its writes stays (none of their callers had
    # been told they were committed); what was committed before stays.
    path = tmp_path / "k.sqlite"
    with sqlite3.connect(path) as setup:
        setup.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _KILLED_MID_GROUP, str(path),
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    try:
        # A generous bound so that a child that never gets there fails the test instead of hanging it.
        assert await asyncio.wait_for(proc.stdout.readline(), 60) == b"inside the group\n"
    finally:
        proc.kill()  # SIGKILL
        await proc.wait()
    with closing(sqlite3.connect(path)) as after:
        assert after.execute("SELECT v FROM t ORDER BY id").fetchall() == [("before",)]
