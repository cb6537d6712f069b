"""Approval cards on every channel: show, press, edit, and edit-in-place with the outcome."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Protocol

from bot.messages import Button, InboundMessage, OutboundMessage
from bot.messenger import Messenger
from bot.reply import Reply, TurnAnswer
from connectors.base import Context, Executed, when_text
from graph.approvals.cards import Card
from graph.approvals.service import ApprovalService, Decision
from graph.buttons import Prefix
from graph.errors import UserFacingError, user_facing
from memory.approvals import ApprovalRow, ApprovalStore, CardRef, OutboxRow

log = logging.getLogger(__name__)

UNSAVED_OUTCOME = (
    "(This outcome could not be saved: the disk may be full. After a restart this card may say the outcome is "
    "unknown; it happened as shown here.)"
)


class Send(Protocol):
    """Sends a message; ``log_text`` replaces its text in the event log (``Messenger.send``)."""

    def __call__(self, message: OutboundMessage, log_text: str | None = None, /) -> Awaitable[list[str]]: ...


Resume = Callable[[str, str, dict[str, str]], Awaitable[TurnAnswer]]
"""Resumes a conversation waiting on a card: ``(session, root_id, {"decision": …})`` (``Coordinator.resume``)."""


def session_target(session: str) -> tuple[str, str, str | None]:
    """(channel, chat_id, thread_id) of a session key ``channel:chat[:thread]``."""
    parts = session.split(":", 2)
    return parts[0], parts[1] if len(parts) > 1 else "", parts[2] if len(parts) > 2 else None


class ApprovalUI:
    """Shows cards and turns presses into decisions; keeps every copy of a card up to date.

    A decided card made in a conversation resumes it (``resume``); its answer goes out as one :class:`Reply`.
    """

    def __init__(
        self,
        service: ApprovalService,
        resume: Resume,
        messenger: Messenger,
        wake_runner: Callable[[], None],
        context: Callable[[], Context],
    ):
        self._service = service
        self._resume_turn = resume
        self._messenger = messenger
        self._send = messenger.send
        self._wake = wake_runner
        self._context = context

    @property
    def store(self) -> ApprovalStore:
        """The approval store (edit requests live there)."""
        return self._service.store

    async def show(self, approval_id: str, channel: str, chat_id: str, thread_id: str | None) -> None:
        """Send the card for an approval into a chat, and remember it there."""
        row = await self._service.store.get(approval_id)
        if row is None:
            return
        card = self._service.render(row) if row.state == "pending" else await self._status_card(row)
        buttons = tuple(Button(label, data) for label, data in card.buttons)
        # Where it goes is recorded before it is sent: the operator can press before send() returns.
        await self._service.add_card(row.id, CardRef(channel, chat_id, thread_id, ""))
        ids = await self._send(OutboundMessage(channel, chat_id, card.text, thread_id, buttons))
        if ids:
            await self._service.add_card(row.id, CardRef(channel, chat_id, thread_id, ids[-1]))

    @property
    def service(self) -> ApprovalService:
        """The approval service that decides presses."""
        return self._service

    async def on_press(self, inbound: InboundMessage) -> None:
        """A button press. Forged, foreign or malformed data changes nothing and shows nothing."""
        await self.press(inbound)

    async def press(self, inbound: InboundMessage) -> Decision:
        """:meth:`on_press`, returning the decision (Approve all counts what it approved)."""
        decision = await self._service.decide(
            inbound.callback_data or "", inbound.sender, inbound.channel, inbound.chat_id
        )
        row = decision.approval
        if decision.status == "ignored" or row is None:
            return decision
        if decision.status == "already":
            who = f" by {row.decided_by}" if row.decided_by else ""
            await self._send(OutboundMessage.reply_to(inbound, f"Already decided: {row.state}{who}."))
        elif decision.status == "expired":
            await self.on_expired(row)
        elif decision.status == "edit":
            if row.thread != inbound.session_key:
                # A card proposed outside a conversation (a payment reminder) is corrected where it was pressed.
                await self._service.store.request_edit(inbound.session_key, row.id)
            await self._send(OutboundMessage.reply_to(inbound, self._service.kind(row.kind).edit_help))
        elif decision.status == "resend":
            again = "Retrying" if self._service.kind(row.kind).resumable else "Resending"
            await self.refresh(row, f"{again} on your request…")
            self._wake()
        elif decision.status == "compensate":
            assert decision.proposed is not None
            await self.show(decision.proposed.id, inbound.channel, inbound.chat_id, inbound.thread_id)
        elif row.state == "approved":
            await self.refresh(row, f"Approved by {row.decided_by}. {self._service.kind(row.kind).working}")
            self._wake()
            await self._resume(row, "approved")
        else:
            await self.refresh(row, f"Rejected by {row.decided_by}. {self._service.kind(row.kind).nothing_done}")
            await self._resume(row, "rejected")
        return decision

    async def take_edit(self, inbound: InboundMessage) -> bool:
        """If the operator pressed Edit on a card in this conversation, ``inbound`` is the correction: True.

        A card decided since the press has ended its edit request: the message is then an ordinary one
        (False). A correction that cannot be used leaves the request open, so the operator can try again.
        """
        store = self._service.store
        approval_id = await store.take_edit_request(inbound.session_key)
        if approval_id is None:
            return False
        row = await store.get(approval_id)
        if row is None or row.state != "pending":
            return False
        try:
            await self.on_edit(inbound, approval_id)
        except UserFacingError:
            fresh = await store.get(approval_id)
            if fresh is not None and fresh.state == "pending":
                await store.request_edit(inbound.session_key, approval_id)
            raise
        return True

    async def on_edit(self, inbound: InboundMessage, approval_id: str) -> None:
        """The operator's correction for a card: a new card with a new digest replaces the old one."""
        row = await self._service.store.get(approval_id)
        if row is None or row.state != "pending":
            raise UserFacingError("That card was decided meanwhile; nothing was changed.")
        kind = self._service.kind(row.kind)
        with user_facing():  # a correction that cannot be read leaves the old card valid
            action = await kind.edit(kind.parse(row.action), inbound.text, self._context())
        if self._service.digest(action) == row.digest:
            raise UserFacingError(f"That is the same {kind.noun} as on the card; nothing changed.")
        new = await self._service.supersede(row, action, inbound.sender)
        await self.refresh(row, f"Replaced by a corrected card (approval {new.id}).")
        await self.show(new.id, inbound.channel, inbound.chat_id, inbound.thread_id)

    async def on_outcome(self, outbox: OutboxRow) -> None:
        """The outbox finished an action: edit every copy of its card. Raises when a copy could not be
        edited, so the outcome stays unreported and is shown again on the next start."""
        row = await self._service.store.get(outbox.approval_id)
        if row is not None:
            card = await self._status_card(row, outbox)
            buttons = tuple(Button(label, data) for label, data in card.buttons)
            if not await self._edit_all(row, card.text, buttons):
                raise RuntimeError(f"a card of approval {row.id} could not be updated")

    async def on_expired(self, row: ApprovalRow) -> None:
        """A card expired: say so on it, and tell the waiting conversation."""
        await self.refresh(row, f"Expired without a decision. {self._service.kind(row.kind).nothing_done}")
        await self._resume(row, "expired")

    async def refresh(self, row: ApprovalRow, status: str) -> None:
        """Edit every copy of the card with a status line (buttons removed)."""
        card = self._service.render(row, status=status)
        await self._edit_all(row, card.text, ())

    async def _status_card(self, row: ApprovalRow, reported: OutboxRow | None = None) -> Card:
        """The card for a decided approval; with ``reported``, the outcome the outbox reports (which may not
        be saved: then the card says so)."""
        outbox = saved = await self._service.store.outbox(row.id)
        if reported is not None:
            outbox = reported
        kind = self._service.kind(row.kind)
        if outbox is None:
            status = {
                "rejected": f"Rejected by {row.decided_by}. {kind.nothing_done}",
                "expired": f"Expired without a decision. {kind.nothing_done}",
                "superseded": "Replaced by a corrected card.",
                "pending": "Waiting for approval.",
            }.get(row.state, row.state)
            return self._service.render(row, status=status)
        retrying = f" (retrying after: {outbox.detail})" if outbox.detail else ""
        buttons: tuple[tuple[str, str], ...] = ()
        if outbox.state == "sent":
            status = kind.outcome_line(outbox_time(outbox), Executed(outbox.external_id or "", outbox.detail))
            if kind.compensation is not None:
                buttons = ((kind.compensation_label, Prefix.COMPENSATE),)
        elif outbox.state == "unknown" and kind.resumable:
            status = (
                f"Unknown outcome: {outbox.detail}. Retry completes only what is not done yet (it stops again "
                "when that cannot be told), so it cannot happen twice."
            )
            buttons = (("Retry", Prefix.RESEND),)
        elif outbox.state == "unknown":
            status = f"Unknown outcome: {outbox.detail}. It was NOT resent. Press Resend only if it did not arrive."
            buttons = (("Resend", Prefix.RESEND),)
        else:
            status = {
                "queued": f"Approved by {row.decided_by}. Queued{retrying}.",
                "running": f"Approved by {row.decided_by}. {kind.working}",
                "failed": f"Failed: {outbox.detail}. {kind.nothing_done}",
            }[outbox.state]
        if saved is not None and saved.state != outbox.state:
            status += f" {UNSAVED_OUTCOME}"
            buttons = ()
        return self._service.render(row, status=status, buttons=buttons)

    async def _edit_all(self, row: ApprovalRow, text: str, buttons: tuple[Button, ...]) -> bool:
        """Edit every copy of a card; False when one could not be edited (each failure is logged)."""
        ok = True
        for ref in row.cards:
            if not ref.message_id:  # never delivered (the send failed or the process stopped)
                continue
            try:
                await self._send(
                    OutboundMessage(
                        ref.channel, ref.chat_id, text, ref.thread_id, buttons, edit_message_id=ref.message_id
                    )
                )
            except Exception:
                ok = False
                log.exception("could not update card %s in %s:%s", row.id, ref.channel, ref.chat_id)
        return ok

    async def _resume(self, row: ApprovalRow, decision: str) -> None:
        if row.origin != "graph":
            return
        result = await self._resume_turn(row.thread, row.root_id, {"decision": decision})
        await self._messenger.deliver(Reply.of_turn(result, *session_target(row.thread)), self.show)


def outbox_time(row: OutboxRow) -> str:
    """When the outbox row last changed (for a sent row: when it was sent), as shown on cards."""
    return when_text(row.updated_at)
