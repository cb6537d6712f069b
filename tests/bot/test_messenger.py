"""The messenger sends a Reply once: its text, then its cards; journalled per turn, so a replayed turn skips
what it sent before the crash (I3); quiet replies log a failed delivery; notices stay out of the numbering."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.messages import ChannelUnreachable, OutboundMessage
from bot.messenger import Messenger
from bot.reply import Reply, ShowCard
from memory.db import Database, open_database
from tests.conftest import RecordingChannel


class Unreachable(RecordingChannel):
    """A channel whose platform cannot be reached for the sends numbered in ``failing`` (0-based)."""

    def __init__(self, name: str, failing: set[int]) -> None:
        super().__init__(name)
        self.failing = failing
        self.attempts = 0

    async def send(self, message: OutboundMessage) -> list[str]:
        attempt, self.attempts = self.attempts, self.attempts + 1
        if attempt in self.failing:
            raise ChannelUnreachable("the platform is down")
        return await super().send(message)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    async with open_database(tmp_path) as opened:
        yield opened


def card_shower(messenger: Messenger, shown: list[str]) -> ShowCard:
    """Shows a card as ApprovalUI.show does: one send through the messenger."""

    async def show(approval_id: str, channel: str, chat_id: str, thread_id: str | None) -> None:
        shown.append(approval_id)
        await messenger.send(OutboundMessage(channel, chat_id, f"card {approval_id}", thread_id))

    return show


REPLY = Reply("rec", "1001", text="Here is the draft.", cards=("a1", "a2"), log_text="Here is [memory 3].")


async def test_a_reply_is_sent_once_text_then_cards_and_logged_as_its_log_text(db: Database) -> None:
    messenger, chan, shown = Messenger(db), RecordingChannel("rec"), list[str]()
    messenger.attach(chan)
    with messenger.turn("rec:1", replaying=False):
        ids = await messenger.deliver(REPLY, card_shower(messenger, shown))
    assert ids == ["1"]
    assert [m.text for m in chan.sent] == ["Here is the draft.", "card a1", "card a2"]
    logged = [e.payload["text"] for e in await db.events("message.out", session="rec:1001")]
    assert logged == ["Here is [memory 3].", "card a1", "card a2"]  # the quoted memories stay out of the log


async def test_a_replayed_turn_skips_what_was_sent_before_the_crash(db: Database) -> None:
    messenger, shown = Messenger(db), list[str]()
    down = Unreachable("rec", failing={2})  # the second card could not be delivered
    messenger.attach(down)
    with messenger.turn("rec:1", replaying=False), pytest.raises(ChannelUnreachable):
        await messenger.deliver(REPLY, card_shower(messenger, shown))
    assert [m.text for m in down.sent] == ["Here is the draft.", "card a1"]

    again = Messenger(db)  # the next start
    chan = RecordingChannel("rec")
    again.attach(chan)
    with again.turn("rec:1", replaying=True):
        ids = await again.deliver(REPLY, card_shower(again, shown))
    assert ids == ["1"]  # the text's recorded ids, not sent again
    assert [m.text for m in chan.sent] == ["card a2"]
    assert len(await db.events("message.out")) == 3


async def test_a_notice_during_a_turn_does_not_shift_the_turns_numbering(db: Database) -> None:
    messenger, chan = Messenger(db), RecordingChannel("rec")
    messenger.attach(chan)
    with messenger.turn("rec:1", replaying=False):
        await messenger.notice(OutboundMessage("rec", "1001", "Budget at 80 %."))
        await messenger.deliver(Reply("rec", "1001", text="first"))
    with messenger.turn("rec:1", replaying=True):
        await messenger.deliver(Reply("rec", "1001", text="first"))
        await messenger.deliver(Reply("rec", "1001", text="second"))
    assert [m.text for m in chan.sent] == ["Budget at 80 %.", "first", "second"]


async def test_a_quiet_reply_logs_a_failed_delivery_and_a_plain_one_raises_it(
    db: Database, captured_logs: pytest.LogCaptureFixture
) -> None:
    messenger = Messenger(db)
    messenger.attach(Unreachable("rec", failing={0, 1}))
    assert await messenger.deliver(Reply("rec", "666", text="Not yours.", quietly=True)) == []
    assert any(r.levelno == logging.ERROR and "rec:666" in r.getMessage() for r in captured_logs.records)
    with pytest.raises(ChannelUnreachable):
        await messenger.deliver(Reply("rec", "666", text="Not yours."))
    assert await db.events("message.out") == []  # nothing claims to have been sent


async def test_a_reply_with_cards_but_no_way_to_show_them_is_refused_before_anything_is_sent(db: Database) -> None:
    messenger, chan = Messenger(db), RecordingChannel("rec")
    messenger.attach(chan)
    with pytest.raises(ValueError, match="cards"):
        await messenger.deliver(REPLY)
    assert chan.sent == [] and await db.events("message.out") == []
