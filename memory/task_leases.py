"""A task's lease: claimed by one worker before it runs, extended by its heartbeat while it runs, and
expired when its worker died, which puts the task back to ready to run again (I7)."""

from __future__ import annotations

from datetime import datetime, timedelta

from memory.task_rows import SELECT_TASKS, Task, read_task
from memory.task_states import TaskStates, TransitionRefused


class TaskLeases(TaskStates):
    """Claims, heartbeats and expired leases (part of ``memory.tasks.TaskLedger``)."""

    async def claim(self, owner: str, lease: timedelta, now: datetime) -> Task | None:
        """Lease the oldest due ready task to ``owner`` (ready -> running, attempt + 1)."""
        row = await self._db.fetchone(
            f"{SELECT_TASKS} WHERE state = 'ready' AND next_try_at <= ? ORDER BY next_try_at, seq LIMIT 1",
            (now.isoformat(),),
        )
        if row is None:
            return None
        task = read_task(row)
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
