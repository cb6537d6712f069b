"""/email and /pending: the approval flow without a model (offline mode uses them too)."""

from __future__ import annotations

from bot.approval_ui import ApprovalUI
from bot.commands import CommandRouter
from bot.messages import InboundMessage
from graph.action_tools import approval_id_for
from graph.approvals import ApprovalService, email_from_fields
from graph.errors import UserFacingError

EMAIL_USAGE = "Usage: /email <to>[,<to>…] <subject> | <body>"


def parse_email_command(args: str) -> dict[str, str]:
    """``ana@x.org Proposal ready | Hi Ana, …`` -> fields. UserFacingError with the usage line when bad."""
    head, bar, body = args.partition("|")
    words = head.split(None, 1)
    if not bar or len(words) < 2 or not body.strip():
        raise UserFacingError(EMAIL_USAGE)
    return {"to": words[0], "subject": words[1].strip(), "body": body.strip()}


def register_approval_commands(
    router: CommandRouter, service: ApprovalService, ui: ApprovalUI, email_from: str | None
) -> None:
    """Add /email and /pending."""

    async def email(inbound: InboundMessage, args: str) -> str:
        action = email_from_fields(parse_email_command(args), email_from)
        # Derived from the delivery: a replay after a crash finds this card instead of making another.
        approval_id = approval_id_for(inbound.session_key, inbound.update_key) if inbound.update_key else None
        proposal = await service.propose(
            action, inbound.session_key, "command", inbound.sender, approval_id=approval_id
        )
        if proposal.approval is None:
            raise UserFacingError("Your policy forbids sending email.")
        await ui.show(proposal.approval.id, inbound.channel, inbound.chat_id, inbound.thread_id)
        return ""

    async def pending(inbound: InboundMessage, _: str) -> str:
        rows = await service.store.list_approvals("pending")
        if not rows:
            return "Nothing waits for your approval."
        for row in rows:
            await ui.show(row.id, inbound.channel, inbound.chat_id, inbound.thread_id)
        return f"{len(rows)} card(s) wait for your approval (shown above)."

    router.add("email", "Draft an email: /email <to> <subject> | <body>", email)
    router.add("pending", "Show the cards that wait for your approval", pending, confidential=True)
