"""The one context factory: a proposal's and a tool's contexts come from it, frozen, with what differs."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from graph.contexts import Contexts
from memory.db import open_database
from memory.profile import ProfileStore
from memory.records import Records


async def test_the_factory_makes_frozen_contexts_with_what_differs(tmp_path: Path) -> None:
    async with open_database(tmp_path) as db:
        records, profile = Records(db), ProfileStore(db)
        days = iter([datetime(2026, 1, 2, 12, tzinfo=UTC), datetime(2026, 1, 3, 12, tzinfo=UTC)])
        contexts = Contexts(db, "Europe/Lisbon", "EUR", records, profile, scope="work", clock=lambda: next(days))

        first = contexts.proposal("telegram:1001", "telegram:7")
        assert (first.records, first.currency, first.today) == (records, "EUR", date(2026, 1, 2))
        assert (first.session, first.requested_by) == ("telegram:1001", "telegram:7")
        assert contexts.proposal().today == date(2026, 1, 3)  # the clock is read when a context is made
        with pytest.raises(dataclasses.FrozenInstanceError):
            first.session = "slack:C1"  # type: ignore[misc]
        assert dataclasses.replace(first, session="slack:C1").session == "slack:C1"

        tool = contexts.tool("telegram:1001", goal_id="g-1")
        assert (tool.db, tool.session, tool.timezone, tool.records, tool.profile) == (
            db, "telegram:1001", "Europe/Lisbon", records, profile,
        )  # fmt: skip
        assert (tool.memory, tool.scope, tool.goal_id) == (None, "work", "g-1")
        assert contexts.tool("telegram:1001").goal_id == ""
        assert tool.clock is contexts.clock  # a tool counts days from the same clock
