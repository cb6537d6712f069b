"""Approvals in a backup (``approvals.jsonl``): one line per approval, with its cards and its outbox row.

Digests are carried as stored: keyed with the install secret that made them, they verify only on that
install (``memory.install``). Every outbox row restored is marked ``restored`` (history, never a known
target) and ``reported`` (its cards were edited where it ran); whether a row was itself restored is not
exported.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any, ClassVar

from pydantic import model_validator

from memory.approval_rows import ApprovalRow, CardRef, OutboxRow
from memory.approvals import ApprovalStore
from memory.db import Database
from memory.lines import Line, Table, row_line

_CardFields: Any = row_line(CardRef)


class CardLine(_CardFields):
    """Where a card was shown (the fields of ``memory.approvals.CardRef``)."""


_OutboxFields: Any = row_line(
    OutboxRow,
    drop=("restored",),  # every restored row is marked restored (``_OUTBOX`` writes it)
    # A line from before an outbox row kept its progress or its process; ``owner`` is kept as it was: no
    # process here has that name.
    defaults={"progress": {}, "owner": None},
)
_ApprovalFields: Any = row_line(ApprovalRow, defaults={"context": {}}, nested={CardRef: CardLine})


class OutboxLine(_OutboxFields):
    """An approval's outbox row (the fields of ``memory.approvals.OutboxRow``)."""


class ApprovalLine(_ApprovalFields):
    """One approval (the fields of ``memory.approvals.ApprovalRow``) with its cards and outbox row."""

    outbox: OutboxLine | None

    @model_validator(mode="after")
    def _own_outbox(self) -> ApprovalLine:
        if self.outbox is not None and self.outbox.approval_id != self.id:
            raise ValueError("its outbox row belongs to another approval")
        return self


_APPROVALS = Table("approvals", ApprovalLine, nested=("outbox",))
_OUTBOX = Table("outbox", OutboxLine, written={"reported": 1, "restored": 1})
_CARD = tuple(CardLine.model_fields)  # a card is stored as a list of these, in this order


class ApprovalLines:
    """The approval store's rows in a backup (``memory.portable``)."""

    name: ClassVar[str] = "approvals"
    version: ClassVar[int] = 1
    line: ClassVar[type[Line]] = ApprovalLine
    tables: ClassVar[tuple[Table, ...]] = (_APPROVALS, _OUTBOX)

    def __init__(self, db: Database) -> None:
        self._db = db

    async def setup(self) -> None:
        """The store's tables; a data dir from before digests were keyed has them keyed first, as a start
        would. In an empty data dir this writes the marker that they are keyed: restored digests come
        keyed (or from another install) and are never keyed again, or a hand-made one would become valid."""
        await ApprovalStore(self._db.connection).setup(self._db.install)

    async def dump(self) -> list[dict[str, Any]]:
        """Every approval, oldest first, its cards and its outbox row inside it."""
        outbox = {}
        for row in await self._db.fetchall(_OUTBOX.select()):
            line = _OUTBOX.read(row)
            outbox[line["approval_id"]] = line
        lines = []
        for row in await self._db.fetchall(_APPROVALS.select("ORDER BY created_at")):
            line = _APPROVALS.read(row)
            line["cards"] = [dict(zip(_CARD, card, strict=True)) for card in line["cards"]]
            lines.append({**line, "outbox": outbox.get(line["id"])})
        return lines

    async def restore(self, lines: Sequence[ApprovalLine]) -> None:
        """Write the approvals and their outbox rows as they are (outbox rows marked restored)."""
        approvals = [
            _APPROVALS.values(a, cards=json.dumps([[getattr(c, f) for f in _CARD] for c in a.cards])) for a in lines
        ]
        outbox = [_OUTBOX.values(a.outbox) for a in lines if a.outbox is not None]

        def work(conn: sqlite3.Connection) -> None:
            _APPROVALS.insert(conn, approvals)
            _OUTBOX.insert(conn, outbox)

        await self._db.run_transaction(work)
