"""/budget, /spend, /pause, /resume and the budget alert buttons."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation

from bot.commands.router import CommandRouter
from bot.messages import Button, InboundMessage, OutboundMessage
from graph.errors import UserFacingError
from graph.spend.budget import BudgetAlert
from graph.spend.periods import period_end, period_start
from memory.control import PERIODS, Budget, ControlStore, Period
from memory.db import Database, utcnow
from memory.ledger import CostLedger
from prompts.messages import BUDGET_ONCE, money

BUDGET_USAGE = (
    "Usage: /budget | /budget set <daily|weekly|monthly> <amount> | "
    "/budget set <workflow> <amount>/<day|week|month> | /budget off <workflow|daily|weekly|monthly>"
)
_PERIOD_WORDS: dict[str, Period] = {
    "daily": "day",
    "day": "day",
    "weekly": "week",
    "week": "week",
    "monthly": "month",
    "month": "month",
}
_WORKFLOW = re.compile(r"^[a-z][a-z0-9_-]{0,30}$")
MAX_AMOUNT = 9_999_999


@dataclass
class Controls:
    """Operator switches mirrored in memory for cheap checks (the truth is in SQLite)."""

    paused: bool = False


def parse_budget_set(args: list[str]) -> Budget:
    """``["weekly", "20"]`` or ``["content", "5/week"]`` -> Budget; UserFacingError(usage) when bad."""
    if len(args) != 2:
        raise UserFacingError(BUDGET_USAGE)
    first, second = args[0].lower(), args[1].lower()
    if first in _PERIOD_WORDS:
        scope, period, amount = "all", _PERIOD_WORDS[first], second
    else:
        amount, slash, per = second.partition("/")
        if not slash or per not in _PERIOD_WORDS or not _WORKFLOW.match(first) or first == "all":
            raise UserFacingError(BUDGET_USAGE)
        scope, period = first, _PERIOD_WORDS[per]
    return Budget(scope, period, parse_amount(amount))


def parse_amount(text: str) -> float:
    """A cap in the operator's currency: 0 or more, whole cents. UserFacingError (usage, then the reason) otherwise."""
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise UserFacingError(BUDGET_USAGE) from None
    reason = None
    if not value.is_finite() or value < 0:
        reason = f"A budget must be 0 or more, not {text}."
    elif value != value.quantize(Decimal("0.01")):
        reason = f"Budgets are in whole cents: {text} has more than two decimals (the smallest step is 0.01)."
    elif value > MAX_AMOUNT:
        reason = f"{text} is more than the largest budget, {MAX_AMOUNT:,}."
    if reason:
        raise UserFacingError(f"{BUDGET_USAGE}\n{reason}")
    return float(value)


class BudgetCommands:
    """The commands and buttons that set and show budgets."""

    def __init__(
        self,
        db: Database,
        ledger: CostLedger,
        store: ControlStore,
        currency: str,
        controls: Controls,
        timezone: str,
        send: Callable[[OutboundMessage], Awaitable[list[str]]],
        *,
        now: Callable[[], datetime] = utcnow,
        price_lines: Callable[[], list[str]] = list,
    ) -> None:
        """``price_lines`` gives one line per model with the price its calls count at (``/spend`` shows them)."""
        self._db = db
        self._price_lines = price_lines
        self._ledger = ledger
        self._store = store
        self.currency = currency
        self._controls = controls
        self._tz = timezone
        self._send = send
        self._now = now

    def register(self, router: CommandRouter) -> None:
        """Add the commands to the router."""
        router.add("budget", "Show or set budgets: /budget set weekly 20", self.budget, confidential=True)
        router.add("spend", "Spend today, this week, this month", self.spend, confidential=True)
        router.add("pause", "Stop all autonomous work until /resume", self.pause)
        router.add("resume", "Resume autonomous work", self.resume)

    async def budget(self, inbound: InboundMessage, args: str) -> str:
        words = args.split()
        if not words:
            return await self.show_budgets()
        verb = words[0].lower()
        if verb == "set":
            budget = parse_budget_set(words[1:])
            await self._store.set_budget(budget)
            await self._store.delete(f"budget.open:{budget.scope}")
            await self._db.append_event(
                "budget.set", inbound.sender, {"scope": budget.scope, "period": budget.period, "amount": budget.amount}
            )
            return f"Budget set: {self._describe(budget)}.\n" + await self.show_budgets()
        if verb == "off" and len(words) == 2:
            target = words[1].lower()
            if target in _PERIOD_WORDS:
                removed = await self._store.remove_budget("all", _PERIOD_WORDS[target])
            elif _WORKFLOW.match(target):
                removed = await self._store.remove_budgets(target)
                await self._store.delete(f"budget.open:{target}")
            else:
                raise UserFacingError(BUDGET_USAGE)
            if not removed:
                return f"There was no budget for {target}."
            await self._db.append_event("budget.off", inbound.sender, {"target": target})
            return f"Budget for {target} removed.\n" + await self.show_budgets()
        raise UserFacingError(BUDGET_USAGE)

    def _describe(self, budget: Budget) -> str:
        who = "everything" if budget.scope == "all" else budget.scope
        return f"{who}: {money(budget.amount, self.currency)} a {budget.period}"

    async def show_budgets(self) -> str:
        """Caps with what was spent against each."""
        budgets = await self._store.budgets()
        if not budgets:
            return "No budgets set. Example: /budget set weekly 20"
        now = self._now()
        lines = ["Budgets:"]
        for b in budgets:
            spent = await self._ledger.spent(
                period_start(b.period, now, self._tz), None if b.scope == "all" else b.scope
            )
            paused = " (paused at cap)" if await self._store.get(f"budget.open:{b.scope}") else ""
            lines.append(f"- {self._describe(b)}: spent {money(spent, self.currency)}{paused}")
        return "\n".join(lines)

    async def spend(self, _: InboundMessage, args: str) -> str:
        if args.strip():
            raise UserFacingError("Usage: /spend")
        return await self.spend_text()

    async def spend_text(self) -> str:
        """Spend today, this week and this month, per workflow, against budgets."""
        now = self._now()
        cur = self.currency
        lines = ["Spend:"]
        for period, label in zip(PERIODS, ("today", "this week", "this month"), strict=True):
            since = period_start(period, now, self._tz)
            total = await self._ledger.spent(since)
            caps = {b.scope: b.amount for b in await self._store.budgets() if b.period == period}
            cap = f" of {money(caps['all'], cur)}" if "all" in caps else ""
            per = await self._ledger.spent_by_workflow(since)
            detail = ", ".join(
                f"{w} {money(v, cur)}" + (f"/{money(caps[w], cur)}" if w in caps else "") for w, v in per.items()
            )
            lines.append(f"- {label}: {money(total, cur)}{cap}" + (f" ({detail})" if detail else ""))
        by_model = await self._ledger.spent_by_model(period_start("month", now, self._tz))
        if by_model:
            lines.append("By model this month: " + ", ".join(f"{m} {money(v, cur)}" for m, v in by_model.items()))
        prices = await asyncio.to_thread(self._price_lines)  # the first look-up reads the price catalog
        if prices:
            lines += ["Prices in use:", *(f"- {line}" for line in prices)]
        return "\n".join(lines)

    async def pause(self, inbound: InboundMessage, _: str) -> str:
        self._controls.paused = True
        await self._store.put("paused", True)
        await self._db.append_event("control.pause", inbound.sender, {})
        return "Paused: no scheduled jobs and no queued actions run until /resume. Chat and approvals still work."

    async def resume(self, inbound: InboundMessage, _: str) -> str:
        self._controls.paused = False
        await self._store.put("paused", False)
        await self._db.append_event("control.resume", inbound.sender, {})
        return "Resumed: scheduled jobs and queued actions run again."

    # -- the alert and its buttons ---------------------------------------------------------------
    def alert_message(self, alert: BudgetAlert, channel: str, chat_id: str, thread_id: str | None) -> OutboundMessage:
        """One message for a cap reached (with buttons) or 80 % of one."""
        cur = self.currency
        cap = alert.budget
        who = "all work" if cap.scope == "all" else f"the {alert.workflow} workflow"
        if alert.kind == "near":
            text = (
                f"Heads-up: {who} has used {money(alert.spent, cur)} of its {money(cap.amount, cur)} "
                f"{cap.period} budget (80 %+). I'll switch to the cheaper model where one is configured."
            )
            return OutboundMessage(channel, chat_id, text, thread_id)
        step = raise_step(cap.amount)
        text = (
            f"Budget reached: {who} has spent {money(alert.spent, cur)} of {money(cap.amount, cur)} this "
            f"{cap.period}; the next model call (about {money(alert.estimate, cur)}) was not made. "
            f"{alert.workflow} is paused at its cap."
        )
        buttons = (
            Button(f"Raise to {money(cap.amount + step, cur)}", f"bu:raise:{alert.workflow}"),
            Button("Resume once", f"bu:once:{alert.workflow}"),
            Button("Keep paused", f"bu:keep:{alert.workflow}"),
        )
        return OutboundMessage(channel, chat_id, text, thread_id, buttons)

    async def on_press(self, inbound: InboundMessage) -> None:
        """A press on a budget alert button (the operator check already ran)."""
        parts = (inbound.callback_data or "").split(":")
        if len(parts) != 3 or parts[1] not in ("raise", "once", "keep") or not _WORKFLOW.match(parts[2]):
            return
        action, workflow = parts[1], parts[2]
        opened = await self._store.get(f"budget.open:{workflow}")
        if opened is None and action != "keep":
            await self._send(OutboundMessage.reply_to(inbound, f"{workflow} is not paused at a cap any more."))
            return
        if action == "raise":
            assert opened is not None
            current = next(
                (b for b in await self._store.budgets() if b.scope == opened["scope"] and b.period == opened["period"]),
                None,
            )
            if current is None:
                text = "That budget was removed meanwhile."
            else:
                raised = Budget(current.scope, current.period, current.amount + raise_step(current.amount))
                await self._store.set_budget(raised)
                await self._store.delete(f"budget.open:{workflow}")
                text = f"Raised: {self._describe(raised)}. {workflow} runs again."
        elif action == "once":
            assert opened is not None
            # It ends with the cap period it was given in, so an unused one never lets a call through later;
            # a cap without a period (a goal's own budget, "total") gives it until the end of the day.
            period: Period = opened["period"] if opened["period"] in PERIODS else "day"
            until = period_end(period, self._now(), self._tz)
            await self._store.put(f"budget.once:{workflow}", {"until": until.isoformat()})
            text = BUDGET_ONCE.format(workflow=workflow, period=period)
        else:
            text = f"OK: {workflow} stays paused at its cap. /budget to change it."
        await self._db.append_event("budget." + action, inbound.sender, {"workflow": workflow})
        await self._send(OutboundMessage.reply_to(inbound, text))


def raise_step(amount: float) -> float:
    """How much "raise the cap" adds: half the cap, at least 1."""
    return max(1.0, round(amount * 0.5, 2))
