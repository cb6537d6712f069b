"""Goals end to end through the real runtime: plan card -> approve -> tasks run by skills -> an outreach card ->
approve -> one email at a real SMTP server -> verification -> the goal is done; edits, rejections, failures,
budgets, pause, two goals at once, progress messages and recurring runs."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.messages import OutboundMessage
from bot.running import Runtime
from bot.runtime import open_runtime
from memory.db import utcnow
from memory.grouped import on_thread
from tests.conftest import ManualClock, RecordingChannel, llm_settings, make_settings, operator_message
from tests.fakes.openai_api import FakeOpenAI, Scripted
from tests.fakes.polling import eventually, eventually_async
from tests.fakes.smtp_server import SMTPServer
from tests.graph.goals.goal_helpers import (
    Brain,
    email_then_finish,
    finish,
    plan,
    task,
    task_messages,
    task_title,
    text_of,
)

FAST = {"poll_s": 0.02, "progress_interval_s": 0, "retry_base_s": 0, "lease_s": 30}


@asynccontextmanager
async def goal_runtime(
    tmp_path: Path, fake: FakeOpenAI, smtp: SMTPServer | None = None, **overrides: Any
) -> AsyncIterator[tuple[Runtime, RecordingChannel]]:
    tasks = {**FAST, **overrides.pop("tasks", {})}
    llm = llm_settings(fake, **overrides.pop("llm", {}))
    extra = {"smtp": smtp.settings()} if smtp else {}
    clock = overrides.pop("clock", time.monotonic)  # the breakers' clock
    today = overrides.pop("today", utcnow)  # the calendar's
    settings = make_settings(tmp_path, llm=llm, tasks=tasks, outbox={"poll_s": 0.02}, **extra, **overrides)
    async with open_runtime(settings, console=False, clock=clock, today=today) as rt:
        chan = RecordingChannel("rec")
        rt.dispatcher.attach(chan)
        yield rt, chan


def press(message: OutboundMessage, label: str) -> Any:
    data = next(b.data for b in message.buttons if b.label.startswith(label))
    return operator_message("", kind="callback", data=data)


def cards(chan: RecordingChannel, title: str) -> list[OutboundMessage]:
    return [m for m in chan.sent if m.buttons and m.edit_message_id is None and m.text.startswith(title)]


async def goal_status(rt: Runtime, status: str) -> bool:
    goals = await rt.tasks.goals()
    return bool(goals) and goals[0].status == status


async def test_a_goal_runs_from_plan_card_to_report_with_one_email(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    brain = Brain(
        plans=[
            plan(
                task("t1", "research", "Find a sponsor in memory"),
                task("t2", "outreach", "Email the sponsor", after=("t1",)),
            )
        ],
        skills={
            "Email the sponsor": email_then_finish("ana@example.org", "Sponsor our December issue?", "Hi Ana, ...")
        },
    )
    fake_llm.responder = brain
    with SMTPServer() as smtp:
        async with goal_runtime(tmp_path, fake_llm, smtp) as (rt, chan):
            await rt.dispatcher.handle(operator_message("/goal get a sponsor for the December issue", kind="command"))
            [plan_card] = cards(chan, "Start this plan?")
            assert "1. [research] Find a sponsor in memory" in plan_card.text
            assert await rt.tasks.goals() and (await rt.tasks.goals())[0].status == "proposed"
            assert brain.asked == ["planner"]  # nothing ran before the approval
            await rt.dispatcher.handle(press(plan_card, "Approve"))
            await eventually_async(lambda: _has_card(chan, "Send this email?"), timeout=10, what="the outreach card")
            [email_card] = cards(chan, "Send this email?")
            assert (
                "Proposed for goal" in email_card.text and "by task t2 Email the sponsor (outreach)" in email_card.text
            )
            assert "Why: they sponsor newsletters" in email_card.text
            assert smtp.delivered == []
            await rt.dispatcher.handle(press(email_card, "Approve"))
            await eventually_async(lambda: goal_status(rt, "done"), timeout=10, what="the goal to be done")
            goal = (await rt.tasks.goals())[0]
            tasks = await rt.tasks.tasks(goal.id)
            attempts = await rt.tasks.attempts(tasks[1].id)
            events = [e.kind for e in await rt.db.events(limit=10_000) if e.kind.startswith("task.")]
    assert len(smtp.delivered) == 1 and smtp.delivered[0].rcpt_tos == ["ana@example.org"]
    assert [t.state for t in tasks] == ["done", "done"] and tasks[1].result == {
        "status": "done",
        "summary": "emailed ana@example.org",
        "artifacts": [],
    }
    assert [a.outcome for a in attempts] == ["waiting", "done"]  # it waited on its card, then finished
    assert any(step.get("tool") == "send_email" for step in attempts[0].trace)
    assert "task.waiting_approval" in events and events.count("task.done") == 2
    assert brain.asked.count("verify") == 1 and goal.report == "All done: the sponsor said yes."
    assert any(m.text.startswith(f"Goal {goal.id} is done.") for m in chan.sent)
    status_edits = [m for m in chan.sent if m.edit_message_id and m.text.startswith(f"Goal {goal.id}:")]
    assert status_edits and "Progress: 2/2 done" in status_edits[-1].text  # one message, edited in place


async def _has_card(chan: RecordingChannel, title: str) -> bool:
    return bool(cards(chan, title))


async def test_edit_replans_with_the_operators_words_and_reject_ends_the_goal(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    first = plan(task("t1", "research", "Look for sponsors"))
    second = plan(
        task("t1", "research", "Look for sponsors in fintech"), task("t2", "draft", "Draft a pitch", after=("t1",))
    )
    brain = Brain(plans=[first, second])
    fake_llm.responder = brain
    async with goal_runtime(tmp_path, fake_llm) as (rt, chan):
        await rt.dispatcher.handle(operator_message("/goal find sponsors", kind="command"))
        [card] = cards(chan, "Start this plan?")
        await rt.dispatcher.handle(press(card, "Edit"))
        await rt.dispatcher.handle(operator_message("only fintech companies, and draft a pitch too"))
        replanned = cards(chan, "Start this plan?")[-1]
        assert replanned is not card and "Draft a pitch" in replanned.text
        planner_request = [r for r in fake_llm.chat_requests if "You plan work" in r["messages"][0]["content"]][-1]
        assert "only fintech companies" in planner_request["messages"][0]["content"]
        await rt.dispatcher.handle(press(replanned, "Reject"))
        await eventually_async(lambda: goal_status(rt, "cancelled"), what="the goal to end")
        tasks = await rt.tasks.tasks((await rt.tasks.goals())[0].id)
    assert tasks == [] and brain.asked == ["planner", "planner"]


async def test_a_plan_that_cannot_run_is_refused_after_one_replan(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    cycle = plan(task("t1", "research", "A", after=("t2",)), task("t2", "research", "B", after=("t1",)))
    unknown = plan(task("t1", "astrology", "Read the stars"))
    fake_llm.responder = Brain(plans=[cycle, unknown])
    async with goal_runtime(tmp_path, fake_llm) as (rt, chan):
        await rt.dispatcher.handle(operator_message("/goal do the impossible", kind="command"))
        goal = (await rt.tasks.goals())[0]
    assert cards(chan, "Start this plan?") == []
    assert "could not make a plan that can run" in chan.sent[-1].text and "astrology" in chan.sent[-1].text
    planner_calls = [r for r in fake_llm.chat_requests if "You plan work" in r["messages"][0]["content"]]
    assert len(planner_calls) == 2 and "cycle" in str(planner_calls[1]["messages"][-1]["content"])
    assert goal.status == "failed"


async def test_a_task_failing_three_times_is_blocked_and_retry_works(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    failures = {"left": 3}

    def flaky(body: dict[str, Any]) -> Scripted:
        if failures["left"] > 0:
            failures["left"] -= 1
            return Scripted(status=500)  # the model fails this task's call
        return Scripted(tool_calls=[("finish_task", {"summary": "worked on the retry", "artifacts": []})])

    fake_llm.responder = Brain(plans=[plan(task("t1", "research", "Flaky research"))], skills={"Flaky research": flaky})
    async with goal_runtime(tmp_path, fake_llm, llm={"max_attempts": 1, "breaker_failures": 100}) as (rt, chan):
        await rt.dispatcher.handle(operator_message("/goal research something", kind="command"))
        await rt.dispatcher.handle(press(cards(chan, "Start this plan?")[0], "Approve"))
        await eventually_async(lambda: _task_state(rt, "blocked"), timeout=10, what="the task to be blocked")
        # The message follows the state change: wait for it too.
        await eventually(lambda: _blocked_notice(chan) is not None, timeout=10, what="the blocked notice")
        blocked = _blocked_notice(chan)
        assert blocked is not None
        assert [b.label for b in blocked.buttons] == ["Retry", "Skip", "Cancel goal"]
        task_row = (await rt.tasks.in_state("blocked"))[0]
        assert task_row.attempts == 3
        await rt.dispatcher.handle(press(blocked, "Retry"))
        await eventually_async(lambda: goal_status(rt, "done"), timeout=10, what="the goal to finish")
        attempts = await rt.tasks.attempts(task_row.id)
    assert [a.outcome for a in attempts] == ["retry", "retry", "retry", "done"]


def _blocked_notice(chan: Any) -> Any:
    return next((m for m in chan.sent if m.text.startswith("Task Flaky research of goal")), None)


async def _task_state(rt: Runtime, state: str) -> bool:
    return bool(await rt.tasks.in_state(state))


async def test_tasks_wait_out_a_model_outage_without_spending_their_attempts(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    """The model fails once and its breaker opens: while it is open no task is started (each would fail at
    once and count an attempt; three and it is blocked); once it half-opens, the work goes on."""
    failed = {"once": False}

    def down_once(body: dict[str, Any]) -> Scripted:
        if not failed["once"]:
            failed["once"] = True
            return Scripted(status=503)
        return Scripted(tool_calls=[("finish_task", {"summary": "found one", "artifacts": []})])

    fake_llm.responder = Brain(
        plans=[plan(task("t1", "research", "Find a sponsor"))], skills={"Find a sponsor": down_once}
    )
    clock = ManualClock()
    llm = {"max_attempts": 1, "breaker_failures": 1, "offline_cooldown_s": 30}
    async with goal_runtime(tmp_path, fake_llm, llm=llm, clock=clock) as (rt, chan):
        await rt.dispatcher.handle(operator_message("/goal find a sponsor", kind="command"))
        await rt.dispatcher.handle(press(cards(chan, "Start this plan?")[0], "Approve"))
        await eventually(lambda: rt.coordinator.llm.breaker.state == "open", timeout=10, what="the outage")
        await eventually_async(lambda: _task_state(rt, "ready"), timeout=10, what="the failed attempt's retry")
        for _ in range(5):  # runner passes during the outage
            await rt.task_runner.step()
        [waiting] = await rt.tasks.in_state("ready")
        assert waiting.attempts == 1  # only the attempt that met the failure
        clock.advance(31)  # the breaker half-opens
        await eventually_async(lambda: goal_status(rt, "done"), timeout=10, what="the goal to finish")
        attempts = await rt.tasks.attempts(waiting.id)
    assert [a.outcome for a in attempts] == ["retry", "done"]


async def test_two_goals_run_at_once(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    brain = Brain(
        plans=[plan(task("t1", "research", "First goal's task")), plan(task("t1", "research", "Second goal's task"))]
    )
    fake_llm.responder = brain
    async with goal_runtime(tmp_path, fake_llm) as (rt, chan):
        await rt.dispatcher.handle(operator_message("/goal the first thing", kind="command"))
        await rt.dispatcher.handle(operator_message("/goal the second thing", kind="command"))
        for card in cards(chan, "Start this plan?"):
            await rt.dispatcher.handle(press(card, "Approve"))
        await eventually_async(lambda: _all_done(rt, 2), timeout=10, what="both goals done")
    assert {"First goal's task", "Second goal's task"} <= set(brain.asked)


async def _all_done(rt: Runtime, count: int) -> bool:
    goals = await rt.tasks.goals()
    return len(goals) == count and all(g.status == "done" for g in goals)


async def test_pause_holds_the_runner(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    brain = Brain(plans=[plan(task("t1", "research", "Held task"))])
    fake_llm.responder = brain
    async with goal_runtime(tmp_path, fake_llm) as (rt, chan):
        await rt.dispatcher.handle(operator_message("/goal something", kind="command"))
        card = cards(chan, "Start this plan?")[0]
        await rt.dispatcher.handle(operator_message("/pause", kind="command"))
        await rt.dispatcher.handle(press(card, "Approve"))  # approved while paused: nothing starts
        await rt.task_runner.step()
        goal = (await rt.tasks.goals())[0]
        assert goal.status == "proposed" and await rt.tasks.tasks(goal.id) == [] and "Held task" not in brain.asked
        await rt.dispatcher.handle(operator_message("/resume", kind="command"))
        await eventually_async(lambda: goal_status(rt, "done"), timeout=10, what="the goal after /resume")


async def test_a_goal_budget_stops_the_task_before_its_call(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    brain = Brain(plans=[plan(task("t1", "research", "Expensive research"))])
    fake_llm.responder = brain
    async with goal_runtime(tmp_path, fake_llm, llm={"prices": {"fake-model": [1000.0, 2000.0]}}) as (rt, chan):
        await rt.dispatcher.handle(operator_message("/goal research something", kind="command"))
        goal = (await rt.tasks.goals())[0]
        await rt.dispatcher.handle(operator_message(f"/budget set {goal.workflow} 0.5/day", kind="command"))
        await rt.dispatcher.handle(press(cards(chan, "Start this plan?")[0], "Approve"))
        await eventually_async(lambda: _task_state(rt, "blocked"), timeout=10, what="the task to be blocked")
        blocked = (await rt.tasks.in_state("blocked"))[0]
    assert "budget reached" in blocked.error and "Expensive research" not in brain.asked  # no call was made


async def test_a_budget_the_operator_names_is_on_the_plan_card_and_caps_the_goal(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    brain = Brain(plans=[plan(task("t1", "research", "Costly research"), budget=0.5)])
    fake_llm.responder = brain
    async with goal_runtime(tmp_path, fake_llm, llm={"prices": {"fake-model": [1000.0, 2000.0]}}) as (rt, chan):
        await rt.dispatcher.handle(operator_message("/goal research it, spend at most 0.50", kind="command"))
        [card] = cards(chan, "Start this plan?")
        assert "Budget: 0.50 USD of model spend" in card.text
        await rt.dispatcher.handle(press(card, "Approve"))
        await eventually_async(lambda: _task_state(rt, "blocked"), timeout=10, what="the task to be blocked")
        goal = (await rt.tasks.goals())[0]
        blocked = (await rt.tasks.in_state("blocked"))[0]
    assert goal.budget == 0.5
    assert "budget reached" in blocked.error and "Costly research" not in brain.asked  # stopped before its call


async def test_offline_goal_is_recorded_and_says_planning_needs_a_model(tmp_path: Path) -> None:
    async with open_runtime(make_settings(tmp_path), console=False) as rt:
        chan = RecordingChannel("rec")
        rt.dispatcher.attach(chan)
        await rt.dispatcher.handle(operator_message("/goal get two sponsors", kind="command"))
        await rt.dispatcher.handle(operator_message("/goals", kind="command"))
        goals = await rt.tasks.goals()
    assert len(goals) == 1 and goals[0].status == "planning"
    assert "Planning it needs a model" in chan.sent[0].text and f"/goal plan {goals[0].id}" in chan.sent[0].text
    assert chan.sent[1].text.startswith(f"{goals[0].id} [planning] get two sponsors")


async def test_approve_all_decides_each_waiting_card_on_its_own(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    def two_emails(body: dict[str, Any]) -> Scripted:
        text = "\n".join(str(m.get("content") or "") for m in body["messages"])
        if "): sent" in text:
            return Scripted(tool_calls=[("finish_task", {"summary": "both emailed", "artifacts": []})])
        if "a card was shown" in text:
            return Scripted(content="waiting")
        return Scripted(
            tool_calls=[
                ("send_email", {"to": ["ana@example.org"], "subject": "Hi Ana", "body": "Hello Ana", "reason": "r"}),
                ("send_email", {"to": ["bo@example.org"], "subject": "Hi Bo", "body": "Hello Bo", "reason": "r"}),
            ]
        )

    fake_llm.responder = Brain(plans=[plan(task("t1", "outreach", "Email both"))], skills={"Email both": two_emails})
    with SMTPServer() as smtp:
        async with goal_runtime(tmp_path, fake_llm, smtp) as (rt, chan):
            await rt.dispatcher.handle(operator_message("/goal email both", kind="command"))
            await rt.dispatcher.handle(press(cards(chan, "Start this plan?")[0], "Approve"))
            await eventually_async(lambda: _card_count(chan, 2), timeout=10, what="two email cards")
            goal = (await rt.tasks.goals())[0]
            rt.goals.board.touch(goal.id)
            await rt.goals.board.flush_progress(utcnow(), force=True)
            status = next(m for m in reversed(chan.sent) if any(b.label == "Approve all 2" for b in m.buttons))
            assert status.text.startswith(f"Goal {goal.id}:") and "Waiting on you: 2 cards" in status.text
            await rt.dispatcher.handle(press(status, "Approve all 2"))
            await smtp.wait_delivered(2)
            await eventually_async(lambda: goal_status(rt, "done"), timeout=10, what="the goal")
    assert sorted(d.rcpt_tos[0] for d in smtp.delivered) == ["ana@example.org", "bo@example.org"]


async def _card_count(chan: RecordingChannel, count: int) -> bool:
    return len(cards(chan, "Send this email?")) >= count


async def test_a_recurring_goal_runs_once_per_slot_and_once_after_downtime(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    from datetime import timedelta

    from croniter import croniter

    brain = Brain(plans=[plan(task("t1", "draft", "Draft the newsletter"), schedule="0 9 * * 1")])
    fake_llm.responder = brain
    wednesday = datetime(2031, 5, 14, 12, 0, tzinfo=UTC)  # the calendar's now, whatever the real date
    async with goal_runtime(tmp_path, fake_llm, today=lambda: wednesday) as (rt, chan):
        await rt.dispatcher.handle(operator_message("/goal every Monday at 9, draft the newsletter", kind="command"))
        card = cards(chan, "Start this plan?")[0]
        assert "Runs: on schedule 0 9 * * 1" in card.text
        await rt.dispatcher.handle(press(card, "Approve"))
        await eventually_async(lambda: goal_status(rt, "active"), what="the goal armed")
        goal = (await rt.tasks.goals())[0]
        assert goal.runs == 0  # approved once; nothing runs before its time
        # The first Monday 09:00 slot after the goal was set, on the goal's own clock (never a fixed date).
        monday = croniter("0 9 * * 1", goal.created_at).get_next(datetime) + timedelta(minutes=5)
        await rt.goals.sweep(monday)
        await rt.goals.sweep(monday + timedelta(minutes=1))  # the same slot: no second run
        assert (await rt.tasks.goal(goal.id)).runs == 1  # type: ignore[union-attr]
        await eventually_async(lambda: _verified(rt, goal.id, 1), timeout=10, what="run 1 verified")
        three_weeks_later = monday + timedelta(weeks=3, hours=5)  # the process was down for three Mondays
        await rt.goals.sweep(three_weeks_later)
        await rt.goals.sweep(three_weeks_later + timedelta(minutes=5))
        runs = (await rt.tasks.goal(goal.id)).runs  # type: ignore[union-attr]
        await rt.dispatcher.handle(operator_message("/goals", kind="command"))
    assert runs == 2  # the missed slots are run once, not three times
    overview = next(m.text for m in reversed(chan.sent) if m.edit_message_id is None and m.text.startswith(goal.id))
    assert "[active]" in overview and "next run 2031-05-19 09:00 UTC" in overview  # the Monday after the calendar's now


async def _verified(rt: Runtime, goal_id: str, run: int) -> bool:
    goal = await rt.tasks.goal(goal_id)
    return goal is not None and goal.verified >= run


async def test_progress_edits_are_rate_limited(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    from datetime import timedelta

    fake_llm.responder = Brain(plans=[plan(task("t1", "research", "Some research"))])
    async with goal_runtime(tmp_path, fake_llm, tasks={"progress_interval_s": 3600}) as (rt, chan):
        await rt.dispatcher.handle(operator_message("/goal research", kind="command"))
        await rt.dispatcher.handle(press(cards(chan, "Start this plan?")[0], "Approve"))
        await eventually_async(lambda: goal_status(rt, "done"), timeout=10, what="the goal")
        goal = (await rt.tasks.goals())[0]
        posts = [m for m in chan.sent if m.text.startswith(f"Goal {goal.id}:")]
        now = utcnow() + timedelta(seconds=10)
        rt.goals.board.touch(goal.id)
        held = await rt.goals.board.flush_progress(now)  # within the interval: held back
        rt.goals.board.touch(goal.id)
        later = await rt.goals.board.flush_progress(now + timedelta(hours=2))
    assert len(posts) == 1 and held == 0 and later == 1  # many transitions, one message until the interval passed


class PressBeforeSendReturns(RecordingChannel):
    """A chat where the operator taps Approve on the email card before the platform's answer to
    the send has come back (a fast thumb, a slow network)."""

    def __init__(self) -> None:
        super().__init__("rec")
        self.runtime: Runtime | None = None

    async def send(self, message: OutboundMessage) -> list[str]:
        ids = await super().send(message)
        if message.edit_message_id is None and message.text.startswith("Send this email?"):
            assert self.runtime is not None
            await self.runtime.dispatcher.handle(press(message, "Approve"))
        return ids


async def test_a_press_that_arrives_before_the_card_send_returns_counts(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    outreach = email_then_finish("ana@example.org", "Sponsor us?", "Hi Ana")
    fake_llm.responder = Brain(plans=[plan(task("t1", "outreach", "Email Ana"))], skills={"Email Ana": outreach})
    with SMTPServer() as smtp:
        settings = make_settings(
            tmp_path, llm=llm_settings(fake_llm), tasks=FAST, outbox={"poll_s": 0.02}, smtp=smtp.settings()
        )
        async with open_runtime(settings, console=False) as rt:
            chan = PressBeforeSendReturns()
            chan.runtime = rt
            rt.dispatcher.attach(chan)
            await rt.dispatcher.handle(operator_message("/goal email Ana", kind="command"))
            await rt.dispatcher.handle(press(cards(chan, "Start this plan?")[0], "Approve"))
            await smtp.wait_delivered(1, timeout=10)
            await eventually_async(lambda: goal_status(rt, "done"), timeout=10, what="the goal to be done")
            events = [e.kind for e in await rt.db.events(limit=10_000)]
    assert "approval.foreign" not in events and len(smtp.delivered) == 1


async def test_the_planner_is_offered_only_skills_whose_connectors_are_configured(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    fake_llm.responder = Brain(plans=[plan(task("t1", "research", "Look around"))])
    async with goal_runtime(tmp_path, fake_llm) as (rt, _):  # no SMTP, Stripe or publishing configured
        await rt.dispatcher.handle(operator_message("/goal invoice Acme and email Ana", kind="command"))
    prompt = next(r for r in fake_llm.chat_requests if "You plan work" in r["messages"][0]["content"])
    offered = prompt["messages"][0]["content"]
    assert "- research:" in offered and "- draft:" in offered and "- records:" in offered
    assert "- billing:" not in offered and "- outreach:" not in offered and "- publish:" not in offered


async def test_a_task_retried_after_a_failure_waits_on_the_card_it_proposed_before(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    """The first attempt proposes an email, then its next model call fails: the task is retried from scratch and
    its model words the email differently. The retry is told about the first card and waits on it; no second
    card, so approving everything that waits sends one email (I7)."""
    seen = {"failed": False, "told": ""}

    def outreach(body: dict[str, Any]) -> Scripted:
        text = text_of(body)
        if "): sent" in text:
            return finish("emailed ana@example.org")
        if "a card was shown to the operator" in text or "proposed earlier" in text:
            if not seen["failed"]:
                seen["failed"] = True
                return Scripted(status=500)  # the attempt fails after its proposal
            seen["told"] = text
            return Scripted(content="waiting for the operator")
        wording = "Hello Ana, would you sponsor our issue?" if seen["failed"] else "Hi Ana, would you sponsor us?"
        args = {"to": ["ana@example.org"], "subject": "Sponsor?", "body": wording, "reason": "a sponsor"}
        return Scripted(tool_calls=[("send_email", args)])

    fake_llm.responder = Brain(plans=[plan(task("t1", "outreach", "Email Ana"))], skills={"Email Ana": outreach})
    llm = {"max_attempts": 1, "breaker_failures": 100}
    with SMTPServer() as smtp:
        async with goal_runtime(tmp_path, fake_llm, smtp, llm=llm) as (rt, chan):
            await rt.dispatcher.handle(operator_message("/goal email Ana", kind="command"))
            await rt.dispatcher.handle(press(cards(chan, "Start this plan?")[0], "Approve"))
            await eventually_async(lambda: _task_state(rt, "waiting_approval"), timeout=10, what="the task to wait")
            goal = (await rt.tasks.goals())[0]
            waiting = await rt.goals.board.waiting_cards(goal)
            [task_row] = await rt.tasks.in_state("waiting_approval")
            rt.goals.board.touch(goal.id)
            await rt.goals.board.flush_progress(utcnow(), force=True)
            status = next(m for m in reversed(chan.sent) if m.text.startswith(f"Goal {goal.id}:"))
            await rt.dispatcher.handle(press(status, "Approve all"))
            await eventually_async(lambda: goal_status(rt, "done"), timeout=10, what="the goal")
            attempts = await rt.tasks.attempts(task_row.id)
    assert len(waiting) == 1 and task_row.waiting_on == (waiting[0].id,)
    assert len(cards(chan, "Send this email?")) == 1 and "Hi Ana, would you sponsor us?" in waiting[0].action["body"]
    assert len(smtp.delivered) == 1 and "proposed earlier" in seen["told"]
    assert [a.outcome for a in attempts] == ["retry", "waiting", "done"]


async def test_after_a_rejection_the_task_may_propose_a_corrected_email(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    """A rejected card is decided and the task learns it: the next attempt is a new stretch of the task, so
    its corrected email is a new card, not "proposed earlier"."""

    def outreach(body: dict[str, Any]) -> Scripted:
        text = text_of(body)
        if "): sent" in text:
            return finish("emailed ana@example.org")
        if "a card was shown to the operator" in text or "proposed earlier" in text:
            return Scripted(content="waiting for the operator")
        wording = "Hi Ana, shorter this time." if "): rejected" in text else "Hi Ana, would you sponsor us?"
        return Scripted(
            tool_calls=[
                ("send_email", {"to": ["ana@example.org"], "subject": "Sponsor?", "body": wording, "reason": "r"})
            ]
        )

    fake_llm.responder = Brain(plans=[plan(task("t1", "outreach", "Email Ana"))], skills={"Email Ana": outreach})
    with SMTPServer() as smtp:
        async with goal_runtime(tmp_path, fake_llm, smtp) as (rt, chan):
            await rt.dispatcher.handle(operator_message("/goal email Ana", kind="command"))
            await rt.dispatcher.handle(press(cards(chan, "Start this plan?")[0], "Approve"))
            await eventually_async(lambda: _card_count(chan, 1), timeout=10, what="the first email card")
            await rt.dispatcher.handle(press(cards(chan, "Send this email?")[0], "Reject"))
            await eventually_async(lambda: _card_count(chan, 2), timeout=10, what="the corrected email card")
            await rt.dispatcher.handle(press(cards(chan, "Send this email?")[1], "Approve"))
            await smtp.wait_delivered(1)
            await eventually_async(lambda: goal_status(rt, "done"), timeout=10, what="the goal")
    assert len(smtp.delivered) == 1 and "shorter this time" in smtp.delivered[0].body


async def test_a_resumed_task_is_told_what_it_sent_without_a_card(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    """Under "relaxed" a task's email to a known address goes out without a card, its email to a new one waits on
    a card. Once that card is decided the task starts over with notes of what was decided: the email sent without
    a card is in them too, so a model that only knew about the card does not write to Ana again (I7)."""
    prompts: list[str] = []

    def email(to: str, words: str) -> tuple[str, dict[str, Any]]:
        return ("send_email", {"to": [to], "subject": "Sponsor?", "body": words, "reason": "a sponsor"})

    def outreach(body: dict[str, Any]) -> Scripted:
        prompt = str(task_messages(body)[0].get("content") or "")
        replies = "\n".join(str(m.get("content") or "") for m in task_messages(body)[1:])
        if "a card was shown to the operator" in replies:
            return Scripted(content="waiting for the operator")
        if replies:
            return finish("emailed")
        prompts.append(prompt)
        if "): sent" not in prompt:
            return Scripted(tool_calls=[email("ana@example.org", "Hi Ana"), email("bo@example.org", "Hi Bo")])
        if "ana@example.org" in prompt:
            return finish("emailed Ana and Bo")
        return Scripted(tool_calls=[email("ana@example.org", "Hello Ana, in other words")])  # it thinks Ana waits

    fake_llm.responder = Brain(plans=[plan(task("t1", "outreach", "Email both"))], skills={"Email both": outreach})
    with SMTPServer() as smtp:
        async with goal_runtime(tmp_path, fake_llm, smtp, approvals={"risk_tolerance": "relaxed"}) as (rt, chan):
            await rt.dispatcher.handle(operator_message("/email ana@example.org Hello | A first note", kind="command"))
            await rt.dispatcher.handle(press(cards(chan, "Send this email?")[0], "Approve"))
            await smtp.wait_delivered(1)  # Ana is known now
            await rt.dispatcher.handle(operator_message("/goal email the sponsors", kind="command"))
            await rt.dispatcher.handle(press(cards(chan, "Start this plan?")[0], "Approve"))
            await eventually_async(lambda: _card_count(chan, 2), timeout=10, what="the card for Bo")
            await rt.dispatcher.handle(press(cards(chan, "Send this email?")[1], "Approve"))
            await eventually_async(lambda: goal_status(rt, "done"), timeout=10, what="the goal")
            emails = [r for r in await rt.approvals.store.list_approvals() if r.kind == "email.send"]
    assert len(emails) == 3  # the /email, the task's email to Ana (no card) and its email to Bo
    assert len(prompts) == 2 and 'email to ana@example.org: "Sponsor?"' in prompts[1]


@pytest.mark.parametrize("tolerance", ["relaxed", "balanced"])
async def test_a_cancelled_goals_running_task_proposes_nothing(
    tmp_path: Path, fake_llm: FakeOpenAI, tolerance: str
) -> None:
    """The operator cancels a goal while its outreach task waits for the model. The model then asks to email
    Ana: under "relaxed" (Ana is known) that would go out without a card, under "balanced" it would be a fresh
    card for a cancelled goal. Neither happens: the attempt proposes nothing and its task is cancelled."""

    def outreach(body: dict[str, Any]) -> Scripted:
        if len(task_messages(body)) > 1:  # told what became of its request
            return finish("stopped")
        args = {"to": ["ana@example.org"], "subject": "Sponsor?", "body": "Hi", "reason": "a sponsor"}
        return Scripted(tool_calls=[("send_email", args)])

    brain = Brain(plans=[plan(task("t1", "outreach", "Email the sponsor"))], skills={"Email the sponsor": outreach})
    fake_llm.responder = brain
    with SMTPServer() as smtp:
        async with goal_runtime(tmp_path, fake_llm, smtp, approvals={"risk_tolerance": tolerance}) as (rt, chan):
            await rt.dispatcher.handle(operator_message("/email ana@example.org Hello | Hi Ana", kind="command"))
            await rt.dispatcher.handle(press(cards(chan, "Send this email?")[0], "Approve"))
            await smtp.wait_delivered(1)  # Ana is known now
            await rt.dispatcher.handle(operator_message("/goal get a sponsor", kind="command"))
            fake_llm.gate = asyncio.Event()  # the task's model call is held until the goal is cancelled
            try:
                await rt.dispatcher.handle(press(cards(chan, "Start this plan?")[0], "Approve"))
                await eventually(lambda: _asked_for(fake_llm, "Email the sponsor"), timeout=10, what="the task's call")
                goal = (await rt.tasks.goals())[0]
                await rt.dispatcher.handle(operator_message(f"/goal cancel {goal.id}", kind="command"))
            finally:
                fake_llm.gate.set()
            await eventually_async(lambda: _attempt_over(rt, goal.id), timeout=10, what="the attempt to end")
            [task_row] = await rt.tasks.tasks(goal.id)
            emails = [r for r in await rt.approvals.store.for_goal(goal.id) if r.kind == "email.send"]
    assert task_row.state == "cancelled"
    assert emails == []  # neither queued without a card nor waiting on one
    assert len(smtp.delivered) == 1 and len(cards(chan, "Send this email?")) == 1  # only the /email before


async def test_a_failed_heartbeat_does_not_let_the_lease_lapse_while_the_task_runs(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    """One lease extension fails (a real SQLite error, raised once by a trigger): the next beat extends the
    lease, so the task is not taken for abandoned and run a second time while its attempt goes on."""
    fake_llm.responder = Brain(plans=[plan(task("t1", "research", "Find a sponsor"))])
    async with goal_runtime(tmp_path, fake_llm, tasks={"lease_s": 3}) as (rt, chan):  # a beat each second
        await rt.dispatcher.handle(operator_message("/goal find a sponsor", kind="command"))
        fake_llm.gate = asyncio.Event()  # the task's model call is held: the attempt goes on
        try:
            await rt.dispatcher.handle(press(cards(chan, "Start this plan?")[0], "Approve"))
            await eventually(lambda: _asked_for(fake_llm, "Find a sponsor"), timeout=10, what="the task's call")
            failed = threading.Event()

            def fail_once() -> int:  # on SQLite's thread; Python's memory outlives the rolled-back write
                first = not failed.is_set()
                failed.set()
                return int(first)

            await on_thread(rt.db.connection, lambda conn: conn.create_function("fail_once", 0, fail_once))
            await rt.db.script(
                "CREATE TEMP TRIGGER one_failed_beat BEFORE UPDATE OF lease_until ON tasks WHEN fail_once()"
                " BEGIN SELECT RAISE(FAIL, 'disk I/O error'); END;"
            )
            await eventually(failed.is_set, timeout=10, what="a failed lease extension")
            [running] = await rt.tasks.in_state("running")
            assert running.lease_until is not None
            failed_at = running.lease_until
            await eventually_async(lambda: _lease_after(rt, failed_at), timeout=10, what="the lease extended again")
        finally:
            fake_llm.gate.set()
        await eventually_async(lambda: goal_status(rt, "done"), timeout=10, what="the goal to finish")
        attempts = await rt.tasks.attempts(running.id)
    assert [a.outcome for a in attempts] == ["done"]  # one attempt: never run twice at once


async def _lease_after(rt: Runtime, moment: datetime) -> bool:
    rows = await rt.tasks.in_state("running")
    return bool(rows) and rows[0].lease_until is not None and rows[0].lease_until > moment


def _asked_for(fake: FakeOpenAI, title: str) -> bool:
    return any(task_title(r) == title for r in fake.chat_requests)


async def _attempt_over(rt: Runtime, goal_id: str) -> bool:
    """The goal's task is no longer running (nor about to run again)."""
    return all(t.state not in ("running", "ready") for t in await rt.tasks.tasks(goal_id))


@pytest.mark.parametrize("decision", ["Reject", "expiry"])
async def test_a_follow_up_plan_not_approved_ends_the_goal_with_its_report(
    tmp_path: Path, fake_llm: FakeOpenAI, decision: str
) -> None:
    """The verifier says "not met" and offers a follow-up plan; the operator rejects it (or lets it expire). The
    first plan card stays approved, but only the newest plan card counts: the goal is done with its report."""
    brain = Brain(
        plans=[plan(task("t1", "research", "Look for sponsors"))],
        verdict={"met": False, "report": "No sponsor yet.", "follow_up": [task("t9", "research", "Look further")]},
    )
    fake_llm.responder = brain
    async with goal_runtime(tmp_path, fake_llm) as (rt, chan):
        await rt.dispatcher.handle(operator_message("/goal find a sponsor", kind="command"))
        await rt.dispatcher.handle(press(cards(chan, "Start this plan?")[0], "Approve"))
        await eventually(lambda: len(cards(chan, "Start this plan?")) == 2, timeout=10, what="the follow-up plan card")
        goal_id = (await rt.tasks.goals())[0].id
        if decision == "Reject":
            await rt.dispatcher.handle(press(cards(chan, "Start this plan?")[1], "Reject"))
        else:
            [follow_up] = [r for r in await rt.approvals.store.for_goal(goal_id) if r.state == "pending"]
            await rt.approvals.expire(follow_up)
        await eventually(lambda: _ended_notice(chan, goal_id), timeout=10, what="the goal to end")
        goal = await rt.tasks.goal(goal_id)
    assert goal is not None and goal.status == "done" and goal.report == "No sponsor yet."
    assert "Look further" not in brain.asked


def _ended_notice(chan: RecordingChannel, goal_id: str) -> bool:
    return any(m.text.startswith(f"Goal {goal_id} ended") for m in chan.sent)


async def test_a_proposed_goal_with_no_plan_card_ends_after_a_lease(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    """The process died between recording the goal as proposed and showing its plan card: nothing would ever
    decide it. The sweep ends it, once a lease's time has passed (before that, the card may be on its way)."""
    from datetime import timedelta

    async with goal_runtime(tmp_path, fake_llm) as (rt, chan):
        goal = await rt.tasks.create_goal("find a sponsor", "rec:1001", "operator", status="proposed")
        await rt.goals.sweep(utcnow())
        soon = await rt.tasks.goal(goal.id)
        await rt.goals.sweep(utcnow() + timedelta(seconds=FAST["lease_s"] + 1))
        later = await rt.tasks.goal(goal.id)
    assert soon is not None and soon.status == "proposed"
    assert later is not None and later.status == "cancelled" and _ended_notice(chan, goal.id)
