"""What an approval, a card and an outbox row are as stored, and how they are read (``memory.rows``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from memory.rows import RowReader

ApprovalState = Literal["pending", "approved", "rejected", "expired", "superseded"]
OutboxState = Literal["queued", "running", "sent", "failed", "unknown"]


@dataclass(frozen=True)
class CardRef:
    """Where a card was shown, so it can be edited in place (``message_id`` is empty while it is
    being sent)."""

    channel: str
    chat_id: str
    thread_id: str | None
    message_id: str


@dataclass(frozen=True)
class ApprovalRow:
    """One approval as stored."""

    id: str
    root_id: str
    thread: str
    origin: str
    kind: str
    action: dict[str, Any]
    digest: str
    approvers: tuple[str, ...]
    nonce: str
    created_at: datetime
    expires_at: datetime
    state: ApprovalState
    decided_by: str | None
    decided_at: datetime | None
    cards: tuple[CardRef, ...]
    context: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OutboxRow:
    """One approved action waiting for, or done with, execution."""

    approval_id: str
    idempotency_key: str
    kind: str
    action: dict[str, Any]
    digest: str
    state: OutboxState
    attempts: int
    next_attempt_at: datetime
    detail: str
    external_id: str | None
    updated_at: datetime
    progress: dict[str, Any]
    owner: str | None = None
    """The process that claimed it last (``memory.liveness``): a row left running by a live one is its work."""
    restored: bool = False
    """Brought by ``coo import``: history, never evidence that its target is known (I8)."""


read_approval = RowReader(ApprovalRow)
read_outbox = RowReader(OutboxRow)
SELECT_APPROVALS = f"SELECT {read_approval.columns} FROM approvals"
SELECT_OUTBOX = f"SELECT {read_outbox.columns} FROM outbox"
