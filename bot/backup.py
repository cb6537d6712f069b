"""``coo import``: restore a ``coo export`` folder into an empty data dir.

Round trip: ``coo export`` of the restored dir gives back the same events, records (every version),
approvals, notes and goals (with their tasks and attempts), plus one ``backup.restored`` event at the
end, with these deliberate changes that fail closed (a backup may be older than what happened since
it was made):

- an approval still pending in the export comes back ``expired`` (decided by ``restore``): its card
  can no longer be approved, the action can be proposed again;
- an outbox row ``queued`` or ``running`` comes back ``unknown``: it may have run after the export,
  so it is never sent by itself; the card offers Resend;
- a goal that was not finished (``planning``, ``proposed``, ``active``, ``verifying``; a recurring
  goal, one with a schedule, is ``active`` between its runs, so it is one of them) comes back
  ``cancelled``, its report starting with ``RESTORED_GOAL_REPORT`` (restored while it was <status>;
  set it again with /goal), the earlier report kept after it: it may have moved on (tasks run,
  cards sent, a scheduled run made) after the backup, so it never runs or plans again by itself;
- a task not finished (``todo``, ``ready``, ``running``, ``waiting_approval``, ``blocked``), in any
  goal, comes back ``cancelled`` with its lease cleared (owner and expiry), other fields as they were.

Finished goals and tasks (``done``, ``failed``, ``cancelled``) and every attempt (with its trace,
model and cost, also one that had not ended) come back exactly. The changed goals and tasks have
``updated_at`` set to the time of the import and are listed in the ``backup.restored`` event. An
export made before goals were exported has no ``goals.jsonl``: it imports with no goals.

Also restored, with semantic memory on, the semantic memory (remembered notes and the operator's chat
messages, re-embedded; what was forgotten stays forgotten). Not in an export, so not restored: paired
operators (pair again or use COO_OPERATORS), budgets, the approval policy and pause state, conversation
checkpoints, the model-call ledger.

An import creates no trust (I1, I8); docs/backup-trust.md says why and how:

- the profile is not put in effect: its fields (the last ``profile.set`` of each) wait until the operator
  confirms them in chat with ``/profile restore`` (``/profile restore drop`` discards them); ``coo import``
  lists them, and ``/profile`` shows them until then;
- outbox rows are marked restored: a ``sent`` one is history, never a known target that the ``relaxed``
  policy would let through without a card;
- approval and outbox digests are keyed with the install secret (``memory.install``). Restored onto a new
  install (the default: the data dir is new, so is its key) they do not verify there: nothing restored
  can run, be resent or count as known. Restored as the same install (``--key`` with the ``install.key``
  of the install that made the export; its id is in the export's ``install.json``), every approval and
  outbox digest must verify with that key, or the import is refused naming the file and line;
- a remembered note longer than a chat message can be (``MAX_NOTE_CHARS``) is refused.

Every line of the export is parsed and checked before anything is written; the data dir is built
in a temporary folder inside it and moved into place only when everything succeeded. For goals this
means: statuses and states are the ledger's own; a task is listed under the goal it names; an
attempt under the task it names; a task depends only on tasks of the same run of its goal; a goal's
``plan_approval`` (the idempotency key of the plan approval that started it) is the outbox key of an
approval in ``approvals.jsonl``; goal and task ids appear once.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import aiosqlite
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from bot.settings import Settings
from memory.approvals import APPROVALS_SCHEMA
from memory.db import open_database, utcnow
from memory.install import Install, InstallKeyError, content_digest, read_key
from memory.notes import NOTES_SCHEMA
from memory.profile import FIELDS, PROFILE_SCHEMA
from memory.profile import MAX_VALUE as MAX_PROFILE_VALUE
from memory.records import MODELS, RECORDS_SCHEMA
from memory.tasks import FINISHED, TASKS_SCHEMA, GoalStatus, TaskState

if TYPE_CHECKING:
    from memory.semantic.api import Note

FILES = ("events", "records", "approvals", "notes")
MANIFEST = "install.json"
"""Written by ``coo export``: the exporting install's public id (never its secret)."""
MAX_NOTE_CHARS = 100_000
"""The longest note ``/remember`` can store: a chat message's limit (``bot.dispatcher.MAX_INPUT_CHARS``)."""
OPTIONAL_FILES = ("goals",)  # exports made before goals were exported have none
RESTORE_ACTOR = "restore"
UNKNOWN_DETAIL = "restored from a backup: it may have run after the backup was made; Resend if it did not"
RESTORED_GOAL_REPORT = (
    "Restored from a backup while it was {status}, so it was cancelled: it may have acted after the backup "
    "was made. Set it again with /goal <text> if you still want it."
)
EMBED_BATCH = 64

log = logging.getLogger(__name__)


class ImportRefused(Exception):
    """The import was refused before anything was written; the message says why, in one line."""


class _Row(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EventRow(_Row):
    """One event of ``events.jsonl``."""

    id: int
    at: datetime
    actor: str
    session: str | None
    kind: str
    payload: dict[str, Any]


class RecordRow(_Row):
    """One record version of ``records.jsonl`` (its data checked against the kind's model)."""

    kind: str
    id: str
    version: int
    data: dict[str, Any]
    event_id: int
    actor: str
    at: str
    deleted: bool

    @field_validator("at")
    @classmethod
    def _at(cls, value: str) -> str:
        datetime.fromisoformat(value)
        return value

    @model_validator(mode="after")
    def _data(self) -> RecordRow:
        model = MODELS.get(self.kind)
        if model is None:
            raise ValueError(f"unknown record kind {self.kind!r}")
        model.model_validate(self.data)
        return self


class CardRow(_Row):
    """Where a card was shown."""

    channel: str
    chat_id: str
    thread_id: str | None
    message_id: str


class OutboxRow(_Row):
    """An approval's outbox row."""

    approval_id: str
    idempotency_key: str
    kind: str
    action: dict[str, Any]
    digest: str
    state: Literal["queued", "running", "sent", "failed", "unknown"]
    attempts: int
    next_attempt_at: datetime
    detail: str
    external_id: str | None
    updated_at: datetime
    progress: dict[str, Any] = {}
    owner: str | None = None
    """The process that ran it last (``memory.liveness``); kept as it was: no process here has that name."""


class ApprovalRow(_Row):
    """One approval of ``approvals.jsonl`` with its cards and outbox row."""

    id: str
    root_id: str
    thread: str
    origin: str
    kind: str
    action: dict[str, Any]
    digest: str
    approvers: list[str]
    nonce: str
    created_at: datetime
    expires_at: datetime
    state: Literal["pending", "approved", "rejected", "expired", "superseded"]
    decided_by: str | None
    decided_at: datetime | None
    cards: list[CardRow]
    context: dict[str, Any] = {}
    outbox: OutboxRow | None

    @model_validator(mode="after")
    def _own_outbox(self) -> ApprovalRow:
        if self.outbox is not None and self.outbox.approval_id != self.id:
            raise ValueError("its outbox row belongs to another approval")
        return self


class NoteRow(_Row):
    """One remembered note."""

    ref: str
    scope: str
    source: str
    text: str = Field(max_length=MAX_NOTE_CHARS)
    at: datetime


class AttemptRow(_Row):
    """One attempt at a task, nested in its task."""

    task_id: str
    attempt: int = Field(ge=0)
    started_at: AwareDatetime
    ended_at: AwareDatetime | None
    outcome: str | None
    error: str
    model: str
    cost: float = Field(ge=0)
    trace: list[dict[str, Any]]


class TaskRow(_Row):
    """One task of a goal's run, nested in its goal, with its attempts."""

    id: str = Field(min_length=1)
    goal_id: str
    run: int = Field(ge=1)
    seq: int = Field(ge=0)
    key: str = Field(min_length=1)
    title: str
    skill: str
    instructions: str
    depends_on: list[str]
    expected: str
    state: TaskState
    attempts: int = Field(ge=0)
    next_try_at: AwareDatetime
    lease_owner: str | None
    lease_until: AwareDatetime | None
    waiting_on: list[str]
    notes: list[str]
    result: dict[str, Any] | None
    error: str
    created_at: AwareDatetime
    updated_at: AwareDatetime
    attempt_log: list[AttemptRow]

    @model_validator(mode="after")
    def _own_attempts(self) -> TaskRow:
        for attempt in self.attempt_log:
            if attempt.task_id != self.id:
                raise ValueError(f"task {self.id} lists an attempt of task {attempt.task_id}")
        return self


class GoalRow(_Row):
    """One line of ``goals.jsonl``: a goal with its tasks (every run) and their attempts."""

    id: str = Field(min_length=1)
    text: str
    criteria: str
    due: str | None
    budget: float | None
    status: GoalStatus
    session: str
    requested_by: str
    plan: dict[str, Any] | None
    plan_approval: str | None
    schedule: str | None
    runs: int = Field(ge=0)
    verified: int = Field(ge=0)
    last_run_at: AwareDatetime | None
    report: str
    status_message: dict[str, Any] | None
    created_at: AwareDatetime
    updated_at: AwareDatetime
    tasks: list[TaskRow]

    @field_validator("due")
    @classmethod
    def _due(cls, value: str | None) -> str | None:
        if value is not None:
            datetime.fromisoformat(value)  # a date or a date and time
        return value

    @model_validator(mode="after")
    def _own_tasks(self) -> GoalRow:
        ids = {task.id for task in self.tasks}
        if len(ids) != len(self.tasks):
            raise ValueError(f"goal {self.id} lists the same task id twice")
        slots = {(task.run, task.key) for task in self.tasks}
        if len(slots) != len(self.tasks):
            raise ValueError(f"goal {self.id} lists two tasks with the same key in one run")
        run_of = {task.id: task.run for task in self.tasks}
        for task in self.tasks:
            if task.goal_id != self.id:
                raise ValueError(f"task {task.id} points to goal {task.goal_id} but is listed under goal {self.id}")
            if task.run > self.runs:
                raise ValueError(f"task {task.id} is of run {task.run} but goal {self.id} has {self.runs} runs")
            for dependency in task.depends_on:
                if dependency == task.id or run_of.get(dependency) != task.run:
                    raise ValueError(
                        f"task {task.id} depends on {dependency}, which is not another task of run {task.run} "
                        f"of goal {self.id}"
                    )
        return self


class Backup(BaseModel):
    """A parsed, checked export."""

    events: list[EventRow]
    records: list[RecordRow]
    approvals: list[ApprovalRow]
    notes: list[NoteRow]
    goals: list[GoalRow] = []


def read_backup(source: Path, install: Install | None = None) -> Backup:
    """Parse and check every line of an export; ImportRefused naming the file and line otherwise. With
    ``install`` (a restore as the same install), every approval and outbox digest must verify with its key."""
    if not source.is_dir():
        raise ImportRefused(f"{source} is not a folder written by `coo export`")
    missing = [name for name in FILES if not (source / f"{name}.jsonl").is_file()]
    if missing:
        raise ImportRefused(f"{source} has no {', '.join(f'{m}.jsonl' for m in missing)}")
    models: dict[str, type[_Row]] = {
        "events": EventRow,
        "records": RecordRow,
        "approvals": ApprovalRow,
        "notes": NoteRow,
        "goals": GoalRow,
    }
    lines: dict[str, list[tuple[int, Any]]] = {}
    for name, model in models.items():
        path = source / f"{name}.jsonl"
        lines[name] = _parse_lines(path, model) if name not in OPTIONAL_FILES or path.exists() else []
    backup = Backup.model_validate({name: [row for _, row in rows] for name, rows in lines.items()})
    if install is not None:
        _check_manifest(source, install)
        _check_digests(lines["approvals"], install)
    _check_profile(lines["events"])
    _check_references(backup)
    _check_goals(lines["goals"], backup.approvals)
    return backup


def _parse_lines(path: Path, model: type[_Row]) -> list[tuple[int, Any]]:
    """Each non-blank line of ``path`` as ``model``, with its line number."""
    rows = []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ImportRefused(f"{path.name}: cannot read it ({exc})") from None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append((number, model.model_validate_json(line)))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first.get("loc", ()))
            message = first["msg"].removeprefix("Value error, ")
            raise ImportRefused(f"{path.name} line {number}: {where + ': ' if where else ''}{message}") from None
    return rows


def _check_manifest(source: Path, install: Install) -> None:
    """A key restores only the export of its own install."""
    try:
        made_by = json.loads((source / MANIFEST).read_text(encoding="utf-8"))["install_id"]
    except (OSError, ValueError, KeyError, TypeError):
        raise ImportRefused(
            f"{MANIFEST}: missing or unreadable, so the install that made this export is unknown; "
            "import it without --key (as a new install)"
        ) from None
    if made_by != install.id:
        raise ImportRefused(
            f"{MANIFEST}: this export was made by install {made_by}, but the key given is install {install.id}'s"
        )


def _check_digests(lines: list[tuple[int, ApprovalRow]], install: Install) -> None:
    """Each approval's and outbox row's digest is this install's seal of its action."""
    for number, a in lines:
        sealed = [("", a.action, a.digest)]
        if a.outbox is not None:
            sealed.append((" (its outbox row)", a.outbox.action, a.outbox.digest))
        for what, action, digest in sealed:
            if not install.verifies(content_digest(action), digest):
                raise ImportRefused(
                    f"approvals.jsonl line {number}: the digest of approval {a.id}{what} does not verify with this "
                    "install's key (the line was changed after the export, or another install made it)"
                )


def _check_profile(lines: list[tuple[int, EventRow]]) -> None:
    """A profile value the operator could not have set would fail when the operator confirms it."""
    for number, e in lines:
        if e.kind == "profile.set" and len(" ".join(str(e.payload.get("value", "")).split())) > MAX_PROFILE_VALUE:
            raise ImportRefused(
                f"events.jsonl line {number}: a profile value longer than {MAX_PROFILE_VALUE} characters"
            )


def _check_references(backup: Backup) -> None:
    ids = [e.id for e in backup.events]
    if len(set(ids)) != len(ids):
        raise ImportRefused("events.jsonl has the same event id twice")
    known = set(ids)
    for record in backup.records:
        if record.event_id not in known:
            raise ImportRefused(f"records.jsonl: {record.kind} {record.id} v{record.version} points to a missing event")


def _check_goals(lines: list[tuple[int, GoalRow]], approvals: Iterable[ApprovalRow]) -> None:
    """What one line cannot check alone: ids unique across lines, plan approvals present in the export."""
    plan_keys = {a.outbox.idempotency_key for a in approvals if a.outbox is not None}
    goal_line: dict[str, int] = {}
    task_line: dict[str, int] = {}
    for number, goal in lines:
        where = f"goals.jsonl line {number}"
        if goal.id in goal_line:
            raise ImportRefused(f"{where}: goal {goal.id} is also on line {goal_line[goal.id]}")
        goal_line[goal.id] = number
        for task in goal.tasks:
            if task.id in task_line:
                raise ImportRefused(f"{where}: task {task.id} is also on line {task_line[task.id]}")
            task_line[task.id] = number
        if goal.plan_approval is not None and goal.plan_approval not in plan_keys:
            raise ImportRefused(
                f"{where}: goal {goal.id} was started by approval key {goal.plan_approval}, "
                "which no approval in approvals.jsonl has"
            )


def _empty_or_absent(data_dir: Path) -> None:
    if data_dir.exists() and not data_dir.is_dir():
        raise ImportRefused(f"COO_DATA_DIR {data_dir} is not a folder")
    if data_dir.is_dir() and any(data_dir.iterdir()):
        raise ImportRefused(
            f"the data dir {data_dir} is not empty; import restores into an empty one only "
            "(point COO_DATA_DIR at a new folder, or move the old one away)"
        )


def _install_of(key_file: Path | None) -> Install | None:
    if key_file is None:
        return None
    try:
        return read_key(key_file)
    except InstallKeyError as exc:
        raise ImportRefused(f"--key {exc}") from None


async def import_all(source: Path, settings: Settings, key_file: Path | None = None) -> dict[str, int]:
    """Restore ``source`` into ``settings.data_dir`` (which must be empty or absent); returns counts.

    ``key_file``: the ``install.key`` of the install that made the export, to restore as that install
    (digests verified with it, which it then keeps); without it the data dir is a new install."""
    data_dir = settings.data_dir
    _empty_or_absent(data_dir)
    install = _install_of(key_file)
    backup = read_backup(source, install)
    try:
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise ImportRefused(f"COO_DATA_DIR {data_dir}: cannot create it ({exc.strerror})") from None
    staging = data_dir / f".import-{os.getpid()}"
    try:
        if install is not None:
            install.write(staging)
        counts = await _write_sqlite(staging, backup, source, same_install=install is not None)
        if settings.memory.semantic:
            counts["semantic memories"] = await _rebuild_semantic(staging, backup, settings)
        for entry in staging.iterdir():
            entry.rename(data_dir / entry.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return counts


async def _write_sqlite(staging: Path, backup: Backup, source: Path, same_install: bool) -> dict[str, int]:
    expired = [a.id for a in backup.approvals if a.state == "pending"]
    unknown = [a.id for a in backup.approvals if a.outbox is not None and a.outbox.state in ("queued", "running")]
    cancelled_goals = [g.id for g in backup.goals if g.status not in FINISHED]
    cancelled_tasks = [t.id for g in backup.goals for t in g.tasks if t.state not in FINISHED]
    async with open_database(staging) as db:
        conn = db.connection
        for schema in (RECORDS_SCHEMA, APPROVALS_SCHEMA, NOTES_SCHEMA, PROFILE_SCHEMA, TASKS_SCHEMA):
            await conn.executescript(schema)
        await conn.execute("BEGIN IMMEDIATE")
        try:
            # Digests come keyed (or from another install): the one-time keying of old data dirs must
            # never run over them, or a hand-made unkeyed digest would become a valid one.
            await conn.execute(
                "INSERT INTO digests_keyed (install_id, at) VALUES (?, ?)", (db.install.id, utcnow().isoformat())
            )
            await _insert_events(conn, backup.events)
            await _insert_records(conn, backup.records)
            await _insert_approvals(conn, backup.approvals)
            await conn.executemany(
                "INSERT INTO notes (ref, scope, source, text, at) VALUES (?, ?, ?, ?, ?)",
                [(n.ref, n.scope, n.source, n.text, n.at.isoformat()) for n in backup.notes],
            )
            held = await _hold_profile(conn, backup.events)
            await _insert_goals(conn, backup.goals)
            await conn.commit()
        except BaseException:
            await conn.rollback()
            raise
        await db.append_event(
            "backup.restored",
            RESTORE_ACTOR,
            {
                "source": source.name,
                "expired_approvals": expired,
                "unknown_outbox": unknown,
                "cancelled_goals": cancelled_goals,
                "cancelled_tasks": cancelled_tasks,
                "profile_held": sorted(held),
                "same_install": same_install,
            },
        )
    return {
        "events": len(backup.events),
        "records": len(backup.records),
        "approvals": len(backup.approvals),
        "notes": len(backup.notes),
        "goals": len(backup.goals),
        "tasks": sum(len(g.tasks) for g in backup.goals),
        "attempts": sum(len(t.attempt_log) for g in backup.goals for t in g.tasks),
        "expired (were pending)": len(expired),
        "unknown (were queued)": len(unknown),
        "cancelled goals (were unfinished)": len(cancelled_goals),
        "cancelled tasks (were unfinished)": len(cancelled_tasks),
        "profile fields waiting for /profile restore": len(held),
    }


async def _insert_events(conn: aiosqlite.Connection, events: Iterable[EventRow]) -> None:
    await conn.executemany(
        "INSERT INTO events (id, at, actor, session, kind, payload) VALUES (?, ?, ?, ?, ?, ?)",
        [
            (e.id, e.at.isoformat(), e.actor, e.session, e.kind, json.dumps(e.payload, ensure_ascii=False))
            for e in sorted(events, key=lambda e: e.id)
        ],
    )


async def _insert_records(conn: aiosqlite.Connection, records: Iterable[RecordRow]) -> None:
    await conn.executemany(
        "INSERT INTO records (kind, id, version, data, event_id, actor, at, deleted) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [(r.kind, r.id, r.version, json.dumps(r.data), r.event_id, r.actor, r.at, int(r.deleted)) for r in records],
    )


async def _insert_approvals(conn: aiosqlite.Connection, approvals: Iterable[ApprovalRow]) -> None:
    now = utcnow()
    for a in approvals:
        pending = a.state == "pending"
        cards = [[c.channel, c.chat_id, c.thread_id, c.message_id] for c in a.cards]
        await conn.execute(
            "INSERT INTO approvals (id, root_id, thread, origin, kind, action, digest, approvers, nonce, created_at, "
            "expires_at, state, decided_by, decided_at, cards, context) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                a.id,
                a.root_id,
                a.thread,
                a.origin,
                a.kind,
                json.dumps(a.action, sort_keys=True),
                a.digest,
                json.dumps(a.approvers),
                a.nonce,
                a.created_at.isoformat(),
                a.expires_at.isoformat(),
                "expired" if pending else a.state,
                RESTORE_ACTOR if pending else a.decided_by,
                now.isoformat() if pending else (a.decided_at.isoformat() if a.decided_at else None),
                json.dumps(cards),
                json.dumps(a.context),
            ),
        )
        o = a.outbox
        if o is None:
            continue
        in_flight = o.state in ("queued", "running")
        await conn.execute(
            "INSERT INTO outbox (approval_id, idempotency_key, kind, action, digest, state, attempts, "
            "next_attempt_at, detail, external_id, updated_at, progress, owner, reported, restored) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 1, 1)",
            (
                o.approval_id,
                o.idempotency_key,
                o.kind,
                json.dumps(o.action, sort_keys=True),
                o.digest,
                "unknown" if in_flight else o.state,
                o.attempts,
                o.next_attempt_at.isoformat(),
                UNKNOWN_DETAIL if in_flight else o.detail,
                o.external_id,
                (now if in_flight else o.updated_at).isoformat(),
                json.dumps(o.progress),
                o.owner,
            ),
        )


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _json(value: Any) -> str | None:
    return json.dumps(value) if value is not None else None


async def _insert_goals(conn: aiosqlite.Connection, goals: Iterable[GoalRow]) -> None:
    """Goals, tasks and attempts; what was not finished comes back cancelled (see the module docstring)."""
    now = utcnow().isoformat()
    for g in goals:
        unfinished = g.status not in FINISHED
        report = RESTORED_GOAL_REPORT.format(status=g.status) + (f"\n\n{g.report}" if g.report else "")
        await conn.execute(
            "INSERT INTO goals (id, text, criteria, due, budget, status, session, requested_by, plan, plan_approval, "
            "schedule, runs, verified, last_run_at, report, status_message, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                g.id, g.text, g.criteria, g.due, g.budget, "cancelled" if unfinished else g.status, g.session,
                g.requested_by, _json(g.plan), g.plan_approval, g.schedule, g.runs, g.verified, _iso(g.last_run_at),
                report if unfinished else g.report, _json(g.status_message), g.created_at.isoformat(),
                now if unfinished else g.updated_at.isoformat(),
            ),
        )  # fmt: skip
        for t in g.tasks:
            open_task = t.state not in FINISHED
            await conn.execute(
                "INSERT INTO tasks (id, goal_id, run, seq, key, title, skill, instructions, depends_on, expected, "
                "state, attempts, next_try_at, lease_owner, lease_until, waiting_on, notes, result, error, "
                "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    t.id, t.goal_id, t.run, t.seq, t.key, t.title, t.skill, t.instructions, json.dumps(t.depends_on),
                    t.expected, "cancelled" if open_task else t.state, t.attempts, t.next_try_at.isoformat(),
                    None if open_task else t.lease_owner, None if open_task else _iso(t.lease_until),
                    json.dumps(t.waiting_on), json.dumps(t.notes), _json(t.result), t.error, t.created_at.isoformat(),
                    now if open_task else t.updated_at.isoformat(),
                ),
            )  # fmt: skip
            await conn.executemany(
                "INSERT INTO task_attempts (task_id, attempt, started_at, ended_at, outcome, error, model, cost, "
                "trace) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        a.task_id, a.attempt, a.started_at.isoformat(), _iso(a.ended_at), a.outcome, a.error, a.model,
                        a.cost, json.dumps(a.trace),
                    )
                    for a in t.attempt_log
                ],
            )  # fmt: skip


async def _hold_profile(conn: aiosqlite.Connection, events: Iterable[EventRow]) -> dict[str, str]:
    """The profile the export's events describe (the last ``profile.set`` of each field; an empty value
    cleared it), held for the operator's confirmation instead of put in effect: an event line in a file
    is not the operator's word, and the profile reaches the prompt (its instructions as instructions)."""
    current: dict[str, tuple[str, int]] = {}
    for e in sorted(events, key=lambda e: e.id):
        if e.kind != "profile.set":
            continue
        field, value = str(e.payload.get("field", "")), str(e.payload.get("value", ""))
        if field not in FIELDS:
            continue  # e.g. "risk" from older versions: policy is never restored
        if value:
            current[field] = (value, e.id)
        else:
            current.pop(field, None)
    await conn.executemany(
        "INSERT INTO profile_restored (field, value, event_id) VALUES (?, ?, ?)",
        [(f, v, event_id) for f, (v, event_id) in current.items()],
    )
    return {f: v for f, (v, _) in current.items()}


def memories_of(backup: Backup, scope: str, tz: str) -> list[Note]:
    """What semantic memory held: remembered notes and the operator's chat messages, minus what was
    forgotten, as the product's own ingestion writes them (a chat note carries its date and speaker)."""
    from memory.db import Event
    from memory.notes import StoredNote
    from memory.semantic.chat_notes import forgotten_refs, notes_from_log

    events = [Event(e.id, e.at, e.actor, e.session, e.kind, e.payload) for e in backup.events]
    remembered = [StoredNote(n.ref, n.scope, n.source, n.text, n.at) for n in backup.notes]
    return notes_from_log(events, remembered, scope, tz, forgotten_refs(events))


async def _rebuild_semantic(staging: Path, backup: Backup, settings: Settings) -> int:
    # Imported here: the vector store and embedder cost a second or more to load, and are not needed
    # when semantic memory is off.
    from memory.semantic.api import InvalidNote, open_memory

    notes = memories_of(backup, settings.memory.scope, settings.timezone)
    if not notes:
        return 0
    embedder = None
    if settings.embeddings.provider == "openai":
        import openai

        from memory.semantic.embedder import OpenAIEmbedder

        llm = settings.llm
        client = openai.AsyncOpenAI(
            base_url=llm.base_url or "https://api.openai.com/v1",
            api_key=llm.api_key.get_secret_value() if llm.api_key else "not-needed",
            timeout=llm.timeout_s,
        )
        embedder = OpenAIEmbedder(client, settings.embeddings.model, owns_client=True)
    written = 0
    try:
        async with open_memory(staging, embedder=embedder, settings=settings.embeddings) as memory:
            for start in range(0, len(notes), EMBED_BATCH):
                batch = notes[start : start + EMBED_BATCH]
                while batch:
                    try:
                        written += len(await memory.add_many(batch))
                        break
                    except InvalidNote as exc:
                        # One note the memory refuses (e.g. too long) must not cost the others.
                        log.warning("semantic memory refused %s: %s", batch[exc.index].ref, exc)
                        batch = batch[: exc.index] + batch[exc.index + 1 :]
    finally:
        if embedder is not None:
            await embedder.aclose()
    return written
