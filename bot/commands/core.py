"""The always-available commands: /start, /help, /status."""

from __future__ import annotations

from collections.abc import Callable

from bot.commands.router import CommandRouter
from bot.messages import InboundMessage


def register_core_commands(router: CommandRouter, runtime_status: Callable[[], list[str]]) -> None:
    """Add /start, /help and /status to ``router``."""

    async def help_(_: InboundMessage, __: str) -> str:
        return router.help_text()

    async def status(_: InboundMessage, __: str) -> str:
        return "\n".join(runtime_status())

    router.add("start", "Say hello and see what I can do", help_)
    router.add("help", "List the commands", help_)
    router.add("status", "Channels, model and access mode", status)
