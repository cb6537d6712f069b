"""/email (a kind's command), /pending, /approve and /reject, registered on a router and run against the real
approval service and UI (tests/bot/chat_parts.py): a card by id gets the same checks as a button press."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from bot.commands.approvals import register_approval_commands
from graph.errors import UserFacingError
from memory.db import utcnow
from tests.bot.chat_parts import SMTP, Chat, chat_parts
from tests.fakes.openai_api import FakeOpenAI


@pytest.fixture
async def chat(tmp_path: Path, fake_llm: FakeOpenAI) -> AsyncIterator[Chat]:
    async with chat_parts(tmp_path, fake_llm, smtp=SMTP) as built:
        register_approval_commands(built.router, built.parts.approvals, built.ui, built.parts.contexts.proposal)
        yield built


async def test_a_kinds_command_shows_one_card_even_when_its_update_is_replayed(chat: Chat) -> None:
    inbound = chat.inbound("/email ana@example.org Proposal ready | Hi Ana")
    assert await chat.router.run(inbound) == ""
    assert await chat.router.run(inbound) == ""  # redelivered after a crash: the same card, shown again
    [row] = await chat.parts.approvals.store.list_approvals("pending")
    assert row.action["to"] == ["ana@example.org"] and row.action["from_addr"] == "coo@example.org"
    assert [m.buttons[0].label for m in chat.chan.sent] == ["Approve", "Approve"]


async def test_a_command_it_cannot_read_is_one_line_and_proposes_nothing(chat: Chat) -> None:
    with pytest.raises(UserFacingError, match="/email"):
        await chat.say("/email ana@example.org no body here")
    assert await chat.parts.approvals.store.list_approvals() == [] and chat.chan.sent == []


async def test_pending_shows_every_waiting_card(chat: Chat) -> None:
    assert await chat.say("/pending") == "Nothing waits for your approval."
    await chat.email_card("One", shown=False)
    await chat.email_card("Two", shown=False)
    assert await chat.say("/pending") == "2 card(s) wait for your approval (shown above)."
    assert ["Subject: One" in m.text or "Subject: Two" in m.text for m in chat.chan.sent] == [True, True]


async def test_approve_and_reject_by_id_decide_the_card_shown_here(chat: Chat) -> None:
    approved, rejected = await chat.email_card("One"), await chat.email_card("Two")
    assert await chat.say(f"/approve {approved.id}") == ""
    assert await chat.say(f"/reject {rejected.id}") == ""
    assert [await chat.state(approved.id), await chat.state(rejected.id)] == ["approved", "rejected"]
    assert len(chat.wakes) == 1  # only the approved one goes to the outbox
    assert await chat.parts.approvals.store.outbox(approved.id) is not None
    assert await chat.parts.approvals.store.outbox(rejected.id) is None


@pytest.mark.parametrize("args", ["", "   ", "nosuchcard"])
async def test_approve_without_a_known_id_is_the_usage_and_changes_nothing(chat: Chat, args: str) -> None:
    row = await chat.email_card()
    with pytest.raises(UserFacingError, match=r"Usage: /approve <card id>"):
        await chat.say(f"/approve {args}")
    assert await chat.state(row.id) == "pending" and chat.wakes == []


async def test_approve_by_a_stranger_or_in_a_chat_it_was_not_shown_in_changes_nothing(chat: Chat) -> None:
    row = await chat.email_card()
    await chat.say(f"/approve {row.id}", sender="telegram:666")
    await chat.say(f"/approve {row.id}", chat="2002")  # the operator, but elsewhere: not where the card was shown
    assert await chat.state(row.id) == "pending" and chat.wakes == []
    assert len(chat.chan.sent) == 1  # nothing said either


async def test_approve_of_an_expired_card_expires_it_and_sends_nothing(chat: Chat) -> None:
    row = await chat.email_card()
    past = (utcnow() - timedelta(minutes=1)).isoformat()
    await chat.parts.stores.db.write("UPDATE approvals SET expires_at = ? WHERE id = ?", (past, row.id))
    await chat.say(f"/approve {row.id}")
    assert await chat.state(row.id) == "expired" and chat.wakes == []
    assert await chat.parts.approvals.store.outbox(row.id) is None
    assert chat.chan.sent[-1].text.startswith("Expired without a decision.")
