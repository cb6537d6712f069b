"""What a refused update gets, built directly: an audit row always; a stranger one answer an hour; chatter
nobody addressed to the bot nothing; a failed check the generic error; a platform that is down costs a log line."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.access import AccessGuard, Verdict
from bot.messages import ChannelUnreachable, InboundKind, InboundMessage, OutboundMessage
from bot.messenger import Messenger
from bot.refusals import REFUSAL_INTERVAL_S, Refusals
from bot.stores import Stores, open_stores
from prompts.messages import GENERIC_ERROR, PAIR_FAILED, REFUSAL
from tests.conftest import ManualClock, RecordingChannel, make_settings


@dataclass
class Door:
    stores: Stores
    refusals: Refusals
    guard: AccessGuard
    chan: RecordingChannel
    clock: ManualClock


@pytest.fixture
async def door(tmp_path: Path) -> AsyncIterator[Door]:
    settings = make_settings(tmp_path)
    async with AsyncExitStack() as stack:
        stores = await open_stores(settings, stack)
        clock = ManualClock()
        guard = AccessGuard(frozenset({"telegram:1001"}), stores.operators, clock=clock)
        messenger, chan = Messenger(stores.db), RecordingChannel("rec")
        messenger.attach(chan)
        yield Door(stores, Refusals(stores.db, guard, messenger, clock=clock), guard, chan, clock)


def stranger(kind: InboundKind = "message", who: str = "telegram:666") -> InboundMessage:
    return InboundMessage("rec", who.rsplit(":", 1)[-1], who, text="hi", kind=kind)


async def test_a_stranger_is_told_once_an_hour_and_every_refusal_is_audited(door: Door) -> None:
    for _ in range(3):
        await door.refusals.refuse(stranger(), Verdict.DENY)
    assert [m.text for m in door.chan.sent] == [REFUSAL]
    door.clock.advance(REFUSAL_INTERVAL_S + 1)
    await door.refusals.refuse(stranger(), Verdict.DENY)
    assert [m.text for m in door.chan.sent] == [REFUSAL, REFUSAL]
    audited = await door.stores.db.events("access.deny")
    assert len(audited) == 4 and audited[0].payload == {"kind": "message", "verdict": "deny", "chat": "666"}


async def test_chatter_nobody_addressed_is_audited_but_not_answered(door: Door) -> None:
    await door.refusals.refuse(stranger("other"), Verdict.DENY)
    assert door.chan.sent == [] and len(await door.stores.db.events("access.deny")) == 1
    await door.refusals.refuse(stranger("message"), Verdict.DENY)  # chatter did not use up the hour's answer
    assert [m.text for m in door.chan.sent] == [REFUSAL]


async def test_a_failed_check_gets_the_generic_error_and_is_not_audited_twice(door: Door) -> None:
    await door.refusals.refuse(stranger("callback"), Verdict.ERROR)
    assert [m.text for m in door.chan.sent] == [GENERIC_ERROR]
    assert await door.stores.db.events("access.error") == []  # audited when its batch was accepted
    await door.refusals.refuse(stranger("other"), Verdict.ERROR)
    assert len(door.chan.sent) == 1


async def test_a_wrong_pairing_code_hears_how_many_tries_are_left(door: Door) -> None:
    await door.refusals.refuse(stranger(), Verdict.PAIR_FAILED)
    assert door.chan.sent[0].text == PAIR_FAILED.format(left=door.guard.tries_left("telegram:666"))


async def test_a_platform_that_is_down_costs_a_log_line_not_the_refusal(
    door: Door, captured_logs: pytest.LogCaptureFixture
) -> None:
    class Down(RecordingChannel):
        async def send(self, message: OutboundMessage) -> list[str]:
            raise ChannelUnreachable("the platform is down")

    messenger = Messenger(door.stores.db)
    messenger.attach(Down("rec"))
    refusals = Refusals(door.stores.db, AccessGuard(frozenset(), door.stores.operators), messenger, door.clock)
    await refusals.refuse(stranger(), Verdict.DENY)  # does not raise
    assert any("could not deliver" in r.getMessage() for r in captured_logs.records)
    assert len(await door.stores.db.events("access.deny")) == 1


async def test_a_channel_that_is_not_attached_gets_nothing_sent(door: Door) -> None:
    await door.refusals.refuse(InboundMessage("slack", "C1", "slack:T:U", text="hi"), Verdict.DENY)
    assert door.chan.sent == [] and len(await door.stores.db.events("access.deny")) == 1
