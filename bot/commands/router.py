"""Slash commands. Each is a small async function from (inbound, args) to reply text."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.messages import InboundMessage
from graph.errors import UserFacingError

CommandFn = Callable[[InboundMessage, str], Awaitable[str]]


@dataclass(frozen=True)
class Command:
    """A slash command as shown in the platform's command menu."""

    name: str
    description: str
    run: CommandFn
    private: bool = False
    confidential: bool = False


class CommandRouter:
    """Parses ``/name args`` and runs the matching command."""

    def __init__(self) -> None:
        self._commands: dict[str, Command] = {}

    def add(
        self, name: str, description: str, run: CommandFn, private: bool = False, confidential: bool = False
    ) -> None:
        """Register a command (name without the slash).

        ``private`` keeps its arguments and reply out of the event log; ``confidential`` means its
        answer (memories, cards, figures) is given only in the operator's private chat.
        """
        self._commands[name] = Command(name, description, run, private, confidential)

    def _lookup(self, text: str) -> Command | None:
        parsed = self.parse(text)
        return self._commands.get(parsed[0]) if parsed else None

    def is_private(self, text: str) -> bool:
        """True when ``text`` runs a private command (its arguments and reply stay out of the event log)."""
        command = self._lookup(text)
        return command is not None and command.private

    def is_confidential(self, text: str) -> bool:
        """True when ``text`` runs a command whose answer belongs in a private chat only."""
        command = self._lookup(text)
        return command is not None and (command.confidential or command.private)

    def loggable(self, text: str) -> str:
        """``text`` as it may be written to the event log (a private command's arguments are withheld)."""
        command = self._lookup(text)
        if command is not None and command.private:
            return f"/{command.name} [withheld]"
        return text

    def menu(self) -> list[tuple[str, str]]:
        """(name, description) pairs for setMyCommands and /help."""
        return [(c.name, c.description) for c in self._commands.values()]

    @staticmethod
    def parse(text: str) -> tuple[str, str] | None:
        """``("name", "args")`` for a slash command, else None. Strips a ``@botname`` suffix.

        The name ends at any whitespace: Telegram keeps a newline typed right after it.
        """
        stripped = text.strip()
        if not stripped.startswith("/") or len(stripped) < 2 or stripped[1].isspace():
            return None
        head, *rest = stripped[1:].split(None, 1)
        name = head.split("@", 1)[0].lower()
        return (name, rest[0].strip() if rest else "") if name else None

    async def run(self, inbound: InboundMessage) -> str:
        """Run the command in ``inbound.text``. Unknown commands are a user-facing error."""
        parsed = self.parse(inbound.text)
        if parsed is None:
            raise UserFacingError("That is not a command. Try /help.")
        name, args = parsed
        command = self._commands.get(name)
        if command is None:
            raise UserFacingError(f"Unknown command /{name}. Try /help.")
        return await command.run(inbound, args)

    def help_text(self) -> str:
        """One line per command."""
        lines = ["I'm your COO. Write to me in plain words, or use:"]
        lines += [f"/{name} - {desc}" for name, desc in self.menu()]
        return "\n".join(lines)
