"""A reply read from a real Dovecot cancels the automatic follow-up of the email it answers: at once, through
the inbox's hook (the runtime's own due check does not run again in these tests), and a card already
proposed for it is withdrawn. Without a reply, the follow-up comes at its time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from bot.followups import LAST_CHECK, FollowupsLoop
from bot.runtime import Runtime, open_runtime
from graph.followups.book import FollowupBook
from graph.followups.service import DueFollowups
from graph.followups.settings import FollowupsSettings
from memory.db import utcnow
from memory.followups import Followup, FollowupStore
from memory.records import Records
from tests.bot.test_approval_flow import card, data, inbound
from tests.conftest import DateClock, RecordingChannel, make_settings
from tests.fakes.dovecot import Dovecot
from tests.fakes.polling import eventually, eventually_async
from tests.fakes.smtp_server import SMTPServer
from tests.inbox.conftest import imap_settings
from tests.inbox.mails import mail


@dataclass
class Setup:
    rt: Runtime
    chan: RecordingChannel
    smtp: SMTPServer
    dovecot: Dovecot
    store: FollowupStore
    clock: DateClock
    loop: FollowupsLoop

    async def email_ana(self, subject: str) -> str:
        before = len(self.smtp.delivered)  # counted before the press: the outbox may deliver at once
        await self.rt.dispatcher.handle(
            inbound(f"/email ana@acme.test {subject} | Hi Ana, here it is.", kind="command")
        )
        await self.rt.dispatcher.handle(inbound(kind="callback", data=data(card(self.chan), "Approve")))
        sent = await self.smtp.wait_delivered(before + 1)
        count = len(sent)
        await eventually(lambda: len([m for m in self.chan.sent if m.text.startswith("Sent at")]) == count)
        return str(sent[-1].message["Message-ID"])

    async def automatic(self, message_id: str) -> Followup:
        await self.loop.check()
        return next(f for f in await self.store.listing(limit=50) if f.message_id == message_id)

    async def ana_replies(self, to: str, subject: str, message_id: str) -> None:
        answer = mail(f"Re: {subject}", "Thanks, reading it.", message_id=message_id, In_Reply_To=to, References=to)
        await asyncio.to_thread(self.dovecot.append, answer)

    async def state(self, followup_id: int) -> str:
        found = await self.store.get(followup_id)
        assert found is not None
        return found.state

    def followup_cards(self) -> list[str]:
        return [m.text for m in self.chan.sent if m.buttons and "\n\nI wanted to follow up on " in m.text]


@asynccontextmanager
async def inbox(tmp_path: Path, dovecot: Dovecot) -> AsyncIterator[Setup]:
    imap = imap_settings(dovecot, poll_s=0.5).model_dump(mode="json")
    imap["password"] = imap_settings(dovecot).password.get_secret_value()  # type: ignore[union-attr]
    with SMTPServer() as smtp:
        settings = make_settings(
            tmp_path, smtp=smtp.settings(), imap=imap, outbox={"poll_s": 0.05}, followups={"check_s": 86400}
        )
        async with open_runtime(settings, console=False) as rt:
            await eventually_async(lambda: rt.control.get(LAST_CHECK), what="the runtime's first due check")
            chan = RecordingChannel("rec")
            rt.dispatcher.attach(chan)
            store = FollowupStore(rt.db)
            clock = DateClock(utcnow())
            book = FollowupBook(store, Records(rt.db), "UTC", clock)
            service = DueFollowups(book, rt.approvals, FollowupsSettings(), "UTC", clock)
            loop = FollowupsLoop(service, rt.approval_ui, rt.control, rt.messenger, 86400)
            yield Setup(rt, chan, smtp, dovecot, store, clock, loop)


async def test_a_reply_cancels_the_automatic_followup_at_once_and_nothing_comes_at_its_time(
    tmp_path: Path, dovecot: Dovecot
) -> None:
    async with inbox(tmp_path, dovecot) as s:
        answered = await s.email_ana("Proposal")
        waiting = await s.email_ana("Contract")
        first, second = await s.automatic(answered), await s.automatic(waiting)
        await s.ana_replies(answered, "Proposal", "<r1@acme.test>")
        await eventually_async(lambda: _is(s, first.id, "cancelled"), timeout=20, what="cancelled by the reply")
        s.clock.at = max(first.due, second.due) + timedelta(minutes=1)
        await s.loop.check()
        cards = s.followup_cards()
        still = await s.state(second.id)
    assert len(cards) == 1 and 'my email "Contract" of ' in cards[0]  # only the unanswered one comes
    assert still == "proposed"


async def test_a_reply_withdraws_the_followup_card_already_proposed(tmp_path: Path, dovecot: Dovecot) -> None:
    async with inbox(tmp_path, dovecot) as s:
        original = await s.email_ana("Proposal")
        followup = await s.automatic(original)
        s.clock.at = followup.due
        await s.loop.check()
        assert len(s.followup_cards()) == 1
        await s.ana_replies(original, "Proposal", "<r2@acme.test>")
        await eventually_async(lambda: _is(s, followup.id, "cancelled"), timeout=20, what="cancelled by the reply")
        await eventually(lambda: any(m.text.startswith("Withdrawn: ana@acme.test replied.") for m in s.chan.sent))
        await s.loop.check()
        approvals = [a for a in await s.rt.approvals.store.list_approvals() if a.origin == "followups"]
    assert [a.state for a in approvals] == ["rejected"]  # withdrawn: never sent
    assert len(s.smtp.delivered) == 1


async def _is(s: Setup, followup_id: int, state: str) -> bool:
    return await s.state(followup_id) == state
