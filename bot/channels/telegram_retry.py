"""How calls to the Bot API are retried: start-up calls until they succeed, sends within a limit, rate limits.

A start-up call (``deleteWebhook``, ``setMyCommands``, ``setWebhook``) is retried with backoff for as long as
the Bot API is unreachable, as polling is. A send or edit is retried on a rate limit (a few times) and while
no connection can be made, for up to ``send_retry_s``; then :class:`ChannelUnreachable` says so. A timeout or
a 5xx is never retried: the message may have arrived, and it is never sent twice.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import warnings
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from telegram.error import BadRequest, NetworkError, RetryAfter

from bot.channels.aiohttp_request import NotConnected
from bot.messages import ChannelUnreachable

T = TypeVar("T")

MAX_RETRY_AFTER_S = 30.0
RATE_LIMIT_ATTEMPTS = 3


class BotApiRetry:
    """The backoff for one channel's Bot API calls; it logs to the channel's ``log``."""

    def __init__(self, base_s: float, max_s: float, send_retry_s: float, log: logging.Logger) -> None:
        """``base_s`` / ``max_s``: the backoff while unreachable; a send gives up after ``send_retry_s`` of it."""
        self.base_s = base_s
        self.max_s = max_s
        self._send_retry_s = send_retry_s
        self._log = log

    def next_delay(self, delay: float) -> float:
        """The pause after ``delay`` (doubling, up to ``max_s``)."""
        return min(self.max_s, delay * 2)

    async def until_done(self, method: Callable[..., Awaitable[T]], name: str, **kwargs: Any) -> T:
        """A start-up call, retried with backoff for as long as the Bot API is unreachable (as polling is)."""
        delay = self.base_s
        while True:
            try:
                return await method(**kwargs)
            except RetryAfter as exc:
                await asyncio.sleep(retry_after_s(exc))
            except NetworkError as exc:
                if isinstance(exc, BadRequest):
                    raise
                self._log.warning("telegram: %s failed (%s); retrying in %.0f s", name, exc, delay)
                await asyncio.sleep(delay)
                delay = self.next_delay(delay)

    async def sending(self, method: Callable[..., Awaitable[T]], **kwargs: Any) -> T:
        """A send or edit, retried on a rate limit (a few times) and while the Bot API cannot be reached.

        A connection that cannot be made is retried with backoff for up to ``send_retry_s``, then
        :class:`ChannelUnreachable` is raised: the caller keeps what it wanted to say for later.
        """
        rate_limited = 0
        delay = self.base_s
        give_up_at = asyncio.get_running_loop().time() + self._send_retry_s
        while True:
            try:
                return await method(**kwargs)
            except RetryAfter as exc:
                rate_limited += 1
                wait_s = retry_after_s(exc)
                if rate_limited == RATE_LIMIT_ATTEMPTS or wait_s > MAX_RETRY_AFTER_S:
                    raise
                self._log.warning("telegram rate limit, retrying in %.0f s", wait_s)
                await asyncio.sleep(wait_s)
            except NotConnected as exc:
                if asyncio.get_running_loop().time() + delay > give_up_at:
                    raise ChannelUnreachable(f"telegram: the Bot API is unreachable ({exc})") from exc
                self._log.warning("telegram: sending failed (%s); retrying in %.0f s", exc, delay)
                await asyncio.sleep(delay)
                delay = self.next_delay(delay)


def retry_after_s(exc: RetryAfter) -> float:
    """The wait a rate limit asks for, in seconds."""
    with warnings.catch_warnings():
        # The int-vs-timedelta migration warning of PTB 22 is noise for us.
        warnings.simplefilter("ignore")
        wait = exc.retry_after
    return wait.total_seconds() if isinstance(wait, dt.timedelta) else float(wait)
