"""``coo export``: every portable store's rows (``memory.portable``: events, records, approvals, remembered
notes, goals) as JSON Lines, one ``<name>.jsonl`` per store, each line as the store dumps it.

The folder is created with mode 0700 and each file with 0600: an export holds the business's
messages and contacts. ``coo import`` (bot/backup.py) restores it. ``install.json`` names the install that
made it (its public id, never its secret): approval digests in it are keyed with that install's secret,
so they verify only there (``memory.install``). It also lists each store's line version, so a later
version knows which layout it reads.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from memory.db import open_database
from memory.portable import PORTABLE, PortableStore

MANIFEST = "install.json"


async def export_all(
    data_dir: Path, out_dir: Path, portable: Sequence[type[PortableStore]] = PORTABLE
) -> dict[str, int]:
    """Write one ``<name>.jsonl`` per portable store into ``out_dir``; returns line counts.

    Everything is read in one read transaction (one WAL snapshot), so an export taken while the bot
    runs is consistent: no record points to an event the export lacks.
    """
    async with open_database(data_dir) as db:
        stores = [store(db) for store in portable]
        for store in stores:
            await store.setup()  # a data dir no new version has started yet is brought up to date first
        conn = db.connection
        await conn.execute("BEGIN")
        try:
            rows = {store.name: await store.dump() for store in stores}
        finally:
            await conn.rollback()
        manifest = {"install_id": db.install.id, "versions": {store.name: store.version for store in portable}}
    return await asyncio.to_thread(_write, rows, out_dir, manifest)


def git_work_tree(path: Path) -> Path | None:
    """The git work tree ``path`` lies in (``path`` itself or a parent holding ``.git``), if any."""
    for folder in (path, *path.parents):
        if (folder / ".git").exists():
            return folder
    return None


def jsonl_line(item: dict[str, Any]) -> str:
    """One exported line (the console's timeline export writes its events with it too)."""
    return json.dumps(item, ensure_ascii=False, sort_keys=True, default=str) + "\n"


def _write(rows: dict[str, list[dict[str, Any]]], out_dir: Path, manifest: dict[str, Any]) -> dict[str, int]:
    out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(out_dir / MANIFEST, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(manifest, handle)
    for name, items in rows.items():
        fd = os.open(out_dir / f"{name}.jsonl", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            for item in items:
                handle.write(jsonl_line(item))
    return {name: len(items) for name, items in rows.items()}


def read_export(out_dir: Path, portable: Sequence[type[PortableStore]] = PORTABLE) -> dict[str, list[dict[str, Any]]]:
    """Parse an export back, each line checked against its store's line model."""
    parsed: dict[str, list[dict[str, Any]]] = {}
    for store in portable:
        path = out_dir / f"{store.name}.jsonl"
        lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
        parsed[store.name] = [json.loads(line) for line in lines if line.strip()]
        for row in parsed[store.name]:
            store.line.model_validate(row)
    return parsed
