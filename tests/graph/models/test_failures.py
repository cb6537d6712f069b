"""What a failed model request means, read from the real failures of the real SDK client (aiohttp under it)
against the fake OpenAI server or a port nobody listens on: the words the operator and the ledger get, and
whether the request may have been billed (I5: fail closed)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import openai
import pytest

from graph.models.failures import describe_failure, failed_call, maybe_processed, never_left, watch_answer
from graph.models.fallbacks import http_client
from graph.settings import Connection, LLMSettings
from tests.conftest import llm_settings
from tests.fakes.openai_api import FakeOpenAI, Scripted
from tests.fakes.smtp_server import free_port

HELLO = [{"role": "user", "content": "hello"}]
HELD = 0.25  # what the attempt's hold reserved


async def failure_of(target: Connection, timeout_s: float = 5.0) -> tuple[BaseException, bool]:
    """The exception one chat request to ``target`` raised, and whether the endpoint answered it."""
    client = http_client(target, timeout_s)
    answered = watch_answer()
    try:
        await client.chat.completions.create(model="fake-model", messages=HELLO)  # type: ignore[arg-type]
    except Exception as exc:
        return exc, answered.value
    finally:
        await client.close()
    raise AssertionError("the request did not fail")


def of(fake: FakeOpenAI) -> Connection:
    return LLMSettings(**llm_settings(fake)).connection()


def ledger_row(exc: BaseException, *, local: bool = False) -> tuple[str, float]:
    row = failed_call(exc, "telegram:1001", "chat", "fake-model", 12, HELD, 30, local=local)
    assert (row.prompt_tokens, row.completion_tokens, row.estimated) == (12, 0, True)
    return row.outcome, row.cost


async def test_a_5xx_may_have_been_billed_and_a_429_was_not(fake_llm: FakeOpenAI) -> None:
    fake_llm.fail(502)
    bad_gateway, answered = await failure_of(of(fake_llm))
    assert isinstance(bad_gateway, openai.APIStatusError) and answered
    assert ledger_row(bad_gateway) == ("error: the model endpoint answered HTTP 502", HELD)
    fake_llm.fail(429)
    limited, _ = await failure_of(of(fake_llm))
    assert maybe_processed(limited) is False  # type: ignore[arg-type]
    assert ledger_row(limited) == ("error: the model endpoint answered HTTP 429", 0.0)


async def test_a_connection_refused_never_reached_the_provider_and_is_free() -> None:
    refused, answered = await failure_of(Connection(f"http://127.0.0.1:{free_port()}/v1", "sk-test"))
    assert isinstance(refused, openai.APIConnectionError) and not answered
    # The SDK reports it as a timeout; what it chains says the connection was never made.
    assert describe_failure(refused) == "cannot connect to the model endpoint"
    assert ledger_row(refused) == ("error: cannot connect to the model endpoint", 0.0)


async def test_a_connection_dropped_after_the_request_was_sent_may_have_been_billed(fake_llm: FakeOpenAI) -> None:
    fake_llm.script.append(Scripted(drop=True))
    dropped, _ = await failure_of(of(fake_llm))
    assert len(fake_llm.chat_requests) == 1  # the request arrived
    assert describe_failure(dropped) == "cannot connect to the model endpoint"
    assert ledger_row(dropped) == ("error: cannot connect to the model endpoint", HELD)


async def test_no_answer_in_time_is_told_as_such_and_may_have_been_billed(fake_llm: FakeOpenAI) -> None:
    fake_llm.script.append(Scripted(hold=asyncio.Event()))  # answered once it is set: never, here
    late, answered = await failure_of(of(fake_llm), timeout_s=0.2)
    assert isinstance(late, openai.APITimeoutError) and not answered
    assert ledger_row(late) == ("error: the model did not answer in time", HELD)


async def test_a_request_that_could_not_be_built_never_left_and_is_free(fake_llm: FakeOpenAI) -> None:
    pasted = Connection(fake_llm.base_url, "sk-pasted\u00a0key")  # a non-breaking space, copied with the key
    exc, answered = await failure_of(pasted)
    assert fake_llm.requests == [] and not answered
    assert never_left(exc, answered)
    assert describe_failure(exc).startswith("the request could not be sent (")
    assert ledger_row(exc, local=True)[1] == 0.0


async def test_an_answer_that_cannot_be_read_was_billed_and_a_cancellation_too(fake_llm: FakeOpenAI) -> None:
    fake_llm.script.append(Scripted(raw_body="{not json"))
    unreadable, answered = await failure_of(of(fake_llm))
    assert answered and not never_left(unreadable, answered)  # the endpoint answered: it may have billed
    assert ledger_row(unreadable) == ("unknown: interrupted", HELD)
    assert ledger_row(asyncio.CancelledError()) == ("unknown: interrupted", HELD)


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda: ValueError("Cannot combine AUTH argument with credentials encoded in URL"), True),
        (lambda: TypeError("header value"), True),
        (lambda: json.JSONDecodeError("Expecting value", "{", 1), False),  # an answer, unread
        (lambda: _chained(ValueError("bad"), ConnectionResetError()), False),  # the network was involved
    ],
)
def test_only_a_failure_before_any_byte_went_out_counts_as_never_left(make: Callable[[], Any], words: bool) -> None:
    assert never_left(make(), answered=False) is words
    assert never_left(make(), answered=True) is False


def _chained(exc: BaseException, cause: BaseException) -> BaseException:
    exc.__cause__ = cause
    return exc
