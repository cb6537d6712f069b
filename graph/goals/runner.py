"""The task runner: runs ready tasks (at most ``concurrency`` at once) under leases with heartbeats,
retries with backoff, blocks a task after its last attempt and asks the operator, and resumes a task once
the cards it waits on are decided. ``/pause`` holds it. A task found running after a crash (or retried after
a failure) runs again; its proposals are named by their place in the task, so the re-run finds the earlier
attempt's cards whatever it writes this time, and no effect happens twice (I7)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

from graph.approvals.service import ApprovalService
from graph.contexts import Contexts
from graph.conversation.context import as_data
from graph.conversation.tools import ToolBox, read_schema
from graph.errors import ModelUnavailable
from graph.goals.service import GoalService
from graph.goals.skill_context import Outcome, card_context, ended, skill_system, with_reason
from graph.goals.skill_graph import SkillContext, SkillState, build_skill_graph
from graph.goals.skills import Skill
from graph.inbox.replies import ReplyWaits
from graph.models.llm import LLMClient
from graph.settings import TaskSettings
from graph.spend.budget import BudgetExceeded
from memory.aio import wait_at_most
from memory.db import utcnow
from memory.tasks import Goal, Task, TaskLedger, TransitionRefused
from memory.traces import TraceRecorder
from prompts import load_prompt
from prompts.messages import TASK_RESTARTED_TOO_OFTEN

log = logging.getLogger(__name__)

WORKING = ("active", "verifying")  # goal statuses in which its tasks run


class SkillExecutor:
    """Runs one attempt of one task through its skill's subgraph."""

    def __init__(
        self,
        skills: dict[str, Skill],
        llm: LLMClient,
        tools: ToolBox,
        approvals: ApprovalService,
        contexts: Contexts,
        settings: TaskSettings,
        cheap_model: str | None,
        recorder: TraceRecorder,
    ) -> None:
        self._skills = skills
        self._llm = llm
        self._tools = tools
        self._approvals = approvals
        self._contexts = contexts
        self._settings = settings
        self._cheap = cheap_model
        self._recorder = recorder
        self._graph = build_skill_graph().compile()
        self._action_schemas: tuple[tuple[int, ...], list[dict[str, Any]]] = ((), [])

    async def run(
        self,
        goal: Goal,
        task: Task,
        inputs: str,
        limit: Any,
        goal_active: Callable[[], Awaitable[bool]],
        replies: str = "",
    ) -> Outcome:
        """One attempt. Budget, model and skill errors become outcomes; nothing escapes but bugs.
        ``goal_active`` is asked before each proposal: a cancelled goal's attempt proposes nothing.
        ``replies``: answers to the task's emails, quoted; they go into the task's message as data (I8)."""
        skill = self._skills.get(task.skill)
        if skill is None:
            return Outcome("blocked", error=f"unknown skill {task.skill}")
        if not self._llm.available():
            return Outcome("retry", error="no model answers now")
        reads = [read for read in self._tools.reads() if read.key and skill.may_read(read.key)]
        schemas = [s for s in self._all_schemas() if s["function"]["name"] in skill.tools]
        schemas += [read_schema(read) for read in reads]
        prompt = (
            load_prompt(skill.prompt)
            + "\n\n"
            + load_prompt("task").format(
                goal=as_data(goal.text),
                skill=skill.name,
                title=task.title,
                instructions=task.instructions,
                expected=task.expected or "(not said)",
                inputs=as_data(inputs) or "(none)",
                notes=as_data("\n".join(task.notes)) or "(nothing yet)",
            )
        )
        if replies:
            prompt += "\n\n" + load_prompt("task_replies").format(replies=as_data(replies))
        proposal_ctx = self._contexts.proposal(goal.session, goal.requested_by)
        tool_ctx = self._contexts.tool(goal.session, goal.id)
        system = await skill_system(tool_ctx, proposal_ctx.currency, self._sender())
        state: SkillState = {"messages": [{"role": "system", "content": system}, {"role": "user", "content": prompt}]}
        trace = await self._recorder.start(task.id, task.attempts, state["messages"])
        context = SkillContext(
            skill=skill,
            llm=self._llm,
            tools=self._tools,
            tool_ctx=tool_ctx,
            approvals=self._approvals,
            proposal_ctx=proposal_ctx,
            workflow=goal.workflow,
            task_id=task.id,
            stretch=task.resumes,
            provenance=card_context(goal, task, skill.name),
            model=self._cheap if skill.tier == "routine" and self._cheap else None,
            limit=limit,
            max_rounds=self._settings.max_rounds,
            max_tokens=skill.max_tokens,
            thread=goal.session,
            requested_by=goal.requested_by,
            schemas=schemas,
            allowed=frozenset((*skill.tools, *(read.name for read in reads))),
            goal_active=goal_active,
            trace=trace,
        )
        outcome = await self._invoke(state, context)
        await trace.end(outcome.kind, outcome.error)
        return outcome

    async def _invoke(self, state: SkillState, context: SkillContext) -> Outcome:
        try:
            final: dict[str, Any] = await self._graph.ainvoke(state, context=context)
        except BudgetExceeded as exc:
            return Outcome("blocked", error=f"budget reached ({exc})")
        except ModelUnavailable as exc:
            return Outcome("retry", error=f"the model is unavailable ({exc})")
        trace = tuple(final.get("trace", []))
        common = {"model": final.get("model", ""), "cost": final.get("cost", 0.0), "trace": trace}
        proposals = tuple(dict.fromkeys(final.get("proposals", [])))
        if proposals:
            return Outcome("waiting", waiting_on=proposals, result=final.get("result"), **common)
        return ended(final.get("result"), str(final.get("failure") or ""), common)

    def awaits_replies(self, skill: str) -> bool:
        """Whether a task of ``skill`` waits for answers to the emails it got sent."""
        found = self._skills.get(skill)
        return found is not None and found.awaits_replies

    def _sender(self) -> str:
        """The address emails go out from, when email is configured."""
        kind = self._approvals.registry.for_tool("send_email")
        return str(getattr(kind, "from_addr", None) or "")

    def model_down(self) -> bool:
        """The model is configured but its breaker is open (an outage): no attempt could get an answer."""
        return self._llm.configured and not self._llm.available()

    def _all_schemas(self) -> list[dict[str, Any]]:
        actions = self._approvals.registry.tool_schemas()
        key = tuple(id(s) for s in actions)
        if self._action_schemas[0] != key:  # built once per set of action tools (their costs are cached by id)
            self._action_schemas = (key, [with_reason(s) for s in actions])
        return [*self._tools.schemas(), *self._action_schemas[1]]


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
        self._approvals = approvals
        self._settings = settings
        self._is_paused = is_paused
        self._clock = clock
        self._wake = wakeup or asyncio.Event()
        self._replies = replies
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
                    await self._goals.flush_progress(self._clock())
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
        await self._goals.flush_progress(self._clock(), force=True)

    async def step(self) -> list[Task]:
        """One pass: expired leases, decided cards, ready tasks, goal sweeps; start what may start."""
        now = self._clock()
        for task in await self._ledger.expire_leases(now):
            log.warning("task %s: its lease expired (its worker stopped); it runs again", task.id)
            self._goals.touch(task.goal_id)
        await self._resume_waiting()
        for task in await self._replies.wake(now) if self._replies else []:
            self._goals.touch(task.goal_id)
        for task in await self._ledger.promote(now):
            self._goals.touch(task.goal_id)
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
            self._goals.touch(claimed.goal_id)
            self._running[claimed.id] = asyncio.create_task(self._attempt(claimed), name=f"task {claimed.id}")
            started.append(claimed)
        return started

    async def wait_idle(self) -> None:
        """Until every running attempt finished (tests)."""
        while self._running:
            await asyncio.wait(set(self._running.values()))

    async def _attempt(self, task: Task) -> None:
        heartbeat = asyncio.create_task(self._heartbeat(task))
        try:
            await self._run(task)
        except Exception:
            log.exception("task %s: the attempt failed unexpectedly", task.id)
            with contextlib.suppress(TransitionRefused):
                await self._after_failure(task, "an internal error (logged)")
        finally:
            heartbeat.cancel()
            await asyncio.gather(heartbeat, return_exceptions=True)
            self._running.pop(task.id, None)
            self._goals.touch(task.goal_id)
            self._wake.set()

    async def _heartbeat(self, task: Task) -> None:
        """Extend the running task's lease every third of it. A write that fails is tried again at the next
        beat: ending here would let the lease lapse while the attempt runs, and the task run twice at once."""
        while True:
            await asyncio.sleep(self._settings.lease_s / 3)
            until = self._clock() + timedelta(seconds=self._settings.lease_s)
            try:
                if not await self._ledger.heartbeat(task.id, self._owner, until):
                    return  # no longer ours
            except Exception:
                log.exception("task %s: its lease could not be extended; trying again", task.id)

    async def _run(self, task: Task) -> None:
        goal = await self._ledger.goal(task.goal_id)
        if goal is None or goal.status not in WORKING:
            await self._ledger.move(task.id, "running", "cancelled")
            return
        attempt = await self._ledger.start_attempt(task)
        inputs = await self._inputs(task)
        replies = await self._replies.for_task(task.id) if self._replies else ""
        outcome = await self._executor.run(
            goal, task, inputs, self._goals.limit(goal), lambda: self._goal_working(goal.id), replies
        )
        await self._ledger.end_attempt(
            attempt, outcome.kind, outcome.error, outcome.model, outcome.cost, list(outcome.trace)
        )
        if not await self._goal_working(goal.id):
            await self._abandon(task)
        elif outcome.kind == "done":
            await self._ledger.move(task.id, "running", "done", result=outcome.result, lease_owner=None)
        elif outcome.kind == "waiting":
            await self._ledger.move(
                task.id, "running", "waiting_approval", waiting_on=list(outcome.waiting_on), lease_owner=None
            )
            for approval_id in outcome.waiting_on:
                await self._goals.show_card(approval_id, goal.session)
        elif outcome.kind == "blocked":
            await self._ledger.move(task.id, "running", "blocked", error=outcome.error, lease_owner=None)
            await self._goals.blocked(task, outcome.error)
        else:
            await self._after_failure(task, outcome.error)

    async def _goal_working(self, goal_id: str) -> bool:
        goal = await self._ledger.goal(goal_id)
        return goal is not None and goal.status in WORKING

    async def _abandon(self, task: Task) -> None:
        """The goal was cancelled during the attempt: the task is cancelled too, and so is a card the attempt
        proposed while the goal was being cancelled (after the cancel expired the cards it found)."""
        await self._ledger.move(task.id, "running", "cancelled", lease_owner=None)
        await self._goals.expire_cards(task.goal_id)

    async def _after_failure(self, task: Task, error: str) -> None:
        """Retry with backoff while attempts remain; then blocked, and the operator is asked."""
        if task.attempts < self._settings.max_attempts:
            delay = self._settings.retry_base_s * (2 ** (task.attempts - 1))
            notes = [*task.notes, f"attempt {task.attempts} failed: {error[:200]}"]
            await self._ledger.move(
                task.id,
                "running",
                "ready",
                error=error,
                notes=notes,
                next_try_at=self._clock() + timedelta(seconds=delay),
                lease_owner=None,
            )
            return
        await self._ledger.move(task.id, "running", "blocked", error=error, lease_owner=None)
        await self._goals.blocked(task, f"{error} (after {task.attempts} attempts)")

    async def _inputs(self, task: Task) -> str:
        """The results of the tasks this one depends on: summaries and references, never transcripts."""
        lines = []
        for dep_id in task.depends_on:
            dep = await self._ledger.task(dep_id)
            if dep is not None and dep.result:
                artifacts = ", ".join(dep.result.get("artifacts", [])) or "none"
                lines.append(f"{dep.key} ({dep.title}): {dep.result.get('summary', '')} [artifacts: {artifacts}]")
        return "\n".join(lines)

    async def _resume_waiting(self) -> None:
        """A task waiting on cards runs again once every card is decided (and approved ones executed)."""
        for task in await self._ledger.in_state("waiting_approval"):
            notes, current, open_, sent = list(task.notes), [], False, []
            for approval_id in task.waiting_on:
                row = await self._approvals.current(approval_id, task.goal_id)
                if row is None:
                    continue
                current.append(row.id)
                outbox = await self._approvals.store.outbox(row.id) if row.state == "approved" else None
                in_flight = row.state == "approved" and (outbox is None or outbox.state in ("queued", "running"))
                if row.state == "pending" or in_flight:
                    open_ = True
                    continue
                done = outbox.state if outbox else row.state
                if done == "sent":
                    sent.append(row.id)
                kind = self._approvals.kind(row.kind)
                notes.append(f"card {row.id} ({kind.summary(kind.parse(row.action))}): {done}")
            if open_:
                if tuple(current) != task.waiting_on:
                    await self._ledger.set_waiting(task.id, current)
                continue
            notes += await self._uncarded_notes(task)
            if task.attempts >= self._settings.max_attempts:
                await self._block_restarts(task, notes)
                continue
            if await self._wait_for_replies(task, sent, notes):
                continue
            try:
                await self._ledger.move(
                    task.id,
                    "waiting_approval",
                    "ready",
                    notes=notes,
                    waiting_on=[],
                    next_try_at=self._clock(),
                    resumes=task.resumes + 1,  # what it proposed so far is decided and known to it now
                )
            except TransitionRefused:
                continue
            self._goals.touch(task.goal_id)

    async def _wait_for_replies(self, task: Task, sent: list[str], notes: list[str]) -> bool:
        """A task of a skill that awaits answers, whose emails went out, waits for a reply instead of going on."""
        if self._replies is None or not sent or not self._executor.awaits_replies(task.skill):
            return False
        if not await self._replies.start(task, sent, notes, self._clock()):
            return False
        self._goals.touch(task.goal_id)
        return True

    async def _block_restarts(self, task: Task, notes: list[str]) -> None:
        """A task that proposed and went on again and again (a rejection counts) is blocked: reject -> propose ->
        reject must end, and the operator decides (Retry gives it new attempts)."""
        error = TASK_RESTARTED_TOO_OFTEN.format(count=task.attempts)
        try:
            await self._ledger.move(task.id, "waiting_approval", "blocked", notes=notes, waiting_on=[], error=error)
        except TransitionRefused:
            return
        await self._goals.blocked(task, error)

    async def _uncarded_notes(self, task: Task) -> list[str]:
        """What this stretch of the task sent without a card (the operator's policy): the next attempt starts
        over, and without these lines it would not know those actions were done."""
        notes = []
        for row in await self._approvals.store.for_goal(task.goal_id):
            ours = row.context.get("task_id") == task.id and row.context.get("stretch") == task.resumes
            if ours and row.decided_by == "policy":
                outbox = await self._approvals.store.outbox(row.id)
                kind = self._approvals.kind(row.kind)
                summary = kind.summary(kind.parse(row.action))
                notes.append(f"without a card {row.id} ({summary}): {outbox.state if outbox else row.state}")
        return notes
