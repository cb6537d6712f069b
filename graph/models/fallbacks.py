"""The model endpoints, in the order they are tried: the main one (``COO_LLM__*``), then each of
``COO_LLM__FALLBACKS``. Each has its own HTTP client, circuit breaker and prices; docs/models.md tells
the operator how the chain runs and what it costs."""

from __future__ import annotations

import functools
import logging
import os
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from connectors.breaker import CircuitBreaker
from graph.models.failures import note_answer
from graph.settings import Connection, LLMSettings, has_credentials
from graph.spend.budget import Pricing
from graph.spend.pricing import Price, PriceTable

if TYPE_CHECKING:
    import openai

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Endpoint:
    """One OpenAI-compatible endpoint of the chain and what it serves."""

    label: str
    """``main``, or ``fallback N`` (1-based, in the operator's order)."""
    client: openai.AsyncOpenAI
    model: str
    cheap_model: str | None
    pricing: Pricing
    breaker: CircuitBreaker

    @property
    def main(self) -> bool:
        """Whether this is the main endpoint (the budget blocks there; a fallback that does not fit is skipped)."""
        return self.label == "main"

    def model_for(self, requested: str, cheap: bool) -> str:
        """The model this endpoint serves for a call that asked for ``requested`` (the cheap tier when ``cheap``).

        The main endpoint serves what was asked; a fallback serves its own ``cheap_model`` for the cheap
        tier (its ``model`` when it names none) and its ``model`` otherwise.
        """
        if self.main:
            return requested
        return (self.cheap_model or self.model) if cheap else self.model


def verified_tls() -> ssl.SSLContext:
    """The client TLS context of every model endpoint: the SDK's own default (certificates and host names
    checked against the system's CA store, or ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` when set).

    Made once per store and shared: each context reads the whole CA bundle (~40 ms of CPU), and every
    endpoint of every client built in this process would make its own. Nothing changes it after it is
    made (the SDK hands it to aiohttp as it is).
    """
    return _tls_for(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))


@functools.cache
def _tls_for(cafile: str | None, capath: str | None) -> ssl.SSLContext:
    """``cafile`` and ``capath`` are the key only: ``create_ssl_context`` reads them from the environment."""
    import httpx2

    return httpx2.create_ssl_context()


def http_client(target: Connection, timeout_s: float) -> openai.AsyncOpenAI:
    """The SDK client of one endpoint; it retries nothing itself (every attempt is ours: visible, bounded)."""
    import openai  # ~0.5 s of CPU: only where a model is configured

    return openai.AsyncOpenAI(
        base_url=target.base_url,
        api_key=target.api_key,
        default_headers=target.headers or None,
        timeout=timeout_s,
        max_retries=0,
        # aiohttp under the SDK instead of httpx: less event-loop CPU per call (bench.deployed, five
        # paired single runs: bursts 2.27/2.37/2.13/1.96/1.85 s against 2.61/2.64/2.24/2.10/1.85 s
        # with httpx; in the last three, sequential p50 1.4-2.8 ms lower). The response hook tells a
        # request that never left the process from one the endpoint answered (llm_failures.never_left).
        http_client=openai.DefaultAioHttpClient(
            timeout=timeout_s, event_hooks={"response": [note_answer]}, verify=verified_tls()
        ),
    )


def build_endpoints(
    settings: LLMSettings, prices: PriceTable, clock: Callable[[], float] = time.monotonic
) -> list[Endpoint]:
    """The chain: the main endpoint (priced by ``prices``), then the fallbacks; empty when none is configured."""
    if not settings.configured:
        return []

    def breaker(label: str) -> CircuitBreaker:
        name = "model" if label == "main" else f"model {label}"
        return CircuitBreaker(
            name, settings.breaker_failures, settings.breaker_window_s, settings.offline_cooldown_s, clock
        )

    timeout = settings.timeout_s
    urls = [("COO_LLM__BASE_URL", settings.base_url, settings.api_key)]
    urls += [(f"COO_LLM__FALLBACKS entry {n}", f.base_url, f.api_key) for n, f in enumerate(settings.fallbacks, 1)]
    for name, url, key in urls:
        if key is not None and has_credentials(url):
            log.warning("%s holds user:password@ and an API key is set: the key is sent, not the credentials", name)
    chain = [
        Endpoint(
            "main",
            http_client(settings.connection(), timeout),
            settings.model,
            settings.cheap_model,
            Pricing(prices, settings.cheap_model),
            breaker("main"),
        )
    ]
    for number, entry in enumerate(settings.fallbacks, start=1):
        label = f"fallback {number}"
        table = prices.for_endpoint(entry.free)
        pricing = Pricing(table, entry.cheap_model)
        client = http_client(entry.connection(), timeout)
        chain.append(Endpoint(label, client, entry.model, entry.cheap_model, pricing, breaker(label)))
    return chain


@dataclass(frozen=True)
class PriceInUse:
    """A model some endpoint may call, and the price its calls are counted at."""

    label: str
    model: str
    price: Price


def prices_in_use(settings: LLMSettings, prices: PriceTable) -> list[PriceInUse]:
    """Every model of the chain with its price (``coo doctor`` and ``/spend`` show them; the first look-up
    reads the price catalog: off the event loop)."""
    if not settings.configured:
        return []
    found = [PriceInUse("main", m, prices.price(m)) for m in dict.fromkeys((settings.model, settings.cheap_model)) if m]
    for number, entry in enumerate(settings.fallbacks, start=1):
        table = prices.for_endpoint(entry.free)
        for model in dict.fromkeys((entry.model, entry.cheap_model)):
            if model:
                found.append(PriceInUse(f"fallback {number}", model, table.price(model)))
    return found
