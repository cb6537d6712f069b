"""The console's Memory page (records with their versions, notes, Forget through /forget), the Timeline's
filters and export, Today's inbox and the live feed, over plain HTTP against the running product."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import time_machine

from bot.export import export_all
from memory.db import utcnow
from memory.mail import Location, MailRecord, MailStore
from memory.notes import NoteLedger, StoredNote
from memory.records import Records
from tests.bot.web.helpers import EMAIL, OPERATOR, Console, button, client, csrf_of, running, sign_in
from tests.conftest import number_in
from tests.fakes.polling import eventually_async

HOSTILE = "<script>alert(1)</script><img src=x onerror=alert(2)>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;"


async def test_memory_shows_records_with_every_version_and_escapes_notes(tmp_path: Path) -> None:
    async with running(tmp_path) as coo, client() as http:
        records = Records(coo.rt.db)
        ana = await records.upsert("contact", {"name": "Ana Ruiz", "emails": ["ana@example.org"]}, OPERATOR)
        await records.upsert("contact", {"company": "Acme", "phone": "+34 600"}, "coo", record_id=ana.id)
        deal = {"title": "December sponsor", "amount": 1200, "currency": "EUR", "contact_id": ana.id}
        await records.upsert("deal", deal, OPERATOR)
        await NoteLedger(coo.rt.db).add(StoredNote("n-1", "default", "remember:rec", HOSTILE, utcnow()))
        await sign_in(http, await coo.link())
        async with http.get(coo.base + "/memory") as page:
            overview = await page.text()
        async with http.get(f"{coo.base}/memory/contact/{ana.id}") as page:
            history = await page.text()
        async with http.get(coo.base + "/memory/contact/nosuch") as missing:
            assert missing.status == 404
        async with http.get(coo.base + "/memory/nosuchkind/x") as missing:
            assert missing.status == 404
    assert "Ana Ruiz (Acme)</a>" in overview and "(2 versions," in overview
    assert "December sponsor" in overview and "amount: 1,200.00 EUR" in overview
    assert "contact: Ana Ruiz" in overview
    assert ESCAPED in overview and "<script>alert" not in overview and "<img src=x" not in overview
    assert history.index("Version 2") < history.index("Version 1")  # newest first
    assert "company: <del>(none)</del> → <ins>Acme</ins>" in history
    assert f"by {OPERATOR} · event {ana.event_id}" in history


async def test_forget_asks_then_runs_the_chat_forget(tmp_path: Path) -> None:
    async with running(tmp_path, memory={"semantic": True}) as coo, client() as http:
        await coo.say("/remember Acme pays invoices net 45")
        ref = coo.chat.sent[-1].text.removeprefix("Remembered (").removesuffix(").")
        await sign_in(http, await coo.link())
        async with http.get(coo.base + "/memory") as page:
            assert f"/memory/forget?ref={ref}" in await page.text()
        async with http.get(f"{coo.base}/memory/forget?ref={ref}") as page:
            confirm = await page.text()
        assert "Forget this note?" in confirm and "Acme pays invoices net 45" in confirm
        csrf = await csrf_of(http, coo.base + "/memory")
        async with http.post(coo.base + "/memory/forget", data={"ref": ref}) as forged:
            assert forged.status == 403
        async with http.post(coo.base + "/memory/forget", data={"ref": ref, "csrf": "0" * 64}) as forged:
            assert forged.status == 403
        assert [n.ref for n in await NoteLedger(coo.rt.db).all()] == [ref]  # nothing changed
        async with http.post(coo.base + "/memory/forget", data={"ref": ref, "csrf": csrf}) as done:
            assert done.status == 200 and str(done.url).endswith("/memory")
            page = await done.text()
        assert f"Forgotten: {ref}." in page and "net 45" not in page
        async with http.post(coo.base + "/memory/forget", data={"ref": ref, "csrf": csrf}) as again:
            assert again.status == 200 and f"Nothing stored under {ref}." in await again.text()
        async with http.post(coo.base + "/memory/forget", data={"ref": "", "csrf": csrf}) as empty:
            assert empty.status == 400
        async with http.get(f"{coo.base}/memory/forget?ref={ref}") as gone:
            assert gone.status == 404
        await coo.say("/recall when does Acme pay?")
        recalled = coo.chat.sent[-1].text
        assert coo.rt.memory is not None and await coo.rt.memory.count("default") == 0
        forgotten = await coo.rt.db.events(kind="memory.forgotten")
        forged_events = await coo.rt.db.events(kind="web.forged")
        assert await NoteLedger(coo.rt.db).all() == []
    assert "net 45" not in recalled
    assert [(e.actor, e.payload) for e in forgotten] == [(OPERATOR, {"ref": ref})]
    assert [e.payload["path"] for e in forged_events] == ["/memory/forget", "/memory/forget"]


async def test_forget_needs_a_live_session(tmp_path: Path) -> None:
    async with running(tmp_path, web={"session_hours": 1}) as coo, client() as http, client() as stranger:
        await NoteLedger(coo.rt.db).add(StoredNote("n-1", "default", "remember:rec", "keep me", utcnow()))
        await sign_in(http, await coo.link())
        csrf = await csrf_of(http, coo.base + "/memory")
        async with stranger.post(coo.base + "/memory/forget", data={"ref": "n-1", "csrf": csrf}) as refused:
            assert refused.status == 401
        with time_machine.travel(utcnow() + timedelta(hours=1, minutes=1), tick=False):
            async with http.post(coo.base + "/memory/forget", data={"ref": "n-1", "csrf": csrf}) as expired:
                assert expired.status == 401
            async with http.get(coo.base + "/timeline/export") as expired:
                assert expired.status == 401
        notes = await NoteLedger(coo.rt.db).all()
    assert [n.text for n in notes] == ["keep me"]


async def _logged(coo: Console, kind: str) -> bool:
    return bool(await coo.rt.db.events(kind=kind))


async def _business(coo: Console) -> dict[str, str]:
    """Ana (a contact) with an email card approved in chat (and sent), and a goal with a task."""
    ana = await Records(coo.rt.db).upsert("contact", {"name": "Ana", "emails": ["ana@example.org"]}, OPERATOR)
    await coo.say(EMAIL)
    card = coo.last_card()
    await coo.press(button(card, "Approve"))
    await coo.smtp.wait_delivered(1)
    await eventually_async(lambda: _logged(coo, "action.sent"))
    coo.rt.controls.paused = True  # the task runner leaves the goal's task alone
    goal = await coo.rt.tasks.create_goal("Two sponsors for December", "rec:1001", OPERATOR, "active")
    spec = [{"key": "r", "title": "Find sponsors", "skill": "research", "instructions": "x"}]
    task, *_ = await coo.rt.tasks.add_run(goal.id, spec)
    await coo.rt.tasks.move(task.id, "todo", "ready")
    row = (await coo.rt.approval_ui.store.list_approvals())[0]
    return {"contact": ana.id, "goal": goal.id, "task": task.id, "approval": row.id, "digest": row.digest}


async def test_the_timeline_filters_by_contact_and_goal_and_shows_decisions(tmp_path: Path) -> None:
    async with running(tmp_path) as coo, client() as http:
        ids = await _business(coo)
        await sign_in(http, await coo.link())
        async with http.get(f"{coo.base}/timeline?contact={ids['contact']}") as page:
            ana = await page.text()
        async with http.get(f"{coo.base}/timeline?goal={ids['goal']}") as page:
            goal = await page.text()
        async with http.get(f"{coo.base}/timeline?kind=approval.decided") as page:
            decisions = await page.text()
    for kind in ("record.upserted", "approval.requested", "approval.decided", "action.sent"):
        assert f"<td>{kind}</td>" in ana, kind
    assert "<td>goal.created</td>" not in ana and "<td>web.login</td>" not in ana
    for kind in ("goal.created", "task.todo", "task.ready"):
        assert f"<td>{kind}</td>" in goal, kind
    assert "<td>approval.requested</td>" not in goal and "<td>record.upserted</td>" not in goal
    assert (
        f'<strong>Approved</strong> by {OPERATOR}: email to ana@example.org: "Proposal ready"'.replace('"', "&#34;")
        in decisions
    )
    assert f'<code class="digest">{ids["digest"]}</code>' in decisions


async def test_the_timeline_date_range_is_in_the_operators_zone(tmp_path: Path) -> None:
    # Auckland is UTC+13 in December: 11:30 UTC on the 5th is 00:30 on the 6th there.
    async with running(tmp_path, timezone="Pacific/Auckland") as coo, client() as http:
        for hour, text in ((10, "late on the 5th"), (11.5, "early on the 6th")):
            at = datetime(2026, 12, 5, tzinfo=UTC) + timedelta(hours=hour)
            with time_machine.travel(at, tick=False):
                await coo.rt.db.append_event("test.mark", "test", {"text": text})
        await sign_in(http, await coo.link())
        async with http.get(f"{coo.base}/timeline?kind=test.mark&from=2026-12-06&to=2026-12-06") as page:
            sixth = await page.text()
        async with http.get(f"{coo.base}/timeline?kind=test.mark&from=2026-12-01&to=2026-12-05") as page:
            before = await page.text()
    assert "early on the 6th" in sixth and "late on the 5th" not in sixth and "2026-12-06 00:30:00" in sixth
    assert "late on the 5th" in before and "early on the 6th" not in before


async def test_bad_filters_give_one_message_not_an_error(tmp_path: Path) -> None:
    async with running(tmp_path) as coo, client() as http:
        await sign_in(http, await coo.link())
        cases = {
            "from=2026-12-07&to=2026-12-01": "the range starts (2026-12-07) after it ends (2026-12-01)",
            "contact=nosuch": "there is no contact &#39;nosuch&#39;",
            "goal=%27%20OR%201%3D1%20--": "there is no goal &#34;&#39; OR 1=1 --&#34;",
            "from=31/12/2026": "&#39;31/12/2026&#39; is not a date (YYYY-MM-DD)",
            "before=-5": "&#39;-5&#39; is not a place in the log",
            "kind=" + "x" * 5000: "0 event(s)",
        }
        for query, expected in cases.items():
            async with http.get(f"{coo.base}/timeline?{query}") as page:
                text = await page.text()
                assert page.status == 200, query
                assert expected in text, (query, text[-2000:])
        async with http.get(f"{coo.base}/timeline?from=2026-12-07&to=2026-12-01&contact=x") as page:
            text = await page.text()
            assert text.count('class="note"') == 1  # one message naming both
        async with http.get(f"{coo.base}/timeline/export?contact=nosuch") as refused:
            assert refused.status == 400 and "Nothing was exported" in await refused.text()


async def test_export_is_the_filtered_view_as_coo_export_writes_it(tmp_path: Path) -> None:
    async with running(tmp_path) as coo, client() as http:
        ids = await _business(coo)
        await coo.say("our bank PIN is 7391 zebra")
        said = [e for e in await coo.rt.db.events(kind="message.in") if "7391" in e.payload["text"]]
        assert await coo.rt.db.redact_message(said[0].id)  # what /forget does: the export must keep it redacted
        await sign_in(http, await coo.link())
        async with http.get(f"{coo.base}/timeline/export?contact={ids['contact']}") as response:
            assert response.headers["Content-Disposition"].startswith('attachment; filename="coo-timeline-')
            ana = (await response.text()).splitlines()
        async with http.get(f"{coo.base}/timeline/export") as response:
            everything = (await response.text()).splitlines()
        exported = await coo.rt.db.events(kind="web.export")
    await export_all(tmp_path / "data", tmp_path / "export")
    written = (tmp_path / "export" / "events.jsonl").read_text(encoding="utf-8").splitlines()
    by_id = {json.loads(line)["id"]: line for line in written}
    kinds = ["record.upserted", "approval.requested", "approval.decided", "action.sent"]
    assert [json.loads(line)["kind"] for line in ana] == kinds
    assert all(by_id[json.loads(line)["id"]] == line for line in ana + everything)  # byte for byte
    last = json.loads(everything[-1])["id"]
    assert [json.loads(line)["id"] for line in everything] == [i for i in sorted(by_id) if i <= last]
    assert not number_in("7391", "\n".join(everything)) and any('"redacted": true' in line for line in everything)
    assert [e.payload for e in exported] == [
        {"filters": f"contact={ids['contact']}", "events": 4},
        {"filters": "", "events": len(everything)},
    ]


async def test_today_lists_mail_that_needs_the_operator_urgent_first(tmp_path: Path) -> None:
    async with running(tmp_path) as coo, client() as http:
        mail = MailStore(coo.rt.db)
        triage = (
            ("Lunch next week?", "needs_reply", "normal"),
            ("Contract expires " + HOSTILE, "needs_reply", "high"),
            ("Our newsletter", "newsletter", "low"),
            ("Re: your proposal", "waiting_on_us", "normal"),
        )
        for uid, (subject, mail_class, urgency) in enumerate(triage, start=1):
            record = MailRecord(f"<m{uid}@example.org>", f"h{uid}", "bob@example.org", "Bob", subject=subject)
            mail_id, _ = await mail.store(record, Location("INBOX", 1, uid))
            needs = mail_class != "newsletter"
            await mail.set_triage(mail_id, mail_class, urgency, f"summary {uid}", needs)
        await sign_in(http, await coo.link())
        async with http.get(coo.base + "/") as page:
            today = await page.text()
    assert "Mail that needs you (3)" in today and "Our newsletter" not in today
    urgent, newest, oldest = (today.index(s) for s in ("Contract expires", "Re: your proposal", "Lunch next week?"))
    assert urgent < newest < oldest
    assert '<span class="badge urgent">urgent</span> <strong>Contract expires ' + ESCAPED in today
    assert "needs a reply" in today and "in chat: /inbox 2" in today


async def test_the_live_feed_names_cards_when_a_card_is_decided_in_chat(tmp_path: Path) -> None:
    async with running(tmp_path) as coo, client() as http:
        await coo.say(EMAIL)
        card = coo.last_card()
        await sign_in(http, await coo.link())
        async with http.get(coo.base + "/changes") as stream:
            assert await stream.content.readuntil(b"\n\n") == b"retry: 3000\n\n"
            await coo.press(button(card, "Approve"))
            topics: set[str] = set()
            async with asyncio.timeout(10):  # a feed that missed the press fails here instead of hanging
                while "cards" not in topics:
                    event = (await stream.content.readuntil(b"\n\n")).decode()
                    if event.startswith("event: change"):
                        topics |= set(event.split("data: ", 1)[1].split())
    assert "cards" in topics


async def test_live_streams_end_when_the_console_stops(tmp_path: Path) -> None:
    async with running(tmp_path) as coo, client() as http:
        await sign_in(http, await coo.link())
        async with http.get(coo.base + "/changes") as stream:
            assert await stream.content.readuntil(b"\n\n") == b"retry: 3000\n\n"
            assert coo.rt.web is not None
            async with asyncio.timeout(10):  # an open stream must not hold the stop up
                await coo.rt.web.stop()
                rest = await stream.content.read()
    assert rest == b""


async def test_today_lists_follow_ups_due_by_the_end_of_the_operators_day(tmp_path: Path) -> None:
    from bot.web.followups import followups_due
    from memory.followups import FollowupStore, NewFollowup

    async with running(tmp_path) as coo, client() as http:
        store = FollowupStore(coo.rt.db)
        await store.setup()
        at = datetime(2026, 12, 6, 21, 30, tzinfo=UTC)  # 10:30 on the 7th in Auckland
        due = {
            "Chase Ana " + HOSTILE: at - timedelta(days=3),  # overdue
            "Call Bob": datetime(2026, 12, 7, 10, 59, tzinfo=UTC),  # 23:59 on the 7th in Auckland: today
            "Send the deck": datetime(2026, 12, 7, 11, 1, tzinfo=UTC),  # 00:01 on the 8th there: not today
        }
        for what, when in due.items():
            await store.add(NewFollowup(contact="Ana", what=what, due=when, source="manual"))
        closed = await store.add(NewFollowup(contact="Ana", what="Done already", due=at, source="manual"))
        await store.close(closed.id, "done")
        listed = await followups_due(coo.rt.db, "Pacific/Auckland", now=at)
        far_past = await store.add(
            NewFollowup(contact="Cy", what="Old promise", due=utcnow() - timedelta(days=400), source="manual")
        )
        far_future = await store.add(
            NewFollowup(contact="Cy", what="Next year", due=utcnow() + timedelta(days=400), source="manual")
        )
        await sign_in(http, await coo.link())
        async with http.get(coo.base + "/") as page:
            today = await page.text()
    assert [(f.what, f.overdue) for f in listed] == [("Chase Ana " + HOSTILE, True), ("Call Bob", False)]
    assert listed[1].due == "2026-12-07 23:59"
    assert "Follow-ups due today" in today and f'id="followup-{far_past.id}"' in today
    assert f'id="followup-{far_future.id}"' not in today and "Done already" not in today
    assert "Chase Ana " + ESCAPED in today and HOSTILE not in today
