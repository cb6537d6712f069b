"""The operator's profile (identity and intent): always in the prompt, compactly.

The profile holds no policy: risk tolerance and every other approval setting live with the policy
and change only by an operator's command (I1). Standing instructions, too, are set only by the
operator; every other field may also be written by the model and is shown to it as data.
"""

from __future__ import annotations

from dataclasses import dataclass

from memory.db import Database, utcnow
from memory.errors import InternalError

PROFILE_SCHEMA = """
CREATE TABLE IF NOT EXISTS profile (
    field TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    event_id INTEGER NOT NULL,
    updated_at TEXT NOT NULL
);
-- A restored backup's profile, not in effect until the operator confirms it (/profile restore).
CREATE TABLE IF NOT EXISTS profile_restored (
    field TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    event_id INTEGER NOT NULL
);
"""

FIELDS: dict[str, str] = {
    "name": "operator's name",
    "business": "business name",
    "sells": "what the business sells",
    "voice": "brand voice",
    "timezone": "time zone",
    "goals": "active goals",
    "instructions": "standing instructions",
    "reminders": "payment reminder wording",
}
# What the model may write with update_profile: facts about the business, never instructions to itself.
MODEL_WRITABLE = ("name", "business", "sells", "voice", "timezone", "goals")
# Reminder wording goes into emails to customers: only the operator writes it (the card still shows it).
OPERATOR_ONLY = ("instructions", "reminders")
MAX_VALUE = 1000
MODEL_ACTOR = "coo"


class ProfileError(InternalError, ValueError):
    """Bad profile input."""


@dataclass(frozen=True)
class Profile:
    """The profile's fields that are set."""

    values: dict[str, str]
    model_written: frozenset[str] = frozenset()

    def render(self) -> str:
        """Every set field as one line each (for /profile); empty when nothing is set."""
        return "\n".join(f"- {FIELDS[k]}: {v}" for k, v in self.values.items() if k in FIELDS)

    def render_facts(self) -> str:
        """The fields the model may also have written, for the prompt's data block."""
        shown = [k for k in self.values if k in MODEL_WRITABLE or k in self.model_written]
        return "\n".join(f"- {FIELDS[k]}: {self.values[k]}" for k in shown)

    @property
    def instructions(self) -> str:
        """The operator's standing instructions; ones the model wrote (older versions let it) are data."""
        return "" if "instructions" in self.model_written else self.values.get("instructions", "")

    @property
    def reminder_wording(self) -> str:
        """The operator's opening for payment reminders; one the model wrote (it cannot now) is ignored."""
        return "" if "reminders" in self.model_written else self.values.get("reminders", "")


class ProfileStore:
    """Reads and sets profile fields; every change is an event, in the same commit."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._cache: Profile | None = None

    async def setup(self) -> None:
        """Create the table."""
        await self._db.script(PROFILE_SCHEMA)

    async def get(self) -> Profile:
        """The current profile (cached until the next change)."""
        if self._cache is None:
            rows = await self._db.fetchall(
                "SELECT p.field, p.value, e.actor FROM profile p LEFT JOIN events e ON e.id = p.event_id"
            )
            values = {r[0]: r[1] for r in rows}
            by_model = frozenset(r[0] for r in rows if r[2] == MODEL_ACTOR)
            self._cache = Profile({k: values[k] for k in FIELDS if k in values}, by_model)
        return self._cache

    async def set(self, field: str, value: str, actor: str) -> Profile:
        """Set one field (empty value clears it). The model (actor "coo") may write only MODEL_WRITABLE fields."""
        field = field.strip().lower()
        if field not in FIELDS:
            raise ProfileError(f"unknown profile field {field!r}; one of {', '.join(FIELDS)}")
        if actor == MODEL_ACTOR and field not in MODEL_WRITABLE:
            raise ProfileError(f"{field} can only be set by the operator (/profile set {field} …)")
        value = " ".join(value.split())
        if len(value) > MAX_VALUE:
            raise ProfileError(f"{field} is longer than {MAX_VALUE} characters")
        async with self._db.transaction() as tx:
            event_id = await tx.append_event("profile.set", actor, {"field": field, "value": value})
            if value:
                await tx.execute(
                    "INSERT OR REPLACE INTO profile (field, value, event_id, updated_at) VALUES (?, ?, ?, ?)",
                    (field, value, event_id, utcnow().isoformat()),
                )
            else:
                await tx.execute("DELETE FROM profile WHERE field = ?", (field,))
        self._cache = None
        return await self.get()

    async def hold(self, fields: dict[str, tuple[str, int]]) -> None:
        """Keep a restored backup's fields (each value with the event that set it) until the operator confirms
        them (:meth:`confirm_restored`) or drops them: not in effect meanwhile."""
        await self._db.run_transaction(
            lambda conn: conn.executemany(
                "INSERT INTO profile_restored (field, value, event_id) VALUES (?, ?, ?)",
                [(field, value, event_id) for field, (value, event_id) in fields.items()],
            )
        )

    async def restored(self) -> dict[str, str]:
        """A restored backup's profile fields waiting for the operator's confirmation (empty when none)."""
        rows = await self._db.fetchall("SELECT field, value FROM profile_restored ORDER BY event_id")
        return {r[0]: r[1] for r in rows if r[0] in FIELDS}

    async def confirm_restored(self, actor: str) -> Profile:
        """Put the restored fields in effect, each as set by ``actor`` (the operator who confirmed)."""
        held = await self.restored()
        for field in FIELDS:
            if field in held:
                await self.set(field, held[field], actor)
        await self._drop(actor, applied=True)
        return await self.get()

    async def drop_restored(self, actor: str) -> None:
        """Discard the restored fields; the profile stays as it is."""
        await self._drop(actor, applied=False)

    async def _drop(self, actor: str, applied: bool) -> None:
        async with self._db.transaction() as tx:
            await tx.append_event("profile.restore", actor, {"applied": applied})
            await tx.execute("DELETE FROM profile_restored")
