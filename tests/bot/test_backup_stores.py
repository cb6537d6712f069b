"""What ``coo import`` may not trust in follow-ups, pipeline stages and goal evidence (bot/backup_stores.py),
checked on lines as a real export holds them: duplicates and dangling references are refused with one line
naming the file and line; a follow-up whose card came up comes back closed."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bot.backup_stores import check_new_stores, close_proposed_cards
from memory.approval_lines import ApprovalLine, OutboxLine
from memory.db import open_database
from memory.followups import FollowupLine
from memory.goal_evidence import EvidenceLine
from memory.goal_lines import GoalLine, GoalLines
from memory.pipeline import PipelineLine
from memory.tasks import TaskLedger

NOW = datetime(2026, 3, 3, 8, 0, tzinfo=UTC)


def followup(followup_id: int, **changes: Any) -> FollowupLine:
    values: dict[str, Any] = {
        "id": followup_id, "contact": "Ana", "email": "ana@example.org", "what": "the proposal",
        "due_at": "2026-03-05T09:00:00+00:00", "source": "manual", "message_id": "", "subject": "", "refs": [],
        "state": "open", "approval_id": None, "delivered": False,
        "created_at": "2026-03-02T12:00:00+00:00", "updated_at": "2026-03-02T12:00:00+00:00",
    }  # fmt: skip
    return FollowupLine.model_validate({**values, **changes})


def pipeline(contact_id: str, event_id: int, move_id: int = 1) -> PipelineLine:
    stage = {"id": move_id, "contact_id": contact_id, "stage": "lead", "actor": "op", "reason": "",
             "at": "2026-03-02T12:00:00+00:00", "event_id": event_id}  # fmt: skip
    return PipelineLine.model_validate({"contact_id": contact_id, "stages": [stage], "next": None})


def evidence(source: str, goal_id: str, task_id: str, event_id: int) -> EvidenceLine:
    return EvidenceLine(
        source=source, goal_id=goal_id, task_id=task_id, fact="sent", event_id=event_id, at=NOW.isoformat()
    )


async def exported_goal(tmp_path: Path) -> GoalLine:
    """A goal with one task, as the goal ledger dumps it into an export."""
    async with open_database(tmp_path) as db:
        ledger = TaskLedger(db)
        await ledger.setup()
        goal = await ledger.create_goal("find a sponsor", "s", "op", goal_id="g1")
        await ledger.add_run(goal.id, [{"key": "t1", "title": "Look", "skill": "research", "instructions": "-"}])
        [line] = await GoalLines(db).dump()
    return GoalLine.model_validate(line)


def test_a_consistent_export_passes() -> None:
    numbered: dict[str, list[tuple[int, Any]]] = {
        "followups": [(1, followup(1)), (2, followup(2, source="auto", message_id="<m1@x>"))],
        "pipeline": [(1, pipeline("c1", 10))],
    }
    assert check_new_stores(numbered, {10}) is None
    assert check_new_stores({}, set()) is None


def test_a_followup_twice_is_refused_naming_both_lines() -> None:
    refused = check_new_stores({"followups": [(1, followup(7)), (4, followup(7))]}, set())
    assert refused == "followups.jsonl line 4: follow-up 7 is also on line 1"


def test_two_automatic_followups_of_one_email_are_refused() -> None:
    lines = [(1, followup(1, source="auto", message_id="<m1@x>")), (2, followup(2, source="auto", message_id="<m1@x>"))]
    refused = check_new_stores({"followups": lines}, set())
    assert refused == "followups.jsonl line 2: the email <m1@x> has another automatic follow-up (line 1)"


def test_pipeline_duplicates_and_missing_events_are_refused() -> None:
    twice = check_new_stores({"pipeline": [(1, pipeline("c1", 10)), (2, pipeline("c1", 10, move_id=2))]}, {10})
    move_twice = check_new_stores({"pipeline": [(1, pipeline("c1", 10)), (2, pipeline("c2", 10))]}, {10})
    dangling = check_new_stores({"pipeline": [(3, pipeline("c1", 11))]}, {10})
    assert twice == "pipeline.jsonl line 2: contact c1 is also on line 1"
    assert move_twice == "pipeline.jsonl line 2: stage move 1 is also on line 1"
    assert dangling == "pipeline.jsonl line 3: contact c1 points to event 11, which events.jsonl lacks"


async def test_evidence_is_taken_only_for_a_goal_and_task_of_the_same_export(tmp_path: Path) -> None:
    goal = await exported_goal(tmp_path)
    task_id = goal.tasks[0].id
    goals = [(1, goal)]

    def check(*lines: EvidenceLine) -> str | None:
        return check_new_stores({"goals": goals, "goal_evidence": list(enumerate(lines, 1))}, {5})

    assert check(evidence("e1", "g1", task_id, 5)) is None
    assert check(evidence("e1", "g-other", task_id, 5)) == (
        f"goal_evidence.jsonl line 1: evidence for task {task_id} of goal g-other, which goals.jsonl does not have"
    )
    assert check(evidence("e1", "g1", task_id, 6)) == (
        "goal_evidence.jsonl line 1: the evidence e1 points to event 6, which events.jsonl lacks"
    )
    assert check(evidence("e1", "g1", task_id, 5), evidence("e1", "g1", task_id, 5)) == (
        "goal_evidence.jsonl line 2: the evidence e1 is also on line 1"
    )


def test_a_followup_whose_card_came_up_comes_back_closed_by_its_cards_fate() -> None:
    """Sent: done. Pending, decided or unknown: cancelled. A reminder (no card) and an open one stay."""
    sent = ApprovalLine.model_construct(root_id="a-sent", outbox=OutboxLine.model_construct(state="sent"))
    unknown = ApprovalLine.model_construct(root_id="a-unknown", outbox=OutboxLine.model_construct(state="unknown"))
    lines = [
        followup(1, state="proposed", approval_id="a-sent"),
        followup(2, state="proposed", approval_id="a-unknown"),
        followup(3, state="proposed", approval_id="a-missing"),
        followup(4, state="proposed", approval_id=None),
        followup(5),
    ]
    restored, closed = close_proposed_cards(lines, [sent, unknown], NOW)
    assert [f.state for f in restored] == ["done", "cancelled", "cancelled", "proposed", "open"]
    assert closed == ["1", "2", "3"]
    assert restored[0].updated_at == "2026-03-03T08:00:00+00:00" and restored[4] == lines[4]
