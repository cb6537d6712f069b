"""The goal service built on its own (real stores on SQLite, the model client against the fake model): a goal
cancelled with its tasks and cards, buttons pressed on the wrong task, and a finished run verified, with the model
answering and with the model failing."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.email import EmailAction
from memory.tasks import Task, TransitionRefused
from tests.fakes.openai_api import FakeOpenAI, Scripted
from tests.graph.goals.goal_helpers import met_verdict
from tests.graph.parts import OPERATOR, SESSION, GoalParts, goal_parts, spec


async def finish_run(parts: GoalParts, tasks: list[Task]) -> None:
    """Every task of the run done, with a result the verifier reads."""
    for task in tasks:
        if task.state == "todo":
            await parts.stores.tasks.move(task.id, "todo", "ready")
        await parts.stores.tasks.move(task.id, "ready", "running")
        await parts.stores.tasks.move(task.id, "running", "done", result={"summary": f"{task.title}: Acme said yes"})


async def test_a_cancelled_goal_stops_its_open_tasks_and_expires_its_cards(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    async with goal_parts(tmp_path, fake_llm) as parts:
        goal, tasks = await parts.goal_with_tasks(spec("t1", "Find a sponsor"), spec("t2", "Thank", after=("t1",)))
        email = EmailAction(from_addr="coo@example.org", to=("ana@example.org",), subject="Sponsor", body="Hello")
        card = await parts.approvals.propose(email, SESSION, "task", OPERATOR, context={"goal_id": goal.id})
        assert card.approval is not None and card.approval.state == "pending"
        assert await parts.goals.cancel(goal.id, OPERATOR)
        after = await parts.stores.tasks.tasks(goal.id)
        expired = await parts.approvals.store.get(card.approval.id)
        fresh = await parts.stores.tasks.goal(goal.id)
    assert fresh is not None and fresh.status == "cancelled"
    assert [t.state for t in after] == ["cancelled", "cancelled"]
    assert expired is not None and expired.state == "expired"
    assert parts.shown.posts == [(f"Goal {goal.id} is cancelled; its open tasks and cards were stopped.", ())]


async def test_buttons_on_the_wrong_goal_or_task_change_nothing(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    async with goal_parts(tmp_path, fake_llm) as parts:
        goal, [ready] = await parts.goal_with_tasks(spec("t1", "Find a sponsor"))
        assert not await parts.goals.cancel("g-none", OPERATOR)
        with pytest.raises(TransitionRefused):
            await parts.goals.retry(ready.id, OPERATOR)  # only a blocked task is retried
        with pytest.raises(TransitionRefused):
            await parts.goals.skip(ready.id, OPERATOR)
        assert await parts.goals.cancel(goal.id, OPERATOR)
        assert not await parts.goals.cancel(goal.id, OPERATOR)  # a second press
        [task] = await parts.stores.tasks.tasks(goal.id)
    assert task.state == "cancelled" and task.attempts == 0
    assert len(parts.shown.posts) == 1  # one cancellation said once


async def test_a_finished_run_is_verified_and_the_report_posted(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    fake_llm.tool_call("submit_verdict", met_verdict("Acme sponsors us."))
    async with goal_parts(tmp_path, fake_llm) as parts:
        goal, tasks = await parts.goal_with_tasks(spec("t1", "Find a sponsor"))
        await finish_run(parts, tasks)
        await parts.goals.sweep(parts.clock())
        done = await parts.stores.tasks.goal(goal.id)
    assert done is not None and (done.status, done.verified, done.report) == ("done", 1, "Acme sponsors us.")
    assert parts.shown.posts == [(f"Goal {goal.id} is done.\nAcme sponsors us.", ())]
    facts = str(fake_llm.chat_requests[0]["messages"][0]["content"])
    assert "Find a sponsor: Acme said yes" in facts  # the verifier reads the ledger's results


async def test_a_run_the_model_cannot_verify_is_reported_as_not_verified_never_as_met(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    fake_llm.default = Scripted(status=400, error_message="the model refused the request")
    async with goal_parts(tmp_path, fake_llm) as parts:
        goal, tasks = await parts.goal_with_tasks(spec("t1", "Find a sponsor"))
        await finish_run(parts, tasks)
        await parts.goals.sweep(parts.clock())
        await parts.goals.sweep(parts.clock())  # verified once: a second sweep changes nothing
        failed = await parts.stores.tasks.goal(goal.id)
    assert failed is not None and (failed.status, failed.verified) == ("failed", 1)
    assert "Find a sponsor: Acme said yes" in failed.report  # the facts, for the operator to check
    [(text, _)] = parts.shown.posts
    assert text.startswith(f"Goal {goal.id}: its tasks ended, but I could not verify that it is met.")
