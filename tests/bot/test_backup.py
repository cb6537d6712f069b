"""``coo import``: an export restored into an empty data dir round-trips, fails closed on in-flight
work, and bad or partial input writes nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bot.backup import UNKNOWN_DETAIL, ImportRefused, import_all
from bot.export import export_all
from bot.messages import InboundMessage
from bot.runtime import open_runtime
from memory.approvals import ApprovalStore
from memory.db import connect_sqlite
from memory.records import Records
from tests.conftest import RecordingChannel, make_settings
from tests.fakes.polling import eventually
from tests.fakes.smtp_server import SMTPServer

_keys = iter(range(10**6))


def said(text: str, kind: str = "message", data: str | None = None) -> InboundMessage:
    if text.startswith("/"):
        kind = "command"
    return InboundMessage(
        "rec", "1001", "telegram:1001", text, kind=kind, callback_data=data, update_key=f"b:{next(_keys)}"
    )  # type: ignore[arg-type]


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
            await rt.dispatcher.handle(said("/profile"))
            assert chan.sent[-1].text == "Profile:\n- business name: Lumen Studio"
            await rt.dispatcher.handle(said("/recall when does Acme pay"))
            assert "net 45" in chan.sent[-1].text
            await rt.dispatcher.handle(said("/recall office opening hours Lisbon"))
            assert "Lisbon office opens at nine" in chan.sent[-1].text
            await rt.dispatcher.handle(said("/recall password hint elephant key mat"))
            assert "elephant" not in chan.sent[-1].text and "mat" not in chan.sent[-1].text  # forgotten stays so
            assert rt.memory is not None and await rt.memory.count("default") == 2
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
