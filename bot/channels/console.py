"""Console channel: the same core in a terminal. One operator, one conversation.

On a terminal the line is read with prompt_toolkit: arrows, history and the usual editing keys work,
and a line that arrives while the operator types (a card updated by the outbox, a reminder) is printed
above the prompt, which is drawn again with what was typed so far. stdlib ``readline`` cannot do that
second part safely: it blocks a thread and offers no way to clear and redraw its line from another one.
Piped input (tests, scripts) is read line by line by a thread, as before.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from functools import partial
from typing import TextIO

from bot.access import CONSOLE_OPERATOR
from bot.messages import Button, InboundHandler, InboundMessage, OutboundMessage

log = logging.getLogger(__name__)
CONSOLE_CHAT = "local"
PROMPT = "you> "


class HeldOutput:
    """A text stream that keeps what is written until :meth:`release`, then passes everything through.

    ``coo run`` gives it to the console so that the start banner comes before the first prompt.
    """

    def __init__(self, target: TextIO) -> None:
        self.target = target
        self._held: list[str] | None = []
        self.released = asyncio.Event()

    def write(self, text: str) -> int:
        """Hold ``text`` until released; afterwards write it through."""
        if self._held is not None:
            self._held.append(text)
        else:
            self.target.write(text)
        return len(text)

    def flush(self) -> None:
        """Flush the target once released (held text stays held)."""
        if self._held is None:
            self.target.flush()

    def isatty(self) -> bool:
        """True when the target is a terminal."""
        return self.target.isatty()

    def release(self) -> None:
        """Write what was held, in order, and pass everything through from now on."""
        held, self._held = self._held or [], None
        self.target.write("".join(held))
        self.target.flush()
        self.released.set()


class ConsoleChannel:
    """Reads lines from ``input`` and prints replies to ``output``.

    Lines are handled one at a time, so replies come in order; ``closed`` is set at end of input
    (Ctrl-D, or Ctrl-C on a terminal). On a terminal (both streams are ttys) prompt_toolkit reads on the
    loop; otherwise a daemon thread reads (a blocked ``readline`` must never keep the process alive at exit).
    """

    name = "console"

    def __init__(self, on_inbound: InboundHandler, input: TextIO | None = None, output: TextIO | None = None) -> None:
        self._on_inbound = on_inbound
        self._input = input or sys.stdin
        self._output = output or sys.stdout
        self._terminal = _is_terminal(self._input) and _is_terminal(self._output)
        self._queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self.closed = asyncio.Event()
        self._ids = itertools.count(1)
        # The buttons of the card printed last, until the operator types something else.
        self._choices: tuple[Button, ...] = ()
        self._choices_of: str | None = None
        self._at_prompt = False  # piped mode: "you> " is the last thing printed

    async def start(self) -> None:
        """Start reading input."""
        if self._terminal:
            self._tasks.append(asyncio.create_task(self._read_terminal(), name="console-input"))
        else:
            self._start_reader_thread()
            self._prompt()
        self._tasks.append(asyncio.create_task(self._consume(), name="console"))

    def _start_reader_thread(self) -> None:
        loop = asyncio.get_running_loop()

        def reader() -> None:
            for line in self._input:
                loop.call_soon_threadsafe(self._queue.put_nowait, line)
            loop.call_soon_threadsafe(self._queue.put_nowait, None)

        threading.Thread(target=reader, name="console-input", daemon=True).start()

    async def _read_terminal(self) -> None:
        """Prompt on the terminal until Ctrl-D or Ctrl-C; each line goes to the queue."""
        from prompt_toolkit import PromptSession
        from prompt_toolkit.input import create_input
        from prompt_toolkit.output import create_output

        if isinstance(self._output, HeldOutput):
            await self._output.released.wait()  # the start banner first
        target = self._output.target if isinstance(self._output, HeldOutput) else self._output
        session: PromptSession[str] = PromptSession(input=create_input(self._input), output=create_output(target))
        try:
            while True:
                # The process's own SIGINT/SIGTERM handlers and loop exception handler stay in place.
                line = await session.prompt_async(PROMPT, handle_sigint=False, set_exception_handler=False)
                self._queue.put_nowait(line)
        except (EOFError, KeyboardInterrupt):  # Ctrl-D, Ctrl-C: the operator is done
            self._queue.put_nowait(None)

    async def stop(self) -> None:
        """Stop handling input (a reader thread dies with the process; a terminal prompt is put away)."""
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with suppress(asyncio.CancelledError):
                await task

    async def _consume(self) -> None:
        while True:
            line = await self._queue.get()
            self._at_prompt = False
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
        """Piped mode only: on a terminal the prompt stays on screen, drawn by prompt_toolkit."""
        if self._terminal:
            return
        self._output.write(PROMPT)
        self._output.flush()
        self._at_prompt = True

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
        await self._show("\n".join(lines) + "\n")
        return [message_id]

    async def _show(self, text: str) -> None:
        """Print ``text`` where the operator sees it, with a prompt after it when one was showing."""
        if self._terminal:
            from prompt_toolkit.application import run_in_terminal

            await run_in_terminal(partial(self._write, text))  # above the prompt, which is drawn again
            return
        self._write("\n" + text)
        if self._at_prompt:  # a line that came by itself (not a reply): the operator needs a prompt again
            self._prompt()

    def _write(self, text: str) -> None:
        self._output.write(text)
        self._output.flush()

    @asynccontextmanager
    async def typing(self, chat_id: str, thread_id: str | None) -> AsyncIterator[None]:
        """A terminal needs no typing indicator."""
        yield


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed stream, or an object without isatty
        return False


def _choice(text: str, choices: tuple[Button, ...]) -> Button | None:
    """The button a typed line picks: its number (``2``) or its label (``edit``, any case); else None."""
    word = text.strip().lower()
    if word.isdigit() and 1 <= int(word) <= len(choices):
        return choices[int(word) - 1]
    return next((b for b in choices if b.label.lower() == word), None)
