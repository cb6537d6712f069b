"""I5: a reservation whose caller never gets its hold (the alert failed, or the caller was cancelled) gives the
hold back. A hold left behind counts as spent until the next start, which then bills it as a call."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from graph.spend.budget import AlertHandler, BudgetAlert, BudgetGuard
from graph.spend.pricing import PriceTable
from memory.control import Budget, ControlStore
from memory.db import Database, open_database
from memory.ledger import CostLedger
from tests.conftest import paused_before

# One reservation (10 prompt tokens, 1,024 completion tokens) holds about 2.06: over 80 % of a 2.5 cap.
PRICES = PriceTable({"fake-model": (1000.0, 2000.0)})


@asynccontextmanager
async def guard_on(tmp_path: Path, on_alert: AlertHandler | None) -> AsyncIterator[tuple[BudgetGuard, Database]]:
    async with open_database(tmp_path) as db:
        ledger = CostLedger(db)
        await ledger.setup()
        store = ControlStore(db)
        await store.setup()
        await store.set_budget(Budget("chat", "day", 2.5))
        yield BudgetGuard(ledger, db, store, PRICES, "UTC", None, on_alert), db


async def holds(db: Database) -> int:
    return int((await db.fetchone("SELECT COUNT(*) FROM budget_holds"))[0])


async def test_a_failing_alert_leaves_no_hold_behind(tmp_path: Path) -> None:
    async def unreachable(alert: BudgetAlert) -> None:
        raise RuntimeError("no chat to tell")

    async with guard_on(tmp_path, unreachable) as (guard, db):
        with pytest.raises(RuntimeError, match="no chat to tell"):
            await guard.reserve("chat", "fake-model", 10, 1024, "s")
        assert await holds(db) == 0  # before: 1, counted as spent until the next start billed it


async def test_a_reservation_cancelled_while_it_alerts_leaves_no_hold_behind(tmp_path: Path) -> None:
    alerting = asyncio.Event()

    async def slow(alert: BudgetAlert) -> None:
        alerting.set()
        await asyncio.Event().wait()  # a send that does not finish before shutdown

    async with guard_on(tmp_path, slow) as (guard, db):
        task = asyncio.create_task(guard.reserve("chat", "fake-model", 10, 1024, "s"))
        await alerting.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await holds(db) == 0


async def test_a_reservation_cancelled_while_its_hold_is_written_leaves_no_hold_behind(tmp_path: Path) -> None:
    async with guard_on(tmp_path, None) as (guard, db):
        async with paused_before(db.connection, "INSERT INTO budget_holds") as writing:
            task = asyncio.create_task(guard.reserve("chat", "fake-model", 10, 1024, "s"))
            await writing.wait()
            task.cancel()  # the booking is committed all the same (a group already on the thread runs)
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await holds(db) == 0
