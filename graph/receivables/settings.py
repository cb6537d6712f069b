"""Settings of the receivables loop (``COO_RECEIVABLES__*``) and of due checks (``COO_FOLLOWUPS__*``)."""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator


class ReceivablesSettings(BaseModel):
    """When open invoices get reminder cards: day offsets from the due date (negative: before it)."""

    cadence: list[int] = Field(default_factory=lambda: [-3, 0, 3, 7, 14], max_length=20)

    @field_validator("cadence")
    @classmethod
    def _cadence(cls, value: list[int]) -> list[int]:
        if any(not -60 <= day <= 365 for day in value):
            raise ValueError("each offset must be a whole number of days from -60 to 365, e.g. [-3, 0, 3, 7, 14]")
        return sorted(set(value))


class FollowupsSettings(BaseModel):
    """How often due items (reminders, follow-ups) are checked."""

    check_s: float = Field(default=900.0, ge=1, le=24 * 3600)
    reply_wait_days: int = Field(default=5, ge=1, le=60)
    """Business days an email's answer is awaited (a goal's task waits this long for a reply)."""
