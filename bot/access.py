"""Access guard (I6): the allow-list, paired operators, and pairing with one-time expiring codes.

Pairing is open only while no operator exists (a code is opened at start) or after an operator
opened it again with ``coo pair``. Wrong codes are counted per sender, so a stranger can lock out
only themselves, never the rightful operator. A stranger's pairing refusals (a wrong code, locked out,
pairing closed) are answered at most once per window: fifty guesses get one reply, not fifty.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import Enum

from bot.messages import InboundMessage
from memory.operators import OperatorStore

CONSOLE_OPERATOR = "console:local"
MAX_PAIR_FAILURES = 5
_FAILURE_MEMORY_S = 3600.0
_TRACKED_STRANGERS = 1024
"""Above this many strangers remembered, those whose window ended are forgotten."""


class Verdict(Enum):
    """What the guard decided about one update."""

    ALLOW = "allow"
    DENY = "deny"
    PAIRED = "paired"
    PAIR_FAILED = "pair_failed"
    PAIR_CLOSED = "pair_closed"
    PAIR_LOCKED = "pair_locked"
    ERROR = "error"
    """The check itself failed: refused (fail closed), never let through."""


class AccessGuard:
    """Decides, before anything else happens, whether an update may reach the coordinator.

    Operators are the allow-list (``COO_OPERATORS``), the operators who paired (read from SQLite
    on every update, so ``coo operators remove`` takes effect at once) and the local console:
    whoever has the terminal has the machine.
    """

    def __init__(
        self,
        allow_list: frozenset[str],
        store: OperatorStore,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._allow_list = allow_list
        self._store = store
        self._clock = clock
        self._paired: set[str] = set()
        self._failures: dict[str, tuple[int, float]] = {}
        self._answered: dict[str, float] = {}

    async def load(self) -> None:
        """Read the paired operators (for the approver lists of new cards)."""
        self._paired = {op.identity for op in await self._store.paired()}

    @property
    def has_operators(self) -> bool:
        """True when anyone besides the console may use the bot."""
        return bool(self._allow_list or self._paired)

    def operator_ids(self) -> frozenset[str]:
        """Every identity that may approve: the allow-list, paired operators and the console."""
        return frozenset({*self._allow_list, *self._paired, CONSOLE_OPERATOR})

    def is_operator(self, identity: str) -> bool:
        """True for the console and for allowed or paired identities (as last seen)."""
        return identity == CONSOLE_OPERATOR or identity in self._allow_list or identity in self._paired

    async def check(self, inbound: InboundMessage) -> Verdict:
        """The one access check. Looks only at the sender and, for strangers, a ``/pair CODE`` message."""
        sender = inbound.sender
        if await self.allowed(sender):
            return Verdict.ALLOW
        if inbound.kind in ("message", "command"):
            words = inbound.text.strip().split()
            if len(words) == 2 and words[0].split("@")[0].lower() == "/pair":
                return await self._pair(sender, words[1])
        return Verdict.DENY

    async def allowed(self, identity: str) -> bool:
        """True for the console, the allow-list and paired operators not removed since."""
        if identity == CONSOLE_OPERATOR or identity in self._allow_list:
            return True
        if await self._store.is_paired(identity):
            self._paired.add(identity)
            return True
        self._paired.discard(identity)  # removed meanwhile (coo operators remove)
        return False

    async def _pair(self, identity: str, attempt: str) -> Verdict:
        now = self._clock()
        count, since = self._failures.get(identity, (0, now))
        if now - since > _FAILURE_MEMORY_S:
            count, since = 0, now
        if count >= MAX_PAIR_FAILURES:
            return Verdict.PAIR_LOCKED
        # The try is counted before the first await: tries sent at once (webhook or Socket Mode
        # requests) each see the ones before them, so together they cannot pass the limit either.
        # One that fails with an error stays counted (fail closed).
        self._failures[identity] = (count + 1, since)
        if not await self._store.pairing_open():
            self._give_back(identity)  # nothing to guess while pairing is closed
            return Verdict.PAIR_CLOSED
        if await self._store.redeem(attempt, identity) is None:
            return Verdict.PAIR_FAILED
        self._failures.pop(identity, None)
        self._paired.add(identity)
        return Verdict.PAIRED

    def _give_back(self, identity: str) -> None:
        """Uncount one try of ``identity`` (others may have been counted meanwhile: only this one goes)."""
        count, since = self._failures.get(identity, (0, 0.0))
        if count <= 1:
            self._failures.pop(identity, None)
        else:
            self._failures[identity] = (count - 1, since)

    def answers(self, identity: str, verdict: Verdict) -> bool:
        """Whether a pairing verdict gets a reply: a pairing always; a refusal at most once per sender
        per window (the lockout's), so a stranger's guesses are not answered guess by guess."""
        if verdict is Verdict.PAIRED:
            self._answered.pop(identity, None)
            return True
        now = self._clock()
        last = self._answered.get(identity)
        if last is not None and now - last <= _FAILURE_MEMORY_S:
            return False
        if len(self._answered) >= _TRACKED_STRANGERS:
            self._answered = {who: at for who, at in self._answered.items() if now - at <= _FAILURE_MEMORY_S}
        self._answered[identity] = now
        return True

    def tries_left(self, identity: str) -> int:
        """Wrong codes ``identity`` may still send before it is locked out."""
        return max(0, MAX_PAIR_FAILURES - self._failures.get(identity, (0, 0.0))[0])
