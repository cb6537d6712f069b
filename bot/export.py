"""``coo export``: records, events, approvals and remembered notes as JSON Lines."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from memory.approvals import ApprovalStore
from memory.db import Database, connect_sqlite, open_database
from memory.notes import NoteLedger
from memory.records import MODELS, Records

FILES = ("events", "records", "approvals", "notes")


async def export_all(data_dir: Path, out_dir: Path) -> dict[str, int]:
    """Write one ``<name>.jsonl`` per table into ``out_dir``; returns line counts."""
    async with open_database(data_dir) as db:
        rows = await _rows(db, data_dir)
    return await asyncio.to_thread(_write, rows, out_dir)


def _write(rows: dict[str, list[dict[str, Any]]], out_dir: Path) -> dict[str, int]:
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, items in rows.items():
        with (out_dir / f"{name}.jsonl").open("w", encoding="utf-8") as handle:
            for item in items:
                handle.write(json.dumps(item, ensure_ascii=False, sort_keys=True, default=str) + "\n")
    return {name: len(items) for name, items in rows.items()}


async def _rows(db: Database, data_dir: Path) -> dict[str, list[dict[str, Any]]]:
    records = Records(db)
    await records.setup()
    ledger = NoteLedger(db)
    await ledger.setup()
    conn = await connect_sqlite(data_dir / "coo.sqlite", 5000)
    try:
        store = ApprovalStore(conn)
        await store.setup()
        approvals = [
            {
                **a.__dict__,
                "cards": [c.__dict__ for c in a.cards],
                "outbox": (o.__dict__ if (o := await store.outbox(a.id)) else None),
            }
            for a in await store.list_approvals(limit=10**9)
        ]
    finally:
        await conn.close()
    record_rows = []
    for kind in MODELS:
        for record in await records.all(kind):
            for version in await records.history(kind, record.id):
                record_rows.append(
                    {
                        "kind": kind,
                        "id": version.id,
                        "version": version.version,
                        "data": version.data.model_dump(mode="json"),
                        "event_id": version.event_id,
                        "actor": version.actor,
                        "at": version.at.isoformat(),
                        "deleted": version.deleted,
                    }
                )
    return {
        "events": [e.__dict__ for e in await db.events(limit=10**9)],
        "records": record_rows,
        "approvals": approvals,
        "notes": [n.__dict__ for n in await ledger.all()],
    }


def read_export(out_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """Parse an export back (records validated against their models)."""
    parsed: dict[str, list[dict[str, Any]]] = {}
    for name in FILES:
        path = out_dir / f"{name}.jsonl"
        lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        parsed[name] = [json.loads(line) for line in lines if line.strip()]
    for row in parsed["records"]:
        MODELS[row["kind"]].model_validate(row["data"])
    return parsed
