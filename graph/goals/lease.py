"""A task's lease extended: while an attempt runs, the runner that claimed the task renews its lease every third
of its length, so no other runner takes the task; once the attempt ends the beats stop, and a runner that died
lets the lease lapse (the task then runs again, I7)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from memory.tasks import TaskLedger

log = logging.getLogger(__name__)


async def keep_lease(
    ledger: TaskLedger, task_id: str, owner: str, lease_s: float, clock: Callable[[], datetime]
) -> None:
    """Extend the running task's lease every third of it until cancelled, or until the task is no longer
    ``owner``'s. A write that fails is tried again at the next beat: ending here would let the lease lapse while
    the attempt runs, and the task run twice at once."""
    while True:
        await asyncio.sleep(lease_s / 3)
        until = clock() + timedelta(seconds=lease_s)
        try:
            if not await ledger.heartbeat(task_id, owner, until):
                return  # no longer ours
        except Exception:
            log.exception("task %s: its lease could not be extended; trying again", task_id)
