"""A real local HTTP server (aiohttp, 127.0.0.1) that receives signed webhook posts, like a publishing
endpoint would: it verifies the HMAC-SHA256 signature over the raw body and the ``Idempotency-Key``
header, treats a repeated key as the same post, and can answer scripted statuses (5xx, 4xx, a redirect).

async with WebhookServer(secret="s3cret") as hook:
    hook.script = [503]             # the next request answers 503 (then 201 again)
    url = hook.url                  # http://127.0.0.1:<port>/hook
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.serving import serve


@dataclass
class Received:
    """One request: its body as JSON, the key, whether the signature verified, the status answered."""

    path: str
    body: dict[str, Any]
    key: str
    signature_ok: bool
    status: int


@dataclass
class WebhookServer:
    """Counts deliveries; ``posts`` are the distinct posts accepted (one per Idempotency-Key)."""

    secret: str = "whsec-test-0123456789"
    script: list[int] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    posts: dict[str, dict[str, Any]] = field(default_factory=dict)
    port: int = 0
    _runner: web.AppRunner | None = None
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    @property
    def url(self) -> str:
        """Where posts are delivered."""
        return f"http://127.0.0.1:{self.port}/hook"

    @property
    def redirect_target(self) -> str:
        """Where a scripted 3xx points (a request there would be counted as a followed redirect)."""
        return f"http://127.0.0.1:{self.port}/elsewhere"

    async def __aenter__(self) -> WebhookServer:
        app = web.Application()
        app.router.add_post("/hook", self._hook)
        app.router.add_post("/elsewhere", self._hook)
        self._runner, self.port = await serve(app, self.port, cancel_handlers=False)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def wait_received(self, count: int, timeout: float = 5.0) -> list[Received]:  # noqa: ASYNC109
        """Wait until ``count`` requests arrived."""
        async with self._changed:
            await asyncio.wait_for(self._changed.wait_for(lambda: len(self.received) >= count), timeout)
        return self.received

    async def _hook(self, request: web.Request) -> web.Response:
        raw = await request.read()
        expected = "sha256=" + hmac.new(self.secret.encode(), raw, hashlib.sha256).hexdigest()
        signature_ok = hmac.compare_digest(request.headers.get("X-Coo-Signature", ""), expected)
        key = request.headers.get("Idempotency-Key", "")
        try:
            body = json.loads(raw)
        except ValueError:
            body = {}
        status = self.script.pop(0) if self.script else 201
        if not signature_ok:
            status = 401
        elif not key or body.get("idempotency_key") != key:
            status = 400
        self.received.append(Received(request.path, body, key, signature_ok, status))
        async with self._changed:
            self._changed.notify_all()
        if 300 <= status < 400:
            return web.Response(status=status, headers={"Location": self.redirect_target})
        if status >= 300:
            return web.json_response({"error": f"status {status}"}, status=status)
        first = key not in self.posts
        if first:
            self.posts[key] = body
        post_id = f"post-{list(self.posts).index(key) + 1}"
        return web.json_response({"id": post_id, "url": f"https://blog.example.org/{post_id}"}, status=status)
