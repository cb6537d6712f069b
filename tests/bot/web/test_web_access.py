"""The console's door (I6) over plain HTTP: nothing answers without a session begun from a one-time link,
a replayed link or a forged POST changes nothing, and logins and refusals are in the audit log."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import time_machine

from bot.settings import load_settings
from memory.db import utcnow
from tests.bot.web.helpers import EMAIL, OPERATOR, button, client, csrf_of, running, sign_in
from tests.conftest import ROOT, subprocess_env

PAGES = ("/", "/cards", "/timeline", "/spend", "/goals", "/changes")
NEW_PAGES = ("/memory", "/memory/contact/x", "/memory/forget?ref=n-1", "/timeline/export")


async def test_nothing_answers_without_a_session(tmp_path: Path) -> None:
    async with running(tmp_path) as coo, client() as http:
        await coo.say(EMAIL)
        card = coo.rt.approval_ui.store
        pending = await card.list_approvals("pending")
        for path in PAGES + NEW_PAGES:
            async with http.get(coo.base + path) as page:
                assert page.status == 401, path
                assert "Ana" not in await page.text()
        async with http.post(f"{coo.base}/cards/{pending[0].id}/decide", data={"verb": "approve"}) as post:
            assert post.status == 401
        async with http.get(coo.base + "/", cookies={"coo_session": "made-up"}) as page:
            assert page.status == 401
        assert [r.state for r in await card.list_approvals()] == ["pending"]
    assert coo.smtp.delivered == []


async def test_a_link_opens_one_session_and_never_a_second(tmp_path: Path) -> None:
    async with running(tmp_path) as coo, client() as http:
        link = await coo.link()
        done = await sign_in(http, link)
        assert done.status == 303
        cookie = done.headers["Set-Cookie"]
        assert "coo_session=" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
        assert "Secure" not in cookie  # plain http on loopback
        async with http.get(coo.base + "/") as page:
            assert page.status == 200 and "Needs you" in await page.text()
            assert page.headers["Referrer-Policy"] == "no-referrer"
            assert "default-src 'none'" in page.headers["Content-Security-Policy"]
        async with client() as other:  # the link again, from another browser: refused
            async with other.get(link) as replay:
                assert replay.status == 401
            token = link.rsplit("/", 1)[1]
            async with other.post(coo.base + "/login", data={"token": token}) as replay_post:
                assert replay_post.status == 401 and "Set-Cookie" not in replay_post.headers
            async with other.get(coo.base + "/cards") as page:
                assert page.status == 401
        logins = await coo.rt.db.events(kind="web.login")
        refused = await coo.rt.db.events(kind="web.login_refused")
    assert [e.actor for e in logins] == [OPERATOR]
    assert len(refused) == 1
    # The link is a key: the /web reply is kept out of the event log, and the token is stored hashed only.
    assert link.rsplit("/", 1)[1] not in (tmp_path / "data" / "coo.sqlite").read_bytes().decode("latin-1")


async def test_forged_posts_change_nothing(tmp_path: Path) -> None:
    async with running(tmp_path) as coo, client() as http:
        await coo.say(EMAIL)
        row = (await coo.rt.approval_ui.store.list_approvals("pending"))[0]
        await sign_in(http, await coo.link())
        form = {"verb": "approve", "nonce": row.nonce, "digest": row.digest}
        async with http.post(f"{coo.base}/cards/{row.id}/decide", data=form) as no_token:
            assert no_token.status == 403
        async with http.post(f"{coo.base}/cards/{row.id}/decide", data={**form, "csrf": "0" * 64}) as bad_token:
            assert bad_token.status == 403
        async with http.post(f"{coo.base}/cards/{row.id}/edit", data={**form, "text": "body: Pay me"}) as edit:
            assert edit.status == 403
        state = (await coo.rt.approval_ui.store.get(row.id)).state  # type: ignore[union-attr]
        forged = await coo.rt.db.events(kind="web.forged")
        csrf = await csrf_of(http, coo.base + "/cards")
        async with http.post(
            f"{coo.base}/cards/{row.id}/decide", data={**form, "csrf": csrf}, allow_redirects=False
        ) as real:
            assert real.status == 303
        await coo.smtp.wait_delivered(1)
    assert state == "pending"
    assert len(forged) == 3
    assert len(coo.smtp.delivered) == 1


async def test_an_expired_session_and_a_late_link_are_refused(tmp_path: Path) -> None:
    async with running(tmp_path, web={"session_hours": 1}) as coo, client() as http:
        late = await coo.link()
        await sign_in(http, await coo.link())
        async with http.get(coo.base + "/") as page:
            assert page.status == 200
        with time_machine.travel(utcnow() + timedelta(minutes=11), tick=False):
            async with client() as other, other.get(late) as expired_link:
                assert expired_link.status == 401
        with time_machine.travel(utcnow() + timedelta(hours=1, minutes=1), tick=False):
            async with http.get(coo.base + "/") as page:
                assert page.status == 401


async def test_a_removed_operator_is_shut_out_at_once(tmp_path: Path) -> None:
    async with running(tmp_path, operators="") as coo, client() as http:
        code = await coo.rt.operators.open_pairing("test", timedelta(minutes=5))
        await coo.say(f"/pair {code}", sender="telegram:2002", chat="2002")
        await coo.say("/web", sender="telegram:2002", chat="2002")
        link = re.search(r"(http://\S+/login/\S+)", coo.chat.sent[-1].text)
        assert link
        await sign_in(http, link.group(1))
        async with http.get(coo.base + "/") as page:
            assert page.status == 200
        assert await coo.rt.operators.remove("telegram:2002", "test")
        async with http.get(coo.base + "/") as page:
            assert page.status == 403


async def test_web_is_answered_only_in_the_private_chat(tmp_path: Path) -> None:
    async with running(tmp_path) as coo:
        await coo.say("/web", chat="-100200")  # a group: never a link there
        in_group = [m.text for m in coo.chat.sent if m.chat_id == "-100200"]
        links = await coo.rt.db.events(kind="web.link")
        await coo.say("/web")
        private = coo.chat.sent[-1].text
    assert in_group and not any("/login/" in text for text in in_group)
    assert links == []
    assert "/login/" in private


async def test_sign_out_ends_the_session(tmp_path: Path) -> None:
    async with running(tmp_path) as coo, client() as http:
        await sign_in(http, await coo.link())
        csrf = await csrf_of(http, coo.base + "/")
        async with http.post(coo.base + "/logout", data={"csrf": csrf}) as out:
            assert out.status == 200
        async with http.get(coo.base + "/", cookies={}) as page:
            assert page.status == 401


def test_coo_web_login_prints_a_working_link(tmp_path: Path) -> None:
    data = tmp_path / "data"
    env = subprocess_env(data, COO_WEB__LISTEN="127.0.0.1:8999")
    done = subprocess.run(
        [sys.executable, "-m", "bot.cli", "web-login"], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert re.search(r"web console: http://127\.0\.0\.1:8999/login/[A-Za-z0-9_-]{40,}", done.stdout)
    off = subprocess.run(
        [sys.executable, "-m", "bot.cli", "web-login"],
        env=subprocess_env(data, COO_WEB__LISTEN=""),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert off.returncode == 2 and "COO_WEB__LISTEN" in off.stderr


def test_web_settings(monkeypatch: object) -> None:
    import pytest

    mp = pytest.MonkeyPatch()
    try:
        mp.setenv("COO_WEB__PUBLIC_URL", "https://coo.example.org/")
        settings = load_settings(None)
        assert settings.web.base_url == "https://coo.example.org" and settings.web.secure
        mp.setenv("COO_WEB__LISTEN", "")
        assert not load_settings(None).web.enabled
        mp.setenv("COO_WEB__LISTEN", "nonsense")
        try:
            load_settings(None)
        except Exception as exc:
            assert "COO_WEB__LISTEN" in str(exc)
        else:
            raise AssertionError("a bad address was accepted")
    finally:
        mp.undo()


async def test_a_console_approve_of_a_card_decided_in_chat_is_one_effect(tmp_path: Path) -> None:
    async with running(tmp_path) as coo, client() as http:
        await coo.say(EMAIL)
        card = coo.last_card()
        row = (await coo.rt.approval_ui.store.list_approvals("pending"))[0]
        await sign_in(http, await coo.link())
        csrf = await csrf_of(http, coo.base + "/cards")
        await coo.press(button(card, "Approve"))
        await coo.smtp.wait_delivered(1)
        form = {"verb": "approve", "nonce": row.nonce, "digest": row.digest, "csrf": csrf}
        async with http.post(f"{coo.base}/cards/{row.id}/decide", data=form) as late:
            assert late.status == 409
            assert "changed since the page was loaded" in await late.text()
        decided = await coo.rt.db.events(kind="approval.decided")
    assert len(coo.smtp.delivered) == 1
    assert len(decided) == 1


async def test_the_timeline_filters_by_kind_and_day(tmp_path: Path) -> None:
    async with running(tmp_path) as coo, client() as http:
        await coo.say(EMAIL)
        await sign_in(http, await coo.link())
        async with http.get(coo.base + "/timeline?kind=approval.requested") as page:
            text = await page.text()
            assert text.count("<td>approval.requested</td>") == 1 and "<td>web.login</td>" not in text
        [login] = await coo.rt.db.events(kind="web.login")  # its own day, in the operator's zone: not today's date,
        today = login.at.astimezone(ZoneInfo(coo.rt.settings.timezone)).date()  # which may have turned since
        async with http.get(f"{coo.base}/timeline?date={today + timedelta(days=1)}") as page:
            assert "0 event(s)" in await page.text()
        async with http.get(f"{coo.base}/timeline?date={today}") as page:
            assert "<td>web.login</td>" in await page.text()
        async with http.get(coo.base + "/timeline?date=yesterday") as page:
            assert page.status == 200 and "is not a date (YYYY-MM-DD)" in await page.text()


async def test_live_pages_hear_of_a_change(tmp_path: Path) -> None:
    async with running(tmp_path) as coo, client() as http, client() as other:
        await coo.say(EMAIL)
        row = (await coo.rt.approval_ui.store.list_approvals("pending"))[0]
        await sign_in(http, await coo.link())
        await sign_in(other, await coo.link())
        csrf = await csrf_of(other, coo.base + "/cards")
        async with http.get(coo.base + "/changes") as stream:
            assert stream.headers["Content-Type"].startswith("text/event-stream")
            assert await stream.content.readuntil(b"\n\n") == b"retry: 3000\n\n"
            form = {"nonce": row.nonce, "digest": row.digest, "csrf": csrf, "text": "Hi Ana, the new text."}
            async with other.post(f"{coo.base}/cards/{row.id}/edit", data=form) as edited:
                assert edited.status == 200 and "the new text." in await edited.text()
            event, data = (await stream.content.readuntil(b"\n\n")).decode().strip().split("\n")
            assert event == "event: change" and "cards" in data.removeprefix("data: ").split()


async def test_a_bad_edit_keeps_the_card(tmp_path: Path) -> None:
    async with running(tmp_path) as coo, client() as http:
        await coo.say(EMAIL)
        row = (await coo.rt.approval_ui.store.list_approvals("pending"))[0]
        await sign_in(http, await coo.link())
        csrf = await csrf_of(http, coo.base + "/cards")
        form = {"nonce": row.nonce, "digest": row.digest, "csrf": csrf}
        async with http.post(f"{coo.base}/cards/{row.id}/edit", data={**form, "text": "to=not an address"}) as bad:
            assert bad.status == 400
        async with http.post(f"{coo.base}/cards/{row.id}/edit", data={**form, "text": "  "}) as empty:
            assert empty.status == 400 and "Write the correction first" in await empty.text()
        async with http.post(f"{coo.base}/cards/{row.id}/decide", data={**form, "verb": "explode"}) as odd:
            assert odd.status == 400
        async with http.post(f"{coo.base}/cards/nosuchcard/decide", data={**form, "verb": "approve"}) as missing:
            assert missing.status == 404
        still = await coo.rt.approval_ui.store.get(row.id)
    assert still is not None and still.state == "pending"
    assert coo.smtp.delivered == []


async def test_the_banner_shows_the_console_and_a_busy_port_is_survived(tmp_path: Path) -> None:
    from bot.status import banner

    async with running(tmp_path) as coo:
        assert f"web console: {coo.base}" in banner(coo.rt)
        port = coo.base.rsplit(":", 1)[1]
        async with running(tmp_path / "second", web={"listen": f"127.0.0.1:{port}"}) as second:
            assert second.rt.web is not None and not second.rt.web.serving
            assert "web console" not in banner(second.rt)
            await second.say("/web")  # the chat still works


async def test_hostile_card_text_is_shown_not_run(tmp_path: Path) -> None:
    async with running(tmp_path) as coo, client() as http:
        await coo.say("/email ana@example.org Hello | <script>alert(1)</script><img src=x onerror=alert(2)>")
        await sign_in(http, await coo.link())
        async with http.get(coo.base + "/cards") as page:
            text = await page.text()
        async with http.get(coo.base + "/timeline") as page:
            timeline = await page.text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;" in text
    assert "<script>alert" not in text and "<img src=x" not in text
    assert "<script>alert" not in timeline and "<img src=x" not in timeline


async def test_sessions_are_listed_and_revoked_from_the_machine(tmp_path: Path) -> None:
    from bot.web.links import manage_sessions

    async with running(tmp_path) as coo, client() as http:
        await sign_in(http, await coo.link())
        settings = coo.rt.settings
        listed = await manage_sessions(settings, None)
        assert len(listed) == 1 and OPERATOR in listed[0]
        session_id = listed[0].split()[0]
        assert await manage_sessions(settings, "zz") == ["no live session zz (see coo web-sessions)"]
        assert await manage_sessions(settings, session_id) == ["ended 1 session(s)"]
        async with http.get(coo.base + "/") as page:
            assert page.status == 401
        assert await manage_sessions(settings, None) == ["no live web console sessions"]
