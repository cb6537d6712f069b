"""``open_stores``: what ``coo run`` opens first, on a real data dir. Opening again finds what was written;
the approval store has a connection of its own; a model call left in flight by a process that died is
counted at its estimate, once, with one warning."""

from __future__ import annotations

import logging
from contextlib import AsyncExitStack
from pathlib import Path

import pytest

from bot.stores import open_stores
from memory.ledger import Booking
from tests.conftest import make_settings


async def test_what_is_written_is_found_when_opened_again(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    async with AsyncExitStack() as stack:
        first = await open_stores(settings, stack)
        await first.control.put("flag", {"on": True})
        await first.records.upsert("contact", {"name": "Ana"}, "op")
        goal = await first.tasks.create_goal("find a sponsor", "s", "op")
        assert first.approvals is not None and first.db.connection is not None
    async with AsyncExitStack() as stack:
        again = await open_stores(settings, stack)
        contacts = await again.records.find_contacts("Ana")
        assert await again.control.get("flag") == {"on": True}
        assert [c.data.name for c in contacts] == ["Ana"]  # type: ignore[union-attr]
        assert await again.tasks.goal(goal.id) is not None


async def test_a_call_in_flight_at_a_crash_is_counted_once_at_its_estimate(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(tmp_path)
    async with AsyncExitStack() as stack:
        stores = await open_stores(settings, stack)

        def hold(booking: Booking) -> None:
            booking.hold("s", "chat", "fake-model", 100, 0.25)

        await stores.ledger.book(hold)  # the process "dies" here: the hold is never settled
    caplog.set_level(logging.WARNING, logger="bot.stores")
    for _ in range(2):
        async with AsyncExitStack() as stack:
            reopened = await open_stores(settings, stack)
            calls = await reopened.ledger.calls()
    assert [(c.model, c.cost) for c in calls] == [("fake-model", 0.25)]
    warned = [r.getMessage() for r in caplog.records if r.name == "bot.stores"]
    assert warned == ["1 model call(s) were in flight when the last run stopped; counted at their estimate"]
