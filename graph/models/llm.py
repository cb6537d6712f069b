"""LLM client: any OpenAI-compatible endpoint, with retries, usage ledger and offline fallback. What an
answer becomes (the reply value, its tool calls, the clipping) is in :mod:`graph.models.replies`."""

from __future__ import annotations

import asyncio
import functools
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from connectors.breaker import CircuitBreaker
from graph.errors import ModelUnavailable
from graph.models.failures import describe_failure, failed_call, maybe_processed, never_left, watch_answer
from graph.models.fallbacks import Endpoint, build_endpoints
from graph.models.notices import ModelNotices
from graph.models.prompt_cuts import PromptCutWatch
from graph.models.replies import ModelReply, ToolCall, parse_reply
from graph.models.tokens import estimate_message_tokens, estimate_tokens, estimate_tool_tokens
from graph.settings import LLMSettings
from graph.spend.budget import BudgetAlert, BudgetGuard, Limit
from graph.spend.pricing import PriceTable
from memory.db import LLMCall
from memory.errors import InternalError
from memory.ledger import CostLedger, Hold

if TYPE_CHECKING:
    import openai

log = logging.getLogger(__name__)

_BEARER_AUTH: Any = {"security": {"bearer_auth": True}}


def force_tool(name: str) -> dict[str, Any]:
    """The ``tool_choice`` that makes the model call the tool ``name`` (a plan, a verdict)."""
    return {"type": "function", "function": {"name": name}}


class LLMClient:
    """Calls the model, retrying 429/5xx/connection errors with backoff, and records usage and cost.

    Before each attempt the budget guard reserves its estimated cost (I5); an attempt that would
    cross a cap is never made, so the cap also stops retries. After it, the hold is settled with the
    reported usage. A failed attempt the provider may have processed (a timeout, a connection lost
    after the request went out, a 5xx) counts at its estimate, like a cancelled one: it may have been
    billed. Only a failure that certainly came before the provider ran the request (no connection,
    429, another 4xx, a request that never left this process) is free. Failures feed the endpoint's
    circuit breaker: once it opens, its calls are not made until it half-opens and one call probes again.

    When the main endpoint fails for a call (after its retries, or its breaker is open), each fallback
    of ``COO_LLM__FALLBACKS`` is tried in turn (:mod:`graph.models.fallbacks`), priced and reserved like the main
    one; a fallback whose estimate does not fit a cap is skipped. Only when all failed is the call
    :class:`ModelUnavailable` (offline mode).
    """

    def __init__(
        self,
        settings: LLMSettings,
        ledger: CostLedger,
        prices: PriceTable,
        budget: BudgetGuard | None = None,
        clock: Callable[[], float] = time.monotonic,
        notices: ModelNotices | None = None,
    ) -> None:
        self._settings = settings
        self._ledger = ledger
        self._clock = clock
        self._prices = prices
        self._budget = budget
        self._notices = notices
        self._endpoints = build_endpoints(settings, prices, clock)
        self.breaker = (
            self._endpoints[0].breaker
            if self._endpoints
            else CircuitBreaker(
                "model", settings.breaker_failures, settings.breaker_window_s, settings.offline_cooldown_s, clock
            )
        )
        self._down = False
        self._told = False
        self._no_tool_choice: set[str] = set()
        """Endpoints (by label) that refused ``tool_choice``: it is not sent to them again."""
        self._cuts = PromptCutWatch(notices)

    @property
    def configured(self) -> bool:
        """False means offline mode by configuration."""
        return bool(self._endpoints)

    @property
    def model(self) -> str:
        """The default model name."""
        return self._settings.model

    def available(self) -> bool:
        """True when a call may be attempted now (configured, and some endpoint's breaker not open)."""
        return any(endpoint.breaker.state != "open" for endpoint in self._endpoints)

    def take_outage_notice(self) -> bool:
        """True exactly once per outage: the caller should tell the operator the model is down."""
        if self._down and not self._told:
            self._told = True
            return True
        return False

    async def close(self) -> None:
        """Close the HTTP clients."""
        for endpoint in self._endpoints:
            await endpoint.client.close()

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
        tool_choice: dict[str, Any] | None = None,
    ) -> ModelReply:
        """One chat completion, with retries and fallbacks. Raises ModelUnavailable when every endpoint
        failed, or BudgetExceeded when the cap leaves no room for an attempt on the main endpoint (that
        attempt is not made; earlier failed ones are recorded).

        ``limit`` adds a cap of the caller's own (e.g. a goal's total budget) to the configured ones.
        ``model`` names the main endpoint's model; the cheap model's name makes it a cheap-tier call, which
        each fallback serves with its own ``cheap_model``.
        ``max_tokens`` raises or lowers the output limit for this use (a plan or a draft needs more than a
        chat turn); ``temperature`` is sent only when given (low for plans and verdicts).
        ``tool_choice`` (e.g. ``{"type": "function", "function": {"name": "submit_plan"}}``) is sent with the
        tools when given; an endpoint that refuses it (400 naming tool_choice) gets the call once more without
        it, and is not sent it again.
        """
        if not self._endpoints:
            raise ModelUnavailable("no model is configured")
        requested = model or self._settings.model
        cheap = requested == self._settings.cheap_model and requested != self._settings.model
        max_out = max_tokens or self._settings.max_completion_tokens
        call = _Call(messages, tools, session, workflow, limit, max_out, temperature, tool_choice)
        reasons: list[str] = []
        for endpoint in self._endpoints:
            if endpoint.breaker.state == "open":
                reasons.append(_labelled(endpoint, endpoint.breaker.last_reason or "the model is unreachable"))
                continue
            try:
                reply = await self._call_endpoint(endpoint, endpoint.model_for(requested, cheap), call)
            except ModelUnavailable as exc:
                reasons.append(_labelled(endpoint, str(exc)))
                if endpoint is not self._endpoints[-1]:
                    log.warning("model %s failed (%s); trying the next endpoint", endpoint.label, exc)
                continue
            if reply is None:
                continue  # over budget: skipped (the operator was told)
            if self._down:
                log.info("model reachable again (%s)", endpoint.label)
            self._down = self._told = False
            return reply
        if not self._down:
            log.error("model unreachable: %s; offline mode until it answers again", "; ".join(reasons))
        self._down = True
        raise ModelUnavailable("; ".join(reasons) or "every model endpoint is over its budget")

    async def _call_endpoint(self, endpoint: Endpoint, name: str, call: _Call) -> ModelReply | None:
        """The call on one endpoint with its retries: the reply, None when a fallback was skipped for the
        budget. Raises ModelUnavailable when the endpoint failed, BudgetExceeded on the main one."""
        estimate = call.prompt_tokens + estimate_tool_tokens(call.tools)
        kwargs: dict[str, Any] = {"model": name, "messages": list(call.messages), "max_tokens": call.max_tokens}
        if call.tools:
            kwargs["tools"] = list(call.tools)
        if call.temperature is not None:
            kwargs["temperature"] = call.temperature
        if call.tool_choice is not None and call.tools and endpoint.label not in self._no_tool_choice:
            kwargs["tool_choice"] = call.tool_choice
        attempt = 0
        while attempt < self._settings.max_attempts:
            attempt += 1
            # Each attempt holds its own reservation: a retry the cap cannot pay for is not made.
            hold = await self._reserve(endpoint, name, estimate, call)
            if isinstance(hold, _Skip):
                return None
            if hold is not None:
                kwargs["model"] = hold.model
            if not endpoint.breaker.allow():
                if hold is not None:
                    await asyncio.shield(self._ledger.release(hold.id))  # not made: nothing to bill
                raise ModelUnavailable(endpoint.breaker.last_reason or "the model is unreachable")
            try:
                reply = await self._attempt(endpoint, kwargs, call, estimate, hold, attempt)
            except _ToolChoiceRefused:
                # The endpoint cannot force a tool: the same call without it, not counted as an attempt
                # (the refusal cost nothing and says nothing about the endpoint's health).
                log.warning("model %s refuses tool_choice; calls to it go without it", endpoint.label)
                self._no_tool_choice.add(endpoint.label)
                del kwargs["tool_choice"]
                attempt -= 1
                continue
            if reply is not None:
                return reply
        raise AssertionError("unreachable")

    async def _reserve(self, endpoint: Endpoint, name: str, estimate: int, call: _Call) -> Hold | _Skip | None:
        """The attempt's hold (None without a budget guard), or _Skip: a fallback that does not fit is skipped."""
        prices = endpoint.pricing.prices
        if self._notices is not None:
            await self._notices.first_use(name, prices, call.session)
        if self._budget is None:
            return None
        args = (call.workflow, name, estimate, call.max_tokens, call.session, call.limit)
        if endpoint.main:
            hold = await self._budget.reserve(*args)
        else:
            got = await self._budget.try_reserve(*args, pricing=endpoint.pricing)
            if isinstance(got, BudgetAlert):
                if self._notices is not None:
                    await self._notices.skipped(endpoint.label, name, got)
                return _Skip()
            hold = got
            if self._notices is not None:
                self._notices.fits(endpoint.label)
        if hold.model != name and self._notices is not None:
            await self._notices.first_use(hold.model, prices, call.session)  # near a cap: the cheap model
        return hold

    async def _attempt(
        self, endpoint: Endpoint, kwargs: dict[str, Any], call: _Call, estimate: int, hold: Hold | None, attempt: int
    ) -> ModelReply | None:
        """One request under its own hold: the reply, or None when it failed and may be tried again
        (after the backoff). Raises ModelUnavailable when it failed for good."""
        import openai  # loaded with the endpoints' clients (graph.models.fallbacks): not by a start without a model
        from openai.types.chat import ChatCompletion

        name: str = kwargs["model"]
        unsettled = hold
        started = self._clock()
        answered = watch_answer()
        try:
            try:
                # The SDK's generic POST (its documented way to any endpoint): ``create`` would first walk
                # the whole prompt through its typed-params transform, milliseconds of CPU per call for
                # messages that are JSON-plain already. Retries, timeouts and errors are the same.
                response = await endpoint.client.post(
                    "/chat/completions", body=kwargs, cast_to=ChatCompletion, options=_BEARER_AUTH
                )
            except openai.APIStatusError as exc:
                if "tool_choice" in kwargs and _refuses_tool_choice(exc):
                    await self._record_failure(endpoint, call, name, estimate, hold, started, exc)
                    unsettled = None
                    endpoint.breaker.end_probe()
                    raise _ToolChoiceRefused() from exc
                retryable = isinstance(exc, openai.RateLimitError | openai.InternalServerError)
                failure: openai.APIError = exc
            except openai.APIConnectionError as exc:
                retryable, failure = True, exc
            else:
                reply = parse_reply(response)
                usage = response.usage
                prompt = usage.prompt_tokens if usage else call.prompt_tokens
                completion = usage.completion_tokens if usage else estimate_tokens(reply.content)
                cost = endpoint.pricing.prices.price(name).cost(prompt, completion)
                latency = int((self._clock() - started) * 1000)
                outcome = "ok" if endpoint.main else f"ok ({endpoint.label})"
                row = LLMCall(
                    call.session, call.workflow, name, prompt, completion, usage is None, latency, outcome, cost
                )
                await self._ledger.settle(hold.id if hold else None, row)
                unsettled = None
                endpoint.breaker.record_success()
                if usage is not None:
                    await self._cuts.check(name, usage.prompt_tokens, call.prompt_tokens, call.session)
                return replace(
                    reply, prompt_tokens=prompt, completion_tokens=completion, model=name, cost=cost,
                    endpoint=endpoint.label,
                )  # fmt: skip
            await self._record_failure(endpoint, call, name, estimate, hold, started, failure)
            unsettled = None
        except _ToolChoiceRefused:
            raise
        except BaseException as exc:
            # Cancelled mid-call (shutdown), or the answer could not be read: the call may have been
            # billed, so it counts at its estimate. Settling is idempotent per hold: a settle that was
            # committed although this task was cancelled while it was written is not recorded twice.
            # If this attempt was the half-open breaker's probe, the next call probes instead; otherwise the
            # breaker would wait forever for this one's verdict and refuse every call until a restart.
            # A request that never left this process (it could not be built) is free, and tells why.
            endpoint.breaker.end_probe()
            local = never_left(exc, answered.value)
            if unsettled is not None:
                row = failed_call(exc, call.session, call.workflow, name, estimate, unsettled.cost, 0, local=local)
                await asyncio.shield(self._ledger.settle(unsettled.id, row))
            if local:
                log.error("model request to %s could not be sent: %s", endpoint.label, type(exc).__name__)
                raise ModelUnavailable(describe_failure(exc)) from exc
            raise
        await self._after_failure(endpoint, failure, attempt, retryable)
        return None

    async def _record_failure(
        self,
        endpoint: Endpoint,
        call: _Call,
        model: str,
        estimate: int,
        hold: Hold | None,
        started: float,
        exc: openai.APIError,
    ) -> None:
        """Settle a failed attempt's hold: at its estimate when the provider may have processed (and
        billed) the request, free only when it certainly did not (see :func:`maybe_processed`)."""
        held = hold.cost if hold is not None else endpoint.pricing.prices.price(model).cost(estimate, call.max_tokens)
        latency = int((self._clock() - started) * 1000)
        row = failed_call(exc, call.session, call.workflow, model, estimate, held, latency_ms=latency)
        await self._ledger.settle(hold.id if hold is not None else None, row)

    async def _after_failure(self, endpoint: Endpoint, exc: openai.APIError, attempt: int, retryable: bool) -> None:
        """Feed the breaker; raise ModelUnavailable when there is no retry, else wait before it."""
        reason = describe_failure(exc)
        opened = endpoint.breaker.record_failure(reason)
        if not retryable or opened or attempt == self._settings.max_attempts:
            raise ModelUnavailable(reason) from exc
        delay = self._settings.retry_base_s * (2 ** (attempt - 1)) * (0.5 + random.random())
        log.warning(
            "model call failed (%s, %s); retry %d/%d in %.2fs",
            reason,
            endpoint.label,
            attempt,
            self._settings.max_attempts - 1,
            delay,
        )
        await asyncio.sleep(delay)


class _Skip:
    """A fallback not called: its estimate does not fit a cap."""


class _ToolChoiceRefused(InternalError):
    """The endpoint answered 400 about ``tool_choice`` (it cannot force a tool): the call goes again without it."""


def _refuses_tool_choice(exc: openai.APIStatusError) -> bool:
    return exc.status_code == 400 and "tool_choice" in f"{exc.message} {exc.body}".lower()


@dataclass(frozen=True)
class _Call:
    """What one :meth:`LLMClient.chat` call asks, whichever endpoint serves it."""

    messages: Sequence[dict[str, Any]]
    tools: Sequence[dict[str, Any]]
    session: str | None
    workflow: str
    limit: Limit | None
    max_tokens: int
    temperature: float | None = None
    tool_choice: dict[str, Any] | None = None

    @functools.cached_property
    def prompt_tokens(self) -> int:
        """Our estimate of the messages' tokens: counted once per call, whatever its attempts and checks."""
        return estimate_message_tokens(self.messages)


def _labelled(endpoint: Endpoint, reason: str) -> str:
    return reason if endpoint.main else f"{endpoint.label} ({endpoint.model}): {reason}"


__all__ = [
    "LLMClient",
    "ModelReply",
    "ToolCall",
    "describe_failure",
    "estimate_message_tokens",
    "estimate_tokens",
    "estimate_tool_tokens",
    "failed_call",
    "force_tool",
    "maybe_processed",
]
