"""Console channel: the same core in a terminal. One operator, one conversation."""

from __future__ import annotations

import asyncio
import itertools
import logging
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import TextIO

from bot.access import CONSOLE_OPERATOR
from bot.messages import Button, InboundHandler, InboundMessage, OutboundMessage

log = logging.getLogger(__name__)
CONSOLE_CHAT = "local"


class HeldOutput:
    """A text stream that keeps what is written until :meth:`release`, then passes everything through.

    ``coo run`` gives it to the console so that the start banner comes before the first prompt.
    """

    def __init__(self, target: TextIO) -> None:
        self._target = target
        self._held: list[str] | None = []

    def write(self, text: str) -> int:
        """Hold ``text`` until released; afterwards write it through."""
        if self._held is not None:
            self._held.append(text)
        else:
            self._target.write(text)
        return len(text)

    def flush(self) -> None:
        """Flush the target once released (held text stays held)."""
        if self._held is None:
            self._target.flush()

    def release(self) -> None:
        """Write what was held, in order, and pass everything through from now on."""
        held, self._held = self._held or [], None
        self._target.write("".join(held))
        self._target.flush()


class ConsoleChannel:
    """Reads lines from ``input`` and prints replies to ``output``.

    Lines are read by a daemon thread (a blocked ``readline`` must never keep the process
    alive at exit) and handled one at a time, so replies come in order. ``closed`` is set at
    end of input.
    """

    name = "console"

    def __init__(self, on_inbound: InboundHandler, input: TextIO | None = None, output: TextIO | None = None) -> None:
        self._on_inbound = on_inbound
        self._input = input or sys.stdin
        self._output = output or sys.stdout
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()
        self._ids = itertools.count(1)
        # The buttons of the card printed last, until the operator types something else.
        self._choices: tuple[Button, ...] = ()
        self._choices_of: str | None = None

    async def start(self) -> None:
        """Start reading input."""
        loop = asyncio.get_running_loop()

        def reader() -> None:
            for line in self._input:
                loop.call_soon_threadsafe(self._queue.put_nowait, line)
            loop.call_soon_threadsafe(self._queue.put_nowait, None)

        threading.Thread(target=reader, name="console-input", daemon=True).start()
        self._task = asyncio.create_task(self._consume(), name="console")
        self._prompt()

    async def stop(self) -> None:
        """Stop handling input (the reader thread dies with the process)."""
        if self._task is not None:
            self._task.cancel()
            with suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _consume(self) -> None:
        while True:
            line = await self._queue.get()
            if line is None:
                self.closed.set()
                return
            text = line.strip()
            if not text:
                self._prompt()
                continue
            try:
                await self._on_inbound(self.translate(text))
            except Exception:
                log.exception("console: handling a line failed")
            self._prompt()

    def translate(self, text: str) -> InboundMessage:
        """One typed line as an update. Right after a card, its number or its word (``1``, ``approve``)
        is a press of that button, checked like any press; anything else closes the card's choices."""
        choices, self._choices = self._choices, ()
        pressed = _choice(text, choices)
        if pressed is not None:
            return InboundMessage(
                channel="console",
                chat_id=CONSOLE_CHAT,
                sender=CONSOLE_OPERATOR,
                text=text,
                kind="callback",
                callback_data=pressed.data,
            )
        return InboundMessage(
            channel="console",
            chat_id=CONSOLE_CHAT,
            sender=CONSOLE_OPERATOR,
            text=text,
            kind="command" if text.startswith("/") else "message",
        )

    def _prompt(self) -> None:
        self._output.write("you> ")
        self._output.flush()

    async def send(self, message: OutboundMessage) -> list[str]:
        """Print a reply; a card's buttons as numbered choices. Returns the message's id (a card that is
        updated later is printed again, as the terminal cannot change what it already showed)."""
        if message.edit_message_id is not None:
            message_id = message.edit_message_id
            if not message.buttons and message_id == self._choices_of:
                self._choices = ()  # that card's choices are gone (decided)
        else:
            message_id = f"c{next(self._ids)}"
        lines = [f"coo> {message.text}"]
        lines += [f"     [{i}] {b.label}" for i, b in enumerate(message.buttons, 1)]
        if message.buttons:
            self._choices, self._choices_of = message.buttons, message_id
            words = "/".join(b.label.lower() for b in message.buttons)
            numbers = "1" if len(message.buttons) == 1 else f"1-{len(message.buttons)}"
            lines.append(f"     (type {numbers} or {words})")
        self._output.write("\n" + "\n".join(lines) + "\n")
        self._output.flush()
        return [message_id]

    @asynccontextmanager
    async def typing(self, chat_id: str, thread_id: str | None) -> AsyncIterator[None]:
        """A terminal needs no typing indicator."""
        yield


def _choice(text: str, choices: tuple[Button, ...]) -> Button | None:
    """The button a typed line picks: its number (``2``) or its label (``edit``, any case); else None."""
    word = text.strip().lower()
    if word.isdigit() and 1 <= int(word) <= len(choices):
        return choices[int(word) - 1]
    return next((b for b in choices if b.label.lower() == word), None)
