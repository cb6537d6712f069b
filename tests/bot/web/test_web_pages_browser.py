"""The new console pages in a real headless Chromium at a phone's size: a card decided in chat changes the
open Cards page in place (no reload), and the other way round; Memory with a record's versions and Forget
after its question; the Timeline's filters; Today's inbox; and the same forms with JavaScript off.
Each page is photographed under the test's tmp dir (docs/web-*.png come from there)."""

from __future__ import annotations

from pathlib import Path

from memory.mail import Location, MailRecord, MailStore
from memory.notes import NoteLedger
from memory.records import Records
from tests.bot.web.browser import Browser, chromium, needs_chromium
from tests.bot.web.helpers import EMAIL, OPERATOR, Console, button, running
from tests.fakes.polling import eventually

pytestmark = needs_chromium
FITS = "document.documentElement.scrollWidth <= window.innerWidth"


async def _signed_in(coo: Console, browser: Browser) -> None:
    await browser.get(await coo.link())
    await browser.click("#sign-in")


async def test_a_card_decided_in_chat_changes_the_open_cards_page_in_place(tmp_path: Path) -> None:
    async with running(tmp_path) as coo, chromium(tmp_path / "shots") as browser:
        await coo.say(EMAIL)
        card = coo.last_card()
        row = (await coo.rt.approval_ui.store.list_approvals("pending"))[0]
        await _signed_in(coo, browser)
        await browser.get(coo.base + "/cards")
        assert await browser.count(f"#card-{row.id} button.approve") == 1
        await browser.until("document.documentElement.dataset.listening === 'yes'")
        await browser.script("window.notReloaded = true")
        await coo.press(button(card, "Approve"))  # in chat, through the same path as a Telegram press
        await browser.until(f"document.querySelector('#card-{row.id} button.approve') === null")
        await browser.until(f"document.querySelector('#card-{row.id}').innerText.includes('Approved by {OPERATOR}')")
        assert await browser.script("return window.notReloaded === true")  # changed in place
        await browser.screenshot("cards-live")
        await coo.smtp.wait_delivered(1)
        await browser.until(f"document.querySelector('#card-{row.id}').innerText.includes('; sent')")
    assert len(coo.smtp.delivered) == 1


async def test_a_card_decided_in_the_console_changes_chat_and_the_other_tab(tmp_path: Path) -> None:
    async with running(tmp_path) as coo, chromium(tmp_path / "shots") as browser:
        await coo.say(EMAIL)
        row = (await coo.rt.approval_ui.store.list_approvals("pending"))[0]
        await _signed_in(coo, browser)
        await browser.get(coo.base + "/cards")
        await browser.script("window.notReloaded = true")
        first = await browser.new_tab()
        await browser.get(coo.base + "/cards")
        await browser.click(f"#card-{row.id} button.reject")
        await browser.switch(first)
        await browser.until(f"document.querySelector('#card-{row.id} button.approve') === null")
        assert await browser.script("return window.notReloaded === true")
        assert f"Rejected by {OPERATOR}" in await browser.text(f"#card-{row.id}")
        await eventually(lambda: any(m.edit_message_id and "Rejected by" in m.text for m in coo.chat.sent))
    assert coo.smtp.delivered == []


async def test_memory_timeline_and_today_read_on_a_phone(tmp_path: Path) -> None:
    async with running(tmp_path, memory={"semantic": True}) as coo, chromium(tmp_path / "shots") as browser:
        records = Records(coo.rt.db)
        ana = await records.upsert(
            "contact", {"name": "Ana Ruiz", "emails": ["ana@example.org"], "notes": "met at the fair"}, OPERATOR
        )
        await records.upsert("contact", {"company": "Acme Studio", "phone": "+34 600 100 200"}, "coo", ana.id)
        await records.upsert("contact", {"notes": "prefers email"}, OPERATOR, ana.id)
        await records.upsert("deal", {"title": "December issue sponsor", "contact_id": ana.id, "amount": 1200}, "coo")
        await coo.say("/remember Acme pays invoices net 45 <b>not bold</b>")
        await coo.say("/remember The studio closes in August")
        ref = (await NoteLedger(coo.rt.db).all())[0].ref
        await coo.say(EMAIL)
        await coo.press(button(coo.last_card(), "Approve"))
        await coo.smtp.wait_delivered(1)
        await coo.say("/email bob@example.org Friday works | Hi Bob,\nFriday at 10 works for me.\nBest, Me")
        mail = MailStore(coo.rt.db)
        for uid, (subject, urgency) in enumerate((("Lunch next week?", "normal"), ("Contract ends Friday", "high")), 1):
            mail_id, _ = await mail.store(
                MailRecord(f"<m{uid}@x>", f"h{uid}", "bob@example.org", "Bob Lee", subject=subject),
                Location("INBOX", 1, uid),
            )
            await mail.set_triage(mail_id, "needs_reply", urgency, f"Bob asks about {subject.lower()}", True)
        await _signed_in(coo, browser)
        assert await browser.script(f"return {FITS}")
        today = await browser.text("main")
        assert today.index("Contract ends Friday") < today.index("Lunch next week?")
        await browser.screenshot("today-inbox")

        await browser.click('nav a[href$="/memory"]')
        assert "<b>not bold</b>" in await browser.text(f"#note-{ref}")  # shown as text, not markup
        assert await browser.count("main b") == 0 and await browser.script(f"return {FITS}")
        await browser.screenshot("memory")
        await browser.click(f"#contact-{ana.id} a")
        assert await browser.count(".version") == 3
        assert "company: (none) → Acme Studio" in await browser.text("#version-2")
        assert await browser.script(f"return {FITS}")
        await browser.screenshot("memory-record")

        await browser.get(coo.base + "/memory")
        await browser.click(f"#note-{ref} a.forget")
        await browser.screenshot("memory-forget")
        await browser.click("#forget")
        assert f"Forgotten: {ref}." in await browser.text(".note")
        assert await browser.count(f"#note-{ref}") == 0

        await browser.get(coo.base + "/timeline")
        await browser.choose("select[name=contact]", ana.id)
        await browser.click("#filters button")
        assert f"contact={ana.id}" in browser.url
        shown = await browser.text("table")
        assert "approval.decided" in shown and "digest" in shown and "memory.remembered" not in shown
        assert await browser.script(f"return {FITS}")
        await browser.screenshot("timeline-filtered")
        forgotten = await coo.rt.db.events(kind="memory.forgotten")
    assert [(e.actor, e.payload["ref"]) for e in forgotten] == [(OPERATOR, ref)]


async def test_the_pages_work_without_javascript(tmp_path: Path) -> None:
    async with (
        running(tmp_path, memory={"semantic": True}) as coo,
        chromium(tmp_path / "shots", javascript=False) as browser,
    ):
        await coo.say("/remember Acme pays invoices net 45")
        ref = (await NoteLedger(coo.rt.db).all())[0].ref
        await coo.say(EMAIL)
        await _signed_in(coo, browser)
        await browser.get(coo.base + "/timeline")
        await browser.choose("#filters select[name=kind]", "approval.requested")
        await browser.click("#filters button")
        assert "kind=approval.requested" in browser.url
        assert "approval.requested" in await browser.text("table") and "web.login" not in await browser.text("table")
        await browser.get(coo.base + "/memory")
        await browser.click(f"#note-{ref} a.forget")
        await browser.click("#forget")
        assert f"Forgotten: {ref}." in await browser.text(".note")
        listened = await browser.script("return document.documentElement.dataset.listening || 'no'")
        notes = await NoteLedger(coo.rt.db).all()
    assert listened == "no"  # no script of the page ran: the pages above were plain forms
    assert notes == []


async def test_a_note_the_console_showed_stays_when_a_live_change_redraws_the_page(tmp_path: Path) -> None:
    async with running(tmp_path, memory={"semantic": True}) as coo, chromium(tmp_path / "shots") as browser:
        await coo.say("/remember The studio closes in August")
        ref = (await NoteLedger(coo.rt.db).all())[0].ref
        await _signed_in(coo, browser)
        await browser.get(coo.base + "/memory")
        await browser.click(f"#note-{ref} a.forget")
        await browser.click("#forget")
        assert f"Forgotten: {ref}." in await browser.text(".note")  # the server says it once
        await browser.until("document.documentElement.dataset.listening === 'yes'")
        await browser.script("window.notReloaded = true")
        await coo.say("/remember Acme pays net 45")  # a change in chat: the Memory page redraws itself
        await browser.until("document.querySelector('main').innerText.includes('Acme pays net 45')")
        assert await browser.script("return window.notReloaded === true")
        assert f"Forgotten: {ref}." in await browser.text(".note")
