"""Questions an operator confirms with a tap (loosening the policy, trusting a tool): asked in one chat,
answered once, before they expire. Only a press in that chat that carries the question's nonce decides one;
the operator check has run before any press reaches here, and forged data changes nothing."""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bot.messages import Button, InboundMessage
from memory.control import ControlStore
from memory.db import utcnow


@dataclass(frozen=True)
class Answer:
    """A decided question: confirmed or not, whether it was still fresh, and what was asked."""

    confirmed: bool
    fresh: bool
    asked: dict[str, Any]


class Confirmations:
    """Pending questions in the control store (``<key_prefix><id>``), answered by the buttons
    ``<prefix>:<ok|no>:<id>:<nonce>``."""

    def __init__(self, control: ControlStore, prefix: str, key_prefix: str, ttl: timedelta) -> None:
        self._control = control
        self._prefix = prefix
        self._key_prefix = key_prefix
        self.ttl = ttl

    @property
    def minutes(self) -> int:
        """How long a question can be answered, in whole minutes."""
        return int(self.ttl.total_seconds() // 60)

    async def ask(self, inbound: InboundMessage, asked: dict[str, Any]) -> tuple[Button, Button]:
        """Store a question asked in ``inbound``'s chat; its Confirm and Cancel buttons."""
        pending_id, nonce = secrets.token_hex(4), secrets.token_hex(4)
        await self._control.put(
            self._key_prefix + pending_id,
            {
                "asked": asked,
                "nonce": nonce,
                "chat": [inbound.channel, inbound.chat_id],
                "expires_at": (utcnow() + self.ttl).isoformat(),
            },
        )
        return (
            Button("Confirm", f"{self._prefix}:ok:{pending_id}:{nonce}"),
            Button("Cancel", f"{self._prefix}:no:{pending_id}:{nonce}"),
        )

    async def answer(self, inbound: InboundMessage) -> Answer | None:
        """The press's answer, once; None for forged, foreign or already decided presses."""
        parts = (inbound.callback_data or "").split(":")
        if len(parts) != 4 or parts[1] not in ("ok", "no"):
            return None
        key = self._key_prefix + parts[2]
        pending = await self._control.get(key)
        if not isinstance(pending, dict) or not hmac.compare_digest(str(pending.get("nonce", "")), parts[3]):
            return None
        fresh = datetime.fromisoformat(pending["expires_at"]) > utcnow()
        here = pending.get("chat") == [inbound.channel, inbound.chat_id]
        # Deleting is the decision: of two presses only one deletes the row.
        if not here or not await self._control.delete(key):
            return None
        return Answer(parts[1] == "ok", fresh, dict(pending.get("asked") or {}))
