"""LLM client: any OpenAI-compatible endpoint, with retries, usage ledger and offline fallback."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import openai

from graph.errors import ModelUnavailable
from graph.settings import LLMSettings
from memory.db import Database, LLMCall

log = logging.getLogger(__name__)

_RETRYABLE = (openai.RateLimitError, openai.InternalServerError, openai.APIConnectionError)


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

    def as_message(self) -> dict[str, Any]:
        """The assistant message in OpenAI chat format (JSON-plain, safe for checkpoints)."""
        msg: dict[str, Any] = {"role": "assistant", "content": self.content}
        if self.tool_calls:
            msg["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
                for c in self.tool_calls
            ]
        return msg


def estimate_tokens(text: str) -> int:
    """A local token estimate (no tokenizer download): ~4 characters a token, at least 1."""
    return max(1, (len(text) + 3) // 4)


def estimate_message_tokens(messages: Sequence[dict[str, Any]]) -> int:
    """Estimated prompt tokens for a list of chat messages (4 tokens of framing each)."""
    return sum(4 + estimate_tokens(json.dumps(m, ensure_ascii=False)) for m in messages)


@dataclass
class _Health:
    down_since: float | None = None
    retry_at: float = 0.0
    told: bool = False
    last_reason: str = ""
    notices: list[str] = field(default_factory=list)


class LLMClient:
    """Calls the model, retrying 429/5xx/connection errors with backoff, and records usage.

    After the retries are exhausted the client is "down": callers get :class:`ModelUnavailable`
    without a network call until ``offline_cooldown_s`` has passed, then one call probes again.
    """

    def __init__(
        self,
        settings: LLMSettings,
        db: Database,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._settings = settings
        self._db = db
        self._clock = clock
        self._health = _Health()
        self._client: openai.AsyncOpenAI | None = None
        if settings.configured:
            key = settings.api_key.get_secret_value() if settings.api_key else "not-needed"
            self._client = openai.AsyncOpenAI(
                base_url=settings.base_url or "https://api.openai.com/v1",
                api_key=key,
                timeout=settings.timeout_s,
                max_retries=0,  # we retry ourselves so that every attempt is visible and bounded
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
        """True when a call may be attempted now (configured and not inside a down cooldown)."""
        if self._client is None:
            return False
        return self._health.down_since is None or self._clock() >= self._health.retry_at

    def take_outage_notice(self) -> bool:
        """True exactly once per outage: the caller should tell the operator the model is down."""
        if self._health.down_since is not None and not self._health.told:
            self._health.told = True
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
    ) -> ModelReply:
        """One chat completion, with retries. Raises ModelUnavailable when it cannot be had."""
        if self._client is None:
            raise ModelUnavailable("no model is configured")
        if not self.available():
            raise ModelUnavailable(self._health.last_reason or "the model is unreachable")
        name = model or self._settings.model
        kwargs: dict[str, Any] = {"model": name, "messages": list(messages)}
        if tools:
            kwargs["tools"] = list(tools)
        attempts = self._settings.max_attempts
        for attempt in range(1, attempts + 1):
            started = self._clock()
            try:
                response = await self._client.chat.completions.create(**kwargs)
            except _RETRYABLE as exc:
                reason = _describe(exc)
                await self._record(session, workflow, name, messages, "", started, f"error: {reason}")
                if attempt == attempts:
                    self._mark_down(reason)
                    raise ModelUnavailable(reason) from exc
                delay = self._settings.retry_base_s * (2 ** (attempt - 1)) * (0.5 + random.random())
                log.warning("model call failed (%s); retry %d/%d in %.2fs", reason, attempt, attempts - 1, delay)
                await asyncio.sleep(delay)
                continue
            except openai.APIStatusError as exc:
                # 4xx other than 429: retrying will not help (bad model name, bad key...).
                reason = _describe(exc)
                await self._record(session, workflow, name, messages, "", started, f"error: {reason}")
                self._mark_down(reason)
                raise ModelUnavailable(reason) from exc
            reply = _parse(response)
            usage = response.usage
            prompt = usage.prompt_tokens if usage else estimate_message_tokens(messages)
            completion = usage.completion_tokens if usage else estimate_tokens(reply.content)
            await self._db.record_llm_call(
                LLMCall(
                    session,
                    workflow,
                    name,
                    prompt,
                    completion,
                    usage is None,
                    int((self._clock() - started) * 1000),
                    "ok",
                )
            )
            self._mark_up()
            return ModelReply(reply.content, reply.tool_calls, prompt, completion)
        raise AssertionError("unreachable")

    async def _record(
        self,
        session: str | None,
        workflow: str,
        model: str,
        messages: Sequence[dict[str, Any]],
        completion: str,
        started: float,
        outcome: str,
    ) -> None:
        # A failed call may still have been billed; record the estimate so spend is never hidden.
        await self._db.record_llm_call(
            LLMCall(
                session,
                workflow,
                model,
                estimate_message_tokens(messages),
                0,
                True,
                int((self._clock() - started) * 1000),
                outcome,
            )
        )

    def _mark_down(self, reason: str) -> None:
        if self._health.down_since is None:
            self._health = _Health(down_since=self._clock())
            log.error("model unreachable: %s; offline mode until it answers again", reason)
        self._health.last_reason = reason
        self._health.retry_at = self._clock() + self._settings.offline_cooldown_s

    def _mark_up(self) -> None:
        if self._health.down_since is not None:
            log.info("model reachable again")
        self._health = _Health()


def _describe(exc: Exception) -> str:
    if isinstance(exc, openai.APITimeoutError):
        return "the model did not answer in time"
    if isinstance(exc, openai.APIConnectionError):
        return "cannot connect to the model endpoint"
    if isinstance(exc, openai.APIStatusError):
        return f"the model endpoint answered HTTP {exc.status_code}"
    return type(exc).__name__


def _parse(response: Any) -> ModelReply:
    if not response.choices:
        return ModelReply("")
    message = response.choices[0].message
    calls = tuple(
        ToolCall(c.id, c.function.name, c.function.arguments or "{}")
        for c in (message.tool_calls or [])
        if getattr(c, "function", None) is not None
    )
    return ModelReply(message.content or "", calls)
