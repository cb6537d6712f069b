"""I5: budgets are checked before each model call; cost from usage; breakers."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.runtime import open_runtime
from connectors.breaker import CircuitBreaker
from graph.spend.pricing import Price, PriceTable
from tests.conftest import ManualClock, RecordingChannel, llm_settings, make_settings, operator_message
from tests.fakes.openai_api import FakeOpenAI

# 1000 per million input tokens, 2000 per million output tokens: costs big enough to see.
PRICES = {"fake-model": [1000.0, 2000.0], "cheap-model": [10.0, 20.0]}


def test_cost_arithmetic_and_prices_by_model_name() -> None:
    assert Price(0.15, 0.60).cost(1_000_000, 0) == pytest.approx(0.15)
    assert Price(0.15, 0.60).cost(2000, 500) == pytest.approx(0.0006)
    table = PriceTable({})
    assert table.price("gpt-4o-mini") == Price(0.15, 0.60)
    assert table.price("gpt-4o-mini-2024-07-18") == Price(0.15, 0.60)
    unknown = table.price("some-unknown-model")
    assert unknown.input_per_m >= 15 and unknown.output_per_m >= 75  # unknown: assumed dear, never free
    assert table.price("llama3.1:8b").input_per_m > 0  # a local model is free only when the operator says so
    assert PriceTable({}, free=True).price("gpt-4o") == Price(0, 0)
    assert PriceTable({"m": (1.0, 2.0)}, free=True).price("m") == Price(1.0, 2.0)
    assert PriceTable({}, usd_rate=0.9).price("gpt-4o") == Price(2.25, 9.0)


async def test_cost_is_recorded_from_usage(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    settings = make_settings(tmp_path, llm=llm_settings(fake_llm, prices=PRICES))
    async with open_runtime(settings, console=False) as rt:
        rt.dispatcher.attach(RecordingChannel("rec"))
        await rt.dispatcher.handle(operator_message("hello"))
        call = (await rt.ledger.calls())[0]
        event = (await rt.db.events(kind="llm.call"))[0]
    assert call.cost == pytest.approx((call.prompt_tokens * 1000 + call.completion_tokens * 2000) / 1e6)
    assert event.payload["cost"] == call.cost and call.workflow == "chat" and call.latency_ms >= 0


async def test_capped_workflow_makes_zero_calls_and_asks_once(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    settings = make_settings(tmp_path, llm=llm_settings(fake_llm, prices=PRICES))
    async with open_runtime(settings, console=False) as rt:
        chan = RecordingChannel("rec")
        rt.dispatcher.attach(chan)
        await rt.dispatcher.handle(operator_message("/budget set chat 0.5/day", kind="command"))
        assert chan.sent[-1].text.startswith("Budget set: chat: 0.50 USD a day")
        await rt.dispatcher.handle(operator_message("hi"))  # estimate: >1000 tokens * 1000/M + 1024 * 2000/M > 0.5
        assert fake_llm.chat_requests == []
        alert = chan.sent[-1]
        assert alert.text.startswith("Budget reached: the chat workflow") and len(alert.buttons) == 3
        await rt.dispatcher.handle(operator_message("hi again"))
        assert fake_llm.chat_requests == []
        assert "at its day cap" in chan.sent[-1].text and not chan.sent[-1].buttons  # one alert only
        blocked = await rt.db.events(kind="budget.blocked")
        assert len(blocked) == 2 and blocked[0].payload["first"] and not blocked[1].payload["first"]
        # "Resume once": exactly one call goes through, then it is blocked again
        await rt.dispatcher.handle(operator_message("", kind="callback", data=alert.buttons[1].data))
        await rt.dispatcher.handle(operator_message("one more"))
        assert len(fake_llm.chat_requests) == 1
        await rt.dispatcher.handle(operator_message("and another"))
        assert len(fake_llm.chat_requests) == 1
        # "Raise": the cap grows by a step; still too small for this call
        await rt.dispatcher.handle(operator_message("", kind="callback", data=alert.buttons[0].data))
        assert chan.sent[-1].text.startswith("Raised: chat: 1.50 USD a day")
        await rt.dispatcher.handle(operator_message("/budget set chat 100/day", kind="command"))
        await rt.dispatcher.handle(operator_message("now it works"))
        assert len(fake_llm.chat_requests) == 2 and chan.sent[-1].text == "echo: now it works"
        await rt.dispatcher.handle(operator_message("/budget off chat", kind="command"))
        assert chan.sent[-1].text.startswith("Budget for chat removed.")


async def test_a_call_that_fits_again_lets_the_next_block_alert_again(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    # The global cap blocks the chat workflow ("budget.open:chat"); raising that cap clears only
    # "budget.open:all". The reservation of the next call that fits clears "budget.open:chat" in its own
    # transaction, so a later block is a new one: the operator hears of it again, with the buttons.
    settings = make_settings(tmp_path, llm=llm_settings(fake_llm, prices=PRICES))
    async with open_runtime(settings, console=False) as rt:
        chan = RecordingChannel("rec")
        rt.dispatcher.attach(chan)
        await rt.dispatcher.handle(operator_message("/budget set weekly 0.1", kind="command"))
        await rt.dispatcher.handle(operator_message("hi"))
        assert chan.sent[-1].text.startswith("Budget reached") and await rt.control.get("budget.open:chat")
        await rt.dispatcher.handle(operator_message("/budget set weekly 100", kind="command"))
        assert await rt.control.get("budget.open:chat")  # the command clears its own scope only
        await rt.dispatcher.handle(operator_message("now it fits"))
        assert chan.sent[-1].text == "echo: now it fits" and await rt.control.get("budget.open:chat") is None
        await rt.dispatcher.handle(operator_message("/budget set weekly 0.1", kind="command"))
        await rt.dispatcher.handle(operator_message("blocked again"))
        blocked = await rt.db.events(kind="budget.blocked")
    assert len(fake_llm.chat_requests) == 1
    assert chan.sent[-1].text.startswith("Budget reached") and len(chan.sent[-1].buttons) == 3
    assert [e.payload["first"] for e in blocked] == [True, True]


async def test_global_cap_blocks_every_workflow(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    settings = make_settings(tmp_path, llm=llm_settings(fake_llm, prices=PRICES))
    async with open_runtime(settings, console=False) as rt:
        chan = RecordingChannel("rec")
        rt.dispatcher.attach(chan)
        await rt.dispatcher.handle(operator_message("/budget set weekly 0.1", kind="command"))
        await rt.dispatcher.handle(operator_message("hi"))
        await rt.dispatcher.handle(
            operator_message("/digest", kind="command")
        )  # the digest's suggestion is a model call too
    assert fake_llm.chat_requests == []
    assert chan.sent[1].text.startswith("Budget reached: all work")


async def test_near_cap_warns_once_and_switches_to_cheap_model(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    llm = llm_settings(fake_llm, prices=PRICES, cheap_model="cheap-model", max_completion_tokens=16)
    settings = make_settings(tmp_path, llm=llm)
    async with open_runtime(settings, console=False) as rt:
        chan = RecordingChannel("rec")
        rt.dispatcher.attach(chan)
        await rt.dispatcher.handle(operator_message("/budget set chat 2.5/day", kind="command"))
        for i in range(8):  # each full-price call costs ~0.25-0.4 here: 80 % of the cap comes within a few
            await rt.dispatcher.handle(operator_message(f"message {i}"))
        models = [r["model"] for r in fake_llm.chat_requests]
        spent = sum(c.cost for c in await rt.ledger.calls())
    warnings = [m.text for m in chan.sent if m.text.startswith("Heads-up")]
    assert len(warnings) == 1 and "80 %" in warnings[0]
    assert models[0] == "fake-model" and models[-1] == "cheap-model" and len(models) == 8
    assert spent <= 2.5
    assert not any(m.text.startswith("Budget reached") for m in chan.sent)


def test_breaker_opens_after_n_failures_and_half_opens() -> None:
    now = [0.0]
    breaker = CircuitBreaker("smtp", threshold=3, window_s=60, cooldown_s=30, clock=lambda: now[0])
    assert not breaker.record_failure("x") and not breaker.record_failure("x")
    now[0] = 61  # the first two fell out of the window
    assert not breaker.record_failure("x") and breaker.state == "closed"
    assert not breaker.record_failure("x")
    assert breaker.record_failure("x") and breaker.state == "open" and not breaker.allow()
    now[0] = 92
    assert breaker.state == "half_open" and breaker.allow() and not breaker.allow()  # one probe only
    breaker.record_failure("still down")
    assert breaker.state == "open"
    now[0] = 123
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state == "closed" and breaker.allow()


async def test_model_breaker_stops_calls_until_half_open(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    fake_llm.fail(500, times=2)
    settings = make_settings(
        tmp_path, llm=llm_settings(fake_llm, max_attempts=1, breaker_failures=2, offline_cooldown_s=30)
    )
    clock = ManualClock()
    async with open_runtime(settings, console=False, clock=clock) as rt:
        chan = RecordingChannel("rec")
        rt.dispatcher.attach(chan)
        for text in ("a", "b", "c"):
            await rt.dispatcher.handle(operator_message(text))
        assert len(fake_llm.chat_requests) == 2  # the third message found the breaker open
        assert rt.coordinator.llm.breaker.state == "open"
        clock.advance(29)
        await rt.dispatcher.handle(operator_message("still in the cooldown"))
        assert len(fake_llm.chat_requests) == 2
        clock.advance(2)
        await rt.dispatcher.handle(operator_message("d"))
    assert len(fake_llm.chat_requests) == 3 and chan.sent[-1].text == "echo: d"
