"""The goal and trace pages built directly (tests/bot/web/console_parts.py): a goal with its tasks, a task with its
attempts, titles escaped, an unknown id not found."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.bot.web.console_parts import Web, console_parts
from tests.fakes.openai_api import FakeOpenAI
from tests.graph.parts import spec


@pytest.fixture
async def console(tmp_path: Path, fake_llm: FakeOpenAI) -> AsyncIterator[Web]:
    async with console_parts(tmp_path, fake_llm) as built:
        yield built


async def test_a_goal_and_its_task_have_their_pages(console: Web) -> None:
    goal, [first, _] = await console.chat.parts.goal_with_tasks(
        spec("t1", "<i>Find</i> a sponsor"), spec("t2", "Thank them", after=("t1",))
    )
    page = await console.get(f"/goals/{goal.id}")
    trace = await console.get(f"/tasks/{first.id}")
    text, trace_text = await page.text(), await trace.text()
    assert (page.status, trace.status) == (200, 200)
    assert "&lt;i&gt;Find&lt;/i&gt; a sponsor" in text and "Thank them" in text and "<i>Find" not in text
    assert "&lt;i&gt;Find&lt;/i&gt; a sponsor" in trace_text


@pytest.mark.parametrize("path", ["/goals/g-none", "/tasks/t-none", "/goals/' OR 1=1 --"])
async def test_an_unknown_goal_or_task_is_not_found(console: Web, path: str) -> None:
    answer = await console.get(path)
    assert answer.status == 404
