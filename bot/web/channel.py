"""The console as a channel the messenger can send to: what the approval services say to a press made in
the console (``Already decided``, a corrected card) is kept for the page that made it."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from bot.messages import OutboundMessage

WEB = "web"


class WebChannel:
    """Keeps the last messages per operator; wakes live pages on any change."""

    name = WEB

    def __init__(self) -> None:
        self._notes: dict[str, list[str]] = {}
        self._ids = itertools.count(1)
        self.changed = asyncio.Event()

    async def start(self) -> None:
        """Nothing to connect."""

    async def stop(self) -> None:
        """Nothing to release."""

    async def send(self, message: OutboundMessage) -> list[str]:
        """Keep a reply for the page (a card's text is not kept: the cards page shows cards)."""
        if message.edit_message_id is None and not message.buttons:
            self.note(message.chat_id, message.text)
        self.poke()
        return [f"web-{next(self._ids)}"]

    def note(self, chat_id: str, text: str) -> None:
        """Keep a line for that operator's next page."""
        notes = self._notes.setdefault(chat_id, [])
        notes.append(text)
        del notes[:-10]

    def take(self, chat_id: str) -> list[str]:
        """What was said to that operator's console since the last call."""
        return self._notes.pop(chat_id, [])

    def poke(self) -> None:
        """Something changed: live pages reload."""
        self.changed.set()
        self.changed = asyncio.Event()

    @asynccontextmanager
    async def typing(self, chat_id: str, thread_id: str | None) -> AsyncIterator[None]:
        """No indicator on a page."""
        yield
