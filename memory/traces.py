"""Attempt traces: what one attempt at a task sent the model and what came back, for the operator to read.

A trace holds the prompt the attempt began with, then a step per model answer (model, tokens, cost, its
text), per tool call (the tool, its arguments, its output) and per nudge. Every text is redacted before
it is stored (I4) and clipped; an attempt keeps at most ``max_steps`` steps and a task its last ``keep``
attempts, so traces stay small whatever a model or a tool writes. A trace is written step by step: a
running or stalled attempt can be read before it ends, and an attempt killed midway leaves what it did.

What tools returned (email bodies, MCP results) is stored as the text it was: it is data, and whoever
shows it escapes it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from memory.db import Database, utcnow

log = logging.getLogger(__name__)

TRACES_SCHEMA = """
CREATE TABLE IF NOT EXISTS attempt_traces (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    outcome TEXT,
    error TEXT NOT NULL DEFAULT '',
    prompt TEXT NOT NULL DEFAULT '[]',
    steps TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS attempt_traces_task ON attempt_traces(task_id, id);
"""
CLIPPED = " […clipped]"
KEEP = 10
PROMPT_CLIP = 6_000
STEP_CLIP = 2_000
MAX_STEPS = 60


@dataclass(frozen=True)
class Trace:
    """One attempt's trace as stored."""

    id: int
    task_id: str
    attempt: int
    started_at: datetime
    ended_at: datetime | None
    outcome: str | None
    error: str
    prompt: list[dict[str, str]]
    steps: list[dict[str, Any]]

    @property
    def models(self) -> list[str]:
        """The models that answered, in order of first use."""
        return list(dict.fromkeys(str(s["model"]) for s in self.steps if s.get("step") == "model"))

    @property
    def tokens(self) -> tuple[int, int]:
        """Prompt and completion tokens over every model call."""
        calls = [s for s in self.steps if s.get("step") == "model"]
        prompt = sum(int(s.get("prompt_tokens", 0)) for s in calls)
        return prompt, sum(int(s.get("completion_tokens", 0)) for s in calls)

    @property
    def cost(self) -> float:
        """What the model calls cost."""
        return sum(float(s.get("cost", 0.0)) for s in self.steps if s.get("step") == "model")


def _trace(r: Any) -> Trace:
    ended = datetime.fromisoformat(r[4]) if r[4] else None
    return Trace(r[0], r[1], r[2], datetime.fromisoformat(r[3]), ended, r[5], r[6], json.loads(r[7]), json.loads(r[8]))


def clip(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, saying so when it was cut."""
    return text if len(text) <= limit else text[: limit - len(CLIPPED)] + CLIPPED


class TraceStore:
    """Reads and writes the traces table."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def setup(self) -> None:
        """Create the table."""
        await self._db.script(TRACES_SCHEMA)

    async def traces(self, task_id: str) -> list[Trace]:
        """A task's kept traces, newest first."""
        rows = await self._db.fetchall(
            "SELECT id, task_id, attempt, started_at, ended_at, outcome, error, prompt, steps FROM attempt_traces "
            "WHERE task_id = ? ORDER BY id DESC",
            (task_id,),
        )
        return [_trace(r) for r in rows]

    async def begin(self, task_id: str, attempt: int, prompt: list[dict[str, str]], keep: int) -> int:
        """A new trace (the task's traces beyond the newest ``keep`` are dropped); returns its id."""
        async with self._db.transaction() as tx:
            written = await tx.execute(
                "INSERT INTO attempt_traces (task_id, attempt, started_at, prompt) VALUES (?, ?, ?, ?)",
                (task_id, attempt, utcnow().isoformat(), json.dumps(prompt, ensure_ascii=False)),
            )
            await tx.execute(
                "DELETE FROM attempt_traces WHERE task_id = ? AND id NOT IN "
                "(SELECT id FROM attempt_traces WHERE task_id = ? ORDER BY id DESC LIMIT ?)",
                (task_id, task_id, keep),
            )
        assert written.lastrowid is not None
        return written.lastrowid

    async def write_steps(self, trace_id: int, steps: list[dict[str, Any]]) -> None:
        """Replace a trace's steps."""
        await self._db.write(
            "UPDATE attempt_traces SET steps = ? WHERE id = ?", (json.dumps(steps, ensure_ascii=False), trace_id)
        )

    async def end(self, trace_id: int, outcome: str, error: str) -> None:
        """Close a trace with how the attempt ended."""
        await self._db.write(
            "UPDATE attempt_traces SET ended_at = ?, outcome = ?, error = ? WHERE id = ?",
            (utcnow().isoformat(), outcome, error, trace_id),
        )


class TraceRecorder:
    """Starts a trace per attempt; everything it stores is redacted with ``redact`` first (I4)."""

    def __init__(
        self,
        store: TraceStore,
        redact: Callable[[str], str],
        keep: int = KEEP,
        prompt_clip: int = PROMPT_CLIP,
        step_clip: int = STEP_CLIP,
        max_steps: int = MAX_STEPS,
    ) -> None:
        self._store = store
        self._redact = redact
        self._keep = keep
        self._prompt_clip = prompt_clip
        self._step_clip = step_clip
        self._max_steps = max_steps

    def text(self, value: str, limit: int | None = None) -> str:
        """``value`` redacted, then clipped."""
        return clip(self._redact(value), limit or self._step_clip)

    async def start(self, task_id: str, attempt: int, messages: Iterable[dict[str, Any]]) -> AttemptTrace:
        """The trace of a new attempt that begins with ``messages``."""
        prompt = [
            {"role": str(m.get("role", "")), "content": self.text(str(m.get("content") or ""), self._prompt_clip)}
            for m in messages
        ]
        try:
            trace_id = await self._store.begin(task_id, attempt, prompt, self._keep)
        except Exception:
            log.exception("task %s: its attempt's trace could not be started; the attempt goes on without", task_id)
            return AttemptTrace(self, self._store, None, self._max_steps)
        return AttemptTrace(self, self._store, trace_id, self._max_steps)


class AttemptTrace:
    """One attempt's trace, written as the attempt goes. A write that fails is logged and recording stops
    (the attempt goes on: a trace is for reading, and the task ledger keeps the attempt's outcome)."""

    def __init__(self, recorder: TraceRecorder, store: TraceStore, trace_id: int | None, max_steps: int) -> None:
        self._recorder = recorder
        self._store = store
        self._id = trace_id or 0
        self._max = max_steps
        self._steps: list[dict[str, Any]] = []
        self._broken = trace_id is None

    @property
    def id(self) -> int:
        """The trace's row id (0 when it could not be started)."""
        return self._id

    async def model(
        self, model: str, prompt_tokens: int, completion_tokens: int, cost: float, text: str, calls: list[str]
    ) -> None:
        """A model answer: who answered, its tokens and cost, its text and the tools it called."""
        await self._add(
            {
                "step": "model",
                "model": model,
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "cost": cost,
                "text": self._recorder.text(text),
                "calls": calls,
            }
        )

    async def tool(self, name: str, args: str, output: str) -> None:
        """A tool call with its arguments and what it returned."""
        text = self._recorder.text
        await self._add({"step": "tool", "tool": name, "args": text(args), "output": text(output)})

    async def note(self, text: str) -> None:
        """What the attempt told the model between rounds (a nudge)."""
        await self._add({"step": "nudge", "text": self._recorder.text(text)})

    async def end(self, outcome: str, error: str) -> None:
        """How the attempt ended."""
        if self._broken:
            return
        try:
            await self._store.end(self._id, outcome, self._recorder.text(error))
        except Exception:
            self._broken = True
            log.exception("trace %d: could not record the end of the attempt", self._id)

    async def _add(self, step: dict[str, Any]) -> None:
        if self._broken or len(self._steps) >= self._max:
            return
        self._steps.append(step)
        if len(self._steps) == self._max:
            self._steps[-1] = {"step": "limit", "text": f"only the first {self._max - 1} steps are kept"}
        try:
            await self._store.write_steps(self._id, self._steps)
        except Exception:
            self._broken = True
            log.exception("trace %d: could not record a step; the attempt goes on without its trace", self._id)
