"""Reaching an endpoint: credentials in its URL are sent as basic auth and never logged (I4); with an API
key the key is sent and the credentials only leave the URL; a request that never left the process is
free and says why, while one the endpoint answered stays billed (I5)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from graph.errors import ModelUnavailable
from graph.models.llm import estimate_message_tokens
from tests.fakes.openai_api import FakeOpenAI, Scripted, basic_header
from tests.graph.models.test_llm_fallbacks import HELLO, MAX_OUT, PRICES, chain

USER, PASSWORD = "gw-user", "p@ss word:42"
IN_URL = "gw-user:p%40ss%20word%3A42"
ESTIMATE = PRICES.price("fake-model").cost(estimate_message_tokens(HELLO), MAX_OUT)


def with_credentials(fake: FakeOpenAI) -> str:
    return fake.base_url.replace("http://", f"http://{IN_URL}@")


async def test_credentials_in_the_base_url_are_sent_as_basic_auth_and_never_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with FakeOpenAI() as gateway:
        gateway.basic_auth = (USER, PASSWORD)
        gateway.fail(503)  # one failure, so the failure path logs too
        async with chain(tmp_path, gateway, base_url=with_credentials(gateway), api_key=None, retry_base_s=0) as parts:
            reply = await parts.client.chat(HELLO)
    # Before: every call failed in aiohttp ("Cannot combine AUTHORIZATION header with ... credentials
    # encoded in URL") and the operator got the generic error.
    assert reply.content == "echo: hello"
    assert [r["_auth"] for r in gateway.chat_requests] == [basic_header(USER, PASSWORD)] * 2
    assert PASSWORD not in caplog.text and IN_URL not in caplog.text and "p%40ss" not in caplog.text


async def test_a_fallback_with_credentials_in_its_url_is_reached_too(tmp_path: Path) -> None:
    async with FakeOpenAI() as gone:
        pass
    async with FakeOpenAI() as gateway:
        gateway.basic_auth = (USER, PASSWORD)
        entry = {"base_url": with_credentials(gateway), "model": "backup-model"}
        async with chain(tmp_path, gone, entry, max_attempts=1) as parts:
            reply = await parts.client.chat(HELLO)
    assert reply.endpoint == "fallback 1"
    assert [r["_auth"] for r in gateway.chat_requests] == [basic_header(USER, PASSWORD)]


async def test_with_an_api_key_the_key_is_sent_and_the_credentials_only_leave_the_url(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async with FakeOpenAI() as gateway, chain(tmp_path, gateway, base_url=with_credentials(gateway)) as parts:
        reply = await parts.client.chat(HELLO)
    assert reply.content == "echo: hello"
    assert [r["_auth"] for r in gateway.chat_requests] == [f"Bearer {gateway.api_key}"]
    assert "COO_LLM__BASE_URL holds user:password@ and an API key is set" in caplog.text
    assert PASSWORD not in caplog.text and IN_URL not in caplog.text


async def test_a_request_that_never_left_the_process_is_free_and_says_why(tmp_path: Path) -> None:
    async with (
        FakeOpenAI(api_key="sk-pasted\u00a0key") as fake,
        chain(tmp_path, fake, max_attempts=3) as parts,
    ):  # a non-breaking space, copied with the key
        with pytest.raises(ModelUnavailable) as caught:
            await parts.client.chat(HELLO)
        calls = await parts.ledger.calls()
    # Before: the encoding error escaped as is (the operator got the generic error) and was billed at its
    # estimate, although nothing was sent.
    assert fake.requests == []
    assert "could not be sent" in str(caught.value)
    assert [(c.outcome.split(" (")[0], c.cost) for c in calls] == [("error: the request could not be sent", 0.0)]


async def test_an_answer_that_cannot_be_read_is_still_billed(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    fake_llm.script.append(Scripted(raw_body="{not json"))
    async with chain(tmp_path, fake_llm) as parts:
        with pytest.raises(ValueError):
            await parts.client.chat(HELLO)
        calls = await parts.ledger.calls()
    assert len(fake_llm.chat_requests) == 1
    assert [(c.outcome, c.cost) for c in calls] == [("unknown: interrupted", pytest.approx(ESTIMATE))]
