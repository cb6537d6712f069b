"""Telegram adapter: Bot API updates -> InboundMessage, OutboundMessage -> Bot API calls.

A thin translator on python-telegram-bot's Application, run inside our own asyncio loop (never
``run_polling``/``run_webhook``). Access checks and everything else belong to the core.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import re
import unicodedata
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar
from urllib.parse import urlsplit

from telegram import Bot, BotCommand, InlineKeyboardButton, InlineKeyboardMarkup, Message, Update
from telegram.error import BadRequest, InvalidToken, RetryAfter, TelegramError
from telegram.ext import Application, ApplicationBuilder, ContextTypes, TypeHandler

from bot.messages import Button, InboundHandler, InboundKind, InboundMessage, OutboundMessage
from bot.settings import TelegramSettings

logger = logging.getLogger(__name__)

MAX_TEXT_UNITS = 4096
"""Telegram's message length limit, counted in UTF-16 code units."""
MAX_CALLBACK_BYTES = 64
TRUNCATION_MARK = "…"
_MAX_RETRY_AFTER_S = 30.0
_SEND_ATTEMPTS = 3
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
    """The ``Channel`` for Telegram: long polling by default, a webhook server when configured."""

    name = "telegram"
    typing_interval_s: float = 4.0
    """How often the typing indicator is renewed (Telegram shows it for about 5 s)."""

    def __init__(
        self,
        settings: TelegramSettings,
        on_inbound: InboundHandler,
        commands: Sequence[tuple[str, str]],
    ) -> None:
        if settings.token is None:
            raise ValueError("COO_TELEGRAM__TOKEN is not set")
        self._settings = settings
        self._on_inbound = on_inbound
        self._commands = [BotCommand(name.lstrip("/"), description) for name, description in commands]
        self._app: Application[Any, Any, Any, Any, Any, Any] | None = None

    async def start(self) -> None:
        """Connect, register the command menu and begin delivering updates to ``on_inbound``."""
        if self._app is not None:
            return
        settings = self._settings
        assert settings.token is not None
        app = (
            ApplicationBuilder()
            .token(settings.token.get_secret_value())
            .base_url(f"{settings.api_base_url}/bot")
            .base_file_url(f"{settings.api_base_url}/file/bot")
            .concurrent_updates(True)
            .build()
        )
        app.add_handler(TypeHandler(Update, self._on_update))
        app.add_error_handler(self._on_error)
        self._app = app
        try:
            try:
                await app.initialize()
            except InvalidToken:
                # PTB's message quotes the token; it must not reach logs (I4).
                raise InvalidToken("COO_TELEGRAM__TOKEN was rejected by the Bot API server") from None
            await app.bot.set_my_commands(self._commands)
            await app.start()
            updater = app.updater
            assert updater is not None
            if settings.webhook_url:
                host, port = settings.webhook_address
                secret = settings.webhook_secret
                await updater.start_webhook(
                    listen=host,
                    port=port,
                    url_path=urlsplit(settings.webhook_url).path,
                    webhook_url=settings.webhook_url,
                    secret_token=secret.get_secret_value() if secret else None,
                    allowed_updates=Update.ALL_TYPES,
                    drop_pending_updates=False,
                )
            else:
                await updater.start_polling(
                    timeout=dt.timedelta(seconds=settings.poll_timeout_s),
                    allowed_updates=Update.ALL_TYPES,
                    drop_pending_updates=False,
                    error_callback=self._on_poll_error,
                )
        except BaseException:
            await self.stop()
            raise
        logger.info("telegram channel started as @%s", app.bot.username)

    async def stop(self) -> None:
        """Stop receiving, let in-flight updates finish, close connections. Safe to call twice."""
        app, self._app = self._app, None
        if app is None:
            return
        if app.updater is not None and app.updater.running:
            await app.updater.stop()
        if app.running:
            await app.stop()
        await app.shutdown()
        # A failed initialize() leaves the app "not initialized" but its HTTP clients open.
        await app.bot.shutdown()

    async def send(self, message: OutboundMessage) -> list[str]:
        """Send (or edit in place) as plain text, split to Telegram's limit; return message ids."""
        bot = self._bot()
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
        """Show "typing…" now and every ``typing_interval_s`` until the block exits."""
        task = asyncio.create_task(self._keep_typing(chat_id, thread_id), name="telegram-typing")
        try:
            yield
        finally:
            task.cancel()
            # wait() rather than await: a cancellation of our caller must still propagate.
            await asyncio.wait([task])

    async def _keep_typing(self, chat_id: str, thread_id: str | None) -> None:
        thread = int(thread_id) if thread_id else None
        while True:
            try:
                await self._bot().send_chat_action(_chat_ref(chat_id), "typing", message_thread_id=thread)
            except Exception as exc:
                logger.debug("typing indicator failed: %s", exc)
            await asyncio.sleep(self.typing_interval_s)

    def _bot(self) -> Bot:
        if self._app is None:
            raise RuntimeError("TelegramChannel is not started")
        return self._app.bot

    @staticmethod
    async def _retrying(method: Callable[..., Awaitable[T]], **kwargs: Any) -> T:
        # Only 429 is retried: Telegram guarantees nothing was delivered, unlike a timeout or 5xx.
        for attempt in range(1, _SEND_ATTEMPTS + 1):
            try:
                return await method(**kwargs)
            except RetryAfter as exc:
                with warnings.catch_warnings():
                    # The int-vs-timedelta migration warning of PTB 22 is noise for us.
                    warnings.simplefilter("ignore")
                    wait = exc.retry_after
                wait_s = wait.total_seconds() if isinstance(wait, dt.timedelta) else float(wait)
                if attempt == _SEND_ATTEMPTS or wait_s > _MAX_RETRY_AFTER_S:
                    raise
                logger.warning("telegram rate limit, retrying in %.0f s", wait_s)
                await asyncio.sleep(wait_s)
        raise AssertionError("unreachable")

    async def _on_update(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> None:
        inbound = await self._translate(update, context)
        if inbound is not None:
            await self._on_inbound(inbound)

    async def _translate(self, update: Update, context: ContextTypes.DEFAULT_TYPE) -> InboundMessage | None:
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
                kind, text = self._command(text, context.bot.username)
        elif update.callback_query is not None:
            query = update.callback_query
            callback_data = query.data
            kind = "callback"
            try:
                await query.answer()
            except TelegramError as exc:
                # An expired query can no longer be answered, but the tap itself is still meaningful.
                logger.warning("could not answer telegram callback query: %s", exc)
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
        )

    @staticmethod
    def _command(text: str, username: str | None) -> tuple[InboundKind, str]:
        word, rest = _COMMAND_WORD.match(text).groups()  # type: ignore[union-attr]
        command, _, addressee = word.partition("@")
        if addressee and username and addressee.lower() != username.lower():
            # "/pause@OtherBot" in a group is meant for another bot: pass it on, but not as a command.
            return "other", text
        return "command", command + rest

    async def _on_error(self, update: object, context: ContextTypes.DEFAULT_TYPE) -> None:
        key = update.update_id if isinstance(update, Update) else None
        logger.error("telegram update %s failed", key, exc_info=context.error)

    @staticmethod
    def _on_poll_error(exc: TelegramError) -> None:
        logger.warning("telegram polling failed, retrying: %s", exc)
