"""Settings of follow-ups and of due checks (``COO_FOLLOWUPS__*``)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class FollowupsSettings(BaseModel):
    """How often due items (reminders, follow-ups) are checked, and how long a sent email waits for a reply
    before it gets a follow-up."""

    check_s: float = Field(default=900.0, ge=1, le=24 * 3600)
    reply_wait_days: int = Field(default=5, ge=0, le=60)
    """Business days (Monday to Friday) after an email is sent with no reply; 0 turns automatic follow-ups off."""
