"""The webhook transport for Telegram: an aiohttp server that checks the secret header and hands each update on.

Its answer tells Telegram whether the update was stored (I3): 200 once it is (or when it is one to skip),
500 when it is not, so that Telegram delivers it again. A wrong secret gets 403 and nothing else.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from bot.settings import TelegramSettings

logger = logging.getLogger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"

Deliver = Callable[[dict[str, Any]], Awaitable[bool]]
"""Hands one raw update to the core; False when it could not be stored."""


async def serve_webhook(settings: TelegramSettings, deliver: Deliver) -> web.AppRunner:
    """Start serving the webhook at ``settings.webhook_address``; the caller cleans the runner up."""
    assert settings.webhook_url is not None and settings.webhook_secret is not None
    expected = settings.webhook_secret.get_secret_value().encode("utf-8", "surrogatepass")

    async def receive(request: web.Request) -> web.Response:
        # Compared as bytes: compare_digest refuses str with non-ASCII characters (a TypeError, so a
        # stranger's header got a 500 and a traceback); any header is just a wrong secret now.
        given = request.headers.get(SECRET_HEADER, "").encode("utf-8", "surrogatepass")
        if not hmac.compare_digest(given, expected):
            return web.Response(status=403)
        try:
            raw = json.loads(await request.read())
        except ValueError:
            logger.error("telegram webhook: a body that is not JSON; skipped")
            return web.Response(status=200)
        if not isinstance(raw, dict):
            return web.Response(status=200)
        # 500 makes Telegram deliver the update again: it was not stored.
        return web.Response(status=200 if await deliver(raw) else 500)

    app = web.Application(client_max_size=4 * 1024 * 1024)
    app.router.add_post(urlsplit(settings.webhook_url).path or "/", receive)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    host, port = settings.webhook_address
    try:
        await web.TCPSite(runner, host, port).start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner
