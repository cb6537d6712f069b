"""Bot API updates -> InboundMessage: reading one raw update, and what of it the core needs.

An update PTB cannot parse, or one without an ``update_id``, is skipped and logged once: it must never
block the queue for everyone. Updates without a user (channel posts) are not for us.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from telegram import Bot, Message, Update

from bot.messages import InboundKind, InboundMessage

logger = logging.getLogger(__name__)

CHANNEL = "telegram"
_COMMAND_WORD = re.compile(r"(\S*)(.*)", re.DOTALL)


def parse_update(bot: Bot, raw: Any) -> Update | None:
    """The raw JSON update as PTB's ``Update``; None (logged) when it cannot be read."""
    if update_id(raw) is None:
        return None
    try:
        return Update.de_json(raw, bot)
    except Exception as exc:
        # One update PTB cannot parse (e.g. a field an older Bot API server omits) must not stop
        # the queue for everyone: it is skipped, once, with what is known about it.
        logger.error("telegram update %s could not be parsed (%s); skipped", raw.get("update_id"), exc)
        return None


def to_inbound(update: Update, username: str | None) -> InboundMessage | None:
    """What the core needs of an update; None for one without a user. ``username``: the bot's own."""
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
            kind, text = _command(text, username)
    elif update.callback_query is not None:
        callback_data = update.callback_query.data
        kind = "callback"
    thread_id = None
    if isinstance(message, Message) and message.is_topic_message and message.message_thread_id:
        thread_id = str(message.message_thread_id)
    return InboundMessage(
        channel=CHANNEL,
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


def _command(text: str, username: str | None) -> tuple[InboundKind, str]:
    word, rest = _COMMAND_WORD.match(text).groups()  # type: ignore[union-attr]
    command, _, addressee = word.partition("@")
    if addressee and username and addressee.lower() != username.lower():
        # "/pause@OtherBot" in a group is meant for another bot: pass it on, but not as a command.
        return "other", text
    return "command", command + rest


def update_id(raw: Any) -> int | None:
    """The raw update's id; None (logged) when it has none."""
    found = raw.get("update_id") if isinstance(raw, dict) else None
    if not isinstance(found, int):
        logger.error("telegram sent an update without an update_id; skipped")
        return None
    return found


def last_id(batch: list[Any]) -> int | None:
    """The id of a batch's last update that has one (None: none has)."""
    ids = [raw["update_id"] for raw in batch if isinstance(raw, dict) and isinstance(raw.get("update_id"), int)]
    return ids[-1] if ids else None
