"""The operator's profile (identity and intent): always in the prompt, compactly."""

from __future__ import annotations

from dataclasses import dataclass

from memory.db import Database, utcnow

PROFILE_SCHEMA = """
CREATE TABLE IF NOT EXISTS profile (
    field TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    event_id INTEGER NOT NULL,
    updated_at TEXT NOT NULL
);
"""

FIELDS: dict[str, str] = {
    "business": "business name",
    "sells": "what the business sells",
    "voice": "brand voice",
    "risk": "risk tolerance (cautious, balanced, relaxed)",
    "timezone": "time zone",
    "goals": "active goals",
    "instructions": "standing instructions",
}
RISK_LEVELS = ("cautious", "balanced", "relaxed")
MAX_VALUE = 1000


class ProfileError(ValueError):
    """Bad profile input."""


@dataclass(frozen=True)
class Profile:
    """The profile's fields that are set."""

    values: dict[str, str]

    def render(self) -> str:
        """Compact lines for the prompt; empty when nothing is set."""
        return "\n".join(f"- {FIELDS[k]}: {v}" for k, v in self.values.items() if k in FIELDS)


class ProfileStore:
    """Reads and sets profile fields; every change is an event."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._conn = db.connection
        self._cache: Profile | None = None

    async def setup(self) -> None:
        """Create the table."""
        await self._conn.executescript(PROFILE_SCHEMA)
        await self._conn.commit()

    async def get(self) -> Profile:
        """The current profile (cached until the next change)."""
        if self._cache is None:
            async with self._conn.execute("SELECT field, value FROM profile") as cur:
                rows = {r[0]: r[1] for r in await cur.fetchall()}
            self._cache = Profile({k: rows[k] for k in FIELDS if k in rows})
        return self._cache

    async def set(self, field: str, value: str, actor: str) -> Profile:
        """Set one field (empty value clears it)."""
        field = field.strip().lower()
        if field not in FIELDS:
            raise ProfileError(f"unknown profile field {field!r}; one of {', '.join(FIELDS)}")
        value = " ".join(value.split())
        if len(value) > MAX_VALUE:
            raise ProfileError(f"{field} is longer than {MAX_VALUE} characters")
        if field == "risk" and value and value.lower() not in RISK_LEVELS:
            raise ProfileError(f"risk must be one of {', '.join(RISK_LEVELS)}")
        event_id = await self._db.append_event("profile.set", actor, {"field": field, "value": value})
        if value:
            await self._conn.execute(
                "INSERT OR REPLACE INTO profile (field, value, event_id, updated_at) VALUES (?, ?, ?, ?)",
                (field, value.lower() if field == "risk" else value, event_id, utcnow().isoformat()),
            )
        else:
            await self._conn.execute("DELETE FROM profile WHERE field = ?", (field,))
        await self._conn.commit()
        self._cache = None
        return await self.get()
