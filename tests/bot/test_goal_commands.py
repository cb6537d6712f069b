"""`/goal`: a delivery replayed after a crash finds its goal and its card again (I3)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from tests.conftest import operator_message
from tests.fakes.openai_api import FakeOpenAI
from tests.graph.goal_helpers import Brain, plan, task
from tests.graph.test_goals import cards, goal_runtime


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
