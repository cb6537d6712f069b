"""The task runner built on its own (real task ledger on SQLite, the real skill executor against the fake model,
an injected clock): a task attempt gathers, runs and records once; failures back off and then block; an internal
fault counts as a failed attempt and loses nothing."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from graph.goals.runner import TaskRunner
from memory.tasks import Task
from tests.fakes.openai_api import FakeOpenAI, Scripted
from tests.graph.goals.goal_helpers import finish, task_title
from tests.graph.parts import GoalParts, goal_parts, spec


def runner_of(parts: GoalParts) -> TaskRunner:
    return TaskRunner(
        parts.stores.tasks,
        parts.goals,
        parts.executor,
        parts.approvals,
        parts.settings.tasks,
        is_paused=lambda: False,
        clock=parts.clock,
    )


async def one_pass(runner: TaskRunner) -> list[Task]:
    """Claim what is ready and wait until those attempts ended."""
    started = await runner.step()
    await runner.wait_idle()
    return started


async def test_a_task_runs_once_and_hands_its_result_to_the_task_after_it(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    fake_llm.responder = lambda body: finish(f"{task_title(body)}: Acme said yes", ["acme-mail"])
    async with goal_parts(tmp_path, fake_llm) as parts:
        goal, _ = await parts.goal_with_tasks(spec("t1", "Find a sponsor"), spec("t2", "Thank them", after=("t1",)))
        runner = runner_of(parts)
        first = await one_pass(runner)
        second = await one_pass(runner)
        tasks = await parts.stores.tasks.tasks(goal.id)
        attempts = [await parts.stores.tasks.attempts(t.id) for t in tasks]
    assert [t.key for t in first] == ["t1"] and [t.key for t in second] == ["t2"]
    assert [t.state for t in tasks] == ["done", "done"]
    assert tasks[0].result == {"summary": "Find a sponsor: Acme said yes", "artifacts": ["acme-mail"], "status": "done"}
    assert [[a.outcome for a in rows] for rows in attempts] == [["done"], ["done"]]
    thank_you = next(r for r in fake_llm.chat_requests if task_title(r) == "Thank them")
    handed = str(thank_you["messages"][-1]["content"])
    assert "t1 (Find a sponsor): Find a sponsor: Acme said yes [artifacts: acme-mail]" in handed


async def test_a_task_of_an_unknown_skill_is_blocked_with_one_clear_reason(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    async with goal_parts(tmp_path, fake_llm) as parts:
        goal, _ = await parts.goal_with_tasks(spec("t1", "Juggle", skill="juggling"))
        await one_pass(runner_of(parts))
        [task] = await parts.stores.tasks.tasks(goal.id)
        [attempt] = await parts.stores.tasks.attempts(task.id)
    assert (task.state, task.error, task.lease_owner) == ("blocked", "unknown skill juggling", None)
    assert attempt.outcome == "blocked"
    [(text, buttons)] = parts.shown.posts
    assert text == f"Task Juggle of goal {goal.id} is blocked: unknown skill juggling"
    assert [label for label, _ in buttons] == ["Retry", "Skip", "Cancel goal"]
    assert fake_llm.chat_requests == []  # nothing was asked of the model for it


async def test_a_failed_attempt_backs_off_and_the_last_one_blocks_the_task(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    fake_llm.default = Scripted(status=400, error_message="the model refused the request")
    async with goal_parts(tmp_path, fake_llm, {"max_attempts": 2, "retry_base_s": 30}) as parts:
        goal, _ = await parts.goal_with_tasks(spec("t1", "Find a sponsor"))
        runner = runner_of(parts)
        await one_pass(runner)
        [waiting] = await parts.stores.tasks.tasks(goal.id)
        assert await one_pass(runner) == []  # not before its backoff
        parts.clock.at += timedelta(seconds=30)
        await one_pass(runner)
        [blocked] = await parts.stores.tasks.tasks(goal.id)
    assert waiting.state == "ready" and waiting.next_try_at == parts.clock.at
    assert waiting.notes[-1].startswith("attempt 1 failed: ")
    assert blocked.state == "blocked" and blocked.error == waiting.error
    [(text, _)] = parts.shown.posts
    assert text.endswith(f"{waiting.error} (after 2 attempts)")


async def test_an_attempt_that_cannot_be_recorded_counts_as_failed_and_the_task_runs_again(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    """The attempts table is gone (a real SQLite error inside the attempt): the task is not lost in 'running'."""
    async with goal_parts(tmp_path, fake_llm, {"retry_base_s": 5}) as parts:
        goal, _ = await parts.goal_with_tasks(spec("t1", "Find a sponsor"))
        await parts.stores.db.script("DROP TABLE task_attempts")
        await one_pass(runner_of(parts))
        [task] = await parts.stores.tasks.tasks(goal.id)
    assert (task.state, task.error, task.lease_owner) == ("ready", "an internal error (logged)", None)
    assert task.next_try_at == parts.clock.at + timedelta(seconds=5)
    assert parts.shown.posts == []  # attempts remain: the operator is not asked yet
