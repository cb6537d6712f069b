"""``coo import``: an export restored into an empty data dir round-trips, fails closed on in-flight
work, and bad or partial input writes nothing."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.backup import RESTORED_GOAL_REPORT, UNKNOWN_DETAIL, ImportRefused, import_all
from bot.export import export_all
from bot.messages import InboundKind, InboundMessage
from bot.runtime import open_runtime
from graph.approvals.service import idempotency_key
from memory.approvals import ApprovalRow, ApprovalStore
from memory.db import connect_sqlite, open_database, utcnow
from memory.install import KEY_FILE, read_key
from memory.records import Records
from memory.tasks import FINISHED, TaskLedger
from tests.conftest import RecordingChannel, make_settings
from tests.fakes.polling import eventually
from tests.fakes.smtp_server import SMTPServer

_keys = iter(range(10**6))


def said(text: str, kind: InboundKind = "message", data: str | None = None) -> InboundMessage:
    if text.startswith("/"):
        kind = "command"
    return InboundMessage(
        "rec", "1001", "telegram:1001", text, kind=kind, callback_data=data, update_key=f"b:{next(_keys)}"
    )


def approve_data(chan: RecordingChannel) -> str:
    card = next(m for m in reversed(chan.sent) if m.buttons and m.edit_message_id is None)
    return next(b.data for b in card.buttons if b.label == "Approve")


def lines(folder: Path, name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (folder / f"{name}.jsonl").read_text().splitlines()]


async def test_export_import_export_round_trips_and_fails_closed(tmp_path: Path) -> None:
    smtp_fast = {"backoff_base_s": 0.05, "poll_s": 0.05}
    with SMTPServer() as smtp:
        settings = make_settings(tmp_path / "old", smtp=smtp.settings(), outbox=smtp_fast, memory={"semantic": True})
        async with open_runtime(settings, console=False) as rt:
            chan = RecordingChannel("rec")
            rt.dispatcher.attach(chan)
            handle = rt.dispatcher.handle
            await handle(said("/email ana@example.org Sent one | already sent"))
            sent_data = approve_data(chan)
            await handle(said("", "callback", sent_data))
            await smtp.wait_delivered(1)
            await handle(said("/email bob@example.org Waiting | still pending"))
            pending_data = approve_data(chan)
            await handle(said("/pause"))
            await handle(said("/email cy@example.org Queued | approved while paused"))
            await handle(said("", "callback", approve_data(chan)))
            records = Records(rt.db)
            acme = await records.upsert("contact", {"name": "Acme", "emails": ["ap@acme.example"]}, "telegram:1001")
            await records.upsert("contact", {"company": "Acme Robotics"}, "telegram:1001", record_id=acme.id)
            gone = await records.upsert("contact", {"name": "Old lead"}, "telegram:1001")
            await records.delete("contact", gone.id, "telegram:1001")
            await handle(said("/remember Acme pays invoices net 45"))
            await handle(said("/remember the spare key is under the mat"))
            await handle(said(f"/forget {chan.sent[-1].text.removeprefix('Remembered (').removesuffix(').')}"))
            await handle(said("Lisbon office opens at nine"))
            await handle(said("my old password hint is blue elephant"))
            assert rt.ingestor is not None
            await rt.ingestor.wait_idle()
            hint = next(e for e in await rt.db.events("message.in") if "elephant" in e.payload["text"])
            await handle(said(f"/forget msg-{hint.id}"))
            await handle(said("/profile set business Lumen Studio"))
            await handle(said("/profile set voice warm"))
            await handle(said("/profile clear voice"))
            await eventually(lambda: sum(1 for m in chan.sent if "Sent" in m.text and m.edit_message_id) >= 1)
        assert len(smtp.delivered) == 1
        await export_all(tmp_path / "old", tmp_path / "first")

        restored = make_settings(tmp_path / "new", smtp=smtp.settings(), outbox=smtp_fast, memory={"semantic": True})
        counts = await import_all(tmp_path / "first", restored)
        assert counts["expired (were pending)"] == 1 and counts["unknown (were queued)"] == 1
        assert counts["semantic memories"] == 2  # the kept note and the kept chat message
        assert not [p for p in (tmp_path / "new").iterdir() if p.name.startswith(".import")]
        await export_all(tmp_path / "new", tmp_path / "second")

        first, second = tmp_path / "first", tmp_path / "second"
        assert lines(second, "records") == lines(first, "records")
        assert len(lines(first, "records")) == 4  # two versions of Acme, the lead and its deletion
        assert lines(second, "notes") == lines(first, "notes")
        assert [n["text"] for n in lines(first, "notes")] == ["Acme pays invoices net 45"]
        events = lines(second, "events")
        assert events[:-1] == lines(first, "events") and events[-1]["kind"] == "backup.restored"
        before = {a["id"]: a for a in lines(first, "approvals")}
        after = {a["id"]: a for a in lines(second, "approvals")}
        changed = {key for key in before if before[key] != after[key]}
        by_state = {a["state"] + "/" + (a["outbox"] or {}).get("state", "-"): a["id"] for a in before.values()}
        assert set(by_state) == {"approved/sent", "pending/-", "approved/queued"}
        assert changed == {by_state["pending/-"], by_state["approved/queued"]}
        was_pending, was_queued = after[by_state["pending/-"]], after[by_state["approved/queued"]]
        assert was_pending["state"] == "expired" and was_pending["decided_by"] == "restore"
        assert was_queued["outbox"]["state"] == "unknown" and was_queued["outbox"]["detail"] == UNKNOWN_DETAIL
        assert {**was_queued, "outbox": None} == {**before[by_state["approved/queued"]], "outbox": None}

        async with open_runtime(restored, console=False) as rt:
            chan = RecordingChannel("rec")
            rt.dispatcher.attach(chan)
            await rt.dispatcher.handle(said("", "callback", pending_data))  # the old card's button
            await rt.dispatcher.handle(said("", "callback", sent_data))
            await rt.dispatcher.handle(said("/profile"))  # restored, but waiting for the operator's word
            assert chan.sent[-1].text.startswith("The profile is empty.")
            assert "Restored from a backup, not in effect until you confirm it" in chan.sent[-1].text
            assert "- business name: Lumen Studio\nSend /profile restore" in chan.sent[-1].text
            await rt.dispatcher.handle(said("/profile restore"))
            await rt.dispatcher.handle(said("/profile"))
            assert chan.sent[-1].text == "Profile:\n- business name: Lumen Studio"
            await rt.dispatcher.handle(said("/recall when does Acme pay"))
            assert "net 45" in chan.sent[-1].text
            await rt.dispatcher.handle(said("/recall office opening hours Lisbon"))
            assert "Lisbon office opens at nine" in chan.sent[-1].text
            await rt.dispatcher.handle(said("/recall password hint elephant key mat"))
            assert "elephant" not in chan.sent[-1].text and "mat" not in chan.sent[-1].text  # forgotten stays so
            assert rt.memory is not None and await rt.memory.count("default") == 2
            [lisbon] = await rt.memory.recall("Lisbon office", k=1)
            # indexed as the product's own ingestion writes a chat message: with its date and speaker
            assert re.fullmatch(r"\[\d{1,2} \w+ \d{4}\] \w+: Lisbon office opens at nine", lisbon.text), lisbon.text
            conn = await connect_sqlite(tmp_path / "new" / "coo.sqlite", 5000)
            try:
                queued = await ApprovalStore(conn).outbox_in("queued")
            finally:
                await conn.close()
        assert queued == [] and len(smtp.delivered) == 1  # nothing restored is ever sent by itself


def write_export(folder: Path, **rows: list[dict[str, Any]]) -> Path:
    folder.mkdir()
    for name in ("events", "records", "approvals", "notes"):
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows.get(name, [])))
    return folder


EVENT = {"id": 1, "at": "2026-01-02 03:04:05+00:00", "actor": "t", "session": None, "kind": "x", "payload": {}}
RECORD = {
    "kind": "contact",
    "id": "c1",
    "version": 1,
    "data": {"name": "Ana", "company": "", "emails": [], "phone": "", "notes": ""},
    "event_id": 1,
    "actor": "t",
    "at": "2026-01-02T03:04:05+00:00",
    "deleted": False,
}


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ({"events": [EVENT], "records": [{**RECORD, "data": {"name": ""}}]}, "records.jsonl line 1: "),
        ({"events": [EVENT], "records": [{**RECORD, "kind": "spaceship"}]}, "unknown record kind 'spaceship'"),
        ({"records": [RECORD]}, "records.jsonl: contact c1 v1 points to a missing event"),
        ({"events": [EVENT, EVENT]}, "events.jsonl has the same event id twice"),
        ({"events": [{**EVENT, "surprise": 1}]}, "events.jsonl line 1: surprise: Extra inputs are not permitted"),
    ],
)
async def test_bad_exports_are_refused_before_anything_is_written(
    tmp_path: Path, rows: dict[str, list[dict[str, Any]]], message: str
) -> None:
    source = write_export(tmp_path / "export", **rows)
    with pytest.raises(ImportRefused) as caught:
        await import_all(source, make_settings(tmp_path / "data"))
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert not (tmp_path / "data").exists()


async def test_a_failure_while_writing_leaves_the_data_dir_empty(tmp_path: Path) -> None:
    # Valid line by line, but two rows for one record version: SQLite refuses the second.
    source = write_export(tmp_path / "export", events=[EVENT], records=[RECORD, RECORD])
    with pytest.raises(Exception, match="UNIQUE constraint failed"):
        await import_all(source, make_settings(tmp_path / "data"))
    assert list((tmp_path / "data").iterdir()) == []
    (tmp_path / "export" / "records.jsonl").write_text(json.dumps(RECORD) + "\n")
    counts = await import_all(source, make_settings(tmp_path / "data"))  # and the same dir can be used again
    assert counts["records"] == 1 and counts["events"] == 1


# -- goals, tasks and attempts ------------------------------------------------------------------------

OPERATOR = "telegram:1001"
TRACE = [{"tool": "recall", "args": {"query": "sponsors"}, "tokens": 321}]


def spec(key: str, after: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"key": key, "title": f"Task {key}", "skill": "research", "instructions": f"do {key}", "depends_on": after}


async def plan_approval(store: ApprovalStore, goal_id: str, install_id: str) -> str:
    """An approved plan card whose action ran (outbox sent); returns its idempotency key."""
    now = utcnow()
    approval_id = f"ap-{goal_id}"
    await store.create(
        ApprovalRow(
            approval_id, approval_id, OPERATOR, OPERATOR, "goal.plan", {"goal_id": goal_id}, "digest", (OPERATOR,),
            "nonce", now, now + timedelta(hours=1), "pending", None, None, (),
        )
    )  # fmt: skip
    key = idempotency_key(approval_id, install_id)
    assert await store.decide(approval_id, "nonce", "approved", OPERATOR, outbox_key=key)
    assert await store.claim_due(utcnow()) is not None
    assert await store.finish(approval_id, "sent", detail="started")
    return key


async def seed_goals(data_dir: Path) -> dict[str, str]:
    """Goals in every status through the ledger's own methods; returns their ids by name."""
    async with open_database(data_dir) as db:
        ledger = TaskLedger(db)
        await ledger.setup()
        store = ApprovalStore(db.connection)
        await store.setup()
        now = utcnow()
        lease = timedelta(minutes=15)

        done = await ledger.create_goal("Find a sponsor for the meetup", OPERATOR, OPERATOR)
        specs = [spec("a"), spec("b", ("a",))]
        plan = {"criteria": "a sponsor said yes", "tasks": specs}
        await ledger.update_goal(done.id, status="proposed", criteria="a sponsor said yes", plan=plan, budget=2.5)
        key = await plan_approval(store, done.id, db.install.id)
        await ledger.add_run(done.id, specs, activation=key)
        await ledger.update_goal(done.id, status="active", status_message={"message_id": "77"})
        assert [t.key for t in await ledger.promote(now)] == ["a"]
        a = await ledger.claim("worker-1", lease, now)
        assert a is not None
        first = await ledger.start_attempt(a)
        await ledger.end_attempt(first, "done", "", "fake-model", 0.0125, TRACE)
        await ledger.move(a.id, "running", "done", result={"summary": "three leads", "artifacts": []}, lease_owner=None)
        assert [t.key for t in await ledger.promote(now)] == ["b"]
        b = await ledger.claim("worker-1", lease, now)
        assert b is not None
        failed_try = await ledger.start_attempt(b)
        await ledger.end_attempt(failed_try, "failed", "the model timed out", "fake-model", 0.003, [])
        await ledger.move(b.id, "running", "ready", error="the model timed out", lease_owner=None, next_try_at=now)
        b = await ledger.claim("worker-2", lease, now)
        assert b is not None and b.attempts == 2
        second_try = await ledger.start_attempt(b)
        await ledger.end_attempt(second_try, "done", "", "fake-model", 0.02, [{"tool": "finish_task", "args": {}}])
        await ledger.move(b.id, "running", "done", result={"summary": "Ana said yes"}, lease_owner=None, error="")
        assert await ledger.move_goal(done.id, ("active",), "verifying")
        assert await ledger.move_goal(done.id, ("verifying",), "done", report="All done: Ana said yes.", verified=1)

        active = await ledger.create_goal("Send the newsletter", OPERATOR, OPERATOR, status="proposed")
        await ledger.add_run(active.id, [spec("c"), spec("d", ("c",)), spec("e")])
        assert await ledger.move_goal(active.id, ("proposed",), "active", report="run 1 under way")
        await ledger.promote(now)  # c and e are ready, d waits on c
        c = await ledger.claim("worker-9", lease, now)  # c runs, with a lease, its attempt not ended
        assert c is not None and c.key == "c"
        await ledger.start_attempt(c)
        e = await ledger.task(f"{active.id}.1.e")
        assert e is not None and e.state == "ready"

        recurring = await ledger.create_goal("Every Monday, draft the newsletter", OPERATOR, OPERATOR)
        await ledger.update_goal(recurring.id, plan={"criteria": "a draft", "tasks": [spec("draft")]})
        await ledger.update_goal(recurring.id, schedule="0 9 * * 1", status="active")

        planning = await ledger.create_goal("Plan the offsite", OPERATOR, OPERATOR)
        proposed = await ledger.create_goal("Renew the domain", OPERATOR, OPERATOR, status="proposed")
        verifying = await ledger.create_goal("Chase the invoice", OPERATOR, OPERATOR, status="active")
        assert await ledger.move_goal(verifying.id, ("active",), "verifying")
        failed = await ledger.create_goal("Book a venue", OPERATOR, OPERATOR)
        await ledger.update_goal(failed.id, status="failed", report="no valid plan: a cycle")
        cancelled = await ledger.create_goal("Old idea", OPERATOR, OPERATOR, status="proposed")
        assert await ledger.move_goal(cancelled.id, ("proposed",), "cancelled")
    return {
        "done": done.id, "active": active.id, "recurring": recurring.id, "planning": planning.id,
        "proposed": proposed.id, "verifying": verifying.id, "failed": failed.id, "cancelled": cancelled.id,
    }  # fmt: skip


async def test_goals_tasks_and_attempts_round_trip_and_unfinished_ones_come_back_cancelled(tmp_path: Path) -> None:
    ids = await seed_goals(tmp_path / "old")
    counts = await export_all(tmp_path / "old", tmp_path / "first")
    assert counts["goals"] == 8
    assert oct((tmp_path / "first" / "goals.jsonl").stat().st_mode & 0o777) == "0o600"

    restored = await import_all(tmp_path / "first", make_settings(tmp_path / "new"))
    assert (restored["goals"], restored["tasks"], restored["attempts"]) == (8, 5, 4)
    assert restored["cancelled goals (were unfinished)"] == 5  # active, recurring, planning, proposed, verifying
    assert restored["cancelled tasks (were unfinished)"] == 3  # c (running), d (todo), e (ready)
    await export_all(tmp_path / "new", tmp_path / "second")

    first = {g["id"]: g for g in lines(tmp_path / "first", "goals")}
    second = {g["id"]: g for g in lines(tmp_path / "second", "goals")}
    assert list(second) == list(first)
    done = first[ids["done"]]
    assert [t["state"] for t in done["tasks"]] == ["done", "done"]
    assert [len(t["attempt_log"]) for t in done["tasks"]] == [1, 2]
    assert done["tasks"][0]["attempt_log"][0]["trace"] == TRACE
    assert done["tasks"][0]["attempt_log"][0]["cost"] == 0.0125 and done["budget"] == 2.5
    old_install = read_key(tmp_path / "old" / KEY_FILE).id
    assert done["plan_approval"] == idempotency_key(f"ap-{ids['done']}", old_install)
    for name in ("done", "failed", "cancelled"):  # finished goals come back exactly, tasks and attempts too
        assert second[ids[name]] == first[ids[name]]

    for name in ("active", "recurring", "planning", "proposed", "verifying"):
        before, after = first[ids[name]], second[ids[name]]
        note = RESTORED_GOAL_REPORT.format(status=before["status"])
        assert after["status"] == "cancelled" and before["status"] != "cancelled"
        assert after["report"] == (f"{note}\n\n{before['report']}" if before["report"] else note)
        assert "/goal" in after["report"] and f"while it was {before['status']}" in after["report"]
        same = ("status", "report", "updated_at", "tasks")
        assert {k: v for k, v in after.items() if k not in same} == {k: v for k, v in before.items() if k not in same}
    assert second[ids["recurring"]]["schedule"] == "0 9 * * 1"

    tasks_before = {t["key"]: t for t in first[ids["active"]]["tasks"]}
    tasks_after = {t["key"]: t for t in second[ids["active"]]["tasks"]}
    assert {k: t["state"] for k, t in tasks_before.items()} == {"c": "running", "d": "todo", "e": "ready"}
    assert tasks_before["c"]["lease_owner"] == "worker-9" and tasks_before["c"]["lease_until"]
    for key, before in tasks_before.items():
        after = tasks_after[key]
        assert after["state"] == "cancelled" and after["lease_owner"] is None and after["lease_until"] is None
        assert after["attempt_log"] == before["attempt_log"]  # c's open attempt is kept as it was
        same = ("state", "lease_owner", "lease_until", "updated_at")
        assert {k: v for k, v in after.items() if k not in same} == {k: v for k, v in before.items() if k not in same}
    assert len(tasks_after["c"]["attempt_log"]) == 1 and tasks_after["c"]["attempt_log"][0]["ended_at"] is None

    events = lines(tmp_path / "second", "events")
    assert events[:-1] == lines(tmp_path / "first", "events")
    assert events[-1]["kind"] == "backup.restored"
    unfinished = {ids[n] for n in ("active", "recurring", "planning", "proposed", "verifying")}
    assert set(events[-1]["payload"]["cancelled_goals"]) == unfinished
    assert set(events[-1]["payload"]["cancelled_tasks"]) == {t["id"] for t in tasks_before.values()}
    assert lines(tmp_path / "second", "approvals") == lines(tmp_path / "first", "approvals")

    # Nothing restored runs by itself: with the goals as exported, this step would start task e.
    async with open_runtime(make_settings(tmp_path / "new"), console=False) as rt:
        assert await rt.task_runner.step() == []
        assert await rt.tasks.in_state("todo", "ready", "running", "waiting_approval", "blocked") == []
        assert {g.status for g in await rt.tasks.goals()} <= FINISHED


async def test_an_export_from_before_goals_were_exported_still_imports(tmp_path: Path) -> None:
    source = write_export(tmp_path / "export", events=[EVENT], records=[RECORD])
    assert not (source / "goals.jsonl").exists()
    counts = await import_all(source, make_settings(tmp_path / "data"))
    assert (counts["events"], counts["records"], counts["goals"], counts["tasks"]) == (1, 1, 0, 0)
    await export_all(tmp_path / "data", tmp_path / "again")
    assert lines(tmp_path / "again", "goals") == [] and lines(tmp_path / "again", "records") == [RECORD]


AT = "2026-01-02T03:04:05+00:00"
ATTEMPT = {
    "task_id": "g-one.1.a", "attempt": 1, "started_at": AT, "ended_at": AT, "outcome": "done", "error": "",
    "model": "m", "cost": 0.01, "trace": [{"tool": "recall"}],
}  # fmt: skip
TASK = {
    "id": "g-one.1.a", "goal_id": "g-one", "run": 1, "seq": 0, "key": "a", "title": "A", "skill": "research",
    "instructions": "do a", "depends_on": [], "expected": "", "state": "done", "attempts": 1, "next_try_at": AT,
    "lease_owner": None, "lease_until": None, "waiting_on": [], "notes": [], "result": {"summary": "ok"},
    "error": "", "created_at": AT, "updated_at": AT, "attempt_log": [ATTEMPT],
}  # fmt: skip
GOAL = {
    "id": "g-one", "text": "Find a sponsor", "criteria": "", "due": None, "budget": None, "status": "done",
    "session": OPERATOR, "requested_by": OPERATOR, "plan": None, "plan_approval": None, "schedule": None,
    "runs": 1, "verified": 1, "last_run_at": AT, "report": "done", "status_message": None, "created_at": AT,
    "updated_at": AT, "tasks": [TASK],
}  # fmt: skip
TASK_B = {**TASK, "id": "g-one.1.b", "key": "b", "seq": 1, "attempt_log": []}


@pytest.mark.parametrize(
    ("goals", "message"),
    [
        ('{"id": "g-one", "text": ', "goals.jsonl line 1: Invalid JSON"),
        (
            [{**GOAL, "tasks": [{**TASK, "goal_id": "g-missing"}]}],
            "goals.jsonl line 1: task g-one.1.a points to goal g-missing but is listed under goal g-one",
        ),
        ([{**GOAL, "status": "paused"}], "goals.jsonl line 1: status: Input should be 'planning', 'proposed'"),
        ([{**GOAL, "tasks": [{**TASK, "state": "lost"}]}], "goals.jsonl line 1: tasks.0.state: Input should be"),
        ([{**GOAL, "tasks": [{**TASK, "surprise": 1}]}], "line 1: tasks.0.surprise: Extra inputs are not permitted"),
        (
            [{**GOAL, "tasks": [{**TASK, "attempt_log": [{**ATTEMPT, "task_id": "g-one.1.z"}]}]}],
            "goals.jsonl line 1: tasks.0: task g-one.1.a lists an attempt of task g-one.1.z",
        ),
        (
            [{**GOAL, "tasks": [TASK, {**TASK_B, "depends_on": ["g-one.1.zz"]}]}],
            "task g-one.1.b depends on g-one.1.zz, which is not another task of run 1 of goal g-one",
        ),
        (
            [{**GOAL, "runs": 2, "tasks": [TASK, {**TASK_B, "run": 2, "depends_on": ["g-one.1.a"]}]}],
            "task g-one.1.b depends on g-one.1.a, which is not another task of run 2 of goal g-one",
        ),
        ([{**GOAL, "tasks": [{**TASK, "run": 2}]}], "task g-one.1.a is of run 2 but goal g-one has 1 runs"),
        (
            [{**GOAL, "plan_approval": "coo-nothing"}],
            "goals.jsonl line 1: goal g-one was started by approval key coo-nothing, which no approval",
        ),
        ([GOAL, {**GOAL, "tasks": []}], "goals.jsonl line 2: goal g-one is also on line 1"),
        (
            [GOAL, {**GOAL, "id": "g-two", "tasks": [{**TASK, "goal_id": "g-two"}]}],
            "goals.jsonl line 2: task g-one.1.a is also on line 1",
        ),
        ([{**GOAL, "created_at": "2026-01-02T03:04:05"}], "line 1: created_at: Input should have timezone info"),
    ],
)
async def test_bad_goals_are_refused_and_nothing_is_written(tmp_path: Path, goals: Any, message: str) -> None:
    source = write_export(tmp_path / "export", events=[EVENT])
    text = goals if isinstance(goals, str) else "".join(json.dumps(g) + "\n" for g in goals)
    (source / "goals.jsonl").write_text(text)
    (tmp_path / "data").mkdir()
    with pytest.raises(ImportRefused) as caught:
        await import_all(source, make_settings(tmp_path / "data"))
    assert message in str(caught.value) and "\n" not in str(caught.value)
    assert list((tmp_path / "data").iterdir()) == []


async def test_a_valid_goal_line_imports(tmp_path: Path) -> None:
    # The line the refusals above each break in one place is itself accepted, exactly.
    source = write_export(tmp_path / "export", events=[EVENT])
    (source / "goals.jsonl").write_text(json.dumps({**GOAL, "tasks": [TASK, {**TASK_B, "depends_on": [TASK["id"]]}]}))
    counts = await import_all(source, make_settings(tmp_path / "data"))
    assert (counts["goals"], counts["tasks"], counts["attempts"]) == (1, 2, 1)
    await export_all(tmp_path / "data", tmp_path / "again")
    assert lines(tmp_path / "again", "goals") == [{**GOAL, "tasks": [TASK, {**TASK_B, "depends_on": [TASK["id"]]}]}]
