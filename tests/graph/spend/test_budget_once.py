"""I5: "Resume once" lets one call over the cap through in the period it was given in, not later."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.commands.budget import BudgetCommands, Controls
from bot.messages import OutboundMessage
from graph.spend.budget import BudgetAlert, BudgetExceeded, BudgetGuard
from graph.spend.periods import period_end
from graph.spend.pricing import PriceTable
from memory.control import Budget, ControlStore
from memory.db import Database, open_database
from memory.ledger import CostLedger
from tests.conftest import operator_message

# One reservation (10 prompt tokens, 1,024 completion tokens) holds about 2.06: over a 1.0 cap.
PRICES = PriceTable({"fake-model": (1000.0, 2000.0)})


@dataclass
class Bench:
    db: Database
    store: ControlStore
    commands: BudgetCommands
    alerts: list[BudgetAlert]
    sent: list[OutboundMessage]
    clock: list[datetime]

    def guard(self, ledger: CostLedger) -> BudgetGuard:
        async def alert(a: BudgetAlert) -> None:
            self.alerts.append(a)

        def now() -> datetime:
            return self.clock[0]

        return BudgetGuard(ledger, self.db, self.store, PRICES, "UTC", None, alert, now=now)

    async def press_once(self) -> str:
        await self.commands.on_press(operator_message("", kind="callback", data="bu:once:chat"))
        return self.sent[-1].text


@asynccontextmanager
async def bench(tmp_path: Path) -> AsyncIterator[tuple[Bench, BudgetGuard]]:
    async with open_database(tmp_path) as db:
        ledger = CostLedger(db)
        await ledger.setup()
        store = ControlStore(db)
        await store.setup()
        sent: list[OutboundMessage] = []

        async def send(message: OutboundMessage) -> list[str]:
            sent.append(message)
            return ["1"]

        clock = [datetime.now(UTC)]
        commands = BudgetCommands(db, ledger, store, "USD", Controls(), "UTC", send, now=lambda: clock[0])
        b = Bench(db, store, commands, [], sent, clock)
        yield b, b.guard(ledger)


async def test_an_unused_resume_once_lapses_with_its_period_and_the_operator_hears_again(tmp_path: Path) -> None:
    async with bench(tmp_path) as (b, guard):
        await b.store.set_budget(Budget("chat", "day", 1.0))
        with pytest.raises(BudgetExceeded):
            await guard.reserve("chat", "fake-model", 10, 1024, None)
        assert "until the end of this day" in await b.press_once()
        b.clock[0] += timedelta(days=7)  # unused; a week later the cap is reached again
        with pytest.raises(BudgetExceeded) as blocked:
            await guard.reserve("chat", "fake-model", 10, 1024, None)  # before: let through silently
        assert await b.store.get("budget.once:chat") is None
        events = await b.db.events(kind="budget.once_lapsed")
    assert blocked.value.first and len(b.alerts) == 2  # a new block: the alert (with its buttons) again
    assert [e.payload["workflow"] for e in events] == ["chat"]


async def test_resume_once_in_its_period_lets_exactly_one_call_through(tmp_path: Path) -> None:
    async with bench(tmp_path) as (b, guard):
        await b.store.set_budget(Budget("chat", "day", 1.0))
        with pytest.raises(BudgetExceeded):
            await guard.reserve("chat", "fake-model", 10, 1024, None)
        await b.press_once()
        b.clock[0] += timedelta(seconds=1)
        hold = await guard.reserve("chat", "fake-model", 10, 1024, None)
        with pytest.raises(BudgetExceeded):
            await guard.reserve("chat", "fake-model", 10, 1024, None)
    assert hold.model == "fake-model"


async def test_a_call_that_fits_again_ends_an_unused_resume_once(tmp_path: Path) -> None:
    async with bench(tmp_path) as (b, guard):
        await b.store.set_budget(Budget("chat", "day", 1.0))
        with pytest.raises(BudgetExceeded):
            await guard.reserve("chat", "fake-model", 10, 1024, None)
        await b.press_once()
        await b.store.set_budget(Budget("chat", "day", 100.0))  # the operator raised the cap instead
        await guard.reserve("chat", "fake-model", 10, 1024, None)
        await b.store.set_budget(Budget("chat", "day", 1.0))
        with pytest.raises(BudgetExceeded):  # before: the leftover allowance let this one through
            await guard.reserve("chat", "fake-model", 10, 1024, None)


def test_a_period_ends_where_the_next_one_starts_in_the_operators_zone() -> None:
    lisbon = "Europe/Lisbon"
    # the last Saturday of March 2026: the clocks go forward on Sunday
    saturday = datetime(2026, 3, 28, 21, 30, tzinfo=UTC)
    assert period_end("day", saturday, lisbon) == datetime(2026, 3, 29, 0, 0, tzinfo=UTC)
    assert period_end("week", saturday, lisbon) == datetime(2026, 3, 29, 23, 0, tzinfo=UTC)  # Monday 00:00 WEST
    assert period_end("month", saturday, lisbon) == datetime(2026, 3, 31, 23, 0, tzinfo=UTC)
    assert period_end("month", datetime(2026, 1, 31, 12, tzinfo=UTC), "UTC") == datetime(2026, 2, 1, tzinfo=UTC)
    assert period_end("month", datetime(2026, 2, 1, tzinfo=UTC), "UTC") == datetime(2026, 3, 1, tzinfo=UTC)
