"""``coo import``: restore a ``coo export`` folder into an empty data dir.

Round trip: ``coo export`` of the restored dir gives back the same events, records (every version),
approvals, notes, goals (with their tasks and attempts), follow-ups, pipeline stages and goal evidence,
plus one ``backup.restored`` event at the end, with these deliberate changes that fail closed (a backup
may be older than what happened since it was made):

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
  goal, comes back ``cancelled`` with its lease cleared (owner and expiry), other fields as they were;
- a follow-up whose card came up (``proposed`` with its approval) comes back closed: ``done`` when the
  export shows the card's email sent, ``cancelled`` otherwise (``bot/backup_stores.py`` says why); pipeline
  stages and goal evidence come back as they are (data; evidence verifies nothing by itself).

Finished goals and tasks (``done``, ``failed``, ``cancelled``) and every attempt (with its trace,
model and cost, also one that had not ended) come back exactly. The changed goals and tasks have
``updated_at`` set to the time of the import and are listed in the ``backup.restored`` event. An
export made before goals (or follow-ups, the pipeline, goal evidence) were exported has no file for them:
it imports with none.

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

Each portable store (``memory.portable``, docs/stores.md) checks its own lines (its line model) and writes
them back as given; this module decides what an import may not trust and changes those lines first.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from bot.backup_semantic import rebuild_semantic
from bot.backup_stores import check_new_stores, close_proposed_cards
from bot.settings import Settings
from memory.approval_lines import ApprovalLine
from memory.db import open_database, utcnow
from memory.errors import UserFacingError
from memory.event_log import EventLine
from memory.goal_lines import GoalLine
from memory.install import Install, InstallKeyError, content_digest, read_key
from memory.lines import Line
from memory.notes import MAX_NOTE_CHARS
from memory.portable import PORTABLE, PortableStore
from memory.profile import FIELDS, ProfileStore
from memory.profile import MAX_VALUE as MAX_PROFILE_VALUE
from memory.tasks import FINISHED

__all__ = ["MAX_NOTE_CHARS", "RESTORED_GOAL_REPORT", "UNKNOWN_DETAIL", "ImportRefused", "import_all", "read_backup"]

FILES = ("events", "records", "approvals", "notes")
"""Every export has these; a store's file added later (goals) may be missing from an older one."""
MANIFEST = "install.json"
"""Written by ``coo export``: the exporting install's public id (never its secret) and its line versions."""
RESTORE_ACTOR = "restore"
UNKNOWN_DETAIL = "restored from a backup: it may have run after the backup was made; Resend if it did not"
RESTORED_GOAL_REPORT = (
    "Restored from a backup while it was {status}, so it was cancelled: it may have acted after the backup "
    "was made. Set it again with /goal <text> if you still want it."
)

Backup = dict[str, list[Any]]
"""A parsed, checked export: each store's lines by its name."""


class ImportRefused(UserFacingError):
    """The import was refused before anything was written; the message says why, in one line."""


def read_backup(
    source: Path, install: Install | None = None, portable: Sequence[type[PortableStore]] = PORTABLE
) -> Backup:
    """Parse and check every line of an export; ImportRefused naming the file and line otherwise. With
    ``install`` (a restore as the same install), every approval and outbox digest must verify with its key.
    ``portable``: the stores read (``memory.portable.PORTABLE``, and a test's own after them)."""
    if not source.is_dir():
        raise ImportRefused(f"{source} is not a folder written by `coo export`")
    missing = [name for name in FILES if not (source / f"{name}.jsonl").is_file()]
    if missing:
        raise ImportRefused(f"{source} has no {', '.join(f'{m}.jsonl' for m in missing)}")
    versions = _versions(source)
    numbered: dict[str, list[tuple[int, Any]]] = {}
    for store in portable:
        path = source / f"{store.name}.jsonl"
        if versions.get(store.name, 1) > store.version:
            raise ImportRefused(
                f"{path.name}: written by a newer version of solo-coo (line version {versions[store.name]}; "
                f"this one reads up to {store.version}); import it with that version"
            )
        numbered[store.name] = _parse_lines(path, store.line) if path.exists() else []
    if install is not None:
        _check_manifest(source, install)
        _check_digests(numbered["approvals"], install)
    _check_profile(numbered["events"])
    backup = {name: [line for _, line in lines] for name, lines in numbered.items()}
    _check_references(backup)
    _check_goals(numbered["goals"], backup["approvals"])
    if (refused := check_new_stores(numbered, {e.id for e in backup["events"]})) is not None:
        raise ImportRefused(refused)
    return backup


def _versions(source: Path) -> dict[str, int]:
    """The line versions the manifest names; an export from before versions (or without a manifest) is 1."""
    try:
        versions = json.loads((source / MANIFEST).read_text(encoding="utf-8")).get("versions", {})
    except (OSError, ValueError, AttributeError):
        return {}
    if not isinstance(versions, dict):
        return {}
    return {str(name): version for name, version in versions.items() if isinstance(version, int)}


def _parse_lines(path: Path, model: type[Line]) -> list[tuple[int, Any]]:
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


def _check_digests(lines: list[tuple[int, ApprovalLine]], install: Install) -> None:
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


def _check_profile(lines: list[tuple[int, EventLine]]) -> None:
    """A profile value the operator could not have set would fail when the operator confirms it."""
    for number, e in lines:
        if e.kind == "profile.set" and len(" ".join(str(e.payload.get("value", "")).split())) > MAX_PROFILE_VALUE:
            raise ImportRefused(
                f"events.jsonl line {number}: a profile value longer than {MAX_PROFILE_VALUE} characters"
            )


def _check_references(backup: Backup) -> None:
    ids = [e.id for e in backup["events"]]
    if len(set(ids)) != len(ids):
        raise ImportRefused("events.jsonl has the same event id twice")
    known = set(ids)
    for record in backup["records"]:
        if record.event_id not in known:
            raise ImportRefused(f"records.jsonl: {record.kind} {record.id} v{record.version} points to a missing event")


def _check_goals(lines: list[tuple[int, GoalLine]], approvals: Iterable[ApprovalLine]) -> None:
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


async def import_all(
    source: Path, settings: Settings, key_file: Path | None = None, portable: Sequence[type[PortableStore]] = PORTABLE
) -> dict[str, int]:
    """Restore ``source`` into ``settings.data_dir`` (which must be empty or absent); returns counts.

    ``key_file``: the ``install.key`` of the install that made the export, to restore as that install
    (digests verified with it, which it then keeps); without it the data dir is a new install."""
    data_dir = settings.data_dir
    _empty_or_absent(data_dir)
    install = _install_of(key_file)
    backup = read_backup(source, install, portable)
    try:
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise ImportRefused(f"COO_DATA_DIR {data_dir}: cannot create it ({exc.strerror})") from None
    staging = data_dir / f".import-{os.getpid()}"
    try:
        if install is not None:
            install.write(staging)
        counts = await _write_sqlite(staging, backup, portable, source, same_install=install is not None)
        if settings.memory.semantic:
            counts["semantic memories"] = await rebuild_semantic(staging, backup["events"], backup["notes"], settings)
        for entry in staging.iterdir():
            entry.rename(data_dir / entry.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return counts


def _fail_closed(backup: Backup) -> tuple[Backup, dict[str, list[str]]]:
    """The lines as restored: what may have acted after the backup was made comes back unable to act
    (see the module docstring), with the ids of what changed."""
    now = utcnow()
    changed: dict[str, list[str]] = {"approvals": [], "outbox": [], "goals": [], "tasks": []}
    followups, changed["followups"] = close_proposed_cards(backup.get("followups", []), backup["approvals"], now)
    approvals = []
    for a in backup["approvals"]:
        if a.state == "pending":
            changed["approvals"].append(a.id)
            a = a.model_copy(update={"state": "expired", "decided_by": RESTORE_ACTOR, "decided_at": now})
        if a.outbox is not None and a.outbox.state in ("queued", "running"):
            changed["outbox"].append(a.id)
            outbox = a.outbox.model_copy(update={"state": "unknown", "detail": UNKNOWN_DETAIL, "updated_at": now})
            a = a.model_copy(update={"outbox": outbox})
        approvals.append(a)
    goals = []
    for g in backup["goals"]:
        tasks = []
        for t in g.tasks:
            if t.state not in FINISHED:
                changed["tasks"].append(t.id)
                t = t.model_copy(
                    update={"state": "cancelled", "lease_owner": None, "lease_until": None, "updated_at": now}
                )
            tasks.append(t)
        update: dict[str, Any] = {"tasks": tasks}
        if g.status not in FINISHED:
            changed["goals"].append(g.id)
            report = RESTORED_GOAL_REPORT.format(status=g.status) + (f"\n\n{g.report}" if g.report else "")
            update |= {"status": "cancelled", "report": report, "updated_at": now}
        goals.append(g.model_copy(update=update))
    return {**backup, "approvals": approvals, "goals": goals, "followups": followups}, changed


async def _write_sqlite(
    staging: Path, backup: Backup, portable: Sequence[type[PortableStore]], source: Path, same_install: bool
) -> dict[str, int]:
    restored, changed = _fail_closed(backup)
    held = _held_profile(backup["events"])
    async with open_database(staging) as db:
        for kind in portable:
            store = kind(db)
            await store.setup()
            await store.restore(restored[store.name])
        profile = ProfileStore(db)
        await profile.setup()
        await profile.hold(held)
        await db.append_event(
            "backup.restored",
            RESTORE_ACTOR,
            {
                "source": source.name,
                "expired_approvals": changed["approvals"],
                "unknown_outbox": changed["outbox"],
                "cancelled_goals": changed["goals"],
                "cancelled_tasks": changed["tasks"],
                "closed_followups": changed["followups"],
                "profile_held": sorted(held),
                "same_install": same_install,
            },
        )
    goals = backup["goals"]
    return {
        **{name: len(lines) for name, lines in backup.items()},
        "tasks": sum(len(g.tasks) for g in goals),
        "attempts": sum(len(t.attempt_log) for g in goals for t in g.tasks),
        "expired (were pending)": len(changed["approvals"]),
        "unknown (were queued)": len(changed["outbox"]),
        "cancelled goals (were unfinished)": len(changed["goals"]),
        "cancelled tasks (were unfinished)": len(changed["tasks"]),
        "closed follow-ups (their cards had come up)": len(changed["followups"]),
        "profile fields waiting for /profile restore": len(held),
    }


def _held_profile(events: Iterable[EventLine]) -> dict[str, tuple[str, int]]:
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
    return current
