"""The commands that propose actions without a model (one per kind that declares one: /email, /invoice,
/post), /pending, and /approve or /reject by card id (the console and any chat)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from bot.approval_ui import ApprovalUI
from bot.commands.router import CommandRouter
from bot.messages import InboundMessage
from connectors.base import ActionKind, Context
from graph.approvals.cards import button_data
from graph.approvals.service import ApprovalService
from graph.buttons import Prefix
from graph.conversation.action_tools import approval_id_for
from graph.errors import UserFacingError, user_facing


def register_approval_commands(
    router: CommandRouter, service: ApprovalService, ui: ApprovalUI, context: Callable[[], Context]
) -> None:
    """Add every kind's command, /pending, /approve and /reject."""
    for kind in service.registry.commands():
        assert kind.command is not None
        router.add(kind.command.name, kind.command.description, _proposer(kind, service, ui, context))

    async def pending(inbound: InboundMessage, _: str) -> str:
        rows = await service.store.list_approvals("pending")
        if not rows:
            return "Nothing waits for your approval."
        for row in rows:
            await ui.show(row.id, inbound.channel, inbound.chat_id, inbound.thread_id)
        return f"{len(rows)} card(s) wait for your approval (shown above)."

    def decide(verb: str) -> Callable[[InboundMessage, str], Any]:
        async def run(inbound: InboundMessage, args: str) -> str:
            row = await service.store.get(args.strip()) if args.strip() else None
            if row is None:
                command = "approve" if verb == Prefix.APPROVE else "reject"
                raise UserFacingError(f"Usage: /{command} <card id> (see /pending)")
            # The same checks as a button press: the operator, a chat the card was shown in, the expiry, the digest.
            await ui.on_press(replace(inbound, kind="callback", callback_data=button_data(verb, row)))
            return ""

        return run

    router.add("pending", "Show the cards that wait for your approval", pending, confidential=True)
    router.add("approve", "Approve a card by its id: /approve <id>", decide(Prefix.APPROVE))
    router.add("reject", "Reject a card by its id: /reject <id>", decide(Prefix.REJECT))


def _proposer(
    kind: ActionKind[Any], service: ApprovalService, ui: ApprovalUI, context: Callable[[], Context]
) -> Callable[[InboundMessage, str], Any]:
    async def run(inbound: InboundMessage, args: str) -> str:
        # Derived from the delivery: a replay after a crash finds this card instead of making another.
        approval_id = approval_id_for(inbound.session_key, inbound.update_key) if inbound.update_key else None

        async def build() -> Any:
            ctx = replace(context(), session=inbound.session_key, requested_by=inbound.sender)
            with user_facing():
                return await kind.from_command(args, ctx)

        proposal = await service.propose_once(approval_id, build, inbound.session_key, "command", inbound.sender)
        if proposal.approval is None:
            raise UserFacingError(f"Your policy forbids {kind.activity}.")
        await ui.show(proposal.approval.id, inbound.channel, inbound.chat_id, inbound.thread_id)
        return ""

    return run
