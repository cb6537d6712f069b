"""What a killed ``coo run`` left in its database, read straight from SQLite (the process may be gone): the
cards a loop proposed, where they were shown, and when the loop last checked."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any


def query(data_dir: Path, sql: str) -> list[Any]:
    """Rows of ``sql`` on the data dir's database ([] while its tables do not exist yet)."""
    with sqlite3.connect(data_dir / "coo.sqlite", timeout=5) as conn:
        try:
            return conn.execute(sql).fetchall()
        except sqlite3.OperationalError:
            return []


def card_states(data_dir: Path, where: str) -> list[tuple[str, str]]:
    """(approval state, outbox state) of every card matching ``where`` (a condition on ``approvals a``)."""
    return query(
        data_dir,
        "SELECT a.state, COALESCE(o.state, '') FROM approvals a LEFT JOIN outbox o ON o.approval_id = a.id "
        f"WHERE {where}",
    )


def shown_in(data_dir: Path, where: str) -> list[str]:
    """The chat message ids the cards matching ``where`` are recorded as shown in."""
    rows = query(data_dir, f"SELECT cards FROM approvals a WHERE {where}")
    return [str(ref[3]) for row in rows for ref in json.loads(row[0]) if ref[3]]


def last_check(data_dir: Path, key: str) -> str:
    """When a loop's last due check ran (ISO, from the ``kv`` row ``key``), or ''."""
    rows = query(data_dir, f"SELECT value FROM kv WHERE key = '{key}'")
    return str(json.loads(rows[0][0])["at"]) if rows else ""


def cards_sent(calls: list[Any], marker: str) -> list[Any]:
    """The fake Telegram's successful sendMessage calls whose text contains ``marker`` (the cards shown)."""
    return [c for c in calls if c.method == "sendMessage" and c.status == 200 and marker in str(c.params.get("text"))]
