"""A persistent, time-zone-aware scheduler. Daily jobs claim their slot (the local date) in SQLite
before running, so a slot runs once, even across restarts and two processes; after downtime the
latest missed slot runs once on start."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from memory.control import ControlStore
from memory.db import Database, utcnow

log = logging.getLogger(__name__)

Job = Callable[[], Awaitable[None]]


def occurrence(day: date, hhmm: str, timezone: str) -> datetime:
    """The UTC instant of ``hhmm`` local time on ``day``. A time skipped by DST runs at the instant it
    would have had before the change (02:30 on a spring-forward day runs at 03:30 local); a repeated
    time runs at its first occurrence."""
    hour, minute = (int(x) for x in hhmm.split(":"))
    local = datetime.combine(day, time(hour, minute), tzinfo=ZoneInfo(timezone)).replace(fold=0)
    return local.astimezone(UTC)


def latest_due(now: datetime, hhmm: str, timezone: str, weekday: int | None = None) -> tuple[date, datetime]:
    """The most recent slot at or before ``now``: (local date, UTC instant); with ``weekday`` (0 = Monday)
    only that day of the week counts."""
    today = now.astimezone(ZoneInfo(timezone)).date()
    for back in range(9):
        day = today - timedelta(days=back)
        at = occurrence(day, hhmm, timezone)
        if at <= now and (weekday is None or day.weekday() == weekday):
            return day, at
    raise AssertionError("unreachable")


def next_due(now: datetime, hhmm: str, timezone: str, weekday: int | None = None) -> tuple[date, datetime]:
    """The first slot strictly after ``now`` (on ``weekday`` only, when given)."""
    today = now.astimezone(ZoneInfo(timezone)).date()
    for ahead in range(-1, 9):
        day = today + timedelta(days=ahead)
        at = occurrence(day, hhmm, timezone)
        if at > now and (weekday is None or day.weekday() == weekday):
            return day, at
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class DailyJob:
    """A job at a local wall-clock time every day (or, with ``weekday``, every week on that day)."""

    name: str
    hhmm: str
    run: Job
    weekday: int | None = None


class Scheduler:
    """Runs daily jobs at their local time and interval jobs every N seconds; skips them while paused."""

    def __init__(
        self,
        store: ControlStore,
        db: Database,
        timezone: str,
        is_paused: Callable[[], bool],
        clock: Callable[[], datetime] = utcnow,
        max_sleep_s: float = 30.0,
    ) -> None:
        self._store = store
        self._db = db
        self._tz = timezone
        self._is_paused = is_paused
        self._clock = clock
        self._max_sleep = max_sleep_s
        self._daily: list[DailyJob] = []
        self._installed: datetime | None = None
        self._claimed: dict[str, date] = {}  # each job's latest slot claimed (here or elsewhere): slots only move on
        self._interval: list[tuple[str, float, Job]] = []

    def daily(self, name: str, hhmm: str, run: Job) -> None:
        """Run ``run`` every day at ``hhmm`` in the operator's zone."""
        self._daily.append(DailyJob(name, hhmm, run))

    def weekly(self, name: str, weekday: int, hhmm: str, run: Job) -> None:
        """Run ``run`` every week on ``weekday`` (0 = Monday) at ``hhmm`` in the operator's zone."""
        self._daily.append(DailyJob(name, hhmm, run, weekday))

    def every(self, name: str, seconds: float, run: Job) -> None:
        """Run ``run`` every ``seconds`` (maintenance; not persisted)."""
        self._interval.append((name, seconds, run))

    async def catch_up(self) -> list[str]:
        """Run the latest missed slot of each daily job once (only slots after the first start)."""
        installed = await self._store.get("scheduler.installed_at")
        if installed is None:
            await self._store.put_new("scheduler.installed_at", self._clock().isoformat())
            installed = await self._store.get("scheduler.installed_at")
        self._installed = datetime.fromisoformat(str(installed))
        return await self.run_due()

    async def run_due(self) -> list[str]:
        """Run each daily job's latest slot unless it ran (claimed once, across restarts and processes).

        However late: a machine that slept through 08:00 sends that day's digest when it wakes, as a
        start after downtime does. Slots from before the first start never run.
        """
        assert self._installed is not None, "catch_up() first"
        ran = []
        for job in self._daily:
            day, at = latest_due(self._clock(), job.hhmm, self._tz, job.weekday)
            if at >= self._installed and await self._fire(job, day):
                ran.append(job.name)
        return ran

    async def run_forever(self) -> None:
        """Catch up, then sleep until the next slot, forever. A storage error is logged and retried."""
        while True:
            try:
                await self.catch_up()
                break
            except Exception:
                log.exception("scheduler: catching up failed; retrying in %.0f s", self._max_sleep)
                await asyncio.sleep(self._max_sleep)
        last_interval = {name: self._clock() for name, _, _ in self._interval}
        while True:
            now = self._clock()
            waits = [(next_due(now, j.hhmm, self._tz, j.weekday)[1] - now).total_seconds() for j in self._daily]
            waits += [seconds - (now - last_interval[name]).total_seconds() for name, seconds, _ in self._interval]
            # Sleep in bounded steps: the wall clock can jump (suspend, NTP) while we sleep.
            await asyncio.sleep(max(0.0, min([self._max_sleep, *waits])))
            now = self._clock()
            try:
                await self.run_due()
            except Exception:  # claiming a slot failed (storage): the next pass tries again
                log.exception("scheduler: a daily slot could not be claimed")
            for name, seconds, run in self._interval:
                if (now - last_interval[name]).total_seconds() >= seconds:
                    last_interval[name] = now
                    if not self._is_paused():
                        await self._run(name, run)

    async def _fire(self, job: DailyJob, day: date) -> bool:
        if self._claimed.get(job.name) == day:
            return False  # claimed already (here or by another process): no write on every pass
        claimed = await self._store.claim_slot(job.name, day.isoformat())
        self._claimed[job.name] = day
        if not claimed:
            return False
        if self._is_paused():
            log.info("scheduler: %s of %s skipped (paused)", job.name, day)
            await self._db.append_event("schedule.skipped", "coo", {"job": job.name, "slot": day.isoformat()})
            return False
        await self._db.append_event("schedule.run", "coo", {"job": job.name, "slot": day.isoformat()})
        await self._run(job.name, job.run)
        return True

    async def _run(self, name: str, run: Job) -> None:
        try:
            await run()
        except Exception:
            log.exception("scheduled job %s failed", name)
