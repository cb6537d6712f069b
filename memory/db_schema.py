"""The application database's own tables (events, inbox, reply journal), the event row, and the migrations
that bring an older file up to date (``PRAGMA user_version``).

The event log is append-only: SQLite triggers refuse to delete an event or change it, with one exception:
``/forget`` may redact a message's text (the row stays, its text becomes ``FORGOTTEN_TEXT``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from memory.db_access import DbAccess

MESSAGE_KINDS = ("message.in", "message.out")
FORGOTTEN_TEXT = "[forgotten]"
"""What a message redacted by ``/forget`` says in the event log."""

# The only change the event log allows: a message's text replaced by "[forgotten]" and marked redacted,
# once, everything else as it was.
_REDACTION = (
    f"old.kind IN {MESSAGE_KINDS} AND new.kind = old.kind AND new.id = old.id AND new.at = old.at "
    "AND new.actor = old.actor AND new.session IS old.session AND json_extract(new.payload, '$.redacted') IS 1 "
    "AND json_extract(old.payload, '$.redacted') IS NOT 1 "
    f"AND json_extract(new.payload, '$.text') IS '{FORGOTTEN_TEXT}'"
)
_NO_UPDATE = """
BEGIN IMMEDIATE;
DROP TRIGGER IF EXISTS events_no_update;
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
    WHEN NOT ({_REDACTION})
    BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;
COMMIT;
"""
_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at TEXT NOT NULL,
    actor TEXT NOT NULL,
    session TEXT,
    kind TEXT NOT NULL,
    payload TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_session ON events(session, id);
CREATE INDEX IF NOT EXISTS events_kind ON events(kind, id);
CREATE TRIGGER IF NOT EXISTS events_no_update BEFORE UPDATE ON events
    WHEN NOT ({_REDACTION})
    BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS events_no_delete BEFORE DELETE ON events
    BEGIN SELECT RAISE(ABORT, 'the event log is append-only'); END;

-- Full-text index over the text of messages in and out (contentless: the text lives in events).
CREATE VIRTUAL TABLE IF NOT EXISTS message_fts USING fts5(text, content='', tokenize='unicode61 remove_diacritics 2');
CREATE TRIGGER IF NOT EXISTS events_message_fts AFTER INSERT ON events
    WHEN new.kind IN ('message.in', 'message.out')
    BEGIN INSERT INTO message_fts (rowid, text) VALUES (new.id, json_extract(new.payload, '$.text')); END;

-- Per-term document counts of that index (to pick a query's rarest words).
CREATE VIRTUAL TABLE IF NOT EXISTS message_fts_terms USING fts5vocab(message_fts, 'row');

CREATE TABLE IF NOT EXISTS inbox (
    update_key TEXT PRIMARY KEY,
    session TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('pending', 'done')),
    received_at TEXT NOT NULL,
    done_at TEXT,
    event_id INTEGER
);
CREATE INDEX IF NOT EXISTS inbox_pending ON inbox(status, received_at);

-- What was already sent while handling an update: a replay skips these sends (I3).
CREATE TABLE IF NOT EXISTS replies (
    update_key TEXT NOT NULL,
    seq INTEGER NOT NULL,
    ids TEXT NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (update_key, seq)
);
"""
_SCHEMA = _SCHEMA.replace("{_REDACTION}", _REDACTION)
_NO_UPDATE = _NO_UPDATE.replace("{_REDACTION}", _REDACTION)
_SCHEMA_VERSION = 3


@dataclass(frozen=True)
class Event:
    """One row of the event log."""

    id: int
    at: datetime
    actor: str
    session: str | None
    kind: str
    payload: dict[str, Any]


EVENT_COLUMNS = "id, at, actor, session, kind, payload"


def event_from_row(r: Any) -> Event:
    """An event from a row of :data:`EVENT_COLUMNS`."""
    return Event(r[0], datetime.fromisoformat(r[1]), r[2], r[3], r[4], json.loads(r[5]))


async def migrate(db: DbAccess) -> None:
    """Create the tables, and fill indexes that older files did not have."""
    await db.script(_SCHEMA)
    row = await db.fetchone("PRAGMA user_version")
    columns = {r[1] for r in await db.fetchall("PRAGMA table_info(inbox)")}
    if "event_id" not in columns:
        await db.write("ALTER TABLE inbox ADD COLUMN event_id INTEGER")
    if int(row[0]) < 2:
        # Version 2 added the full-text index: index the messages written before it existed.
        async with db.transaction() as tx:
            await tx.execute(
                "INSERT INTO message_fts (rowid, text) SELECT id, json_extract(payload, '$.text') FROM events "
                "WHERE kind IN ('message.in', 'message.out') AND id NOT IN (SELECT rowid FROM message_fts)"
            )
    if int(row[0]) < 3:
        # Version 3 lets /forget redact a message (older files refuse every update).
        await db.script(_NO_UPDATE)
    if int(row[0]) != _SCHEMA_VERSION:
        await db.write(f"PRAGMA user_version = {_SCHEMA_VERSION}")
