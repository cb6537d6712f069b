"""Paid embeddings under the budget (I5): each request to an embeddings endpoint is priced, reserved
against the caps before it is sent and settled in the cost ledger after, like a model call.

The memory layer knows only the :class:`memory.semantic.contracts.EmbeddingMeter` protocol; this is the one
the bot passes it. Embedding calls count under the workflow ``memory`` (``/budget set memory 1/day``
caps them alone; the "all" caps cover them too). A model nobody priced is priced high (see
``graph.spend.pricing``), unless the operator priced it or marked the endpoint free.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager

from graph.models.llm import estimate_tokens, failed_call
from graph.spend.budget import BudgetExceeded, BudgetGuard
from memory.db import LLMCall
from memory.ledger import CostLedger
from memory.semantic.contracts import EmbeddingRefused, EmbeddingUsage

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
            call = failed_call(exc, None, WORKFLOW, hold.model, estimate, hold.cost, latency_ms=self._ms(started))
            await asyncio.shield(self._ledger.settle(hold.id, call))
            raise
        tokens = usage.tokens if usage.tokens is not None else estimate
        cost = self._guard.prices.price(hold.model).cost(tokens, 0)
        call = LLMCall(None, WORKFLOW, hold.model, tokens, 0, usage.tokens is None, self._ms(started), "ok", cost)
        await self._ledger.settle(hold.id, call)

    def _ms(self, started: float) -> int:
        return int((self._clock() - started) * 1000)
