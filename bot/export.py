"""``coo export``: records, events, approvals, remembered notes and goals as JSON Lines.

``goals.jsonl`` holds one goal per line with its tasks nested in it and each task's attempts nested in
the task: a line is then a whole unit, so most references (a task's goal, an attempt's task) are
checked inside the line, the way an approval carries its outbox row.

The folder is created with mode 0700 and each file with 0600: an export holds the business's
messages and contacts. ``coo import`` (bot/backup.py) restores it. ``install.json`` names the install that
made it (its public id, never its secret): approval digests in it are keyed with that install's secret,
so they verify only there (``memory.install``). Whether an outbox row was itself restored is not
exported: every row an import writes is marked restored anyway.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from pathlib import Path
from typing import Any

from memory.approvals import ApprovalStore, OutboxRow
from memory.db import Database, open_database
from memory.notes import NOTES_SCHEMA, NoteLedger
from memory.records import MODELS, RECORDS_SCHEMA
from memory.tasks import TASKS_SCHEMA

FILES = ("events", "records", "approvals", "notes", "goals")
MANIFEST = "install.json"

log = logging.getLogger(__name__)


async def export_all(data_dir: Path, out_dir: Path) -> dict[str, int]:
    """Write one ``<name>.jsonl`` per table into ``out_dir``; returns line counts.

    Everything is read in one read transaction (one WAL snapshot), so an export taken while the bot
    runs is consistent: no record points to an event the export lacks.
    """
    async with open_database(data_dir) as db:
        conn = db.connection
        for schema in (RECORDS_SCHEMA, NOTES_SCHEMA, TASKS_SCHEMA):
            await conn.executescript(schema)
        await conn.commit()
        # A data dir no new version has started yet gets its digests keyed first, as a start would.
        await ApprovalStore(conn).setup(db.install)
        await conn.execute("BEGIN")
        try:
            rows = await _rows(db)
        finally:
            await conn.rollback()
        install_id = db.install.id
    return await asyncio.to_thread(_write, rows, out_dir, install_id)


def git_work_tree(path: Path) -> Path | None:
    """The git work tree ``path`` lies in (``path`` itself or a parent holding ``.git``), if any."""
    for folder in (path, *path.parents):
        if (folder / ".git").exists():
            return folder
    return None


def jsonl_line(item: dict[str, Any]) -> str:
    """One exported line (the console's timeline export writes its events with it too)."""
    return json.dumps(item, ensure_ascii=False, sort_keys=True, default=str) + "\n"


def _write(rows: dict[str, list[dict[str, Any]]], out_dir: Path, install_id: str) -> dict[str, int]:
    out_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(out_dir / MANIFEST, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump({"install_id": install_id}, handle)
    for name, items in rows.items():
        fd = os.open(out_dir / f"{name}.jsonl", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            for item in items:
                handle.write(jsonl_line(item))
    return {name: len(items) for name, items in rows.items()}


async def _rows(db: Database) -> dict[str, list[dict[str, Any]]]:
    # Only reads here: the caller holds the transaction. The store's methods never commit on reads.
    ledger = NoteLedger(db)
    store = ApprovalStore(db.connection)
    approvals = [
        {
            **a.__dict__,
            "cards": [c.__dict__ for c in a.cards],
            "outbox": (_outbox_line(o) if (o := await store.outbox(a.id)) else None),
        }
        for a in await store.list_approvals(limit=10**9)
    ]
    # Every version of every record, deleted ones included: the history is part of the backup.
    async with db.connection.execute(
        "SELECT kind, id, version, data, event_id, actor, at, deleted FROM records ORDER BY kind, id, version"
    ) as cur:
        record_rows = [
            {
                "kind": r[0],
                "id": r[1],
                "version": r[2],
                "data": json.loads(r[3]),
                "event_id": r[4],
                "actor": r[5],
                "at": r[6],
                "deleted": bool(r[7]),
            }
            for r in await cur.fetchall()
        ]
    return {
        "events": [e.__dict__ for e in await db.events(limit=10**9)],
        "records": record_rows,
        "approvals": approvals,
        "notes": [n.__dict__ for n in await ledger.all()],
        "goals": await _goal_rows(db),
    }


def _outbox_line(row: OutboxRow) -> dict[str, Any]:
    return {name: value for name, value in row.__dict__.items() if name != "restored"}


_GOAL_COLUMNS = (
    "id, text, criteria, due, budget, status, session, requested_by, plan, plan_approval, schedule, runs, "
    "verified, last_run_at, report, status_message, created_at, updated_at"
)
_TASK_COLUMNS = (
    "id, goal_id, run, seq, key, title, skill, instructions, depends_on, expected, state, attempts, next_try_at, "
    "lease_owner, lease_until, waiting_on, notes, result, error, created_at, updated_at"
)
_ATTEMPT_COLUMNS = "task_id, attempt, started_at, ended_at, outcome, error, model, cost, trace"
# Columns stored as JSON text, written out as JSON values so the export reads as plain JSON.
_JSON_COLUMNS = frozenset({"plan", "status_message", "depends_on", "waiting_on", "notes", "result", "trace"})


async def _goal_rows(db: Database) -> list[dict[str, Any]]:
    """Every goal with its tasks (every run) and each task's attempts, read from the tables as stored."""

    async def table(columns: str, sql: str) -> list[dict[str, Any]]:
        names = [c.strip() for c in columns.split(",")]
        return [
            {
                name: (json.loads(value) if name in _JSON_COLUMNS and value is not None else value)
                for name, value in zip(names, row, strict=True)
            }
            for row in await db.fetchall(f"SELECT {columns} {sql}")
        ]

    goals = await table(_GOAL_COLUMNS, "FROM goals ORDER BY created_at, id")
    tasks = await table(_TASK_COLUMNS, "FROM tasks ORDER BY goal_id, run, seq, id")
    # The attempt's row id only orders a task's attempts; the order of the nested list keeps that.
    attempts = await table(_ATTEMPT_COLUMNS, "FROM task_attempts ORDER BY id")
    attempts_of: dict[str, list[dict[str, Any]]] = {}
    for attempt in attempts:
        attempts_of.setdefault(attempt["task_id"], []).append(attempt)
    tasks_of: dict[str, list[dict[str, Any]]] = {}
    for task in tasks:
        tasks_of.setdefault(task["goal_id"], []).append({**task, "attempt_log": attempts_of.get(task["id"], [])})
    # The ledger never writes a task without its goal or an attempt without its task; should a file
    # hold one anyway, the export says so instead of dropping it without a word.
    goal_ids = {goal["id"] for goal in goals}
    task_ids = {task["id"] for task in tasks}
    orphans = sorted({t["id"] for t in tasks if t["goal_id"] not in goal_ids} | (attempts_of.keys() - task_ids))
    if orphans:
        log.warning("export: tasks or attempts without their goal or task are not exported: %s", ", ".join(orphans))
    return [{**goal, "tasks": tasks_of.get(goal["id"], [])} for goal in goals]


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
