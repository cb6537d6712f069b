"""Cards that come due together (same-day payment reminders) as one message with "Approve all N".

The button approves nothing by itself: each listed card is approved through its own press path, so the
approver, the chat, the expiry and the payload against the card's own digest are checked per card (I1), and
each approval queues its one outbox row (I2). A card withdrawn, replaced, edited or decided since the list
was made is skipped, and the message says which and why.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import replace
from typing import Any

from bot.approval_ui import ApprovalUI, Send
from bot.messages import Button, InboundMessage, OutboundMessage
from graph.approvals.cards import button_data
from graph.buttons import Prefix, encode
from memory.approvals import ApprovalRow
from memory.control import ControlStore
from prompts import messages

log = logging.getLogger(__name__)

_KEY = "approve_all."
# Who withdraws a reminder, and why the list says it was skipped.
_WITHDRAWN_BY = {"stripe": messages.SKIP_WITHDRAWN, "coo": messages.SKIP_REPLACED}


def group_id(approval_ids: list[str]) -> str:
    """The group's name: the same cards make the same group (a re-shown list after a restart is one)."""
    return hashlib.sha256("\x00".join(sorted(approval_ids)).encode()).hexdigest()[:12]


class ApproveAll:
    """Shows a group of cards under one "Approve all N" message and handles its button."""

    def __init__(self, ui: ApprovalUI, control: ControlStore, send: Send) -> None:
        self._ui = ui
        self._control = control
        self._send = send

    async def show(self, rows: list[ApprovalRow], head: str, channel: str, chat_id: str, thread_id: str | None) -> None:
        """The list message with its button, then each card (each still decidable on its own)."""
        gid = group_id([r.id for r in rows])
        group = await self._control.get(_KEY + gid) or {
            "ids": [r.id for r in rows],
            "digests": [r.digest for r in rows],
            "nonce": secrets.token_hex(4),
            "text": "\n".join([head, *(self._line(r) for r in rows)]),
            "messages": [],
        }
        # Stored before it is sent: a press can come before send() returns.
        await self._control.put(_KEY + gid, group)
        label = messages.APPROVE_ALL.format(count=len(rows))
        button = Button(label, encode(Prefix.APPROVE_ALL, gid, group["nonce"]))
        ids = await self._send(OutboundMessage(channel, chat_id, group["text"], thread_id, (button,)))
        if ids:
            group["messages"].append([channel, chat_id, thread_id, ids[-1]])
            await self._control.put(_KEY + gid, group)
        for row in rows:
            await self._ui.show(row.id, channel, chat_id, thread_id)

    def _line(self, row: ApprovalRow) -> str:
        kind = self._ui.service.kind(row.kind)
        return "- " + kind.summary(kind.parse(row.action))

    async def on_press(self, inbound: InboundMessage) -> None:
        """ "Approve all": each listed card that is still the one listed is approved on its own path."""
        group = await self._group(inbound)
        if group is None:
            return
        done, skipped = 0, []
        for approval_id, digest in zip(group["ids"], group["digests"], strict=True):
            row = await self._ui.store.get(approval_id)
            why = self._skip_reason(row, digest)
            if why is None and row is not None:
                decision = await self._ui.press(replace(inbound, callback_data=button_data(Prefix.APPROVE, row)))
                decided = decision.approval
                if decision.status == "decided" and decided is not None and decided.state == "approved":
                    done += 1
                    continue
                why = self._skip_reason(decided or row, digest) or messages.SKIP_EXPIRED
            if row is not None:
                skipped.append(messages.APPROVE_SKIPPED.format(what=self._line(row).removeprefix("- "), why=why))
        if not done:
            await self._send(OutboundMessage.reply_to(inbound, "\n".join([messages.APPROVED_NONE, *skipped])))
            return
        result = messages.APPROVED_ALL.format(done=done, count=len(group["ids"]), who=inbound.sender)
        await self._edit(group, "\n\n".join([group["text"], "\n".join([result, *skipped])]))

    async def _group(self, inbound: InboundMessage) -> dict[str, Any] | None:
        """The pressed group, if the data is ours, its nonce matches and it was shown in this chat."""
        parts = (inbound.callback_data or "").split(":")
        group = await self._control.get(_KEY + parts[1]) if len(parts) == 3 and parts[1].isalnum() else None
        shown = group is not None and any(m[:2] == [inbound.channel, inbound.chat_id] for m in group["messages"])
        if group is None or not hmac.compare_digest(str(group["nonce"]), parts[2]) or not shown:
            log.warning("approve-all press ignored: unknown group, wrong nonce or another chat")
            return None
        return group  # type: ignore[no-any-return]

    @staticmethod
    def _skip_reason(row: ApprovalRow | None, digest: str) -> str | None:
        """Why a listed card is not approved now; None when it is still the pending card that was listed."""
        if row is None or row.digest != digest or row.state == "superseded":
            return messages.SKIP_CHANGED
        if row.state == "pending":
            return None
        if row.state == "rejected" and row.decided_by in _WITHDRAWN_BY:
            return _WITHDRAWN_BY[row.decided_by]
        if row.state == "expired":
            return messages.SKIP_EXPIRED
        who = f" by {row.decided_by}" if row.decided_by else ""
        return messages.SKIP_DECIDED.format(state=row.state + who)

    async def _edit(self, group: dict[str, Any], text: str) -> None:
        for channel, chat_id, thread_id, message_id in group["messages"]:
            try:
                await self._send(OutboundMessage(channel, chat_id, text, thread_id, (), edit_message_id=message_id))
            except Exception:
                log.exception("could not update the approve-all message in %s:%s", channel, chat_id)
