"""The application's SQLite database: event log, inbox (dedupe), reply journal, model-call ledger.

One aiosqlite connection in WAL mode with a busy timeout, shared by the stores built on it. Every
write goes through :meth:`Database.write` or :meth:`Database.transaction`, which hold one lock: on a
shared connection, another coroutine's ``commit()`` would otherwise commit half of a transaction.
The event log is append-only: this module offers no way to delete an event or change it, and SQLite
triggers refuse it, with one exception: ``/forget`` may redact a message's text (the row stays, its
text becomes ``FORGOTTEN_TEXT``; :meth:`Database.redact_message`).
"""

from __future__ import annotations

import asyncio
import json
import re
import sqlite3
import unicodedata
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from memory.grouped import Grouped, each, in_one_transaction, on_thread
from memory.install import Install, load_install
from memory.term_counts import TermCounts

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
T = TypeVar("T")
_SCHEMA_VERSION = 3
_SURROGATE = re.compile(r"[\ud800-\udfff]")


def utcnow() -> datetime:
    """Timezone-aware now, in UTC."""
    return datetime.now(UTC)


def clean_text(text: str) -> str:
    """``text`` with lone surrogates (which no UTF-8 store accepts) replaced by U+FFFD."""
    return _SURROGATE.sub("\ufffd", text)


def dumps(value: Any) -> str:
    """Compact JSON for storage; text that cannot be encoded is repaired, never dropped."""
    return clean_text(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


@dataclass(frozen=True)
class Event:
    """One row of the event log."""

    id: int
    at: datetime
    actor: str
    session: str | None
    kind: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class LLMCall:
    """One model call as recorded in the ledger."""

    session: str | None
    workflow: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    estimated: bool
    latency_ms: int
    outcome: str
    cost: float = 0.0


@dataclass(frozen=True)
class Claim:
    """A delivery to store before it is handled: its key, conversation, payload, and the event to log."""

    update_key: str
    session: str
    payload: dict[str, Any]
    actor: str
    logged: dict[str, Any]


@dataclass(frozen=True)
class Written:
    """What a write did: rows changed and the last inserted rowid."""

    rowcount: int
    lastrowid: int | None


def _event_row(kind: str, actor: str, payload: dict[str, Any], session: str | None) -> tuple[Any, ...]:
    return (utcnow().isoformat(), actor, session, kind, dumps(payload))


_INSERT_EVENT = "INSERT INTO events (at, actor, session, kind, payload) VALUES (?, ?, ?, ?, ?)"
_INSERT_REPLY = "INSERT OR REPLACE INTO replies (update_key, seq, ids, at) VALUES (?, ?, ?, ?)"


def _written(cur: sqlite3.Cursor) -> Written:
    return Written(cur.rowcount, cur.lastrowid)


class Transaction:
    """Statements inside one :meth:`Database.transaction` (committed together or not at all).

    ``BEGIN IMMEDIATE`` travels with the first statement (one round trip less per transaction).
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        self.begun = False

    def _begin(self, conn: sqlite3.Connection) -> None:
        if not self.begun:
            conn.execute("BEGIN IMMEDIATE")
            self.begun = True

    async def execute(self, sql: str, args: Iterable[Any] = ()) -> Written:
        """Run one statement in the transaction."""
        values = tuple(args)

        def work(conn: sqlite3.Connection) -> Written:
            self._begin(conn)
            return _written(conn.execute(sql, values))

        return await self._db._on_thread(work)

    async def fetchone(self, sql: str, args: Iterable[Any] = ()) -> Any:
        """One row, read inside the transaction."""
        values = tuple(args)

        def work(conn: sqlite3.Connection) -> Any:
            self._begin(conn)
            return conn.execute(sql, values).fetchone()

        return await self._db._on_thread(work)

    async def append_event(self, kind: str, actor: str, payload: dict[str, Any], session: str | None = None) -> int:
        """Append one event as part of the transaction; returns its id."""
        written = await self.execute(_INSERT_EVENT, _event_row(kind, actor, payload, session))
        assert written.lastrowid is not None
        return written.lastrowid


class Database:
    """Typed access to the application database. Construct with :func:`open_database`.

    The statements of one write (and a read with its rows) go to SQLite's thread in one round trip:
    on a loaded machine each round trip costs a thread wake-up on both sides, which the reply
    path pays several times per message otherwise.
    """

    def __init__(self, conn: aiosqlite.Connection, reader: aiosqlite.Connection, install: Install) -> None:
        """``reader`` (a read-only connection to the same file) serves :meth:`read_one` and the
        message recalls, so a prompt's reads do not queue behind other chats' writes. ``install`` is
        the data dir's secret and id (``memory.install``)."""
        self.install = install
        self._conn = conn
        self._reader = reader or conn
        self._term_counts = TermCounts("message_fts_terms")  # used on the reader's thread only
        self._lock = asyncio.Lock()
        self._writes = Grouped(conn, in_one_transaction, self._lock, name="sqlite-writes")
        self._reads = Grouped(self._reader, each, name="sqlite-reads")

    async def _on_thread(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` on the writer's thread, in order with every other call on it."""
        return await on_thread(self._conn, work)

    async def _on_reader(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` on the reader's thread (grouped with other reads waiting for it): it sees only
        what is committed."""
        return await self._reads.run(work)

    async def read_one(self, sql: str, args: Iterable[Any] = ()) -> Any:
        """The first row of a query of committed data, on the reader (waits for no write)."""
        values = tuple(args)
        return await self._on_reader(lambda conn: _first_row(conn, sql, values))

    async def run_transaction(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` (synchronous, plain ``sqlite3``) in one transaction; returns once it is committed.

        For writes whose statements are known up front; :meth:`transaction` when code must await
        between statements. Writes that arrive while others are being written go to SQLite's thread
        together next, in one transaction with a savepoint each (group commit): each is still all or
        nothing and fails or succeeds on its own (``memory.grouped.in_one_transaction``), and under
        load, when many conversations write at once, they share one round trip and one commit
        instead of one each. So ``work`` must not commit or roll back itself, and must be safe to run
        again after a rollback: statements on the connection, no other side effect.
        """
        return await self._writes.run(work)

    @property
    def connection(self) -> aiosqlite.Connection:
        """The underlying connection (for reads by modules that own their own tables)."""
        return self._conn

    async def script(self, sql: str) -> None:
        """Run a schema script (``CREATE ... IF NOT EXISTS``) and commit."""
        async with self._lock:
            await self._conn.executescript(sql)
            await self._conn.commit()

    async def write(self, sql: str, args: Iterable[Any] = ()) -> Written:
        """One statement, committed (as a :meth:`run_transaction` of its own)."""
        values = tuple(args)
        return await self.run_transaction(lambda conn: _written(conn.execute(sql, values)))

    async def _rollback(self) -> None:
        if self._conn.in_transaction:
            await self._conn.rollback()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Transaction]:
        """Several statements committed together (``BEGIN IMMEDIATE``: other processes wait)."""
        async with self._lock:
            tx = Transaction(self)
            try:
                yield tx
                if tx.begun:
                    await self._conn.commit()
            except BaseException:
                await self._rollback()
                raise

    async def fetchall(self, sql: str, args: Iterable[Any] = ()) -> list[Any]:
        """Every row of a query."""
        # One call on the connection's thread: a cursor left open between two calls would keep its
        # read snapshot, and a write queued in between (by another coroutine) would then fail at
        # once with "database is locked" (SQLITE_BUSY_SNAPSHOT) whenever the other connection had
        # committed since.
        return list(await self._conn.execute_fetchall(sql, tuple(args)))

    async def fetchone(self, sql: str, args: Iterable[Any] = ()) -> Any:
        """The first row of a query, or None (use it for queries that return one row)."""
        values = tuple(args)
        return await self._on_thread(lambda conn: _first_row(conn, sql, values))

    async def migrate(self) -> None:
        """Create the tables, and fill indexes that older files did not have."""
        await self.script(_SCHEMA)
        row = await self.fetchone("PRAGMA user_version")
        columns = {r[1] for r in await self.fetchall("PRAGMA table_info(inbox)")}
        if "event_id" not in columns:
            await self.write("ALTER TABLE inbox ADD COLUMN event_id INTEGER")
        if int(row[0]) < 2:
            # Version 2 added the full-text index: index the messages written before it existed.
            async with self.transaction() as tx:
                await tx.execute(
                    "INSERT INTO message_fts (rowid, text) SELECT id, json_extract(payload, '$.text') FROM events "
                    "WHERE kind IN ('message.in', 'message.out') AND id NOT IN (SELECT rowid FROM message_fts)"
                )
        if int(row[0]) < 3:
            # Version 3 lets /forget redact a message (older files refuse every update).
            await self.script(_NO_UPDATE)
        if int(row[0]) != _SCHEMA_VERSION:
            await self.write(f"PRAGMA user_version = {_SCHEMA_VERSION}")

    # -- event log ---------------------------------------------------------------------------
    async def append_event(self, kind: str, actor: str, payload: dict[str, Any], session: str | None = None) -> int:
        """Append one event; returns its id."""
        written = await self.write(_INSERT_EVENT, _event_row(kind, actor, payload, session))
        assert written.lastrowid is not None
        return written.lastrowid

    async def append_sent(
        self, payload: dict[str, Any], session: str, reply: tuple[str, int, list[str]] | None = None
    ) -> int:
        """Log a message the bot sent (``message.out``) and, while handling an update, its place in
        the reply journal (``reply``: update key, send number, message ids), in one commit."""
        event = _event_row("message.out", "coo", payload, session)

        def work(conn: sqlite3.Connection) -> int:
            event_id = conn.execute(_INSERT_EVENT, event).lastrowid
            if reply is not None:
                key, seq, ids = reply
                conn.execute(_INSERT_REPLY, (key, seq, json.dumps(ids), event[0]))
            assert event_id is not None
            return event_id

        return await self.run_transaction(work)

    async def redact_message(self, event_id: int) -> bool:
        """Replace the text of message ``event_id`` with ``FORGOTTEN_TEXT`` in the log and drop it from the
        full-text index, in one commit; True when a message's text was redacted (False: no such message,
        or redacted already). The row stays, so the log still shows that a message came then.
        """

        def work(conn: sqlite3.Connection) -> bool:
            row = conn.execute(
                f"SELECT kind, payload FROM events WHERE id = ? AND kind IN {MESSAGE_KINDS}", (event_id,)
            ).fetchone()
            if row is None:
                return False
            payload = json.loads(row[1])
            if payload.get("redacted") is True:
                return False
            # The index is contentless: a row is removed by giving it back the text it indexed.
            (indexed,) = conn.execute("SELECT json_extract(?, '$.text')", (row[1],)).fetchone()
            if indexed is not None:
                conn.execute(
                    "INSERT INTO message_fts (message_fts, rowid, text) VALUES ('delete', ?, ?)", (event_id, indexed)
                )
            redacted = {**payload, "text": FORGOTTEN_TEXT, "redacted": True}
            conn.execute("UPDATE events SET payload = ? WHERE id = ?", (dumps(redacted), event_id))
            return True

        return await self.run_transaction(work)

    async def events_by_id(self, ids: Sequence[int]) -> list[Event]:
        """The events with these ids, oldest first (read in chunks: SQLite bounds a statement's parameters)."""
        found: list[Event] = []
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            rows = await self.fetchall(
                f"SELECT id, at, actor, session, kind, payload FROM events WHERE id IN ({', '.join('?' * len(chunk))})"
                " ORDER BY id",
                chunk,
            )
            found += [_event(r) for r in rows]
        return found

    async def events(
        self,
        kind: str | tuple[str, ...] | None = None,
        session: str | None = None,
        limit: int = 1000,
        since: datetime | None = None,
        after: int | None = None,
    ) -> list[Event]:
        """Events, oldest first, optionally filtered by kind (one or several), session, time and id."""
        sql = "SELECT id, at, actor, session, kind, payload FROM events WHERE 1=1"
        args: list[Any] = []
        if kind is not None:
            kinds = (kind,) if isinstance(kind, str) else kind
            sql += f" AND kind IN ({', '.join('?' * len(kinds))})"
            args.extend(kinds)
        if session is not None:
            sql += " AND session = ?"
            args.append(session)
        if since is not None:
            sql += " AND at >= ?"
            args.append(since.astimezone(UTC).isoformat())  # stored times are UTC ISO strings
        if after is not None:
            sql += " AND id > ?"
            args.append(after)
        sql += " ORDER BY id LIMIT ?"
        args.append(limit)
        return [_event(r) for r in await self.fetchall(sql, args)]

    async def search_messages(
        self, words: Iterable[str], limit: int, session: str | None = None, kinds: tuple[str, ...] = MESSAGE_KINDS
    ) -> list[Event]:
        """Messages matching any of ``words`` (full-text, best match first, then newest)."""
        terms = [w.replace('"', "") for w in words if w.replace('"', "").strip()]
        if not terms:
            return []
        match = " OR ".join(f'"{t}"' for t in terms)
        sql = (
            "SELECT e.id, e.at, e.actor, e.session, e.kind, e.payload "
            "FROM message_fts f JOIN events e ON e.id = f.rowid "
            f"WHERE message_fts MATCH ? AND e.kind IN ({', '.join('?' * len(kinds))})"
        )
        args: list[Any] = [match, *kinds]
        if session is not None:
            sql += " AND e.session = ?"
            args.append(session)
        sql += " ORDER BY f.rank, e.id DESC LIMIT ?"
        args.append(limit)
        return [_event(r) for r in await self.fetchall(sql, args)]

    async def recall_messages(
        self, words: Iterable[str], limit: int, kinds: tuple[str, ...] = ("message.in",), before: int | None = None
    ) -> list[Event]:
        """Earlier messages for a prompt: those sharing the query's rarest words, best match first;
        messages ``/forget`` removed from memory are left out, and so are events from ``before`` on
        (a turn recalls only what was said before the message it answers).

        Its cost stays flat as the log grows: at most ``RECALL_WINDOW`` messages are ranked (an OR of
        every word would rank every message with a common one: 20 ms at 20k events, and growing), and
        the words' document counts are reused until the log has grown (``memory.term_counts``). A rare
        word (a name, an invoice number) reaches all the way back; when even the rarest word is common,
        its newest messages are ranked.
        """
        terms = sorted({_index_form(w) for w in words if w.strip()})
        if not terms:
            return []
        kind_marks = ", ".join("?" * len(kinds))
        ceiling = before if before is not None else 2**63 - 1

        def work(conn: sqlite3.Connection) -> list[Any]:
            (log_size,) = conn.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()
            counts = self._term_counts.documents(conn, terms, log_size)
            rare: list[str] = []
            matches = 0
            for term in sorted((t for t in terms if counts[t]), key=lambda t: (counts[t], t))[:RECALL_TERMS]:
                if rare and matches + counts[term] > RECALL_WINDOW:
                    break  # a commoner word would only bring recent messages in
                rare.append(term)
                matches += counts[term]
            if not rare:
                return []
            match = " OR ".join(f'"{term}"' for term in rare)
            floor = 0
            if matches > RECALL_WINDOW:  # even the rarest word is common: rank its newest messages only
                (floor,) = conn.execute(
                    "SELECT MIN(rowid) FROM (SELECT rowid FROM message_fts WHERE message_fts MATCH ? AND rowid < ? "
                    "ORDER BY rowid DESC LIMIT ?)",
                    (match, ceiling, RECALL_WINDOW),
                ).fetchone()
            return conn.execute(
                "WITH best AS (SELECT rowid, rank FROM message_fts WHERE message_fts MATCH ? AND rowid >= ? "
                "AND rowid < ? ORDER BY rank LIMIT ?) "
                "SELECT e.id, e.at, e.actor, e.session, e.kind, e.payload FROM best JOIN events e ON e.id = best.rowid "
                f"WHERE e.kind IN ({kind_marks}) AND NOT EXISTS (SELECT 1 FROM events x WHERE "
                "x.kind = 'memory.forgotten' AND json_extract(x.payload, '$.ref') = 'msg-' || e.id) "
                "ORDER BY best.rank, e.id DESC LIMIT ?",
                (match, floor or 0, ceiling, limit * 4, *kinds, limit),
            ).fetchall()

        return [_event(row) for row in await self._on_reader(work)]

    # -- inbox: at-most-once handling of platform deliveries (I3) -----------------------------
    async def claim_update(
        self, update_key: str, session: str, payload: dict[str, Any], actor: str, logged: dict[str, Any]
    ) -> int | None:
        """Record a delivery and its ``message.in`` event before handling it, in one commit.

        Returns the event id, or None when the delivery was seen before (drop it).
        """
        return (await self.claim_updates([Claim(update_key, session, payload, actor, logged)]))[0]

    async def claim_updates(self, claims: Sequence[Claim]) -> list[int | None]:
        """:meth:`claim_update` for several deliveries, all in one commit (all stored, or none)."""
        if not claims:
            return []
        rows = [
            (c.update_key, c.session, dumps(c.payload), _event_row("message.in", c.actor, c.logged, c.session))
            for c in claims
        ]

        def work(conn: sqlite3.Connection) -> list[int | None]:
            ids: list[int | None] = []
            for update_key, session, stored, event in rows:
                claimed = conn.execute(
                    "INSERT OR IGNORE INTO inbox (update_key, session, payload, status, received_at) "
                    "VALUES (?, ?, ?, 'pending', ?)",
                    (update_key, session, stored, event[0]),
                )
                if claimed.rowcount != 1:
                    ids.append(None)
                    continue
                event_id = conn.execute(_INSERT_EVENT, event).lastrowid
                conn.execute("UPDATE inbox SET event_id = ? WHERE update_key = ?", (event_id, update_key))
                ids.append(event_id)
            return ids

        return await self.run_transaction(work)

    async def finish_update(self, update_key: str) -> None:
        """Mark a claimed delivery as fully handled (its stored copy is dropped: the log has what may stay).

        Under load, finishes go together with other writes (:meth:`run_transaction`'s group commit).
        """
        await self.write(
            "UPDATE inbox SET status = 'done', done_at = ?, payload = '{}' WHERE update_key = ?",
            (utcnow().isoformat(), update_key),
        )

    async def pending_updates(self) -> list[tuple[str, dict[str, Any], int | None]]:
        """Deliveries claimed but not finished (a crash mid-handling): key, payload, event id; oldest first."""
        rows = await self.fetchall(
            "SELECT update_key, payload, event_id FROM inbox WHERE status = 'pending' ORDER BY received_at, rowid"
        )
        return [(r[0], json.loads(r[1]), r[2]) for r in rows]

    # -- reply journal: sends already made while handling an update ----------------------------
    async def sent_reply(self, update_key: str, seq: int) -> list[str] | None:
        """The message ids of the ``seq``-th send made for ``update_key``, if it was made."""
        row = await self.fetchone("SELECT ids FROM replies WHERE update_key = ? AND seq = ?", (update_key, seq))
        return list(json.loads(row[0])) if row else None


RECALL_TERMS = 4
"""At most how many of a query's rarest words :meth:`Database.recall_messages` looks for."""
RECALL_WINDOW = 500
"""At most how many messages it ranks: the words are taken rarest first while their messages fit."""


def _index_form(word: str) -> str:
    """A word as the full-text index stores it (lower case, Latin diacritics removed)."""
    return "".join(c for c in unicodedata.normalize("NFKD", word.lower()) if not unicodedata.combining(c))


def _event(r: Any) -> Event:
    return Event(r[0], datetime.fromisoformat(r[1]), r[2], r[3], r[4], json.loads(r[5]))


async def connect_sqlite(path: Path, busy_timeout_ms: int) -> aiosqlite.Connection:
    """Open a SQLite file in WAL mode with a busy timeout."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = await aiosqlite.connect(path, timeout=busy_timeout_ms / 1000)
    await conn.execute("PRAGMA journal_mode=WAL")
    await conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
    await conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def _read_only_uri(path: Path) -> str:
    return f"{path.absolute().as_uri()}?mode=ro"  # as_uri escapes what a URI would misread ("?", "#", "%")


async def connect_reader(path: Path, busy_timeout_ms: int) -> aiosqlite.Connection:
    """Open a read-only connection to a SQLite file already in WAL mode (readers never block its writer)."""
    conn = await aiosqlite.connect(_read_only_uri(path), uri=True, timeout=busy_timeout_ms / 1000)
    await conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
    return conn


@asynccontextmanager
async def open_database(data_dir: Path, busy_timeout_ms: int = 5000) -> AsyncIterator[Database]:
    """Open (creating if needed) ``<data_dir>/coo.sqlite`` and close it on exit."""
    path = data_dir / "coo.sqlite"
    conn = await connect_sqlite(path, busy_timeout_ms)
    try:
        reader = await connect_reader(path, busy_timeout_ms)  # the file exists and is in WAL mode now
        try:
            db = Database(conn, reader, await asyncio.to_thread(load_install, data_dir))
            await db.migrate()
            yield db
        finally:
            await reader.close()
    finally:
        await conn.close()


def _first_row(conn: sqlite3.Connection, sql: str, values: tuple[Any, ...]) -> Any:
    """The first row, with the statement closed before returning (no read snapshot left open)."""
    cursor = conn.execute(sql, values)
    try:
        return cursor.fetchone()
    finally:
        cursor.close()
