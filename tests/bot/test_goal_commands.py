"""`/goal`: a delivery replayed after a crash finds its goal and its card again (I3)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from prompts.messages import GOAL_NOT_PLANNABLE
from tests.conftest import operator_message
from tests.fakes.openai_api import FakeOpenAI
from tests.graph.goals.goal_helpers import Brain, plan, task
from tests.graph.goals.test_goals import cards, goal_runtime


async def test_a_replayed_goal_command_finds_its_card_without_a_second_goal(
    tmp_path: Path, fake_llm: FakeOpenAI, captured_logs: pytest.LogCaptureFixture
) -> None:
    """Handled, card stored, then the process died before the update was marked finished: the replay
    records no second goal, makes no second planning call (model spend) and raises nothing."""
    brain = Brain(plans=[plan(task("t1", "research", "Look for sponsors"))])
    fake_llm.responder = brain
    async with goal_runtime(tmp_path, fake_llm) as (rt, chan):
        inbound = operator_message("/goal find a sponsor", kind="command")
        await rt.dispatcher.handle(inbound)
        assert len(cards(chan, "Start this plan?")) == 1
        await asyncio.gather(*await rt.dispatcher.replay([(inbound, None)], {"rec"}))
        goals = await rt.tasks.goals()
    assert [g.status for g in goals] == ["proposed"] and brain.asked.count("planner") == 1
    assert len(cards(chan, "Start this plan?")) == 1  # the reply journal knows it was shown
    assert not [r for r in captured_logs.records if r.levelno >= logging.ERROR]


async def test_goal_plan_applies_only_to_a_goal_waiting_for_its_plan(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    """On a goal that is proposed, running or ended, replanning would cancel its work midway or revive it."""
    brain = Brain(plans=[plan(task("t1", "research", "Look for sponsors"))])
    fake_llm.responder = brain
    async with goal_runtime(tmp_path, fake_llm) as (rt, chan):
        await rt.dispatcher.handle(operator_message("/goal find a sponsor", kind="command"))
        [goal] = await rt.tasks.goals()
        await rt.dispatcher.handle(operator_message(f"/goal plan {goal.id}", kind="command"))
        answer = chan.sent[-1].text
        after = await rt.tasks.goal(goal.id)
    assert answer == GOAL_NOT_PLANNABLE.format(goal_id=goal.id, status="proposed")
    assert brain.asked.count("planner") == 1 and after is not None and after.status == "proposed"
