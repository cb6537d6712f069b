"""/goal, /goals and the goal buttons (Retry / Skip / Cancel goal / Approve all); the chat side of goals."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from bot.approval_ui import ApprovalUI, session_target
from bot.commands.router import CommandRouter
from bot.messages import Button, InboundMessage, OutboundMessage
from bot.messenger import Messenger
from connectors.base import Context
from graph.approvals.cards import button_data
from graph.approvals.service import ApprovalService
from graph.buttons import Prefix
from graph.conversation.action_tools import approval_id_for
from graph.errors import UserFacingError, user_facing
from graph.goals.plan_kind import PlanKind
from graph.goals.service import ButtonSpec, GoalService
from memory.tasks import TransitionRefused
from prompts.messages import GOAL_NOT_PLANNABLE, GOALS_USAGE, plural

PLANNABLE = frozenset({"planning", "failed"})
"""Goal states `/goal plan` applies to: recorded without a plan, or no valid plan could be made."""


class ChatNotifier:
    """The goal layer's way to the operator: messages and cards in the chat a goal was set in."""

    def __init__(self, messenger: Messenger, ui: ApprovalUI) -> None:
        self._messenger = messenger
        self._ui = ui

    async def post(self, session: str, text: str, buttons: ButtonSpec = (), replace: str | None = None) -> str | None:
        """Send, or edit in place, a message in a session's chat; None when no channel can take it."""
        channel, chat_id, thread_id = session_target(session)
        if not self._messenger.has(channel):
            return None
        message = OutboundMessage(
            channel, chat_id, text, thread_id, tuple(Button(label, data) for label, data in buttons), replace
        )
        ids = await self._messenger.send(message)
        return ids[-1] if ids else replace

    async def show_card(self, approval_id: str, session: str) -> None:
        """Show an approval card in a session's chat."""
        channel, chat_id, thread_id = session_target(session)
        if self._messenger.has(channel):
            await self._ui.show(approval_id, channel, chat_id, thread_id)


class GoalCommands:
    """``/goal <text>`` proposes a plan card; ``/goal <id>``, ``/goal cancel <id>``, ``/goal plan <id>``, ``/goals``."""

    def __init__(
        self,
        goals: GoalService,
        plans: PlanKind,
        approvals: ApprovalService,
        ui: ApprovalUI,
        messenger: Messenger,
        context: Callable[[], Context],
        wake: Callable[[], None],
    ) -> None:
        self._goals = goals
        self._plans = plans
        self._approvals = approvals
        self._ui = ui
        self._messenger = messenger
        self._context = context
        self._wake = wake

    def register(self, router: CommandRouter) -> None:
        """Add /goal and /goals."""
        router.add("goal", "Start a goal: /goal get two sponsors for December", self.goal)
        router.add("goals", "Goals and their progress", self.overview, confidential=True)

    async def overview(self, _: InboundMessage, __: str) -> str:
        return await self._goals.board.overview()

    async def goal(self, inbound: InboundMessage, args: str) -> str:
        words = args.split()
        if not words:
            raise UserFacingError(GOALS_USAGE)
        ledger = self._goals.ledger
        if len(words) == 2 and words[0] in ("cancel", "plan"):
            found = await ledger.goal(words[1])
            if found is None:
                raise UserFacingError(f"No goal {words[1]}. /goals lists them.")
            if words[0] == "cancel":
                if not await self._goals.cancel(found.id, inbound.sender):
                    return f"Goal {found.id} is already {found.status}."
                return ""
            if found.status not in PLANNABLE:
                # Replanning a goal that runs, or ended, would cancel its work midway or revive it.
                raise UserFacingError(GOAL_NOT_PLANNABLE.format(goal_id=found.id, status=found.status))
            goal = found
            return await self._propose(inbound, lambda: self._plans.plan_for(goal))
        if len(words) == 1 and (shown := await ledger.goal(words[0])) is not None:
            return await self._goals.board.describe(shown)
        ctx = replace(self._context(), session=inbound.session_key, requested_by=inbound.sender)
        return await self._propose(inbound, lambda: self._plans.from_command(args, ctx))

    async def _propose(self, inbound: InboundMessage, make: Callable[[], object]) -> str:
        # Derived from the delivery: a replay after a crash shows this card again, without recording
        # another goal or planning it again (a model call).
        approval_id = approval_id_for(inbound.session_key, inbound.update_key) if inbound.update_key else None

        async def build() -> Any:
            with user_facing():
                return await make()  # type: ignore[misc]

        proposal = await self._approvals.propose_once(approval_id, build, inbound.session_key, "goal", inbound.sender)
        if proposal.approval is None:
            raise UserFacingError("Your policy forbids starting goals.")
        await self._ui.show(proposal.approval.id, inbound.channel, inbound.chat_id, inbound.thread_id)
        return ""

    async def on_press(self, inbound: InboundMessage) -> None:
        """``gl:<retry|skip|cancel|all>:<id>`` (the operator check already ran)."""
        parts = (inbound.callback_data or "").split(":")
        if len(parts) != 3 or parts[1] not in ("retry", "skip", "cancel", "all"):
            return
        verb, target = parts[1], parts[2]
        text = ""
        try:
            if verb == "retry":
                task = await self._goals.retry(target, inbound.sender)
                text = f"Retrying task {task.title}."
            elif verb == "skip":
                task = await self._goals.skip(target, inbound.sender)
                text = f"Skipped task {task.title}."
            elif verb == "cancel":
                if not await self._goals.cancel(target, inbound.sender):
                    text = "That goal is already finished."
            else:
                goal = await self._goals.ledger.goal(target)
                waiting = await self._goals.board.waiting_cards(goal) if goal else []
                for row in waiting:  # each one a normal press: the approver, the chat, the expiry, its digest
                    await self._ui.on_press(replace(inbound, callback_data=button_data(Prefix.APPROVE, row)))
                text = f"Approved {plural(len(waiting), 'card')}, each checked on its own."
        except TransitionRefused:
            text = "That was decided meanwhile; nothing changed."
        self._wake()
        if text:
            await self._messenger.send(OutboundMessage.reply_to(inbound, text))
