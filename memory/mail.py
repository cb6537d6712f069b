"""Received mail: messages (one per Message-ID), where each was seen (folder, UIDVALIDITY, UID), each
folder's cursor, triage results, and the Message-IDs of the emails we sent (to link replies back).

A message and the cursor that moves past it are written in one transaction, so a crash at any point
leaves either both or neither (never lost, never twice). The same message found in two folders, or
again after a UIDVALIDITY change, is one row with two locations.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from memory.db import Database, dumps, utcnow

_SCHEMA = """
CREATE TABLE IF NOT EXISTS mail_messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id TEXT NOT NULL UNIQUE,
    sha256 TEXT NOT NULL,
    from_addr TEXT NOT NULL,
    from_name TEXT NOT NULL,
    reply_to TEXT NOT NULL,
    subject TEXT NOT NULL,
    sent_at TEXT,
    received_at TEXT NOT NULL,
    in_reply_to TEXT NOT NULL,
    refs TEXT NOT NULL,
    thread TEXT NOT NULL,
    body TEXT NOT NULL,
    headers TEXT NOT NULL,
    attachments TEXT NOT NULL,
    parsed INTEGER NOT NULL,
    raw BLOB,
    class TEXT,
    urgency TEXT,
    summary TEXT,
    needs_operator INTEGER NOT NULL DEFAULT 0,
    notify INTEGER NOT NULL DEFAULT 0,
    notified INTEGER NOT NULL DEFAULT 0,
    indexed INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS mail_messages_thread ON mail_messages(thread, id);
CREATE INDEX IF NOT EXISTS mail_messages_untriaged ON mail_messages(id) WHERE class IS NULL;
CREATE TABLE IF NOT EXISTS mail_locations (
    folder TEXT NOT NULL,
    uidvalidity INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    mail_id INTEGER NOT NULL REFERENCES mail_messages(id),
    after_done INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (folder, uidvalidity, uid)
);
CREATE TABLE IF NOT EXISTS mail_cursors (
    folder TEXT PRIMARY KEY,
    uidvalidity INTEGER NOT NULL,
    last_uid INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS mail_replies (
    mail_id INTEGER PRIMARY KEY REFERENCES mail_messages(id),
    sent_message_id TEXT NOT NULL,
    delivered INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS mail_replies_sent ON mail_replies(sent_message_id);
CREATE TABLE IF NOT EXISTS mail_sent (
    message_id TEXT PRIMARY KEY,
    idempotency_key TEXT NOT NULL,
    recipients TEXT NOT NULL,
    subject TEXT NOT NULL,
    sent_at TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class MailRecord:
    """One received message as parsed (or, when ``parsed`` is False, only its raw bytes and hash)."""

    message_id: str
    sha256: str
    from_addr: str = ""
    from_name: str = ""
    reply_to: str = ""
    subject: str = ""
    sent_at: str | None = None
    in_reply_to: str = ""
    references: tuple[str, ...] = ()
    body: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    attachments: tuple[tuple[str, str, int], ...] = ()
    parsed: bool = True
    raw: bytes | None = None


@dataclass(frozen=True)
class Location:
    """Where a message sits on the server."""

    folder: str
    uidvalidity: int
    uid: int


@dataclass(frozen=True)
class StoredMail:
    """A stored message with its triage (class is None until triaged)."""

    id: int
    record: MailRecord
    received_at: str
    thread: str
    mail_class: str | None
    urgency: str | None
    summary: str | None
    needs_operator: bool


@dataclass(frozen=True)
class SentMail:
    """An email we sent, found by its Message-ID, with the card (and goal and task) that sent it."""

    message_id: str
    idempotency_key: str
    recipients: tuple[str, ...]
    subject: str
    approval_id: str | None = None
    goal_id: str | None = None
    task_id: str | None = None


class MailStore:
    """Received mail and folder cursors in the application database."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def setup(self) -> None:
        """Create the tables (idempotent)."""
        await self._db.script(_SCHEMA)
        columns = {r[1] for r in await self._db.fetchall("PRAGMA table_info(mail_locations)")}
        if "after_done" not in columns:  # files from before the opt-in action after triage
            await self._db.write("ALTER TABLE mail_locations ADD COLUMN after_done INTEGER NOT NULL DEFAULT 0")

    async def cursor(self, folder: str) -> tuple[int, int] | None:
        """``(uidvalidity, last_uid)`` of ``folder``, or None before its first message."""
        row = await self._db.fetchone("SELECT uidvalidity, last_uid FROM mail_cursors WHERE folder = ?", (folder,))
        return (int(row[0]), int(row[1])) if row else None

    async def reset_cursor(self, folder: str, uidvalidity: int) -> None:
        """A new UIDVALIDITY: start the folder over (stored messages dedupe by Message-ID)."""
        await self._db.write(
            "INSERT INTO mail_cursors (folder, uidvalidity, last_uid) VALUES (?, ?, 0) "
            "ON CONFLICT(folder) DO UPDATE SET uidvalidity = excluded.uidvalidity, last_uid = 0",
            (folder, uidvalidity),
        )

    async def store(self, record: MailRecord, where: Location) -> tuple[int, bool]:
        """Store ``record`` seen at ``where`` and move the folder's cursor past it, in one transaction.
        Returns ``(mail id, new)``; ``new`` is False when the message was already stored."""
        return (await self.store_many([(record, where)]))[0]

    async def store_many(self, found: Sequence[tuple[MailRecord, Location]]) -> list[tuple[int, bool]]:
        """:meth:`store` for several messages (in UID order), in one transaction."""

        def work(conn: sqlite3.Connection) -> list[tuple[int, bool]]:
            return [_store_one(conn, record, where) for record, where in found]

        return await self._db.run_transaction(work)

    async def get(self, mail_id: int) -> StoredMail | None:
        """One message."""
        row = await self._db.fetchone(f"SELECT {_COLUMNS} FROM mail_messages WHERE id = ?", (mail_id,))
        return _stored(row) if row else None

    async def by_message_id(self, message_id: str) -> StoredMail | None:
        """The message with this Message-ID."""
        row = await self._db.fetchone(f"SELECT {_COLUMNS} FROM mail_messages WHERE message_id = ?", (message_id,))
        return _stored(row) if row else None

    async def thread(self, thread: str) -> list[StoredMail]:
        """Every stored message of a thread, oldest first."""
        rows = await self._db.fetchall(f"SELECT {_COLUMNS} FROM mail_messages WHERE thread = ? ORDER BY id", (thread,))
        return [_stored(r) for r in rows]

    async def untriaged(self, limit: int = 100) -> list[StoredMail]:
        """Messages not triaged yet, oldest first."""
        rows = await self._db.fetchall(
            f"SELECT {_COLUMNS} FROM mail_messages WHERE class IS NULL ORDER BY id LIMIT ?", (limit,)
        )
        return [_stored(r) for r in rows]

    async def set_triage(
        self, mail_id: int, mail_class: str, urgency: str, summary: str, needs_operator: bool, notify: bool = False
    ) -> None:
        """Record what triage decided; ``notify``: the operator hears of it at once (outside quiet hours)."""
        await self._db.write(
            "UPDATE mail_messages SET class = ?, urgency = ?, summary = ?, needs_operator = ?, notify = ? WHERE id = ?",
            (mail_class, urgency, summary, int(needs_operator), int(notify), mail_id),
        )

    async def due_notices(self) -> list[StoredMail]:
        """Messages whose notice has not been sent yet, oldest first."""
        rows = await self._db.fetchall(
            f"SELECT {_COLUMNS} FROM mail_messages WHERE notify = 1 AND notified = 0 ORDER BY id LIMIT 50"
        )
        return [_stored(r) for r in rows]

    async def needing_operator(self, limit: int = 20) -> list[StoredMail]:
        """Triaged messages that need the operator, newest first."""
        rows = await self._db.fetchall(
            f"SELECT {_COLUMNS} FROM mail_messages WHERE needs_operator = 1 ORDER BY id DESC LIMIT ?", (limit,)
        )
        return [_stored(r) for r in rows]

    async def count_needing_operator(self) -> int:
        """How many messages need the operator."""
        row = await self._db.fetchone("SELECT COUNT(*) FROM mail_messages WHERE needs_operator = 1")
        return int(row[0])

    async def mark_notified(self, mail_id: int) -> bool:
        """Mark a message's notice as sent; False when it already was (a notice goes out once)."""
        written = await self._db.write(
            "UPDATE mail_messages SET notified = 1 WHERE id = ? AND notified = 0", (mail_id,)
        )
        return written.rowcount == 1

    async def unindexed(self, limit: int = 100) -> list[StoredMail]:
        """Triaged messages not yet in the event log and semantic memory, oldest first."""
        rows = await self._db.fetchall(
            f"SELECT {_COLUMNS} FROM mail_messages WHERE class IS NOT NULL AND indexed = 0 ORDER BY id LIMIT ?",
            (limit,),
        )
        return [_stored(r) for r in rows]

    async def mark_indexed(self, mails: Sequence[StoredMail], actor: str = "email") -> None:
        """Mark ``mails`` indexed and log each as a ``mail.received`` event (sender, date, subject), atomically."""

        async with self._db.transaction() as tx:
            for mail in mails:
                done = await tx.execute("UPDATE mail_messages SET indexed = 1 WHERE id = ? AND indexed = 0", (mail.id,))
                if done.rowcount:
                    r = mail.record
                    payload = {"mail_id": mail.id, "from": r.from_addr, "date": r.sent_at, "subject": r.subject}
                    await tx.append_event("mail.received", actor, {**payload, "class": mail.mail_class})

    async def after_triage_due(self, folder: str, limit: int = 200) -> list[tuple[Location, str]]:
        """Where triaged messages sit in ``folder`` that the opt-in action after triage has not handled yet, with
        their Message-IDs, in UID order."""
        rows = await self._db.fetchall(
            "SELECT l.folder, l.uidvalidity, l.uid, m.message_id FROM mail_locations l JOIN mail_messages m "
            "ON m.id = l.mail_id WHERE l.folder = ? AND l.after_done = 0 AND m.class IS NOT NULL "
            "ORDER BY l.uidvalidity, l.uid LIMIT ?",
            (folder, limit),
        )
        return [(Location(str(r[0]), int(r[1]), int(r[2])), str(r[3])) for r in rows]

    async def mark_after_done(self, where: Sequence[Location]) -> None:
        """The action after triage was done (or found done) on the server for these locations."""

        def work(conn: sqlite3.Connection) -> None:
            conn.executemany(
                "UPDATE mail_locations SET after_done = 1 WHERE folder = ? AND uidvalidity = ? AND uid = ?",
                [(w.folder, w.uidvalidity, w.uid) for w in where],
            )

        await self._db.run_transaction(work)

    async def forget(self, mail_id: int) -> bool:
        """Blank what a message said (``/forget mail-<id>``): body, subject, summary, headers, attachment names and
        raw bytes. Who sent it, when, and its thread ids stay (replies still link to it). False when no such message."""
        written = await self._db.write(
            "UPDATE mail_messages SET body = '', subject = '', summary = CASE WHEN summary IS NULL THEN NULL ELSE '' "
            "END, headers = '{}', attachments = '[]', raw = NULL WHERE id = ?",
            (mail_id,),
        )
        return written.rowcount == 1

    async def count(self) -> int:
        """How many messages are stored."""
        row = await self._db.fetchone("SELECT COUNT(*) FROM mail_messages")
        return int(row[0])

    async def record_sent(self, message_id: str, idempotency_key: str, recipients: Sequence[str], subject: str) -> None:
        """Remember an email we sent (idempotent), so a reply to it links back to its card."""
        await self._db.write(
            "INSERT OR IGNORE INTO mail_sent (message_id, idempotency_key, recipients, subject, sent_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (message_id, idempotency_key, dumps(list(recipients)), subject, utcnow().isoformat()),
        )

    async def sent_for(self, message_ids: Sequence[str]) -> SentMail | None:
        """The first of ``message_ids`` that is an email we sent (for a reply's In-Reply-To/References), with
        the card that sent it (the outbox maps its idempotency key to the card) and that card's goal and task."""
        for message_id in message_ids:
            row = await self._db.fetchone(_SENT, (message_id,)) if message_id else None
            if row:
                return SentMail(row[0], row[1], tuple(json.loads(row[2])), row[3], row[4], row[5], row[6])
        return None


# The outbox and approvals tables belong to the approval store (same file); read here only to link a reply.
_SENT = """
SELECT s.message_id, s.idempotency_key, s.recipients, s.subject, o.approval_id,
       json_extract(a.context, '$.goal_id'), json_extract(a.context, '$.task_id')
FROM mail_sent s
LEFT JOIN outbox o ON o.idempotency_key = s.idempotency_key
LEFT JOIN approvals a ON a.id = o.approval_id
WHERE s.message_id = ?
"""

_COLUMNS = (
    "id, message_id, sha256, from_addr, from_name, reply_to, subject, sent_at, in_reply_to, refs, body, headers, "
    "attachments, parsed, raw, received_at, thread, class, urgency, summary, needs_operator"
)


def _store_one(conn: sqlite3.Connection, record: MailRecord, where: Location) -> tuple[int, bool]:
    row = conn.execute("SELECT id FROM mail_messages WHERE message_id = ?", (record.message_id,)).fetchone()
    mail_id = int(row[0]) if row else _insert(conn, record)
    if row is None:
        _link_reply(conn, mail_id, record)
    conn.execute(
        "INSERT OR IGNORE INTO mail_locations (folder, uidvalidity, uid, mail_id) VALUES (?, ?, ?, ?)",
        (where.folder, where.uidvalidity, where.uid, mail_id),
    )
    conn.execute(
        "INSERT INTO mail_cursors (folder, uidvalidity, last_uid) VALUES (?, ?, ?) ON CONFLICT(folder) DO "
        "UPDATE SET uidvalidity = excluded.uidvalidity, last_uid = MAX(last_uid, excluded.last_uid)",
        (where.folder, where.uidvalidity, where.uid),
    )
    return mail_id, row is None


def _insert(conn: sqlite3.Connection, record: MailRecord) -> int:
    thread = _thread_of(conn, record)
    cur = conn.execute(
        "INSERT INTO mail_messages (message_id, sha256, from_addr, from_name, reply_to, subject, sent_at, received_at, "
        "in_reply_to, refs, thread, body, headers, attachments, parsed, raw) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            record.message_id,
            record.sha256,
            record.from_addr,
            record.from_name,
            record.reply_to,
            record.subject,
            record.sent_at,
            utcnow().isoformat(),
            record.in_reply_to,
            dumps(list(record.references)),
            thread,
            record.body,
            dumps(record.headers),
            dumps([list(a) for a in record.attachments]),
            int(record.parsed),
            record.raw,
        ),
    )
    return int(cur.lastrowid or 0)


def _link_reply(conn: sqlite3.Connection, mail_id: int, record: MailRecord) -> None:
    """A message that answers an email we sent (In-Reply-To first, then References newest first) is linked to it
    with the message, in the same transaction: a task waiting for that reply cannot miss it after a crash."""
    for ref in (record.in_reply_to, *reversed(record.references)):
        if ref and conn.execute("SELECT 1 FROM mail_sent WHERE message_id = ?", (ref,)).fetchone():
            conn.execute("INSERT OR IGNORE INTO mail_replies (mail_id, sent_message_id) VALUES (?, ?)", (mail_id, ref))
            return


def _thread_of(conn: sqlite3.Connection, record: MailRecord) -> str:
    """The thread of the first known message this one refers to; else the first reference; else itself."""
    refs = [r for r in (record.in_reply_to, *reversed(record.references)) if r]
    for ref in refs:
        row = conn.execute("SELECT thread FROM mail_messages WHERE message_id = ?", (ref,)).fetchone()
        if row:
            return str(row[0])
    return record.references[0] if record.references else (refs[0] if refs else record.message_id)


def _stored(row: Any) -> StoredMail:
    record = MailRecord(
        message_id=row[1],
        sha256=row[2],
        from_addr=row[3],
        from_name=row[4],
        reply_to=row[5],
        subject=row[6],
        sent_at=row[7],
        in_reply_to=row[8],
        references=tuple(json.loads(row[9])),
        body=row[10],
        headers=json.loads(row[11]),
        attachments=tuple((str(a[0]), str(a[1]), int(a[2])) for a in json.loads(row[12])),
        parsed=bool(row[13]),
        raw=row[14],
    )
    return StoredMail(row[0], record, row[15], row[16], row[17], row[18], row[19], bool(row[20]))
