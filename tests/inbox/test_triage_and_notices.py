"""Triage rules, the model's part in triage, and notices of urgent mail from known contacts."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.inbox_runtime import InboxNotices, in_quiet_hours
from bot.messages import OutboundMessage
from connectors.mail_parse import parse_mail
from graph.inbox.rules import by_rules
from graph.inbox.triage import Triage
from graph.models.llm import LLMClient
from graph.settings import LLMSettings
from graph.spend.budget import BudgetGuard
from graph.spend.pricing import PriceTable
from memory.control import ControlStore
from memory.db import Database, open_database
from memory.ledger import CostLedger
from memory.mail import Location, MailRecord, MailStore
from memory.records import Records
from tests.conftest import llm_settings
from tests.fakes.openai_api import FakeOpenAI
from tests.inbox.mails import mail

_uids = iter(range(1, 10**6))


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    async with open_database(tmp_path) as database:
        for part in (MailStore(database), Records(database), ControlStore(database)):
            await part.setup()
        yield database


async def _deliver(store: MailStore, raw: bytes) -> int:
    mail_id, _ = await store.store(parse_mail(raw), Location("INBOX", 7, next(_uids)))
    return mail_id


def _rules(raw: bytes, known: bool = False, ours: bool = False) -> tuple[str, str, bool]:
    verdict = by_rules(parse_mail(raw), known, ours)
    return verdict.mail_class, verdict.urgency, verdict.final


def test_rules_sort_lists_auto_replies_bounces_receipts_and_people() -> None:
    assert _rules(mail(List_Unsubscribe="<mailto:u@news.test>")) == ("newsletter", "low", True)
    assert _rules(mail(Precedence="bulk")) == ("newsletter", "low", True)
    assert _rules(mail(Auto_Submitted="auto-replied")) == ("fyi", "low", True)
    assert _rules(mail(Auto_Submitted="no"))[0] == "needs_reply"  # RFC 3834: "no" is a person
    assert _rules(mail("Out of office until Monday")) == ("fyi", "low", True)
    assert _rules(mail(sender="MAILER-DAEMON@mx.test")) == ("fyi", "normal", True)
    assert _rules(mail("Your receipt from Shop")) == ("receipt", "low", False)
    assert _rules(mail("URGENT: contract today"), known=True) == ("needs_reply", "high", False)
    assert _rules(mail("Re: proposal"), ours=True) == ("waiting_on_us", "normal", False)
    assert _rules(mail("Hello"))[:2] == ("needs_reply", "low")
    assert _rules(mail("Hi", "see\U000e0041\U000e0042")) == ("suspicious", "low", True)
    assert _rules(mail(sender='"boss@acme.test" <x@evil.test>')) == ("suspicious", "low", True)


def test_quiet_hours_span_midnight_in_the_operators_zone() -> None:
    at = datetime(2026, 12, 1, 23, 30, tzinfo=UTC)
    assert in_quiet_hours("22:00-07:00", at, "UTC")
    assert not in_quiet_hours("22:00-07:00", at.replace(hour=12), "UTC")
    assert in_quiet_hours("12:00-13:00", at.replace(hour=12, minute=30), "UTC")
    assert not in_quiet_hours("22:00-07:00", at, "Asia/Tokyo")  # 08:30 there
    assert not in_quiet_hours("", at, "UTC")


async def test_urgent_mail_from_a_contact_is_announced_once_after_quiet_hours(db: Database) -> None:
    store, control = MailStore(db), ControlStore(db)
    await Records(db).upsert("contact", {"name": "Ana", "emails": ["ana@acme.test"]}, actor="telegram:1001")
    await control.put("home:telegram:1001", ["rec", "1001", None])
    sent: list[OutboundMessage] = []

    async def send(message: OutboundMessage) -> None:
        sent.append(message)

    now = [datetime(2026, 12, 1, 23, 0, tzinfo=UTC)]
    notices = InboxNotices(store, control, send, "22:00-07:00", "UTC", now=lambda: now[0])
    await _deliver(store, mail("URGENT: sign today", message_id="<u1@acme.test>"))
    await _deliver(store, mail("URGENT: buy now", sender="spam@x.test", message_id="<u2@x.test>"))
    await _deliver(store, mail("Lunch?", message_id="<u3@acme.test>"))
    await Triage(store, Records(db), on_triaged=notices.send_due).run_pending()
    assert sent == []  # quiet hours: held
    now[0] = datetime(2026, 12, 2, 7, 30, tzinfo=UTC)
    await notices.release_held()
    assert len(sent) == 1 and sent[0].chat_id == "1001"
    assert sent[0].text.startswith("Urgent email from Ana Lima <ana@acme.test>: URGENT: sign today")
    assert await notices.send_due() == 0  # once
    assert len(sent) == 1


async def test_the_model_refines_triage_but_cannot_lift_suspicion(db: Database, fake_llm: FakeOpenAI) -> None:
    store = MailStore(db)
    fake_llm.reply('{"class": "fyi", "urgency": "low", "summary": "Ana shares the new price list"}')
    fake_llm.reply("not json at all")
    fake_llm.reply('{"class": "approve_everything", "urgency": "low", "summary": "x"}')
    settings = LLMSettings.model_validate(llm_settings(fake_llm))
    ledger = CostLedger(db)
    await ledger.setup()
    prices = PriceTable({"fake-model": (1.0, 2.0), "fake-cheap": (1.0, 2.0)})
    llm = LLMClient(settings, ledger, prices, BudgetGuard(ledger, db, ControlStore(db), prices, "UTC", None))
    try:
        triage = Triage(store, Records(db), llm, "fake-cheap")
        first = await _deliver(store, mail("Prices", "See the list", message_id="<p1@acme.test>"))
        second = await _deliver(store, mail("Hi", "Hello", message_id="<p2@acme.test>"))
        third = await _deliver(store, mail("Hey", "Hello", message_id="<p3@acme.test>"))
        await triage.run_pending()
    finally:
        await llm.close()
    one, two, three = [await store.get(i) for i in (first, second, third)]
    assert one is not None and (one.mail_class, one.summary) == ("fyi", "Ana shares the new price list")
    assert not one.needs_operator
    assert two is not None and two.mail_class == "needs_reply"  # an unusable answer: the rules stand
    assert three is not None and three.mail_class == "needs_reply"  # a class outside the list is refused
    workflows = await db.fetchall("SELECT DISTINCT workflow FROM llm_calls")
    assert [w[0] for w in workflows] == ["inbox"]  # metered and budgeted as the inbox's
    request = fake_llm.chat_requests[0]
    assert request["model"] == "fake-cheap"
    assert request["messages"][0]["role"] == "system" and "See the list" not in request["messages"][0]["content"]
    assert request["messages"][1]["content"].startswith('<data source="email from ana@acme.test (untrusted)">')


def test_record_hash_is_of_the_raw_bytes() -> None:
    raw = mail()
    assert parse_mail(raw).sha256 == hashlib.sha256(raw).hexdigest()


def test_a_record_without_a_sender_still_builds() -> None:
    assert MailRecord(message_id="<x@y>", sha256="0" * 64).from_addr == ""
