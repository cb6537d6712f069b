"""Operators who paired, and the one-time pairing codes that let a new one in (I6).

Codes are stored as SHA-256 hashes with an expiry; redeeming one is a single transaction that marks
the code used and adds the operator, so two people can never both redeem it.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from memory.db import Database, utcnow

OPERATORS_SCHEMA = """
CREATE TABLE IF NOT EXISTS operators (
    identity TEXT PRIMARY KEY,
    added_at TEXT NOT NULL,
    via TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS pairing_codes (
    code_hash TEXT PRIMARY KEY,
    opened_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    opened_by TEXT NOT NULL,
    used_by TEXT,
    used_at TEXT
);
"""
CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 8


@dataclass(frozen=True)
class PairedOperator:
    """An operator added by pairing (operators from COO_OPERATORS are configuration, not rows)."""

    identity: str
    added_at: datetime
    via: str


def _hash(code: str) -> str:
    # Whatever a sender typed hashes (a lone surrogate too): a code that cannot be one is a wrong code.
    return hashlib.sha256(code.strip().upper().encode("utf-8", "surrogatepass")).hexdigest()


class OperatorStore:
    """Paired operators and pairing codes."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def setup(self) -> None:
        """Create the tables."""
        await self._db.script(OPERATORS_SCHEMA)

    async def paired(self) -> list[PairedOperator]:
        """Every paired operator, oldest first."""
        rows = await self._db.fetchall("SELECT identity, added_at, via FROM operators ORDER BY added_at")
        return [PairedOperator(r[0], datetime.fromisoformat(r[1]), r[2]) for r in rows]

    async def is_paired(self, identity: str) -> bool:
        """True when ``identity`` paired and was not removed since."""
        return await self._db.fetchone("SELECT 1 FROM operators WHERE identity = ?", (identity,)) is not None

    async def remove(self, identity: str, actor: str) -> bool:
        """Remove a paired operator; True when there was one."""
        async with self._db.transaction() as tx:
            written = await tx.execute("DELETE FROM operators WHERE identity = ?", (identity,))
            if written.rowcount:
                await tx.append_event("operator.removed", actor, {"identity": identity})
        return written.rowcount == 1

    async def open_pairing(self, opened_by: str, ttl: timedelta, revoke_others: bool = False) -> str:
        """A fresh one-time code valid for ``ttl``; with ``revoke_others`` every other open code ends now."""
        code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
        now = utcnow()
        async with self._db.transaction() as tx:
            if revoke_others:
                await tx.execute(
                    "UPDATE pairing_codes SET expires_at = ? WHERE used_by IS NULL AND expires_at > ?",
                    (now.isoformat(), now.isoformat()),
                )
            await tx.execute(
                "INSERT INTO pairing_codes (code_hash, opened_at, expires_at, opened_by) VALUES (?, ?, ?, ?)",
                (_hash(code), now.isoformat(), (now + ttl).isoformat(), opened_by),
            )
            minutes = int(ttl.total_seconds() // 60)
            await tx.append_event(
                "pairing.opened", opened_by, {"expires_at": (now + ttl).isoformat(), "minutes": minutes}
            )
        return code

    async def pairing_open(self) -> bool:
        """True while an unused code is still valid."""
        row = await self._db.fetchone(
            "SELECT 1 FROM pairing_codes WHERE used_by IS NULL AND expires_at > ?", (utcnow().isoformat(),)
        )
        return row is not None

    async def redeem(self, code: str, identity: str) -> str | None:
        """Use a valid code to add ``identity``; returns who opened the code, or None if no valid code matches."""
        now = utcnow().isoformat()
        async with self._db.transaction() as tx:
            row = await tx.fetchone(
                "SELECT opened_by FROM pairing_codes WHERE code_hash = ? AND used_by IS NULL AND expires_at > ?",
                (_hash(code), now),
            )
            if row is None:
                return None
            await tx.execute(
                "UPDATE pairing_codes SET used_by = ?, used_at = ? WHERE code_hash = ?", (identity, now, _hash(code))
            )
            await tx.execute(
                "INSERT OR IGNORE INTO operators (identity, added_at, via) VALUES (?, ?, 'pairing')", (identity, now)
            )
            await tx.append_event("operator.paired", identity, {"opened_by": row[0]})
        return str(row[0])
