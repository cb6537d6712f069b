"""What the operator must hear about the models once, in the chat rather than only in coo.log: a model
with no known price (counted high, I5), a fallback skipped because its estimate does not fit a cap, and an
endpoint that cuts prompts to its context window."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from graph.models.fallbacks import prices_in_use
from graph.settings import LLMSettings
from graph.spend.budget import BudgetAlert
from graph.spend.pricing import UNPRICED, Price, PriceTable
from memory.control import ControlStore
from prompts.messages import FALLBACK_SKIPPED, PRICE_IN_USE, PRICE_SOURCES, PROMPT_CUT, UNPRICED_MODEL

log = logging.getLogger(__name__)

Notify = Callable[[str, str | None], Awaitable[None]]
"""Sends one line to the conversation ``session`` (None: the operators' own chats), outside any turn's reply."""


def price_text(label: str, model: str, price: Price, currency: str) -> str:
    """``llama3.1:8b (main): 15.00/75.00 USD per million tokens in/out, no known price, …``."""
    return PRICE_IN_USE.format(
        model=model,
        label=label,
        input=_amount(price.input_per_m),
        output=_amount(price.output_per_m),
        currency=currency,
        source=PRICE_SOURCES.get(price.source, price.source),
    )


_PERIOD_WORDS = {"day": "daily", "week": "weekly", "month": "monthly", "total": "goal's"}


def _amount(value: float) -> str:
    return f"{value:.2f}" if value >= 0.01 or value == 0 else f"{value:.4f}"


class ModelNotices:
    """Tells the operator, once, how an unpriced model is counted and that a fallback was skipped."""

    def __init__(self, store: ControlStore, notify: Notify, currency: str) -> None:
        self._store = store
        self._notify = notify
        self._currency = currency
        self._checked: set[tuple[str, bool]] = set()
        self._skipped: set[str] = set()

    async def first_use(self, model: str, prices: PriceTable, session: str | None) -> None:
        """Before a call to ``model``: if nobody priced it, tell the operator how it is counted (once per
        model, for good: the store remembers it across restarts)."""
        if (model, prices.free) in self._checked:
            return
        self._checked.add((model, prices.free))
        price = prices.price(model)
        if price.source != UNPRICED or not await self._store.put_new(f"llm.unpriced_told:{model}", True):
            return
        text = UNPRICED_MODEL.format(
            model=model,
            input=_amount(price.input_per_m),
            output=_amount(price.output_per_m),
            currency=self._currency,
        )
        await self._send(text, session)

    async def skipped(self, label: str, model: str, alert: BudgetAlert) -> None:
        """A fallback was not called: its estimate does not fit ``alert``'s cap. Told once until it fits again."""
        if label in self._skipped:
            return
        self._skipped.add(label)
        cap = alert.budget
        left = max(0.0, cap.amount - alert.spent)
        text = FALLBACK_SKIPPED.format(
            model=model,
            label=label,
            estimate=f"{alert.estimate:.4f} {self._currency}",
            period=_PERIOD_WORDS.get(cap.period, cap.period),
            left=f"{left:.4f} {self._currency}",
        )
        log.warning("model %s (%s) skipped: its estimate does not fit the %s cap", model, label, cap.period)
        await self._send(text, alert.session)

    async def prompt_cut(self, model: str, counted: int, estimate: int, session: str | None) -> None:
        """``model``'s endpoint counted far fewer prompt tokens than were sent (it cut the prompt): tell the
        operator how to raise its context, once per model for good (the store remembers it across restarts)."""
        if not await self._store.put_new(f"llm.prompt_cut_told:{model}", True):
            return
        await self._send(PROMPT_CUT.format(model=model, counted=counted, estimate=estimate), session)

    def fits(self, label: str) -> None:
        """A call on ``label`` fitted the budget again: a later skip is told again."""
        self._skipped.discard(label)

    async def _send(self, text: str, session: str | None) -> None:
        try:
            await self._notify(text, session)
        except Exception:
            # A notice that cannot be sent must not fail the model call it is about; it is logged once.
            log.exception("could not send a model notice")


def price_lines(settings: LLMSettings, prices: PriceTable, currency: str) -> list[str]:
    """One line per model of the chain with the price its calls are counted at (reads the price catalog on its
    first use: call it off the event loop)."""
    return [price_text(p.label, p.model, p.price, currency) for p in prices_in_use(settings, prices)]
