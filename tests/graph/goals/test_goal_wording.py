"""What the operator reads about goals: no internal names or plural slips, a plan card that says it starts
(a plan is not sent), and spend in one format with its currency wherever it appears."""

from __future__ import annotations

import io
import re
from pathlib import Path

from bot.channels.console import ConsoleChannel
from bot.messages import Button, InboundMessage, OutboundMessage
from bot.runtime import open_runtime
from prompts.messages import money
from tests.conftest import RecordingChannel, llm_settings, make_settings, operator_message
from tests.fakes.openai_api import FakeOpenAI, Scripted
from tests.fakes.polling import eventually_async
from tests.fakes.smtp_server import SMTPServer
from tests.graph.goals.goal_helpers import Brain, email_then_finish, met_verdict, plan, task

FAST = {"poll_s": 0.02, "progress_interval_s": 0, "retry_base_s": 0, "lease_s": 30}
SPENT = re.compile(r"Spent: (\S+ \S+)")


def press(message: OutboundMessage, label: str) -> InboundMessage:
    data = next(b.data for b in message.buttons if b.label == label)
    return operator_message("", kind="callback", data=data)


def plan_card(chan: RecordingChannel) -> OutboundMessage:
    return next(m for m in chan.sent if m.buttons and m.text.startswith("Start this plan?"))


def edits_of(chan: RecordingChannel, card: OutboundMessage) -> list[str]:
    first = chan.sent.index(card)
    return [m.text for m in chan.sent[first + 1 :] if m.edit_message_id is not None and "\nDone when: " in m.text]


async def test_a_started_plan_says_it_started_one_task_and_spend_reads_one_way(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    brain = Brain(plans=[plan(task("t1", "research", "Find a sponsor in memory"))])
    brain.verdict = met_verdict("Found one.")
    fake_llm.responder = brain
    settings = make_settings(tmp_path, llm=llm_settings(fake_llm), tasks=FAST, outbox={"poll_s": 0.02})
    async with open_runtime(settings, console=False) as rt:
        chan = RecordingChannel("rec")
        rt.dispatcher.attach(chan)
        await rt.dispatcher.handle(operator_message("/goal find a sponsor", kind="command"))
        card = plan_card(chan)
        await rt.dispatcher.handle(press(card, "Approve"))

        async def done() -> bool:
            goals = await rt.tasks.goals()
            return bool(goals) and goals[0].status == "done"

        await eventually_async(done, timeout=10, what="the goal to be done")
        goal = (await rt.tasks.goals())[0]
        status, _ = await rt.goals.board.status(goal)
        described = await rt.goals.board.describe(goal)
        spent = await rt.ledger.spent(goal.created_at, goal.workflow)
        calls = [c for c in await rt.ledger.calls() if c.workflow == goal.workflow]
        before_check = spent - calls[-1].cost  # the check's own call is the goal's last one
    card_edits = edits_of(chan, card)
    assert card_edits and all("Sending" not in text and "Nothing was sent" not in text for text in card_edits)
    assert any(f"Goal {goal.id}: 1 task started." in text for text in card_edits)
    assert not any("1 tasks" in m.text for m in chan.sent)
    assert spent > 0 and SPENT.findall(status) == [money(spent, "USD")]  # one figure, with its currency
    verify = next(r for r in fake_llm.chat_requests if "You check a goal" in str(r["messages"][0]["content"]))
    assert f"what it cost: {money(before_check, 'USD')}" in verify["messages"][0]["content"]
    attempt_line = next(line for line in described.splitlines() if line.strip().startswith("t1#1"))
    assert re.search(r" done fake-model \d+\.\d{2,4} USD$", attempt_line), attempt_line  # no tool names


async def test_a_rejected_plan_says_nothing_was_started(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    fake_llm.responder = Brain(plans=[plan(task("t1", "research", "Look"))])
    settings = make_settings(tmp_path, llm=llm_settings(fake_llm), tasks=FAST)
    async with open_runtime(settings, console=False) as rt:
        chan = RecordingChannel("rec")
        rt.dispatcher.attach(chan)
        await rt.dispatcher.handle(operator_message("/goal look around", kind="command"))
        card = plan_card(chan)
        await rt.dispatcher.handle(press(card, "Reject"))
    assert edits_of(chan, card)[-1].startswith("Rejected by telegram:1001. Nothing was started.\n")


async def test_a_model_that_answers_without_a_plan_is_reported_without_tool_names(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    fake_llm.responder = lambda body: Scripted(content="Sure, I will get you sponsors!")
    settings = make_settings(tmp_path, llm=llm_settings(fake_llm), tasks=FAST)
    async with open_runtime(settings, console=False) as rt:
        chan = RecordingChannel("rec")
        rt.dispatcher.attach(chan)
        await rt.dispatcher.handle(operator_message("/goal get sponsors", kind="command"))
        goal = (await rt.tasks.goals())[0]
    said = chan.sent[-1].text
    assert said == f"I could not make a plan that can run for goal {goal.id}: the model answered without a plan"
    assert "submit_plan" not in said
    retry = fake_llm.chat_requests[1]["messages"][-1]["content"]
    assert "submit_plan" in retry  # the model, not the operator, is told which tool to call


async def _ignore(_: InboundMessage) -> None:
    return None


async def test_a_console_message_with_one_button_offers_that_number() -> None:
    out = io.StringIO()
    console = ConsoleChannel(_ignore, io.StringIO(), out)
    status = OutboundMessage("console", "local", "Goal g1: find sponsors", buttons=(Button("Cancel goal", "gl:c:g1"),))
    await console.send(status)
    assert "     [1] Cancel goal\n     (type 1 or cancel goal)\n" in out.getvalue()


def test_money_has_one_format_and_always_its_currency() -> None:
    assert money(0.0009, "USD") == "0.0009 USD"  # would read as 0.00: keeps four decimals
    assert money(0, "USD") == "0.00 USD" and money(0.02, "EUR") == "0.02 EUR"
    assert money(1234.5, "EUR") == "1,234.50 EUR"


async def test_a_goals_waiting_cards_are_named_as_approvals(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    skill = email_then_finish("ana@example.org", "Hi Ana", "Hello")
    fake_llm.responder = Brain(plans=[plan(task("t1", "outreach", "Email Ana"))], skills={"Email Ana": skill})
    with SMTPServer() as smtp:
        settings = make_settings(
            tmp_path, llm=llm_settings(fake_llm), tasks=FAST, outbox={"poll_s": 0.02}, smtp=smtp.settings()
        )
        async with open_runtime(settings, console=False) as rt:
            chan = RecordingChannel("rec")
            rt.dispatcher.attach(chan)
            await rt.dispatcher.handle(operator_message("/goal email Ana", kind="command"))
            await rt.dispatcher.handle(press(plan_card(chan), "Approve"))

            async def email_card() -> bool:
                return any(m.buttons and m.text.startswith("Send this email?") for m in chan.sent)

            await eventually_async(email_card, timeout=10, what="the email card")
            goal = (await rt.tasks.goals())[0]
            [waiting] = await rt.goals.board.waiting_cards(goal)
            status, _ = await rt.goals.board.status(goal)
    assert "Waiting on you: 1 card\n" in status and f"(approval {waiting.id})" in status
