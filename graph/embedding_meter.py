"""Paid embeddings under the budget (I5): each request to an embeddings endpoint is priced, reserved
against the caps before it is sent and settled in the cost ledger after, like a model call.

The memory layer knows only the :class:`memory.embedder.EmbeddingMeter` protocol; this is the one
the bot passes it. Embedding calls count under the workflow ``memory`` (``/budget set memory 1/day``
caps them alone; the "all" caps cover them too). A model nobody priced is priced high (see
``graph.pricing``), unless the operator priced it or marked the endpoint free.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

import openai

from graph.budget import BudgetExceeded, BudgetGuard
from graph.llm import describe_failure, estimate_tokens, maybe_processed
from memory.db import LLMCall
from memory.embedder import EmbeddingRefused, EmbeddingUsage
from memory.ledger import CostLedger, Hold

WORKFLOW = "memory"


class BudgetedEmbeddings:
    """Meters embedding requests with the budget guard and the cost ledger (an ``EmbeddingMeter``)."""

    def __init__(self, guard: BudgetGuard, ledger: CostLedger, clock: Callable[[], float] = time.monotonic) -> None:
        self._guard = guard
        self._ledger = ledger
        self._clock = clock

    @asynccontextmanager
    async def call(self, model: str, texts: Sequence[str]) -> AsyncIterator[EmbeddingUsage]:
        """Reserve the request's estimated cost; settle it with the usage the caller fills in.

        Raises :class:`EmbeddingRefused` (nothing held, nothing sent) when a cap refuses it.
        """
        estimate = sum(estimate_tokens(text) for text in texts)
        try:
            # No completion tokens; never the cheap chat model instead (it cannot embed).
            hold = await self._guard.reserve(WORKFLOW, model, estimate, 0, None, cheaper=False)
        except BudgetExceeded as exc:
            raise EmbeddingRefused(str(exc)) from exc
        usage = EmbeddingUsage()
        started = self._clock()
        try:
            yield usage
        except BaseException as exc:
            await asyncio.shield(self._ledger.settle(hold.id, self._failed(hold, estimate, started, exc)))
            raise
        tokens = usage.tokens if usage.tokens is not None else estimate
        cost = self._guard.prices.price(hold.model).cost(tokens, 0)
        call = LLMCall(None, WORKFLOW, hold.model, tokens, 0, usage.tokens is None, self._ms(started), "ok", cost)
        await self._ledger.settle(hold.id, call)

    def _failed(self, hold: Hold, estimate: int, started: float, exc: BaseException) -> LLMCall:
        """The ledger row of a failed request: free only when it certainly was not processed."""
        if isinstance(exc, openai.APIError):
            cost = hold.cost if maybe_processed(exc) else 0.0
            outcome = f"error: {describe_failure(exc)}"
        else:
            # Cancelled, or the answer could not be read: it may have been billed.
            cost, outcome = hold.cost, "unknown: interrupted"
        return LLMCall(None, WORKFLOW, hold.model, estimate, 0, True, self._ms(started), outcome, cost)

    def _ms(self, started: float) -> int:
        return int((self._clock() - started) * 1000)
