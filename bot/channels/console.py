"""Console channel: the same core in a terminal. One operator, one conversation."""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import TextIO

from bot.access import CONSOLE_OPERATOR
from bot.messages import InboundHandler, InboundMessage, OutboundMessage

log = logging.getLogger(__name__)


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
            inbound = InboundMessage(
                channel="console",
                chat_id="local",
                sender=CONSOLE_OPERATOR,
                text=text,
                kind="command" if text.startswith("/") else "message",
            )
            try:
                await self._on_inbound(inbound)
            except Exception:
                log.exception("console: handling a line failed")
            self._prompt()

    def _prompt(self) -> None:
        self._output.write("you> ")
        self._output.flush()

    async def send(self, message: OutboundMessage) -> list[str]:
        """Print a reply (buttons as numbered choices)."""
        lines = [f"coo> {message.text}"]
        lines += [f"     [{i}] {b.label}" for i, b in enumerate(message.buttons, 1)]
        self._output.write("\n" + "\n".join(lines) + "\n")
        self._output.flush()
        return []

    @asynccontextmanager
    async def typing(self, chat_id: str, thread_id: str | None) -> AsyncIterator[None]:
        """A terminal needs no typing indicator."""
        yield
