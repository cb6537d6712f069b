"""The due check: sent emails with no reply get their automatic follow-up, replies cancel them, and each
follow-up whose time has come is proposed once (I7): an ``email.send`` card threaded to the email it follows
up on, or, without an address, a reminder to the operator.

A card's approval id is derived from the follow-up, and the follow-up is marked proposed after its card is
recorded: a crash in between finds the card again instead of proposing another. A machine asleep at due time
proposes each once on waking (a pass takes whatever is due, however late).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from connectors.base import Action, ActionError
from graph.approvals.service import ApprovalService
from graph.followups.book import FollowupBook
from graph.followups.settings import FollowupsSettings
from graph.followups.when import add_business_days
from memory.approvals import ApprovalRow
from memory.db import utcnow
from memory.followups import Followup, NewFollowup, Unanswered
from prompts import load_prompt, messages

log = logging.getLogger(__name__)

THREAD = "followups"
ORIGIN = "followups"
ACTOR = "coo"


@dataclass(frozen=True)
class Changed:
    """What a pass changed that the operator sees: cards withdrawn (with their status line)."""

    withdrawn: list[tuple[ApprovalRow, str]] = field(default_factory=list)
    cancelled: list[Followup] = field(default_factory=list)


def followup_approval_name(followup: Followup) -> str:
    """The name of a follow-up's card: proposing it again finds it (I7)."""
    seed = f"followup:{followup.id}:{followup.created_at.isoformat()}"
    return "fu" + hashlib.sha256(seed.encode()).hexdigest()[:14]


def followup_email(followup: Followup) -> dict[str, object]:
    """The email card's fields: to the follow-up's address, threaded to the email it follows up on."""
    if followup.subject:
        subject = followup.subject if followup.subject.lower().startswith("re:") else f"Re: {followup.subject}"
    else:
        subject = f"Following up: {followup.what}"
    name = followup.contact if followup.contact and followup.contact != followup.email else ""
    text = load_prompt("followup_email").format(
        subject=subject[:300], name=(name or followup.email.split("@")[0]).split()[0], what=followup.what
    )
    head, _, body = text.partition("\n\n")
    fields: dict[str, object] = {"to": followup.email, "subject": head.removeprefix("Subject:").strip(), "body": body}
    if followup.message_id:
        fields["in_reply_to"] = followup.message_id
        fields["references"] = (*followup.refs, followup.message_id)[-20:]
    return fields


class DueFollowups:
    """One due check at a time (the loop holds a lock); every step is safe to run again after a crash."""

    def __init__(
        self,
        book: FollowupBook,
        approvals: ApprovalService,
        settings: FollowupsSettings,
        timezone: str,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._book = book
        self._store = book.store
        self._approvals = approvals
        self._settings = settings
        self._zone = timezone
        self._clock = clock

    @property
    def book(self) -> FollowupBook:
        """Adding, listing and closing follow-ups."""
        return self._book

    async def check_due(self) -> Changed:
        """One pass: new automatic follow-ups, replies applied, settled cards closed, due ones proposed."""
        await self.add_automatic()
        changed = await self.replies_seen()
        for followup_id, state in dict(await self._store.settled_cards()).items():
            await self._store.close(followup_id, "done" if state == "done" else "cancelled")
        for followup in await self._store.due(self._clock()):
            if followup.source == "auto" and followup.message_id and await self._store.replied(followup.message_id):
                if (closed := await self._store.close(followup.id, "cancelled")) is not None:
                    changed.cancelled.append(closed)
                continue
            await self._propose(followup)
        return changed

    async def add_automatic(self) -> int:
        """An automatic follow-up for each email sent (through an approved card) with no follow-up yet, due
        ``reply_wait_days`` business days after it was sent."""
        wait = self._settings.reply_wait_days
        if wait <= 0:
            return 0
        unanswered = await self._store.unanswered(await self._store.auto_since())
        return await self._store.add_auto([await self._automatic(u, wait) for u in unanswered if u.recipients])

    async def _automatic(self, sent: Unanswered, wait: int) -> NewFollowup:
        email = sent.recipients[0]
        day = sent.sent_at.astimezone(ZoneInfo(self._zone)).strftime("%d %b")
        name = await self._book.name_of(email)
        what = messages.FOLLOWUP_AUTO_WHAT.format(subject=sent.subject, day=day)
        due = add_business_days(sent.sent_at, wait, self._zone)
        return NewFollowup(name, what, due, "auto", email, sent.message_id, sent.subject, sent.refs)

    async def replies_seen(self) -> Changed:
        """Cancel the automatic follow-ups that mail stored since the last look answers (its card, if pending,
        is withdrawn). Cheap: it reads only mail stored since then."""
        changed = Changed()
        after = await self._store.reply_cursor()
        while True:
            answered, last = await self._store.replies_since(after)
            if last == after:
                return changed
            for followup in await self._store.answered(answered):
                await self._cancel_replied(followup, changed)
            await self._store.set_reply_cursor(last)
            after = last

    async def _cancel_replied(self, followup: Followup, changed: Changed) -> None:
        if followup.approval_id:
            row = await self._approvals.store.get(followup.approval_id)
            if row is not None and row.state == "pending" and (gone := await self._approvals.withdraw(row, "inbox")):
                text = messages.FOLLOWUP_REPLIED.format(contact=self._book.contact_text(followup))
                changed.withdrawn.append((gone, text))
        if (closed := await self._store.close(followup.id, "cancelled")) is not None:
            changed.cancelled.append(closed)

    async def _propose(self, followup: Followup) -> None:
        approval_id = await self._card(followup) if followup.email else None
        await self._store.mark_proposed(followup.id, approval_id)

    async def _card(self, followup: Followup) -> str | None:
        """The card's approval id; None when no card can be made (email not configured, or the policy
        forbids sending email): the operator is reminded instead."""

        async def build() -> Action:
            return self._approvals.kind("email.send").build(followup_email(followup))

        try:
            proposal = await self._approvals.propose_once(
                followup_approval_name(followup), build, THREAD, ORIGIN, ACTOR
            )
        except ActionError as exc:
            log.warning("follow-up #%d: no card (%s); the operator is reminded instead", followup.id, exc)
            return None
        return proposal.approval.id if proposal.approval is not None else None

    async def to_deliver(self) -> list[tuple[Followup, ApprovalRow | None]]:
        """Proposed follow-ups not shown yet: each with its card (None: a reminder). A card decided meanwhile
        (approved by policy, or after a crash) is not shown again."""
        found = []
        for followup in await self._store.undelivered():
            row = await self.card(followup.approval_id) if followup.approval_id else None
            found.append((followup, row))
        return found

    async def card(self, approval_id: str) -> ApprovalRow | None:
        """A follow-up's card as stored now (where it was shown)."""
        return await self._approvals.store.get(approval_id)

    def reminder_text(self, followup: Followup) -> str:
        """The reminder the operator gets for a follow-up without a card."""
        contact = self._book.contact_text(followup)
        return messages.FOLLOWUP_REMINDER.format(what=followup.what, contact=contact, id=followup.id)

    async def due_today(self) -> list[str]:
        """The digest's part: follow-ups due today, in the operator's zone."""
        tz = ZoneInfo(self._zone)
        start = datetime.combine(self._clock().astimezone(tz).date(), datetime.min.time(), tzinfo=tz)
        found = await self._store.between(start, start + timedelta(days=1))
        return [messages.FOLLOWUPS_DUE_TODAY, *(f"- {self._book.line(f)}" for f in found)] if found else []
