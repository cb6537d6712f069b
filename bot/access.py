"""Access guard (I6): the allow-list, or pairing with a one-time expiring code."""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from bot.messages import InboundMessage
from memory.db import Database

CONSOLE_OPERATOR = "console:local"
_MAX_PAIR_FAILURES = 5


class Verdict(Enum):
    """What the guard decided about one update."""

    ALLOW = "allow"
    DENY = "deny"
    PAIRED = "paired"
    PAIR_FAILED = "pair_failed"


@dataclass
class PairingCode:
    """A one-time code, valid until ``expires_at`` (monotonic seconds)."""

    code: str
    expires_at: float
    failures: int = 0
    used: bool = False


class AccessGuard:
    """Decides, before anything else happens, whether an update may reach the coordinator.

    With an allow-list, only those identities pass. With an empty allow-list the guard is in
    pairing mode: ``/pair CODE`` with the code printed at start makes its sender an operator
    (stored in SQLite). The local console is always the operator: whoever has the terminal has
    the machine.
    """

    def __init__(
        self,
        allow_list: frozenset[str],
        db: Database,
        code_ttl_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._allow_list = allow_list
        self._db = db
        self._clock = clock
        self._ttl = code_ttl_s
        self._operators: set[str] = set(allow_list)
        self._pairing: PairingCode | None = None

    @property
    def pairing_mode(self) -> bool:
        """True when no allow-list is configured."""
        return not self._allow_list

    async def load(self) -> str | None:
        """Load paired operators; in pairing mode create and return a fresh one-time code."""
        if not self.pairing_mode:
            return None
        self._operators |= await self._db.operators()
        code = "".join(secrets.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(8))
        self._pairing = PairingCode(code, self._clock() + self._ttl)
        return code

    def operator_ids(self) -> frozenset[str]:
        """Every identity that may approve: the allow-list, paired operators and the console."""
        return frozenset({*self._operators, CONSOLE_OPERATOR})

    def is_operator(self, identity: str) -> bool:
        """True for the console and for allowed or paired identities."""
        return identity == CONSOLE_OPERATOR or identity in self._operators

    async def check(self, inbound: InboundMessage) -> Verdict:
        """The one access check. Looks only at the sender and, for strangers, a /pair command."""
        if self.is_operator(inbound.sender):
            return Verdict.ALLOW
        if self.pairing_mode and inbound.kind in ("message", "command"):
            words = inbound.text.strip().split()
            if len(words) == 2 and words[0].split("@")[0].lower() == "/pair":
                return await self._pair(inbound.sender, words[1])
        return Verdict.DENY

    async def _pair(self, identity: str, attempt: str) -> Verdict:
        code = self._pairing
        if code is None or code.used or self._clock() > code.expires_at or code.failures >= _MAX_PAIR_FAILURES:
            return Verdict.PAIR_FAILED
        if not hmac.compare_digest(code.code.encode(), attempt.strip().upper().encode()):
            code.failures += 1
            return Verdict.PAIR_FAILED
        code.used = True
        await self._db.add_operator(identity, via="pairing")
        self._operators.add(identity)
        return Verdict.PAIRED
