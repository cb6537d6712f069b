"""The goal ledger's tables (goals, tasks, a row per attempt) and the migrations that bring a file from an
older version up to date."""

from __future__ import annotations

from memory.db import Database

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


async def setup_task_tables(db: Database) -> None:
    """Create the tables, and bring those of an older file up to date."""
    await db.script(TASKS_SCHEMA)
    columns = {r[1] for r in await db.fetchall("PRAGMA table_info(tasks)")}
    if "resumes" not in columns:  # files from before proposals were named by their place in the task
        await db.write("ALTER TABLE tasks ADD COLUMN resumes INTEGER NOT NULL DEFAULT 0")
    row = await db.fetchone("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'tasks'")
    if row is not None and "'waiting_reply'" not in row[0]:
        await db.script(_WITH_WAITING_REPLY)
