"""Backups across versions and stores: an export in the format from before line versions imports as it
did, a line version newer than this one reads is refused, and a store added to the registry travels
through export and import with no other change."""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest

from bot.backup import ImportRefused, import_all
from bot.export import MANIFEST, export_all, read_export
from memory.db import Database, open_database
from memory.lines import Line, Table
from memory.portable import PORTABLE
from tests.conftest import make_settings

FIXTURES = Path(__file__).parent.parent / "fixtures"
V1 = FIXTURES / "backup_v1"
"""Written by ``coo export`` before exports named their line versions (and with times as ``str(datetime)``)."""
V1_REIMPORTED = FIXTURES / "backup_v1_reimported"
"""What ``coo import`` of V1 then ``coo export`` wrote with that same older version."""
_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}:\d{2}")


def times_in(value: Any) -> set[datetime]:
    if isinstance(value, dict):
        return {t for v in value.values() for t in times_in(v)}
    if isinstance(value, list):
        return {t for v in value for t in times_in(v)}
    return {datetime.fromisoformat(value)} if isinstance(value, str) and _TIME.match(value) else set()


def normal(value: Any, known: set[datetime]) -> Any:
    """Times as values (an export may spell one with a space or a T); a time the source did not hold (set by
    the import itself) as a marker."""
    if isinstance(value, dict):
        return {k: normal(v, known) for k, v in value.items()}
    if isinstance(value, list):
        return [normal(v, known) for v in value]
    if isinstance(value, str) and _TIME.match(value):
        at = datetime.fromisoformat(value)
        return at if at in known else "<time of the import>"
    return value


def lines(folder: Path, name: str) -> list[Any]:
    return [json.loads(line) for line in (folder / f"{name}.jsonl").read_text().splitlines() if line.strip()]


async def test_an_export_from_before_line_versions_imports_as_it_did(tmp_path: Path) -> None:
    assert not (V1 / MANIFEST).read_text().count("versions")
    counts = await import_all(V1, make_settings(tmp_path / "data"))
    assert (counts["events"], counts["approvals"], counts["goals"], counts["tasks"]) == (39, 3, 8, 5)
    assert counts["expired (were pending)"] == 1 and counts["unknown (were queued)"] == 1
    await export_all(tmp_path / "data", tmp_path / "again")
    known = {t for name in ("events", "records", "approvals", "notes", "goals") for t in times_in(lines(V1, name))}
    for name in ("events", "records", "approvals", "notes", "goals"):
        assert normal(lines(tmp_path / "again", name), known) == normal(lines(V1_REIMPORTED, name), known), name
    read_export(tmp_path / "again")  # every line fits its store's line model


async def test_an_export_names_its_line_versions_and_a_newer_one_is_refused(tmp_path: Path) -> None:
    await export_all(tmp_path / "empty", tmp_path / "export")
    manifest = json.loads((tmp_path / "export" / MANIFEST).read_text())
    assert manifest["versions"] == {store.name: store.version for store in PORTABLE} == {
        "events": 1, "records": 1, "approvals": 1, "notes": 1, "goals": 1, "followups": 1, "pipeline": 1,
        "goal_evidence": 1,
    }  # fmt: skip
    source = shutil.copytree(V1, tmp_path / "v1")
    made_by = json.loads((source / MANIFEST).read_text())
    (source / MANIFEST).write_text(json.dumps({**made_by, "versions": {"goals": 2, "events": 1}}))
    with pytest.raises(ImportRefused) as caught:
        await import_all(source, make_settings(tmp_path / "data"))
    assert str(caught.value) == (
        "goals.jsonl: written by a newer version of solo-coo (line version 2; this one reads up to 1); "
        "import it with that version"
    )
    assert not (tmp_path / "data").exists()


class PinLine(Line):
    """A store added later: one pinned value."""

    key: str
    value: dict[str, Any]
    at: datetime
    active: bool


_PINS = Table("pins", PinLine)


class Pins:
    """All a store needs to be in backups; registering it is adding it to ``memory.portable.PORTABLE``."""

    name: ClassVar[str] = "pins"
    version: ClassVar[int] = 1
    line: ClassVar[type[Line]] = PinLine
    tables: ClassVar[tuple[Table, ...]] = (_PINS,)

    def __init__(self, db: Database) -> None:
        self._db = db

    async def setup(self) -> None:
        await self._db.script(
            "CREATE TABLE IF NOT EXISTS pins (key TEXT PRIMARY KEY, value TEXT NOT NULL, at TEXT NOT NULL, "
            "active INTEGER NOT NULL)"
        )

    async def dump(self) -> list[dict[str, Any]]:
        return [_PINS.read(r) for r in await self._db.fetchall(_PINS.select("ORDER BY key"))]

    async def restore(self, lines: Sequence[PinLine]) -> None:
        rows = [_PINS.values(p) for p in lines]

        def work(conn: sqlite3.Connection) -> None:
            _PINS.insert(conn, rows)

        await self._db.run_transaction(work)


async def test_a_store_added_to_the_registry_travels_through_export_and_import(tmp_path: Path) -> None:
    stores = (*PORTABLE, Pins)
    async with open_database(tmp_path / "old") as db:
        await Pins(db).setup()
        await db.write(
            "INSERT INTO pins VALUES (?, ?, ?, ?)", ("a", json.dumps({"n": [1, "é"]}), "2026-01-02T03:04:05+00:00", 1)
        )
        await db.write("INSERT INTO pins VALUES (?, ?, ?, ?)", ("b", "{}", "2026-01-03T00:00:00+00:00", 0))
    counts = await export_all(tmp_path / "old", tmp_path / "export", stores)
    assert counts["pins"] == 2
    pins = [
        {"key": "a", "value": {"n": [1, "é"]}, "at": "2026-01-02T03:04:05+00:00", "active": True},
        {"key": "b", "value": {}, "at": "2026-01-03T00:00:00+00:00", "active": False},
    ]
    assert lines(tmp_path / "export", "pins") == pins
    assert (await import_all(tmp_path / "export", make_settings(tmp_path / "new"), portable=stores))["pins"] == 2
    await export_all(tmp_path / "new", tmp_path / "again", stores)
    assert lines(tmp_path / "again", "pins") == pins
    # An export made before the store existed has no file for it: it imports with no rows.
    counts = await import_all(V1, make_settings(tmp_path / "from-v1"), portable=stores)
    assert counts["pins"] == 0 and counts["goals"] == 8

    (tmp_path / "export" / "pins.jsonl").write_text(json.dumps({**pins[0], "active": "sometimes"}) + "\n")
    with pytest.raises(ImportRefused, match=r"^pins.jsonl line 1: active: Input should be a valid boolean"):
        await import_all(tmp_path / "export", make_settings(tmp_path / "refused"), portable=stores)
