"""Budgets (I5): before each model call its estimated cost is reserved against every cap that applies,
in the same transaction that reads what was spent, so concurrent calls cannot overshoot together."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

from graph.spend.periods import period_start
from graph.spend.pricing import PriceTable
from memory.control import Budget, ControlStore, budgets_in, delete_key_in
from memory.db import Database, utcnow
from memory.errors import InternalError
from memory.ledger import Booking, CostLedger, Hold

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


class BudgetExceeded(InternalError):
    """The call was not made: it would cross a cap."""

    def __init__(self, alert: BudgetAlert, first: bool) -> None:
        super().__init__(f"{alert.workflow}: {alert.budget.period} cap {alert.budget.amount:.2f} reached")
        self.alert = alert
        self.first = first


AlertHandler = Callable[[BudgetAlert], Awaitable[None]]
"""Tells the operator about a :class:`BudgetAlert`: a notice, not a reply of the turn that happened to
reach the cap (the bot sends it outside the turn's reply journal: ``Messenger.notice``)."""


@dataclass(frozen=True)
class Limit:
    """A cap a caller brings for one workflow: at most ``amount`` since ``since`` (e.g. a goal's budget)."""

    amount: float
    since: datetime


@dataclass(frozen=True)
class Pricing:
    """How one endpoint's calls are priced: its price table and the cheaper model it switches to near a cap."""

    prices: PriceTable
    cheap_model: str | None


@dataclass(frozen=True)
class _Ask:
    """One call to reserve for, as every step of the reservation reads it."""

    workflow: str
    model: str
    prompt_tokens: int
    max_completion: int
    session: str | None
    now: datetime
    limit: Limit | None
    cheaper: bool
    prices: PriceTable
    cheap: str | None

    def cost(self, model: str) -> float:
        """The call's estimated cost with ``model``."""
        return self.prices.price(model).cost(self.prompt_tokens, self.max_completion)


@dataclass(frozen=True)
class _Verdict:
    hold: Hold | None
    over: tuple[Budget, float] | None
    near: tuple[Budget, float] | None
    estimate: float


def _check(
    caps: list[Budget], spent: list[float], estimate: float
) -> tuple[tuple[Budget, float] | None, tuple[Budget, float] | None]:
    """The first cap this call would cross, and the first it would bring to 80 % or more."""
    over = near = None
    for cap, already in zip(caps, spent, strict=True):
        if already + estimate > cap.amount:
            over = over or (cap, already)
        elif already + estimate >= NEAR_CAP * cap.amount:
            near = near or (cap, already)
    return over, near


class BudgetGuard:
    """Reserves every model call against the caps of its workflow and of "all"."""

    def __init__(
        self,
        ledger: CostLedger,
        db: Database,
        store: ControlStore,
        prices: PriceTable,
        timezone: str,
        cheap_model: str | None,
        on_alert: AlertHandler | None = None,
        *,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self._ledger = ledger
        self._db = db
        self._store = store
        self._prices = prices
        self._tz = timezone
        self._cheap = cheap_model
        self._on_alert = on_alert
        self._now = now

    @property
    def prices(self) -> PriceTable:
        """The price table."""
        return self._prices

    async def reserve(
        self,
        workflow: str,
        model: str,
        prompt_tokens: int,
        max_completion: int,
        session: str | None,
        limit: Limit | None = None,
        *,
        cheaper: bool = True,
        pricing: Pricing | None = None,
    ) -> Hold:
        """Hold the call's estimated cost (prompt + ``max_completion`` at the model's price).

        Raises BudgetExceeded, holding nothing, when the call would cross a cap; nothing stays held
        either when it raises otherwise or is cancelled. Near a cap the cheaper model is chosen when one
        is configured and ``cheaper`` allows it (the hold says which model to call); an embedding call
        passes False, since the cheap chat model cannot embed. ``pricing`` prices a call to another
        endpoint than the main one (a fallback's own prices and cheap model).
        """
        ask = self._ask(workflow, model, prompt_tokens, max_completion, session, limit, cheaper, pricing)
        verdict = await self._verdict(ask)
        if verdict.over is not None:
            return await self._over_cap(verdict, ask)
        return await self._near(verdict, ask)

    async def try_reserve(
        self,
        workflow: str,
        model: str,
        prompt_tokens: int,
        max_completion: int,
        session: str | None,
        limit: Limit | None,
        *,
        pricing: Pricing,
    ) -> Hold | BudgetAlert:
        """:meth:`reserve` for a fallback endpoint: a call that would cross a cap is skipped, not blocked.

        Returns the cap it would cross (an alert nobody was sent) instead of raising: the workflow is not
        paused, no "resume once" is used, and the caller tells the operator in its own words.
        """
        ask = self._ask(workflow, model, prompt_tokens, max_completion, session, limit, True, pricing)
        verdict = await self._verdict(ask)
        if verdict.over is not None:
            cap, spent = verdict.over
            return BudgetAlert("exceeded", workflow, cap, spent, verdict.estimate, session)
        return await self._near(verdict, ask)

    def _ask(
        self,
        workflow: str,
        model: str,
        prompt_tokens: int,
        max_completion: int,
        session: str | None,
        limit: Limit | None,
        cheaper: bool,
        pricing: Pricing | None,
    ) -> _Ask:
        prices, cheap = (pricing.prices, pricing.cheap_model) if pricing else (self._prices, self._cheap)
        now = self._now()
        return _Ask(workflow, model, prompt_tokens, max_completion, session, now, limit, cheaper, prices, cheap)

    async def _verdict(self, ask: _Ask) -> _Verdict:
        """Check the caps and hold the estimate if it fits, in one booking transaction."""

        def decide(book: Booking) -> _Verdict:
            # Caps, spend and the hold in one transaction and one round trip to SQLite's thread.
            caps = [b for b in budgets_in(book.conn) if b.scope in ("all", ask.workflow)]
            verdict = self._decide(book, caps, ask)
            if verdict.hold is not None and (caps or ask.limit is not None):
                # Fits again (new period or a raised cap): not paused any more, and an unused "resume
                # once" is not kept for a later block.
                delete_key_in(book.conn, f"budget.open:{ask.workflow}")
                delete_key_in(book.conn, f"budget.once:{ask.workflow}")
            return verdict

        return await self._book(decide)

    async def _near(self, verdict: _Verdict, ask: _Ask) -> Hold:
        """The hold of a call that fits, after the 80 % alert when this call is the first to reach it."""
        hold = verdict.hold
        assert hold is not None
        try:
            if verdict.near is not None:
                cap, spent = verdict.near
                started = period_start(cap.period, ask.now, self._tz).date()
                key = f"budget.near:{ask.workflow}:{cap.scope}:{cap.period}:{started}"
                if await self._store.put_new(key, True):
                    await self._alert(BudgetAlert("near", ask.workflow, cap, spent, verdict.estimate, ask.session))
        except BaseException:
            # The caller never gets the hold (the alert failed, or the caller was cancelled while it was
            # sent): give it back, or it would count as spent until the next start billed it as a call.
            await asyncio.shield(self._ledger.release(hold.id))
            raise
        return hold

    async def _book(self, work: Callable[[Booking], _Verdict]) -> _Verdict:
        """``work`` in one booking transaction (:meth:`CostLedger.book`), leaving no hold behind if the
        caller is cancelled meanwhile: a booking already on SQLite's thread is committed all the same,
        so on cancellation it is waited for and its hold given back."""
        booking = asyncio.ensure_future(self._ledger.book(work))
        try:
            return await asyncio.shield(booking)
        except asyncio.CancelledError:
            await asyncio.shield(self._give_back(booking))
            raise

    async def _give_back(self, booking: asyncio.Future[_Verdict]) -> None:
        verdict = await booking
        if verdict.hold is not None:
            await self._ledger.release(verdict.hold.id)

    def _decide(self, book: Booking, caps: list[Budget], ask: _Ask) -> _Verdict:
        estimate = ask.cost(ask.model)
        spent = [
            book.spent(period_start(cap.period, ask.now, self._tz), None if cap.scope == "all" else ask.workflow)
            for cap in caps
        ]
        if ask.limit is not None:
            caps = [*caps, Budget(ask.workflow, "total", ask.limit.amount)]  # type: ignore[arg-type]
            spent.append(book.spent(ask.limit.since, ask.workflow))
        over, near = _check(caps, spent, estimate)
        chosen, cost = ask.model, estimate
        cheap = ask.cheap
        if (over or near) and ask.cheaper and cheap and cheap != ask.model:
            # Near or over a cap with the requested model: the cheaper one, if it fits, goes instead.
            cheap_cost = ask.cost(cheap)
            cheap_over, _ = _check(caps, spent, cheap_cost)
            if cheap_cost <= estimate and cheap_over is None:
                chosen, cost, near, over = cheap, cheap_cost, near or over, None
        if over is not None:
            return _Verdict(None, over, near, estimate)
        hold = book.hold(ask.session, ask.workflow, chosen, ask.prompt_tokens, cost)
        return _Verdict(hold, None, near, estimate)

    async def _over_cap(self, verdict: _Verdict, ask: _Ask) -> Hold:
        assert verdict.over is not None
        cap, spent = verdict.over
        workflow, session = ask.workflow, ask.session
        if await self._take_once(workflow, session):
            log.info("budget: %s allowed one call over its cap on the operator's request", workflow)
            estimate = verdict.estimate

            def hold_once(book: Booking) -> _Verdict:
                held = book.hold(session, workflow, ask.model, ask.prompt_tokens, estimate)
                return _Verdict(held, None, None, estimate)

            once = await self._book(hold_once)
            assert once.hold is not None
            return once.hold
        alert = BudgetAlert("exceeded", workflow, cap, spent, verdict.estimate, session)
        first = await self._store.put_new(f"budget.open:{workflow}", {"scope": cap.scope, "period": cap.period})
        await self._db.append_event(
            "budget.blocked",
            "coo",
            {
                "workflow": workflow,
                "scope": cap.scope,
                "period": cap.period,
                "cap": cap.amount,
                "spent": round(spent, 6),
                "estimate": round(verdict.estimate, 6),
                "first": first,
            },
            session=session,
        )
        if first:
            await self._alert(alert)
        raise BudgetExceeded(alert, first)

    async def _take_once(self, workflow: str, session: str | None) -> bool:
        """Use the operator's "resume once" for ``workflow``: True if one was given and is still valid.

        It is valid until the end of the cap period it was given in (its ``until``). A lapsed one is
        dropped, and the block it would have let through counts as a new one: the operator gets the
        alert and its buttons again, rather than a silent call weeks later or a silent refusal.
        """
        key = f"budget.once:{workflow}"
        given = await self._store.get(key)
        if given is None or not await self._store.delete(key):
            return False  # none, or a concurrent call took it
        until = given.get("until") if isinstance(given, dict) else None  # older keys had no end: lapsed
        if until is not None and self._now() < datetime.fromisoformat(until):
            return True
        await self._store.delete(f"budget.open:{workflow}")
        await self._db.append_event(
            "budget.once_lapsed", "coo", {"workflow": workflow, "until": until}, session=session
        )
        return False

    async def _alert(self, alert: BudgetAlert) -> None:
        if self._on_alert is not None:
            await self._on_alert(alert)
