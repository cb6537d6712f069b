"""The task runner: runs ready tasks (at most ``concurrency`` at once) under leases (kept by ``lease.py``),
one attempt each (``attempt.py``: retries with backoff, blocks a task after its last attempt and asks the
operator), and resumes a task once the cards it waits on are decided (``resume.py``). ``/pause`` holds it. A task
found running after a crash (or retried after a failure) runs again; its proposals are named by their place in the
task, so the re-run finds the earlier attempt's cards whatever it writes this time, and no effect happens twice
(I7)."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable
from datetime import datetime, timedelta

from graph.approvals.service import ApprovalService
from graph.goals.attempt import TaskAttempt
from graph.goals.executor import SkillExecutor
from graph.goals.lease import keep_lease
from graph.goals.resume import WaitingTasks
from graph.goals.service import GoalService
from graph.inbox.replies import ReplyWaits
from graph.settings import TaskSettings
from memory.aio import wait_at_most
from memory.db import utcnow
from memory.tasks import Task, TaskLedger

__all__ = ["SkillExecutor", "TaskRunner"]

log = logging.getLogger(__name__)


class TaskRunner:
    """Claims ready tasks and runs them; moves waiting tasks on once their cards are decided."""

    def __init__(
        self,
        ledger: TaskLedger,
        goals: GoalService,
        executor: SkillExecutor,
        approvals: ApprovalService,
        settings: TaskSettings,
        is_paused: Callable[[], bool],
        clock: Callable[[], datetime] = utcnow,
        wakeup: asyncio.Event | None = None,
        replies: ReplyWaits | None = None,
    ) -> None:
        """``replies`` (with an inbox to read them from): tasks whose emails were sent wait for the answers."""
        self._ledger = ledger
        self._goals = goals
        self._executor = executor
        self._settings = settings
        self._is_paused = is_paused
        self._clock = clock
        self._wake = wakeup or asyncio.Event()
        self._replies = replies
        self._attempts = TaskAttempt(ledger, goals, executor, settings, clock)
        self._waiting = WaitingTasks(ledger, goals, executor, approvals, settings, clock, replies)
        self._owner = "runner-" + secrets.token_hex(4)
        self._running: dict[str, asyncio.Task[None]] = {}
        self._stopping = False

    @property
    def owner(self) -> str:
        """This runner's lease owner id."""
        return self._owner

    def wake(self) -> None:
        """Look for work now."""
        self._wake.set()

    def stop(self) -> None:
        """Take no new task; running ones finish their attempt."""
        self._stopping = True
        self._wake.set()

    async def run_forever(self) -> None:
        """Step until stopped; a step that fails is logged and the next one runs.

        Cancelled (a stop past its grace), it cancels the attempts in flight too: their leases lapse and
        the tasks run again after the next start (I7), instead of running on while everything closes.
        """
        try:
            while not self._stopping:
                self._wake.clear()
                try:
                    if not self._is_paused():
                        await self.step()
                    await self._goals.board.flush_progress(self._clock())
                except Exception:
                    log.exception("task runner step failed; continuing")
                await wait_at_most(self._wake.wait(), self._settings.poll_s)
            if self._running:
                await asyncio.wait(set(self._running.values()))
        except asyncio.CancelledError:
            attempts = list(self._running.values())
            for attempt in attempts:
                attempt.cancel()
            await asyncio.gather(*attempts, return_exceptions=True)
            raise
        await self._goals.board.flush_progress(self._clock(), force=True)

    async def step(self) -> list[Task]:
        """One pass: expired leases, decided cards, ready tasks, goal sweeps; start what may start."""
        now = self._clock()
        for task in await self._ledger.expire_leases(now):
            log.warning("task %s: its lease expired (its worker stopped); it runs again", task.id)
            self._goals.board.touch(task.goal_id)
        await self._waiting.resume()
        for task in await self._replies.wake(now) if self._replies else []:
            self._goals.board.touch(task.goal_id)
        for task in await self._ledger.promote(now):
            self._goals.board.touch(task.goal_id)
        await self._goals.sweep(now)
        started = []
        # During a model outage tasks wait, ready, instead of spending their attempts on calls the breaker
        # refuses (three attempts ~30 s apart would block every task of a night's goals on a short outage).
        while (
            not self._stopping and len(self._running) < self._settings.concurrency and not self._executor.model_down()
        ):
            claimed = await self._ledger.claim(self._owner, timedelta(seconds=self._settings.lease_s), now)
            if claimed is None:
                break
            self._goals.board.touch(claimed.goal_id)
            self._running[claimed.id] = asyncio.create_task(self._attempt(claimed), name=f"task {claimed.id}")
            started.append(claimed)
        return started

    async def wait_idle(self) -> None:
        """Until every running attempt finished (tests)."""
        while self._running:
            await asyncio.wait(set(self._running.values()))

    async def _attempt(self, task: Task) -> None:
        """One attempt of a claimed task, its lease kept while it runs."""
        lease = asyncio.create_task(keep_lease(self._ledger, task.id, self._owner, self._settings.lease_s, self._clock))
        try:
            await self._attempts.carry_out(task)
        finally:
            lease.cancel()
            await asyncio.gather(lease, return_exceptions=True)
            self._running.pop(task.id, None)
            self._goals.board.touch(task.goal_id)
            self._wake.set()
