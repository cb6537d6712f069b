"""The console in a real headless Chromium: sign in through the link, approve once, edit then approve, the
same card pressed in chat and clicked here, a stale second tab, the goal board's Retry, spend equal to /spend.
A stale page is one that does not update itself (JavaScript off, or its live stream gone): those two tests
run without JavaScript, since a live page would take the decided card's buttons away before the click.
Each page is photographed under the test's tmp dir."""

from __future__ import annotations

import re
from pathlib import Path

from memory.db import LLMCall
from tests.bot.web.browser import chromium, needs_chromium
from tests.bot.web.helpers import EMAIL, OPERATOR, button, running
from tests.fakes.polling import eventually, eventually_async

pytestmark = needs_chromium


async def test_sign_in_and_approve_sends_exactly_one_email(tmp_path: Path) -> None:
    async with running(tmp_path) as coo, chromium(tmp_path / "shots") as browser:
        await coo.say(EMAIL)
        row = (await coo.rt.approval_ui.store.list_approvals("pending"))[0]
        await browser.get(await coo.link())
        await browser.screenshot("login")
        await browser.click("#sign-in")
        assert "Needs you" in await browser.text()
        assert "To: ana@example.org · Subject: Proposal ready" in await browser.text()
        cookie = next(c for c in await browser.cookies() if c["name"] == "coo_session")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        await browser.screenshot("today")
        await browser.get(coo.base + "/cards")
        preview = await browser.text(f"#card-{row.id} .preview")
        assert "To: ana@example.org" in preview and "the proposal is ready." in preview
        await browser.screenshot("cards")
        await browser.click(f"#card-{row.id} button.approve")
        delivered = await coo.smtp.wait_delivered(1)
        await eventually_async(lambda: _outbox_state(coo, row.id, "sent"))
        await browser.get(coo.base + "/cards")
        assert f"Approved by {OPERATOR}" in await browser.text(f"#card-{row.id}")
        assert await browser.count(f"#card-{row.id} button.approve") == 0
        # The chat's copy of the card shows the outcome too.
        await eventually(lambda: any(m.edit_message_id and "Sent at" in m.text for m in coo.chat.sent))
        await browser.get(coo.base + "/timeline?kind=approval.decided")
        assert "approval.decided" in await browser.text("table")
        await browser.screenshot("timeline")
        decided = await coo.rt.db.events(kind="approval.decided")
        logins = await coo.rt.db.events(kind="web.login")
    assert len(coo.smtp.delivered) == 1
    assert delivered[0].body == "Hi Ana,\nthe proposal is ready.\nBest, Me"
    assert [(e.actor, e.payload["decision"]) for e in decided] == [(OPERATOR, "approved")]
    assert [e.actor for e in logins] == [OPERATOR]


async def test_edit_then_approve_sends_the_edited_body(tmp_path: Path) -> None:
    async with running(tmp_path) as coo, chromium(tmp_path / "shots") as browser:
        await coo.say(EMAIL)
        old = (await coo.rt.approval_ui.store.list_approvals("pending"))[0]
        await browser.get(await coo.link())
        await browser.click("#sign-in")
        await browser.get(coo.base + "/cards")
        await browser.click(f"#card-{old.id} summary", navigates=False)
        await browser.type(f"#edit-{old.id}", "Hi Ana,\nthe proposal is ready, prices included.\nBest, Me")
        await browser.screenshot("cards-edit")
        await browser.click(f"#card-{old.id} form.edit button")
        pending = await coo.rt.approval_ui.store.list_approvals("pending")
        assert len(pending) == 1 and pending[0].id != old.id
        new = pending[0]
        assert "prices included" in await browser.text(f"#card-{new.id} .preview")
        assert coo.smtp.delivered == []  # an edit is a new card, not an approval
        await browser.click(f"#card-{new.id} button.approve")
        delivered = await coo.smtp.wait_delivered(1)
        await eventually_async(lambda: _outbox_state(coo, new.id, "sent"))
        superseded = await coo.rt.approval_ui.store.get(old.id)
    assert len(coo.smtp.delivered) == 1
    assert delivered[0].body == "Hi Ana,\nthe proposal is ready, prices included.\nBest, Me"
    assert superseded is not None and superseded.state == "superseded"


async def test_pressed_in_chat_then_clicked_here_is_one_effect(tmp_path: Path) -> None:
    async with running(tmp_path) as coo, chromium(tmp_path / "shots", javascript=False) as browser:
        await coo.say(EMAIL)
        card = coo.last_card()
        row = (await coo.rt.approval_ui.store.list_approvals("pending"))[0]
        await browser.get(await coo.link())
        await browser.click("#sign-in")
        await browser.get(coo.base + "/cards")  # the page shows the card as pending
        await coo.press(button(card, "Approve"))
        await coo.smtp.wait_delivered(1)
        await eventually_async(lambda: _outbox_state(coo, row.id, "sent"))
        await browser.click(f"#card-{row.id} button.approve")  # the stale page's button
        refused = await browser.text()
        await browser.screenshot("cards-refused")
        decided = await coo.rt.db.events(kind="approval.decided")
    assert "changed since the page was loaded (approved by telegram:1001)" in refused
    assert len(coo.smtp.delivered) == 1
    assert len(decided) == 1


async def test_a_stale_second_tab_is_refused(tmp_path: Path) -> None:
    async with running(tmp_path) as coo, chromium(tmp_path / "shots", javascript=False) as browser:
        await coo.say(EMAIL)
        row = (await coo.rt.approval_ui.store.list_approvals("pending"))[0]
        await browser.get(await coo.link())
        await browser.click("#sign-in")
        await browser.get(coo.base + "/cards")
        first = await browser.new_tab()
        await browser.get(coo.base + "/cards")  # the second tab, same card
        await browser.switch(first)
        await browser.click(f"#card-{row.id} button.reject")
        rejected = await coo.rt.approval_ui.store.get(row.id)
        second = [h for h in browser._driver.window_handles if h != first][0]
        await browser.switch(second)
        await browser.click(f"#card-{row.id} button.approve")
        refused = await browser.text()
        after = await coo.rt.approval_ui.store.get(row.id)
        outbox = await coo.rt.approval_ui.store.outbox(row.id)
    assert rejected is not None and rejected.state == "rejected"
    assert "changed since the page was loaded (rejected" in refused
    assert after is not None and after.state == "rejected" and outbox is None
    assert coo.smtp.delivered == []


async def test_goal_board_shows_a_blocked_task_and_retry_works(tmp_path: Path) -> None:
    async with running(tmp_path) as coo, chromium(tmp_path / "shots") as browser:
        coo.rt.controls.paused = True  # the task runner leaves the retried task alone, so its state can be seen
        tasks = coo.rt.tasks
        goal = await tasks.create_goal("Two sponsors for the December issue", "rec:1001", OPERATOR, "active")
        spec = {"key": "research", "title": "Find ten likely sponsors", "skill": "research", "instructions": "x"}
        other = {"key": "draft", "title": "Draft the pitch", "skill": "drafting", "instructions": "y"}
        task, _ = await tasks.add_run(goal.id, [spec, other])
        for before, after in (("todo", "ready"), ("ready", "running")):
            await tasks.move(task.id, before, after)  # type: ignore[arg-type]
        await tasks.move(task.id, "running", "blocked", error="the search tool timed out three times")
        await browser.get(await coo.link())
        await browser.click("#sign-in")
        assert "Blocked: Find ten likely sponsors" in await browser.text()
        await browser.get(coo.base + "/goals")
        assert "Find ten likely sponsors" in await browser.text(".state-blocked")
        assert "Draft the pitch" in await browser.text(".state-todo")
        await browser.screenshot("goals")
        await browser.click(".state-blocked form button")
        assert "Retrying task Find ten likely sponsors." in await browser.text()
        assert await browser.count(".state-blocked .task") == 0
        retried = await tasks.task(task.id)
        events = await coo.rt.db.events(kind="task.ready")
    assert retried is not None and retried.state == "ready" and retried.error == ""
    assert events[-1].actor == OPERATOR


async def test_the_spend_page_totals_equal_spend(tmp_path: Path) -> None:
    async with running(tmp_path) as coo, chromium(tmp_path / "shots", width=1100, height=900) as browser:
        ledger = coo.rt.ledger
        for workflow, cost in (("chat", 0.42), ("chat", 0.08), ("goal-g1", 1.25), ("digest", 0.0031)):
            await ledger.record(LLMCall("rec:1001", workflow, "fake-model", 1000, 200, False, 900, "ok", cost))
        await coo.say("/budget set daily 5")
        await coo.say("/budget set chat 2/month")
        await coo.say("/spend")
        spend = coo.chat.sent[-1].text
        await browser.get(await coo.link())
        await browser.click("#sign-in")
        await browser.get(coo.base + "/spend")
        shown = dict(zip(await browser.attr("dd[data-period]", "data-period"), await _dds(browser), strict=True))
        page = await browser.text()
        await browser.screenshot("spend")
        assert await browser.count("svg.chart rect.bar") >= 14
    for period, label in (("day", "today"), ("week", "this week"), ("month", "this month")):
        line = re.search(rf"^- {label}: (\S+ \w+)", spend, re.M)
        assert line, spend
        assert shown[period].startswith(line.group(1)), (period, shown, spend)
    assert shown["day"] == "1.75 USD of 5.00 USD"
    detail = re.search(r"^- this month: .*\((.*)\)$", spend, re.M)
    assert detail
    for part in detail.group(1).split(", "):  # e.g. "chat 0.50 USD/2.00 USD"
        name, amount = part.split(" ", 1)
        assert re.search(rf"{re.escape(name)}\s+{re.escape(amount.split('/')[0])}", page), (part, page)


async def _dds(browser: object) -> list[str]:
    from tests.bot.web.browser import Browser

    assert isinstance(browser, Browser)
    count = await browser.count("dd[data-period]")
    return [await browser.text(f"dl.spend dd:nth-of-type({i + 1})") for i in range(count)]


async def _outbox_state(coo: object, approval_id: str, state: str) -> bool:
    from tests.bot.web.helpers import Console

    assert isinstance(coo, Console)
    row = await coo.rt.approval_ui.store.outbox(approval_id)
    return row is not None and row.state == state
