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
from datetime import datetime
from typing import Any, ClassVar

from pydantic import model_validator

from memory.approvals import ApprovalState, ApprovalStore, OutboxState
from memory.db import Database
from memory.lines import Line, Table


class CardLine(Line):
    """Where a card was shown."""

    channel: str
    chat_id: str
    thread_id: str | None
    message_id: str


class OutboxLine(Line):
    """An approval's outbox row."""

    approval_id: str
    idempotency_key: str
    kind: str
    action: dict[str, Any]
    digest: str
    state: OutboxState
    attempts: int
    next_attempt_at: datetime
    detail: str
    external_id: str | None
    updated_at: datetime
    progress: dict[str, Any] = {}
    owner: str | None = None
    """The process that ran it last (``memory.liveness``); kept as it was: no process here has that name."""


class ApprovalLine(Line):
    """One approval with its cards and outbox row."""

    id: str
    root_id: str
    thread: str
    origin: str
    kind: str
    action: dict[str, Any]
    digest: str
    approvers: list[str]
    nonce: str
    created_at: datetime
    expires_at: datetime
    state: ApprovalState
    decided_by: str | None
    decided_at: datetime | None
    cards: list[CardLine]
    context: dict[str, Any] = {}
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
