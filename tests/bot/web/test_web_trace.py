"""A stalled task's trace in a real headless Chromium, and the goal buttons Skip and Cancel.

The task runs for real: the runner claims it, its skill's subgraph asks a fake OpenAI-compatible server, calls
a tool, and ends with a question for the operator, so the task is blocked. The trace page then shows the
model, the prompt (with a planted secret redacted), the tool call with its arguments and output, the tokens
and the cost; what the model and the tools wrote is shown as text, never as markup."""

from __future__ import annotations

import asyncio
import secrets
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from memory.tasks import Task
from tests.bot.web.browser import chromium, needs_chromium
from tests.bot.web.helpers import OPERATOR, Console, client, csrf_of, running, sign_in
from tests.conftest import llm_settings
from tests.fakes.openai_api import FakeOpenAI, Scripted
from tests.fakes.polling import eventually_async
from tests.graph.goals.goal_helpers import task_title

# A configured secret of no known shape (only its value tells it), and one known by its shape only: a Stripe
# test-mode key made afresh for each run, so no key-shaped value is committed.
API_KEY = "correct-horse-battery-staple-4471"
STRIPE_SHAPED = "sk_" + "test_" + secrets.token_hex(12)
HOSTILE = "<img src=x onerror=alert(1)><b>bold</b>"
TITLE = "Find ten likely sponsors"
QUESTION = "Which sponsorship price may I offer?"
FAST = {"poll_s": 0.02, "progress_interval_s": 0, "retry_base_s": 0, "lease_s": 30}


def stalls(body: dict[str, Any]) -> Scripted | None:
    """The research skill looks in the history once, then asks the operator (the task is blocked)."""
    if task_title(body) != TITLE:
        return None
    if not any(m.get("role") == "tool" for m in body["messages"]):
        return Scripted(content=f"Looking first. {HOSTILE}", tool_calls=[("search_history", {"query": "sponsored"})])
    return Scripted(tool_calls=[("finish_task", {"status": "needs_operator", "summary": QUESTION, "artifacts": []})])


@asynccontextmanager
async def stalled(tmp_path: Path) -> AsyncIterator[tuple[Console, Task]]:
    """The product with a goal whose research task ran once and is blocked on a question."""
    async with FakeOpenAI(api_key=API_KEY) as fake, running(tmp_path, llm=llm_settings(fake), tasks=FAST) as coo:
        fake.responder = stalls
        await coo.say(f"{HOSTILE} sponsored us in May")  # found by the task's search: a tool's output that is markup
        tasks = coo.rt.tasks
        goal = await tasks.create_goal("Two sponsors for the December issue", "rec:1001", OPERATOR, "active")
        instructions = f"Use the key {API_KEY} and {STRIPE_SHAPED} if a search needs one."
        spec = {"key": "research", "title": TITLE, "skill": "research", "instructions": instructions}
        other = {"key": "draft", "title": "Draft the pitch", "skill": "drafting", "instructions": "y"}
        other["depends_on"] = ["research"]
        task, _ = await tasks.add_run(goal.id, [spec, other])
        coo.rt.task_runner.wake()
        await eventually_async(lambda: _state(coo, task.id, "blocked"), timeout=15, what="the task to be blocked")
        coo.rt.controls.paused = True  # the runner starts nothing more: each state the buttons leave can be seen
        yield coo, task


@needs_chromium
async def test_a_blocked_tasks_trace_shows_model_redacted_prompt_tools_tokens_and_cost(tmp_path: Path) -> None:
    async with stalled(tmp_path) as (coo, task), chromium(tmp_path / "shots") as browser:
        await browser.get(await coo.link())
        await browser.click("#sign-in")  # Today: the blocked task links to its trace
        await browser.click(f'a[href="/tasks/{task.id}"]')
        assert browser.url.endswith(f"/tasks/{task.id}")
        await browser.screenshot("trace")
        await browser.click("details.prompt summary", navigates=False)  # an open details also stops live reloads
        page = await browser.text()
        source = await asyncio.to_thread(lambda: browser._driver.page_source)
        model = await browser.text(".attempt .models")
        tokens = await browser.text(".attempt .tokens")
        cost = await browser.text(".attempt .cost")
        args = await browser.text(".step.tool .args")
        output = await browser.text(".step.tool .output")
        injected = await browser.count(".steps img, .steps b, .prompt img")
        stored = _stored_traces(tmp_path / "data" / "coo.sqlite")
    assert model == "fake-model"
    assert TITLE in page and QUESTION in page  # the task's prompt and why it is blocked
    assert "[REDACTED]" in page
    for secret in (API_KEY, STRIPE_SHAPED):
        assert secret not in source and secret not in stored
    assert "Tool: search history" in page and '"query": "sponsored"' in args
    assert "sponsored us in May" in output
    assert tokens.endswith(" out") and " in, " in tokens and not tokens.startswith("0 in")
    assert cost.endswith(" USD") and cost != "0.00 USD"
    assert HOSTILE in page  # shown as the text it is ...
    assert injected == 0  # ... never as markup
    assert "Retry" in page and "Skip" in page


@needs_chromium
async def test_skip_and_cancel_work_and_are_audited(tmp_path: Path) -> None:
    async with stalled(tmp_path) as (coo, task), chromium(tmp_path / "shots") as browser:
        await browser.get(await coo.link())
        await browser.click("#sign-in")
        await browser.get(coo.base + "/goals")
        await browser.click(f'[id="task-{task.id}"] button.skip')
        assert f"Skipped task {TITLE}." in await browser.text()
        assert browser.url == coo.base + "/goals"
        assert "Find ten likely sponsors" in await browser.text(".state-done")
        skipped = await coo.rt.tasks.task(task.id)
        await browser.get(f"{coo.base}/goals/{task.goal_id}")
        await browser.screenshot("goal")
        await browser.click("form.cancel-goal button")
        assert browser.url == f"{coo.base}/goals/{task.goal_id}"
        assert "Cancelled the goal Two sponsors for the December issue." in await browser.text()
        assert await browser.count("form.cancel-goal") == 0
        goal = await coo.rt.tasks.goal(task.goal_id)
        tasks = await coo.rt.tasks.tasks(task.goal_id)
        done_events = await coo.rt.db.events(kind="task.done")
        cancelled = await coo.rt.db.events(kind="goal.cancelled")
        audit = [
            (e.kind, e.actor) for e in await coo.rt.db.events(limit=10_000) if e.kind in ("web.skip", "web.cancel")
        ]
    assert skipped is not None and skipped.state == "done" and skipped.result
    assert skipped.result["summary"] == "skipped by the operator"
    assert goal is not None and goal.status == "cancelled"
    assert [t.state for t in tasks] == ["done", "cancelled"]
    assert [e.actor for e in done_events] == [OPERATOR] and [e.actor for e in cancelled] == [OPERATOR]
    assert audit == [("web.skip", OPERATOR), ("web.cancel", OPERATOR)]


async def test_a_second_cancel_changes_nothing_and_says_so(tmp_path: Path) -> None:
    async with stalled(tmp_path) as (coo, task), client() as http:
        await sign_in(http, await coo.link())
        form = {"csrf": await csrf_of(http, coo.base + "/goals"), "back": "goal"}
        for _ in range(2):
            async with http.post(f"{coo.base}/goals/{task.goal_id}/cancel", data=form) as page:
                text = await page.text()
        cancelled = await coo.rt.db.events(kind="goal.cancelled")
        audit = await coo.rt.db.events(kind="web.cancel")
    assert "That goal is already cancelled; nothing was changed." in text
    assert len(cancelled) == 1 and len(audit) == 1


async def test_skip_and_cancel_without_the_csrf_token_change_nothing(tmp_path: Path) -> None:
    async with stalled(tmp_path) as (coo, task), client() as http:
        await sign_in(http, await coo.link())
        for path in (f"/tasks/{task.id}/skip", f"/goals/{task.goal_id}/cancel", f"/tasks/{task.id}/retry"):
            async with http.post(coo.base + path, data={}) as no_token:
                assert no_token.status == 403, path
            async with http.post(coo.base + path, data={"csrf": "0" * 64}) as bad_token:
                assert bad_token.status == 403, path
        after = await coo.rt.tasks.task(task.id)
        goal = await coo.rt.tasks.goal(task.goal_id)
        forged = await coo.rt.db.events(kind="web.forged")
    assert after is not None and after.state == "blocked"
    assert goal is not None and goal.status == "active"
    assert len(forged) == 6


async def test_skip_of_a_task_that_is_not_blocked_is_refused(tmp_path: Path) -> None:
    async with stalled(tmp_path) as (coo, task), client() as http:
        await sign_in(http, await coo.link())
        csrf = await csrf_of(http, coo.base + "/goals")
        other = [t for t in await coo.rt.tasks.tasks(task.goal_id) if t.id != task.id][0]
        async with http.post(f"{coo.base}/tasks/{other.id}/skip", data={"csrf": csrf}) as refused:
            assert "That task is not blocked any more; nothing was changed." in await refused.text()
        async with http.post(f"{coo.base}/tasks/no-such-task/skip", data={"csrf": csrf}) as missing:
            assert missing.status == 404
        still = await coo.rt.tasks.task(other.id)
    assert still is not None and still.state == "todo"


async def _state(coo: Console, task_id: str, state: str) -> bool:
    task = await coo.rt.tasks.task(task_id)
    return task is not None and task.state == state


def _stored_traces(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        return "\n".join(str(r) for r in conn.execute("SELECT prompt, steps, error FROM attempt_traces"))
