"""I5: what a failed or interrupted model call costs. An attempt the provider may have processed counts at
its estimate, each retry holds its own reservation (so a cap stops the retries), a hold is settled at most
once; and every tool call of every answer gets an id of its own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from graph.errors import ModelUnavailable
from graph.models.llm import LLMClient, estimate_message_tokens
from graph.settings import LLMSettings
from graph.spend.budget import BudgetExceeded, BudgetGuard
from graph.spend.pricing import PriceTable
from memory.control import Budget, ControlStore
from memory.db import Database, LLMCall, open_database
from memory.ledger import CostLedger
from tests.conftest import llm_settings, paused_before
from tests.fakes.openai_api import FakeOpenAI, Scripted
from tests.fakes.polling import eventually

# 1000 per million prompt tokens, 2000 per million completion tokens: one attempt at its estimate
# (a short prompt and 1,024 completion tokens) costs about 2.06.
PRICES = PriceTable({"fake-model": (1000.0, 2000.0)})
HELLO = [{"role": "user", "content": "hello"}]
MAX_OUT = 1024
ESTIMATE = PRICES.price("fake-model").cost(estimate_message_tokens(HELLO), MAX_OUT)


@dataclass
class Parts:
    client: LLMClient
    ledger: CostLedger
    store: ControlStore
    db: Database


@asynccontextmanager
async def model_client(tmp_path: Path, fake: FakeOpenAI, **extra: Any) -> AsyncIterator[Parts]:
    """An LLMClient with its ledger and budget guard on a database of its own."""
    async with open_database(tmp_path) as db:
        ledger = CostLedger(db)
        await ledger.setup()
        store = ControlStore(db)
        await store.setup()
        guard = BudgetGuard(ledger, db, store, PRICES, "UTC", None)
        settings = LLMSettings(**llm_settings(fake, max_completion_tokens=MAX_OUT, **extra))
        client = LLMClient(settings, ledger, PRICES, guard)
        try:
            yield Parts(client, ledger, store, db)
        finally:
            await client.close()


async def holds(db: Database) -> int:
    return int((await db.fetchone("SELECT COUNT(*) FROM budget_holds"))[0])


async def test_a_timed_out_attempt_counts_at_its_estimate_and_the_cap_stops_the_retries(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    fake_llm.gate = asyncio.Event()  # the endpoint got the request and is still working on it (and billing it)
    try:
        async with model_client(tmp_path, fake_llm, max_attempts=3, timeout_s=0.2) as parts:
            await parts.store.set_budget(Budget("chat", "day", 3.0))  # room for one attempt at its estimate
            with pytest.raises(BudgetExceeded):
                await parts.client.chat(HELLO)
            calls = await parts.ledger.calls()
            left = await holds(parts.db)
    finally:
        fake_llm.gate.set()
    # Before: three requests, each recorded at cost 0, and the cap never stopped a retry.
    assert len(fake_llm.chat_requests) == 1
    assert [c.outcome for c in calls] == ["error: the model did not answer in time"]
    assert calls[0].cost == pytest.approx(ESTIMATE) and calls[0].estimated
    assert left == 0


async def test_only_failures_the_provider_never_ran_are_free(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    fake_llm.fail(429)  # refused before it ran: free
    fake_llm.fail(503)  # the endpoint took it and failed: it may have run, it counts
    fake_llm.script.append(Scripted(drop=True))  # the connection was lost after the request went out: it counts
    fake_llm.reply("made it")
    async with model_client(tmp_path, fake_llm, max_attempts=4, breaker_failures=5) as parts:
        reply = await parts.client.chat(HELLO)
        calls = await parts.ledger.calls()
        left = await holds(parts.db)
    assert reply.content == "made it" and len(fake_llm.chat_requests) == 4
    assert [c.outcome for c in calls] == [
        "error: the model endpoint answered HTTP 429",
        "error: the model endpoint answered HTTP 503",
        "error: cannot connect to the model endpoint",
        "ok",
    ]
    assert [c.cost for c in calls[:3]] == [0.0, pytest.approx(ESTIMATE), pytest.approx(ESTIMATE)]
    assert 0 < calls[3].cost < ESTIMATE and left == 0


async def test_a_connection_never_made_and_a_4xx_are_free(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    fake_llm.fail(400)
    async with model_client(tmp_path, fake_llm, max_attempts=2) as parts:
        with pytest.raises(ModelUnavailable):
            await parts.client.chat(HELLO)
        assert [(c.outcome, c.cost) for c in await parts.ledger.calls()] == [
            ("error: the model endpoint answered HTTP 400", 0.0)
        ]
    async with FakeOpenAI() as gone:
        pass  # closed now: connections to it are refused
    async with model_client(tmp_path / "refused", gone, max_attempts=2) as parts:
        with pytest.raises(ModelUnavailable):
            await parts.client.chat(HELLO)
        calls = await parts.ledger.calls()
        left = await holds(parts.db)
    assert [(c.outcome, c.cost) for c in calls] == [("error: cannot connect to the model endpoint", 0.0)] * 2
    assert left == 0


async def test_a_call_cancelled_while_its_settle_is_written_is_recorded_once(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    async with model_client(tmp_path, fake_llm) as parts:
        async with paused_before(parts.db.connection, "DELETE FROM budget_holds") as settling:
            task = asyncio.create_task(parts.client.chat(HELLO))
            await settling.wait()  # the answer came; its settle is being written
            task.cancel()  # e.g. shutdown: Dispatcher.drain() cancels what is still running
        with pytest.raises(asyncio.CancelledError):
            await task
        calls = await parts.ledger.calls()
        left = await holds(parts.db)
    # Before: the settle was committed, then the hold was settled again at its estimate: two rows.
    assert [c.outcome for c in calls] == ["ok"] and left == 0


async def test_a_hold_is_settled_at_most_once(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    async with model_client(tmp_path, fake_llm) as parts:
        hold = await parts.ledger.book(lambda book: book.hold("s", "chat", "fake-model", 10, 1.0))
        first = await parts.ledger.settle(hold.id, _call("ok", 0.5))
        again = await parts.ledger.settle(hold.id, _call("unknown: interrupted", 1.0))
        released = await parts.ledger.book(lambda book: book.hold("s", "chat", "fake-model", 10, 1.0))
        await parts.ledger.release(released.id)
        after_release = await parts.ledger.settle(released.id, _call("unknown: interrupted", 1.0))
        calls = await parts.ledger.calls()
    assert (first, again, after_release) == (True, False, False)
    assert [(c.outcome, c.cost) for c in calls] == [("ok", 0.5)]


def _call(outcome: str, cost: float) -> LLMCall:
    return LLMCall("s", "chat", "fake-model", 10, 0, True, 0, outcome, cost)


async def test_every_tool_call_of_every_answer_gets_an_id_of_its_own(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    # LM Studio sends empty ids; other endpoints repeat them.
    calls = [("draft_email", {"to": "a"}), ("draft_email", {"to": "b"}), ("remember", {"fact": "c"})]
    fake_llm.script.append(Scripted(tool_calls=calls, call_ids=["", "", "send_email:0"]))
    fake_llm.script.append(Scripted(tool_calls=calls, call_ids=["send_email:0", "send_email:0", ""]))
    async with model_client(tmp_path, fake_llm) as parts:
        first = await parts.client.chat(HELLO)
        second = await parts.client.chat(HELLO)
    ids = [[c.id for c in reply.tool_calls] for reply in (first, second)]
    assert [len(i) for i in ids] == [3, 3] and all(ids[0]) and all(ids[1])
    assert len(set(ids[0])) == 3 and len(set(ids[1])) == 3  # distinct within each answer
    assert ids[0][2] == "send_email:0" and ids[1][0] == "send_email:0"  # a usable id is kept
    fresh = {*ids[0][:2], *ids[1][1:]}
    assert len(fresh) == 4 and "send_email:0" not in fresh  # the fresh ones are unique across answers too
    message = second.as_message()
    assert [c["id"] for c in message["tool_calls"]] == ids[1]


async def test_a_probe_cancelled_mid_call_lets_the_next_call_probe(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    """A half-open breaker's one probe, cancelled (a shutdown, a dropped turn), gives no verdict: the next
    call must probe, not be refused until a restart."""
    now = [0.0]
    fake_llm.fail(500)
    async with open_database(tmp_path) as db:
        ledger = CostLedger(db)
        await ledger.setup()
        settings = LLMSettings(**llm_settings(fake_llm, max_attempts=1, breaker_failures=1, offline_cooldown_s=30))
        client = LLMClient(settings, ledger, PRICES, clock=lambda: now[0])
        try:
            with pytest.raises(ModelUnavailable):
                await client.chat(HELLO)
            assert client.breaker.state == "open"
            now[0] += 31  # half-open: one probe may go
            fake_llm.gate = asyncio.Event()  # the probe's request waits at the fake
            probe = asyncio.create_task(client.chat(HELLO))
            await eventually(lambda: len(fake_llm.arrivals) == 2)
            probe.cancel()
            with pytest.raises(asyncio.CancelledError):
                await probe
            fake_llm.gate.set()
            reply = await client.chat(HELLO)
        finally:
            await client.close()
    assert reply.content == "echo: hello" and client.breaker.state == "closed"
