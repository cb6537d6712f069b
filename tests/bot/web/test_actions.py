"""The console's POSTs built directly (tests/bot/web/console_parts.py): Approve, Reject and Edit go through the
approval UI like a press in chat, and only for the card exactly as the page showed it; Retry, Skip and Cancel goal
go through the goal service."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from memory.approvals import ApprovalRow
from memory.db import utcnow
from tests.bot.web.console_parts import Web, console_parts
from tests.fakes.openai_api import FakeOpenAI
from tests.graph.parts import OPERATOR, spec


@pytest.fixture
async def console(tmp_path: Path, fake_llm: FakeOpenAI) -> AsyncIterator[Web]:
    async with console_parts(tmp_path, fake_llm) as built:
        yield built


def form(row: ApprovalRow, **more: str) -> dict[str, str]:
    """The hidden fields of a card's form, as the page showed the card."""
    return {"nonce": row.nonce, "digest": row.digest, **more}


async def test_approve_and_reject_decide_the_card_and_go_back_to_the_cards(console: Web) -> None:
    one, two = await console.chat.email_card("One"), await console.chat.email_card("Two")
    approved = await console.post(f"/cards/{one.id}/decide", **form(one, verb="approve"))
    rejected = await console.post(f"/cards/{two.id}/decide", **form(two, verb="reject"))
    assert (approved.status, approved.headers["Location"]) == (303, "/cards")
    assert rejected.status == 303
    assert [await console.chat.state(one.id), await console.chat.state(two.id)] == ["approved", "rejected"]
    assert len(console.chat.wakes) == 1 and [e["decision"] for e in await console.events("approval.decided")] == [
        "approved",
        "rejected",
    ]


async def test_an_unknown_verb_is_refused_and_decides_nothing(console: Web) -> None:
    row = await console.chat.email_card()
    answer = await console.post(f"/cards/{row.id}/decide", **form(row, verb="approve-all"))
    assert answer.status == 400 and await console.chat.state(row.id) == "pending"


async def test_a_form_with_another_cards_nonce_or_an_unknown_id_is_not_found(console: Web) -> None:
    """A forged approve: card A's id with card B's nonce and digest (both pending, both the operator's)."""
    a, b = await console.chat.email_card("A"), await console.chat.email_card("B")
    forged = await console.post(f"/cards/{a.id}/decide", **form(b, verb="approve"))
    unknown = await console.post("/cards/nosuchcard/decide", **form(a, verb="approve"))
    assert (forged.status, unknown.status) == (404, 404)
    assert [await console.chat.state(a.id), await console.chat.state(b.id)] == ["pending", "pending"]
    assert console.chat.wakes == []


async def test_a_card_decided_since_the_page_loaded_is_refused_with_who_decided_it(console: Web) -> None:
    row = await console.chat.email_card()
    await console.post(f"/cards/{row.id}/decide", **form(row, verb="reject"))
    again = await console.post(f"/cards/{row.id}/decide", **form(row, verb="approve"))
    assert again.status == 409
    assert f"This card changed since the page was loaded (rejected by {OPERATOR})" in await again.text()
    assert await console.chat.state(row.id) == "rejected" and console.chat.wakes == []


async def test_an_edit_replaces_the_card_and_an_empty_or_unreadable_one_changes_nothing(console: Web) -> None:
    row = await console.chat.email_card("Proposal ready")
    empty = await console.post(f"/cards/{row.id}/edit", **form(row, text="   "))
    unreadable = await console.post(f"/cards/{row.id}/edit", **form(row, text="to=not an address"))
    assert (empty.status, unreadable.status) == (400, 400)
    assert "Write the correction first" in await empty.text()
    assert await console.chat.state(row.id) == "pending"

    edited = await console.post(f"/cards/{row.id}/edit", **form(row, text="subject=Proposal, final"))
    [new] = await console.chat.parts.approvals.store.list_approvals("pending")
    assert edited.status == 303 and await console.chat.state(row.id) == "superseded"
    assert new.action["subject"] == "Proposal, final"
    assert [e["approval_id"] for e in await console.events("web.edit")] == [row.id]


async def test_retry_of_a_task_that_is_not_blocked_changes_nothing_and_says_so(console: Web) -> None:
    goal, [ready] = await console.chat.parts.goal_with_tasks(spec("t1", "Find a sponsor"))
    answer = await console.post(f"/tasks/{ready.id}/retry", back="goal")
    assert (answer.status, answer.headers["Location"]) == (303, f"/goals/{goal.id}")
    [after] = await console.chat.parts.stores.tasks.tasks(goal.id)
    assert after.state == "ready" and await console.events("web.retry") == []
    assert console.services.channel.take(OPERATOR) == ["That task is not blocked any more; nothing was changed."]


async def test_cancel_stops_the_goal_once_and_goes_back_only_to_the_console(console: Web) -> None:
    goal, _ = await console.chat.parts.goal_with_tasks(spec("t1", "Find a sponsor"))
    first = await console.post(f"/goals/{goal.id}/cancel", back="https://evil.example/")
    second = await console.post(f"/goals/{goal.id}/cancel", back="goal")
    assert (first.headers["Location"], second.headers["Location"]) == ("/goals", f"/goals/{goal.id}")
    fresh = await console.chat.parts.stores.tasks.goal(goal.id)
    assert fresh is not None and fresh.status == "cancelled"
    assert [e["goal_id"] for e in await console.events("web.cancel")] == [goal.id]
    assert console.services.channel.take(OPERATOR) == [
        "Cancelled the goal find a sponsor.",
        "That goal is already cancelled; nothing was changed.",
    ]


@pytest.mark.parametrize("path", ["/tasks/t-none/retry", "/tasks/t-none/skip", "/goals/g-none/cancel"])
async def test_a_button_for_an_unknown_task_or_goal_is_not_found(console: Web, path: str) -> None:
    assert (await console.post(path)).status == 404 and console.chat.wakes == []


async def test_approve_of_a_card_past_its_expiry_expires_it_and_queues_nothing(console: Web) -> None:
    row = await console.chat.email_card()
    past = (utcnow() - timedelta(minutes=1)).isoformat()
    await console.chat.parts.stores.db.write("UPDATE approvals SET expires_at = ? WHERE id = ?", (past, row.id))
    answer = await console.post(f"/cards/{row.id}/decide", **form(row, verb="approve"))
    assert answer.status == 303 and await console.chat.state(row.id) == "expired"
    assert await console.chat.parts.approvals.store.outbox(row.id) is None and console.chat.wakes == []
