"""The application database: append-only events, inbox dedupe, operators, ledger."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest

from memory.db import FORGOTTEN_TEXT, LLMCall, connect_sqlite, open_database
from memory.ledger import CostLedger
from memory.operators import OperatorStore


async def test_event_log_is_append_only(tmp_path: Path) -> None:
    async with open_database(tmp_path) as db:
        event_id = await db.append_event("message.in", "telegram:1", {"text": "héllo ✓"}, session="s")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            await db.connection.execute("UPDATE events SET payload = '{}' WHERE id = ?", (event_id,))
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            await db.connection.execute("DELETE FROM events")
        events = await db.events(session="s")
    assert [(e.kind, e.payload["text"]) for e in events] == [("message.in", "héllo ✓")]


async def test_forget_redacts_a_message_and_nothing_else_may_change(tmp_path: Path) -> None:
    async with open_database(tmp_path) as db:
        said = {"text": "our bank PIN is 7391", "kind": "message"}
        pin = await db.append_event("message.in", "telegram:1", said, "s")
        kept = await db.append_event("message.in", "telegram:1", {"text": "the bank opens at 9"}, "s")
        note = await db.append_event("memory.remembered", "telegram:1", {"ref": "n-1"}, "s")
        assert [e.id for e in await db.search_messages(["bank"], 10)] == [kept, pin]
        assert await db.redact_message(pin)
        assert not await db.redact_message(pin)  # once is enough
        assert not await db.redact_message(note)  # only messages
        for change in [
            "payload = json_set(payload, '$.redacted', json('true'), '$.text', 'x'), kind = 'message.out'",
            "payload = json_set(payload, '$.redacted', json('true'), '$.text', 'x'), actor = 'telegram:2'",
            "payload = json_set(payload, '$.text', 'x')",
            "payload = json_set(payload, '$.redacted', json('true'), '$.text', 'other words')",
        ]:
            with pytest.raises(sqlite3.IntegrityError, match="append-only"):
                await db.connection.execute(f"UPDATE events SET {change} WHERE id = ?", (kept,))
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):  # a redacted message stays as it is
            await db.connection.execute(
                "UPDATE events SET payload = json_set(payload, '$.kind', 'other') WHERE id = ?", (pin,)
            )
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            await db.connection.execute(
                "UPDATE events SET payload = json_set(payload, '$.redacted', json('true')) WHERE id = ?", (note,)
            )
        found = {word: [e.id for e in await db.search_messages([word], 10)] for word in ("bank", "7391", "PIN")}
        recalled = await db.recall_messages(["bank", "PIN", "7391"], 10)
        events = await db.events(session="s")
    assert found == {"bank": [kept], "7391": [], "PIN": []}
    assert [e.id for e in recalled] == [kept]
    assert [(e.id, e.kind, e.payload) for e in events] == [
        (pin, "message.in", {"text": FORGOTTEN_TEXT, "kind": "message", "redacted": True}),
        (kept, "message.in", {"text": "the bank opens at 9"}),
        (note, "memory.remembered", {"ref": "n-1"}),
    ]


async def test_a_file_from_before_redaction_can_redact_after_opening(tmp_path: Path) -> None:
    async with open_database(tmp_path) as db:
        pin = await db.append_event("message.in", "telegram:1", {"text": "PIN 7391"}, "s")
        await db.script(  # the file as version 2 left it: every update refused
            "DROP TRIGGER events_no_update; CREATE TRIGGER events_no_update BEFORE UPDATE ON events "
            "BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END; PRAGMA user_version = 2;"
        )
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            await db.redact_message(pin)
    async with open_database(tmp_path) as db:
        assert await db.redact_message(pin)
        [event] = await db.events()
    assert event.payload["text"] == FORGOTTEN_TEXT


async def test_inbox_claims_once_and_keeps_unfinished(tmp_path: Path) -> None:
    logged = {"text": "a", "kind": "message"}
    async with open_database(tmp_path) as db:
        first = await db.claim_update("telegram:7", "telegram:1", {"text": "a"}, "telegram:1", logged)
        assert first is not None
        assert await db.claim_update("telegram:7", "telegram:1", {"text": "a"}, "telegram:1", logged) is None
        assert await db.claim_update("telegram:8", "telegram:1", {"text": "b"}, "telegram:1", logged)
        await db.finish_update("telegram:8")
    # A new connection (a restart) still sees the unfinished claim and still refuses the duplicate.
    async with open_database(tmp_path) as db:
        assert await db.pending_updates() == [("telegram:7", {"text": "a"}, first)]
        assert await db.claim_update("telegram:8", "telegram:1", {"text": "b"}, "telegram:1", logged) is None
        events = await db.events(kind="message.in")
    assert [e.id for e in events][0] == first and len(events) == 2  # the claim and its event: one commit


async def test_wal_mode_and_operators(tmp_path: Path) -> None:
    async with open_database(tmp_path) as db:
        async with db.connection.execute("PRAGMA journal_mode") as cur:
            assert (await cur.fetchone())[0] == "wal"  # type: ignore[index]
        operators = OperatorStore(db)
        await operators.setup()
        code = await operators.open_pairing("cli", timedelta(minutes=5))
        assert await operators.redeem(code, "telegram:5") == "cli"
        assert await operators.redeem(code, "telegram:6") is None  # one use
        assert [op.identity for op in await operators.paired()] == ["telegram:5"]
        assert await operators.remove("telegram:5", "cli") and not await operators.is_paired("telegram:5")


async def test_llm_ledger_mirrors_into_event_log(tmp_path: Path) -> None:
    async with open_database(tmp_path) as db:
        ledger = CostLedger(db)
        await ledger.setup()
        await ledger.record(LLMCall("s", "chat", "m", 10, 3, False, 12, "ok"))
        calls = await ledger.calls()
        events = await db.events(kind="llm.call")
    assert calls == [LLMCall("s", "chat", "m", 10, 3, False, 12, "ok")]
    assert events[0].payload["prompt_tokens"] == 10 and events[0].session == "s"


async def test_reads_interleaved_with_writes_while_another_connection_commits(tmp_path: Path) -> None:
    """A read's cursor must not stay open across other calls on the shared connection: a write
    queued meanwhile would run on the read's stale snapshot and fail at once with "database is
    locked" after another connection (the approval store's) committed."""
    async with open_database(tmp_path) as db:
        other = await connect_sqlite(tmp_path / "coo.sqlite", 5000)
        try:
            await other.execute("CREATE TABLE IF NOT EXISTS side (n INTEGER)")
            await other.commit()
            for i in range(40):
                await db.append_event("note", "coo", {"i": i})

            async def reader() -> None:
                for _ in range(30):
                    await db.events(limit=1000)

            async def writer() -> None:
                for n in range(30):
                    await other.execute("INSERT INTO side (n) VALUES (?)", (n,))
                    await other.commit()
                    await db.append_event("note", "coo", {"n": n})

            await asyncio.gather(writer(), *(reader() for _ in range(4)))
            assert len(await db.events("note", limit=1000)) == 70
        finally:
            await other.close()


async def test_a_write_that_fails_midway_leaves_nothing_and_the_next_one_works(tmp_path: Path) -> None:
    async with open_database(tmp_path) as db:

        def half_then_fail(conn: sqlite3.Connection) -> None:
            conn.execute("INSERT INTO events (at, actor, session, kind, payload) VALUES ('t', 'a', 's', 'k', '{}')")
            conn.execute("INSERT INTO no_such_table VALUES (1)")

        with pytest.raises(sqlite3.OperationalError):
            await db.run_transaction(half_then_fail)
        assert await db.events() == []  # the first insert did not stay
        sent = await db.append_sent({"text": "hi", "ids": ["7"]}, "rec:1", ("op:1", 0, ["7"]))
        assert [e.id for e in await db.events(kind="message.out")] == [sent]
        assert await db.sent_reply("op:1", 0) == ["7"]
        assert not db.connection.in_transaction


async def test_finishes_arriving_together_are_all_written(tmp_path: Path) -> None:
    async with open_database(tmp_path) as db:
        keys = [f"k{i}" for i in range(30)]
        for key in keys:
            assert await db.claim_update(key, "s", {"n": key}, "op", {"text": key}) is not None
        await asyncio.gather(*(db.finish_update(key) for key in keys))
        assert await db.pending_updates() == []
        assert await db.claim_updates([]) == []


async def test_the_same_delivery_claimed_many_times_at_once_is_claimed_once(tmp_path: Path) -> None:
    # I3 with grouped writes: concurrent claims of one delivery go to SQLite together, in one
    # transaction; each still sees the others' inserts, so exactly one wins.
    logged = {"text": "a", "kind": "message"}
    async with open_database(tmp_path) as db:
        claims = await asyncio.gather(
            *(db.claim_update("telegram:9", "telegram:1", {"text": "a"}, "telegram:1", logged) for _ in range(10))
        )
        events = await db.events(kind="message.in")
        pending = await db.pending_updates()
    assert len([c for c in claims if c is not None]) == 1
    assert [e.id for e in events] == [c for c in claims if c is not None]
    assert [key for key, _, _ in pending] == ["telegram:9"]


async def test_prompt_reads_go_to_the_reader_and_see_only_committed_data(tmp_path: Path) -> None:
    async with open_database(tmp_path) as db:
        await db.append_event("message.in", "telegram:1", {"text": "Orbit Coffee pays net 45"}, session="s")
        async with db.transaction() as tx:
            await tx.append_event("message.in", "telegram:1", {"text": "Orbit Coffee moved to net 60"}, session="s")
            # While another chat's write is open, a prompt's reads do not see it (nor queue behind it).
            found = await db.recall_messages(["orbit"], 5)
            assert [e.payload["text"] for e in found] == ["Orbit Coffee pays net 45"]
            assert (await db.read_one("SELECT COUNT(*) FROM events"))[0] == 1
        assert (await db.read_one("SELECT COUNT(*) FROM events"))[0] == 2
        assert len(await db.recall_messages(["orbit"], 5)) == 2
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            await db.read_one("INSERT INTO events (at, actor, kind, payload) VALUES ('x', 'y', 'z', '{}')")


async def test_the_reader_opens_a_data_dir_whose_name_a_uri_would_misread(tmp_path: Path) -> None:
    data_dir = tmp_path / "Acme #1 ?draft 100% ü"
    async with open_database(data_dir) as db:
        await db.append_event("message.in", "telegram:1", {"text": "Orbit Coffee pays net 45"}, session="s")
        assert [e.payload["text"] for e in await db.recall_messages(["orbit"], 5)] == ["Orbit Coffee pays net 45"]
    assert os.listdir(tmp_path) == [data_dir.name]  # no stray file beside it
