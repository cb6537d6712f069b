"""Budgets (I5): the check runs before each model call, with an estimate of its cost."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from graph.periods import period_start
from graph.pricing import PriceTable
from memory.control import Budget, ControlStore
from memory.db import Database, utcnow

log = logging.getLogger(__name__)

NEAR_CAP = 0.8


@dataclass(frozen=True)
class BudgetAlert:
    """Something the operator must hear about once: a cap reached, or 80 % of one."""

    kind: str  # "exceeded" or "near"
    workflow: str
    budget: Budget
    spent: float
    estimate: float
    session: str | None


class BudgetExceeded(Exception):
    """The call was not made: it would cross a cap (or the workflow's breaker is open)."""

    def __init__(self, alert: BudgetAlert, first: bool) -> None:
        super().__init__(f"{alert.workflow}: {alert.budget.period} cap {alert.budget.amount:.2f} reached")
        self.alert = alert
        self.first = first


@dataclass(frozen=True)
class Clearance:
    """The call may go ahead, with this model."""

    model: str


AlertHandler = Callable[[BudgetAlert], Awaitable[None]]


class BudgetGuard:
    """Checks every model call against the caps of its workflow and of "all"."""

    def __init__(
        self,
        db: Database,
        store: ControlStore,
        prices: PriceTable,
        timezone: str,
        currency: str,
        cheap_model: str | None,
        on_alert: AlertHandler | None = None,
    ) -> None:
        self._db = db
        self._store = store
        self._prices = prices
        self._tz = timezone
        self.currency = currency
        self._cheap = cheap_model
        self.on_alert = on_alert

    @property
    def prices(self) -> PriceTable:
        """The price table."""
        return self._prices

    async def clear(
        self, workflow: str, model: str, prompt_tokens: int, max_completion: int, session: str | None
    ) -> Clearance:
        """Raise BudgetExceeded if this call would cross a cap; otherwise say which model to use."""
        estimate = self._prices.price(model).cost(prompt_tokens, max_completion)
        worst: tuple[Budget, float] | None = None
        near: tuple[Budget, float] | None = None
        now = utcnow()
        applicable = [b for b in await self._store.budgets() if b.scope in ("all", workflow)]
        if not applicable:
            return Clearance(model)  # no cap: no bookkeeping on the per-call path
        for budget in applicable:
            scope = None if budget.scope == "all" else workflow
            spent = await self._db.spend_since(period_start(budget.period, now, self._tz), scope)
            if spent + estimate > budget.amount:
                worst = worst or (budget, spent)
            elif spent + estimate >= NEAR_CAP * budget.amount:
                near = near or (budget, spent)
        if worst is not None:
            if await self._store.delete(f"budget.once:{workflow}"):
                log.info("budget: %s allowed one call over its cap on the operator's request", workflow)
                return Clearance(model)
            alert = BudgetAlert("exceeded", workflow, worst[0], worst[1], estimate, session)
            first = await self._store.put_new(
                f"budget.open:{workflow}", {"scope": worst[0].scope, "period": worst[0].period}
            )
            await self._db.append_event(
                "budget.blocked",
                "coo",
                {
                    "workflow": workflow,
                    "scope": worst[0].scope,
                    "period": worst[0].period,
                    "cap": worst[0].amount,
                    "spent": round(worst[1], 6),
                    "estimate": round(estimate, 6),
                    "first": first,
                },
                session=session,
            )
            if first and self.on_alert is not None:
                await self.on_alert(alert)
            raise BudgetExceeded(alert, first)
        await self._store.delete(f"budget.open:{workflow}")  # fits again (new period or a raised cap)
        if near is not None:
            started = period_start(near[0].period, now, self._tz).date()
            key = f"budget.near:{workflow}:{near[0].scope}:{near[0].period}:{started}"
            if await self._store.put_new(key, True) and self.on_alert is not None:
                await self.on_alert(BudgetAlert("near", workflow, near[0], near[1], estimate, session))
            if self._cheap:
                cheap_estimate = self._prices.price(self._cheap).cost(prompt_tokens, max_completion)
                if cheap_estimate <= estimate:
                    return Clearance(self._cheap)
        return Clearance(model)
