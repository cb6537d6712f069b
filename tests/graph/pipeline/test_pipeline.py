"""The pipeline on real SQLite: stages with their history (who, why, when) and audit events, next steps read
in the operator's zone on an injected clock, one clear error per bad request with nothing written, and the
summary the planner and skills read."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from graph.days import named_day
from graph.errors import UserFacingError
from graph.pipeline.service import Pipeline, pipeline_summary
from memory.db import Database, open_database
from memory.pipeline import PipelineStore
from memory.records import Records

SUNDAY = date(2026, 12, 6)


class Clock:
    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at


@asynccontextmanager
async def pipeline(tmp_path: Path, zone: str = "UTC", at: datetime | None = None) -> AsyncIterator[Pipeline]:
    """A pipeline over three contacts, on a clock standing at ``at`` (default Sunday 6 December 2026, noon UTC)."""
    async with open_database(tmp_path) as db:
        records = Records(db)
        await records.setup()
        store = PipelineStore(db)
        await store.setup()
        for name, company, email in (
            ("Ana Silva", "Lumen", "ana@lumen.example"),
            ("Ben Okafor", "", "ben@example.org"),
            ("Anabel Cruz", "Cruz & Co", "anabel@cruz.example"),
        ):
            await records.upsert("contact", {"name": name, "company": company, "emails": [email]}, "op")
        DATABASES.append(db)
        yield Pipeline(store, records, zone, Clock(at or NOON))


NOON = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
DATABASES: list[Database] = []


async def db_of(p: Pipeline) -> Database:
    """The database of the pipeline opened last (for reading the audit log)."""
    return DATABASES[-1]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("3d", date(2026, 12, 9)),
        ("2w", date(2026, 12, 20)),
        ("2026-12-20", date(2026, 12, 20)),
        ("friday", date(2026, 12, 11)),
        ("Fri", date(2026, 12, 11)),
        ("sunday", date(2026, 12, 13)),  # on a Sunday, "sunday" is a week on
        ("today", SUNDAY),
        ("tomorrow", date(2026, 12, 7)),
    ],
)
def test_every_when_form_names_its_day(text: str, expected: date) -> None:
    assert named_day(text, SUNDAY) == expected


@pytest.mark.parametrize("text", ["", "soon", "3", "d3", "2026-13-01", "2026-02-30", "fr", "3 days", "-2d"])
def test_a_when_that_names_no_day_is_none(text: str) -> None:
    assert named_day(text, SUNDAY) is None


async def test_stage_moves_keep_their_history_and_are_audit_events(tmp_path: Path) -> None:
    async with pipeline(tmp_path) as p:
        assert await p.handle("Ana Silva lead", "telegram:1") == "Ana Silva (Lumen): (none) -> lead."
        assert await p.handle("ana silva proposal", "telegram:1") == "Ana Silva (Lumen): lead -> proposal."
        assert (
            await p.handle("Ana Silva proposal", "telegram:1")
            == "Ana Silva (Lumen) is already at proposal; nothing changed."
        )
        ana = await p.contact("Ana Silva")
        assert await p.paid(ana.id, "INV-0003") is not None
        assert await p.paid(ana.id, "INV-0003") is None  # a replayed payment moves nothing
        history = await p.store.history(ana.id)
        shown = await p.handle("Ana Silva", "telegram:1")
        events = [e for e in await (await db_of(p)).events(limit=1000) if e.kind == "pipeline.stage"]
    assert [(m.stage, m.actor, m.reason) for m in history] == [
        ("lead", "telegram:1", "set by the operator"),
        ("proposal", "telegram:1", "set by the operator"),
        ("customer", "stripe", "paid INV-0003"),
    ]
    assert shown.startswith("Ana Silva (Lumen): customer\n") and "customer, by stripe (paid INV-0003)" in shown
    assert [(e.payload["from"], e.payload["stage"], e.actor) for e in events] == [
        (None, "lead", "telegram:1"),
        ("lead", "proposal", "telegram:1"),
        ("proposal", "customer", "stripe"),
    ]


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ("Zed lead", "No contact matches 'Zed'. Add it first"),
        ("Ana lead", "'Ana' matches Ana Silva (Lumen), Anabel Cruz (Cruz & Co); say which one."),
        ("Ana Silva customr", "'customr' is not a stage"),
        ("Ana Silva next someday | call", "I cannot read 'someday' as a date"),
        ("Ana Silva next 2026-12-01 | call", "2026-12-01 is in the past (today is 2026-12-06)"),
        ("Ana Silva next friday", "Say what the next step is after a |"),
        ("Ana Silva next friday |   ", "Say what the next step is after a |"),
        ("Ana Silva lead | why", "Usage: /pipeline"),
        ("Ana Silva next friday monday | call", "Usage: /pipeline"),
        ("Ana Silva next friday | " + "x" * 301, "a next step is 1 to 300 characters"),
    ],
)
async def test_bad_input_gives_one_clear_error_and_writes_nothing(tmp_path: Path, args: str, error: str) -> None:
    async with pipeline(tmp_path) as p:
        with pytest.raises(UserFacingError) as caught:
            await p.handle(args, "telegram:1")
        stages, steps = await p.store.stages(), await p.store.next_steps()
        events = [e for e in await (await db_of(p)).events(limit=1000) if e.kind.startswith("pipeline.")]
    assert caught.value.reason.startswith(error) or error in caught.value.reason
    assert stages == {} and steps == {} and events == []


async def test_next_steps_are_due_by_the_operators_day_not_utcs(tmp_path: Path) -> None:
    late_evening_utc = datetime(2026, 12, 6, 23, 30, tzinfo=UTC)  # already Monday 7 December in Kiritimati (+14)
    async with pipeline(tmp_path, "Pacific/Kiritimati", late_evening_utc) as p:
        await p.handle("Ana Silva proposal", "telegram:1")
        await p.handle("Ben talking", "telegram:1")
        reply = await p.handle("Ana Silva next today | send the revised quote", "telegram:1")
        await p.handle("Ben next 2d | call about the brief", "telegram:1")
        shown = await p.overview()
    async with pipeline(tmp_path / "utc", "UTC", late_evening_utc) as p:
        await p.handle("Ana Silva next 2026-12-07 | send the revised quote", "telegram:1")
        in_utc = await p.overview()
    assert reply == "Next step for Ana Silva (Lumen): send the revised quote, due Mon 2026-12-07."
    assert shown.splitlines() == [
        "Pipeline:",
        "lead 0, talking 1, proposal 1, customer 0, lost 0",
        "Next steps due (today is Mon 2026-12-07):",
        "- Ana Silva (Lumen) <ana@lumen.example> [proposal]: send the revised quote (today)",
        "1 next step later.",
    ]
    assert "No next step is due." in in_utc  # the same step in UTC is tomorrow's


async def test_a_done_next_step_leaves_the_overview(tmp_path: Path) -> None:
    async with pipeline(tmp_path) as p:
        await p.handle("Ben lead", "telegram:1")
        await p.handle("Ben next today | call", "telegram:1")
        assert await p.handle("Ben next done", "telegram:1") == "Next step for Ben Okafor done."
        assert await p.handle("Ben next done", "telegram:1") == "Ben Okafor has no next step."
        shown = await p.overview()
    assert "No next step is due." in shown and "later" not in shown


async def test_the_summary_names_each_stages_contacts_and_the_steps(tmp_path: Path) -> None:
    async with pipeline(tmp_path) as p:
        assert await p.summary() == ""
        for who in ("Ana Silva", "Ben", "Anabel"):
            await p.handle(f"{who} proposal", "telegram:1")
        await p.handle("Ben next 2d | follow up on the proposal", "telegram:1")
        summary = await pipeline_summary(await db_of(p), Records(await db_of(p)), "UTC", Clock(NOON))
    assert summary.splitlines() == [
        "proposal (3): Ana Silva (Lumen) <ana@lumen.example>; Anabel Cruz (Cruz & Co) <anabel@cruz.example>; "
        "Ben Okafor <ben@example.org>",
        "next step: Ben Okafor <ben@example.org> [proposal]: follow up on the proposal (due Tue 2026-12-08)",
    ]


async def test_a_data_directory_without_the_pipeline_has_an_empty_summary(tmp_path: Path) -> None:
    async with open_database(tmp_path) as db:
        records = Records(db)
        await records.setup()
        assert await pipeline_summary(db, records, "UTC") == ""
