"""One-time login links and sessions of the web console (I6).

A link token and a session token are shown once (in a chat, on the terminal, in a cookie) and stored
only as SHA-256 hashes. Redeeming a link is one compare-and-set that marks it used, so a replayed link
never opens a second session.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from memory.db import Database, utcnow

WEB_SCHEMA = """
CREATE TABLE IF NOT EXISTS web_links (
    token_hash TEXT PRIMARY KEY,
    operator TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at TEXT
);
CREATE TABLE IF NOT EXISTS web_sessions (
    token_hash TEXT PRIMARY KEY,
    operator TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    revoked_at TEXT
);
"""


def token_hash(token: str) -> str:
    """How a link or session token is stored."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class WebSession:
    """A signed-in operator."""

    operator: str
    created_at: datetime
    expires_at: datetime
    id: str = ""
    """The first characters of the token's hash: names the session in lists and logs, opens nothing."""


class WebAuthStore:
    """Login links and sessions."""

    def __init__(self, db: Database, clock: Callable[[], datetime] = utcnow) -> None:
        """``clock``: now, as an aware time (links and sessions expire by it)."""
        self._db = db
        self._clock = clock

    async def setup(self) -> None:
        """Create the tables."""
        await self._db.script(WEB_SCHEMA)

    async def create_link(self, operator: str, ttl: timedelta, via: str) -> str:
        """A fresh one-time link token for ``operator``, valid for ``ttl``."""
        token = secrets.token_urlsafe(32)
        now = self._clock()
        async with self._db.transaction() as tx:
            await tx.execute(
                "INSERT INTO web_links (token_hash, operator, created_at, expires_at) VALUES (?, ?, ?, ?)",
                (token_hash(token), operator, now.isoformat(), (now + ttl).isoformat()),
            )
            await tx.append_event("web.link", operator, {"via": via, "expires_at": (now + ttl).isoformat()})
        return token

    async def link_valid(self, token: str) -> bool:
        """True while the link is unused and unexpired (nothing is changed)."""
        row = await self._db.fetchone(
            "SELECT 1 FROM web_links WHERE token_hash = ? AND used_at IS NULL AND expires_at > ?",
            (token_hash(token), self._clock().isoformat()),
        )
        return row is not None

    async def redeem(self, token: str, session_ttl: timedelta) -> tuple[str, str] | None:
        """Use a valid link once: (operator, new session token), or None (unknown, used or expired)."""
        now = self._clock()
        session = secrets.token_urlsafe(32)
        async with self._db.transaction() as tx:
            written = await tx.execute(
                "UPDATE web_links SET used_at = ? WHERE token_hash = ? AND used_at IS NULL AND expires_at > ?",
                (now.isoformat(), token_hash(token), now.isoformat()),
            )
            if written.rowcount != 1:
                await tx.append_event("web.login_refused", "web", {"reason": "link unknown, used or expired"})
                return None
            row = await tx.fetchone("SELECT operator FROM web_links WHERE token_hash = ?", (token_hash(token),))
            operator = str(row[0])
            await tx.execute(
                "INSERT INTO web_sessions (token_hash, operator, created_at, expires_at) VALUES (?, ?, ?, ?)",
                (token_hash(session), operator, now.isoformat(), (now + session_ttl).isoformat()),
            )
            await tx.append_event("web.login", operator, {"session": token_hash(session)[:12]})
        return operator, session

    async def session(self, token: str) -> WebSession | None:
        """The live session of that cookie value, or None (unknown, revoked or expired)."""
        row = await self._db.fetchone(
            "SELECT operator, created_at, expires_at FROM web_sessions "
            "WHERE token_hash = ? AND revoked_at IS NULL AND expires_at > ?",
            (token_hash(token), self._clock().isoformat()),
        )
        if row is None:
            return None
        return WebSession(str(row[0]), datetime.fromisoformat(row[1]), datetime.fromisoformat(row[2]))

    async def record(self, operator: str, kind: str, payload: dict[str, object]) -> None:
        """An audit event of something done in the console."""
        await self._db.append_event(kind, operator, payload)

    async def refused_post(self, operator: str, path: str) -> None:
        """Record a POST refused for a missing or wrong CSRF token."""
        await self._db.append_event("web.forged", operator, {"path": path[:200]})

    async def live(self) -> list[WebSession]:
        """Every session not revoked or expired, oldest first."""
        rows = await self._db.fetchall(
            "SELECT operator, created_at, expires_at, substr(token_hash, 1, 12) FROM web_sessions "
            "WHERE revoked_at IS NULL AND expires_at > ? ORDER BY created_at",
            (self._clock().isoformat(),),
        )
        return [WebSession(str(r[0]), datetime.fromisoformat(r[1]), datetime.fromisoformat(r[2]), r[3]) for r in rows]

    async def revoke_id(self, session_id: str, actor: str) -> int:
        """End every live session whose id (see :meth:`live`) starts with ``session_id`` (at least 6 characters)."""
        if len(session_id) < 6 or not all(c in "0123456789abcdef" for c in session_id):
            return 0
        async with self._db.transaction() as tx:
            written = await tx.execute(
                "UPDATE web_sessions SET revoked_at = ? WHERE substr(token_hash, 1, ?) = ? AND revoked_at IS NULL",
                (self._clock().isoformat(), len(session_id), session_id),
            )
            if written.rowcount:
                await tx.append_event("web.logout", actor, {"session": session_id})
        return written.rowcount

    async def revoke(self, token: str, actor: str) -> bool:
        """End a session now (sign out); True when it was live."""
        async with self._db.transaction() as tx:
            written = await tx.execute(
                "UPDATE web_sessions SET revoked_at = ? WHERE token_hash = ? AND revoked_at IS NULL",
                (self._clock().isoformat(), token_hash(token)),
            )
            if written.rowcount:
                await tx.append_event("web.logout", actor, {"session": token_hash(token)[:12]})
        return written.rowcount == 1
