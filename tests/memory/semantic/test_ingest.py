"""Background ingestion keeps every note through embedder and storage faults (real Memory, real LanceDB)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from memory import Note, open_memory
from memory.semantic.api import EmbedderUnavailable
from memory.semantic.ingest import Ingestor
from tests.conftest import QuietGate
from tests.memory.semantic.test_semantic import HashEmbedder


class FlakyEmbedder(HashEmbedder):
    """A real embedder that fails its next ``failures`` passage calls, as a model server going down would."""

    def __init__(self, failures: int, fail_once_on: str | None = None) -> None:
        super().__init__()
        self.failures = failures
        self.fail_once_on = fail_once_on
        self.calls = 0

    async def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        if self.fail_once_on is not None and any(self.fail_once_on in t for t in texts):
            self.fail_once_on = None
            raise ConnectionError("embedding server dropped the connection")
        if self.failures:
            self.failures -= 1
            raise ConnectionError("embedding server unreachable")
        return await super().embed_passages(texts)


class RecordingSleep:
    """The injected clock: records each wait and returns at once (no wall-clock sleeping)."""

    def __init__(self, signal_after: int = 0) -> None:
        self.waits: list[float] = []
        self.signal_after = signal_after
        self.reached = asyncio.Event()

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)
        if self.signal_after and len(self.waits) >= self.signal_after:
            self.reached.set()
        await asyncio.sleep(0)


async def stop(task: asyncio.Task[None]) -> None:
    """Cancel ``run_forever`` as `coo run` does at shutdown; it must end cancelled (after its final flush)."""
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def notes(count: int, prefix: str = "note") -> list[Note]:
    return [Note(f"{prefix} {i} about the Acme contract", ref=f"{prefix}-{i}") for i in range(count)]


async def test_a_failed_batch_is_kept_and_retried_with_backoff(tmp_path: Path) -> None:
    embedder = FlakyEmbedder(failures=3)
    sleep = RecordingSleep()
    async with open_memory(tmp_path, embedder=embedder) as mem:
        ingestor = Ingestor(mem, batch=4, interval_s=0.5, backoff_base_s=1.0, backoff_max_s=3.0, sleep=sleep)
        for note in notes(10):
            ingestor.add(note)
        task = asyncio.create_task(ingestor.run_forever())
        await ingestor.wait_idle()
        await stop(task)
        assert await mem.count() == 10
        hits = await mem.recall("Acme contract", k=20)
    assert sorted(h.ref for h in hits) == sorted(f"note-{i}" for i in range(10))
    # interval, then 1 s, 2 s, capped at 3 s after the third failure, then back to the interval
    assert sleep.waits[:5] == [0.5, 1.0, 2.0, 3.0, 0.5]
    assert ingestor.pending == 0 and ingestor.failures == 0


async def test_flush_puts_the_batch_back_in_order(tmp_path: Path) -> None:
    embedder = FlakyEmbedder(failures=1)
    async with open_memory(tmp_path, embedder=embedder) as mem:
        ingestor = Ingestor(mem, batch=3, interval_s=0.5)
        for note in notes(5):
            ingestor.add(note)
        with pytest.raises(EmbedderUnavailable) as failed:
            await ingestor.flush()
        assert isinstance(failed.value.__cause__, ConnectionError)
        assert ingestor.pending == 5
        await ingestor.flush()
        assert ingestor.pending == 0
        assert await mem.count() == 5


async def test_final_flush_logs_what_it_could_not_write(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    embedder = FlakyEmbedder(failures=1_000)
    sleep = RecordingSleep(signal_after=3)  # two failed attempts, then a third wait
    async with open_memory(tmp_path, embedder=embedder) as mem:
        ingestor = Ingestor(mem, batch=8, interval_s=0.5, sleep=sleep)
        for note in notes(3):
            ingestor.add(note)
        task = asyncio.create_task(ingestor.run_forever())
        await sleep.reached.wait()
        with caplog.at_level(logging.ERROR, logger="memory.semantic.ingest"):
            await stop(task)
        assert await mem.count() == 0
    assert ingestor.pending == 3
    assert any("final flush failed; 3 note(s) not written" in r.getMessage() for r in caplog.records)


async def test_a_refused_note_costs_only_itself(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with open_memory(tmp_path, embedder=HashEmbedder()) as mem:
        ingestor = Ingestor(mem, batch=8, interval_s=0.5)
        ingestor.add(Note("first good note", ref="g1"))
        ingestor.add(Note("   ", ref="blank"))
        ingestor.add(Note("second good note", ref="g2"))
        with caplog.at_level(logging.ERROR, logger="memory.semantic.ingest"):
            await ingestor.flush()
        assert await mem.count() == 2
    assert any("rejected note blank" in r.getMessage() for r in caplog.records)


async def test_a_fault_midway_through_one_by_one_keeps_only_the_unwritten(tmp_path: Path) -> None:
    embedder = FlakyEmbedder(failures=0, fail_once_on="gamma")
    async with open_memory(tmp_path, embedder=embedder) as mem:
        ingestor = Ingestor(mem, batch=8, interval_s=0.5)
        ingestor.add(Note("alpha note", ref="a"))
        ingestor.add(Note("", ref="bad"))
        ingestor.add(Note("gamma note", ref="c"))
        # The batch is refused (the blank note), so notes go one by one: "a" is written, "bad" is
        # refused, and the embedder fails on "c": only "c" may stay queued.
        with pytest.raises(EmbedderUnavailable) as failed:
            await ingestor.flush()
        assert isinstance(failed.value.__cause__, ConnectionError)
        assert ingestor.pending == 1
        await ingestor.flush()
        assert sorted(h.ref for h in await mem.recall("note", k=5)) == ["a", "c"]


async def test_ingestion_waits_until_no_turn_is_in_flight_then_writes_everything(tmp_path: Path) -> None:
    gate = QuietGate()
    async with open_memory(tmp_path, embedder=HashEmbedder()) as mem:
        ingestor = Ingestor(mem, batch=2, interval_s=0.5, sleep=RecordingSleep(), yield_to=gate)
        for note in notes(3):
            ingestor.add(note)
        runner = asyncio.create_task(ingestor.run_forever())
        await asyncio.wait_for(gate.asked.wait(), 10)
        assert await mem.count() == 0 and ingestor.pending == 3  # the bot is answering: nothing embedded yet
        gate.open()
        await asyncio.wait_for(ingestor.wait_idle(), 10)
        await stop(runner)
        assert await mem.count() == 3


async def test_a_busy_bot_delays_ingestion_only_up_to_the_bound(tmp_path: Path) -> None:
    async def never_quiet() -> None:
        await asyncio.Event().wait()

    async with open_memory(tmp_path, embedder=HashEmbedder()) as mem:
        ingestor = Ingestor(mem, batch=8, interval_s=0.5, sleep=RecordingSleep(), yield_to=never_quiet, max_defer_s=0)
        for note in notes(3):
            ingestor.add(note)
        runner = asyncio.create_task(ingestor.run_forever())
        await asyncio.wait_for(ingestor.wait_idle(), 10)
        await stop(runner)
        assert await mem.count() == 3


async def test_a_stop_that_comes_as_the_bot_turns_quiet_still_stops_ingestion(tmp_path: Path) -> None:
    # The shutdown cancels ingestion; when the last turn ended in the same instant, asyncio.wait_for
    # (Python 3.11) returned normally and the cancellation was lost: `coo run` never exited.
    gate = QuietGate()
    async with open_memory(tmp_path, embedder=HashEmbedder()) as mem:
        ingestor = Ingestor(mem, batch=2, interval_s=0.5, sleep=RecordingSleep(), yield_to=gate)
        ingestor.add(notes(1)[0])
        runner = asyncio.create_task(ingestor.run_forever())
        await asyncio.wait_for(gate.asked.wait(), 10)
        gate.open()
        runner.cancel()  # in the same instant
        done, _ = await asyncio.wait([runner], timeout=30)  # a guard against a hang, not a timing assertion
        assert runner in done and runner.cancelled()
        assert await mem.count() == 1  # the final flush wrote what was queued


async def test_a_note_queued_while_the_backlog_is_read_is_written_as_it_was_queued(tmp_path: Path) -> None:
    """At a start the backlog, rebuilt from the log, can name a message the bot queued meanwhile: the queued
    note (dated when the message was received) is written, not the log's copy (dated when it was logged)."""
    queued = Note("[8 May 2026] operator: Acme renewed the retainer", ref="msg-1")
    from_log = Note("[6 December 2026] operator: Acme renewed the retainer", ref="msg-1")
    reading, release = asyncio.Event(), asyncio.Event()

    async def backlog() -> list[Note]:
        reading.set()
        await release.wait()
        return [from_log]

    async with open_memory(tmp_path, embedder=HashEmbedder()) as mem:
        ingestor = Ingestor(mem, batch=4, interval_s=0.5, sleep=RecordingSleep())
        task = asyncio.create_task(ingestor.run_forever(backlog))
        await reading.wait()
        ingestor.add(queued)
        release.set()
        await ingestor.wait_idle()
        await stop(task)
        hits = await mem.recall("Acme renewed the retainer", k=5)
    assert [(h.ref, h.text) for h in hits] == [("msg-1", queued.text)]
