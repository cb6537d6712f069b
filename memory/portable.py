"""Stores whose rows a backup carries: ``coo export`` writes each one's :meth:`PortableStore.dump` as
``<name>.jsonl``; ``coo import`` checks every line against its ``line`` model and hands the lines to its
:meth:`PortableStore.restore`. What an import may not trust (docs/backup-trust.md) is decided by
``bot/backup.py`` before the lines reach a store: a store restores what it is given.

**Adding a store to backups**: give it the members of :class:`PortableStore` (its line model derived from
its row dataclass by ``memory.lines.row_line``, so a column is declared once; its SQL from a
``memory.lines.Table``) and add its class to :data:`PORTABLE` below; ``tests/memory/test_lines.py`` holds
each line against its row.
An export made before the store existed has no file for it: it restores with no rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Protocol

from memory.approval_lines import ApprovalLines
from memory.db import Database
from memory.event_log import EventLog
from memory.followups import FollowupStore
from memory.goal_evidence import EvidenceStore
from memory.goal_lines import GoalLines
from memory.lines import Line, Table
from memory.notes import NoteLedger
from memory.pipeline import PipelineStore
from memory.records import Records


class PortableStore(Protocol):
    """A store that can write out its rows and take them back."""

    name: ClassVar[str]
    """Its file in an export (``<name>.jsonl``)."""
    version: ClassVar[int]
    """The layout of its lines; raised when a line changes (an import refuses lines newer than it reads)."""
    line: ClassVar[type[Line]]
    """One line of its file, as checked on import."""
    tables: ClassVar[tuple[Table, ...]]
    """The tables its lines are read from and written to."""

    def __init__(self, db: Database) -> None: ...

    async def setup(self) -> None:
        """Create (or bring up to date) its tables, as a start would."""

    async def dump(self) -> list[dict[str, Any]]:
        """Every row, as plain JSON lines, oldest first. Only reads: the caller holds one read transaction
        around every store's dump, so an export is one consistent snapshot."""

    async def restore(self, lines: Sequence[Any]) -> None:
        """Write ``lines`` (instances of ``line``, checked) into its empty tables, as they are."""


PORTABLE: tuple[type[PortableStore], ...] = (
    # In restore order: a line may point only to stores before it (a record to its event, a follow-up to its
    # card's approval, a stage to its contact, evidence to its goal's task).
    EventLog,
    Records,
    ApprovalLines,
    NoteLedger,
    GoalLines,
    FollowupStore,
    PipelineStore,
    EvidenceStore,
)
