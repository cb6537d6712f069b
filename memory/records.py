"""Canonical records: contacts, projects, deals, tasks and invoices, with a version history and
provenance (the event that created or changed each version). Each kind is a typed pydantic model;
versions are never overwritten, so any past state can be read back."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, Field, ValidationError, field_validator, model_validator

from memory.addresses import normalise_address
from memory.db import Database, utcnow
from memory.errors import InternalError
from memory.lines import Line, Table, row_line

RECORDS_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    version INTEGER NOT NULL,
    data TEXT NOT NULL,
    event_id INTEGER NOT NULL REFERENCES events(id),
    actor TEXT NOT NULL,
    at TEXT NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (kind, id, version)
);
CREATE INDEX IF NOT EXISTS records_kind ON records(kind, id, version DESC);
"""


class Contact(BaseModel):
    """A person or a company."""

    name: str = Field(min_length=1, max_length=200)
    company: str = ""
    emails: list[str] = Field(default_factory=list)
    phone: str = ""
    notes: str = ""
    stripe_customer_id: str = ""

    @field_validator("emails")
    @classmethod
    def _emails(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(normalise_address(v) for v in value))


class Project(BaseModel):
    """A piece of work for a client or for the business."""

    name: str = Field(min_length=1, max_length=200)
    status: Literal["active", "paused", "done"] = "active"
    contact_id: str = ""
    notes: str = ""


class Deal(BaseModel):
    """A sale in progress."""

    title: str = Field(min_length=1, max_length=200)
    contact_id: str = ""
    amount: float = Field(default=0, ge=0)
    currency: str = "USD"
    stage: Literal["lead", "proposal", "won", "lost"] = "lead"


class Task(BaseModel):
    """Something to do, maybe by a date."""

    title: str = Field(min_length=1, max_length=300)
    due: date | None = None
    status: Literal["open", "done"] = "open"
    project_id: str = ""


class Invoice(BaseModel):
    """Money owed to the business."""

    number: str = Field(min_length=1, max_length=50)
    contact_id: str = ""
    amount: float = Field(ge=0)
    currency: str = "USD"
    due: date | None = None
    status: Literal["draft", "sent", "paid", "void", "uncollectible"] = "draft"
    stripe_id: str = ""
    url: str = ""
    customer: str = ""
    email: str = ""


class Draft(BaseModel):
    """A piece of writing made for a goal (a post, a newsletter issue, a proposal): versioned like every record."""

    title: str = Field(min_length=1, max_length=300)
    kind: Literal["post", "newsletter", "proposal", "email", "other"] = "other"
    body: str = Field(min_length=1, max_length=50_000)
    goal_id: str = ""


RecordKind = Literal["contact", "project", "deal", "task", "invoice", "draft"]
MODELS: dict[str, type[BaseModel]] = {
    "contact": Contact,
    "project": Project,
    "deal": Deal,
    "task": Task,
    "invoice": Invoice,
    "draft": Draft,
}


@dataclass(frozen=True)
class Record:
    """One version of one record."""

    kind: str
    id: str
    version: int
    data: BaseModel
    event_id: int
    actor: str
    at: datetime
    deleted: bool


_RecordFields: Any = row_line(Record, times=str)


class RecordLine(_RecordFields):
    """One record version in a backup (the fields of :class:`Record`, its data checked against the kind's model,
    its time as stored)."""

    @field_validator("at")
    @classmethod
    def _at(cls, value: str) -> str:
        datetime.fromisoformat(value)
        return value

    @model_validator(mode="after")
    def _data(self) -> RecordLine:
        model = MODELS.get(self.kind)
        if model is None:
            raise ValueError(f"unknown record kind {self.kind!r}")
        model.model_validate(self.data)
        return self


_RECORDS = Table("records", RecordLine)


class RecordError(InternalError, ValueError):
    """Bad record input; the message says what is wrong."""


class Records:
    """Reads and writes records; every write appends an event first and points to it."""

    name: ClassVar[str] = "records"
    version: ClassVar[int] = 1
    line: ClassVar[type[Line]] = RecordLine
    tables: ClassVar[tuple[Table, ...]] = (_RECORDS,)
    """In a backup (``memory.portable``): every version of every record, deleted ones included."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def setup(self) -> None:
        """Create the table."""
        await self._db.script(RECORDS_SCHEMA)

    async def dump(self) -> list[dict[str, Any]]:
        """Every version of every record (the history is part of a backup)."""
        return [_RECORDS.read(r) for r in await self._db.fetchall(_RECORDS.select("ORDER BY kind, id, version"))]

    async def restore(self, lines: Sequence[RecordLine]) -> None:
        """Write the record versions as they are."""
        rows = [_RECORDS.values(r) for r in lines]

        def work(conn: sqlite3.Connection) -> None:
            _RECORDS.insert(conn, rows)

        await self._db.run_transaction(work)

    @staticmethod
    def parse(kind: str, data: dict[str, Any]) -> BaseModel:
        """Validate ``data`` as a ``kind``; RecordError with the reasons when it is not."""
        model = MODELS.get(kind)
        if model is None:
            raise RecordError(f"unknown record kind {kind!r}; one of {', '.join(MODELS)}")
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            reasons = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
            raise RecordError(f"bad {kind}: {reasons}") from None

    async def upsert(
        self,
        kind: str,
        data: dict[str, Any],
        actor: str,
        record_id: str | None = None,
        session: str | None = None,
        source: str = "chat",
    ) -> Record:
        """Create a record or add a new version of it (fields not given keep their value)."""
        current = await self.get(kind, record_id) if record_id else None
        if record_id and current is None:
            raise RecordError(f"no {kind} with id {record_id}")
        merged = {**(current.data.model_dump(mode="json") if current else {}), **data}
        parsed = self.parse(kind, merged)
        new_id = record_id or uuid.uuid4().hex[:10]
        version = (current.version + 1) if current else 1
        payload = {
            "kind": kind,
            "id": new_id,
            "version": version,
            "data": parsed.model_dump(mode="json"),
            "source": source,
        }
        at = utcnow()
        # The version and the event that made it are written together (one commit, never one alone).
        async with self._db.transaction() as tx:
            event_id = await tx.append_event("record.upserted", actor, payload, session=session)
            await tx.execute(
                "INSERT INTO records (kind, id, version, data, event_id, actor, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (kind, new_id, version, json.dumps(payload["data"]), event_id, actor, at.isoformat()),
            )
        return Record(kind, new_id, version, parsed, event_id, actor, at, False)

    async def delete(self, kind: str, record_id: str, actor: str) -> bool:
        """Mark a record deleted (a new version; history stays)."""
        current = await self.get(kind, record_id)
        if current is None:
            return False
        async with self._db.transaction() as tx:
            event_id = await tx.append_event("record.deleted", actor, {"kind": kind, "id": record_id})
            await tx.execute(
                "INSERT INTO records (kind, id, version, data, event_id, actor, at, deleted) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, 1)",
                (
                    kind,
                    record_id,
                    current.version + 1,
                    json.dumps(current.data.model_dump(mode="json")),
                    event_id,
                    actor,
                    utcnow().isoformat(),
                ),
            )
        return True

    async def get(self, kind: str, record_id: str | None) -> Record | None:
        """The latest version, unless deleted."""
        row = await self._db.fetchone(
            "SELECT kind, id, version, data, event_id, actor, at, deleted FROM records WHERE kind = ? AND id = ? "
            "ORDER BY version DESC LIMIT 1",
            (kind, record_id),
        )
        if row is None or row[7]:
            return None
        return self._record(row)

    async def history(self, kind: str, record_id: str) -> list[Record]:
        """Every version, oldest first."""
        rows = await self._db.fetchall(
            "SELECT kind, id, version, data, event_id, actor, at, deleted FROM records WHERE kind = ? AND id = ? "
            "ORDER BY version",
            (kind, record_id),
        )
        return [self._record(r) for r in rows]

    async def all(self, kind: str) -> list[Record]:
        """The latest version of every live record of a kind."""
        rows = await self._db.fetchall(
            "SELECT r.kind, r.id, r.version, r.data, r.event_id, r.actor, r.at, r.deleted FROM records r "
            "JOIN (SELECT id, MAX(version) v FROM records WHERE kind = ? GROUP BY id) m ON r.id = m.id AND "
            "r.version = m.v WHERE r.kind = ? AND r.deleted = 0 ORDER BY r.at",
            (kind, kind),
        )
        return [self._record(r) for r in rows]

    async def find_one(self, kind: str, field: str, value: str) -> Record | None:
        """The live record of ``kind`` whose ``field`` equals ``value`` (e.g. an invoice by its Stripe id)."""
        for record in await self.all(kind):
            if getattr(record.data, field, None) == value:
                return record
        return None

    async def find_contacts(self, query: str) -> list[Record]:
        """Contacts whose name, company or email contains ``query`` (case-insensitive)."""
        needle = query.strip().lower()
        if not needle:
            return []
        found = []
        for record in await self.all("contact"):
            contact = record.data
            assert isinstance(contact, Contact)
            haystack = " ".join([contact.name, contact.company, *contact.emails]).lower()
            if all(part in haystack for part in needle.split()):
                found.append(record)
        return found

    def _record(self, row: Any) -> Record:
        return Record(
            row[0],
            row[1],
            row[2],
            MODELS[row[0]].model_validate(json.loads(row[3])),
            row[4],
            row[5],
            datetime.fromisoformat(row[6]),
            bool(row[7]),
        )
