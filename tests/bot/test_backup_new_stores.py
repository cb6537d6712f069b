"""Follow-ups, pipeline stages and goal evidence in ``coo export`` / ``coo import``: a running bot's rows come
back (``/followups`` and ``/pipeline`` show them), a follow-up whose card came up comes back closed, never able
to act, evidence comes back only for a goal the export has and judges nothing, and bad lines are refused."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.backup import ImportRefused, import_all
from bot.export import export_all
from bot.followups import LAST_CHECK, FollowupsLoop
from bot.runtime import open_runtime
from graph.followups.book import FollowupBook
from graph.followups.service import DueFollowups
from graph.followups.settings import FollowupsSettings
from memory.followups import FollowupStore
from memory.goal_evidence import EvidenceStore
from memory.records import Records
from tests.bot.test_backup import EVENT, GOAL, OPERATOR, RECORD, lines, spec, write_export
from tests.bot.test_invoice_flow import button, inbound, press
from tests.conftest import DateClock, RecordingChannel, make_settings
from tests.fakes.polling import eventually, eventually_async
from tests.fakes.smtp_server import SMTPServer

FAST = {"backoff_base_s": 0.02, "poll_s": 0.05}
NEW_STORES = ("followups", "pipeline", "goal_evidence")


async def _seed(data_dir: Path, smtp: SMTPServer) -> dict[str, Any]:
    """A running bot with follow-ups in every state a backup can catch, a contact's stage moves and next step,
    and a failed goal with a paid invoice as evidence."""
    settings = make_settings(data_dir, smtp=smtp.settings(), outbox=FAST, followups={"check_s": 86400})
    async with open_runtime(settings, console=False) as rt:
        await eventually_async(lambda: rt.control.get(LAST_CHECK), what="the runtime's first due check")
        chan = RecordingChannel("rec")
        rt.dispatcher.attach(chan)

        async def say(text: str) -> str:
            await rt.dispatcher.handle(inbound(text, kind="command"))
            return chan.sent[-1].text

        await Records(rt.db).upsert("contact", {"name": "Ana Silva", "emails": ["ana@example.org"]}, OPERATOR)
        await say("/followup Carla 3d | the venue")  # a reminder, open
        await say("/followup Ana Silva 3d | the proposal")  # its card is approved and sent
        await say("/followup ana@example.org 5d | the contract")  # its card is still pending at export
        await say("/followup ana@example.org 30d | the renewal")  # open
        store = FollowupStore(rt.db)
        # An hour past the latest one meant to be due (09:00 five days on). A clock set from the real time of
        # day instead was not yet there when the test ran between midnight and 08:00 UTC.
        [contract] = [f for f in await store.listing(("open",)) if f.what == "the contract"]
        clock = DateClock(contract.due + timedelta(hours=1))
        service = DueFollowups(
            FollowupBook(store, Records(rt.db), "UTC", clock), rt.approvals, FollowupsSettings(), "UTC", clock
        )
        await FollowupsLoop(service, rt.approval_ui, rt.control, rt.messenger, 86400).check()
        [proposal] = [m for m in chan.sent if m.buttons and "follow up on the proposal" in m.text]
        await press(rt, button(proposal, "Approve"))
        await smtp.wait_delivered(1)
        await eventually(lambda: any("Sent at" in m.text for m in chan.sent if m.edit_message_id), what="sent")
        states = {f.what: f.state for f in await store.listing(("open", "proposed", "done", "cancelled"))}
        assert states == {
            "the venue": "proposed", "the proposal": "proposed", "the contract": "proposed", "the renewal": "open",
        }  # fmt: skip

        moves = [await say("/pipeline Ana Silva lead"), await say("/pipeline Ana Silva proposal")]
        assert moves[-1] == "Ana Silva: lead -> proposal."
        await say("/pipeline Ana Silva next 3d | send the contract")

        goal = await rt.tasks.create_goal("Bill Acme for the audit", OPERATOR, OPERATOR)
        [task] = await rt.tasks.add_run(goal.id, [spec("bill")])
        await rt.tasks.update_goal(goal.id, status="failed", report="not paid yet")
        fact = "task bill: its invoice was paid at Stripe (INV-7; event evt_1)"
        evidence = EvidenceStore(rt.db)
        await evidence.setup()  # as the Stripe receivables part does when it is configured
        assert await evidence.add(f"stripe:evt_1:{task.id}", goal.id, task.id, fact, "stripe")
        return {"goal": goal.id, "task": task.id, "fact": fact, "pipeline": await say("/pipeline Ana Silva")}


async def test_followups_pipeline_and_evidence_of_a_running_bot_come_back_and_nothing_acts(tmp_path: Path) -> None:
    with SMTPServer() as smtp:
        seeded = await _seed(tmp_path / "old", smtp)
        first = await export_all(tmp_path / "old", tmp_path / "first")
        assert (first["followups"], first["pipeline"], first["goal_evidence"]) == (4, 1, 1)

        restored = make_settings(tmp_path / "new", smtp=smtp.settings(), outbox=FAST, followups={"check_s": 86400})
        counts = await import_all(tmp_path / "first", restored)
        assert (counts["followups"], counts["pipeline"], counts["goal_evidence"]) == (4, 1, 1)
        assert counts["closed follow-ups (their cards had come up)"] == 2
        await export_all(tmp_path / "new", tmp_path / "second")
        before = {f["what"]: f for f in lines(tmp_path / "first", "followups")}
        after = {f["what"]: f for f in lines(tmp_path / "second", "followups")}
        # the card that was sent is done, the one still pending (the import expires it) cancelled
        assert {w: f["state"] for w, f in after.items()} == {
            "the venue": "proposed", "the proposal": "done", "the contract": "cancelled", "the renewal": "open",
        }  # fmt: skip
        for what in ("the venue", "the renewal"):
            assert after[what] == before[what]
        for what in ("the proposal", "the contract"):
            assert {**after[what], "state": "-", "updated_at": "-"} == {**before[what], "state": "-", "updated_at": "-"}
        assert lines(tmp_path / "second", "pipeline") == lines(tmp_path / "first", "pipeline")
        assert lines(tmp_path / "second", "goal_evidence") == lines(tmp_path / "first", "goal_evidence")
        restored_event = lines(tmp_path / "second", "events")[-1]
        assert restored_event["kind"] == "backup.restored"
        assert sorted(restored_event["payload"]["closed_followups"]) == sorted(
            str(before[w]["id"]) for w in ("the proposal", "the contract")
        )

        async with open_runtime(restored, console=False) as rt:
            await eventually_async(lambda: rt.control.get(LAST_CHECK), what="the restored runtime's first due check")
            chan = RecordingChannel("rec")
            rt.dispatcher.attach(chan)
            await rt.dispatcher.handle(inbound("/followups", kind="command"))
            listing = chan.sent[-1].text
            await rt.dispatcher.handle(inbound("/pipeline Ana Silva", kind="command"))
            pipeline = chan.sent[-1].text
            goal = await rt.tasks.goal(seeded["goal"])
            evidence = await EvidenceStore(rt.db).for_goal(seeded["goal"])
        assert listing.splitlines()[0] == "Open follow-ups (2):"
        assert "Carla · the venue (came up: card or reminder sent)" in listing and "the renewal" in listing
        assert pipeline == seeded["pipeline"] and "lead" in pipeline and "send the contract" in pipeline
        assert goal is not None and goal.status == "failed"  # evidence restored judges nothing
        assert [(e.task_id, e.fact) for e in evidence] == [(seeded["task"], seeded["fact"])]
        assert len(smtp.delivered) == 1  # nothing restored sent anything


FOLLOWUP = {
    "id": 1, "contact": "Ana", "email": "ana@example.org", "what": "the proposal",
    "due_at": "2026-01-05T09:00:00+00:00", "source": "manual", "message_id": "", "subject": "", "refs": [],
    "state": "open", "approval_id": None,
    "delivered": False, "created_at": "2026-01-02T03:04:05+00:00", "updated_at": "2026-01-02T03:04:05+00:00",
}  # fmt: skip
MOVE = {
    "id": 1, "contact_id": "c1", "stage": "lead", "actor": OPERATOR, "reason": "", "event_id": 1,
    "at": "2026-01-02T03:04:05.123456+00:00",
}  # fmt: skip
STEP = {
    "contact_id": "c1", "what": "call", "due": "2026-01-09", "actor": OPERATOR, "event_id": 1,
    "at": "2026-01-02T03:04:05+00:00",
}  # fmt: skip
PIPELINE = {"contact_id": "c1", "stages": [MOVE], "next": STEP}
EVIDENCE = {
    "source": "stripe:evt_1:g-one.1.a", "goal_id": "g-one", "task_id": "g-one.1.a", "fact": "paid", "event_id": 1,
    "at": "2026-01-02T03:04:05+00:00",
}  # fmt: skip
AUTO = {**FOLLOWUP, "source": "auto", "message_id": "<m1@example.org>"}


def _export(tmp_path: Path, **rows: list[Any]) -> Path:
    source = write_export(tmp_path / "export", events=[EVENT], records=[RECORD])
    for name, items in rows.items():
        (source / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in items))
    return source


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        (
            {"followups": [{**FOLLOWUP, "approval_id": "ap-1"}]},
            "followups.jsonl line 1: follow-up 1 is open, so it cannot have a card or have been shown",
        ),
        (
            {"followups": [{**FOLLOWUP, "delivered": True}]},
            "followups.jsonl line 1: follow-up 1 is open, so it cannot have a card or have been shown",
        ),
        ({"followups": [FOLLOWUP, FOLLOWUP]}, "followups.jsonl line 2: follow-up 1 is also on line 1"),
        (
            {"followups": [AUTO, {**AUTO, "id": 2}]},
            "followups.jsonl line 2: the email <m1@example.org> has another automatic follow-up (line 1)",
        ),
        ({"followups": [{**FOLLOWUP, "due_at": "2026-01-05T09:00:00"}]}, "line 1: due_at: a time needs its zone"),
        ({"followups": [{**FOLLOWUP, "state": "sent"}]}, "followups.jsonl line 1: state: Input should be"),
        (
            {"pipeline": [{**PIPELINE, "next": {**STEP, "event_id": 9}}]},
            "pipeline.jsonl line 1: contact c1 points to event 9, which events.jsonl lacks",
        ),
        (
            {"pipeline": [PIPELINE, {**PIPELINE, "next": None}]},
            "pipeline.jsonl line 2: contact c1 is also on line 1",
        ),
        (
            {"pipeline": [{**PIPELINE, "stages": [{**MOVE, "contact_id": "c2"}]}]},
            "pipeline.jsonl line 1: a row of contact c2 is listed under contact c1",
        ),
        ({"pipeline": [{**PIPELINE, "stages": [{**MOVE, "stage": "won"}]}]}, "line 1: stages.0.stage: Input should"),
        (
            {"goal_evidence": [EVIDENCE]},
            "goal_evidence.jsonl line 1: evidence for task g-one.1.a of goal g-one, which goals.jsonl does not have",
        ),
        (
            {"goals": [GOAL], "goal_evidence": [{**EVIDENCE, "task_id": "g-one.1.z"}]},
            "goal_evidence.jsonl line 1: evidence for task g-one.1.z of goal g-one, which goals.jsonl does not have",
        ),
        (
            {"goals": [GOAL], "goal_evidence": [EVIDENCE, EVIDENCE]},
            "goal_evidence.jsonl line 2: the evidence stripe:evt_1:g-one.1.a is also on line 1",
        ),
        (
            {"goals": [GOAL], "goal_evidence": [{**EVIDENCE, "event_id": 9}]},
            "goal_evidence.jsonl line 1: the evidence stripe:evt_1:g-one.1.a points to event 9, which events.jsonl",
        ),
    ],
)
async def test_bad_new_store_lines_are_refused_and_nothing_is_written(
    tmp_path: Path, rows: dict[str, list[Any]], message: str
) -> None:
    source = _export(tmp_path, **rows)
    (tmp_path / "data").mkdir()
    with pytest.raises(ImportRefused) as caught:
        await import_all(source, make_settings(tmp_path / "data"))
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert list((tmp_path / "data").iterdir()) == []


async def test_valid_new_store_lines_import_as_they_are(tmp_path: Path) -> None:
    # The lines the refusals above each break in one place are themselves accepted, exactly.
    reminder = {**FOLLOWUP, "id": 2, "email": "", "state": "proposed", "delivered": True}
    source = _export(
        tmp_path, goals=[GOAL], followups=[FOLLOWUP, AUTO | {"id": 3}, reminder], pipeline=[PIPELINE],
        goal_evidence=[EVIDENCE],
    )  # fmt: skip
    counts = await import_all(source, make_settings(tmp_path / "data"))
    assert (counts["followups"], counts["pipeline"], counts["goal_evidence"]) == (3, 1, 1)
    assert counts["closed follow-ups (their cards had come up)"] == 0  # a reminder that came up only told the operator
    await export_all(tmp_path / "data", tmp_path / "again")
    assert lines(tmp_path / "again", "followups") == [FOLLOWUP, reminder, AUTO | {"id": 3}]
    assert lines(tmp_path / "again", "pipeline") == [PIPELINE]
    assert lines(tmp_path / "again", "goal_evidence") == [EVIDENCE]


async def test_a_proposed_card_whose_approval_the_export_lacks_comes_back_cancelled(tmp_path: Path) -> None:
    # Kept proposed, it would point at whichever card later holds that id: a reply would withdraw that card.
    source = _export(tmp_path, followups=[{**FOLLOWUP, "state": "proposed", "approval_id": "fu-elsewhere"}])
    counts = await import_all(source, make_settings(tmp_path / "data"))
    assert counts["closed follow-ups (their cards had come up)"] == 1
    await export_all(tmp_path / "data", tmp_path / "again")
    [restored] = lines(tmp_path / "again", "followups")
    assert restored["state"] == "cancelled" and restored["approval_id"] == "fu-elsewhere"


async def test_an_export_from_before_these_stores_imports_with_none_of_their_rows(tmp_path: Path) -> None:
    source = write_export(tmp_path / "export", events=[EVENT], records=[RECORD])
    assert not any((source / f"{name}.jsonl").exists() for name in NEW_STORES)
    counts = await import_all(source, make_settings(tmp_path / "data"))
    assert [counts[name] for name in NEW_STORES] == [0, 0, 0]
    await export_all(tmp_path / "data", tmp_path / "again")
    assert [lines(tmp_path / "again", name) for name in NEW_STORES] == [[], [], []]
    assert lines(tmp_path / "again", "records") == [RECORD]
