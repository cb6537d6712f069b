"""A scripted "brain" for the fake model: it answers the planner, each skill and the verifier by what the
request is, so goal tests do not depend on the order concurrent tasks call the model in."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from tests.fakes.openai_api import Scripted


def task(key: str, skill: str, title: str, after: tuple[str, ...] = (), instructions: str = "") -> dict[str, Any]:
    """One planned task, as the planner returns it."""
    return {
        "key": key,
        "title": title,
        "skill": skill,
        "instructions": instructions or title,
        "depends_on": list(after),
        "expected": "",
    }


def plan(
    *tasks: dict[str, Any],
    criteria: str = "a sponsor said yes",
    schedule: str | None = None,
    budget: float | None = None,
) -> dict[str, Any]:
    """A plan, as the planner returns it."""
    found: dict[str, Any] = {"criteria": criteria, "tasks": list(tasks)}
    if schedule:
        found["schedule"] = schedule
    if budget is not None:
        found["budget"] = budget
    return found


def text_of(body: dict[str, Any]) -> str:
    """Every message's text of a request, joined."""
    return "\n".join(str(m.get("content") or "") for m in body.get("messages", []))


def task_title(body: dict[str, Any]) -> str:
    """The title of the task a skill request is for ("" for other requests)."""
    first = str(task_messages(body)[0].get("content") or "")
    marker = "): "
    for line in first.splitlines():
        if line.startswith("Your task (") and marker in line:
            return line.split(marker, 1)[1]
    return ""


def met_verdict(report: str, criterion: str = "a sponsor said yes") -> dict[str, Any]:
    """A verdict that the goal is met, with evidence for its criterion (a "met" without evidence is not met)."""
    return {
        "met": True,
        "report": report,
        "evidence": [{"criterion": criterion, "met": True, "evidence": "the task results show it"}],
    }


def task_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    """A request's messages without the system message every skill shares (the task's prompt comes first)."""
    return [m for m in body.get("messages", []) if m.get("role") != "system"]


def finish(summary: str, artifacts: list[str] | None = None) -> Scripted:
    """A skill ending its task."""
    return Scripted(tool_calls=[("finish_task", {"summary": summary, "artifacts": artifacts or []})])


@dataclass
class Brain:
    """Routes each request: ``plans`` answer the planner in order, ``skills`` map a task title to a function
    of the request (so a task can act differently once its cards were decided), ``verdict`` answers the check."""

    plans: list[dict[str, Any]] = field(default_factory=list)
    skills: dict[str, Callable[[dict[str, Any]], Scripted]] = field(default_factory=dict)
    verdict: dict[str, Any] = field(default_factory=lambda: met_verdict("All done: the sponsor said yes."))
    asked: list[str] = field(default_factory=list)

    def __call__(self, body: dict[str, Any]) -> Scripted | None:
        first = str(body["messages"][0].get("content") or "")
        if first.startswith("You plan work"):
            self.asked.append("planner")
            answer = self.plans.pop(0) if len(self.plans) > 1 else self.plans[0]
            return Scripted(tool_calls=[("submit_plan", answer)])
        if first.startswith("You check a goal"):
            self.asked.append("verify")
            return Scripted(tool_calls=[("submit_verdict", self.verdict)])
        title = task_title(body)
        if title:
            self.asked.append(title)
            return self.skills[title](body) if title in self.skills else finish(f"{title}: done")
        return None


def email_then_finish(to: str, subject: str, body_text: str) -> Callable[[dict[str, Any]], Scripted]:
    """An outreach skill: propose one email; once told its card was decided, finish."""

    def answer(body: dict[str, Any]) -> Scripted:
        text = text_of(body)
        if "card " in text and ("): sent" in text or "): rejected" in text or "): expired" in text):
            return finish("emailed " + to if "): sent" in text else "the email was not approved")
        if "a card was shown to the operator" in text:
            return Scripted(content="waiting for the operator")
        return Scripted(
            tool_calls=[
                (
                    "send_email",
                    {"to": [to], "subject": subject, "body": body_text, "reason": "they sponsor newsletters"},
                )
            ]
        )

    return answer


def args_of(call: dict[str, Any]) -> dict[str, Any]:
    """The parsed arguments of a tool call in a request."""
    return dict(json.loads(call["function"]["arguments"]))
