"""What each page shows, read through the same stores and services as the chat commands."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bot.web.chart import day_bars, workflow_bars
from graph.approvals.service import ApprovalService
from graph.spend.periods import period_start
from memory.approvals import ApprovalRow
from memory.control import PERIODS, ControlStore
from memory.db import Database, utcnow
from memory.ledger import CostLedger
from memory.tasks import Goal, Task, TaskLedger
from prompts.messages import money

TASK_STATES = ("todo", "ready", "running", "waiting_approval", "blocked", "done", "failed", "cancelled")
STATE_NAMES = {
    "todo": "To do",
    "ready": "Ready",
    "running": "Running",
    "waiting_approval": "Waiting for you",
    "blocked": "Blocked",
    "done": "Done",
    "failed": "Failed",
    "cancelled": "Cancelled",
}
OPEN_GOALS = ("planning", "proposed", "active", "verifying")
PERIOD_NAMES = {"day": "today", "week": "this week", "month": "this month"}


@dataclass(frozen=True)
class CardView:
    """A card as the cards page shows it."""

    row: ApprovalRow
    title: str
    text: str
    noun: str
    status: str
    help: str
    summary: str


@dataclass(frozen=True)
class PeriodSpend:
    """Spend in one period against its overall cap."""

    period: str
    label: str
    total: float
    cap: float | None
    shown: str


@dataclass(frozen=True)
class Views:
    """Reads for the pages."""

    db: Database
    approvals: ApprovalService
    ledger: CostLedger
    control: ControlStore
    tasks: TaskLedger
    timezone: str
    currency: str

    async def pending_cards(self) -> list[CardView]:
        """Cards waiting for a decision, oldest first, with the full preview."""
        return [self._card(row, None) for row in await self.approvals.store.list_approvals("pending")]

    async def recent_cards(self, limit: int = 20) -> list[CardView]:
        """Decided cards, newest first, with what became of them."""
        views = []
        for row in await self.approvals.store.recent_decided(limit):
            outbox = await self.approvals.store.outbox(row.id)
            who = f" by {row.decided_by}" if row.decided_by else ""
            status = f"{row.state.capitalize()}{who}" + (f"; {outbox.state}" if outbox else "")
            views.append(self._card(row, status))
        return views

    def _card(self, row: ApprovalRow, status: str | None) -> CardView:
        kind = self.approvals.kind(row.kind)
        preview = kind.preview(kind.parse(row.action))
        if status is None:  # the pending card as in chat, without its title (the page shows it above)
            text = self.approvals.render(row).text.split("\n\n", 1)[-1]
        else:
            text = self.approvals.render(row, status=status).text
        summary = " · ".join(f"{label}: {value}" for label, value in preview.fields[:3] if label != "From")
        return CardView(row, preview.title, text, kind.noun, status or "Waiting for approval", kind.edit_help, summary)

    async def spend(self, now: datetime | None = None) -> list[PeriodSpend]:
        """Today, this week and this month against the overall caps: the same ledger sums as /spend."""
        now = now or utcnow()
        caps = {(b.scope, b.period): b.amount for b in await self.control.budgets()}
        result = []
        for period in PERIODS:
            total = await self.ledger.spent(period_start(period, now, self.timezone))
            cap = caps.get(("all", period))
            shown = money(total, self.currency) + (f" of {money(cap, self.currency)}" if cap is not None else "")
            result.append(PeriodSpend(period, PERIOD_NAMES[period], total, cap, shown))
        return result

    async def spend_charts(self, days: int = 14, now: datetime | None = None) -> dict[str, Any]:
        """The per-day chart (last ``days`` days, operator's zone) and the per-workflow chart for this month."""
        now = now or utcnow()
        zone = ZoneInfo(self.timezone)
        today = now.astimezone(zone).date()
        starts = [_midnight(today - timedelta(days=n), zone) for n in range(days - 1, -1, -1)]
        cumulative = [await self.ledger.spent(start) for start in starts]
        per_day = [
            (str(starts[i].astimezone(zone).date()), cumulative[i] - (cumulative[i + 1] if i + 1 < days else 0.0))
            for i in range(days)
        ]
        caps = {(b.scope, b.period): b.amount for b in await self.control.budgets()}
        month = await self.ledger.spent_by_workflow(period_start("month", now, self.timezone))
        capped = {scope for scope, period in caps if period == "month" and scope != "all"}
        rows = [(w, month.get(w, 0.0), caps.get((w, "month"))) for w in sorted(set(month) | capped)]
        by_model = await self.ledger.spent_by_model(period_start("month", now, self.timezone))
        return {
            "days": day_bars(per_day, caps.get(("all", "day")), self.currency),
            "workflows": workflow_bars(rows, self.currency),
            "workflow_rows": [(w, money(v, self.currency), money(c, self.currency) if c else "") for w, v, c in rows],
            "models": [(m, money(v, self.currency)) for m, v in by_model.items()],
        }

    async def blocked_tasks(self) -> list[tuple[Task, Goal | None]]:
        """Blocked tasks with their goals."""
        blocked = await self.tasks.in_state("blocked")
        goals = {g.id: g for g in await self.tasks.goals()} if blocked else {}  # one read, not one per task
        return [(t, goals.get(t.goal_id)) for t in blocked]

    async def open_goals(self) -> list[Goal]:
        """Goals still being worked on."""
        return await self.tasks.goals(OPEN_GOALS)

    async def board(self, limit: int = 50) -> list[dict[str, Any]]:
        """Goals (open ones first, then the latest finished) with their latest run's tasks by state."""
        goals = await self.tasks.goals(OPEN_GOALS)
        finished = [g for g in await self.tasks.goals() if g.status not in OPEN_GOALS]
        finished.sort(key=lambda g: g.updated_at, reverse=True)
        board = []
        for goal in (goals + finished)[:limit]:
            tasks = await self.tasks.tasks(goal.id, goal.runs or None) if goal.runs else await self.tasks.tasks(goal.id)
            columns = {state: [t for t in tasks if t.state == state] for state in TASK_STATES}
            board.append({"goal": goal, "columns": columns, "total": len(tasks)})
        return board

    async def timeline(self, kind: str, day: date | None, limit: int = 200) -> list[dict[str, Any]]:
        """Events, newest first, of one kind and/or one day (operator's zone)."""
        sql = "SELECT id, at, actor, session, kind, payload FROM events WHERE 1=1"
        args: list[Any] = []
        if kind:
            sql += " AND kind = ?"
            args.append(kind)
        if day is not None:
            zone = ZoneInfo(self.timezone)
            sql += " AND at >= ? AND at < ?"
            args += [_midnight(day, zone).isoformat(), _midnight(day + timedelta(days=1), zone).isoformat()]
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(limit)
        rows = await self.db.fetchall(sql, args)
        return [
            {
                "id": r[0],
                "at": datetime.fromisoformat(r[1]).astimezone(ZoneInfo(self.timezone)).strftime("%Y-%m-%d %H:%M:%S"),
                "actor": r[2],
                "session": r[3] or "",
                "kind": r[4],
                "payload": _short(r[5]),
            }
            for r in rows
        ]

    async def event_kinds(self) -> list[str]:
        """Every kind in the event log (for the filter)."""
        return [str(r[0]) for r in await self.db.fetchall("SELECT DISTINCT kind FROM events ORDER BY kind")]


def _midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=zone).astimezone(ZoneInfo("UTC"))


def _short(payload: str, limit: int = 300) -> str:
    try:
        text = json.dumps(json.loads(payload), ensure_ascii=False, sort_keys=True)
    except ValueError:
        text = payload
    return text if len(text) <= limit else text[: limit - 1] + "…"
