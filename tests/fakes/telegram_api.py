"""A fake Telegram Bot API server (aiohttp) for tests that talk real HTTP.

async with FakeTelegram(token="123:ABC") as tg:
    settings = TelegramSettings(token="123:ABC", api_base_url=tg.api_root)
    tg.push_message(user_id=7, chat_id=7, text="hi")
    await tg.wait_for("sendMessage")

As its own process (for benchmarks of a deployed bot), serving until SIGTERM/SIGINT:

    python -m tests.fakes.telegram_api --token 123:ABC [--port P]

It prints ``ready <api_root>`` on stdout once listening, and adds a control API under ``/_fake/``
(see :func:`control_routes`): push messages, read received calls and update hand-out times.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import secrets
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.serving import listen_again, serve, stop_listening

JSON = dict[str, Any]
# Free-text parameters stay strings even when they look like JSON ("42", "true").
_STRING_PARAMS = frozenset(
    {
        "text",
        "caption",
        "query",
        "url",
        "secret_token",
        "callback_query_id",
        "inline_message_id",
        "action",
        "parse_mode",
        "ip_address",
        "description",
        "short_description",
        "name",
        "title",
    }
)


@dataclass
class Call:
    """One request the fake received: Bot API method name, decoded parameters, HTTP status.

    ``at`` is ``time.monotonic()`` on arrival (CLOCK_MONOTONIC: comparable across processes on Linux).
    """

    method: str
    params: dict[str, Any]
    status: int = 200
    at: float = field(default_factory=time.monotonic)
    message_id: int | None = None
    """The id of the message a successful sendMessage created."""


@dataclass
class _Failure:
    status: int
    retry_after: float | None
    description: str | None
    when: Callable[[Call], bool] | None = None


@dataclass
class _Pending:
    update: JSON
    delivered: bool = False


def _decode(key: str, value: str) -> Any:
    if key in _STRING_PARAMS:
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def _user(user_id: int) -> JSON:
    return {"id": user_id, "is_bot": False, "first_name": f"User{user_id}"}


def _chat(chat_id: int, forum: bool = False) -> JSON:
    if chat_id > 0:
        return {"id": chat_id, "type": "private", "first_name": f"User{chat_id}"}
    chat: JSON = {"id": chat_id, "type": "supergroup", "title": f"Group{chat_id}"}
    if forum:
        chat["is_forum"] = True
    return chat


def made_up_token(bot_id: int = 4242) -> str:
    """A token in the shape @BotFather gives (digits, a colon, ``AA`` and 33 more characters), made up per run, so
    that no token-shaped value sits in the tree (the fake accepts whatever token it is given)."""
    return f"{bot_id}:AA{secrets.token_urlsafe(33)[:33]}"


class FakeTelegram:
    """Fake Bot API on 127.0.0.1 with a free port; ``api_root`` goes into ``api_base_url``."""

    def __init__(self, token: str = "123:ABC", *, username: str = "fake_bot", port: int = 0) -> None:
        self.token = token
        self.port = port
        self.username = username
        head = token.split(":", 1)[0]
        self.bot_user: JSON = {
            "id": int(head) if head.isdigit() else 1,
            "is_bot": True,
            "first_name": "Fake Bot",
            "username": username,
        }
        self.calls: list[Call] = []
        self.commands: list[JSON] = []
        self.webhook: JSON | None = None
        self._pending: list[_Pending] = []
        self._messages: dict[tuple[str, int], JSON] = {}  # what the bot sent, for edits and taps
        self._failures: dict[str, list[_Failure]] = {}
        self._update_ids = itertools.count(1)
        self._message_ids = itertools.count(1)
        self._query_ids = itertools.count(1)
        self._changed = asyncio.Event()
        self._closing = False
        self._runner: web.AppRunner | None = None
        self.api_root = ""
        # Called with each request as it arrives (before it is answered): lets a test act at an exact moment.
        self.on_call: Callable[[Call], None] | None = None
        self.held: dict[str, asyncio.Event] = {}
        """Method name (lower case) -> an event its calls wait for, once recorded, before they are answered."""
        self.handed_out: dict[int, float] = {}
        """update_id -> ``time.monotonic()`` when a getUpdates response first carried it."""
        self.control = False
        """True adds the ``/_fake/`` control API (the standalone process turns it on)."""
        self.down = False
        """True between :meth:`go_down` and :meth:`come_back`."""

    async def __aenter__(self) -> FakeTelegram:
        app = web.Application()
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        if self.control:
            app.add_routes(control_routes(self))
        self._runner, port = await serve(app, self.port)
        self.api_root = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._closing = True
        self._wake()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ---- outages ---------------------------------------------------------------------------

    async def go_down(self) -> None:
        """Refuse every connection (and drop the open ones) until :meth:`come_back`: an outage."""
        assert self._runner is not None
        self.down = True
        await stop_listening(self._runner)

    async def come_back(self) -> None:
        """Accept connections again, on the same port."""
        assert self._runner is not None
        await listen_again(self._runner, int(self.api_root.rsplit(":", 1)[1]))
        self.down = False

    # ---- pushing updates -------------------------------------------------------------------

    def push_raw(self, update: JSON) -> int:
        """Queue an update as given (``update_id`` assigned if missing); re-pushing an id is allowed."""
        update = dict(update)
        if "update_id" not in update:
            update["update_id"] = next(self._update_ids)
        else:
            self._bump_update_ids(update["update_id"])
        self._pending.append(_Pending(update))
        self._wake()
        return int(update["update_id"])

    def push_message(
        self,
        user_id: int,
        chat_id: int,
        text: str,
        update_id: int | None = None,
        thread_id: int | None = None,
    ) -> int:
        """Queue a new text message from ``user_id`` in ``chat_id``; returns its update_id."""
        return self._push("message", self._user_message(user_id, chat_id, text, thread_id), update_id)

    def push_edit(
        self,
        user_id: int,
        chat_id: int,
        message_id: int,
        text: str,
        update_id: int | None = None,
        thread_id: int | None = None,
    ) -> int:
        """Queue an ``edited_message`` for an earlier user message; returns its update_id."""
        message = self._user_message(user_id, chat_id, text, thread_id, message_id=message_id)
        message["edit_date"] = int(time.time())
        return self._push("edited_message", message, update_id)

    def push_callback(
        self, user_id: int, chat_id: int, message_id: int, data: str, update_id: int | None = None
    ) -> int:
        """Queue a button tap on message ``message_id`` (the sent one, if the fake knows it)."""
        message = self._messages.get((str(chat_id), message_id)) or {
            "message_id": message_id,
            "date": int(time.time()),
            "chat": _chat(chat_id),
            "from": self.bot_user,
            "text": "",
        }
        query = {
            "id": str(next(self._query_ids)),
            "from": _user(user_id),
            "chat_instance": f"ci{chat_id}",
            "message": message,
            "data": data,
        }
        return self._push("callback_query", query, update_id)

    # ---- inspecting calls ------------------------------------------------------------------

    def sent(self, chat_id: int | str | None = None) -> list[dict[str, Any]]:
        """Parameters of successful sendMessage calls, optionally only those to ``chat_id``."""
        return [
            call.params
            for call in self.calls
            if call.method == "sendMessage"
            and call.status == 200
            and (chat_id is None or str(call.params.get("chat_id")) == str(chat_id))
        ]

    async def wait_for(  # noqa: ASYNC109 - the brief fixes this signature
        self, what: str | Callable[[Call], bool], count: int = 1, timeout: float = 5
    ) -> list[Call]:
        """Wait until ``count`` recorded calls (failed ones too) match a method name or predicate."""
        match = what if callable(what) else (lambda call: call.method == what)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            found = [call for call in self.calls if match(call)]
            if len(found) >= count:
                return found
            remaining = deadline - loop.time()
            if remaining <= 0:
                seen = [call.method for call in self.calls]
                raise AssertionError(f"waited {timeout}s for {count} x {what!r}, got {len(found)}: {seen}")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    def hold(self, method: str) -> asyncio.Event:
        """Hold every call of ``method`` after it is recorded, unanswered, until the returned event is set."""
        return self.held.setdefault(method.lower(), asyncio.Event())

    def fail_next(
        self,
        method: str,
        status: int,
        n: int = 1,
        retry_after: float | None = None,
        description: str | None = None,
        when: Callable[[Call], bool] | None = None,
    ) -> None:
        """Make the next ``n`` calls of ``method`` fail with ``status`` (with ``when``: the next ``n`` that
        match it; other calls pass).

        429 carries ``parameters.retry_after`` (default 1; Telegram sends whole seconds, a float keeps
        tests fast; PTB treats 0 as absent).
        """
        failure = _Failure(status, retry_after, description, when)
        self._failures.setdefault(method.lower(), []).extend([failure] * n)

    # ---- HTTP ------------------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.Response:
        arrived = time.monotonic()
        try:
            params = await self._params(request)
        except ValueError as exc:
            return self._error(400, f"Bad Request: {exc}")
        # Recorded on arrival, so a test can see that a long poll is under way.
        call = Call(request.match_info["method"], params, at=arrived)
        self.calls.append(call)
        if self.on_call is not None:
            self.on_call(call)
        self._wake()
        held = self.held.get(call.method.lower())
        if held is not None:
            await held.wait()
        response = await self._answer(request.match_info["token"], call)
        call.status = response.status
        return response

    async def _answer(self, token: str, call: Call) -> web.Response:
        if token != self.token:
            return self._error(401, "Unauthorized")
        name = call.method.lower()
        failures = self._failures.get(name, [])
        matching = next((f for f in failures if f.when is None or f.when(call)), None)
        if matching is not None:
            failures.remove(matching)
            return self._failure(matching)
        try:
            if name == "getupdates":
                result = await self._get_updates(call.params)
            else:
                result = self._dispatch(name, call.params)
                if name == "sendmessage":
                    call.message_id = int(result["message_id"])
        except _ApiError as exc:
            return self._error(exc.status, str(exc))
        return web.json_response({"ok": True, "result": result})

    @staticmethod
    async def _params(request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = {key: _decode(key, value) for key, value in request.query.items()}
        if request.content_type == "application/json":
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError("JSON body must be an object")
            params.update(body)
        elif request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
            for key, value in (await request.post()).items():
                if isinstance(value, str):
                    params[key] = _decode(key, value)
                elif isinstance(value, web.FileField):
                    params[key] = {"filename": value.filename, "content": value.file.read()}
                else:
                    params[key] = bytes(value)
        return params

    @staticmethod
    def _error(status: int, description: str, extra: JSON | None = None) -> web.Response:
        body: JSON = {"ok": False, "error_code": status, "description": description}
        if extra:
            body["parameters"] = extra
        return web.json_response(body, status=status)

    def _failure(self, failure: _Failure) -> web.Response:
        if failure.status == 429:
            after = failure.retry_after if failure.retry_after is not None else 1
            text = failure.description or f"Too Many Requests: retry after {after}"
            return self._error(429, text, {"retry_after": after})
        default = "Internal Server Error" if failure.status >= 500 else "Bad Request: injected failure"
        return self._error(failure.status, failure.description or default)

    def _dispatch(self, name: str, params: dict[str, Any]) -> Any:
        if name == "getme":
            return self.bot_user
        if name == "setmycommands":
            self.commands = list(params.get("commands", []))
        elif name == "setwebhook":
            self.webhook = params
            self._drop_if_asked(params)
        elif name == "deletewebhook":
            self.webhook = None
            self._drop_if_asked(params)
        elif name == "getwebhookinfo":
            url = self.webhook.get("url", "") if self.webhook else ""
            pending = len(self._pending)
            return {"url": url, "has_custom_certificate": False, "pending_update_count": pending}
        elif name == "sendmessage":
            return self._send(params)
        elif name == "editmessagetext":
            return self._edit(params)
        return True

    def _send(self, params: dict[str, Any]) -> JSON:
        if not str(params.get("text", "")).strip():
            raise _ApiError("Bad Request: message text is empty")
        try:
            chat_id = int(params["chat_id"])
        except (KeyError, TypeError, ValueError):
            raise _ApiError("Bad Request: chat not found") from None
        message: JSON = {
            "message_id": next(self._message_ids),
            "date": int(time.time()),
            "chat": _chat(chat_id, forum="message_thread_id" in params),
            "from": self.bot_user,
            "text": params["text"],
        }
        if "message_thread_id" in params:
            message["message_thread_id"] = int(params["message_thread_id"])
            message["is_topic_message"] = True
        if "reply_markup" in params:
            message["reply_markup"] = params["reply_markup"]
        self._messages[(str(chat_id), message["message_id"])] = message
        return message

    def _edit(self, params: dict[str, Any]) -> JSON:
        chat_id, message_id = int(params["chat_id"]), int(params["message_id"])
        old = self._messages.get((str(chat_id), message_id))
        markup = params.get("reply_markup")
        if old is not None and old.get("text") == params.get("text") and old.get("reply_markup") == markup:
            raise _ApiError(
                "Bad Request: message is not modified: specified new message content and reply markup "
                "are exactly the same as a current content and reply markup of the message"
            )
        message = dict(old or {"message_id": message_id, "chat": _chat(chat_id), "from": self.bot_user})
        message.update(text=params.get("text", ""), date=message.get("date", int(time.time())))
        message["edit_date"] = int(time.time())
        message.pop("reply_markup", None)
        if markup:
            message["reply_markup"] = markup
        self._messages[(str(chat_id), message_id)] = message
        return message

    async def _get_updates(self, params: dict[str, Any]) -> list[JSON]:
        if self.webhook is not None:
            raise _ApiError("Conflict: can't use getUpdates method while webhook is active", 409)
        offset = int(params.get("offset") or 0)
        limit = int(params.get("limit") or 100)
        deadline = asyncio.get_running_loop().time() + float(params.get("timeout") or 0)
        while True:
            # Confirmed = delivered before and below the offset; a re-pushed old id is still news.
            self._pending = [p for p in self._pending if not (p.delivered and p.update["update_id"] < offset)]
            ready = [p for p in self._pending if p.update["update_id"] >= offset or not p.delivered][:limit]
            remaining = deadline - asyncio.get_running_loop().time()
            if ready or remaining <= 0 or self._closing:
                now = time.monotonic()
                for pending in ready:
                    pending.delivered = True
                    self.handed_out.setdefault(int(pending.update["update_id"]), now)
                return [p.update for p in ready]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    # ---- helpers ---------------------------------------------------------------------------

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _drop_if_asked(self, params: dict[str, Any]) -> None:
        if params.get("drop_pending_updates"):
            self._pending.clear()

    def _bump_update_ids(self, used: int) -> None:
        current = next(self._update_ids)
        self._update_ids = itertools.count(max(current, used + 1))

    def _push(self, kind: str, payload: JSON, update_id: int | None) -> int:
        update: JSON = {kind: payload}
        if update_id is not None:
            update["update_id"] = update_id
        return self.push_raw(update)

    def _user_message(
        self, user_id: int, chat_id: int, text: str, thread_id: int | None, message_id: int | None = None
    ) -> JSON:
        message: JSON = {
            "message_id": message_id if message_id is not None else next(self._message_ids),
            "date": int(time.time()),
            "chat": _chat(chat_id, forum=thread_id is not None),
            "from": _user(user_id),
            "text": text,
        }
        if text.startswith("/"):
            word = text.split(maxsplit=1)[0]
            length = len(word.encode("utf-16-le")) // 2
            message["entities"] = [{"type": "bot_command", "offset": 0, "length": length}]
        if thread_id is not None:
            message["message_thread_id"] = thread_id
            message["is_topic_message"] = True
        return message


class _ApiError(Exception):
    """An error the fake answers, like Telegram does for bad input (400 unless told)."""

    def __init__(self, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.status = status


# ---- standalone process: control API and entry point ------------------------------------------


def control_routes(tg: FakeTelegram) -> list[web.RouteDef]:
    """The control API a benchmark driver uses from another process.

    - ``POST /_fake/push`` ``{"messages": [{"user_id", "chat_id", "text"}, ...]}``: queue them all at
      once; answers ``{"update_ids": [...]}``.
    - ``GET /_fake/calls?after=N&wait=S&method=M``: calls from index ``N`` on (optionally only Bot API
      method ``M``), waiting up to ``S`` seconds for at least one new call; each call as
      ``{"seq", "method", "at", "status", "chat_id", "text"}``; ``next`` is the index to ask from next.
    - ``GET /_fake/handouts``: ``{"handed_out": {update_id: at}}``.
    - ``POST /_fake/press`` ``{"user_id", "chat_id", "message_id", "data"}``: queue a button tap;
      answers ``{"update_id": ...}``. A call's ``message_id`` and ``buttons`` (``[[label, data], ...]``)
      say what to press.
    """

    async def push(request: web.Request) -> web.Response:
        body = await request.json()
        ids = [tg.push_message(int(m["user_id"]), int(m["chat_id"]), str(m["text"])) for m in body["messages"]]
        return web.json_response({"update_ids": ids})

    async def calls(request: web.Request) -> web.Response:
        after = int(request.query.get("after", 0))
        method = request.query.get("method", "").lower()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + float(request.query.get("wait", 0))
        while len(tg.calls) <= after and loop.time() < deadline and not tg._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(tg._changed.wait(), deadline - loop.time())
        found = [
            {
                "seq": seq,
                "method": call.method,
                "at": call.at,
                "status": call.status,
                "chat_id": call.params.get("chat_id"),
                "text": call.params.get("text"),
                "message_id": call.message_id,
                "buttons": [
                    [b.get("text"), b.get("callback_data")]
                    for row in (call.params.get("reply_markup") or {}).get("inline_keyboard", [])
                    for b in row
                ],
            }
            for seq, call in enumerate(tg.calls[after:], start=after)
            if not method or call.method.lower() == method
        ]
        return web.json_response({"calls": found, "next": len(tg.calls)})

    async def press(request: web.Request) -> web.Response:
        body = await request.json()
        update_id = tg.push_callback(
            int(body["user_id"]), int(body["chat_id"]), int(body["message_id"]), str(body["data"])
        )
        return web.json_response({"update_id": update_id})

    async def handouts(request: web.Request) -> web.Response:
        return web.json_response({"handed_out": {str(k): v for k, v in tg.handed_out.items()}})

    return [
        web.post("/_fake/push", push),
        web.get("/_fake/calls", calls),
        web.get("/_fake/handouts", handouts),
        web.post("/_fake/press", press),
    ]


async def _serve(token: str, port: int) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    tg = FakeTelegram(token, port=port)
    tg.control = True
    async with tg:
        print(f"ready {tg.api_root}", flush=True)
        await stop.wait()


def main(argv: list[str] | None = None) -> None:
    """``python -m tests.fakes.telegram_api --token T [--port P]``: serve until SIGTERM or SIGINT."""
    parser = argparse.ArgumentParser(description="fake Telegram Bot API with a /_fake/ control API")
    parser.add_argument("--token", default="123:ABC", help="the only bot token it accepts")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: a free one)")
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.token, args.port))


if __name__ == "__main__":
    main()
