"""``/pipeline`` through the real runtime without a model, and the pipeline reaching the planner and the skills
of a goal ("turn the three proposals into customers") as quoted data."""

from __future__ import annotations

from pathlib import Path

from bot.messages import InboundMessage
from bot.runtime import open_runtime
from memory.records import Records
from tests.conftest import RecordingChannel, make_settings, operator_message
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.polling import eventually
from tests.graph.goals.goal_helpers import Brain, plan, task, text_of
from tests.graph.goals.test_goals import cards, goal_runtime, press

THREE = (("Acme Corp", "buyer@acme.example"), ("Beta Labs", "cto@beta.example"), ("Gamma Ltd", "ops@gamma.example"))


async def test_pipeline_commands_answer_without_a_model_and_bad_input_gets_one_clear_error(tmp_path: Path) -> None:
    async with open_runtime(make_settings(tmp_path, timezone="Asia/Tokyo"), console=False) as rt:
        chan = RecordingChannel("rec")
        rt.dispatcher.attach(chan)
        await Records(rt.db).upsert("contact", {"name": "Ana Silva", "emails": ["ana@example.org"]}, "op")

        async def say(text: str) -> str:
            await rt.dispatcher.handle(operator_message(text, kind="command"))
            return chan.sent[-1].text

        empty = await say("/pipeline")
        moved = await say("/pipeline Ana talking")
        step = await say("/pipeline Ana next today | send the proposal")
        later = await say("/pipeline Ana next 2w | check in")
        await say("/pipeline Ana next today | send the proposal")
        shown = await say("/pipeline")
        bad = await say("/pipeline Ana next whenever | call")
        unknown = await say("/pipeline Zed proposal")
        helped = await say("/help")
        digest = await say("/digest")
        assert not rt.coordinator.llm.configured
    assert empty == "No contact has a stage yet. /pipeline <contact> lead puts one in the pipeline."
    assert moved == "Ana Silva: (none) -> talking."
    assert step.startswith("Next step for Ana Silva: send the proposal, due ")
    assert later.startswith("Next step for Ana Silva: check in, due ")
    lines = shown.splitlines()
    assert lines[:2] == ["Pipeline:", "lead 0, talking 1, proposal 0, customer 0, lost 0"]
    assert lines[2].startswith("Next steps due (today is ")
    assert lines[3] == "- Ana Silva <ana@example.org> [talking]: send the proposal (today)"
    assert bad.startswith("I cannot read 'whenever' as a date: use 3d, 2w, 2026-12-20, a weekday like friday")
    assert unknown.startswith("No contact matches 'Zed'.")
    assert "/pipeline - Contacts by stage" in helped
    assert "Pipeline next steps due:\n- Ana Silva <ana@example.org> [talking]: send the proposal (today)" in digest


async def test_a_goal_about_the_proposals_sees_them_in_the_planner_and_the_skills(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    brain = Brain(plans=[plan(task("t1", "research", "List the proposals to close"), criteria="three customers")])
    fake_llm.responder = brain
    async with goal_runtime(tmp_path, fake_llm) as (rt, chan):
        records = Records(rt.db)
        for name, email in THREE:
            await records.upsert("contact", {"name": name, "emails": [email]}, "op")
            await rt.dispatcher.handle(press_text(f"/pipeline {name} proposal"))
        await rt.dispatcher.handle(press_text("/pipeline Beta next today | send the revised quote"))
        await rt.dispatcher.handle(press_text("/goal turn the three proposals into customers"))
        [plan_card] = cards(chan, "Start this plan?")
        await rt.dispatcher.handle(press(plan_card, "Approve"))
        await eventually(lambda: "List the proposals to close" in brain.asked, timeout=10, what="the skill ran")
    planner = next(r for r in fake_llm.requests if text_of(r).startswith("You plan work"))
    skill = next(r for r in fake_llm.requests if "List the proposals to close" in text_of(r))
    system = str(skill["messages"][0]["content"])
    proposals = (
        "proposal (3): Acme Corp <buyer@acme.example>; Beta Labs <cto@beta.example>; Gamma Ltd <ops@gamma.example>"
    )
    for prompt in (text_of(planner), system):
        block = prompt.split("The sales pipeline", 1)[1]
        assert block.split("<data>", 1)[1].split("</data>", 1)[0].strip().splitlines()[0] == proposals
        assert "Beta Labs <cto@beta.example> [proposal]: send the revised quote (today)" in block
    assert skill["messages"][0]["role"] == "system"


def press_text(text: str) -> InboundMessage:
    return operator_message(text, kind="command")
