"""LLM client: any OpenAI-compatible endpoint, with retries, usage ledger and offline fallback."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import openai
from openai.types.chat import ChatCompletion

from connectors.breaker import CircuitBreaker
from graph.budget import BudgetGuard, Limit
from graph.errors import ModelUnavailable
from graph.pricing import PriceTable
from graph.settings import LLMSettings
from memory.db import LLMCall
from memory.ledger import CostLedger, Hold

log = logging.getLogger(__name__)

_BEARER_AUTH: Any = {"security": {"bearer_auth": True}}


@dataclass(frozen=True)
class ToolCall:
    """A tool call the model asked for. ``arguments`` is the raw JSON text."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class ModelReply:
    """The parsed assistant turn."""

    content: str
    tool_calls: tuple[ToolCall, ...] = ()
    prompt_tokens: int = 0
    completion_tokens: int = 0
    model: str = ""
    cost: float = 0.0
    finish_reason: str = ""
    """Why the model stopped ("stop", "tool_calls", "length" when its output was cut at the limit, ...)."""

    def as_message(self) -> dict[str, Any]:
        """The assistant message in OpenAI chat format (JSON-plain, safe for checkpoints)."""
        msg: dict[str, Any] = {"role": "assistant", "content": self.content}
        if self.tool_calls:
            msg["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in self.tool_calls
            ]
        return msg


# Hard caps on what one model answer may put into the conversation (and so into checkpoints and
# chats), whatever max_tokens the endpoint honoured.
MAX_REPLY_CHARS = 16_000
MAX_TOOL_ARGUMENT_CHARS = 32_000
CLIPPED = "\n[… the answer was cut here: it was longer than solo-coo accepts]"


def estimate_tokens(text: str) -> int:
    """A local token estimate (no tokenizer download): ~4 ASCII characters a token, and a token for
    every other character, at least 1.

    It must not fall short (I5 holds the estimate): tokenizers cut English into ~4-character pieces,
    but Chinese or Japanese into about one token a character, which ~4 a token would undercount 4×.
    """
    if text.isascii():  # the usual case, without copying the text
        return max(1, (len(text) + 3) // 4)
    ascii_chars = len(text.encode("ascii", "ignore"))
    return max(1, (ascii_chars + 3) // 4 + len(text) - ascii_chars)


def estimate_message_tokens(messages: Sequence[dict[str, Any]]) -> int:
    """Estimated prompt tokens for a list of chat messages (4 tokens of framing each)."""
    return sum(4 + estimate_tokens(json.dumps(m, ensure_ascii=False)) for m in messages)


_TOOL_COSTS: dict[int, tuple[dict[str, Any], int]] = {}
_MAX_TOOL_COSTS = 1_024


def estimate_tool_tokens(tools: Sequence[dict[str, Any]]) -> int:
    """Estimated prompt tokens of tool schemas, as :func:`estimate_message_tokens` counts them.

    Tool schemas are built once and shared, never changed (``ToolSet.schemas``,
    ``Registry.tool_schemas``), so each one's cost is kept by identity: encoding them anew twice a
    turn was ~5 % of the event loop's CPU in a burst (``python -m bench.deployed --profile DIR
    --profile-phase burst``). The entry holds the schema itself, so its id cannot be reused.
    """
    total = 0
    for tool in tools:
        known = _TOOL_COSTS.get(id(tool))
        if known is None or known[0] is not tool:
            known = (tool, estimate_message_tokens([tool]))
            if len(_TOOL_COSTS) < _MAX_TOOL_COSTS:
                _TOOL_COSTS[id(tool)] = known
        total += known[1]
    return total


class LLMClient:
    """Calls the model, retrying 429/5xx/connection errors with backoff, and records usage and cost.

    Before each attempt the budget guard reserves its estimated cost (I5); an attempt that would
    cross a cap is never made, so the cap also stops retries. After it, the hold is settled with the
    reported usage. A failed attempt the provider may have processed (a timeout, a connection lost
    after the request went out, a 5xx) counts at its estimate, like a cancelled one: it may have been
    billed. Only a failure that certainly came before the provider ran the request (no connection,
    429, another 4xx) is free. Failures feed a circuit breaker: once it opens, callers get
    :class:`ModelUnavailable` without a network call until it half-opens and one call probes again.
    """

    def __init__(
        self,
        settings: LLMSettings,
        ledger: CostLedger,
        prices: PriceTable,
        budget: BudgetGuard | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._ledger = ledger
        self._clock = clock
        self._prices = prices
        self._budget = budget
        self.breaker = CircuitBreaker(
            "model", settings.breaker_failures, settings.breaker_window_s, settings.offline_cooldown_s, clock
        )
        self._down = False
        self._told = False
        self._client: openai.AsyncOpenAI | None = None
        if settings.configured:
            key = settings.api_key.get_secret_value() if settings.api_key else "not-needed"
            self._client = openai.AsyncOpenAI(
                base_url=settings.base_url or "https://api.openai.com/v1",
                api_key=key,
                timeout=settings.timeout_s,
                max_retries=0,  # we retry ourselves so that every attempt is visible and bounded
                # aiohttp under the SDK instead of httpx: less event-loop CPU per call (bench.deployed, five
                # paired single runs: bursts 2.27/2.37/2.13/1.96/1.85 s against 2.61/2.64/2.24/2.10/1.85 s
                # with httpx; in the last three, sequential p50 1.4-2.8 ms lower).
                http_client=openai.DefaultAioHttpClient(timeout=settings.timeout_s),
            )

    @property
    def configured(self) -> bool:
        """False means offline mode by configuration."""
        return self._client is not None

    @property
    def model(self) -> str:
        """The default model name."""
        return self._settings.model

    def available(self) -> bool:
        """True when a call may be attempted now (configured, and the breaker not open)."""
        return self._client is not None and self.breaker.state != "open"

    def take_outage_notice(self) -> bool:
        """True exactly once per outage: the caller should tell the operator the model is down."""
        if self._down and not self._told:
            self._told = True
            return True
        return False

    async def close(self) -> None:
        """Close the HTTP client."""
        if self._client is not None:
            await self._client.close()

    async def chat(
        self,
        messages: Sequence[dict[str, Any]],
        tools: Sequence[dict[str, Any]] = (),
        *,
        session: str | None = None,
        workflow: str = "chat",
        model: str | None = None,
        limit: Limit | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
    ) -> ModelReply:
        """One chat completion, with retries. Raises ModelUnavailable, or BudgetExceeded when the cap
        leaves no room for an attempt (that attempt is not made; earlier failed ones are recorded).

        ``limit`` adds a cap of the caller's own (e.g. a goal's total budget) to the configured ones.
        ``max_tokens`` raises or lowers the output limit for this use (a plan or a draft needs more than a
        chat turn); ``temperature`` is sent only when given (low for plans and verdicts).
        """
        if self._client is None:
            raise ModelUnavailable("no model is configured")
        name = model or self._settings.model
        max_out = max_tokens or self._settings.max_completion_tokens
        estimate = estimate_message_tokens(messages) + estimate_tool_tokens(tools)
        kwargs: dict[str, Any] = {"model": name, "messages": list(messages), "max_tokens": max_out}
        if tools:
            kwargs["tools"] = list(tools)
        if temperature is not None:
            kwargs["temperature"] = temperature
        for attempt in range(1, self._settings.max_attempts + 1):
            # Each attempt holds its own reservation: a retry the cap cannot pay for is not made.
            hold: Hold | None = None
            if self._budget is not None:
                hold = await self._budget.reserve(workflow, name, estimate, max_out, session, limit)
                kwargs["model"] = hold.model
            if not self.breaker.allow():
                if hold is not None:
                    await asyncio.shield(self._ledger.release(hold.id))  # not made: nothing to bill
                self._down = True
                raise ModelUnavailable(self.breaker.last_reason or "the model is unreachable")
            reply = await self._attempt(kwargs, session, workflow, messages, estimate, hold, attempt)
            if reply is not None:
                return reply
        raise AssertionError("unreachable")

    async def _attempt(
        self,
        kwargs: dict[str, Any],
        session: str | None,
        workflow: str,
        messages: Sequence[dict[str, Any]],
        estimate: int,
        hold: Hold | None,
        attempt: int,
    ) -> ModelReply | None:
        """One request under its own hold: the reply, or None when it failed and may be tried again
        (after the backoff). Raises ModelUnavailable when it failed for good."""
        assert self._client is not None
        name: str = kwargs["model"]
        unsettled = hold
        started = self._clock()
        try:
            try:
                # The SDK's generic POST (its documented way to any endpoint): ``create`` would first walk
                # the whole prompt through its typed-params transform, milliseconds of CPU per call for
                # messages that are JSON-plain already. Retries, timeouts and errors are the same.
                response = await self._client.post(
                    "/chat/completions", body=kwargs, cast_to=ChatCompletion, options=_BEARER_AUTH
                )
            except openai.APIStatusError as exc:
                retryable = isinstance(exc, openai.RateLimitError | openai.InternalServerError)
                failure: openai.APIError = exc
            except openai.APIConnectionError as exc:
                retryable, failure = True, exc
            else:
                reply = _parse(response)
                usage = response.usage
                prompt = usage.prompt_tokens if usage else estimate_message_tokens(messages)
                completion = usage.completion_tokens if usage else estimate_tokens(reply.content)
                cost = self._prices.price(name).cost(prompt, completion)
                latency = int((self._clock() - started) * 1000)
                call = LLMCall(session, workflow, name, prompt, completion, usage is None, latency, "ok", cost)
                await self._ledger.settle(hold.id if hold else None, call)
                unsettled = None
                if self._down:
                    log.info("model reachable again")
                self.breaker.record_success()
                self._down = self._told = False
                return ModelReply(reply.content, reply.tool_calls, prompt, completion, name, cost, reply.finish_reason)
            await self._record_failure(session, workflow, name, estimate, hold, started, failure)
            unsettled = None
        except BaseException as exc:
            # Cancelled mid-call (shutdown), or the answer could not be read: the call may have been
            # billed, so it counts at its estimate. Settling is idempotent per hold: a settle that was
            # committed although this task was cancelled while it was written is not recorded twice.
            # If this attempt was the half-open breaker's probe, the next call probes instead; otherwise the
            # breaker would wait forever for this one's verdict and refuse every call until a restart.
            self.breaker.end_probe()
            if unsettled is not None:
                call = failed_call(exc, session, workflow, name, estimate, unsettled.cost, latency_ms=0)
                await asyncio.shield(self._ledger.settle(unsettled.id, call))
            raise
        await self._after_failure(failure, attempt, retryable)
        return None

    async def _record_failure(
        self,
        session: str | None,
        workflow: str,
        model: str,
        estimate: int,
        hold: Hold | None,
        started: float,
        exc: openai.APIError,
    ) -> None:
        """Settle a failed attempt's hold: at its estimate when the provider may have processed (and
        billed) the request, free only when it certainly did not (see :func:`maybe_processed`)."""
        max_out = self._settings.max_completion_tokens
        held = hold.cost if hold is not None else self._prices.price(model).cost(estimate, max_out)
        latency = int((self._clock() - started) * 1000)
        call = failed_call(exc, session, workflow, model, estimate, held, latency_ms=latency)
        await self._ledger.settle(hold.id if hold is not None else None, call)

    async def _after_failure(self, exc: openai.APIError, attempt: int, retryable: bool) -> None:
        """Feed the breaker; raise ModelUnavailable when there is no retry, else wait before it."""
        reason = describe_failure(exc)
        opened = self.breaker.record_failure(reason)
        if not retryable or opened or attempt == self._settings.max_attempts:
            if not self._down:
                log.error("model unreachable: %s; offline mode until it answers again", reason)
            self._down = True
            raise ModelUnavailable(reason) from exc
        delay = self._settings.retry_base_s * (2 ** (attempt - 1)) * (0.5 + random.random())
        log.warning(
            "model call failed (%s); retry %d/%d in %.2fs", reason, attempt, self._settings.max_attempts - 1, delay
        )
        await asyncio.sleep(delay)


def describe_failure(exc: Exception) -> str:
    """A failed request in a few words, for the ledger and the operator (no secrets: no URLs, no bodies)."""
    if isinstance(exc, openai.APITimeoutError) and _timed_out(exc):
        return "the model did not answer in time"
    if isinstance(exc, openai.APIConnectionError):
        return "cannot connect to the model endpoint"
    if isinstance(exc, openai.APIStatusError):
        return f"the model endpoint answered HTTP {exc.status_code}"
    return type(exc).__name__


def failed_call(
    exc: BaseException, session: str | None, workflow: str, model: str, estimate: int, held: float, latency_ms: int
) -> LLMCall:
    """The ledger row of a request that failed or was interrupted (I5, fail closed): it costs ``held`` (its
    estimate) when the provider may have run it, nothing only when it certainly did not (:func:`maybe_processed`).
    Anything but an API error (a cancellation, an answer that could not be read) may have been billed."""
    if isinstance(exc, openai.APIError):
        cost = held if maybe_processed(exc) else 0.0
        outcome = f"error: {describe_failure(exc)}"
    else:
        cost, outcome = held, "unknown: interrupted"
    return LLMCall(session, workflow, model, estimate, 0, True, latency_ms, outcome, cost)


def _causes(exc: BaseException) -> list[BaseException]:
    """What ``exc`` chains, nearest first."""
    causes: list[BaseException] = []
    seen = exc.__cause__ or exc.__context__
    while seen is not None and seen not in causes:
        causes.append(seen)
        seen = seen.__cause__ or seen.__context__
    return causes


def _timed_out(exc: openai.APITimeoutError) -> bool:
    """Whether the model really did not answer in time.

    The SDK's aiohttp transport reports a refused, unresolvable or dropped connection as a timeout
    too; what it chains tells them apart: a real timeout has a ``TimeoutError`` under it (a bare one
    is taken at its word).
    """
    causes = _causes(exc)
    return not causes or any(isinstance(cause, TimeoutError) for cause in causes)


def maybe_processed(exc: openai.APIError) -> bool:
    """Whether the provider may have processed, and so billed, a request that failed (I5: fail closed).

    Free: a 4xx (429 included: the request was refused, not run) and a connection that was never
    made (refused, unresolvable, TLS failed, or it timed out while connecting: aiohttp's
    ``ClientConnectorError`` and ``ConnectionTimeoutError``), where the request never left. Billed:
    a 5xx (the endpoint took the request and failed while or after handling it; a gateway's 502/504
    may come after the model behind it ran and billed), a timeout waiting for the answer, and a
    connection lost after the request was sent; and anything unrecognised.
    """
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code >= 500
    never_sent = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)
    return not any(isinstance(cause, never_sent) for cause in _causes(exc))


def _parse(response: Any) -> ModelReply:
    if not response.choices:
        return ModelReply("")
    message = response.choices[0].message
    calls: list[ToolCall] = []
    for c in message.tool_calls or []:
        if getattr(c, "function", None) is None:
            continue
        call_id = c.id
        if not call_id or any(call_id == other.id for other in calls):
            # Some OpenAI-compatible endpoints leave ids empty (LM Studio) or repeat them within an answer;
            # tool results are matched to calls by id, so every call of an answer gets an id of its own.
            call_id = f"call_{uuid.uuid4().hex}"
        calls.append(ToolCall(call_id, c.function.name, _clip_arguments(c.function.arguments or "{}")))
    content = message.content or ""
    if len(content) > MAX_REPLY_CHARS:
        content = content[: MAX_REPLY_CHARS - len(CLIPPED)] + CLIPPED
    return ModelReply(content, tuple(calls), finish_reason=str(response.choices[0].finish_reason or ""))


def _clip_arguments(arguments: str) -> str:
    # Oversized arguments are not valid JSON once cut: the tool then reports bad arguments to the model.
    return arguments if len(arguments) <= MAX_TOOL_ARGUMENT_CHARS else arguments[:MAX_TOOL_ARGUMENT_CHARS]
