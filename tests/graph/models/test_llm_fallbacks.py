"""The model chain (COO_LLM__FALLBACKS): when the main endpoint fails, each fallback is tried in turn, each
with its own breaker and prices, reserved before its call (I5); one that does not fit the budget is skipped
and the operator told once; the cheap model has its own chain; the ledger says which model answered."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from graph.errors import ModelUnavailable
from graph.models.llm import LLMClient, estimate_message_tokens
from graph.models.notices import ModelNotices
from graph.settings import LLMSettings
from graph.spend.budget import BudgetExceeded, BudgetGuard
from graph.spend.pricing import PriceTable
from memory.control import Budget, ControlStore
from memory.db import Database, LLMCall, open_database
from memory.ledger import CostLedger
from tests.conftest import llm_settings
from tests.fakes.openai_api import FakeOpenAI

PRICES = PriceTable({"fake-model": (1000.0, 2000.0), "backup-model": (10.0, 20.0), "backup-cheap": (1.0, 2.0)})
HELLO = [{"role": "user", "content": "hello"}]
MAX_OUT = 1024
MAIN_ESTIMATE = PRICES.price("fake-model").cost(estimate_message_tokens(HELLO), MAX_OUT)  # about 2.06
BACKUP_ESTIMATE = PRICES.price("backup-model").cost(estimate_message_tokens(HELLO), MAX_OUT)  # about 0.02


@dataclass
class Told:
    """What the operator was told, as ``coo run`` would send it to the chat: (text, session)."""

    lines: list[tuple[str, str | None]] = field(default_factory=list)

    async def __call__(self, text: str, session: str | None) -> None:
        self.lines.append((text, session))


@dataclass
class Parts:
    client: LLMClient
    ledger: CostLedger
    store: ControlStore
    db: Database
    told: Told


def fallback(fake: FakeOpenAI, model: str = "backup-model", **extra: Any) -> dict[str, Any]:
    return {"base_url": fake.base_url, "api_key": fake.api_key, "model": model, **extra}


@asynccontextmanager
async def chain(tmp_path: Path, main: FakeOpenAI, *fallbacks: dict[str, Any], **extra: Any) -> AsyncIterator[Parts]:
    async with open_database(tmp_path) as db:
        ledger = CostLedger(db)
        await ledger.setup()
        store = ControlStore(db)
        await store.setup()
        settings = LLMSettings(**llm_settings(main, max_completion_tokens=MAX_OUT, fallbacks=list(fallbacks), **extra))
        guard = BudgetGuard(ledger, db, store, PRICES, "UTC", settings.cheap_model)
        told = Told()
        client = LLMClient(settings, ledger, PRICES, guard, notices=ModelNotices(store, told, "USD"))
        try:
            yield Parts(client, ledger, store, db, told)
        finally:
            await client.close()


def rows(calls: list[LLMCall]) -> list[tuple[str, str]]:
    return [(c.model, c.outcome) for c in calls]


async def test_a_failing_main_endpoint_falls_back_and_the_ledger_says_who_answered(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    fake_llm.fail(503, times=2)
    async with (
        FakeOpenAI(api_key="sk-backup-000000000000") as backup,
        chain(tmp_path, fake_llm, fallback(backup), max_attempts=2, breaker_failures=5) as parts,
    ):
        reply = await parts.client.chat(HELLO, session="rec:1001")
        calls = await parts.ledger.calls()
    assert reply.content == "echo: hello"
    assert (reply.model, reply.endpoint) == ("backup-model", "fallback 1")
    assert [r["model"] for r in backup.chat_requests] == ["backup-model"]
    assert backup.chat_requests[0]["_auth"] == "Bearer sk-backup-000000000000"  # its own key
    assert rows(calls) == [
        ("fake-model", "error: the model endpoint answered HTTP 503"),
        ("fake-model", "error: the model endpoint answered HTTP 503"),
        ("backup-model", "ok (fallback 1)"),
    ]
    # The main's failed attempts may have been billed (5xx): at their estimate; the fallback at its own price.
    assert [c.cost for c in calls[:2]] == [pytest.approx(MAIN_ESTIMATE)] * 2
    assert 0 < calls[2].cost < BACKUP_ESTIMATE


async def test_each_endpoint_has_its_own_breaker(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    fake_llm.fail(500, times=2)
    async with (
        FakeOpenAI() as backup,
        chain(tmp_path, fake_llm, fallback(backup), max_attempts=1, breaker_failures=2) as parts,
    ):
        for _ in range(4):
            assert (await parts.client.chat(HELLO)).endpoint == "fallback 1"
        assert parts.client.breaker.state == "open" and parts.client.available()
    # Two failures opened the main's breaker: the next two calls went straight to the fallback.
    assert len(fake_llm.chat_requests) == 2 and len(backup.chat_requests) == 4


async def test_a_fallback_that_does_not_fit_the_budget_is_skipped_and_the_operator_told_once(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    async with FakeOpenAI() as gone:
        pass  # closed: connections are refused (free: the request never went out)
    async with FakeOpenAI() as pricey, FakeOpenAI() as cheap:
        endpoints = (fallback(pricey, "fake-model"), fallback(cheap))  # fake-model's estimate is ~2.06
        async with chain(tmp_path, gone, *endpoints, max_attempts=1, model="backup-cheap") as parts:
            await parts.store.set_budget(Budget("all", "day", 1.0))
            first = await parts.client.chat(HELLO, session="rec:1001")
            second = await parts.client.chat(HELLO, session="rec:1001")
            calls = await parts.ledger.calls()
            paused = await parts.store.get("budget.open:chat")
    assert (first.endpoint, second.endpoint) == ("fallback 2", "fallback 2")
    assert pricey.chat_requests == [] and len(cheap.chat_requests) == 2
    assert len(parts.told.lines) == 1
    text, session = parts.told.lines[0]
    assert session == "rec:1001"
    assert "fake-model (fallback 1)" in text and "USD" in text and "daily budget" in text
    assert paused is None  # a skipped fallback does not pause the workflow at its cap
    assert sum(c.cost for c in calls) <= 1.0


async def test_the_main_endpoint_over_budget_blocks_and_no_fallback_is_tried(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    async with FakeOpenAI() as backup, chain(tmp_path, fake_llm, fallback(backup)) as parts:
        await parts.store.set_budget(Budget("chat", "day", 1.0))
        with pytest.raises(BudgetExceeded):
            await parts.client.chat(HELLO)
    assert fake_llm.chat_requests == [] and backup.chat_requests == []


async def test_the_cheap_model_has_its_own_chain(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    fake_llm.fail(503, times=2)
    async with FakeOpenAI() as backup, FakeOpenAI() as second:
        endpoints = (fallback(backup, cheap_model="backup-cheap"), fallback(second))
        async with chain(tmp_path, fake_llm, *endpoints, max_attempts=1, cheap_model="fake-cheap") as parts:
            cheap = await parts.client.chat(HELLO, workflow="memory", model="fake-cheap")
            backup.fail(503)
            served = await parts.client.chat(HELLO, workflow="memory", model="fake-cheap")
            main = await parts.client.chat(HELLO)
    assert [r["model"] for r in fake_llm.chat_requests] == ["fake-cheap", "fake-cheap", "fake-model"]
    assert (cheap.model, cheap.endpoint) == ("backup-cheap", "fallback 1")
    # A fallback without a cheap model serves the cheap tier with its model.
    assert (served.model, served.endpoint) == ("backup-model", "fallback 2")
    assert (main.model, main.endpoint) == ("fake-model", "main")


async def test_when_every_endpoint_fails_it_is_offline_mode_told_once(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    async with FakeOpenAI() as backup:
        fake_llm.default = backup.default = None
        fake_llm.fail(503, times=10)
        backup.fail(429, times=10)
        async with chain(tmp_path, fake_llm, fallback(backup), max_attempts=2, breaker_failures=10) as parts:
            with pytest.raises(ModelUnavailable) as caught:
                await parts.client.chat(HELLO)
            assert parts.client.take_outage_notice() and not parts.client.take_outage_notice()
            calls = await parts.ledger.calls()
    assert "HTTP 503" in str(caught.value) and "fallback 1 (backup-model): " in str(caught.value)
    assert len(fake_llm.chat_requests) == 2 and len(backup.chat_requests) == 2
    assert [c.cost for c in calls[2:]] == [0.0, 0.0]  # 429: refused, not run


async def test_a_slow_main_endpoint_times_out_and_the_fallback_answers(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    fake_llm.reply("too late", delay_s=3.0)
    async with (
        FakeOpenAI() as backup,
        chain(tmp_path, fake_llm, fallback(backup), max_attempts=1, timeout_s=0.3) as parts,
    ):
        reply = await parts.client.chat(HELLO)
        calls = await parts.ledger.calls()
    assert (reply.content, reply.endpoint) == ("echo: hello", "fallback 1")
    assert rows(calls)[0] == ("fake-model", "error: the model did not answer in time")
    assert calls[0].cost == pytest.approx(MAIN_ESTIMATE)  # it may have run and been billed


async def test_a_free_fallback_is_free_and_the_main_endpoint_is_not(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    fake_llm.fail(503)
    async with (
        FakeOpenAI() as local,
        chain(tmp_path, fake_llm, fallback(local, "llama3.1:8b", free=True), max_attempts=1) as parts,
    ):
        reply = await parts.client.chat(HELLO)
        calls = await parts.ledger.calls()
    assert (reply.model, reply.endpoint, reply.cost) == ("llama3.1:8b", "fallback 1", 0.0)
    assert calls[0].cost == pytest.approx(MAIN_ESTIMATE) and calls[1].cost == 0.0
    assert parts.told.lines == []  # free by the operator's word: no "no known price" line
