"""A task's state: which moves are allowed, and the compare-and-set that makes one, with its event, in
one transaction (a move that lost a race, or that is not allowed, is refused)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from memory.db import Database, Transaction, utcnow
from memory.errors import InternalError
from memory.task_rows import SELECT_TASKS, Task, TaskState, read_task

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


class TransitionRefused(InternalError, RuntimeError):
    """A task was not in the state a transition expected (another worker moved it, or a bug)."""


class TaskStates:
    """Tasks read and moved between states (the core of ``memory.tasks.TaskLedger``)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def task(self, task_id: str) -> Task | None:
        """One task."""
        row = await self._db.fetchone(f"{SELECT_TASKS} WHERE id = ?", (task_id,))
        return read_task(row) if row else None

    async def in_state(self, *states: str) -> list[Task]:
        """Every task in one of ``states``, oldest first."""
        rows = await self._db.fetchall(
            f"{SELECT_TASKS} WHERE state IN ({', '.join('?' * len(states))}) ORDER BY updated_at",
            states,
        )
        return [read_task(r) for r in rows]

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
