"""Telegram adapter: Bot API updates -> InboundMessage, OutboundMessage -> Bot API calls.

A thin translator on python-telegram-bot's ``Bot``, run inside our own asyncio loop. It owns the
polling loop (and the webhook server) because of I3: an update is handed to the core, which stores
it, before the ``getUpdates`` offset moves past it (or before the webhook POST is answered), and a
button press is answered only after that. An update PTB cannot parse is skipped and logged once;
it never blocks the queue. Access checks and everything else belong to the core.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hmac
import json
import logging
import re
import unicodedata
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar
from urllib.parse import urlsplit

from aiohttp import web
from telegram import Bot, BotCommand, InlineKeyboardButton, InlineKeyboardMarkup, Message, Update
from telegram.error import BadRequest, InvalidToken, NetworkError, RetryAfter, TelegramError

from bot.channels.aiohttp_request import AiohttpRequest, NotConnected
from bot.messages import Button, ChannelUnreachable, InboundHandler, InboundKind, InboundMessage, OutboundMessage
from bot.settings import TelegramSettings

BatchHandler = Callable[[Sequence[InboundMessage]], Awaitable[object]]

logger = logging.getLogger(__name__)

MAX_TEXT_UNITS = 4096
"""Telegram's message length limit, counted in UTF-16 code units."""
MAX_CALLBACK_BYTES = 64
TRUNCATION_MARK = "…"
_MAX_RETRY_AFTER_S = 30.0
_RATE_LIMIT_ATTEMPTS = 3
_SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"
_COMMAND_WORD = re.compile(r"(\S*)(.*)", re.DOTALL)
_GLUE = frozenset("\u200d\ufe0e\ufe0f")  # ZWJ and variation selectors bind to their neighbours

T = TypeVar("T")


def utf16_len(text: str) -> int:
    """Length of ``text`` as Telegram counts it (UTF-16 code units; astral characters count 2)."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _fit(text: str, limit: int) -> int:
    """Number of leading code points of ``text`` that fit into ``limit`` UTF-16 units."""
    units = 0
    for index, char in enumerate(text):
        units += 2 if ord(char) > 0xFFFF else 1
        if units > limit:
            return index
    return len(text)


def split_text(text: str, limit: int = MAX_TEXT_UNITS) -> list[str]:
    """Split ``text`` into parts of at most ``limit`` UTF-16 units that join back to ``text``.

    Prefers the last newline, then the last space; cuts hard only when neither is in the back
    half of the window. Python strings hold code points, so a surrogate pair is never cut.
    """
    parts: list[str] = []
    rest = text
    while utf16_len(rest) > limit:
        cut = _fit(rest, limit)
        window = rest[:cut]
        # A separator early in the window would leave a tiny part, so only the back half counts.
        at = window.rfind("\n") + 1
        if at <= cut // 2:
            at = window.rfind(" ") + 1
        if at <= cut // 2:
            at = cut
            while at > cut // 2 and (rest[at] in _GLUE or rest[at - 1] == "\u200d" or unicodedata.combining(rest[at])):
                at -= 1
        parts.append(rest[:at])
        rest = rest[at:]
    if rest or not parts:
        parts.append(rest)
    return parts


def truncate_text(text: str, limit: int = MAX_TEXT_UNITS) -> str:
    """``text`` cut to ``limit`` UTF-16 units, ending in "…" when anything was dropped."""
    if utf16_len(text) <= limit:
        return text
    return text[: _fit(text, limit - utf16_len(TRUNCATION_MARK))] + TRUNCATION_MARK


def keyboard(buttons: Sequence[Button]) -> InlineKeyboardMarkup | None:
    """One inline button per row; raises ValueError for callback data over 64 bytes."""
    if not buttons:
        return None
    for button in buttons:
        if len(button.data.encode()) > MAX_CALLBACK_BYTES:
            raise ValueError(f"button {button.label!r}: callback data exceeds {MAX_CALLBACK_BYTES} bytes")
    return InlineKeyboardMarkup([[InlineKeyboardButton(b.label, callback_data=b.data)] for b in buttons])


def _chat_ref(chat_id: str) -> int | str:
    return int(chat_id) if chat_id.lstrip("-").isdigit() else chat_id


class TelegramChannel:
    """The ``Channel`` for Telegram: long polling by default, a webhook server when configured.

    ``on_inbound`` must return once the update is stored (or refused) and raise when it could not
    be stored: the update is then fetched again after a backoff instead of being confirmed. With
    ``on_batch``, each ``getUpdates`` response is handed over at once (stored in one commit), on
    the same terms for the whole batch.
    """

    name = "telegram"
    typing_interval_s: float = 4.0
    """How often the typing indicator is renewed (Telegram shows it for about 5 s)."""
    typing_delay_s: float = 0.5
    """A reply sooner than this needs no indicator (and costs no extra Bot API call)."""

    def __init__(
        self,
        settings: TelegramSettings,
        on_inbound: InboundHandler,
        commands: Sequence[tuple[str, str]],
        *,
        on_batch: BatchHandler | None = None,
        retry_base_s: float = 1.0,
        retry_max_s: float = 60.0,
        send_retry_s: float = 120.0,
    ) -> None:
        """``retry_base_s`` / ``retry_max_s``: the backoff while the Bot API is unreachable (polling, start-up
        calls, sends); a send gives up after ``send_retry_s`` of it (:class:`ChannelUnreachable`)."""
        if settings.token is None:
            raise ValueError("COO_TELEGRAM__TOKEN is not set")
        self._settings = settings
        self._on_inbound = on_inbound
        self._on_batch = on_batch
        self._commands = [BotCommand(name.lstrip("/"), description) for name, description in commands]
        self._retry_base = retry_base_s
        self._retry_max = retry_max_s
        self._send_retry_s = send_retry_s
        self._bot: _Bot | None = None
        self._poller: asyncio.Task[None] | None = None
        self._menu: asyncio.Task[None] | None = None
        self._runner: web.AppRunner | None = None
        self._answers: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Connect (retrying while the Bot API is unreachable), register the command menu, begin receiving."""
        if self._bot is not None:
            return
        settings = self._settings
        assert settings.token is not None
        bot = _Bot(
            settings.token.get_secret_value(),
            base_url=f"{settings.api_base_url}/bot",
            base_file_url=f"{settings.api_base_url}/file/bot",
            request=AiohttpRequest(connection_pool_size=32),
            get_updates_request=AiohttpRequest(connection_pool_size=2, read_timeout=settings.poll_timeout_s + 10),
        )
        self._bot = bot
        try:
            await self._connect(bot)
            if self._commands:
                await self._set_menu(bot, self._commands)
            if settings.webhook_url:
                await self._start_webhook(bot)
            else:
                await self._until_done(bot.delete_webhook, "deleteWebhook", drop_pending_updates=False)
                self._poller = asyncio.create_task(self._poll(bot), name="telegram-polling")
        except BaseException:
            await self.stop()
            raise
        logger.info("telegram channel started as @%s", bot.username)

    async def _connect(self, bot: _Bot) -> None:
        delay = self._retry_base
        while True:
            try:
                await bot.initialize()
                return
            except InvalidToken:
                # PTB's message quotes the token; it must not reach logs (I4).
                raise InvalidToken("COO_TELEGRAM__TOKEN was rejected by the Bot API server") from None
            except RetryAfter as exc:
                await asyncio.sleep(_retry_after_s(exc))
                continue
            except NetworkError as exc:
                logger.warning("telegram: Bot API unreachable (%s); retrying in %.0f s", exc, delay)
            await asyncio.sleep(delay)
            delay = min(self._retry_max, delay * 2)

    async def set_commands(self, commands: Sequence[tuple[str, str]]) -> None:
        """Register the command menu (when the commands were not known at start), in the background:
        it is retried while the Bot API is unreachable, and an outage never fails the start."""
        self._commands = [BotCommand(name.lstrip("/"), description) for name, description in commands]
        self._register_menu(self._started())

    def _register_menu(self, bot: Bot) -> None:
        if self._menu is not None:
            self._menu.cancel()
        self._menu = asyncio.create_task(self._set_menu(bot, list(self._commands)), name="telegram-menu")

    async def _set_menu(self, bot: Bot, commands: list[BotCommand]) -> None:
        try:
            await self._until_done(bot.set_my_commands, "setMyCommands", commands=commands)
        except TelegramError as exc:
            # A refused menu (e.g. a description Telegram does not accept) costs the menu, not the bot.
            logger.error("telegram: the command menu was refused (%s)", exc)

    async def _until_done(self, method: Callable[..., Awaitable[T]], name: str, **kwargs: Any) -> T:
        """A start-up call, retried with backoff for as long as the Bot API is unreachable (as polling is)."""
        delay = self._retry_base
        while True:
            try:
                return await method(**kwargs)
            except RetryAfter as exc:
                await asyncio.sleep(_retry_after_s(exc))
            except NetworkError as exc:
                if isinstance(exc, BadRequest):
                    raise
                logger.warning("telegram: %s failed (%s); retrying in %.0f s", name, exc, delay)
                await asyncio.sleep(delay)
                delay = min(self._retry_max, delay * 2)

    async def stop_receiving(self) -> None:
        """Stop polling (or serving the webhook); sending goes on until :meth:`stop` (replies in flight)."""
        poller, self._poller = self._poller, None
        if poller is not None:
            poller.cancel()
            await asyncio.gather(poller, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def stop(self) -> None:
        """Stop receiving, close connections. Safe to call twice."""
        await self.stop_receiving()
        bot, self._bot = self._bot, None
        menu, self._menu = self._menu, None
        if menu is not None:
            menu.cancel()
            await asyncio.gather(menu, return_exceptions=True)
        if self._answers:
            await asyncio.wait(set(self._answers), timeout=5)
        if bot is not None:
            await bot.shutdown()

    async def send(self, message: OutboundMessage) -> list[str]:
        """Send (or edit in place) as plain text, split to Telegram's limit; return message ids."""
        bot = self._started()
        markup = keyboard(message.buttons)
        chat_id = _chat_ref(message.chat_id)
        if message.edit_message_id is not None:
            try:
                await self._retrying(
                    bot.edit_message_text,
                    text=truncate_text(message.text),
                    chat_id=chat_id,
                    message_id=int(message.edit_message_id),
                    reply_markup=markup,
                )
            except BadRequest as exc:
                # Editing to identical content is an error on Telegram, but the result is what we want.
                if "not modified" not in exc.message.lower():
                    raise
            return [message.edit_message_id]
        parts = [part for part in split_text(message.text) if part.strip()]
        if not parts:
            raise ValueError("Telegram cannot send an empty message")
        thread = int(message.thread_id) if message.thread_id else None
        ids: list[str] = []
        for index, part in enumerate(parts):
            sent: Message = await self._retrying(
                bot.send_message,
                chat_id=chat_id,
                text=part,
                message_thread_id=thread,
                reply_markup=markup if index == len(parts) - 1 else None,
            )
            ids.append(str(sent.message_id))
        return ids

    @asynccontextmanager
    async def typing(self, chat_id: str, thread_id: str | None) -> AsyncIterator[None]:
        """Show "typing…" once the block has run ``typing_delay_s``, then every ``typing_interval_s`` until it exits."""
        task = asyncio.create_task(self._keep_typing(chat_id, thread_id), name="telegram-typing")
        try:
            yield
        finally:
            task.cancel()
            # wait() rather than await: a cancellation of our caller must still propagate.
            await asyncio.wait([task])

    async def _keep_typing(self, chat_id: str, thread_id: str | None) -> None:
        thread = int(thread_id) if thread_id else None
        await asyncio.sleep(self.typing_delay_s)
        while True:
            try:
                await self._started().send_chat_action(_chat_ref(chat_id), "typing", message_thread_id=thread)
            except Exception as exc:
                logger.debug("typing indicator failed: %s", exc)
            await asyncio.sleep(self.typing_interval_s)

    def _started(self) -> Bot:
        if self._bot is None:
            raise RuntimeError("TelegramChannel is not started")
        return self._bot

    async def _retrying(self, method: Callable[..., Awaitable[T]], **kwargs: Any) -> T:
        """A send or edit, retried on a rate limit (a few times) and while the Bot API cannot be reached.

        A connection that cannot be made is retried with backoff for up to ``send_retry_s``, then
        :class:`ChannelUnreachable` is raised: the caller keeps what it wanted to say for later. A timeout
        or a 5xx is not retried: the message may have arrived, and it is never sent twice.
        """
        rate_limited = 0
        delay = self._retry_base
        give_up_at = asyncio.get_running_loop().time() + self._send_retry_s
        while True:
            try:
                return await method(**kwargs)
            except RetryAfter as exc:
                rate_limited += 1
                wait_s = _retry_after_s(exc)
                if rate_limited == _RATE_LIMIT_ATTEMPTS or wait_s > _MAX_RETRY_AFTER_S:
                    raise
                logger.warning("telegram rate limit, retrying in %.0f s", wait_s)
                await asyncio.sleep(wait_s)
            except NotConnected as exc:
                if asyncio.get_running_loop().time() + delay > give_up_at:
                    raise ChannelUnreachable(f"telegram: the Bot API is unreachable ({exc})") from exc
                logger.warning("telegram: sending failed (%s); retrying in %.0f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(self._retry_max, delay * 2)

    # -- receiving -------------------------------------------------------------------------------

    async def _poll(self, bot: _Bot) -> None:
        """Long polling. The offset moves past an update only once the core has stored it."""
        offset: int | None = None
        delay = self._retry_base
        while True:
            try:
                batch = await bot.raw_updates(offset, self._settings.poll_timeout_s)
            except RetryAfter as exc:
                await asyncio.sleep(_retry_after_s(exc))
                continue
            except TelegramError as exc:
                logger.warning("telegram polling failed (%s); retrying in %.0f s", exc, delay)
                await asyncio.sleep(delay)
                delay = min(self._retry_max, delay * 2)
                continue
            stored = await (self._deliver_batch(bot, batch) if self._on_batch else self._deliver_each(bot, batch))
            if stored is not None:
                offset = stored + 1
            if stored == _last_id(batch):  # all stored (an empty batch too)
                delay = self._retry_base
                continue
            # Not stored: fetch it again (and everything after it) after a pause.
            logger.warning("telegram: update not stored; fetching it again in %.0f s", delay)
            await asyncio.sleep(delay)
            delay = min(self._retry_max, delay * 2)

    async def _deliver_each(self, bot: _Bot, batch: list[Any]) -> int | None:
        """Hand the updates over one by one; the id of the last one stored, in order (None: none)."""
        stored = None
        for raw in batch:
            update_id = _update_id(raw)
            if update_id is None:
                continue
            if not await self._deliver(bot, raw):
                break
            stored = update_id
        return stored

    async def _deliver_batch(self, bot: _Bot, batch: list[Any]) -> int | None:
        """Hand the whole batch over at once (one commit); the last update id, or None if it was not stored."""
        parsed = []
        for raw in batch:
            update = self._parse(bot, raw)
            inbound = self._translate(update, bot.username) if update is not None else None
            if update is not None and inbound is not None:
                parsed.append((update, inbound))
        if parsed:
            assert self._on_batch is not None
            try:
                await self._on_batch([inbound for _, inbound in parsed])
            except Exception:
                ids = [update.update_id for update, _ in parsed]
                logger.error("telegram updates %s could not be stored", ids, exc_info=True)
                return None
            for update, _ in parsed:
                self._answer_later(update)
        return _last_id(batch)

    async def _deliver(self, bot: _Bot, raw: dict[str, Any]) -> bool:
        """Hand one raw update to the core. False when the core could not store it (do not confirm it)."""
        update = self._parse(bot, raw)
        inbound = self._translate(update, bot.username) if update is not None else None
        if update is None or inbound is None:
            return True
        try:
            await self._on_inbound(inbound)
        except Exception:
            logger.error("telegram update %s could not be stored", update.update_id, exc_info=True)
            return False
        self._answer_later(update)
        return True

    @staticmethod
    def _parse(bot: _Bot, raw: Any) -> Update | None:
        if _update_id(raw) is None:
            return None
        try:
            return Update.de_json(raw, bot)
        except Exception as exc:
            # One update PTB cannot parse (e.g. a field an older Bot API server omits) must not stop
            # the queue for everyone: it is skipped, once, with what is known about it.
            logger.error("telegram update %s could not be parsed (%s); skipped", raw.get("update_id"), exc)
            return None

    def _answer_later(self, update: Update) -> None:
        """A stored button press is answered (the spinner on the button stops), in the background."""
        if update.callback_query is not None:
            task = asyncio.create_task(self._answer_callback(update.callback_query.id), name="telegram-answer")
            self._answers.add(task)
            task.add_done_callback(self._answers.discard)

    async def _answer_callback(self, query_id: str) -> None:
        try:
            await self._started().answer_callback_query(query_id)
        except TelegramError as exc:
            # An expired query can no longer be answered, but the tap itself was handled.
            logger.warning("could not answer telegram callback query: %s", exc)

    async def _start_webhook(self, bot: _Bot) -> None:
        settings = self._settings
        assert settings.webhook_url is not None and settings.webhook_secret is not None
        secret = settings.webhook_secret.get_secret_value()
        expected = secret.encode("utf-8", "surrogatepass")

        async def receive(request: web.Request) -> web.Response:
            # Compared as bytes: compare_digest refuses str with non-ASCII characters (a TypeError, so a
            # stranger's header got a 500 and a traceback); any header is just a wrong secret now.
            given = request.headers.get(_SECRET_HEADER, "").encode("utf-8", "surrogatepass")
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
            return web.Response(status=200 if await self._deliver(bot, raw) else 500)

        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_post(urlsplit(settings.webhook_url).path or "/", receive)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        host, port = settings.webhook_address
        self._runner = runner
        await web.TCPSite(runner, host, port).start()
        await self._until_done(
            bot.set_webhook,
            "setWebhook",
            url=settings.webhook_url,
            secret_token=secret,
            allowed_updates=Update.ALL_TYPES,
            drop_pending_updates=False,
        )

    def _translate(self, update: Update, username: str | None) -> InboundMessage | None:
        user = update.effective_user
        if user is None:
            logger.debug("ignoring telegram update %s without a user", update.update_id)
            return None
        chat = update.effective_chat
        # Updates without a chat (inline queries, …) come from the user, whose private chat id is theirs.
        chat_id = str(chat.id if chat is not None else user.id)
        message = update.effective_message
        kind: InboundKind = "other"
        text = ""
        callback_data = None
        if update.message is not None or update.edited_message is not None:
            text = (message.text or message.caption or "") if isinstance(message, Message) else ""
            kind = "edit" if update.edited_message is not None else "message"
            if kind == "message" and text.startswith("/"):
                kind, text = self._command(text, username)
        elif update.callback_query is not None:
            callback_data = update.callback_query.data
            kind = "callback"
        thread_id = None
        if isinstance(message, Message) and message.is_topic_message and message.message_thread_id:
            thread_id = str(message.message_thread_id)
        return InboundMessage(
            channel=self.name,
            chat_id=chat_id,
            sender=f"telegram:{user.id}",
            text=text,
            kind=kind,
            thread_id=thread_id,
            update_key=f"telegram:{update.update_id}",
            message_id=str(message.message_id) if message is not None else None,
            callback_data=callback_data,
            private=chat is None or chat.type == "private",
        )

    @staticmethod
    def _command(text: str, username: str | None) -> tuple[InboundKind, str]:
        word, rest = _COMMAND_WORD.match(text).groups()  # type: ignore[union-attr]
        command, _, addressee = word.partition("@")
        if addressee and username and addressee.lower() != username.lower():
            # "/pause@OtherBot" in a group is meant for another bot: pass it on, but not as a command.
            return "other", text
        return "command", command + rest


class _Bot(Bot):
    """PTB's Bot plus raw ``getUpdates``: updates are parsed one by one, so one bad update is skippable."""

    async def raw_updates(self, offset: int | None, timeout_s: float) -> list[Any]:
        """The next batch of updates as JSON objects (confirming everything below ``offset``)."""
        result = await self._post(
            "getUpdates",
            # Whole seconds, at least one: a timeout of 0 (short polling) would spin on an idle bot.
            {"offset": offset, "timeout": max(1, round(timeout_s)), "allowed_updates": list(Update.ALL_TYPES)},
            read_timeout=timeout_s + 10,
        )
        return list(result) if isinstance(result, list) else []


def _update_id(raw: Any) -> int | None:
    update_id = raw.get("update_id") if isinstance(raw, dict) else None
    if not isinstance(update_id, int):
        logger.error("telegram sent an update without an update_id; skipped")
        return None
    return update_id


def _last_id(batch: list[Any]) -> int | None:
    ids = [raw["update_id"] for raw in batch if isinstance(raw, dict) and isinstance(raw.get("update_id"), int)]
    return ids[-1] if ids else None


def _retry_after_s(exc: RetryAfter) -> float:
    with warnings.catch_warnings():
        # The int-vs-timedelta migration warning of PTB 22 is noise for us.
        warnings.simplefilter("ignore")
        wait = exc.retry_after
    return wait.total_seconds() if isinstance(wait, dt.timedelta) else float(wait)
