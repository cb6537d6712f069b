"""/goal, /goals, the goal buttons and the chat notifier, built directly on the goal layer's real parts
(tests/bot/chat_parts.py) with the planner answered by the fake model."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from bot.commands.goals import ChatNotifier, GoalCommands
from connectors.email import EmailAction
from graph.buttons import Prefix, encode
from graph.errors import UserFacingError
from memory.approvals import ApprovalRow
from memory.tasks import Goal
from prompts.messages import GOAL_NOT_PLANNABLE, GOALS_USAGE
from tests.bot.chat_parts import Chat, chat_parts
from tests.fakes.openai_api import FakeOpenAI
from tests.graph.goals.goal_helpers import Brain, plan, task
from tests.graph.parts import OPERATOR, SESSION, spec


@dataclass
class Goals:
    chat: Chat
    commands: GoalCommands
    fake: FakeOpenAI

    async def press(self, verb: str, target: str, sender: str = OPERATOR) -> None:
        inbound = self.chat.inbound("", sender, kind="callback", callback_data=encode(Prefix.GOAL, verb, target))
        await self.commands.on_press(inbound)

    async def task_card(self, goal: Goal) -> ApprovalRow:
        """A pending email card a task of ``goal`` proposed, shown in the chat."""
        email = EmailAction(from_addr="coo@example.org", to=("ana@example.org",), subject="Sponsor", body="Hello")
        card = await self.chat.parts.approvals.propose(email, SESSION, "task", OPERATOR, context={"goal_id": goal.id})
        assert card.approval is not None
        await self.chat.ui.show(card.approval.id, "rec", "1001", None)
        return card.approval


@pytest.fixture
async def goals(tmp_path: Path, fake_llm: FakeOpenAI) -> AsyncIterator[Goals]:
    async with chat_parts(tmp_path, fake_llm) as chat:
        p = chat.parts
        commands = GoalCommands(
            p.goals, p.plans, p.approvals, chat.ui, chat.messenger, p.contexts.proposal, lambda: chat.wakes.append(None)
        )
        commands.register(chat.router)
        yield Goals(chat, commands, fake_llm)


async def test_a_goal_is_recorded_planned_and_shown_as_one_plan_card(goals: Goals) -> None:
    goals.fake.responder = Brain(plans=[plan(task("t1", "research", "Find three sponsors"))])
    assert await goals.chat.say("/goal get two sponsors for December") == ""
    [goal] = await goals.chat.parts.stores.tasks.goals()
    [card] = goals.chat.chan.sent
    assert goal.text == "get two sponsors for December" and goal.status == "proposed"
    assert "Find three sponsors" in card.text and card.buttons[0].label == "Approve"
    assert goal.id in await goals.chat.say("/goals")


async def test_no_words_is_the_usage_and_an_unknown_goal_is_named(goals: Goals) -> None:
    with pytest.raises(UserFacingError) as usage:
        await goals.chat.say("/goal")
    with pytest.raises(UserFacingError, match="No goal g-none"):
        await goals.chat.say("/goal cancel g-none")
    assert str(usage.value) == GOALS_USAGE
    assert await goals.chat.parts.stores.tasks.goals() == [] and goals.fake.chat_requests == []


async def test_a_running_goal_is_not_planned_again_and_is_cancelled_once(goals: Goals) -> None:
    goal, _ = await goals.chat.parts.goal_with_tasks(spec("t1", "Find a sponsor"))
    with pytest.raises(UserFacingError) as refused:
        await goals.chat.say(f"/goal plan {goal.id}")
    assert str(refused.value) == GOAL_NOT_PLANNABLE.format(goal_id=goal.id, status="active")
    assert goals.fake.chat_requests == []  # no model call for a refused plan
    assert await goals.chat.say(f"/goal cancel {goal.id}") == ""
    assert await goals.chat.say(f"/goal cancel {goal.id}") == f"Goal {goal.id} is already cancelled."
    assert goal.id in await goals.chat.say(f"/goal {goal.id}")


async def test_approve_all_presses_each_waiting_card_on_its_own(goals: Goals) -> None:
    goal, _ = await goals.chat.parts.goal_with_tasks(spec("t1", "Find a sponsor"))
    first, second = await goals.task_card(goal), await goals.task_card(goal)
    await goals.press("all", goal.id)
    assert [await goals.chat.state(first.id), await goals.chat.state(second.id)] == ["approved", "approved"]
    assert goals.chat.chan.sent[-1].text == "Approved 2 cards, each checked on its own."


async def test_approve_all_by_a_stranger_approves_nothing(goals: Goals) -> None:
    goal, _ = await goals.chat.parts.goal_with_tasks(spec("t1", "Find a sponsor"))
    card = await goals.task_card(goal)
    await goals.press("all", goal.id, sender="telegram:666")
    assert await goals.chat.state(card.id) == "pending"


async def test_a_button_on_a_task_that_is_not_blocked_changes_nothing(goals: Goals) -> None:
    goal, [ready] = await goals.chat.parts.goal_with_tasks(spec("t1", "Find a sponsor"))
    await goals.press("retry", ready.id)
    await goals.press("explode", ready.id)  # malformed data: ignored, nothing said
    [after] = await goals.chat.parts.stores.tasks.tasks(goal.id)
    assert after.state == "ready" and after.attempts == 0
    assert [m.text for m in goals.chat.chan.sent] == ["That was decided meanwhile; nothing changed."]


async def test_the_notifier_posts_and_edits_in_the_goals_chat_and_skips_a_channel_not_attached(goals: Goals) -> None:
    notifier = ChatNotifier(goals.chat.messenger, goals.chat.ui)
    first = await notifier.post(SESSION, "Working on it", (("Cancel goal", "gl:cancel:g1"),))
    assert first is not None
    assert await notifier.post(SESSION, "Done", replace=first) is not None
    assert await notifier.post("slack:T1:C1", "Nobody hears this") is None
    sent = goals.chat.chan.sent
    assert [(m.text, m.edit_message_id) for m in sent] == [("Working on it", None), ("Done", first)]
    assert sent[0].buttons[0].label == "Cancel goal"
