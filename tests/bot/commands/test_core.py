"""/start, /help and /status on their own: the help lists every registered command, /status whatever
the runtime reports at the moment it is asked."""

from __future__ import annotations

import pytest

from bot.commands.core import register_core_commands
from bot.commands.router import CommandRouter
from graph.errors import UserFacingError
from tests.conftest import operator_message


async def test_help_lists_every_command_and_status_is_read_when_asked() -> None:
    router = CommandRouter()
    status = ["Telegram: polling"]
    register_core_commands(router, lambda: list(status))

    async def later(*_: object) -> str:
        return ""

    router.add("later", "Added after the core commands", later)
    help_text = await router.run(operator_message("/help", kind="command"))
    start_text = await router.run(operator_message("/start@my_bot", kind="command"))
    status.append("Slack: socket mode")
    status_text = await router.run(operator_message("/status", kind="command"))
    assert help_text == start_text
    assert "/later - Added after the core commands" in help_text.splitlines()
    assert "/status - Channels, model and access mode" in help_text.splitlines()
    assert status_text == "Telegram: polling\nSlack: socket mode"


@pytest.mark.parametrize(
    ("text", "error"), [("/nope", "Unknown command /nope. Try /help."), ("help", "That is not a command. Try /help.")]
)
async def test_an_unknown_command_is_one_clear_line(text: str, error: str) -> None:
    router = CommandRouter()
    register_core_commands(router, lambda: [])
    with pytest.raises(UserFacingError) as refused:
        await router.run(operator_message(text, kind="command"))
    assert str(refused.value) == error
