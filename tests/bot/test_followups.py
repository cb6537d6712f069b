"""Follow-ups end to end in one process: the real runtime (dispatcher, approvals, outbox), a real SMTP server,
real SQLite. ``/followup`` answers without a model; the due check runs on an injected clock; each follow-up
comes up once (I7), as an email card threaded to the email it follows up on, or as a reminder."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

from bot.followups import LAST_CHECK, FollowupsLoop
from bot.messages import OutboundMessage
from bot.runtime import Runtime, open_runtime
from graph.conversation.tools import ToolContext
from graph.followups.book import FollowupBook
from graph.followups.service import DueFollowups, followup_approval_name
from graph.followups.settings import FollowupsSettings
from graph.followups.tools import FOLLOWUP_TOOLS, AddFollowupArgs
from memory.db import utcnow
from memory.followups import Followup, FollowupStore
from memory.records import Records
from tests.bot.test_invoice_flow import button, card, edited, inbound, press
from tests.conftest import DateClock, RecordingChannel, llm_settings, make_settings
from tests.fakes.openai_api import FakeOpenAI, Scripted
from tests.fakes.polling import eventually, eventually_async
from tests.fakes.smtp_server import SMTPServer


@dataclass
class Setup:
    rt: Runtime
    chan: RecordingChannel
    smtp: SMTPServer
    clock: DateClock
    store: FollowupStore
    loop: FollowupsLoop

    async def say(self, text: str) -> str:
        await self.rt.dispatcher.handle(inbound(text, kind="command"))
        return self.chan.sent[-1].text

    def cards(self) -> list[OutboundMessage]:
        """Follow-up cards shown (not edits)."""
        return [
            m
            for m in self.chan.sent
            if m.edit_message_id is None and m.buttons and "\n\nI wanted to follow up on " in m.text
        ]

    def notices(self) -> list[str]:
        return [m.text for m in self.chan.sent if m.text.startswith("Follow-up due: ")]

    def book_text(self, followup: Followup) -> str:
        return FollowupBook(self.store, None, "UTC").due_text(followup)

    async def at(self, when: datetime) -> None:
        self.clock.at = when
        await self.loop.check()

    async def restarted(self) -> DueFollowups:
        """A new service on the same data (what a restart builds)."""
        book = FollowupBook(FollowupStore(self.rt.db), Records(self.rt.db), "UTC", self.clock)
        return DueFollowups(book, self.rt.approvals, FollowupsSettings(), "UTC", self.clock)

    async def email_ana(self) -> str:
        """Send Ana an email through an approved card; its Message-ID."""
        before = len(self.smtp.delivered)  # counted before the press: the outbox may deliver at once
        await self.say("/email ana@example.org Proposal | Hi Ana, the proposal is attached.")
        await press(self.rt, button(card(self.chan), "Approve"))
        sent = await self.smtp.wait_delivered(before + 1)
        await eventually(lambda: edited(self.chan, "Sent at") is not None, what="the email sent")
        return str(sent[-1].message["Message-ID"])


@asynccontextmanager
async def followups(tmp_path: Path, start: datetime | None = None, **overrides: Any) -> AsyncIterator[Setup]:
    """The runtime (its own due check runs once at start), and a due check on an injected clock."""
    with SMTPServer() as smtp:
        settings = make_settings(
            tmp_path,
            smtp=smtp.settings(),
            outbox={"backoff_base_s": 0.02, "poll_s": 0.05},
            **{"followups": {"check_s": 86400}, **overrides},
        )
        clock = DateClock(start or utcnow())  # the runtime's follow-ups count days from it too
        async with open_runtime(settings, console=False, today=clock) as rt:
            await eventually_async(lambda: rt.control.get(LAST_CHECK), what="the runtime's first due check")
            chan = RecordingChannel("rec")
            rt.dispatcher.attach(chan)
            await Records(rt.db).upsert("contact", {"name": "Ana Silva", "emails": ["ana@example.org"]}, "op")
            store = FollowupStore(rt.db)
            service = DueFollowups(
                FollowupBook(store, Records(rt.db), "UTC", clock), rt.approvals, FollowupsSettings(), "UTC", clock
            )
            loop = FollowupsLoop(service, rt.approval_ui, rt.control, rt.messenger, 86400)
            yield Setup(rt, chan, smtp, clock, store, loop)


WEDNESDAY = datetime(2026, 12, 9, 12, 0, tzinfo=UTC)
"""The day the follow-up commands' test runs on (the runtime's date clock)."""


def nine_utc(days: int, today: date) -> str:
    """How the bot writes 09:00 UTC ``days`` from ``today``."""
    day = today + timedelta(days=days)
    return datetime.combine(day, time(9), tzinfo=UTC).strftime("%a %d %b %Y %H:%M")


async def test_followup_takes_every_when_form_lists_and_closes_without_a_model(tmp_path: Path) -> None:
    async with followups(tmp_path, start=WEDNESDAY) as s:
        assert not s.rt.coordinator.llm.configured
        today = WEDNESDAY.date()
        friday = (4 - today.weekday() - 1) % 7 + 1
        added = [
            await s.say("/followup Ana Silva 3d | the proposal"),
            await s.say("/followup bob@example.org 2w | the contract draft"),
            await s.say(f"/followup Carla {(today + timedelta(days=20)).isoformat()} | the venue"),
            await s.say("/followup ana friday | the invoice question"),
        ]
        before = await s.store.count()
        errors = [
            await s.say("/followup Ana soon | the proposal"),
            await s.say("/followup Ana 2020-01-01 | the proposal"),
            await s.say("/followup Ana 3d"),
            await s.say("/followup done 99"),
        ]
        after_errors = await s.store.count()
        listing = await s.say("/followups")
        marked = [await s.say("/followup done 1"), await s.say("/followup cancel #3")]
        again = await s.say("/followup done 1")
        left = await s.say("/followups")
    assert added[0] == (
        f"Follow-up #1 saved: the proposal, with Ana Silva <ana@example.org>, due {nine_utc(3, today)}. "
        "Then an email card to ana@example.org comes."
    )
    assert added[1].startswith(
        f"Follow-up #2 saved: the contract draft, with bob@example.org, due {nine_utc(14, today)}."
    )
    assert added[2] == f"Follow-up #3 saved: the venue, with Carla, due {nine_utc(20, today)}. Then I remind you."
    assert added[3].startswith(
        f"Follow-up #4 saved: the invoice question, with Ana Silva <ana@example.org>, due {nine_utc(friday, today)}."
    )
    assert errors == [
        'I could not read "soon" as a day: use 3d, 2w, 2026-12-20 or a weekday such as friday.',
        "2020-01-01 has passed: give a day from today on.",
        errors[2],
        "No open follow-up #99. /followups lists them.",
    ]
    assert errors[2].startswith("Usage: /followup <contact or email> <when> | <what>")
    assert before == after_errors == 4  # bad input stores nothing
    lines = listing.splitlines()
    assert lines[0] == "Open follow-ups (4):"
    assert [line.split(" ")[0] for line in lines[1:]] == (["#4", "#1"] if friday < 3 else ["#1", "#4"]) + ["#2", "#3"]
    assert f"#1 due {nine_utc(3, today)} · Ana Silva <ana@example.org> · the proposal" in lines
    assert f"#3 due {nine_utc(20, today)} · Carla · the venue" in lines
    assert marked == [
        "Follow-up #1 (the proposal, with Ana Silva <ana@example.org>) done.",
        "Follow-up #3 (the venue, with Carla) cancelled.",
    ]
    assert again == "No open follow-up #1. /followups lists them."
    assert left.splitlines()[0] == "Open follow-ups (2):" and "#1 " not in left and "#3 " not in left


async def test_a_due_followup_is_a_card_threaded_to_the_original_and_approve_sends_one_email(tmp_path: Path) -> None:
    async with followups(tmp_path) as s:
        original = await s.email_ana()
        saved = await s.say("/followup ana@example.org 3d | the proposal")
        followup = (await s.store.listing(("open",), limit=10))[0]
        for f in await s.store.listing(("open",), limit=10):
            if f.source == "manual":
                followup = f
        await s.at(followup.due - timedelta(minutes=1))
        early = list(s.cards())
        await s.at(followup.due + timedelta(minutes=1))
        await s.at(followup.due + timedelta(hours=1))  # the next check: nothing more
        shown = s.cards()
        await press(s.rt, button(shown[0], "Approve"))
        sent = await s.smtp.wait_delivered(2)
        await eventually_async(lambda: _state(s, followup.id, "proposed", invert=True), what="the follow-up settled")
        await s.at(followup.due + timedelta(hours=2))
        done = await s.store.get(followup.id)
        automatic = [f for f in await s.store.listing(("open",), limit=10) if f.source == "auto"]
    assert "as a reply to your last email to them" in saved
    assert early == []
    assert len(shown) == 1
    assert "To: ana@example.org\nSubject: Re: Proposal\nIn reply to: " + original in shown[0].text
    assert "Hi Ana,\n\nI wanted to follow up on the proposal." in shown[0].text
    assert len(sent) == 2
    follow = sent[1].message
    assert sent[1].rcpt_tos == ["ana@example.org"]
    assert follow["In-Reply-To"] == original and follow["References"] == original
    assert follow["Subject"] == "Re: Proposal"
    assert done is not None and done.state == "done"
    # the first email got its automatic follow-up; the follow-up's own email did not get one
    assert [f.message_id for f in automatic] == [original]


async def _state(s: Setup, followup_id: int, state: str, invert: bool = False) -> bool:
    await s.loop.check()
    found = await s.store.get(followup_id)
    return found is not None and ((found.state != state) if invert else (found.state == state))


async def test_an_unanswered_email_gets_its_followup_after_five_business_days(tmp_path: Path) -> None:
    async with followups(tmp_path) as s:
        original = await s.email_ana()
        await s.loop.check()
        automatic = await s.store.listing(("open",), limit=10)
        sent_at = await s.store.unanswered(datetime.min.replace(tzinfo=UTC))
        await s.at(automatic[0].due - timedelta(minutes=1))
        before = list(s.cards())
        await s.at(automatic[0].due)
        shown = s.cards()
    assert sent_at == []  # it has its follow-up: found once, not again
    assert len(automatic) == 1 and automatic[0].source == "auto" and automatic[0].email == "ana@example.org"
    assert automatic[0].message_id == original
    sent_day, due_day = automatic[0].created_at.date(), automatic[0].due.date()
    working = [d for d in range(1, (due_day - sent_day).days + 1) if (sent_day + timedelta(days=d)).weekday() < 5]
    assert len(working) == 5 and due_day.weekday() < 5  # five working days, weekends skipped
    assert before == [] and len(shown) == 1
    assert "Subject: Re: Proposal\nIn reply to: " + original in shown[0].text
    assert 'I wanted to follow up on my email "Proposal" of ' in shown[0].text


async def test_a_reply_seen_before_the_followup_existed_still_cancels_it_at_due_time(tmp_path: Path) -> None:
    from memory.mail import Location, MailRecord, MailStore

    async with followups(tmp_path) as s:
        original = await s.email_ana()
        reply = MailRecord(
            "<r1@example.org>", "0" * 64, "ana@example.org", "Ana Silva", subject="Re: Proposal",
            in_reply_to=original, references=(original,), body="Thanks, reading it now.",
        )  # fmt: skip
        await MailStore(s.rt.db).store(reply, Location("INBOX", 1, 1))
        # The inbox's hook looked at the reply before the next check made the automatic follow-up: only the
        # check at due time can still see that it was answered.
        await s.loop.replies()
        await s.loop.check()
        automatic = (await s.store.listing(("open",), limit=10))[0]
        await s.at(automatic.due + timedelta(days=1))
        cancelled = await s.store.get(automatic.id)
    assert s.cards() == [] and cancelled is not None and cancelled.state == "cancelled"


async def test_a_followup_without_an_address_is_a_reminder_once(tmp_path: Path) -> None:
    async with followups(tmp_path) as s:
        await s.say("/followup Bob 1d | the venue booking")
        followup = (await s.store.listing(limit=1))[0]
        await s.at(followup.due)
        await s.at(followup.due + timedelta(minutes=15))
        restarted = await s.restarted()
        leftover = await restarted.to_deliver()
    assert s.notices() == ["Follow-up due: the venue booking, with Bob (#1). Once done: /followup done 1"]
    assert s.cards() == [] and leftover == []


async def test_a_machine_asleep_at_due_time_proposes_each_once_on_waking(tmp_path: Path) -> None:
    async with followups(tmp_path) as s:
        for text in ("ana@example.org 1d | the proposal", "Ana Silva 2d | the invoice", "Bob 3d | the venue"):
            await s.say(f"/followup {text}")
        # asleep for a month: every check it missed would have found all three due
        woke = s.clock.at + timedelta(days=30)
        for minutes in (0, 15, 30):
            await s.at(woke + timedelta(minutes=minutes))
        restarted = await s.restarted()
        await restarted.check_due()
        leftover = await restarted.to_deliver()
        approvals = [a for a in await s.rt.approvals.store.list_approvals() if a.kind == "email.send"]
    assert len(s.cards()) == 2 and len(s.notices()) == 1
    assert len(approvals) == 2 and leftover == []


async def test_a_crash_after_the_card_was_stored_finds_it_instead_of_proposing_another(tmp_path: Path) -> None:
    async with followups(tmp_path) as s:
        await s.say("/followup ana@example.org 1d | the proposal")
        followup = (await s.store.listing(limit=1))[0]
        # What a run killed between storing the card and marking the follow-up leaves: the card, still open.
        kind = s.rt.approvals.kind("email.send")
        from graph.followups.service import ORIGIN, THREAD, followup_email

        async def build() -> Any:
            return kind.build(followup_email(followup))

        stored = await s.rt.approvals.propose_once(followup_approval_name(followup), build, THREAD, ORIGIN, "coo")
        await s.at(followup.due)
        await s.at(followup.due + timedelta(minutes=15))
        approvals = [a for a in await s.rt.approvals.store.list_approvals() if a.kind == "email.send"]
        after = await s.store.get(followup.id)
    assert stored.approval is not None and [a.id for a in approvals] == [stored.approval.id]
    assert after is not None and after.state == "proposed" and after.approval_id == stored.approval.id
    assert len(s.cards()) == 1


async def test_the_model_adds_a_followup_through_its_tool_and_the_digest_shows_it_on_its_day(tmp_path: Path) -> None:
    async with FakeOpenAI() as llm:
        args = {"contact": "Ana", "when": "next week", "what": "chase Ana about the proposal"}
        llm.script.append(Scripted(tool_calls=[("add_followup", args)]))  # a "when" it cannot read: told why
        llm.script.append(Scripted(tool_calls=[("add_followup", {**args, "when": "1w"})]))
        llm.reply("I will remind you next week.")
        # A day far from the real one: a part that read the real date instead of the runtime's would fail.
        async with followups(tmp_path, start=datetime(2031, 5, 16, 12, tzinfo=UTC), llm=llm_settings(llm)) as s:
            await s.rt.dispatcher.handle(inbound("remind me to chase Ana about the proposal next week"))
            await eventually(lambda: s.chan.sent and s.chan.sent[-1].text == "I will remind you next week.")
            added = await s.store.listing(limit=5)
            tool = next(t for t in FOLLOWUP_TOOLS if t.name == "add_followup")
            ctx = ToolContext(db=s.rt.db, session="s1", timezone="UTC", records=Records(s.rt.db), clock=s.clock)
            await tool.run(ctx, AddFollowupArgs(contact="bob@example.org", when="today", what="the contract"))
            digest = await s.rt.digest.build(utcnow() - timedelta(days=1), reconcile=False)
        offered = [t["function"]["name"] for t in llm.chat_requests[0]["tools"]]
        results = [m["content"] for m in llm.chat_requests[1]["messages"] if m.get("role") == "tool"]
    assert "add_followup" in offered
    assert any('error: I could not read "next week" as a day' in r for r in results)
    assert len(added) == 1 and added[0].source == "model" and added[0].email == "ana@example.org"
    assert added[0].what == "chase Ana about the proposal" and s.chan.sent[-1].text == "I will remind you next week."
    today = s.clock().date()  # the model's tools and the digest count from the runtime's clock too
    assert s.book_text(added[0]) == nine_utc(7, today)
    assert f"Follow-ups due today:\n- #2 due {nine_utc(0, today)} · bob@example.org · the contract" in digest.text
    assert "chase Ana" not in digest.text  # due next week, not today


async def test_automatic_followups_can_be_turned_off(tmp_path: Path) -> None:
    async with followups(tmp_path, **{"followups": {"check_s": 86400, "reply_wait_days": 0}}) as s:
        s.loop = FollowupsLoop(
            DueFollowups(
                FollowupBook(s.store, Records(s.rt.db), "UTC", s.clock),
                s.rt.approvals,
                FollowupsSettings(reply_wait_days=0),
                "UTC",
                s.clock,
            ),
            s.rt.approval_ui,
            s.rt.control,
            s.rt.messenger,
            86400,
        )
        await s.email_ana()
        await s.loop.check()
        assert await s.store.count() == 0


async def test_a_rejected_followup_card_cancels_the_followup_and_nothing_is_sent(tmp_path: Path) -> None:
    async with followups(tmp_path) as s:
        await s.say("/followup ana@example.org 1d | the proposal")
        followup = (await s.store.listing(limit=1))[0]
        await s.at(followup.due)
        await press(s.rt, button(s.cards()[0], "Reject"))
        await s.at(followup.due + timedelta(minutes=15))
        after = await s.store.get(followup.id)
        listing = await s.say("/followups")
    assert after is not None and after.state == "cancelled"
    assert listing.startswith("No open follow-ups.") and s.smtp.delivered == []


async def test_a_name_that_matches_several_contacts_asks_for_the_address(tmp_path: Path) -> None:
    async with followups(tmp_path) as s:
        await Records(s.rt.db).upsert("contact", {"name": "Ana Costa", "emails": ["costa@example.org"]}, "op")
        said = await s.say("/followup Ana 3d | the proposal")
        exact = await s.say("/followup Ana Costa 3d | the proposal")
        count = await s.store.count()
    assert said.startswith('"Ana" matches several contacts (') and said.endswith("): use the email address.")
    assert "Ana Silva <ana@example.org>" in said and "Ana Costa <costa@example.org>" in said
    assert exact.startswith("Follow-up #1 saved: the proposal, with Ana Costa <costa@example.org>, due ")
    assert count == 1
