"""What ``coo import`` may not trust in follow-ups, pipeline stages and goal evidence (docs/backup-trust.md),
beside ``bot/backup.py``, which applies it:

- a follow-up that came up as a card (``proposed`` with its approval) comes back closed: ``done`` when the
  export shows that card's email sent, ``cancelled`` otherwise. Its card was pending (the import expires it),
  decided, or its send is unknown. Kept ``proposed``, its approval id would be trusted as its card's: a line
  naming another card would be closed by that card's fate, and a reply would withdraw that card while it
  waits. A reminder that came up (no card) stays as it was: it only tells the operator. An ``open``
  follow-up never has a card (its line is refused otherwise);
- a pipeline stage or next step is only data: written back as it is, its event present in the export;
- goal evidence is input to the verifier, never a verdict: restoring it verifies nothing, and it is taken only
  for a goal and task of the same export (evidence for a goal id the export lacks would wait for a goal that
  takes that id later, and feed its verifier).

The checks return the refusal (one line naming the file and line) instead of raising, so ``bot/backup.py``
raises its own error.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

from memory.approval_lines import ApprovalLine
from memory.followups import FollowupLine, stamp
from memory.goal_evidence import EvidenceLine
from memory.goal_lines import GoalLine
from memory.pipeline import PipelineLine

Numbered = Sequence[tuple[int, Any]]


def check_new_stores(numbered: Mapping[str, Numbered], events: set[int]) -> str | None:
    """Keys unique and references present in ``followups``, ``pipeline`` and ``goal_evidence``; the first
    refusal, or None."""
    return (
        _check_followups(numbered.get("followups", []))
        or _check_pipeline(numbered.get("pipeline", []), events)
        or _check_evidence(numbered.get("goal_evidence", []), numbered.get("goals", []), events)
    )


def _check_followups(lines: Iterable[tuple[int, FollowupLine]]) -> str | None:
    seen: dict[int, int] = {}
    sent_email: dict[str, int] = {}
    for number, f in lines:
        if f.id in seen:
            return f"followups.jsonl line {number}: follow-up {f.id} is also on line {seen[f.id]}"
        seen[f.id] = number
        if f.source == "auto":
            if f.message_id in sent_email:
                return (
                    f"followups.jsonl line {number}: the email {f.message_id} has another automatic follow-up "
                    f"(line {sent_email[f.message_id]})"
                )
            sent_email[f.message_id] = number
    return None


def _check_pipeline(lines: Iterable[tuple[int, PipelineLine]], events: set[int]) -> str | None:
    contacts: dict[str, int] = {}
    moves: dict[int, int] = {}
    for number, p in lines:
        where = f"pipeline.jsonl line {number}"
        if p.contact_id in contacts:
            return f"{where}: contact {p.contact_id} is also on line {contacts[p.contact_id]}"
        contacts[p.contact_id] = number
        for move in p.stages:
            if move.id in moves:
                return f"{where}: stage move {move.id} is also on line {moves[move.id]}"
            moves[move.id] = number
        for event_id in [m.event_id for m in p.stages] + ([p.next.event_id] if p.next else []):
            if event_id not in events:
                return f"{where}: contact {p.contact_id} points to event {event_id}, which events.jsonl lacks"
    return None


def _check_evidence(
    lines: Iterable[tuple[int, EvidenceLine]], goals: Iterable[tuple[int, GoalLine]], events: set[int]
) -> str | None:
    tasks_of = {g.id: {t.id for t in g.tasks} for _, g in goals}
    sources: dict[str, int] = {}
    for number, e in lines:
        where = f"goal_evidence.jsonl line {number}"
        if e.source in sources:
            return f"{where}: the evidence {e.source} is also on line {sources[e.source]}"
        sources[e.source] = number
        if e.task_id not in tasks_of.get(e.goal_id, set()):
            return f"{where}: evidence for task {e.task_id} of goal {e.goal_id}, which goals.jsonl does not have"
        if e.event_id not in events:
            return f"{where}: the evidence {e.source} points to event {e.event_id}, which events.jsonl lacks"
    return None


def close_proposed_cards(
    followups: Iterable[FollowupLine], approvals: Iterable[ApprovalLine], now: datetime
) -> tuple[list[FollowupLine], list[str]]:
    """The follow-ups as restored, and the ids of those closed (see the module docstring)."""
    sent = {a.root_id for a in approvals if a.outbox is not None and a.outbox.state == "sent"}
    restored, closed = [], []
    for f in followups:
        if f.state == "proposed" and f.approval_id is not None:
            state = "done" if f.approval_id in sent else "cancelled"
            f = f.model_copy(update={"state": state, "updated_at": stamp(now)})
            closed.append(str(f.id))
        restored.append(f)
    return restored, closed
