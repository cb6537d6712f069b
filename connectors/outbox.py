"""The outbox runner: executes approved actions once, with retries on temporary errors (I2, I7).

The row goes to 'running' (attempt counted) before the call. A row found 'running' at start is one a
crash interrupted mid-call. For a kind whose remote side honours idempotency keys (``resumable``) it
is completed with the same key and the steps already stored; for any other its outcome is unknown,
so it is marked 'unknown' and shown to the operator, never retried by itself. A row another live
process on the same data dir is running (``coo chat`` beside ``coo run``) is that process's work and
is left alone (``memory.liveness``).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import timedelta
from typing import Any

from connectors.base import (
    ActionError,
    ActionKind,
    AmbiguousOutcome,
    Executed,
    PermanentError,
    Progress,
    TemporaryError,
)
from connectors.breaker import CircuitBreaker
from connectors.registry import Registry
from connectors.settings import OutboxSettings
from memory.aio import wait_at_most
from memory.approvals import ApprovalStore, OutboxRow
from memory.db import Database, utcnow
from memory.liveness import Liveness

log = logging.getLogger(__name__)

OutcomeHandler = Callable[[OutboxRow], Awaitable[None]]


class OutboxRunner:
    """Runs due outbox rows one at a time and reports every final outcome."""

    def __init__(
        self,
        store: ApprovalStore,
        db: Database,
        registry: Registry,
        settings: OutboxSettings,
        on_outcome: OutcomeHandler,
        liveness: Liveness,
        is_paused: Callable[[], bool] = lambda: False,
        wakeup: asyncio.Event | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``wakeup`` is set by whoever queues work (e.g. an approval) to make the runner look now;
        ``clock`` (monotonic seconds) drives the breakers; ``liveness`` names this process on the rows
        it claims and tells whether another's are still being worked on."""
        self._store = store
        self._db = db
        self._registry = registry
        self._settings = settings
        self._on_outcome = on_outcome
        self._liveness = liveness
        self._is_paused = is_paused
        self._wake = wakeup or asyncio.Event()
        self._stopping = False
        # One breaker per connector: repeated temporary failures (an outage) stop the attempts
        # until a cooldown has passed, then one probe goes through.
        self._settings_clock = clock
        self.breakers = {kind: self._new_breaker(kind) for kind in registry.names()}

    def _new_breaker(self, kind: str) -> CircuitBreaker:
        s = self._settings
        return CircuitBreaker(kind, s.breaker_failures, s.breaker_window_s, s.breaker_cooldown_s, self._settings_clock)

    def _breaker(self, kind: str) -> CircuitBreaker:
        """The kind's breaker (kinds declared at run time, MCP tools, get theirs on first use)."""
        if kind not in self.breakers:
            self.breakers[kind] = self._new_breaker(kind)
        return self.breakers[kind]

    def wake(self) -> None:
        """Look at the outbox now (e.g. right after an approval)."""
        self._wake.set()

    async def recover(self) -> list[OutboxRow]:
        """Resume or mark 'unknown' the rows a crash left 'running', then show every unreported outcome."""
        recovered = []
        for row in await self._store.outbox_in("running"):
            if row.owner is not None and self._liveness.alive(row.owner):
                continue  # another process on this data dir is executing it now
            if self._resumable(row.kind):
                # The remote side dedupes on our keys: finishing the execution cannot do it twice (I7).
                if await self._store.finish(row.approval_id, "queued", "resumed after a restart"):
                    await self._event(row, "resumed", "completing with the same idempotency keys")
                continue
            detail = "the process stopped during the call; it may or may not have happened"
            if await self._store.finish(row.approval_id, "unknown", detail):
                await self._event(row, "unknown", detail)
                fresh = await self._store.outbox(row.approval_id)
                assert fresh is not None
                recovered.append(fresh)
        for row in await self._store.unreported():
            await self._report(row)
        return recovered

    async def run_forever(self) -> None:
        """Execute due rows until :meth:`stop` (the row in progress is finished first) or cancellation."""
        while not self._stopping:
            self._wake.clear()  # before the pass, so a wake() during it is not lost
            try:
                while not self._stopping and not self._is_paused() and await self.run_once():
                    pass
            except Exception:
                log.exception("outbox runner failed; continuing")
            if self._stopping:
                return
            await wait_at_most(self._wake.wait(), self._settings.poll_s)

    def stop(self) -> None:
        """Take no new row; :meth:`run_forever` returns once the one in progress has its outcome recorded.

        Stopping mid-call would leave the outcome unknown (shown as such, never resent): better to finish.
        """
        self._stopping = True
        self._wake.set()

    async def run_once(self) -> bool:
        """Execute one due row; False when none was due."""
        row = await self._store.claim_due(utcnow(), self._liveness.owner)
        if row is None:
            return False
        try:
            kind = self._registry.kind(row.kind)
        except ActionError:
            await self._final(row, "failed", f"no connector for {row.kind}")
            return True
        breaker = self._breaker(row.kind)
        if not breaker.allow():
            await self._store.release(row.approval_id, timedelta(seconds=self._settings.breaker_cooldown_s))
            await self._event(row, "deferred", f"{row.kind} breaker open: {breaker.last_reason}")
            return True
        try:
            done = await self._execute(kind, row, breaker)
        except TemporaryError as exc:
            if breaker.record_failure(str(exc)):
                log.error("outbox: %s breaker opened after repeated failures (%s)", row.kind, exc)
                await self._event(row, "breaker_open", str(exc))
            if row.attempts >= self._settings.max_attempts and kind.resumable:
                # A timeout or 5xx may have had its effect remotely: say so; Retry reuses the same keys.
                detail = f"{exc} (gave up after {row.attempts} attempts; it may have happened)"
                await self._final(row, "unknown", detail)
            elif row.attempts >= self._settings.max_attempts:
                await self._final(row, "failed", f"{exc} (gave up after {row.attempts} attempts)")
            else:
                delay = self._backoff(row.attempts)
                log.warning(
                    "outbox %s: temporary error (%s); retry %d in %.1fs", row.approval_id, exc, row.attempts + 1, delay
                )
                await self._store.finish(row.approval_id, "queued", str(exc), retry_in=timedelta(seconds=delay))
                await self._event(row, "retry", str(exc))
        except PermanentError as exc:
            await self._final(row, "failed", str(exc))
        except AmbiguousOutcome as exc:
            breaker.record_failure(str(exc))
            await self._final(row, "unknown", str(exc))
        except Exception as exc:
            # A bug in a connector: we cannot know whether the effect happened.
            log.exception("outbox %s: connector raised unexpectedly", row.approval_id)
            await self._final(row, "unknown", f"unexpected error: {type(exc).__name__}")
        else:
            breaker.record_success()
            await self._final(row, "sent", done.detail, external_id=done.external_id)
        return True

    async def _execute(self, kind: ActionKind[Any], row: OutboxRow, breaker: CircuitBreaker) -> Executed:
        """Run the stored action, bound to its approved digest. If the breaker let it through as its half-open
        probe, the probe ends here however the call ends: the verdict (recorded after) does not need it, and a
        probe left open (a refusal, a bug, a cancellation) would hold back every later action of its kind."""
        try:
            action = kind.parse(row.action)
            if not self._db.install.verifies(action.digest(), row.digest):
                # Changed since it was approved, or never approved on this install (a restored backup's row).
                raise PermanentError("the stored action does not match its approved digest")
            progress = Progress(row.progress, lambda steps: self._store.save_progress(row.approval_id, steps))
            return await kind.execute(action, row.idempotency_key, progress)
        finally:
            breaker.end_probe()

    def _resumable(self, kind: str) -> bool:
        try:
            return self._registry.kind(kind).resumable
        except ActionError:
            return False

    def _backoff(self, attempt: int) -> float:
        base = self._settings.backoff_base_s * (2 ** (attempt - 1))
        return float(min(self._settings.backoff_max_s, base) * (0.5 + random.random() / 2))

    async def _final(self, row: OutboxRow, state: str, detail: str, external_id: str | None = None) -> None:
        assert state in ("sent", "failed", "unknown")
        try:
            finished = await self._store.finish(row.approval_id, state, detail, external_id=external_id)  # type: ignore[arg-type]
        except Exception:
            # E.g. a full disk: the row stays 'running' (a restart calls it unknown), but the card must not
            # go on saying "Sending…": it shows the outcome, and that it was not saved.
            log.exception("outbox %s: its outcome (%s: %s) could not be saved", row.approval_id, state, detail)
            unsaved = replace(row, state=state, detail=detail, external_id=external_id, updated_at=utcnow())  # type: ignore[arg-type]
            try:
                await self._on_outcome(unsaved)
            except Exception:
                log.exception("outbox %s: the unsaved outcome could not be shown either", row.approval_id)
            return
        if not finished:
            await self._not_running(row, state, detail, external_id)
        await self._event(row, state, detail)
        fresh = await self._store.outbox(row.approval_id)
        assert fresh is not None
        await self._report(fresh)

    async def _not_running(self, row: OutboxRow, state: str, detail: str, external_id: str | None) -> None:
        """The row was taken out of 'running' by someone else while it ran (a process that could not
        tell this one was alive). A known "sent" replaces "unknown", so nobody is asked to resend it."""
        fixed = state == "sent" and await self._store.finish(
            row.approval_id, "sent", detail, external_id=external_id, expect="unknown"
        )
        log.error(
            "outbox %s: its outcome (%s: %s) found the row no longer running%s",
            row.approval_id,
            state,
            detail,
            "; it is recorded over 'unknown'" if fixed else "; the row keeps its state",
        )

    async def _report(self, row: OutboxRow) -> None:
        try:
            await self._on_outcome(row)
        except Exception:
            # Left unreported: the next start shows it on the card again.
            log.exception("outbox %s: reporting the outcome failed", row.approval_id)
        else:
            await self._store.mark_reported(row.approval_id, row.state)

    async def _event(self, row: OutboxRow, outcome: str, detail: str) -> None:
        await self._db.append_event(
            "action." + outcome,
            "coo",
            {
                "approval_id": row.approval_id,
                "kind": row.kind,
                "attempt": row.attempts,
                "detail": detail,
                "idempotency_key": row.idempotency_key,
            },
        )
