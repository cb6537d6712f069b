"""What the console's pages read (bot/web/views.py), built on the stores ``coo run`` opens, with fixed
times: spend per period in the operator's zone and currency against the caps, the per-day chart, the goals
board, and unknown ids answered with nothing rather than an error page."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.stores import Stores, open_stores
from bot.web.views import ALWAYS_SHOWN, Views
from connectors.base import Deps
from connectors.catalog import build_registry
from graph.approvals.service import ApprovalService
from graph.settings import ApprovalSettings
from memory.control import Budget
from memory.traces import TraceStore
from tests.conftest import make_settings

# Monday 2 March 2026, 00:30 in Berlin (23:30 UTC on Sunday): a new day and a new week there, not in UTC.
NOW = datetime(2026, 3, 1, 23, 30, tzinfo=UTC)


@pytest.fixture
async def built(tmp_path: Path) -> AsyncIterator[tuple[Views, Stores]]:
    settings = make_settings(tmp_path)
    async with AsyncExitStack() as stack:
        stores = await open_stores(settings, stack)
        traces = TraceStore(stores.db)
        await traces.setup()
        registry = build_registry(settings, Deps(records=stores.records, currency="EUR"))
        approvals = ApprovalService(
            stores.approvals, stores.db, registry, ApprovalSettings(), lambda: {"telegram:1001"}, stores.control
        )
        views = Views(stores.db, approvals, stores.ledger, stores.control, stores.tasks, "Europe/Berlin", "EUR", traces)
        yield views, stores


async def spent(stores: Stores, at: str, cost: float, workflow: str = "chat") -> None:
    """A model call recorded at a fixed time (the ledger stamps its own rows with the wall clock)."""
    await stores.db.write(
        "INSERT INTO llm_calls (at, session, workflow, model, prompt_tokens, completion_tokens, estimated, "
        "latency_ms, outcome, cost) VALUES (?, 's', ?, 'fake-model', 10, 10, 0, 5, 'ok', ?)",
        (at, workflow, cost),
    )


async def test_spend_is_counted_in_the_operators_days_and_shown_with_currency_and_caps(
    built: tuple[Views, Stores],
) -> None:
    views, stores = built
    await spent(stores, "2026-03-01T23:10:00+00:00", 1.5)  # Monday 00:10 in Berlin: today, this week
    await spent(stores, "2026-03-01T22:50:00+00:00", 2.0)  # Sunday 23:50 in Berlin: last week, this month
    await spent(stores, "2026-02-27T10:00:00+00:00", 4.0)  # February
    await stores.control.set_budget(Budget("all", "day", 10.0))
    periods = {p.period: p for p in await views.spend(NOW)}
    assert (periods["day"].total, periods["week"].total, periods["month"].total) == (1.5, 1.5, 3.5)
    assert periods["day"].shown == "1.50 EUR of 10.00 EUR"
    assert periods["month"].shown == "3.50 EUR" and periods["month"].cap is None


async def test_the_day_chart_has_a_bar_per_day_and_the_cap_line(built: tuple[Views, Stores]) -> None:
    views, stores = built
    await spent(stores, "2026-03-01T23:10:00+00:00", 1.5, workflow="goal")
    await stores.control.set_budget(Budget("all", "day", 10.0))
    await stores.control.set_budget(Budget("goal", "month", 5.0))
    charts = await views.spend_charts(days=7, now=NOW)
    assert charts["days"].count('class="bar"') == 7
    assert "cap 10.00 EUR a day" in charts["days"] and "<title>2026-03-02: 1.50 EUR</title>" in charts["days"]
    assert charts["workflow_rows"] == [("goal", "1.50 EUR", "5.00 EUR")]
    assert charts["models"] == [("fake-model", "1.50 EUR")]


async def test_the_board_shows_the_always_shown_columns_and_each_task_once(built: tuple[Views, Stores]) -> None:
    views, stores = built
    goal = await stores.tasks.create_goal("find a sponsor", "s", "op", status="active")
    specs = [{"key": k, "title": k, "skill": "research", "instructions": "-"} for k in ("a", "b")]
    await stores.tasks.add_run(goal.id, specs)
    [shown] = await views.board()
    columns = dict(shown["columns"])
    assert shown["open"] and shown["total"] == 2
    assert [t.key for t in columns["todo"]] == ["a", "b"]
    assert set(columns) == ALWAYS_SHOWN | {"todo"}
    assert [g.id for g in await views.open_goals()] == [goal.id] and await views.blocked_tasks() == []


async def test_unknown_or_hostile_ids_are_nothing_to_show(built: tuple[Views, Stores]) -> None:
    views, _ = built
    for hostile in ("g-missing", "x' OR '1'='1", "../../etc/passwd"):
        assert await views.goal_page(hostile) is None
        assert await views.task_page(hostile) is None
    assert await views.pending_cards() == [] and await views.recent_cards() == []
