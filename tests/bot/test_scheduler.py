"""The digest schedule: time zones, DST, downtime, two processes, pause (time-machine)."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from pathlib import Path

import time_machine

from bot.scheduler import Scheduler, latest_due, next_due, occurrence
from memory.control import ControlStore
from memory.db import open_database
from memory.grouped import on_thread

NY = "America/New_York"


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def test_occurrences_across_dst() -> None:
    assert occurrence(date(2026, 3, 7), "08:00", NY) == utc(2026, 3, 7, 13, 0)  # EST
    assert occurrence(date(2026, 3, 8), "08:00", NY) == utc(2026, 3, 8, 12, 0)  # EDT from today
    assert occurrence(date(2026, 3, 8), "02:30", NY) == utc(2026, 3, 8, 7, 30)  # skipped hour: 03:30 EDT
    assert occurrence(date(2026, 11, 1), "01:30", NY) == utc(2026, 11, 1, 5, 30)  # repeated hour: the first
    assert occurrence(date(2026, 11, 1), "08:00", NY) == utc(2026, 11, 1, 13, 0)  # EST again
    assert latest_due(utc(2026, 3, 8, 11, 59), "08:00", NY) == (date(2026, 3, 7), utc(2026, 3, 7, 13, 0))
    assert next_due(utc(2026, 3, 8, 11, 59), "08:00", NY) == (date(2026, 3, 8), utc(2026, 3, 8, 12, 0))
    assert occurrence(date(2026, 11, 21), "08:00", "Asia/Kolkata") == utc(2026, 11, 21, 2, 30)


class Runs:
    def __init__(self) -> None:
        self.at: list[datetime] = []

    async def __call__(self) -> None:
        self.at.append(datetime.now(UTC))


async def settle(runs: Runs, count: int, timeout: float = 3.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if len(runs.at) >= count:
            break
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)  # and nothing more comes


async def test_daily_digest_across_a_dst_change(tmp_path: Path) -> None:
    runs = Runs()
    with time_machine.travel(utc(2026, 3, 7, 12, 0), tick=True) as traveller:
        async with open_database(tmp_path) as db:
            store = ControlStore(db)
            await store.setup()
            scheduler = Scheduler(store, db, NY, lambda: False, max_sleep_s=0.02)
            scheduler.daily("digest", "08:00", runs)
            task = asyncio.create_task(scheduler.run_forever())
            try:
                await settle(runs, 1, timeout=0.3)
                assert runs.at == []  # installed after yesterday's slot: nothing to catch up
                traveller.move_to(utc(2026, 3, 7, 13, 0, 1))  # 08:00:01 EST
                await settle(runs, 1)
                traveller.move_to(utc(2026, 3, 8, 11, 59, 0))  # 07:59 EDT: not yet (13:00 UTC would be wrong)
                await settle(runs, 2, timeout=0.3)
                assert len(runs.at) == 1
                traveller.move_to(utc(2026, 3, 8, 12, 0, 1))  # 08:00:01 EDT
                await settle(runs, 2)
            finally:
                task.cancel()
            events = await db.events(kind="schedule.run")
    assert [r.replace(microsecond=0) for r in runs.at] == [utc(2026, 3, 7, 13, 0, 1), utc(2026, 3, 8, 12, 0, 1)]
    assert [e.payload["slot"] for e in events] == ["2026-03-07", "2026-03-08"]


async def test_missed_digest_is_sent_once_after_downtime_never_twice(tmp_path: Path) -> None:
    runs = Runs()
    with time_machine.travel(utc(2026, 3, 4, 9, 0), tick=True) as traveller:
        async with open_database(tmp_path) as db:
            store = ControlStore(db)
            await store.setup()
            first = Scheduler(store, db, NY, lambda: False)
            first.daily("digest", "08:00", runs)
            assert await first.catch_up() == []  # a first start never sends an old digest
        traveller.move_to(utc(2026, 3, 8, 15, 0))  # down for four days, over the DST change
        for _ in range(2):  # two restarts
            async with open_database(tmp_path) as db:
                store = ControlStore(db)
                scheduler = Scheduler(store, db, NY, lambda: False)
                scheduler.daily("digest", "08:00", runs)
                await scheduler.catch_up()
    assert len(runs.at) == 1


async def test_two_processes_never_both_send(tmp_path: Path) -> None:
    runs = Runs()
    with time_machine.travel(utc(2026, 3, 4, 9, 0), tick=True) as traveller:
        async with open_database(tmp_path) as db:
            await ControlStore(db).setup()
            await Scheduler(ControlStore(db), db, NY, lambda: False).catch_up()
        traveller.move_to(utc(2026, 3, 5, 13, 30))
        async with open_database(tmp_path) as db_a, open_database(tmp_path) as db_b:
            schedulers = [Scheduler(ControlStore(d), d, NY, lambda: False) for d in (db_a, db_b)]
            for s in schedulers:
                s.daily("digest", "08:00", runs)
            await asyncio.gather(*(s.catch_up() for s in schedulers))
    assert len(runs.at) == 1


async def test_paused_scheduler_skips_the_job(tmp_path: Path) -> None:
    runs = Runs()
    with time_machine.travel(utc(2026, 3, 4, 9, 0), tick=True) as traveller:
        async with open_database(tmp_path) as db:
            store = ControlStore(db)
            await store.setup()
            await Scheduler(store, db, NY, lambda: True).catch_up()
            traveller.move_to(utc(2026, 3, 5, 13, 30))
            paused = Scheduler(store, db, NY, lambda: True)
            paused.daily("digest", "08:00", runs)
            await paused.catch_up()
            skipped = await db.events(kind="schedule.skipped")
    assert runs.at == [] and [e.payload["slot"] for e in skipped] == ["2026-03-05"]


async def test_a_slot_slept_through_while_running_is_run_when_the_machine_wakes(tmp_path: Path) -> None:
    """The process keeps running but the machine is suspended from 07:59 to 09:30: the day's digest goes
    out when it wakes, once, as it would after a restart."""
    now = [utc(2026, 3, 4, 14, 0)]  # 09:00 in New York: installed after that day's slot
    runs = Runs()
    async with open_database(tmp_path) as db:
        store = ControlStore(db)
        await store.setup()
        scheduler = Scheduler(store, db, NY, lambda: False, clock=lambda: now[0])
        scheduler.daily("digest", "08:00", runs)
        assert await scheduler.catch_up() == []
        now[0] = utc(2026, 3, 5, 12, 59)  # 07:59 the next day
        assert await scheduler.run_due() == []
        now[0] = utc(2026, 3, 5, 14, 30)  # the machine wakes at 09:30
        assert await scheduler.run_due() == ["digest"]
        assert await scheduler.run_due() == []  # once
    assert len(runs.at) == 1


async def test_a_pass_does_not_write_a_claim_for_a_slot_already_claimed(tmp_path: Path) -> None:
    """The scheduler looks at every daily slot on every pass (every ≤ 30 s): one claim per slot, not per pass."""
    now = [utc(2026, 3, 4, 12, 0)]  # 07:00 in New York
    statements: list[str] = []
    async with open_database(tmp_path) as db:
        store = ControlStore(db)
        await store.setup()
        scheduler = Scheduler(store, db, NY, lambda: False, clock=lambda: now[0])
        scheduler.daily("digest", "08:00", Runs())
        await scheduler.catch_up()
        now[0] = utc(2026, 3, 5, 14, 0)  # 09:00 the next day
        await on_thread(db.connection, lambda conn: conn.set_trace_callback(statements.append))
        for _ in range(3):
            await scheduler.run_due()
    assert sum("INSERT OR IGNORE INTO schedule_runs" in sql for sql in statements) == 1
