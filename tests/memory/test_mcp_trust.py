"""MCP trust pins on a real SQLite file: a pin holds the fingerprint a tool was trusted with, a new pin of
the same tool replaces it (one row per tool), every pin is in the event log, and pins outlive a restart."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from memory.db import open_database
from memory.mcp_trust import McpTrustStore, TrustPin


async def test_a_pin_is_kept_with_its_fingerprint_and_logged(tmp_path: Path) -> None:
    async with open_database(tmp_path) as db:
        store = McpTrustStore(db)
        await store.setup()
        assert await store.pins() == {}
        await store.pin("files.read", "fp-1", "command", "telegram:1001")
        await store.pin("files.list", "fp-9", "config", "config")
        assert await store.pins() == {
            "files.read": TrustPin("files.read", "fp-1", "command", "telegram:1001"),
            "files.list": TrustPin("files.list", "fp-9", "config", "config"),
        }
        logged = [(e.actor, e.payload) for e in await db.events(kind="mcp.trusted")]
        assert logged == [
            ("telegram:1001", {"tool": "files.read", "fingerprint": "fp-1", "source": "command"}),
            ("config", {"tool": "files.list", "fingerprint": "fp-9", "source": "config"}),
        ]


async def test_trusting_a_changed_tool_again_replaces_its_pin(tmp_path: Path) -> None:
    async with open_database(tmp_path) as db:
        store = McpTrustStore(db)
        await store.setup()
        await store.pin("files.read", "fp-1", "config", "config")
        await store.pin("files.read", "fp-2", "command", "telegram:1001")
        assert await store.pins() == {"files.read": TrustPin("files.read", "fp-2", "command", "telegram:1001")}
        assert (await db.fetchone("SELECT COUNT(*) FROM mcp_trust"))[0] == 1
    async with open_database(tmp_path) as db:  # a restart
        store = McpTrustStore(db)
        await store.setup()
        assert (await store.pins())["files.read"].fingerprint == "fp-2"


async def test_a_pin_that_cannot_be_logged_is_not_kept(tmp_path: Path) -> None:
    # The pin and its event are one transaction: a pin with no record of who trusted the tool would be
    # trust nobody can account for.
    async with open_database(tmp_path) as db:
        store = McpTrustStore(db)
        await store.setup()
        await store.pin("files.read", "fp-1", "config", "config")
        await db.script(
            "CREATE TRIGGER no_trust_events BEFORE INSERT ON events WHEN new.kind = 'mcp.trusted' "
            "BEGIN SELECT RAISE(ABORT, 'event log full'); END;"
        )
        with pytest.raises(sqlite3.IntegrityError, match="event log full"):
            await store.pin("files.read", "fp-2", "command", "telegram:1001")
        with pytest.raises(sqlite3.IntegrityError, match="event log full"):
            await store.pin("files.write", "fp-3", "command", "telegram:1001")
        assert await store.pins() == {"files.read": TrustPin("files.read", "fp-1", "config", "config")}
