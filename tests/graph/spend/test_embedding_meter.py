"""I5 for paid embeddings: priced by the catalog, never the cheap chat model, failures billed or not."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import openai
import pytest

from graph.spend.budget import BudgetGuard
from graph.spend.embedding_meter import BudgetedEmbeddings
from graph.spend.pricing import UNKNOWN_MODEL_USD, Price, PriceTable
from memory.control import Budget, ControlStore
from memory.db import Database, open_database
from memory.ledger import CostLedger
from memory.semantic.embedder import OpenAIEmbedder
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.polling import eventually


def test_openai_embedding_models_are_priced_from_the_catalog() -> None:
    table = PriceTable({})
    assert table.price("text-embedding-3-small") == Price(0.02, 0.0)  # before: unknown, priced 15/75 USD
    assert table.price("text-embedding-3-large") == Price(0.13, 0.0)
    assert table.price("text-embedding-ada-002") == Price(0.10, 0.0)
    assert table.price("text-embedding-unknown") == Price(*UNKNOWN_MODEL_USD)  # never free by guess
    assert PriceTable({}, free=True).price("nomic-embed-text") == Price(0.0, 0.0)


@asynccontextmanager
async def metered(
    tmp_path: Path, llm: FakeOpenAI, prices: PriceTable, api_key: str | None = None
) -> AsyncIterator[tuple[OpenAIEmbedder, CostLedger, ControlStore, Database]]:
    async with open_database(tmp_path) as db:
        ledger = CostLedger(db)
        await ledger.setup()
        store = ControlStore(db)
        await store.setup()
        guard = BudgetGuard(ledger, db, store, prices, "UTC", "cheap-model")
        client = openai.AsyncOpenAI(base_url=llm.base_url, api_key=api_key or llm.api_key, max_retries=0)
        embedder = OpenAIEmbedder(
            client, "text-embedding-3-small", owns_client=True, meter=BudgetedEmbeddings(guard, ledger)
        )
        try:
            yield embedder, ledger, store, db
        finally:
            await embedder.aclose()


async def test_near_a_cap_an_embedding_is_not_switched_to_the_cheap_chat_model(tmp_path: Path) -> None:
    prices = PriceTable({"text-embedding-3-small": (1000.0, 0.0), "cheap-model": (1.0, 1.0)})
    async with FakeOpenAI() as llm, metered(tmp_path, llm, prices) as (embedder, ledger, store, _):
        await store.set_budget(Budget("memory", "day", 0.01))  # one ~10-token request holds 0.01: at the cap
        await embedder.embed_passages(["Acme pays net 45 on every invoice"])
        calls = await ledger.calls()
    assert [r["model"] for r in llm.requests] == ["text-embedding-3-small"]
    assert [(c.workflow, c.model, c.outcome) for c in calls] == [("memory", "text-embedding-3-small", "ok")]


async def test_a_refused_request_is_free_and_leaves_no_hold(tmp_path: Path) -> None:
    prices = PriceTable({"text-embedding-3-small": (1000.0, 0.0)})
    async with FakeOpenAI() as llm, metered(tmp_path, llm, prices, api_key="sk-wrong") as (embedder, ledger, _, db):
        with pytest.raises(openai.AuthenticationError):
            await embedder.embed_query("what did Acme agree to?")
        calls = await ledger.calls()
        left = (await db.fetchone("SELECT COUNT(*) FROM budget_holds"))[0]
    # a 401 was refused, not run: recorded, at no cost, and nothing stays held against the cap
    assert [(c.workflow, c.outcome, c.cost) for c in calls] == [
        ("memory", "error: the model endpoint answered HTTP 401", 0.0)
    ]
    assert left == 0


async def test_a_request_the_provider_may_have_run_is_billed_at_its_estimate(tmp_path: Path) -> None:
    """A 5xx, or a call cancelled while the endpoint works on it, may have been billed: it counts at the held
    estimate and nothing stays held (a free failure here would let paid embeddings escape the caps)."""
    prices = PriceTable({"text-embedding-3-small": (1000.0, 0.0)})
    async with FakeOpenAI() as llm, metered(tmp_path, llm, prices) as (embedder, ledger, _, db):
        llm.embedding_failures.append(503)
        with pytest.raises(openai.InternalServerError):
            await embedder.embed_query("what did Acme agree to?")
        llm.gate = asyncio.Event()
        cancelled = asyncio.create_task(embedder.embed_query("when does Globex renew?"))
        await eventually(lambda: len(llm.requests) == 2, what="the second request at the endpoint")
        cancelled.cancel()
        with pytest.raises(asyncio.CancelledError):
            await cancelled
        llm.gate.set()
        calls = await ledger.calls()
        left = (await db.fetchone("SELECT COUNT(*) FROM budget_holds"))[0]
    assert [c.outcome for c in calls] == ["error: the model endpoint answered HTTP 503", "unknown: interrupted"]
    assert all(c.cost > 0 and c.cost == prices.price("text-embedding-3-small").cost(c.prompt_tokens, 0) for c in calls)
    assert left == 0
