"""Endpoints as real ones behave: the planner and the verifier force their one tool with ``tool_choice``, an
endpoint that refuses it gets the call once more without it (and never again), and a prompt the endpoint
counted at far fewer tokens than were sent (Ollama cuts prompts to its context window) is flagged once."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from graph.goals.planner import Planner
from graph.models.llm import estimate_message_tokens
from tests.fakes.openai_api import FakeOpenAI, Scripted
from tests.fakes.polling import eventually_async
from tests.graph.goals.goal_helpers import Brain, met_verdict, plan, task
from tests.graph.goals.test_goals import goal_runtime
from tests.graph.goals.test_honest_outcomes import _goal_ended, _start
from tests.graph.models.test_llm_fallbacks import chain

SKILLS = {"research": "look things up", "outreach": "email people"}
PLAN = plan(task("t1", "research", "Find three sponsors"))
REFUSAL = "Invalid value for 'tool_choice': only 'auto' and 'none' are supported by this server"


def _forced(name: str) -> dict[str, object]:
    return {"type": "function", "function": {"name": name}}


async def test_the_planner_and_the_verifier_force_their_tool(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    fake_llm.responder = Brain(plans=[PLAN], verdict=met_verdict("Found them.", "three sponsors"))
    async with goal_runtime(tmp_path, fake_llm) as (rt, chan):
        await _start(rt, chan, "find sponsors")
        await eventually_async(lambda: _goal_ended(rt), timeout=10, what="the goal to end")
    firsts = [(str(r["messages"][0]["content"]), r) for r in fake_llm.chat_requests]
    planner = [r for first, r in firsts if first.startswith("You plan work")]
    verifier = [r for first, r in firsts if first.startswith("You check a goal")]
    assert planner and verifier
    assert all(r["tool_choice"] == _forced("submit_plan") for r in planner)
    assert all(r["tool_choice"] == _forced("submit_verdict") for r in verifier)
    skills = [r for first, r in firsts if not first.startswith(("You plan work", "You check a goal"))]
    assert skills and all("tool_choice" not in r for r in skills)  # a skill chooses its tools itself


async def test_an_endpoint_refusing_tool_choice_gets_the_call_again_without_it(
    tmp_path: Path, fake_llm: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    fake_llm.script.append(Scripted(status=400, error_message=REFUSAL))
    fake_llm.script.append(Scripted(tool_calls=[("submit_plan", PLAN)]))
    fake_llm.script.append(Scripted(tool_calls=[("submit_plan", PLAN)]))
    async with chain(tmp_path, fake_llm, max_attempts=1, breaker_failures=1) as parts:
        planner = Planner(parts.client, SKILLS, "UTC")
        first = await planner.plan("find sponsors", workflow="goal")
        again = await planner.plan("find more sponsors", workflow="goal")
        calls = await parts.ledger.calls()
    sent = fake_llm.chat_requests
    assert [t.title for t in first.tasks] == [t.title for t in again.tasks] == ["Find three sponsors"]
    # Refused once, asked once more without it (not counted as an attempt: max_attempts=1 and a breaker that
    # opens at one failure still let it through), and never sent to this endpoint again.
    assert [r.get("tool_choice") for r in sent] == [_forced("submit_plan"), None, None]
    assert sent[0]["messages"] == sent[1]["messages"] and sent[1]["tools"] == sent[0]["tools"]
    assert parts.client.breaker.state == "closed"
    assert [c.outcome for c in calls][0].startswith("error") and calls[0].cost == 0  # refused: free
    assert sum("refuses tool_choice" in r.getMessage() for r in caplog.records) == 1


async def test_another_400_is_not_retried_without_tool_choice(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    fake_llm.script.append(Scripted(status=400, error_message="messages: too many"))
    async with chain(tmp_path, fake_llm, max_attempts=1) as parts:
        planner = Planner(parts.client, SKILLS, "UTC")
        with pytest.raises(Exception, match="400"):
            await planner.plan("find sponsors", workflow="goal")
    assert len(fake_llm.chat_requests) == 1


BIG = [{"role": "user", "content": "Background for the task. " * 800}]  # about 5,200 tokens


async def test_a_prompt_the_endpoint_cut_is_flagged_once_per_model(
    tmp_path: Path, fake_llm: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    estimate = estimate_message_tokens(BIG)
    assert estimate > 1500
    fake_llm.script.append(Scripted(content="ok"))  # counted as sent: nothing to flag
    fake_llm.script.append(Scripted(content="ok", prompt_tokens=2048))  # Ollama's old default window
    fake_llm.script.append(Scripted(content="ok", prompt_tokens=2048))
    async with chain(tmp_path, fake_llm) as parts:
        await parts.client.chat(BIG, session="rec:1001")
        assert parts.told.lines == []
        await parts.client.chat(BIG, session="rec:1001")
        await parts.client.chat(BIG, session="rec:1001")
    cut = [line for line in parts.told.lines if "cut" in line[0]]
    assert len(cut) == 1, parts.told.lines
    text, session = cut[0]
    assert session == "rec:1001" and "fake-model" in text and "2048" in text and str(estimate) in text
    assert "OLLAMA_CONTEXT_LENGTH" in text and "docs/local-models.md" in text
    warned = [r.getMessage() for r in caplog.records if "cut prompts" in r.getMessage()]
    assert len(warned) == 1 and "fake-model" in warned[0] and "2048" in warned[0] and str(estimate) in warned[0]


async def test_a_small_prompt_or_a_zero_count_is_not_flagged(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    small = [{"role": "user", "content": "Background. " * 300}]  # under 1,500 tokens
    assert estimate_message_tokens(small) < 1500
    fake_llm.script.append(Scripted(content="ok", prompt_tokens=10))
    fake_llm.script.append(Scripted(content="ok", prompt_tokens=0))  # older Ollama: a cached prompt counts 0
    async with chain(tmp_path, fake_llm) as parts:
        await parts.client.chat(small)
        await parts.client.chat(BIG)
    assert parts.told.lines == []
