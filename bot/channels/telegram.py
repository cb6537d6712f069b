"""Telegram adapter: Bot API updates -> InboundMessage, OutboundMessage -> Bot API calls.

A thin translator on python-telegram-bot's ``Bot``, run inside our own asyncio loop. It owns the
polling loop (and the webhook server) because of I3: an update is handed to the core, which stores
it, before the ``getUpdates`` offset moves past it (or before the webhook POST is answered), and a
button press is answered only after that. An update PTB cannot parse is skipped and logged once;
it never blocks the queue. Access checks and everything else belong to the core.

Beside it: ``telegram_updates`` (a raw update -> InboundMessage), ``telegram_format`` (text split to
Telegram's limits, the inline keyboard), ``telegram_retry`` (the Bot API calls' backoff) and
``telegram_webhook`` (the webhook server).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

from aiohttp import web
from telegram import Bot, BotCommand, Message, Update
from telegram.error import BadRequest, InvalidToken, NetworkError, RetryAfter, TelegramError

from bot.channels.aiohttp_request import AiohttpRequest
from bot.channels.telegram_format import keyboard, split_text, truncate_text
from bot.channels.telegram_retry import BotApiRetry, retry_after_s
from bot.channels.telegram_updates import CHANNEL, last_id, parse_update, to_inbound, update_id
from bot.channels.telegram_webhook import serve_webhook
from bot.messages import InboundHandler, InboundMessage, OutboundMessage
from bot.settings import TelegramSettings

BatchHandler = Callable[[Sequence[InboundMessage]], Awaitable[object]]

logger = logging.getLogger(__name__)


def _chat_ref(chat_id: str) -> int | str:
    return int(chat_id) if chat_id.lstrip("-").isdigit() else chat_id


class TelegramChannel:
    """The ``Channel`` for Telegram: long polling by default, a webhook server when configured.

    ``on_inbound`` must return once the update is stored (or refused) and raise when it could not
    be stored: the update is then fetched again after a backoff instead of being confirmed. With
    ``on_batch``, each ``getUpdates`` response is handed over at once (stored in one commit), on
    the same terms for the whole batch.
    """

    name = CHANNEL
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
        self._retry = BotApiRetry(retry_base_s, retry_max_s, send_retry_s, logger)
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
                await self._retry.until_done(bot.delete_webhook, "deleteWebhook", drop_pending_updates=False)
                self._poller = asyncio.create_task(self._poll(bot), name="telegram-polling")
        except BaseException:
            await self.stop()
            raise
        logger.info("telegram channel started as @%s", bot.username)

    async def _connect(self, bot: _Bot) -> None:
        delay = self._retry.base_s
        while True:
            try:
                await bot.initialize()
                return
            except InvalidToken:
                # PTB's message quotes the token; it must not reach logs (I4).
                raise InvalidToken("COO_TELEGRAM__TOKEN was rejected by the Bot API server") from None
            except RetryAfter as exc:
                await asyncio.sleep(retry_after_s(exc))
                continue
            except NetworkError as exc:
                logger.warning("telegram: Bot API unreachable (%s); retrying in %.0f s", exc, delay)
            await asyncio.sleep(delay)
            delay = self._retry.next_delay(delay)

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
            await self._retry.until_done(bot.set_my_commands, "setMyCommands", commands=commands)
        except TelegramError as exc:
            # A refused menu (e.g. a description Telegram does not accept) costs the menu, not the bot.
            logger.error("telegram: the command menu was refused (%s)", exc)

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
                await self._retry.sending(
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
            sent: Message = await self._retry.sending(
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

    # -- receiving -------------------------------------------------------------------------------

    async def _poll(self, bot: _Bot) -> None:
        """Long polling. The offset moves past an update only once the core has stored it."""
        offset: int | None = None
        delay = self._retry.base_s
        while True:
            try:
                batch = await bot.raw_updates(offset, self._settings.poll_timeout_s)
            except RetryAfter as exc:
                await asyncio.sleep(retry_after_s(exc))
                continue
            except TelegramError as exc:
                logger.warning("telegram polling failed (%s); retrying in %.0f s", exc, delay)
                await asyncio.sleep(delay)
                delay = self._retry.next_delay(delay)
                continue
            stored = await (self._deliver_batch(bot, batch) if self._on_batch else self._deliver_each(bot, batch))
            if stored is not None:
                offset = stored + 1
            if stored == last_id(batch):  # all stored (an empty batch too)
                delay = self._retry.base_s
                continue
            # Not stored: fetch it again (and everything after it) after a pause.
            logger.warning("telegram: update not stored; fetching it again in %.0f s", delay)
            await asyncio.sleep(delay)
            delay = self._retry.next_delay(delay)

    async def _deliver_each(self, bot: _Bot, batch: list[Any]) -> int | None:
        """Hand the updates over one by one; the id of the last one stored, in order (None: none)."""
        stored = None
        for raw in batch:
            update_id_ = update_id(raw)
            if update_id_ is None:
                continue
            if not await self._deliver(bot, raw):
                break
            stored = update_id_
        return stored

    async def _deliver_batch(self, bot: _Bot, batch: list[Any]) -> int | None:
        """Hand the whole batch over at once (one commit); the last update id, or None if it was not stored."""
        parsed = []
        for raw in batch:
            update = parse_update(bot, raw)
            inbound = to_inbound(update, bot.username) if update is not None else None
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
        return last_id(batch)

    async def _deliver(self, bot: _Bot, raw: dict[str, Any]) -> bool:
        """Hand one raw update to the core. False when the core could not store it (do not confirm it)."""
        update = parse_update(bot, raw)
        inbound = to_inbound(update, bot.username) if update is not None else None
        if update is None or inbound is None:
            return True
        try:
            await self._on_inbound(inbound)
        except Exception:
            logger.error("telegram update %s could not be stored", update.update_id, exc_info=True)
            return False
        self._answer_later(update)
        return True

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
        self._runner = await serve_webhook(settings, partial(self._deliver, bot))
        await self._retry.until_done(
            bot.set_webhook,
            "setWebhook",
            url=settings.webhook_url,
            secret_token=settings.webhook_secret.get_secret_value(),
            allowed_updates=Update.ALL_TYPES,
            drop_pending_updates=False,
        )


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
