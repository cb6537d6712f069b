"""/policy: the approval policy, changed only by an operator's command (I1).

Tightening applies at once; loosening waits for a confirmation card pressed by an operator in the
chat where it was asked for, before it expires. No tool or model output reaches this module.
"""

from __future__ import annotations

from datetime import timedelta

from bot.commands.router import CommandRouter
from bot.confirmations import Confirmations
from bot.messages import InboundMessage, OutboundMessage
from bot.messenger import Messenger
from graph.approvals.policy import POLICY_RISK_KEY, TOLERANCES, Tolerance, current_tolerance, loosens
from graph.buttons import Prefix
from graph.errors import UserFacingError
from graph.settings import ApprovalSettings
from memory.control import ControlStore
from memory.db import Database
from prompts.messages import (
    POLICY_CONFIRM,
    POLICY_KEPT,
    POLICY_LOOSENED,
    POLICY_SHOW,
    POLICY_STALE,
    POLICY_TIGHTENED,
    POLICY_UNCHANGED,
    POLICY_USAGE,
)

_PENDING = "policy.pending:"


class PolicyCommands:
    """``/policy`` and its confirmation buttons (``po:<ok|no>:<id>:<nonce>``)."""

    def __init__(
        self,
        db: Database,
        control: ControlStore,
        settings: ApprovalSettings,
        messenger: Messenger,
        confirm_within: timedelta = timedelta(minutes=15),
    ) -> None:
        self._db = db
        self._control = control
        self._settings = settings
        self._messenger = messenger
        self._confirmations = Confirmations(control, Prefix.POLICY, _PENDING, confirm_within)

    def register(self, router: CommandRouter) -> None:
        """Add /policy."""
        router.add("policy", "Show or change the approval policy", self.policy, confidential=True)

    async def policy(self, inbound: InboundMessage, args: str) -> str:
        words = args.lower().split()
        current = await current_tolerance(self._control, self._settings)
        if not words:
            chosen = await self._control.get(POLICY_RISK_KEY)
            source = "set with /policy" if chosen in TOLERANCES else "from COO_APPROVALS__RISK_TOLERANCE"
            forbidden = ", ".join(self._settings.forbidden) or "none"
            return POLICY_SHOW.format(risk=current, source=source, forbidden=forbidden, ttl=self._settings.ttl_hours)
        if len(words) != 2 or words[0] != "risk" or words[1] not in TOLERANCES:
            raise UserFacingError(POLICY_USAGE)
        new: Tolerance = words[1]  # type: ignore[assignment]
        if new == current:
            return POLICY_UNCHANGED.format(new=new)
        if not loosens(current, new):
            await self._apply(new, inbound.sender)
            return POLICY_TIGHTENED.format(new=new)
        await self._ask(inbound, current, new)
        return ""

    async def _ask(self, inbound: InboundMessage, current: Tolerance, new: Tolerance) -> None:
        buttons = await self._confirmations.ask(inbound, {"level": new})
        text = POLICY_CONFIRM.format(current=current, new=new, minutes=self._confirmations.minutes)
        await self._messenger.send(OutboundMessage.reply_to(inbound, text, buttons))

    async def on_press(self, inbound: InboundMessage) -> None:
        """A press on a confirmation (the operator check already ran). Forged data changes nothing."""
        answer = await self._confirmations.answer(inbound)
        if answer is None:
            return
        current = await current_tolerance(self._control, self._settings)
        level = answer.asked.get("level")
        if not answer.fresh or level not in TOLERANCES:
            text = POLICY_STALE
        elif answer.confirmed:
            await self._apply(level, inbound.sender)
            text = POLICY_LOOSENED.format(new=level, who=inbound.sender)
        else:
            text = POLICY_KEPT.format(current=current)
        await self._messenger.send(OutboundMessage.reply_to(inbound, text))

    async def _apply(self, level: Tolerance, actor: str) -> None:
        await self._control.put(POLICY_RISK_KEY, level)
        await self._db.append_event("policy.set", actor, {"risk": level})
