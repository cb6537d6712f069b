"""/policy on its own, with its confirmation taps (bot/confirmations.py): real SQLite, a real messenger
and a recording channel. Only an operator's command changes the policy (I1); loosening waits for a tap in
the chat where it was asked, once, before it expires; bad arguments change nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path

import pytest

from bot.commands.policy import PolicyCommands
from bot.commands.router import CommandRouter
from bot.messages import InboundMessage
from bot.messenger import Messenger
from graph.approvals.policy import POLICY_RISK_KEY
from graph.errors import UserFacingError
from graph.settings import ApprovalSettings
from memory.control import ControlStore
from memory.db import Database, open_database
from prompts.messages import POLICY_KEPT, POLICY_LOOSENED, POLICY_STALE, POLICY_TIGHTENED, POLICY_USAGE
from tests.conftest import RecordingChannel, operator_message


@dataclass
class Policy:
    router: CommandRouter
    commands: PolicyCommands
    control: ControlStore
    db: Database
    chat: RecordingChannel

    async def say(self, text: str) -> str:
        return await self.router.run(operator_message(text, kind="command"))

    async def risk(self) -> object:
        return await self.control.get(POLICY_RISK_KEY)

    def buttons(self) -> dict[str, str]:
        """The last confirmation's buttons, label -> data."""
        return {b.label: b.data for b in self.chat.sent[-1].buttons}

    async def press(self, data: str, change: Callable[[InboundMessage], InboundMessage] = lambda m: m) -> str:
        self.chat.sent.clear()
        await self.commands.on_press(change(operator_message("", kind="callback", data=data)))
        return self.chat.sent[-1].text if self.chat.sent else ""


@asynccontextmanager
async def policy(tmp_path: Path, confirm_within: timedelta = timedelta(minutes=15)) -> AsyncIterator[Policy]:
    async with open_database(tmp_path) as db:
        control = ControlStore(db)
        await control.setup()
        chat = RecordingChannel("rec")
        messenger = Messenger(db)
        messenger.attach(chat)
        settings = ApprovalSettings(forbidden=("email.send",))
        commands = PolicyCommands(db, control, settings, messenger, confirm_within)
        router = CommandRouter()
        commands.register(router)
        yield Policy(router, commands, control, db, chat)


async def test_the_policy_is_shown_with_where_it_comes_from(tmp_path: Path) -> None:
    async with policy(tmp_path) as p:
        before = await p.say("/policy")
        await p.say("/policy risk cautious")
        after = await p.say("/policy")
    assert "risk tolerance: balanced (from COO_APPROVALS__RISK_TOLERANCE)" in before
    assert "forbidden actions: email.send" in before
    assert "risk tolerance: cautious (set with /policy)" in after


async def test_tightening_applies_at_once_and_is_logged(tmp_path: Path) -> None:
    async with policy(tmp_path) as p:
        answer = await p.say("/policy risk cautious")
        events = await p.db.fetchall("SELECT actor, payload FROM events WHERE kind = 'policy.set'")
        assert answer == POLICY_TIGHTENED.format(new="cautious") and await p.risk() == "cautious"
    assert [(r[0], r[1]) for r in events] == [("telegram:1001", '{"risk":"cautious"}')]


@pytest.mark.parametrize(
    "args", ["risk", "risk reckless", "risk relaxed now", "tolerance relaxed", "relaxed", "risk; DROP TABLE control"]
)
async def test_bad_arguments_give_the_usage_and_change_nothing(tmp_path: Path, args: str) -> None:
    async with policy(tmp_path) as p:
        with pytest.raises(UserFacingError) as refused:
            await p.say(f"/policy {args}")
        assert str(refused.value) == POLICY_USAGE
        assert await p.risk() is None and p.chat.sent == []


async def test_loosening_waits_for_a_confirmation_then_applies_once(tmp_path: Path) -> None:
    async with policy(tmp_path) as p:
        assert await p.say("/policy risk relaxed") == ""
        assert await p.risk() is None  # not yet
        confirm = p.buttons()["Confirm"]
        assert await p.press(confirm) == POLICY_LOOSENED.format(new="relaxed", who="telegram:1001")
        assert await p.risk() == "relaxed"
        assert await p.press(confirm) == ""  # a second press of the same button decides nothing


async def test_cancel_keeps_the_policy(tmp_path: Path) -> None:
    async with policy(tmp_path) as p:
        await p.say("/policy risk relaxed")
        assert await p.press(p.buttons()["Cancel"]) == POLICY_KEPT.format(current="balanced")
        assert await p.risk() is None


async def test_a_confirmation_pressed_in_another_chat_decides_nothing(tmp_path: Path) -> None:
    """The card was forwarded or its data replayed elsewhere: the question stays open in its own chat."""
    async with policy(tmp_path) as p:
        await p.say("/policy risk relaxed")
        confirm = p.buttons()["Confirm"]
        assert await p.press(confirm, lambda m: replace(m, chat_id="2002")) == ""
        assert await p.risk() is None
        assert await p.press(confirm) == POLICY_LOOSENED.format(new="relaxed", who="telegram:1001")


@pytest.mark.parametrize("forge", ["nonce", "verb", "id", "short"])
async def test_forged_confirmations_change_nothing(tmp_path: Path, forge: str) -> None:
    async with policy(tmp_path) as p:
        await p.say("/policy risk relaxed")
        prefix, verb, pending, nonce = p.buttons()["Confirm"].split(":")
        forged = {
            "nonce": f"{prefix}:{verb}:{pending}:{'0' * len(nonce)}",
            "verb": f"{prefix}:yes:{pending}:{nonce}",
            "id": f"{prefix}:{verb}:{'0' * len(pending)}:{nonce}",
            "short": f"{prefix}:{verb}:{pending}",
        }[forge]
        assert await p.press(forged) == ""
        assert await p.risk() is None


async def test_an_expired_confirmation_is_refused_and_cannot_be_pressed_again(tmp_path: Path) -> None:
    async with policy(tmp_path, confirm_within=timedelta(seconds=-1)) as p:
        await p.say("/policy risk relaxed")
        confirm = p.buttons()["Confirm"]
        assert await p.press(confirm) == POLICY_STALE
        assert await p.press(confirm) == ""
        assert await p.risk() is None
