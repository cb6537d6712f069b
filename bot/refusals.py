"""What an update the access check did not let in gets: an audit row, and at most a short answer.

A stranger is told once an hour that the bot is not theirs; a pairing attempt hears how it went (as often as
the guard allows); an update whose check failed gets the generic error. Chatter nobody addressed to the bot
is audited only.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from bot.access import AccessGuard, Verdict
from bot.messages import InboundMessage
from bot.messenger import Messenger
from bot.reply import Reply
from memory.db import Database
from prompts.messages import GENERIC_ERROR, PAIR_CLOSED, PAIR_FAILED, PAIR_LOCKED, PAIRED, REFUSAL

log = logging.getLogger(__name__)

REFUSAL_INTERVAL_S = 3600.0
_ADDRESSED = ("message", "command", "callback", "edit")


class Refusals:
    """Audits and answers refused updates (I6: nothing of them is stored or handled)."""

    def __init__(
        self, db: Database, guard: AccessGuard, messenger: Messenger, clock: Callable[[], float] = time.monotonic
    ) -> None:
        """``clock``: monotonic seconds, for the hour between two refusals to one stranger."""
        self._db = db
        self._guard = guard
        self._messenger = messenger
        self._clock = clock
        self._refused_at: dict[str, float] = {}

    async def audit(self, inbound: InboundMessage, verdict: Verdict) -> None:
        """Record the refusal in the event log (``access.<verdict>``)."""
        audit = {"kind": inbound.kind, "verdict": verdict.value, "chat": inbound.chat_id}
        await self._db.append_event("access." + verdict.value, inbound.sender, audit, session=inbound.session_key)

    async def refuse(self, inbound: InboundMessage, verdict: Verdict) -> None:
        """Audit (a failed check was audited when its batch was accepted) and answer, quietly, if anyone."""
        if verdict is not Verdict.ERROR:
            await self.audit(inbound, verdict)
        if not self._messenger.has(inbound.channel):
            return
        reply = self.answer(inbound, verdict)
        if reply is not None:
            await self._messenger.deliver(reply)

    def answer(self, inbound: InboundMessage, verdict: Verdict) -> Reply | None:
        """What a refused update is told, if anything (it counts towards the stranger's hourly answer)."""
        if verdict is Verdict.ERROR:  # logged where the check failed
            return Reply.to(inbound, GENERIC_ERROR, quietly=True) if inbound.kind in _ADDRESSED else None
        pairing = {
            Verdict.PAIRED: PAIRED,
            Verdict.PAIR_FAILED: PAIR_FAILED.format(left=self._guard.tries_left(inbound.sender)),
            Verdict.PAIR_CLOSED: PAIR_CLOSED,
            Verdict.PAIR_LOCKED: PAIR_LOCKED,
        }.get(verdict)
        if pairing is not None:
            log.info("pairing attempt by %s: %s", inbound.sender, verdict.value)
            return Reply.to(inbound, pairing, quietly=True) if self._guard.answers(inbound.sender, verdict) else None
        log.warning("refused %s from %s", inbound.kind, inbound.sender)
        now = self._clock()
        last = self._refused_at.get(inbound.sender)
        # Only someone who addressed us gets a reply; e.g. channel chatter ("other") is audited only.
        if inbound.kind in _ADDRESSED and (last is None or now - last > REFUSAL_INTERVAL_S):
            self._refused_at[inbound.sender] = now
            return Reply.to(inbound, REFUSAL, quietly=True)
        return None
