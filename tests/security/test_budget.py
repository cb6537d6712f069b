"""I5: the estimated cost is reserved before each call (concurrent calls cannot overshoot together), and a
model is priced by its name whatever the endpoint's address; an unpriceable call is never free."""

from __future__ import annotations

import asyncio
from pathlib import Path

from bot.runtime import open_runtime
from tests.conftest import RecordingChannel, llm_settings, make_settings, operator_message
from tests.fakes.openai_api import FakeOpenAI, Scripted
from tests.fakes.polling import eventually_async

# Costs big enough to see: one call of ~1,500 prompt tokens and 16 completion tokens is about 1.5.
PRICES = {"fake-model": [1000.0, 2000.0]}


async def test_twenty_chats_at_once_cannot_spend_past_a_cap_that_fits_one_call(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    fake_llm.default = Scripted(content="ok")
    fake_llm.gate = asyncio.Event()  # the model answers nobody until every chat has tried
    settings = make_settings(tmp_path, llm=llm_settings(fake_llm, prices=PRICES, max_completion_tokens=16))
    async with open_runtime(settings, console=False) as rt:
        chan = RecordingChannel("rec")
        rt.dispatcher.attach(chan)
        await rt.dispatcher.handle(operator_message("/budget set chat 2/day", kind="command"))
        messages = [operator_message(f"quick question {i}") for i in range(20)]
        chats = [m.__class__(**{**m.__dict__, "chat_id": f"-10{i}"}) for i, m in enumerate(messages)]
        turns = [asyncio.create_task(rt.dispatcher.handle(m)) for m in chats]
        # Every chat has either a call in flight at the model or was stopped by the budget: only then may
        # the model answer (before the fix, all 20 were in flight together).
        blocked: list[object] = []

        async def tried() -> bool:
            blocked[:] = await rt.db.events(kind="budget.blocked")
            return len(fake_llm.chat_requests) + len(blocked) >= 20

        await eventually_async(tried, timeout=30, what="every chat to try")
        fake_llm.gate.set()
        await asyncio.gather(*turns)
        calls = await rt.ledger.calls()
        holds = await rt.db.fetchall("SELECT COUNT(*) FROM budget_holds")
    assert len(fake_llm.chat_requests) == 1 and len(blocked) == 19  # before: all 20 went through at once
    assert sum(c.cost for c in calls) <= 2.0 and holds == [(0,)]
    blocked = [m for m in chan.sent if "budget" in m.text.lower() and m.chat_id.startswith("-10")]
    assert len(blocked) == 19


async def test_a_known_model_behind_a_private_gateway_is_not_free(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    # The fake answers on 127.0.0.1, as a LiteLLM or company gateway on 10.x would: the price follows the model.
    llm = llm_settings(fake_llm, model="gpt-4o-mini")
    settings = make_settings(tmp_path, llm=llm)
    async with open_runtime(settings, console=False) as rt:
        chan = RecordingChannel("rec")
        rt.dispatcher.attach(chan)
        for i in range(5):
            await rt.dispatcher.handle(operator_message(f"hello {i}"))
        await rt.dispatcher.handle(operator_message("/spend", kind="command"))
        spent = sum(c.cost for c in await rt.ledger.calls())
    assert spent > 0 and "today: 0.00 USD" not in chan.sent[-1].text
    # A cap this call cannot fit (20,000 completion tokens at gpt-4o-mini's price is 0.012) stops it.
    settings = make_settings(tmp_path / "capped", llm={**llm, "max_completion_tokens": 20_000})
    async with open_runtime(settings, console=False) as rt:
        chan = RecordingChannel("rec")
        rt.dispatcher.attach(chan)
        await rt.dispatcher.handle(operator_message("/budget set daily 0.01", kind="command"))
        before = len(fake_llm.chat_requests)
        await rt.dispatcher.handle(operator_message("one more"))
    assert len(fake_llm.chat_requests) == before and chan.sent[-1].text.startswith("Budget reached")


async def test_an_unknown_model_is_priced_high_and_free_only_when_the_operator_says_so(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    settings = make_settings(tmp_path, llm=llm_settings(fake_llm, model="my-local-llama"))
    async with open_runtime(settings, console=False) as rt:
        rt.dispatcher.attach(RecordingChannel("rec"))
        await rt.dispatcher.handle(operator_message("/budget set daily 0.01", kind="command"))
        await rt.dispatcher.handle(operator_message("hi"))
    assert fake_llm.chat_requests == []  # no price known: assumed dear, so a small cap holds
    settings = make_settings(tmp_path / "free", llm=llm_settings(fake_llm, model="my-local-llama", free=True))
    async with open_runtime(settings, console=False) as rt:
        rt.dispatcher.attach(RecordingChannel("rec"))
        await rt.dispatcher.handle(operator_message("/budget set daily 0.01", kind="command"))
        await rt.dispatcher.handle(operator_message("hi"))
        calls = await rt.ledger.calls()
    assert len(fake_llm.chat_requests) == 1 and calls[0].cost == 0


async def test_an_amount_below_a_cent_is_refused_with_the_reason(tmp_path: Path) -> None:
    async with open_runtime(make_settings(tmp_path), console=False) as rt:
        chan = RecordingChannel("rec")
        rt.dispatcher.attach(chan)
        await rt.dispatcher.handle(operator_message("/budget set daily 0.0001", kind="command"))
        budgets = await rt.control.budgets()
    assert "more than two decimals" in chan.sent[-1].text and budgets == []
