"""Approval cards on a channel, built directly: shown and remembered, pressed, corrected, updated with the
outcome; a card made in a conversation resumes it and its answer goes out as one reply."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pytest
from pydantic import BaseModel, Field

from bot.approval_ui import ApprovalUI
from bot.messages import ChannelUnreachable, InboundMessage, OutboundMessage
from bot.messenger import Messenger
from bot.stores import Stores, open_stores
from connectors.base import Action, ActionError, ActionKind, Context, Preview
from connectors.registry import Registry
from graph.approvals.service import ApprovalService
from graph.contexts import Contexts
from graph.conversation.coordinator import TurnResult
from graph.errors import UserFacingError
from memory.approvals import ApprovalRow
from tests.conftest import RecordingChannel, make_settings

OPERATOR = "telegram:1001"
SESSION = "rec:1001"


class Ring(Action):
    kind: Literal["chime.ring"] = "chime.ring"
    note: str = Field(min_length=1, max_length=40)


class Chime(ActionKind[Ring]):
    """A tiny kind: rings a chime, with a note; corrected with ``note=…``."""

    name = "chime.ring"
    title = "Ring the chime?"
    args = Ring
    edit_help = "Send note=<what it is for>."

    def preview(self, action: Ring) -> Preview:
        return Preview(self.title, (("For", action.note),))

    async def edit(self, action: Ring, text: str, ctx: Context) -> Ring:
        key, _, value = text.partition("=")
        if key.strip() != "note":
            raise ActionError(self.edit_help)
        return self.build({"note": value.strip()})

    async def from_tool(self, args: BaseModel, ctx: Context) -> Ring:
        raise NotImplementedError


class Down(RecordingChannel):
    """The same chat, once its platform cannot be reached."""

    async def send(self, message: OutboundMessage) -> list[str]:
        raise ChannelUnreachable("the platform is down")


@dataclass
class Cards:
    stores: Stores
    service: ApprovalService
    messenger: Messenger
    chan: RecordingChannel
    ui: ApprovalUI
    wakes: list[None] = field(default_factory=list)
    resumed: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    answers: list[TurnResult] = field(default_factory=list)

    async def propose(self, note: str, origin: str = "command") -> ApprovalRow:
        proposal = await self.service.propose(Ring(note=note), SESSION, origin, OPERATOR)
        assert proposal.approval is not None
        return proposal.approval

    async def press(self, label: str, message: OutboundMessage) -> None:
        data = next(b.data for b in message.buttons if b.label == label)
        await self.ui.on_press(InboundMessage("rec", "1001", OPERATOR, kind="callback", callback_data=data))

    def said(self, text: str) -> InboundMessage:
        return InboundMessage("rec", "1001", OPERATOR, text=text)


@pytest.fixture
async def cards(tmp_path: Path) -> AsyncIterator[Cards]:
    settings = make_settings(tmp_path)
    async with AsyncExitStack() as stack:
        stores = await open_stores(settings, stack)
        service = ApprovalService(
            stores.approvals, stores.db, Registry([Chime()]), settings.approvals, lambda: {OPERATOR}, stores.control
        )
        contexts = Contexts(
            stores.db, settings.timezone, "EUR", stores.records, clock=lambda: datetime(2026, 3, 2, 9, tzinfo=UTC)
        )
        messenger, chan = Messenger(stores.db), RecordingChannel("rec")
        messenger.attach(chan)
        box: list[Cards] = []

        async def resume(session: str, root_id: str, decision: dict[str, str]) -> Any:
            box[0].resumed.append((session, root_id, decision))
            return box[0].answers.pop(0)

        ui = ApprovalUI(service, resume, messenger, lambda: box[0].wakes.append(None), contexts.proposal)
        box.append(Cards(stores, service, messenger, chan, ui))
        yield box[0]


async def test_a_card_is_shown_remembered_and_approved_in_place(cards: Cards) -> None:
    row = await cards.propose("lunch")
    await cards.ui.show(row.id, "rec", "1001", None)
    card = cards.chan.sent[0]
    assert "For: lunch" in card.text and [b.label for b in card.buttons] == ["Approve", "Edit", "Reject"]
    stored = await cards.stores.approvals.get(row.id)
    assert stored is not None and [c.message_id for c in stored.cards] == ["1"]

    await cards.press("Approve", card)
    edited = cards.chan.sent[-1]
    assert edited.edit_message_id == "1" and edited.text.startswith(f"Approved by {OPERATOR}.")
    assert edited.buttons == () and len(cards.wakes) == 1  # the outbox is woken to run it
    assert cards.resumed == []  # a command's card resumes no conversation


async def test_a_forged_press_changes_nothing_and_shows_nothing(cards: Cards) -> None:
    row = await cards.propose("lunch")
    await cards.ui.show(row.id, "rec", "1001", None)
    forged = InboundMessage("rec", "1001", OPERATOR, kind="callback", callback_data=f"ap:{row.id}:wrongnonce")
    await cards.ui.on_press(forged)
    assert len(cards.chan.sent) == 1
    stored = await cards.stores.approvals.get(row.id)
    assert stored is not None and stored.state == "pending" and cards.wakes == []
    assert len(await cards.stores.db.events("approval.forged")) == 1


async def test_a_correction_replaces_the_card_and_an_unreadable_one_leaves_it_open(cards: Cards) -> None:
    row = await cards.propose("lunch")
    await cards.ui.show(row.id, "rec", "1001", None)
    await cards.press("Edit", cards.chan.sent[0])
    assert cards.chan.sent[-1].text == Chime.edit_help

    with pytest.raises(UserFacingError, match="note="):
        await cards.ui.take_edit(cards.said("make it dinner"))
    still = await cards.stores.approvals.get(row.id)
    assert still is not None and still.state == "pending"  # nothing lost: the old card holds

    assert await cards.ui.take_edit(cards.said("note=dinner"))  # the request stayed open for a second try
    replaced, new_card = cards.chan.sent[-2:]
    assert replaced.edit_message_id == "1" and replaced.text.startswith("Replaced by a corrected card")
    assert "For: dinner" in new_card.text and new_card.edit_message_id is None
    assert not await cards.ui.take_edit(cards.said("note=supper"))  # one correction per Edit press


async def test_a_decided_conversation_card_resumes_it_and_its_answer_comes_as_one_reply(cards: Cards) -> None:
    row = await cards.propose("lunch", origin="graph")
    other = await cards.propose("tea", origin="graph")
    cards.answers.append(TurnResult("Not rung. Shall I ring for tea instead?", cards=(other.id,)))
    await cards.ui.show(row.id, "rec", "1001", None)
    await cards.press("Reject", cards.chan.sent[0])
    assert cards.resumed == [(SESSION, row.root_id, {"decision": "rejected"})]
    rejected, answer, card = cards.chan.sent[1:]
    assert rejected.text.startswith(f"Rejected by {OPERATOR}.") and rejected.edit_message_id == "1"
    assert answer.text == "Not rung. Shall I ring for tea instead?" and answer.chat_id == "1001"
    assert "For: tea" in card.text and [b.label for b in card.buttons] == ["Approve", "Edit", "Reject"]


async def test_an_outcome_that_cannot_reach_a_card_raises_so_it_is_shown_again_later(cards: Cards) -> None:
    row = await cards.propose("lunch")
    await cards.ui.show(row.id, "rec", "1001", None)
    await cards.press("Approve", cards.chan.sent[0])
    queued = await cards.stores.approvals.outbox(row.id)
    assert queued is not None

    cards.messenger.attach(Down("rec"))
    with pytest.raises(RuntimeError, match=row.id):
        await cards.ui.on_outcome(queued)

    cards.messenger.attach(cards.chan)
    await cards.ui.on_outcome(queued)
    assert cards.chan.sent[-1].text.startswith(f"Approved by {OPERATOR}. Queued")
