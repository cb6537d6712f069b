"""The fake model's weak mode: it answers as small real models do (gpt-4o-mini on a bad day, llama3.1:8b through
Ollama). Each goal gets one fault, named or chosen from the goal's text: a tool call written as text, arguments
that are not JSON, wrong argument names, an empty answer after a tool result, output cut at the limit, prose
instead of finish_task, a question for the operator, a plan with ``"T1"``/``null``/``""``, a verdict that is not
JSON or says "met" without evidence.

It keeps the truth: which tasks it really finished (a well-formed finish_task with status done, in a tool call or
in text) and which goals it really judged met (a verdict with evidence). ``GET /_fake/truth`` serves it in the
standalone process, so a benchmark can count false successes: a task the product marked done that the model never
finished, a goal reported done that the verifier never showed to be met.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.openai_api import Scripted

FAULTS = (
    "ok",
    "text_call",
    "bad_json",
    "wrong_args",
    "empty_after_tool",
    "cut",
    "prose_then_finish",
    "prose_forever",
    "empty_forever",
    "needs_operator",
    "failed_forever",
    "plan_mess",
    "verdict_prose",
    "met_no_evidence",
)
RECOVERABLE = frozenset({"ok", "text_call", "bad_json", "wrong_args", "empty_after_tool", "cut", "prose_then_finish"})
"""Faults a robust agent gets past on its own (the goal can end met); the others need the operator or end unmet."""
PROSE = "I have finished the task."
NEVER_PROPOSE = frozenset({"prose_forever", "empty_forever", "needs_operator", "failed_forever"})


def fault_for(goal: str) -> str:
    """The fault a goal gets when none is named: ``(weak: <fault>)`` in its text, else one by its text's hash."""
    named = re.search(r"\(weak: ([a-z_]+)\)", goal)
    if named and named.group(1) in FAULTS:
        return named.group(1)
    return FAULTS[int(hashlib.sha256(goal.encode()).hexdigest(), 16) % len(FAULTS)]


def _data_after(text: str, marker: str) -> str:
    tail = text.split(marker, 1)[1] if marker in text else text
    found = re.search(r"<data>\n(.*?)\n</data>", tail, re.DOTALL)
    return found.group(1).strip() if found else ""


def _all_text(body: dict[str, Any]) -> str:
    return "\n".join(str(m.get("content") or "") for m in body.get("messages", []))


def _task_of(body: dict[str, Any]) -> tuple[str, str]:
    """(goal, task title) of a skill request, or ("", "")."""
    for message in body.get("messages", [])[:3]:
        text = str(message.get("content") or "")
        goal = re.search(r"^Goal: (.*)$", text, re.MULTILINE)
        title = re.search(r"^Your task \([a-z_]+\): (.*)$", text, re.MULTILINE)
        if goal and title:
            return goal.group(1).strip(), title.group(1).strip()
    return "", ""


def _offered_skills(body: dict[str, Any]) -> list[str]:
    for tool in body.get("tools", []):
        if tool["function"]["name"] == "submit_plan":
            params = tool["function"]["parameters"]
            try:
                return list(params["properties"]["tasks"]["items"]["properties"]["skill"]["enum"])
            except KeyError:
                return []
    return []


@dataclass
class WeakModel:
    """A responder for :class:`tests.fakes.openai_api.FakeOpenAI` (its ``responder``)."""

    fault: str | None = None
    """One fault for every goal (None: each goal's own, see :func:`fault_for`)."""
    finished: set[tuple[str, str]] = field(default_factory=set)
    met: set[str] = field(default_factory=set)
    calls: list[str] = field(default_factory=list)

    def fault_of(self, goal: str) -> str:
        """The fault this goal gets."""
        return self.fault or fault_for(goal)

    def __call__(self, body: dict[str, Any]) -> Scripted | None:
        first = str(body["messages"][0].get("content") or "")
        if first.startswith("You plan work"):
            self.calls.append("planner")
            return self._plan(_data_after(first, "Goal ("), _offered_skills(body))
        if first.startswith("You check a goal"):
            self.calls.append("verify")
            return self._verdict(_data_after(first, "Goal ("), _data_after(first, "What happened"))
        goal, title = _task_of(body)
        if title:
            self.calls.append(title)
            return self._skill(goal, title, body)
        return None

    # -- the planner -----------------------------------------------------------------------------
    def _plan(self, goal: str, skills: list[str]) -> Scripted:
        first, second = _skills_for(goal, skills)
        tasks = [
            {"key": "t1", "title": f"Look up what {goal[:40]} needs", "skill": first, "instructions": "Find it."},
            {
                "key": "t2",
                "title": f"Do {goal[:40]}",
                "skill": second,
                "instructions": "Do it.",
                "depends_on": ["t1"],
            },
        ]
        plan: dict[str, Any] = {"criteria": "each task reports its result", "tasks": tasks}
        if self.fault_of(goal) == "plan_mess":
            tasks[0] |= {"Key": "T1", "depends_on": None, "expected": "", "priority": "high"}
            del tasks[0]["key"]
            tasks[1] |= {"key": "T2", "depends_on": "T1"}
            plan = {"Criteria": plan["criteria"], "tasks": tasks, "due": "", "schedule": "none", "notes": None}
        return Scripted(tool_calls=[("submit_plan", plan)])

    # -- a task's skill --------------------------------------------------------------------------
    def _skill(self, goal: str, title: str, body: dict[str, Any]) -> Scripted:
        fault = self.fault_of(goal)
        messages = body.get("messages", [])
        address = re.search(r"[\w.+-]+@[\w-]+\.[\w.]+", goal)
        if "Your task (outreach)" in _all_text(body) and address and fault not in NEVER_PROPOSE:
            text = _all_text(body)
            if "a card was shown to the operator" in text or "do not propose it again" in text:
                return Scripted(content="I proposed the email; waiting for the operator.")
            if not re.search(r"\): (sent|rejected|expired|failed|unknown)", text):
                email = {"to": address.group(0), "subject": "A short note", "body": "Hello,\n\nRita", "reason": title}
                return Scripted(tool_calls=[("send_email", email)])
            # Decided (a new attempt, told in its notes): from here it ends as its fault says, like any task.
        rounds = sum(m.get("role") == "assistant" for m in messages)
        done = {"status": "done", "summary": f"{title}: done", "artifacts": []}
        if fault == "prose_forever":
            return Scripted(content=PROSE)
        if fault == "empty_forever":
            return Scripted(content="")
        if fault == "needs_operator":
            question = {"status": "needs_operator", "summary": "Which customer list should I use?", "artifacts": []}
            return Scripted(tool_calls=[("finish_task", question)])
        if fault == "failed_forever":
            failed = {"status": "failed", "summary": "there is nothing to work from", "artifacts": []}
            return Scripted(tool_calls=[("finish_task", failed)])
        if rounds == 0:
            first = self._first_fault(fault, title, done)
            if first is not None:
                if fault == "text_call":
                    self.finished.add((goal, title))
                return first
        if fault == "empty_after_tool" and rounds == 1:
            return Scripted(content="")
        self.finished.add((goal, title))
        return Scripted(tool_calls=[("finish_task", done)])

    def _first_fault(self, fault: str, title: str, done: dict[str, Any]) -> Scripted | None:
        if fault == "text_call":
            return Scripted(content='{"name": "finish_task", "parameters": ' + json.dumps(done) + "}")
        if fault == "bad_json":
            broken = '{"summary": "' + title + ' done", "artifacts": ['
            return Scripted(tool_calls=[("finish_task", {})], raw_arguments=[broken])
        if fault == "wrong_args":
            return Scripted(tool_calls=[("finish_task", {"result": "done", "files": []})])
        if fault == "empty_after_tool":
            return Scripted(tool_calls=[("find_contact", {"query": "Ana"})])
        if fault == "cut":
            return Scripted(content="Here is everything I found: " + "lorem ipsum " * 300, finish_reason="length")
        if fault == "prose_then_finish":
            return Scripted(content=PROSE)
        return None

    # -- the verifier ----------------------------------------------------------------------------
    def _verdict(self, goal: str, facts: str) -> Scripted:
        fault = self.fault_of(goal)
        if fault == "verdict_prose":
            return Scripted(content="Everything looks great, the goal is met!")
        if fault == "met_no_evidence":
            return Scripted(tool_calls=[("submit_verdict", {"met": True, "report": "All good."})])
        tasks = [line for line in facts.splitlines() if line.startswith("- t")]
        shown = bool(tasks) and all("[done]" in line for line in tasks)
        evidence = [{"criterion": "each task reports its result", "met": shown, "evidence": "; ".join(tasks)[:900]}]
        if shown:
            self.met.add(goal)
        report = "Every task reported its result." if shown else "Some tasks did not finish."
        return Scripted(tool_calls=[("submit_verdict", {"met": shown, "report": report, "evidence": evidence})])

    def truth(self) -> dict[str, Any]:
        """What the model really finished and judged met."""
        return {"finished": sorted(f"{g}\x00{t}" for g, t in self.finished), "met": sorted(self.met)}


def _skills_for(goal: str, offered: list[str]) -> tuple[str, str]:
    """The skills of a goal's two tasks, by what it asks (only skills the planner was offered)."""
    lowered = goal.lower()
    wanted = "research"
    for word, skill in (("invoice", "billing"), ("email", "outreach"), ("draft", "draft"), ("newsletter", "draft")):
        if word in lowered:
            wanted = skill
            break
    fallback = "records" if wanted == "billing" else "draft"  # billing without invoicing: the deal's record
    second = wanted if wanted in offered or not offered else fallback
    return ("research" if "research" in offered or not offered else offered[0]), second


def truth_routes(model: WeakModel) -> list[web.RouteDef]:
    """``GET /_fake/truth``: what the weak model really finished and judged met (see :meth:`WeakModel.truth`)."""

    async def truth(_: web.Request) -> web.Response:
        return web.json_response(model.truth())

    return [web.get("/_fake/truth", truth)]
