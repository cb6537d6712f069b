"""The one place a proposal's ``Context`` and a tool's ``ToolContext`` are made: a conversation, a slash
command, a card's edit and a task's skill each ask this factory, with what differs (the conversation, who
asked, the goal), and share the rest (the stores, the zone, the currency, the clock)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from connectors.base import Context
from graph.conversation.tools import ToolContext
from memory.db import Database, utcnow
from memory.profile import ProfileStore
from memory.records import Records

if TYPE_CHECKING:
    from memory.semantic.api import Memory


@dataclass(frozen=True)
class Contexts:
    """Makes the frozen contexts that proposing an action and running a tool may use."""

    db: Database
    timezone: str
    currency: str
    records: Records | None = None
    profile: ProfileStore | None = None
    memory: Memory | None = None
    scope: str = "default"
    clock: Callable[[], datetime] = utcnow
    """Now (aware), read when a context is made: a proposal's date (UTC) and what a tool counts days from."""

    def proposal(self, session: str = "", requested_by: str = "") -> Context:
        """What building an action may use: contacts, the currency, today, and where it comes from."""
        today = self.clock().date()
        return Context(self.records, self.currency, today, session=session, requested_by=requested_by)

    def tool(self, session: str, goal_id: str = "") -> ToolContext:
        """What a tool may use in ``session`` (semantic memory included), working for ``goal_id`` if any."""
        return ToolContext(
            db=self.db,
            session=session,
            timezone=self.timezone,
            records=self.records,
            profile=self.profile,
            memory=self.memory,
            scope=self.scope,
            goal_id=goal_id,
            clock=self.clock,
        )
