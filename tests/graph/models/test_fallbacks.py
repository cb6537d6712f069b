"""The chain of model endpoints on its own: built from the settings, each endpoint with its own real SDK
client (reaching its own fake OpenAI server with its own key), breaker (on an injected clock) and prices."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import openai
import pytest

from graph.models.fallbacks import Endpoint, build_endpoints, prices_in_use, verified_tls
from graph.settings import LLMSettings
from graph.spend.pricing import Price, PriceTable
from tests.conftest import ManualClock, llm_settings
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.tls_certs import MadeCA, make_ca

PRICES = PriceTable({"fake-model": (15.0, 75.0), "fake-cheap": (1.0, 5.0), "backup-model": (3.0, 6.0)})
HELLO = [{"role": "user", "content": "hello"}]


def settings(main: FakeOpenAI, *backups: FakeOpenAI, **extra: Any) -> LLMSettings:
    fallbacks = [
        {"base_url": backups[0].base_url, "api_key": backups[0].api_key, "model": "backup-model"},
        *(
            {
                "base_url": b.base_url,
                "api_key": b.api_key,
                "model": "local-big",
                "cheap_model": "local-small",
                "free": True,
            }
            for b in backups[1:]
        ),
    ]
    return LLMSettings(**llm_settings(main, cheap_model="fake-cheap", fallbacks=fallbacks, **extra))


@asynccontextmanager
async def chain(clock: ManualClock, **extra: Any) -> AsyncIterator[tuple[list[Endpoint], list[FakeOpenAI]]]:
    async with FakeOpenAI() as main, FakeOpenAI(api_key="sk-backup-1") as one, FakeOpenAI(api_key="sk-local") as two:
        endpoints = build_endpoints(settings(main, one, two, **extra), PRICES, clock)
        try:
            yield endpoints, [main, one, two]
        finally:
            for endpoint in endpoints:
                await endpoint.client.close()


async def ask(endpoint: Endpoint, model: str) -> str:
    reply = await endpoint.client.chat.completions.create(model=model, messages=HELLO)  # type: ignore[arg-type]
    return str(reply.choices[0].message.content)


async def test_the_main_endpoint_then_each_fallback_in_order_each_reaching_its_own_server() -> None:
    async with chain(ManualClock()) as (endpoints, fakes):
        assert [(e.label, e.main, e.model, e.cheap_model) for e in endpoints] == [
            ("main", True, "fake-model", "fake-cheap"),
            ("fallback 1", False, "backup-model", None),
            ("fallback 2", False, "local-big", "local-small"),
        ]
        for endpoint, fake in zip(endpoints, fakes, strict=True):
            assert await ask(endpoint, endpoint.model) == "echo: hello"
            (request,) = fake.chat_requests
            assert request["model"] == endpoint.model and request["_auth"] == f"Bearer {fake.api_key}"
        main, backup, local = endpoints
        # The main endpoint serves what was asked; a fallback its own model, or its cheap one for the cheap tier.
        assert main.model_for("fake-cheap", cheap=True) == "fake-cheap"
        assert (backup.model_for("fake-cheap", cheap=True), backup.model_for("fake-model", False)) == (
            "backup-model",
        ) * 2
        assert local.model_for("fake-cheap", cheap=True) == "local-small"
        assert local.pricing.prices.price("local-big").cost(1000, 1000) == 0.0  # the operator said it is free
        assert backup.pricing.prices.price("backup-model") == Price(3.0, 6.0)


async def test_an_endpoint_client_makes_one_request_per_attempt_its_retries_are_ours() -> None:
    async with chain(ManualClock()) as (endpoints, fakes):
        fakes[0].fail(503)
        with pytest.raises(openai.InternalServerError):
            await ask(endpoints[0], "fake-model")
        assert len(fakes[0].chat_requests) == 1  # the SDK retried nothing behind our back


async def test_each_endpoint_has_its_own_breaker_on_the_injected_clock() -> None:
    clock = ManualClock()
    async with chain(clock, breaker_failures=2, offline_cooldown_s=30.0) as (endpoints, _):
        main, backup, _local = endpoints
        assert (main.breaker.name, backup.breaker.name) == ("model", "model fallback 1")
        main.breaker.record_failure("the model endpoint answered HTTP 503")
        assert main.breaker.record_failure("the model endpoint answered HTTP 503")  # opened
        assert (main.breaker.state, backup.breaker.state) == ("open", "closed")
        clock.advance(31)
        assert main.breaker.state == "half_open" and main.breaker.allow()


def test_nothing_configured_is_an_empty_chain_and_no_prices() -> None:
    assert build_endpoints(LLMSettings(), PRICES) == [] and prices_in_use(LLMSettings(), PRICES) == []


async def test_every_model_of_the_chain_is_listed_with_the_price_it_is_counted_at() -> None:
    async with FakeOpenAI() as main, FakeOpenAI() as one, FakeOpenAI() as two:
        listed = prices_in_use(settings(main, one, two), PRICES)
    assert [(p.label, p.model, p.price) for p in listed] == [
        ("main", "fake-model", Price(15.0, 75.0)),
        ("main", "fake-cheap", Price(1.0, 5.0)),
        ("fallback 1", "backup-model", Price(3.0, 6.0)),
        ("fallback 2", "local-big", Price(0.0, 0.0)),
        ("fallback 2", "local-small", Price(0.0, 0.0)),
    ]


async def test_credentials_in_a_fallback_url_beside_a_key_are_warned_about_without_the_password(
    captured_logs: pytest.LogCaptureFixture,
) -> None:
    async with FakeOpenAI() as main, FakeOpenAI() as backup:
        with_credentials = backup.base_url.replace("http://", "http://ana:hunter2-secret@")
        fallback = {"base_url": with_credentials, "api_key": backup.api_key, "model": "backup-model"}
        endpoints = build_endpoints(LLMSettings(**llm_settings(main, fallbacks=[fallback])), PRICES)
        try:
            assert await ask(endpoints[1], "backup-model") == "echo: hello"
            assert backup.chat_requests[0]["_auth"] == f"Bearer {backup.api_key}"  # the key is sent
        finally:
            for endpoint in endpoints:
                await endpoint.client.close()
    assert "COO_LLM__FALLBACKS entry 1 holds user:password@ and an API key is set" in captured_logs.text
    assert "hunter2-secret" not in captured_logs.text


@pytest.fixture(scope="module")
def made_ca(tmp_path_factory: pytest.TempPathFactory) -> MadeCA:
    return make_ca(tmp_path_factory.mktemp("model-ca"))


@pytest.fixture
def system_store(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """The machine's CA store (no SSL_CERT_FILE / SSL_CERT_DIR from the environment)."""
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    return monkeypatch


async def test_an_https_endpoint_is_reached_only_with_a_certificate_the_store_trusts(
    made_ca: MadeCA, system_store: pytest.MonkeyPatch
) -> None:
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(made_ca.cert, made_ca.key)
    async with FakeOpenAI(tls=served) as fake:
        settings = LLMSettings(**llm_settings(fake))
        [untrusted] = build_endpoints(settings, PRICES)
        system_store.setenv("SSL_CERT_FILE", str(made_ca.ca))
        [trusted] = build_endpoints(settings, PRICES)
        try:
            with pytest.raises(openai.APIConnectionError):
                await ask(untrusted, "fake-model")
            assert await ask(trusted, "fake-model") == "echo: hello"
        finally:
            await untrusted.client.close()
            await trusted.client.close()
    assert len(fake.chat_requests) == 1  # the refused handshake sent nothing


def test_the_tls_context_is_made_once_per_ca_store_and_checks_names(
    made_ca: MadeCA, system_store: pytest.MonkeyPatch
) -> None:
    machine = verified_tls()
    assert verified_tls() is machine
    assert (machine.verify_mode, machine.check_hostname) == (ssl.CERT_REQUIRED, True)
    system_store.setenv("SSL_CERT_FILE", str(made_ca.ca))
    own = verified_tls()
    assert own is not machine and verified_tls() is own
    assert [c["subject"] for c in own.get_ca_certs()] == [((("commonName", "solo-coo test CA"),),)]
