"""Outgoing messages: one place that sends through the channels and records what was sent.

While an update is handled, every send is numbered and journalled (I3): when a crash makes the
update run again, the sends it already made are skipped instead of repeated.
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from bot.messages import Channel, OutboundMessage
from bot.reply import Reply, ShowCard
from memory.db import Database

log = logging.getLogger(__name__)


@dataclass
class _Turn:
    update_key: str
    replaying: bool
    sent: int = field(default=0)


_TURN: contextvars.ContextVar[_Turn | None] = contextvars.ContextVar("coo_turn", default=None)


def session_of(message: OutboundMessage) -> str:
    """The session key of the chat a message goes to."""
    base = f"{message.channel}:{message.chat_id}"
    return f"{base}:{message.thread_id}" if message.thread_id else base


class Messenger:
    """Sends through the attached channels; records every message in the event log."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._channels: dict[str, Channel] = {}

    def attach(self, channel: Channel) -> None:
        """Make a channel available for sending."""
        self._channels[channel.name] = channel

    def has(self, name: str) -> bool:
        """True when a channel of that name is attached."""
        return name in self._channels

    def channel_names(self) -> set[str]:
        """Names of the attached channels."""
        return set(self._channels)

    def channel(self, name: str) -> Channel:
        """The attached channel of that name."""
        return self._channels[name]

    @contextmanager
    def turn(self, update_key: str | None, replaying: bool) -> Iterator[None]:
        """Journal the sends made inside this block for ``update_key`` (nothing without a key)."""
        token = _TURN.set(_Turn(update_key, replaying) if update_key else None)
        try:
            yield
        finally:
            _TURN.reset(token)

    async def send(self, message: OutboundMessage, log_text: str | None = None) -> list[str]:
        """Send through the message's channel and record it (or ``log_text`` instead) in the event log.

        Inside a replayed turn, a send that was already made returns its recorded ids unsent.
        """
        turn = _TURN.get()
        seq = 0
        if turn is not None:
            seq = turn.sent
            turn.sent += 1
            if turn.replaying:
                done = await self._db.sent_reply(turn.update_key, seq)
                if done is not None:
                    log.info("replay of %s: send %d was made before the restart; not repeated", turn.update_key, seq)
                    return done
        ids = await self._channels[message.channel].send(message)
        text = message.text if log_text is None else log_text
        journal = (turn.update_key, seq, ids) if turn is not None else None
        await self._db.append_sent({"text": text, "ids": ids}, session_of(message), journal)
        return ids

    async def deliver(self, reply: Reply, cards: ShowCard | None = None) -> list[str]:
        """Send ``reply`` once: its text (logged as its ``log_text``), then each of its cards through ``cards``.

        Each send is numbered in the turn in progress, so a replayed turn skips what it already sent. A
        quiet reply logs a failure to deliver instead of raising it. Returns the text's message ids.
        """
        if reply.cards and cards is None:
            raise ValueError("a reply with cards needs a way to show them")
        ids: list[str] = []
        try:
            message = reply.message
            if message is not None:
                ids = await self.send(message, reply.log_text)
            for approval_id in reply.cards:
                assert cards is not None
                await cards(approval_id, reply.channel, reply.chat_id, reply.thread_id)
        except Exception:
            if not reply.quietly:
                raise
            log.exception("could not deliver a message to %s:%s", reply.channel, reply.chat_id)
        return ids

    async def notice(self, message: OutboundMessage) -> None:
        """Send a notice (a budget alert, not a reply of the turn in progress) quietly, outside the turn's
        journal: a replay does not send it again (its sender keeps it once), so numbering it would shift
        the turn's replies and the one after it would be taken for made and skipped (I3)."""
        with self.turn(None, False):
            await self.send_quietly(message)

    async def send_quietly(self, message: OutboundMessage) -> None:
        """Send, logging (not raising) a failure: for error replies and notices."""
        try:
            await self.send(message)
        except Exception:
            log.exception("could not deliver a message to %s:%s", message.channel, message.chat_id)
