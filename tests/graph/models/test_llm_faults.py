"""Model faults: retries on 429/5xx, timeouts, one outage notice, offline fallback, recovery."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.messages import InboundMessage
from bot.runtime import open_runtime
from bot.settings import Settings
from memory.db import LLMCall
from tests.conftest import ManualClock, RecordingChannel, llm_settings, make_settings
from tests.fakes.openai_api import FakeOpenAI, Scripted


def msg(text: str, n: int) -> InboundMessage:
    return InboundMessage(channel="rec", chat_id="1001", sender="telegram:1001", text=text, update_key=f"rec:{n}")


async def one_turn(settings: Settings, text: str = "hi") -> tuple[list[str], list[LLMCall]]:
    """Run the bot on one message: the replies sent and the model calls in the ledger."""
    async with open_runtime(settings, console=False) as rt:
        chan = RecordingChannel("rec")
        rt.dispatcher.attach(chan)
        await rt.dispatcher.handle(msg(text, 1))
        calls = await rt.ledger.calls()
    return [m.text for m in chan.sent], calls


async def test_429_and_500_are_retried_then_succeed(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    fake_llm.fail(429)
    fake_llm.fail(503)
    fake_llm.reply("made it")
    sent, calls = await one_turn(make_settings(tmp_path, llm=llm_settings(fake_llm, max_attempts=3)))
    outcomes = [c.outcome for c in calls]
    assert sent == ["made it"]
    assert len(fake_llm.chat_requests) == 3
    assert outcomes == [
        "error: the model endpoint answered HTTP 429",
        "error: the model endpoint answered HTTP 503",
        "ok",
    ]


async def test_persistent_500_tells_once_then_offline_until_it_recovers(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    fake_llm.fail(500, times=3)
    settings = make_settings(tmp_path, llm=llm_settings(fake_llm, max_attempts=3, offline_cooldown_s=60))
    clock = ManualClock()
    async with open_runtime(settings, console=False, clock=clock) as rt:
        chan = RecordingChannel("rec")
        rt.dispatcher.attach(chan)
        await rt.dispatcher.handle(msg("Acme pays net 30", 1))
        await rt.dispatcher.handle(msg("what does Acme pay?", 2))
        assert len(fake_llm.chat_requests) == 3  # the second message made no call during the cooldown
        first, second = chan.sent[0].text, chan.sent[1].text
        assert "can't reach the model" in first and "HTTP 500" in first and "Offline mode" in first
        assert "can't reach the model" not in second and "Offline mode" in second
        # the offline reply recalls what was said before
        assert "Acme pays net 30" in second
        # cooldown over: the next message probes the model again, which is back
        clock.advance(61)
        await rt.dispatcher.handle(msg("third", 3))
    assert chan.sent[2].text == "echo: third"


async def test_timeout_is_a_clear_message(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    fake_llm.script.append(Scripted(content="too late", delay_s=1.5))
    fake_llm.script.append(Scripted(content="too late", delay_s=1.5))
    settings = make_settings(tmp_path, llm=llm_settings(fake_llm, max_attempts=2, timeout_s=0.3))
    sent, _ = await one_turn(settings, "hello?")
    assert "did not answer in time" in sent[0] and "Offline mode" in sent[0]


async def test_server_down_is_a_clear_message(tmp_path: Path) -> None:
    async with FakeOpenAI() as server:
        settings = make_settings(tmp_path, llm=llm_settings(server, max_attempts=2))
    # the server is closed now: connection refused
    sent, calls = await one_turn(settings, "anyone?")
    assert "cannot connect to the model endpoint" in sent[0]
    assert len(calls) == 2 and all(c.estimated for c in calls)


async def test_auth_error_is_not_retried(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    sent, _ = await one_turn(make_settings(tmp_path, llm=llm_settings(fake_llm, api_key="sk-wrong-key-1111111111111")))
    assert len(fake_llm.chat_requests) == 1
    assert "HTTP 401" in sent[0]


async def test_usage_missing_is_estimated(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    fake_llm.script.append(Scripted(content="no usage here", usage=False))
    _, calls = await one_turn(make_settings(tmp_path, llm=llm_settings(fake_llm)))
    call = calls[0]
    assert call.estimated and call.prompt_tokens > 50 and call.completion_tokens >= 1


async def test_offline_mode_without_configuration(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    async with open_runtime(settings, console=False) as rt:
        chan = RecordingChannel("rec")
        rt.dispatcher.attach(chan)
        await rt.dispatcher.handle(msg("the invoice for Acme is 400 EUR", 1))
        await rt.dispatcher.handle(msg("invoice Acme", 2))
    assert "COO_LLM__BASE_URL" in chan.sent[0].text
    assert "the invoice for Acme is 400 EUR" in chan.sent[1].text
    assert "can't reach the model" not in chan.sent[1].text


async def test_model_calls_go_through_the_proxy_the_environment_names(
    tmp_path: Path, fake_llm: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The fake answers absolute-form requests as a proxy would forward them.
    monkeypatch.setenv("HTTP_PROXY", fake_llm.base_url.removesuffix("/v1"))
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    fake_llm.reply("via the proxy")
    llm = llm_settings(fake_llm, base_url="http://model.invalid/v1", max_attempts=1)
    sent, _ = await one_turn(make_settings(tmp_path, llm=llm))
    assert sent == ["via the proxy"]


async def test_no_proxy_hosts_are_reached_directly(
    tmp_path: Path, fake_llm: FakeOpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    fake_llm.reply("direct")
    sent, _ = await one_turn(make_settings(tmp_path, llm=llm_settings(fake_llm, max_attempts=1)))
    assert sent == ["direct"]


async def test_a_dropped_connection_is_told_as_one_not_as_a_timeout(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    fake_llm.script.extend([Scripted(drop=True), Scripted(drop=True)])
    sent, calls = await one_turn(make_settings(tmp_path, llm=llm_settings(fake_llm, max_attempts=2)), "anyone?")
    assert len(fake_llm.chat_requests) == 2
    assert [c.outcome for c in calls] == ["error: cannot connect to the model endpoint"] * 2
    assert "cannot connect to the model endpoint" in sent[0]


async def test_an_unknown_host_is_told_as_cannot_connect(tmp_path: Path) -> None:
    llm = {"base_url": "http://model.invalid/v1", "api_key": "k", "model": "m", "retry_base_s": 0.01, "max_attempts": 1}
    llm["prices"] = {"m": (1.0, 1.0)}  # priced: no "no known price" line before the answer
    sent, _ = await one_turn(make_settings(tmp_path, llm=llm), "anyone?")
    assert "cannot connect to the model endpoint" in sent[0]
