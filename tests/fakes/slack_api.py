"""An in-process fake of the Slack Web API and Socket Mode, served by aiohttp on 127.0.0.1.

Usage::

    async with FakeSlack() as sl:
        ...  # SlackSettings(..., api_base_url=sl.api_base_url)
        event_id = await sl.push_event({"type": "message", "channel_type": "im", ...})
        await sl.wait_for("chat.postMessage", 1)
"""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import time
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import aiohttp
from aiohttp import web

from tests.fakes.polling import eventually
from tests.fakes.serving import listen_again, serve, stop_listening


@dataclass(frozen=True)
class ApiCall:
    """One Web API request as the fake saw it (token taken from the header or the body)."""

    method: str
    params: dict[str, Any]
    token: str | None


class FakeSlack:
    """Slack's Web API (``/api/<method>``) and one Socket Mode websocket (``/socket``)."""

    def __init__(
        self,
        bot_token: str = "xoxb-test",
        app_token: str = "xapp-test",
        team_id: str = "T1",
        bot_user_id: str = "UBOT",
        bot_id: str = "BBOT",
        app_id: str = "A1",
    ) -> None:
        self.bot_token = bot_token
        self.app_token = app_token
        self.team_id = team_id
        self.bot_user_id = bot_user_id
        self.bot_id = bot_id
        self.app_id = app_id
        self.calls: list[ApiCall] = []
        self.envelopes: list[dict[str, Any]] = []
        self.acks: dict[str, dict[str, Any]] = {}
        self.port = 0
        self._ts = itertools.count(1)
        self._ids = itertools.count(1)
        self._sockets: list[web.WebSocketResponse] = []
        self._runner: web.AppRunner | None = None
        self._faults: dict[str, list[str]] = {}

    def fail_next(self, method: str, fault: str, n: int = 1) -> None:
        """The next ``n`` calls of ``method`` answer ``"ratelimited"`` (HTTP 429, Retry-After: 0) or are
        recorded and then ``"dropped"`` (connection closed without an answer)."""
        assert fault in ("ratelimited", "dropped")
        self._faults.setdefault(method, []).extend([fault] * n)

    @property
    def api_base_url(self) -> str:
        """``http://127.0.0.1:PORT/api/``, for ``SlackSettings.api_base_url``."""
        return f"http://127.0.0.1:{self.port}/api/"

    @property
    def connected(self) -> bool:
        """True while a Socket Mode client holds an open websocket."""
        return any(not ws.closed for ws in self._sockets)

    async def __aenter__(self) -> FakeSlack:
        app = web.Application()
        app.router.add_route("*", "/api/{method}", self._api)
        app.router.add_get("/socket", self._socket)
        self._runner, self.port = await serve(app, cancel_handlers=False)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for ws in list(self._sockets):
            await ws.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def go_down(self) -> None:
        """Refuse every connection (and drop the open ones) until :meth:`come_back`: an outage."""
        assert self._runner is not None
        await stop_listening(self._runner)

    async def come_back(self) -> None:
        """Accept connections again, on the same port."""
        assert self._runner is not None
        await listen_again(self._runner, self.port)

    # -- Web API -------------------------------------------------------------------------

    async def _api(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params: dict[str, Any] = dict(request.query)
        if request.can_read_body:
            if request.content_type == "application/json":
                params.update(await request.json())
            else:
                params.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
        token = params.pop("token", None)
        header = request.headers.get("Authorization", "")
        if header.startswith("Bearer "):
            token = header.removeprefix("Bearer ")
        self.calls.append(ApiCall(method, params, token))
        faults = self._faults.get(method)
        if faults:
            fault = faults.pop(0)
            if fault == "ratelimited":
                return web.json_response(
                    {"ok": False, "error": "ratelimited"}, status=429, headers={"Retry-After": "0"}
                )
            assert request.transport is not None
            request.transport.close()  # the call arrived; the client never hears how it went
            return web.Response(status=500)
        expected = self.app_token if method == "apps.connections.open" else self.bot_token
        if token != expected:
            return web.json_response({"ok": False, "error": "invalid_auth"})
        return web.json_response(self._answer(method, params))

    def _answer(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        if method == "auth.test":
            return {
                "ok": True,
                "url": "https://fake.slack.com/",
                "team": "Fake",
                "user": "coo",
                "team_id": self.team_id,
                "user_id": self.bot_user_id,
                "bot_id": self.bot_id,
                "is_enterprise_install": False,
            }
        if method == "apps.connections.open":
            return {"ok": True, "url": f"ws://127.0.0.1:{self.port}/socket?ticket={uuid.uuid4().hex}"}
        if method == "chat.postMessage":
            ts = f"1700000000.{next(self._ts):06d}"
            message = {"type": "message", "text": params.get("text", ""), "ts": ts, "bot_id": self.bot_id}
            return {"ok": True, "channel": params.get("channel"), "ts": ts, "message": message}
        if method == "chat.update":
            return {
                "ok": True,
                "channel": params.get("channel"),
                "ts": params.get("ts"),
                "text": params.get("text"),
            }
        return {"ok": True}

    def sent(self, channel: str | None = None) -> list[dict[str, Any]]:
        """Params of every chat.postMessage call, optionally only to ``channel``."""
        return [
            c.params
            for c in self.calls
            if c.method == "chat.postMessage" and (channel is None or c.params.get("channel") == channel)
        ]

    def of(self, method: str) -> list[ApiCall]:
        """Every call to ``method``."""
        return [c for c in self.calls if c.method == method]

    async def wait_for(self, method: str, count: int, timeout: float = 5) -> list[ApiCall]:  # noqa: ASYNC109
        """Wait until ``method`` was called at least ``count`` times; returns those calls."""
        await eventually(lambda: len(self.of(method)) >= count, timeout, f"{count} x {method}")
        return self.of(method)

    # -- Socket Mode ---------------------------------------------------------------------

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self._sockets.append(ws)
        hello = {"type": "hello", "num_connections": 1, "connection_info": {"app_id": self.app_id}}
        await ws.send_json(hello)
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.TEXT:
                data = json.loads(msg.data)
                if "envelope_id" in data:
                    self.acks[data["envelope_id"]] = data
        return ws

    async def wait_connected(self, timeout: float = 5) -> None:  # noqa: ASYNC109
        """Wait until a Socket Mode client is connected."""
        await eventually(lambda: self.connected, timeout, "a socket mode connection")

    async def wait_acks(self, timeout: float = 5) -> None:  # noqa: ASYNC109
        """Wait until every envelope pushed so far has been acked."""
        await eventually(lambda: all(e["envelope_id"] in self.acks for e in self.envelopes), timeout, "acks")

    async def _push(self, kind: str, payload: dict[str, Any], accepts_response_payload: bool) -> str:
        await self.wait_connected()
        envelope_id = str(uuid.uuid4())
        envelope = {
            "envelope_id": envelope_id,
            "type": kind,
            "payload": payload,
            "accepts_response_payload": accepts_response_payload,
            "retry_attempt": 0,
            "retry_reason": "",
        }
        self.envelopes.append(envelope)
        await next(ws for ws in reversed(self._sockets) if not ws.closed).send_json(envelope)
        return envelope_id

    async def push_event(self, event: dict[str, Any], event_id: str | None = None) -> str:
        """Push an Events API envelope; the same ``event_id`` may be pushed twice. Returns the event_id."""
        event_id = event_id or f"Ev{next(self._ids):08d}"
        await self._push("events_api", self.event_callback(event, event_id), False)
        return event_id

    def event_callback(self, event: dict[str, Any], event_id: str) -> dict[str, Any]:
        """The ``event_callback`` body Slack wraps an event in (also what HTTP mode POSTs)."""
        return {
            "token": "verification-token",
            "team_id": self.team_id,
            "api_app_id": self.app_id,
            "event": {"event_ts": event.get("ts", f"{time.time():.6f}"), **event},
            "type": "event_callback",
            "event_id": event_id,
            "event_time": int(time.time()),
            "authorizations": [
                {"team_id": self.team_id, "user_id": self.bot_user_id, "is_bot": True, "enterprise_id": None}
            ],
            "is_ext_shared_channel": False,
        }

    async def push_command(self, user_id: str, channel_id: str, command: str, text: str) -> str:
        """Push a slash command envelope. Returns its trigger_id."""
        trigger_id = f"trig.cmd.{next(self._ids)}"
        payload: dict[str, Any] = {
            "token": "verification-token",
            "team_id": self.team_id,
            "team_domain": "fake",
            "channel_id": channel_id,
            "channel_name": "directmessage",
            "user_id": user_id,
            "user_name": "operator",
            "command": command,
            "text": text,
            "api_app_id": self.app_id,
            "is_enterprise_install": "false",
            "response_url": f"http://127.0.0.1:{self.port}/respond/{trigger_id}",
            "trigger_id": trigger_id,
        }
        await self._push("slash_commands", payload, True)
        return trigger_id

    async def push_action(
        self,
        user_id: str,
        channel_id: str,
        value: str,
        message_ts: str,
        *,
        team_id: str | None = None,
        thread_ts: str | None = None,
    ) -> str:
        """Push a block_actions (button press) envelope. Returns its trigger_id."""
        trigger_id = f"trig.act.{next(self._ids)}"
        team = team_id or self.team_id
        message: dict[str, Any] = {"type": "message", "user": self.bot_user_id, "bot_id": self.bot_id}
        message.update({"ts": message_ts, "text": "card", **({"thread_ts": thread_ts} if thread_ts else {})})
        payload: dict[str, Any] = {
            "type": "block_actions",
            "user": {"id": user_id, "username": "operator", "name": "operator", "team_id": team},
            "api_app_id": self.app_id,
            "token": "verification-token",
            "container": {"type": "message", "message_ts": message_ts, "channel_id": channel_id},
            "trigger_id": trigger_id,
            "team": {"id": team, "domain": "fake"},
            "enterprise": None,
            "is_enterprise_install": False,
            "channel": {"id": channel_id, "name": "directmessage"},
            "message": message,
            "response_url": f"http://127.0.0.1:{self.port}/respond/{trigger_id}",
            "actions": [
                {
                    "type": "button",
                    "action_id": "coo_btn_0",
                    "block_id": "b0",
                    "text": {"type": "plain_text", "text": "Approve"},
                    "value": value,
                    "action_ts": f"{time.time():.6f}",
                }
            ],
            "state": {"values": {}},
        }
        await self._push("interactive", payload, True)
        return trigger_id


async def signed_post(
    url: str,
    body: str | dict[str, Any],
    signing_secret: str | None,
    content_type: str = "application/json",
    timestamp: int | None = None,
    bad_signature: bool = False,
) -> tuple[int, str]:
    """POST like Slack does in HTTP mode (v0 signature); ``signing_secret=None`` sends no signature.

    A dict body is JSON- or form-encoded to match ``content_type``. Returns (status, response text).
    """
    if isinstance(body, dict):
        body = json.dumps(body) if content_type == "application/json" else urlencode(body)
    headers = {"Content-Type": content_type}
    if signing_secret is not None:
        ts = str(int(time.time()) if timestamp is None else timestamp)
        key = (signing_secret + "-wrong" if bad_signature else signing_secret).encode()
        digest = hmac.new(key, f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
        headers |= {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": f"v0={digest}"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(url, data=body.encode(), headers=headers) as resp,
    ):
        return resp.status, await resp.text()
