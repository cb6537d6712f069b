"""Attempt traces stay small and hold no secret: each text redacted then clipped, a bounded number of steps
per attempt, the last few attempts per task; a trace is readable while its attempt still runs."""

from __future__ import annotations

from pathlib import Path

from bot.logging_setup import RedactingFilter
from memory.db import open_database
from memory.traces import CLIPPED, TraceRecorder, TraceStore

SECRET = "hunter2-plain-secret"


async def test_a_trace_is_redacted_clipped_and_readable_before_its_attempt_ends(tmp_path: Path) -> None:
    async with open_database(tmp_path) as db:
        store = TraceStore(db)
        await store.setup()
        recorder = TraceRecorder(store, RedactingFilter([SECRET]).redact, prompt_clip=200, step_clip=100)
        trace = await recorder.start(
            "t1", 1, [{"role": "system", "content": "x" * 500}, {"role": "user", "content": f"key {SECRET}"}]
        )
        await trace.model("m-1", 900, 40, 0.0125, f"I will use {SECRET}", ["search_history"])
        await trace.tool("search_history", '{"query": "' + SECRET + '"}', "y" * 1000)
        running = (await store.traces("t1"))[0]
        await trace.end("retry", f"failed with https://bob:{SECRET}@example.org")
        ended = (await store.traces("t1"))[0]
    assert running.ended_at is None and running.outcome is None and len(running.steps) == 2
    assert [m["role"] for m in running.prompt] == ["system", "user"]
    assert len(running.prompt[0]["content"]) == 200 and running.prompt[0]["content"].endswith(CLIPPED)
    assert running.prompt[1]["content"] == "key [REDACTED]"
    assert running.steps[0]["text"] == "I will use [REDACTED]" and running.steps[0]["calls"] == ["search_history"]
    assert running.steps[1]["args"] == '{"query": "[REDACTED]"}'
    assert len(running.steps[1]["output"]) == 100
    assert running.models == ["m-1"] and running.tokens == (900, 40) and running.cost == 0.0125
    assert ended.outcome == "retry" and ended.ended_at is not None
    assert SECRET not in ended.error and "bob" not in ended.error


async def test_a_task_keeps_its_last_attempts_and_an_attempt_its_first_steps(tmp_path: Path) -> None:
    async with open_database(tmp_path) as db:
        store = TraceStore(db)
        await store.setup()
        recorder = TraceRecorder(store, str, keep=3, max_steps=5)
        for attempt in range(1, 6):
            trace = await recorder.start("t1", attempt, [{"role": "user", "content": f"attempt {attempt}"}])
            for n in range(attempt * 3):
                await trace.tool("current_time", "{}", f"call {n}")
        other = await recorder.start("t2", 1, [])
        kept = await store.traces("t1")
        others = await store.traces("t2")
    assert [t.attempt for t in kept] == [5, 4, 3]  # newest first; older ones dropped
    assert [len(t.steps) for t in kept] == [5, 5, 5]
    assert [s["output"] for s in kept[0].steps[:4]] == ["call 0", "call 1", "call 2", "call 3"]
    assert kept[0].steps[-1] == {"step": "limit", "text": "only the first 4 steps are kept"}
    assert [t.id for t in others] == [other.id]  # another task's traces are its own


async def test_a_trace_that_cannot_be_written_leaves_the_attempt_going(tmp_path: Path) -> None:
    async with open_database(tmp_path) as db:
        store = TraceStore(db)  # never set up: every write fails
        recorder = TraceRecorder(store, str)
        trace = await recorder.start("t1", 1, [{"role": "user", "content": "hi"}])
        await trace.model("m", 1, 1, 0.0, "answer", [])
        await trace.end("done", "")
        await store.setup()
        found = await store.traces("t1")
    assert found == []
