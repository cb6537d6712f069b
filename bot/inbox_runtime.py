"""The inbox inside ``coo run``: intake and triage in the background, ``/inbox``, and notices of urgent mail
from known contacts (held during quiet hours, sent once). One call from the runtime wires it all."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine
from datetime import datetime, time
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from bot.approval_ui import ApprovalUI
from bot.commands.inbox import InboxCommands
from bot.commands.router import CommandRouter
from bot.digest import home_chats
from bot.messages import OutboundMessage
from bot.scheduler import Scheduler
from bot.settings import QUIET_HOURS_RE
from connectors.imap import IMAPSettings, MailIntake
from graph.approvals.service import ApprovalService
from graph.inbox.triage import Triage
from graph.models.llm import LLMClient
from memory.control import ControlStore
from memory.db import utcnow
from memory.mail import MailStore, StoredMail
from memory.records import Records
from memory.semantic.contracts import EmbeddingRefused, MemoryUnavailable
from memory.semantic.notes import Note
from prompts.messages import INBOX_URGENT

if TYPE_CHECKING:
    from memory.semantic.api import Memory

log = logging.getLogger(__name__)
NOTICE_CHECK_S = 60.0
Loop = tuple[Callable[[], Coroutine[Any, Any, Any]], str]
"""A background loop to start once the channels are up: what makes its coroutine, and its name."""
Send = Callable[[OutboundMessage], Awaitable[None]]


def in_quiet_hours(quiet: str, now: datetime, zone: str) -> bool:
    """Whether ``now`` falls in ``quiet`` (``22:00-07:00`` spans midnight) in the operator's zone."""
    found = QUIET_HOURS_RE.match(quiet) if quiet else None
    if found is None:
        return False
    h1, m1, h2, m2 = (int(g) for g in found.groups())
    start, end = time(h1, m1), time(h2, m2)
    local = now.astimezone(ZoneInfo(zone)).time()
    return start <= local < end if start <= end else (local >= start or local < end)


class InboxNotices:
    """Sends each urgent notice once, to every operator's own chat, outside quiet hours."""

    def __init__(
        self,
        store: MailStore,
        control: ControlStore,
        send: Send,
        quiet_hours: str,
        zone: str,
        now: Callable[[], datetime] = utcnow,
    ) -> None:
        self._store = store
        self._control = control
        self._send = send
        self._quiet = quiet_hours
        self._zone = zone
        self._now = now

    async def release_held(self) -> None:
        """Send what quiet hours held (a scheduler job)."""
        await self.send_due()

    async def send_due(self) -> int:
        """Send the notices that are due now; returns how many messages were announced."""
        if in_quiet_hours(self._quiet, self._now(), self._zone):
            return 0
        sent = 0
        for mail in await self._store.due_notices():
            if not await self._store.mark_notified(mail.id):
                continue
            r = mail.record
            text = INBOX_URGENT.format(
                sender=f"{r.from_name} <{r.from_addr}>" if r.from_name else r.from_addr,
                subject=r.subject or "(no subject)",
                summary=mail.summary or "",
                id=mail.id,
            )
            for channel, chat_id, thread_id in await home_chats(self._control):
                await self._send(OutboundMessage(channel, chat_id, text, thread_id))
            sent += 1
        return sent


class MailMemory:
    """Puts triaged mail into the event log and semantic memory (sender, date, subject, summary, the start of
    the text), so ``/recall`` finds it and ``/forget mail-<id>`` removes it. Notes are added before the
    messages are marked (a note is stored once per ref), so a crash in between repeats nothing."""

    def __init__(self, store: MailStore, memory: Memory | None, scope: str) -> None:
        self._store = store
        self._memory = memory
        self._scope = scope

    async def index_new(self) -> int:
        """Index what triage finished; returns how many messages."""
        mails = await self._store.unindexed()
        if not mails:
            return 0
        if self._memory is not None:
            notes = [Note(_note_text(m), source="email", scope=self._scope, ref=f"mail-{m.id}") for m in mails]
            try:
                await self._memory.add_many(notes)
            except (MemoryUnavailable, EmbeddingRefused) as exc:
                log.warning("inbox: mail not added to memory yet (%s); retried later", type(exc).__name__)
                return 0
        await self._store.mark_indexed(mails)
        return len(mails)


def _note_text(mail: StoredMail) -> str:
    r = mail.record
    sender = f"{r.from_name} <{r.from_addr}>" if r.from_name else r.from_addr
    head = f"Email from {sender} on {(r.sent_at or mail.received_at)[:10]}: {r.subject or '(no subject)'}"
    return f"{head}\n{mail.summary or ''}\n{r.body[:1500]}".strip()


async def open_inbox(
    *,
    imap: IMAPSettings,
    quiet_hours: str,
    zone: str,
    cheap_model: str | None,
    memory: Memory | None,
    scope: str,
    mail: MailStore,
    records: Records,
    llm: LLMClient,
    approvals: ApprovalService,
    ui: ApprovalUI,
    control: ControlStore,
    send: Send,
    commands: CommandRouter,
    scheduler: Scheduler,
    on_mail: Callable[[], None] = lambda: None,
) -> list[Loop]:
    """Register ``/inbox``; with an IMAP host, the intake and triage loops for the runtime to start (with the
    other background work, once the channels are up) and the notices' schedule. ``on_mail``: told when new
    mail is stored (follow-ups look for replies)."""
    InboxCommands(mail, approvals, ui, llm, imap.configured).register(commands)
    if not imap.configured:
        return []
    notices = InboxNotices(mail, control, send, quiet_hours, zone)
    indexer = MailMemory(mail, memory, scope)

    async def after_triage() -> None:
        await indexer.index_new()
        await notices.send_due()
        intake.nudge()  # the opt-in action after triage (mark seen / move), if set, happens now

    triage = Triage(mail, records, llm, cheap_model, on_triaged=after_triage)
    scheduler.every("inbox-notices", NOTICE_CHECK_S, notices.release_held)  # releases what quiet hours held

    def on_new() -> None:
        triage.wake.set()
        on_mail()

    intake = MailIntake(imap, mail, on_new=on_new)
    triage.wake.set()  # whatever the last run stored but did not triage
    return [(triage.run_forever, "inbox-triage"), (intake.run_forever, "inbox-intake")]
