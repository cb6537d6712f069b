"""The core entry for every inbound update: access check, dedupe, command or coordinator, reply."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import datetime
from typing import Any

from bot.access import AccessGuard, Verdict
from bot.approval_ui import ApprovalUI
from bot.commands import CommandRouter
from bot.messages import Channel, InboundMessage, OutboundMessage
from graph.coordinator import Coordinator
from graph.errors import UserFacingError
from memory.control import ControlStore
from memory.db import Database

log = logging.getLogger(__name__)

REFUSAL = "Sorry, I only work for my operator."
GENERIC_ERROR = "Something went wrong on my side; it has been logged. Please try again."
_REFUSAL_INTERVAL_S = 3600.0


class Dispatcher:
    """Receives InboundMessages from every channel and answers through the same channel."""

    def __init__(
        self,
        db: Database,
        guard: AccessGuard,
        commands: CommandRouter,
        coordinator: Coordinator,
    ) -> None:
        self._db = db
        self._guard = guard
        self._commands = commands
        self._coordinator = coordinator
        self._channels: dict[str, Channel] = {}
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._refused_at: dict[str, float] = {}
        self.approvals: ApprovalUI | None = None
        # Button presses go to the handler registered for the data's prefix ("bu" for budget alerts).
        self.button_handlers: dict[str, Callable[[InboundMessage], Awaitable[None]]] = {}
        self.control: ControlStore | None = None
        self._homes: dict[str, tuple[str, str, str | None]] = {}
        # Called with each free-text operator message and its event id (semantic memory ingestion).
        self.on_operator_text: Callable[[InboundMessage, int], None] | None = None

    def attach(self, channel: Channel) -> None:
        """Make a channel available for replies."""
        self._channels[channel.name] = channel

    async def handle(self, inbound: InboundMessage) -> None:
        """Handle one update at most once. The access check is the very first step (I6)."""
        verdict = await self._guard.check(inbound)
        if verdict is not Verdict.ALLOW:
            await self._not_allowed(inbound, verdict)
            return
        if inbound.update_key is not None and not await self._db.claim_update(
            inbound.update_key, inbound.session_key, inbound_to_json(inbound)
        ):
            log.info("duplicate delivery %s dropped", inbound.update_key)
            return
        await self._process(inbound)

    async def replay_pending(self) -> int:
        """Handle deliveries a crash left claimed but unfinished (I3: never lost once acknowledged)."""
        pending = await self._db.pending_updates()
        for _, payload in pending:
            inbound = inbound_from_json(payload)
            if inbound.channel in self._channels and self._guard.is_operator(inbound.sender):
                await self._process(inbound)
        return len(pending)

    async def _process(self, inbound: InboundMessage) -> None:
        session = inbound.session_key
        # One turn at a time per conversation; other conversations run concurrently.
        async with self._locks[session]:
            try:
                event_id = await self._db.append_event(
                    "message.in",
                    inbound.sender,
                    {"text": self._commands.loggable(inbound.text), "kind": inbound.kind},
                    session=session,
                )
                await self._answer(inbound, event_id)
            except UserFacingError as exc:
                await self.send(OutboundMessage.reply_to(inbound, exc.reason))
            except Exception:
                log.exception("failed to handle update in session %s", session)
                await self._safe_send(OutboundMessage.reply_to(inbound, GENERIC_ERROR))
            finally:
                if inbound.update_key is not None:
                    await self._db.finish_update(inbound.update_key)

    async def _answer(self, inbound: InboundMessage, event_id: int) -> None:
        if inbound.kind == "callback":
            handler = self.button_handlers.get((inbound.callback_data or "").split(":", 1)[0])
            if handler is not None:
                await handler(inbound)
            elif self.approvals is not None:
                await self.approvals.on_press(inbound)
            return
        await self._remember_home(inbound)
        if inbound.kind == "other":
            return  # e.g. reactions or membership changes: nothing to answer
        if inbound.kind == "command" or CommandRouter.parse(inbound.text):
            reply = await self._commands.run(inbound)
            if reply:
                withheld = "[withheld]" if self._commands.is_private(inbound.text) else None
                await self.send(OutboundMessage.reply_to(inbound, reply), log_text=withheld)
            return
        if self.approvals is not None and inbound.kind == "message" and await self._take_edit(inbound):
            return
        if not inbound.text.strip():
            raise UserFacingError("I can only read text for now.")
        if self.on_operator_text is not None:
            self.on_operator_text(inbound, event_id)
        channel = self._channels[inbound.channel]
        async with channel.typing(inbound.chat_id, inbound.thread_id):
            result = await self._coordinator.respond(inbound.session_key, inbound.text, inbound.sender)
        if self.approvals is not None:
            await self.approvals.show_result(result, inbound.channel, inbound.chat_id, inbound.thread_id)
        elif result.reply:
            await self.send(OutboundMessage.reply_to(inbound, result.reply))

    async def _remember_home(self, inbound: InboundMessage) -> None:
        """An operator's private chat is where the digest and alerts without a conversation go."""
        if self.control is None:
            return
        user = inbound.sender.rsplit(":", 1)[-1]
        private = (
            inbound.channel == "console"
            or (inbound.channel == "telegram" and inbound.chat_id == user)
            or (inbound.channel == "slack" and inbound.chat_id.startswith("D"))
        )
        home = (inbound.channel, inbound.chat_id, inbound.thread_id)
        if private and self._homes.get(inbound.sender) != home:
            await self.control.put(f"home:{inbound.sender}", list(home))
            self._homes[inbound.sender] = home

    async def _take_edit(self, inbound: InboundMessage) -> bool:
        """If the operator pressed Edit on a card in this conversation, this message is the correction."""
        assert self.approvals is not None
        store = self.approvals.store
        approval_id = await store.take_edit_request(inbound.session_key)
        if approval_id is None:
            return False
        try:
            await self.approvals.on_edit(inbound, approval_id)
        except UserFacingError:
            await store.request_edit(inbound.session_key, approval_id)  # let the operator try again
            raise
        return True

    async def send(self, message: OutboundMessage, log_text: str | None = None) -> list[str]:
        """Send through the message's channel and record it (or ``log_text`` instead) in the event log."""
        ids = await self._channels[message.channel].send(message)
        session = f"{message.channel}:{message.chat_id}" + (f":{message.thread_id}" if message.thread_id else "")
        text = message.text if log_text is None else log_text
        await self._db.append_event("message.out", "coo", {"text": text, "ids": ids}, session=session)
        return ids

    async def _safe_send(self, message: OutboundMessage) -> None:
        try:
            await self.send(message)
        except Exception:
            log.exception("could not deliver the error reply in %s:%s", message.channel, message.chat_id)

    async def _not_allowed(self, inbound: InboundMessage, verdict: Verdict) -> None:
        audit = {"kind": inbound.kind, "verdict": verdict.value, "chat": inbound.chat_id}
        await self._db.append_event("access." + verdict.value, inbound.sender, audit, session=inbound.session_key)
        if verdict is Verdict.PAIRED:
            log.info("paired new operator %s", inbound.sender)
            await self._safe_send(OutboundMessage.reply_to(inbound, "Paired. You are now my operator. Try /help."))
            return
        log.warning("refused %s from %s (%s)", inbound.kind, inbound.sender, verdict.value)
        now = time.monotonic()
        last = self._refused_at.get(inbound.sender)
        # Only someone who addressed us gets a reply; e.g. channel chatter ("other") is audited only.
        addressed = inbound.kind in ("message", "command", "callback", "edit")
        if addressed and inbound.channel in self._channels and (last is None or now - last > _REFUSAL_INTERVAL_S):
            self._refused_at[inbound.sender] = now
            await self._safe_send(OutboundMessage.reply_to(inbound, REFUSAL))


def inbound_to_json(inbound: InboundMessage) -> dict[str, Any]:
    """JSON-plain form of an InboundMessage (for the inbox)."""
    data = asdict(inbound)
    data["received_at"] = inbound.received_at.isoformat()
    return data


def inbound_from_json(data: dict[str, Any]) -> InboundMessage:
    """Inverse of :func:`inbound_to_json`."""
    fields = dict(data)
    fields["received_at"] = datetime.fromisoformat(fields["received_at"])
    return InboundMessage(**fields)
