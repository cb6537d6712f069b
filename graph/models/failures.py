"""What a failed model request means: a few words for the ledger and the operator, and whether the provider
may have run (and billed) it (I5: fail closed), or it never left this process."""

from __future__ import annotations

import json
from contextvars import ContextVar
from typing import TYPE_CHECKING

import aiohttp
import pydantic

from memory.db import LLMCall

if TYPE_CHECKING:
    import openai

# ``openai`` is imported where a failure is looked at, not at the top: a start without a model never loads it
# (~0.5 s of CPU), and a failure to look at means its client has loaded it already.


def describe_failure(exc: BaseException) -> str:
    """A failed request in a few words, for the ledger and the operator (no secrets: no URLs, no bodies)."""
    import openai

    if isinstance(exc, openai.APITimeoutError) and _timed_out(exc):
        return "the model did not answer in time"
    if isinstance(exc, openai.APIConnectionError):
        return "cannot connect to the model endpoint"
    if isinstance(exc, openai.APIStatusError):
        return f"the model endpoint answered HTTP {exc.status_code}"
    if isinstance(exc, ValueError | TypeError):
        return f"the request could not be sent ({type(exc).__name__}: check the endpoint's URL and key)"
    return type(exc).__name__


def failed_call(
    exc: BaseException,
    session: str | None,
    workflow: str,
    model: str,
    estimate: int,
    held: float,
    latency_ms: int,
    *,
    local: bool = False,
) -> LLMCall:
    """The ledger row of a request that failed or was interrupted (I5, fail closed): it costs ``held`` (its
    estimate) when the provider may have run it, nothing only when it certainly did not (:func:`maybe_processed`,
    or ``local``: it never left this process, see :func:`never_left`). Anything else but an API error (a
    cancellation, an answer that could not be read) may have been billed."""
    import openai

    if isinstance(exc, openai.APIError):
        cost = held if maybe_processed(exc) else 0.0
        outcome = f"error: {describe_failure(exc)}"
    elif local:
        cost, outcome = 0.0, f"error: {describe_failure(exc)}"
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
    import openai

    if isinstance(exc, openai.APIStatusError):
        return exc.status_code >= 500
    never_sent = (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError)
    return not any(isinstance(cause, never_sent) for cause in _causes(exc))


class Answered:
    """Whether the endpoint answered the request being made (set by :func:`note_answer`)."""

    def __init__(self) -> None:
        self.value = False


_ANSWERED: ContextVar[Answered | None] = ContextVar("model_answered", default=None)


async def note_answer(_response: object) -> None:
    """The HTTP client's response hook: the running request reached the endpoint, which answered."""
    answered = _ANSWERED.get()
    if answered is not None:
        answered.value = True


def watch_answer() -> Answered:
    """Start watching the current task's next request (one per attempt; each task has its own context)."""
    answered = Answered()
    _ANSWERED.set(answered)
    return answered


def never_left(exc: BaseException, answered: bool) -> bool:
    """Whether a request that raised ``exc`` (not an API error) certainly never reached the provider.

    That is a request that failed while it was being built, before any byte went out: aiohttp refusing
    credentials in a URL next to an Authorization header, a key with a character a header cannot carry.
    The HTTP stack raises those as ``ValueError`` or ``TypeError`` (its network failures are its own
    ``ClientError``, ``OSError`` or timeouts). Once the endpoint answered, or for an answer that could not
    be read, the request reached the provider and may have been billed: not free.
    """
    if answered or not isinstance(exc, ValueError | TypeError):
        return False
    if isinstance(exc, json.JSONDecodeError | UnicodeDecodeError | pydantic.ValidationError):
        return False
    network = (aiohttp.ClientError, OSError, TimeoutError)
    return not any(isinstance(seen, network) for seen in [exc, *_causes(exc)])
