"""Slack adapter: Slack payloads in, Web API calls out. A thin translator (see DESIGN.md).

Socket Mode when an app token is set, otherwise HTTP mode served by aiohttp inside our own loop,
with slack-bolt verifying request signatures. Bolt runs with ``process_before_response``: the core
stores each update before Slack gets its ack (I3); when storing fails no ack goes out and Slack
delivers the event again. Access checks belong to the core, not here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from functools import partial
from typing import Any, TypeVar

import aiohttp
from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.http_retry.builtin_async_handlers import AsyncRateLimitErrorRetryHandler
from slack_sdk.web.async_client import AsyncWebClient

from bot.messages import Button, ChannelUnreachable, InboundHandler, InboundKind, InboundMessage, OutboundMessage
from bot.settings import APP_NAME, SlackSettings

log = logging.getLogger(__name__)

EVENTS_PATH = "/slack/events"
SECTION_LIMIT = 3000
BLOCKS_PER_MESSAGE = 50
FALLBACK_LIMIT = 40000
BUTTONS_PER_BLOCK = 25
BUTTON_LABEL_LIMIT = 75
BUTTON_VALUE_LIMIT = 2000
_ANY = re.compile(".*")
# Subtypes that are still a person typing in the chat; every other subtype is a system notice.
_USER_SUBTYPES = (None, "file_share", "thread_broadcast")

Block = dict[str, Any]
T = TypeVar("T")


class SlackChannel:
    """The Slack ``Channel``: delivers DMs, mentions, slash commands and button presses."""

    name = "slack"

    def __init__(
        self,
        settings: SlackSettings,
        on_inbound: InboundHandler,
        retry_base_s: float = 1.0,
        retry_max_s: float = 60.0,
        send_retry_s: float = 120.0,
    ) -> None:
        """Build the bolt app; nothing connects until ``start()`` (which retries an unreachable Slack
        with backoff from ``retry_base_s`` up to ``retry_max_s``; a send does the same for up to
        ``send_retry_s``)."""
        if settings.bot_token is None:
            raise ValueError("COO_SLACK__BOT_TOKEN is not set")
        self._settings = settings
        self._on_inbound = on_inbound
        # Retry only rate limits (the post did not happen). slack_sdk's default retries a dropped
        # connection, which may already have posted: a reply or a card would then appear twice.
        self._client = AsyncWebClient(
            token=settings.bot_token.get_secret_value(),
            base_url=settings.api_base_url,
            retry_handlers=[AsyncRateLimitErrorRetryHandler(max_retry_count=2)],
        )
        secret = settings.signing_secret.get_secret_value() if settings.signing_secret else ""
        # An explicit "" keeps bolt from falling back to SLACK_SIGNING_SECRET from the environment. Without a
        # name, bolt names the app after its caller's file through inspect.stack(), which reads the source of
        # every frame on the stack.
        self._app = AsyncApp(
            name=APP_NAME, client=self._client, signing_secret=secret, logger=log, process_before_response=True
        )
        self._app.error(self._on_error)
        self._app.event("message")(self._on_message)
        self._app.event("app_mention")(self._on_mention)
        self._app.event(_ANY)(self._on_other_event)
        self._app.command(_ANY)(self._on_command)
        self._app.block_action(_ANY)(self._on_action)
        self._socket: AsyncSocketModeHandler | None = None
        self._runner: web.AppRunner | None = None
        self._bot_user_id: str | None = None
        self._retry_base = retry_base_s
        self._retry_max = retry_max_s
        self._send_retry_s = send_retry_s
        self.http_port: int | None = None
        """The bound port in HTTP mode (useful with ``host:0``), else None."""

    async def start(self) -> None:
        """Check the bot token, then connect (Socket Mode) or listen on ``http_listen`` (HTTP mode).

        An unreachable Slack (no network yet at boot, an outage) is retried with backoff; a rejected
        token fails at once.
        """
        auth = await self._reachable(self._client.auth_test)
        self._bot_user_id = auth.get("user_id")
        if self._settings.app_token is not None:
            handler = AsyncSocketModeHandler(
                self._app,
                self._settings.app_token.get_secret_value(),
                web_client=AsyncWebClient(base_url=self._settings.api_base_url),
            )
            try:
                # The SDK's connect() retries forever on a bad app token; asking once first fails fast.
                handler.client.wss_uri = await self._reachable(handler.client.issue_new_wss_url)
                await handler.connect_async()
            except BaseException:
                await handler.close_async()
                raise
            self._socket = handler
            return
        host, port = self._settings.http_address
        web_app = web.Application()
        web_app.router.add_post(EVENTS_PATH, self._http_events)
        runner = web.AppRunner(web_app, access_log=None)
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self.http_port = int(runner.addresses[0][1])

    async def _reachable(self, call: Callable[[], Awaitable[T]]) -> T:
        delay = self._retry_base
        while True:
            try:
                return await call()
            except (aiohttp.ClientConnectionError, TimeoutError, OSError) as exc:
                log.warning("slack: API unreachable (%s); retrying in %.0f s", exc or type(exc).__name__, delay)
            await asyncio.sleep(delay)
            delay = min(self._retry_max, delay * 2)

    async def stop_receiving(self) -> None:
        """Stop receiving; sending keeps working (replies in flight finish during a stop)."""
        await self.stop()

    async def stop(self) -> None:
        """Stop receiving and release connections (handling in progress belongs to the core)."""
        if self._socket is not None:
            await self._socket.close_async()
            self._socket = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def send(self, message: OutboundMessage) -> list[str]:
        """Post (or, with ``edit_message_id``, update) a message; returns the message ts values."""
        ids: list[str] = []
        for index, (fallback, blocks) in enumerate(_layout(message.text, message.buttons)):
            if index == 0 and message.edit_message_id:
                resp = await self._connected(
                    partial(
                        self._client.chat_update,
                        channel=message.chat_id, ts=message.edit_message_id, text=fallback, blocks=blocks,
                    )
                )  # fmt: skip
            else:
                resp = await self._connected(
                    partial(
                        self._client.chat_postMessage,
                        channel=message.chat_id, thread_ts=message.thread_id, text=fallback, blocks=blocks,
                        link_names=False,
                    )
                )  # fmt: skip
            ids.append(str(resp["ts"]))
        return ids

    async def _connected(self, call: Callable[[], Awaitable[T]]) -> T:
        """A Web API call, retried with backoff while no connection to Slack can be made (the request never
        left: it cannot post twice), for up to ``send_retry_s``; then :class:`ChannelUnreachable`. A dropped
        connection is not retried: the post may have happened."""
        loop = asyncio.get_running_loop()
        give_up_at = loop.time() + self._send_retry_s
        delay = self._retry_base
        while True:
            try:
                return await call()
            except (aiohttp.ClientConnectorError, aiohttp.ConnectionTimeoutError) as exc:
                if loop.time() + delay > give_up_at:
                    raise ChannelUnreachable(f"slack: the Web API is unreachable ({exc})") from exc
                log.warning("slack: sending failed (%s); retrying in %.0f s", exc, delay)
            await asyncio.sleep(delay)
            delay = min(self._retry_max, delay * 2)

    def typing(self, chat_id: str, thread_id: str | None) -> AbstractAsyncContextManager[None]:
        """A no-op: Slack offers bots no typing indicator (only the legacy RTM API had one)."""
        return contextlib.nullcontext()

    # -- inbound ---------------------------------------------------------------------------

    async def _http_events(self, request: web.Request) -> web.Response:
        return await to_aiohttp_response(await self._app.async_dispatch(await to_bolt_request(request)))

    async def _on_error(self, error: Exception) -> None:
        log.error("slack listener failed: %s", type(error).__name__, exc_info=error)

    async def _on_message(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        subtype = event.get("subtype")
        is_dm = event.get("channel_type") == "im"
        if subtype == "message_changed":
            edited = event.get("message") or {}
            # Link unfurls also arrive as message_changed; only a changed text is an edit.
            unchanged = edited.get("text") == (event.get("previous_message") or {}).get("text")
            if _from_bot(edited) or not edited.get("user") or unchanged:
                return
            kind: InboundKind = "edit" if is_dm else "other"
            await self._event(body, kind, edited["user"], event.get("channel"), edited, _thread(edited))
            return
        if _from_bot(event) or subtype not in _USER_SUBTYPES or not event.get("user"):
            return
        text = event.get("text") or ""
        kind = ("command" if text.startswith("/") else "message") if is_dm else "other"
        await self._event(body, kind, event["user"], event.get("channel"), event, _thread(event))

    async def _on_mention(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        if _from_bot(event) or not event.get("user"):
            return
        text = event.get("text") or ""
        if self._bot_user_id:
            text = re.sub(rf"<@{re.escape(self._bot_user_id)}(\|[^>]*)?>", "", text)
        thread = event.get("thread_ts") or event.get("ts")
        await self._event(body, "message", event["user"], event.get("channel"), {**event, "text": text.strip()}, thread)

    async def _on_other_event(self, body: dict[str, Any], event: dict[str, Any]) -> None:
        user = event.get("user")
        user_id = user.get("id") if isinstance(user, dict) else user
        if not isinstance(user_id, str) or _from_bot(event):
            return
        channel = event.get("channel") or (event.get("item") or {}).get("channel")
        channel_id = channel.get("id") if isinstance(channel, dict) else channel
        await self._event(body, "other", user_id, channel_id, event, None)

    async def _on_command(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        name = str(body.get("command") or "").lstrip("/")
        args = str(body.get("text") or "").strip()
        if name == "coo":
            sub, _, rest = args.partition(" ")
            name, args = sub.lstrip("/") or "help", rest.strip()
        await self._on_inbound(
            InboundMessage(
                channel=self.name,
                chat_id=str(body.get("channel_id") or ""),
                sender=_sender(body.get("team_id"), body.get("user_id")),
                text=f"/{name} {args}".rstrip(),
                kind="command",
                update_key=f"slack:cmd:{body.get('trigger_id')}",
                private=_is_dm(str(body.get("channel_id") or "")),
            )
        )
        await ack()  # only once stored (I3)

    async def _on_action(self, ack: AsyncAck, body: dict[str, Any]) -> None:
        user = body.get("user") or {}
        container = body.get("container") or {}
        message = body.get("message") or {}
        chat_id = (body.get("channel") or {}).get("id") or container.get("channel_id")
        actions = body.get("actions") or []
        if not actions or not chat_id or not user.get("id"):
            await ack()
            return  # e.g. a modal: not something the core handles
        await self._on_inbound(
            InboundMessage(
                channel=self.name,
                chat_id=chat_id,
                sender=_sender((body.get("team") or {}).get("id") or user.get("team_id"), user["id"]),
                kind="callback",
                callback_data=actions[0].get("value"),
                thread_id=_thread(message),
                message_id=container.get("message_ts") or message.get("ts"),
                update_key=f"slack:action:{body.get('trigger_id')}",
                private=_is_dm(chat_id),
            )
        )
        await ack()  # only once stored (I3)

    async def _event(
        self,
        body: dict[str, Any],
        kind: InboundKind,
        user_id: str,
        chat_id: str | None,
        message: dict[str, Any],
        thread_id: str | None,
    ) -> None:
        # Raising here (not stored) makes bolt answer 500 / no ack: Slack delivers the event again.
        await self._on_inbound(
            InboundMessage(
                channel=self.name,
                chat_id=chat_id or "",
                sender=_sender(body.get("team_id"), user_id),
                text=message.get("text") or "",
                kind=kind,
                thread_id=thread_id,
                update_key=f"slack:{body.get('event_id')}",
                message_id=message.get("ts"),
                private=_is_dm(chat_id or ""),
            )
        )


def _is_dm(channel_id: str) -> bool:
    # Slack's direct-message channel ids start with "D".
    return channel_id.startswith("D")


def _sender(team_id: object, user_id: object) -> str:
    return f"slack:{team_id or ''}:{user_id or ''}"


def _from_bot(message: dict[str, Any]) -> bool:
    return bool(message.get("bot_id")) or message.get("subtype") == "bot_message"


def _thread(message: dict[str, Any]) -> str | None:
    """The thread a message lives in; a thread's parent itself counts as outside it."""
    thread_ts = message.get("thread_ts")
    return thread_ts if thread_ts and thread_ts != message.get("ts") else None


# -- outbound layout -----------------------------------------------------------------------


def _escape(text: str) -> str:
    """Escape &, <, > so operator or model text cannot form mentions, links or channel pings."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _safe_cut(text: str, limit: int) -> int:
    """Largest cut <= limit that does not split an ``&...;`` entity."""
    amp = text.rfind("&", max(0, limit - 4), limit)
    return amp if amp > 0 and ";" not in text[amp:limit] else limit


def _chunks(text: str, limit: int) -> list[str]:
    """Split escaped text into pieces <= limit, preferring line then word boundaries."""
    out: list[str] = []
    rest = text
    while len(rest) > limit:
        cut = rest.rfind("\n", 0, limit + 1)
        if cut < limit // 2:
            cut = rest.rfind(" ", 0, limit + 1)
        if cut < limit // 2:
            cut = _safe_cut(rest, limit)
            piece, rest = rest[:cut], rest[cut:]
        else:
            piece, rest = rest[:cut], rest[cut + 1 :]
        if piece.strip():
            out.append(piece)
    if rest.strip():
        out.append(rest)
    return out


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: _safe_cut(text, limit - 1)] + "…"


def _actions(buttons: tuple[Button, ...]) -> list[Block]:
    if any(len(button.data) > BUTTON_VALUE_LIMIT for button in buttons):
        raise ValueError(f"button data is longer than Slack's {BUTTON_VALUE_LIMIT} characters")
    elements: list[Block] = [
        {"type": "button", "action_id": f"coo_btn_{i}", "text": {"type": "plain_text", "emoji": True}}
        | ({"value": button.data} if button.data else {})
        for i, button in enumerate(buttons)
    ]
    for element, button in zip(elements, buttons, strict=True):
        element["text"]["text"] = _clip(button.label or "…", BUTTON_LABEL_LIMIT)
    step = BUTTONS_PER_BLOCK
    return [{"type": "actions", "elements": elements[i : i + step]} for i in range(0, len(elements), step)]


def _layout(text: str, buttons: tuple[Button, ...]) -> list[tuple[str, list[Block]]]:
    """(fallback text, blocks) per Slack message; the buttons ride on the last one."""
    chunks = _chunks(_escape(text), SECTION_LIMIT)
    sections: list[Block] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": chunk, "verbatim": True}} for chunk in chunks
    ]
    actions = _actions(buttons)
    per = BLOCKS_PER_MESSAGE
    groups = [sections[i : i + per] for i in range(0, len(sections), per)] or [[]]
    if len(groups[-1]) + len(actions) > BLOCKS_PER_MESSAGE:
        groups.append([])
    groups[-1].extend(actions)
    labels = " / ".join(_escape(button.label) for button in buttons)
    out: list[tuple[str, list[Block]]] = []
    for group in groups:
        fallback = "\n".join(block["text"]["text"] for block in group if block["type"] == "section")
        if group:
            out.append((_clip(fallback or labels or "…", FALLBACK_LIMIT), group))
    return out
