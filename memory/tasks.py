"""The goal and task ledger (I7): goals, their tasks, a row per attempt, leases with heartbeats.

Every state change is a compare-and-set on the current state, written together with its event in the
event log. A task is claimed with a lease before it runs; a lease that expired (its process died) puts
the task back to ready, so it runs again, and because every outward effect of a task goes through the
approval and outbox path, a re-run never repeats an effect.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from memory.db import Database, Transaction, utcnow
from memory.errors import InternalError

TASKS_SCHEMA = """
CREATE TABLE IF NOT EXISTS goals (
    id TEXT PRIMARY KEY,
    text TEXT NOT NULL,
    criteria TEXT NOT NULL DEFAULT '',
    due TEXT,
    budget REAL,
    status TEXT NOT NULL CHECK (status IN ('planning','proposed','active','verifying','done','failed','cancelled')),
    session TEXT NOT NULL,
    requested_by TEXT NOT NULL,
    plan TEXT,
    plan_approval TEXT,
    schedule TEXT,
    runs INTEGER NOT NULL DEFAULT 0,
    verified INTEGER NOT NULL DEFAULT 0,
    last_run_at TEXT,
    report TEXT NOT NULL DEFAULT '',
    status_message TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS goals_status ON goals(status);
CREATE TABLE IF NOT EXISTS tasks (
    id TEXT PRIMARY KEY,
    goal_id TEXT NOT NULL REFERENCES goals(id),
    run INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    key TEXT NOT NULL,
    title TEXT NOT NULL,
    skill TEXT NOT NULL,
    instructions TEXT NOT NULL,
    depends_on TEXT NOT NULL DEFAULT '[]',
    expected TEXT NOT NULL DEFAULT '',
    state TEXT NOT NULL CHECK (state IN
        ('todo','ready','running','waiting_approval','waiting_reply','blocked','done','failed','cancelled')),
    attempts INTEGER NOT NULL DEFAULT 0,
    next_try_at TEXT NOT NULL,
    lease_owner TEXT,
    lease_until TEXT,
    waiting_on TEXT NOT NULL DEFAULT '[]',
    notes TEXT NOT NULL DEFAULT '[]',
    result TEXT,
    error TEXT NOT NULL DEFAULT '',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    resumes INTEGER NOT NULL DEFAULT 0,
    UNIQUE (goal_id, run, key)
);
CREATE INDEX IF NOT EXISTS tasks_state ON tasks(state, next_try_at);
CREATE INDEX IF NOT EXISTS tasks_goal ON tasks(goal_id, run, seq);
CREATE TABLE IF NOT EXISTS task_attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id TEXT NOT NULL REFERENCES tasks(id),
    attempt INTEGER NOT NULL,
    started_at TEXT NOT NULL,
    ended_at TEXT,
    outcome TEXT,
    error TEXT NOT NULL DEFAULT '',
    model TEXT NOT NULL DEFAULT '',
    cost REAL NOT NULL DEFAULT 0,
    trace TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS task_attempts_task ON task_attempts(task_id, attempt);
"""

# Files from before tasks could wait for a reply: SQLite cannot change a CHECK in place, so the table is copied
# into one with the new CHECK, in one transaction (a crash leaves the old table or the new one, never neither).
_TASK_COLUMNS = (
    "id, goal_id, run, seq, key, title, skill, instructions, depends_on, expected, state, attempts, next_try_at, "
    "lease_owner, lease_until, waiting_on, notes, result, error, created_at, updated_at, resumes"
)
_WITH_WAITING_REPLY = (
    "BEGIN IMMEDIATE;\n"
    + TASKS_SCHEMA.split("CREATE TABLE IF NOT EXISTS tasks (", 1)[1]
    .split(");", 1)[0]
    .join(("CREATE TABLE tasks_migrating (", ");\n"))
    + f"INSERT INTO tasks_migrating ({_TASK_COLUMNS}) SELECT {_TASK_COLUMNS} FROM tasks;\n"
    "DROP TABLE tasks;\n"
    "ALTER TABLE tasks_migrating RENAME TO tasks;\n"
    "CREATE INDEX IF NOT EXISTS tasks_state ON tasks(state, next_try_at);\n"
    "CREATE INDEX IF NOT EXISTS tasks_goal ON tasks(goal_id, run, seq);\n"
    "COMMIT;\n"
)

GoalStatus = Literal["planning", "proposed", "active", "verifying", "done", "failed", "cancelled"]
TaskState = Literal[
    "todo", "ready", "running", "waiting_approval", "waiting_reply", "blocked", "done", "failed", "cancelled"
]
FINISHED: frozenset[str] = frozenset({"done", "failed", "cancelled"})
# Which states a task may move to from each state: anything else is refused (a bug, or a race lost).
TRANSITIONS: dict[str, frozenset[str]] = {
    "todo": frozenset({"ready", "cancelled"}),
    "ready": frozenset({"running", "cancelled"}),
    "running": frozenset({"done", "ready", "waiting_approval", "blocked", "failed", "cancelled"}),
    "waiting_approval": frozenset({"ready", "waiting_reply", "blocked", "cancelled"}),
    # Its email was sent and an answer is awaited: a reply or the deadline (``next_try_at``) puts it back to ready.
    "waiting_reply": frozenset({"ready", "blocked", "cancelled"}),
    "blocked": frozenset({"ready", "cancelled", "done"}),
    "done": frozenset(),
    "failed": frozenset(),
    "cancelled": frozenset(),
}


@dataclass(frozen=True)
class Goal:
    """One goal as stored."""

    id: str
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
    runs: int
    last_run_at: datetime | None
    report: str
    status_message: dict[str, Any] | None
    created_at: datetime
    updated_at: datetime
    verified: int = 0

    @property
    def workflow(self) -> str:
        """The budget workflow its model calls count against."""
        return f"goal-{self.id}"


@dataclass(frozen=True)
class Task:
    """One task of one run of a goal."""

    id: str
    goal_id: str
    run: int
    seq: int
    key: str
    title: str
    skill: str
    instructions: str
    depends_on: tuple[str, ...]
    expected: str
    state: TaskState
    attempts: int
    next_try_at: datetime
    lease_owner: str | None
    lease_until: datetime | None
    waiting_on: tuple[str, ...]
    notes: tuple[str, ...]
    result: dict[str, Any] | None
    error: str
    created_at: datetime
    updated_at: datetime
    resumes: int = 0
    """How often the task went on after its cards were decided: its proposals are named within one stretch
    between two of these, so a re-run of the same stretch finds them (I7) and a later stretch may propose anew."""


@dataclass(frozen=True)
class Attempt:
    """One attempt at a task: when, how it ended, what it cost and what it did."""

    task_id: str
    attempt: int
    started_at: datetime
    ended_at: datetime | None
    outcome: str | None
    error: str
    model: str
    cost: float
    trace: list[dict[str, Any]]


_G = (
    "id, text, criteria, due, budget, status, session, requested_by, plan, plan_approval, schedule, runs, "
    "last_run_at, report, status_message, created_at, updated_at, verified"
)
_T = (
    "id, goal_id, run, seq, key, title, skill, instructions, depends_on, expected, state, attempts, next_try_at, "
    "lease_owner, lease_until, waiting_on, notes, result, error, created_at, updated_at, resumes"
)


def _dt(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _goal(r: Any) -> Goal:
    return Goal(
        r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7],
        json.loads(r[8]) if r[8] else None, r[9], r[10], r[11], _dt(r[12]), r[13],
        json.loads(r[14]) if r[14] else None, datetime.fromisoformat(r[15]), datetime.fromisoformat(r[16]), r[17],
    )  # fmt: skip


def _task(r: Any) -> Task:
    return Task(
        r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], tuple(json.loads(r[8])), r[9], r[10], r[11],
        datetime.fromisoformat(r[12]), r[13], _dt(r[14]), tuple(json.loads(r[15])), tuple(json.loads(r[16])),
        json.loads(r[17]) if r[17] else None, r[18], datetime.fromisoformat(r[19]), datetime.fromisoformat(r[20]),
        r[21],
    )  # fmt: skip


def new_id(prefix: str) -> str:
    """A short readable id: ``g-7k2m``."""
    return prefix + "".join(secrets.choice("abcdefghjkmnpqrstuvwxyz23456789") for _ in range(5))


class TransitionRefused(InternalError, RuntimeError):
    """A task was not in the state a transition expected (another worker moved it, or a bug)."""


class TaskLedger:
    """Goals, tasks and attempts in the application database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def setup(self) -> None:
        """Create the tables."""
        await self._db.script(TASKS_SCHEMA)
        columns = {r[1] for r in await self._db.fetchall("PRAGMA table_info(tasks)")}
        if "resumes" not in columns:  # files from before proposals were named by their place in the task
            await self._db.write("ALTER TABLE tasks ADD COLUMN resumes INTEGER NOT NULL DEFAULT 0")
        row = await self._db.fetchone("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'tasks'")
        if row is not None and "'waiting_reply'" not in row[0]:
            await self._db.script(_WITH_WAITING_REPLY)

    # -- goals ---------------------------------------------------------------------------------
    async def create_goal(
        self, text: str, session: str, requested_by: str, status: GoalStatus = "planning", goal_id: str | None = None
    ) -> Goal:
        """Record a new goal (idempotent for a given ``goal_id``)."""
        now = utcnow().isoformat()
        gid = goal_id or new_id("g")
        async with self._db.transaction() as tx:
            row = await tx.fetchone(f"SELECT {_G} FROM goals WHERE id = ?", (gid,))
            if row is not None:
                return _goal(row)
            await tx.execute(
                "INSERT INTO goals (id, text, status, session, requested_by, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (gid, text, status, session, requested_by, now, now),
            )
            await tx.append_event("goal.created", requested_by, {"goal_id": gid, "status": status}, session=session)
        goal = await self.goal(gid)
        assert goal is not None
        return goal

    async def goal(self, goal_id: str) -> Goal | None:
        """One goal."""
        row = await self._db.fetchone(f"SELECT {_G} FROM goals WHERE id = ?", (goal_id,))
        return _goal(row) if row else None

    async def goals(self, statuses: tuple[str, ...] | None = None) -> list[Goal]:
        """Goals, newest first, optionally in some statuses."""
        sql = f"SELECT {_G} FROM goals"
        args: tuple[Any, ...] = ()
        if statuses:
            sql += f" WHERE status IN ({', '.join('?' * len(statuses))})"
            args = statuses
        return [_goal(r) for r in await self._db.fetchall(sql + " ORDER BY created_at DESC", args)]

    async def move_goal(
        self, goal_id: str, expect: tuple[str, ...], new: GoalStatus, actor: str = "coo", **fields: Any
    ) -> bool:
        """Compare-and-set a goal's status (with other fields); False when it was not in ``expect``."""
        encoded = {
            k: (json.dumps(v) if k in ("plan", "status_message") and v is not None else v) for k, v in fields.items()
        }
        encoded |= {"status": new, "updated_at": utcnow().isoformat()}
        assignments = ", ".join(f"{k} = ?" for k in encoded)
        async with self._db.transaction() as tx:
            written = await tx.execute(
                f"UPDATE goals SET {assignments} WHERE id = ? AND status IN ({', '.join('?' * len(expect))})",
                (*encoded.values(), goal_id, *expect),
            )
            if written.rowcount:
                await tx.append_event("goal." + new, actor, {"goal_id": goal_id})
        return written.rowcount == 1

    async def update_goal(self, goal_id: str, actor: str = "coo", **fields: Any) -> None:
        """Set goal fields (JSON-plain values are encoded); a status change is an event."""
        if not fields:
            return
        encoded = {
            k: (json.dumps(v) if k in ("plan", "status_message") and v is not None else v) for k, v in fields.items()
        }
        encoded["updated_at"] = utcnow().isoformat()
        assignments = ", ".join(f"{k} = ?" for k in encoded)
        async with self._db.transaction() as tx:
            await tx.execute(f"UPDATE goals SET {assignments} WHERE id = ?", (*encoded.values(), goal_id))
            if "status" in fields:
                await tx.append_event("goal." + str(fields["status"]), actor, {"goal_id": goal_id})

    # -- tasks ---------------------------------------------------------------------------------
    async def add_run(
        self, goal_id: str, tasks: list[dict[str, Any]], run: int | None = None, activation: str | None = None
    ) -> list[Task]:
        """Create the tasks of one run of a goal (idempotent: a run's tasks are created once).

        ``activation`` (an approval's idempotency key) is stored with the run, so an interrupted
        activation that runs again finds its run instead of starting another.
        """
        goal = await self.goal(goal_id)
        assert goal is not None
        number = run if run is not None else goal.runs + 1
        now = utcnow().isoformat()
        async with self._db.transaction() as tx:
            for seq, spec in enumerate(tasks):
                task_id = f"{goal_id}.{number}.{spec['key']}"
                written = await tx.execute(
                    "INSERT OR IGNORE INTO tasks (id, goal_id, run, seq, key, title, skill, instructions, depends_on, "
                    "expected, state, next_try_at, created_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,'todo',?,?,?)",
                    (
                        task_id, goal_id, number, seq, spec["key"], spec["title"], spec["skill"], spec["instructions"],
                        json.dumps([f"{goal_id}.{number}.{d}" for d in spec.get("depends_on", [])]),
                        spec.get("expected", ""), now, now, now,
                    ),
                )  # fmt: skip
                if written.rowcount:
                    await tx.append_event("task.todo", "coo", {"task_id": task_id, "goal_id": goal_id})
            await tx.execute(
                "UPDATE goals SET runs = MAX(runs, ?), last_run_at = ?, updated_at = ?, "
                "plan_approval = COALESCE(?, plan_approval) WHERE id = ?",
                (number, now, now, activation, goal_id),
            )
        return await self.tasks(goal_id, number)

    async def tasks(self, goal_id: str, run: int | None = None) -> list[Task]:
        """A goal's tasks (of one run, or of every run), in plan order."""
        if run is None:
            rows = await self._db.fetchall(f"SELECT {_T} FROM tasks WHERE goal_id = ? ORDER BY run, seq", (goal_id,))
        else:
            rows = await self._db.fetchall(
                f"SELECT {_T} FROM tasks WHERE goal_id = ? AND run = ? ORDER BY seq", (goal_id, run)
            )
        return [_task(r) for r in rows]

    async def board_goals(self, open_statuses: tuple[str, ...], limit: int) -> list[Goal]:
        """At most ``limit`` goals: those in ``open_statuses`` (newest first), then the latest updated others."""
        marks = ", ".join("?" * len(open_statuses))
        rows = await self._db.fetchall(
            f"SELECT {_G} FROM goals ORDER BY CASE WHEN status IN ({marks}) THEN 0 ELSE 1 END, "
            f"CASE WHEN status IN ({marks}) THEN created_at ELSE updated_at END DESC LIMIT ?",
            (*open_statuses, *open_statuses, limit),
        )
        return [_goal(r) for r in rows]

    async def latest_run_tasks(self, goals: list[Goal]) -> dict[str, list[Task]]:
        """The tasks of each goal's latest run (every task of a goal without runs), in plan order: one query."""
        if not goals:
            return {}
        wanted = {g.id: g.runs for g in goals}
        rows = await self._db.fetchall(
            f"SELECT {_T} FROM tasks WHERE goal_id IN ({', '.join('?' * len(wanted))}) ORDER BY run, seq",
            tuple(wanted),
        )
        found: dict[str, list[Task]] = {g.id: [] for g in goals}
        for task in map(_task, rows):
            if not wanted[task.goal_id] or task.run == wanted[task.goal_id]:
                found[task.goal_id].append(task)
        return found

    async def task(self, task_id: str) -> Task | None:
        """One task."""
        row = await self._db.fetchone(f"SELECT {_T} FROM tasks WHERE id = ?", (task_id,))
        return _task(row) if row else None

    async def in_state(self, *states: str) -> list[Task]:
        """Every task in one of ``states``, oldest first."""
        rows = await self._db.fetchall(
            f"SELECT {_T} FROM tasks WHERE state IN ({', '.join('?' * len(states))}) ORDER BY updated_at", states
        )
        return [_task(r) for r in rows]

    async def move(
        self,
        task_id: str,
        expect: TaskState,
        new: TaskState,
        actor: str = "coo",
        tx: Transaction | None = None,
        **fields: Any,
    ) -> Task:
        """Compare-and-set ``expect`` -> ``new`` (with other fields), and its event, in one transaction.

        Raises TransitionRefused when the task was not in ``expect`` or the transition is not allowed.
        """
        if new not in TRANSITIONS[expect]:
            raise TransitionRefused(f"a task cannot go from {expect} to {new}")
        encoded = {
            k: (json.dumps(v) if k in ("result", "waiting_on", "notes") and v is not None else v)
            for k, v in fields.items()
        }
        encoded = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in encoded.items()}
        encoded |= {"state": new, "updated_at": utcnow().isoformat()}
        assignments = ", ".join(f"{k} = ?" for k in encoded)
        payload = {"task_id": task_id, "from": expect, **({"error": fields["error"]} if fields.get("error") else {})}

        async def apply(t: Transaction) -> None:
            written = await t.execute(
                f"UPDATE tasks SET {assignments} WHERE id = ? AND state = ?", (*encoded.values(), task_id, expect)
            )
            if written.rowcount != 1:
                raise TransitionRefused(f"task {task_id} is not {expect}")
            await t.append_event("task." + new, actor, payload)

        if tx is not None:
            await apply(tx)
        else:
            async with self._db.transaction() as own:
                await apply(own)
        found = await self.task(task_id)
        assert found is not None
        return found

    async def set_waiting(self, task_id: str, approval_ids: list[str]) -> None:
        """Which cards a waiting task waits on (an edited card is replaced by its correction)."""
        await self._db.write(
            "UPDATE tasks SET waiting_on = ?, updated_at = ? WHERE id = ? AND state = 'waiting_approval'",
            (json.dumps(approval_ids), utcnow().isoformat(), task_id),
        )

    async def promote(self, now: datetime) -> list[Task]:
        """todo -> ready for every task whose dependencies are all done (a finished goal run unblocks nothing)."""
        promoted = []
        for task in await self.in_state("todo"):
            deps = [await self.task(d) for d in task.depends_on]
            if all(d is not None and d.state == "done" for d in deps):
                promoted.append(await self.move(task.id, "todo", "ready", next_try_at=now))
        return promoted

    async def claim(self, owner: str, lease: timedelta, now: datetime) -> Task | None:
        """Lease the oldest due ready task to ``owner`` (ready -> running, attempt + 1)."""
        row = await self._db.fetchone(
            f"SELECT {_T} FROM tasks WHERE state = 'ready' AND next_try_at <= ? ORDER BY next_try_at, seq LIMIT 1",
            (now.isoformat(),),
        )
        if row is None:
            return None
        task = _task(row)
        try:
            return await self.move(
                task.id,
                "ready",
                "running",
                attempts=task.attempts + 1,
                lease_owner=owner,
                lease_until=now + lease,
            )
        except TransitionRefused:
            return None  # another worker got it first

    async def heartbeat(self, task_id: str, owner: str, lease_until: datetime) -> bool:
        """Extend a running task's lease; False when the task is no longer ours."""
        written = await self._db.write(
            "UPDATE tasks SET lease_until = ? WHERE id = ? AND state = 'running' AND lease_owner = ?",
            (lease_until.isoformat(), task_id, owner),
        )
        return written.rowcount == 1

    async def expire_leases(self, now: datetime) -> list[Task]:
        """Running tasks whose lease ran out (their worker died) go back to ready, to run again (I7)."""
        expired = []
        for task in await self.in_state("running"):
            if task.lease_until is not None and task.lease_until <= now:
                try:
                    expired.append(
                        await self.move(
                            task.id, "running", "ready", lease_owner=None, lease_until=None, next_try_at=now
                        )
                    )
                except TransitionRefused:
                    continue
        return expired

    # -- attempts ------------------------------------------------------------------------------
    async def start_attempt(self, task: Task) -> int:
        """A row for this attempt; returns its id."""
        written = await self._db.write(
            "INSERT INTO task_attempts (task_id, attempt, started_at) VALUES (?, ?, ?)",
            (task.id, task.attempts, utcnow().isoformat()),
        )
        assert written.lastrowid is not None
        return written.lastrowid

    async def end_attempt(
        self, attempt_id: int, outcome: str, error: str, model: str, cost: float, trace: list[dict[str, Any]]
    ) -> None:
        """Close an attempt with what it did."""
        await self._db.write(
            "UPDATE task_attempts SET ended_at = ?, outcome = ?, error = ?, model = ?, cost = ?, trace = ? "
            "WHERE id = ?",
            (utcnow().isoformat(), outcome, error, model, cost, json.dumps(trace), attempt_id),
        )

    async def attempts(self, task_id: str) -> list[Attempt]:
        """Every attempt at a task, in order."""
        rows = await self._db.fetchall(
            "SELECT task_id, attempt, started_at, ended_at, outcome, error, model, cost, trace FROM task_attempts "
            "WHERE task_id = ? ORDER BY id",
            (task_id,),
        )
        return [
            Attempt(r[0], r[1], datetime.fromisoformat(r[2]), _dt(r[3]), r[4], r[5], r[6], r[7], json.loads(r[8]))
            for r in rows
        ]

    async def all_attempts(self) -> list[Attempt]:
        """Every attempt (for export)."""
        rows = await self._db.fetchall("SELECT DISTINCT task_id FROM task_attempts ORDER BY task_id")
        return [a for r in rows for a in await self.attempts(r[0])]
