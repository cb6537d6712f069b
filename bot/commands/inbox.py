"""The inbox in chat: ``/inbox`` (what needs the operator), ``/inbox <id>`` (one message and its thread),
``/inbox reply <id> [| text]`` (a threaded email card to the sender, drafted by the model when no text
is given).

The card's recipient is always the stored sender's address, set here and never by the model or the email.
"""

from __future__ import annotations

from typing import Any

from bot.approval_ui import ApprovalUI
from bot.commands.router import CommandRouter
from bot.messages import InboundMessage
from connectors.base import ActionError
from connectors.email import EmailConnector
from graph.approvals.service import ApprovalService
from graph.conversation.action_tools import approval_id_for
from graph.conversation.context import as_data
from graph.errors import ModelUnavailable, UserFacingError
from graph.inbox.triage import WORKFLOW
from graph.models.llm import LLMClient
from graph.spend.budget import BudgetExceeded
from memory.mail import MailStore, SentMail, StoredMail
from prompts import load_prompt
from prompts.messages import (
    INBOX_EMPTY,
    INBOX_NO_DRAFT,
    INBOX_NOT_CONFIGURED,
    INBOX_REPLY_TO_DIFFERS,
    INBOX_UNKNOWN,
    INBOX_USAGE,
)

CLASS_LABELS = {
    "needs_reply": "needs a reply",
    "waiting_on_us": "waiting on us",
    "fyi": "FYI",
    "receipt": "receipt or invoice",
    "newsletter": "newsletter",
    "suspicious": "suspicious",
}


class InboxCommands:
    """``/inbox`` and its reply cards."""

    def __init__(
        self,
        store: MailStore,
        service: ApprovalService,
        ui: ApprovalUI,
        llm: LLMClient | None,
        configured: bool,
    ) -> None:
        self._store = store
        self._service = service
        self._ui = ui
        self._llm = llm
        self._configured = configured

    def register(self, router: CommandRouter) -> None:
        """Add ``/inbox``."""
        router.add("inbox", "Mail that needs you: /inbox, /inbox <id>, /inbox reply <id>", self.run, confidential=True)

    async def run(self, inbound: InboundMessage, args: str) -> str:
        """Dispatch on the arguments."""
        if not self._configured:
            return INBOX_NOT_CONFIGURED
        words = args.split(None, 2)
        if not words:
            return await self.listing()
        if words[0] == "reply" and len(words) >= 2:
            return await self.reply(inbound, args.split(None, 1)[1])
        if words[0].isdigit() and len(words) == 1:
            return await self.show(int(words[0]))
        raise UserFacingError(INBOX_USAGE)

    async def listing(self) -> str:
        """What needs the operator, newest first."""
        mails = await self._store.needing_operator()
        if not mails:
            return INBOX_EMPTY
        total = await self._store.count_needing_operator()
        lines = [f"Inbox: {total} need you" + (f" (newest {len(mails)})" if total > len(mails) else "")]
        lines += [_line(m) for m in mails]
        lines.append("Open one with /inbox <id>; answer with /inbox reply <id>.")
        return "\n".join(lines)

    async def show(self, mail_id: int) -> str:
        """One message and the rest of its thread."""
        mail = await self._get(mail_id)
        r = mail.record
        head = [
            f"#{mail.id} from {_sender(mail)}" + (f" (Reply-To: {r.reply_to})" if r.reply_to else ""),
            f"Subject: {r.subject or '(no subject)'}",
            f"Date: {r.sent_at or mail.received_at}",
            f"Triage: {CLASS_LABELS.get(mail.mail_class or '', 'not sorted yet')}"
            + (f", {mail.urgency} urgency" if mail.urgency else ""),
        ]
        ours = await self._store.sent_for([r.in_reply_to, *reversed(r.references)])
        if ours is not None:
            head.append(f'Answers our email "{ours.subject}" to {", ".join(ours.recipients)}' + _origin(ours))
        if r.attachments:
            head.append(
                "Attachments: " + ", ".join(f"{n or '(unnamed)'} ({t}, {s:,} bytes)" for n, t, s in r.attachments)
            )
        body = r.body.strip()[:3000] if r.parsed else "(this message could not be read; it is kept as it came)"
        others = [m for m in await self._store.thread(mail.thread) if m.id != mail.id]
        thread = [f"  #{m.id} {_sender(m)}: {m.record.subject}" for m in others]
        return "\n".join([*head, "", body, *(["", "Earlier in this thread:", *thread] if thread else [])])

    async def reply(self, inbound: InboundMessage, args: str) -> str:
        """A threaded email card to the sender; the model drafts the body when none is given."""
        ref, _, text = args.partition("|")
        if not ref.strip().isdigit():
            raise UserFacingError(INBOX_USAGE)
        mail = await self._get(int(ref.strip()))
        r = mail.record
        if not r.from_addr:
            raise UserFacingError(INBOX_UNKNOWN)
        approval_id = approval_id_for(inbound.session_key, inbound.update_key) if inbound.update_key else None

        async def build() -> Any:
            body = text.strip() or await self._draft(mail)
            kind = self._service.registry.kind(EmailConnector.name)
            subject = r.subject if r.subject.lower().startswith("re:") else f"Re: {r.subject}".strip()
            fields = {
                "to": r.from_addr,
                "subject": subject if subject != "Re:" else "Re: your message",
                "body": body,
                "in_reply_to": r.message_id,
                "references": (*r.references, r.message_id)[-20:],
            }
            try:
                return kind.build(fields)
            except ActionError as exc:
                raise UserFacingError(str(exc)) from None

        proposal = await self._service.propose_once(approval_id, build, inbound.session_key, "command", inbound.sender)
        if proposal.approval is None:
            raise UserFacingError("Your policy forbids sending email.")
        await self._ui.show(proposal.approval.id, inbound.channel, inbound.chat_id, inbound.thread_id)
        return INBOX_REPLY_TO_DIFFERS.format(sender=r.from_addr, reply_to=r.reply_to) if r.reply_to else ""

    async def _draft(self, mail: StoredMail) -> str:
        if self._llm is None or not self._llm.configured:
            raise UserFacingError(INBOX_USAGE)
        r = mail.record
        quoted = f"From: {r.from_name} <{r.from_addr}>\nSubject: {r.subject}\n\n{r.body[:6000]}"
        messages = [
            {"role": "system", "content": load_prompt("inbox_reply")},
            {"role": "user", "content": f'<data source="email from {as_data(r.from_addr)} (untrusted)">\n'
             f"{as_data(quoted)}\n</data>"},
        ]  # fmt: skip
        try:
            reply = await self._llm.chat(messages, workflow=WORKFLOW)
        except (BudgetExceeded, ModelUnavailable):
            raise UserFacingError(INBOX_NO_DRAFT.format(id=mail.id)) from None
        return reply.content.strip() or "Thank you for your message."

    async def _get(self, mail_id: int) -> StoredMail:
        mail = await self._store.get(mail_id)
        if mail is None:
            raise UserFacingError(INBOX_UNKNOWN)
        return mail


def _origin(sent: SentMail) -> str:
    parts = [f"card {sent.approval_id}"] if sent.approval_id else []
    if sent.goal_id:
        parts.append(f"goal {sent.goal_id}" + (f", task {sent.task_id}" if sent.task_id else ""))
    return f" ({'; '.join(parts)})" if parts else ""


def _sender(mail: StoredMail) -> str:
    r = mail.record
    return f"{r.from_name} <{r.from_addr}>" if r.from_name else (r.from_addr or "(unknown sender)")


def _line(mail: StoredMail) -> str:
    label = CLASS_LABELS.get(mail.mail_class or "", "?")
    urgent = ", urgent" if mail.urgency == "high" else ""
    return f"#{mail.id} {_sender(mail)}: {mail.record.subject or '(no subject)'} [{label}{urgent}] {mail.summary or ''}"
