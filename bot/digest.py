"""The daily digest: built from the database, short enough for a phone, with the waiting cards."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bot.approval_ui import ApprovalUI, Send
from bot.commands.budget import BudgetCommands
from bot.messages import OutboundMessage
from connectors.amounts import decimals
from connectors.base import ActionError
from connectors.registry import Registry
from graph.errors import ModelUnavailable
from graph.goals.service import GoalService
from graph.models.llm import LLMClient
from graph.spend.budget import BudgetExceeded
from memory.approvals import ApprovalStore
from memory.control import ControlStore
from memory.db import Database, utcnow
from memory.mail import MailStore
from memory.records import Invoice, Records, Task
from prompts import load_prompt

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Digest:
    """The digest text and the approvals whose cards follow it."""

    text: str
    waiting: tuple[str, ...]


class DigestService:
    """Builds the digest and sends it to every operator's own chat."""

    def __init__(
        self,
        db: Database,
        approvals: ApprovalStore,
        control: ControlStore,
        budgets: BudgetCommands,
        llm: LLMClient,
        ui: ApprovalUI,
        send: Send,
        records: Records | None,
        registry: Registry,
        goals: GoalService | None = None,
        mail: MailStore | None = None,
        sections: Sequence[Callable[[], Awaitable[list[str]]]] = (),
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        """``sections``: more lines a feature adds (e.g. receivables aging), each built when the digest is;
        ``clock``: now (aware) for the calendar, what its date and "due within 3 days" count from."""
        self._db = db
        self._approvals = approvals
        self._control = control
        self._budgets = budgets
        self._llm = llm
        self._ui = ui
        self._send = send
        self._records = records
        self._registry = registry
        self._goals = goals
        self._mail = mail
        self._sections = tuple(sections)
        self._clock = clock

    async def build(self, since: datetime, reconcile: bool = True) -> Digest:
        """Everything since ``since``; uses the model only for the one-line suggestion."""
        if reconcile:
            await self._reconcile()
        done: list[str] = []
        problems: list[str] = []
        for event in await self._db.events(kind=("action.sent", "action.failed"), since=since, limit=100_000):
            row = await self._approvals.get(str(event.payload.get("approval_id", "")))
            what = self._summary(row.kind, row.action) if row else str(event.payload.get("kind"))
            if event.kind == "action.sent":
                done.append(f"- {what}")
            elif event.kind == "action.failed":
                problems.append(f"- failed: {what} ({event.payload.get('detail', '')})")
        for unknown in await self._approvals.outbox_in("unknown"):
            approval = await self._approvals.get(unknown.approval_id)
            what = self._summary(approval.kind, approval.action) if approval else unknown.kind
            problems.append(f"- unknown outcome: {what}")
        waiting = [pending.id for pending in await self._approvals.list_approvals("pending")]
        lines = [f"Digest for {self._clock():%a %d %b}"]
        lines += ["Done since the last digest:", *done] if done else ["Done since the last digest: nothing sent."]
        lines.append(f"Waiting for your approval: {len(waiting)}" + (" (cards below)" if waiting else ""))
        problems += await self._health()
        if problems:
            lines += ["Needs a look:", *problems]
        goal_lines, goal_cards = await self._active_goals()
        if goal_lines:
            lines += ["Goals:", *goal_lines]
            waiting += [card for card in goal_cards if card not in waiting]
        paid = await self._paid_since(since)
        if paid:
            lines += ["Paid since the last digest:", *paid]
        for section in self._sections:
            lines += await section()
        due = await self._due()
        if due:
            lines += ["Due within 3 days:", *due]
        inbox = await self._mail.count_needing_operator() if self._mail is not None else 0
        if inbox:
            lines.append(f"Inbox: {inbox} need you (/inbox)")
        lines.append(await self._budgets.spend_text())
        lines.append("Next step: " + await self._suggest("\n".join(lines), len(waiting), len(problems)))
        return Digest("\n".join(lines), tuple(waiting))

    async def _health(self) -> list[str]:
        """What the weekly health check found broken (a revoked token, a dead SMTP login...)."""
        last = await self._control.get("health.last")
        if not isinstance(last, dict):
            return []
        return [f"- health check {str(last.get('at', ''))[:10]}: {failure}" for failure in last.get("failed", [])]

    async def _active_goals(self) -> tuple[list[str], list[str]]:
        """Active goals with progress, and the cards they wait on."""
        if self._goals is None:
            return [], []
        lines, cards = [], []
        for goal in await self._goals.ledger.goals(("active", "verifying", "proposed")):
            tasks = await self._goals.ledger.tasks(goal.id, goal.runs) if goal.runs else []
            waiting = await self._goals.board.waiting_cards(goal)
            done = sum(t.state == "done" for t in tasks)
            lines.append(
                f"- {goal.id} {goal.text[:80]}: {done}/{len(tasks)} tasks done"
                + (f", {len(waiting)} card(s) wait for you" if waiting else "")
            )
            cards += [row.id for row in waiting]
        return lines, cards

    def _summary(self, kind: str, action: dict[str, Any]) -> str:
        try:
            found = self._registry.kind(kind)
            return found.summary(found.parse(action))
        except (ActionError, ValueError):
            return kind

    async def _reconcile(self) -> None:
        """Let every connector bring its records up to date (e.g. which invoices got paid) first."""
        for kind in self._registry:
            try:
                changes = await kind.reconcile()
            except Exception:
                log.exception("reconciling %s failed", kind.name)
                continue
            for change in changes:
                log.info("reconciled %s: %s", kind.name, change)

    async def _paid_since(self, since: datetime) -> list[str]:
        """Invoices recorded as paid since ``since``."""
        lines = []
        for event in await self._db.events(kind="record.upserted", since=since, limit=100_000):
            data = event.payload.get("data") or {}
            if event.payload.get("kind") == "invoice" and data.get("status") == "paid":
                amount = _amount(float(data.get("amount", 0)), str(data.get("currency", "")))
                lines.append(f"- invoice {data.get('number')} ({data.get('customer') or 'customer'}): {amount}")
        return lines

    async def _due(self) -> list[str]:
        """Open tasks and unpaid invoices due within three days (or overdue)."""
        if self._records is None:
            return []
        now = self._clock()
        horizon = (now + timedelta(days=3)).date()
        lines = []
        for record in await self._records.all("task"):
            task = record.data
            if isinstance(task, Task) and task.status == "open" and task.due and task.due <= horizon:
                lines.append(f"- task: {task.title} (due {task.due})")
        for record in await self._records.all("invoice"):
            invoice = record.data
            if (
                isinstance(invoice, Invoice)
                and invoice.status in ("draft", "sent")
                and invoice.due
                and invoice.due <= horizon
            ):
                late = " OVERDUE" if invoice.due < now.date() else ""
                lines.append(
                    f"- invoice {invoice.number}: {_amount(invoice.amount, invoice.currency)} (due {invoice.due}){late}"
                )
        return lines[:10]

    async def _suggest(self, digest: str, waiting: int, problems: int) -> str:
        if problems:
            return "check the actions that need a look (above)."
        if waiting:
            return f"decide the {waiting} waiting card(s)."
        if self._llm.available():
            prompt = load_prompt("digest_suggestion").format(digest=digest)
            try:
                reply = await self._llm.chat([{"role": "user", "content": prompt}], workflow="digest")
            except (ModelUnavailable, BudgetExceeded) as exc:
                log.info("digest suggestion without a model: %s", exc)
            else:
                if reply.content.strip():
                    return reply.content.strip().splitlines()[0][:300]
        return "tell me one goal for this week, and I'll keep track of it."

    async def deliver(self, targets: list[tuple[str, str, str | None]]) -> int:
        """Build the digest since the last one and send it, with its cards, to each target chat."""
        last = await self._control.get("digest.last_at")
        # Before "now": what the reconcile records (e.g. an invoice paid) belongs to this digest, not the next.
        await self._reconcile()
        now = utcnow()  # the event log's time, which "since the last digest" is measured in (not the calendar's)
        digest = await self.build(datetime.fromisoformat(last) if last else default_since(now), reconcile=False)
        delivered = 0
        for channel, chat_id, thread_id in targets:
            try:
                await self._send(OutboundMessage(channel, chat_id, digest.text, thread_id))
                for approval_id in digest.waiting:
                    await self._ui.show(approval_id, channel, chat_id, thread_id)
            except Exception:
                log.exception("digest could not be delivered to %s:%s", channel, chat_id)
            else:
                delivered += 1
        if delivered:  # else the next digest covers this period too: nobody has read it
            await self._control.put("digest.last_at", now.isoformat())
        await self._db.append_event("digest.sent", "coo", {"chats": delivered, "waiting": len(digest.waiting)})
        return delivered

    async def scheduled(self) -> None:
        """The daily job: every operator's own chat."""
        targets = await home_chats(self._control)
        if not targets:
            log.warning("digest: no operator chat known yet (write to me once, privately)")
            await self._reconcile()  # the records stay current (e.g. invoices paid) even with nobody to tell
            return
        await self.deliver(targets)


def default_since(now: datetime) -> datetime:
    """Without a previous digest, look back one day."""
    return now - timedelta(days=1)


async def home_chats(control: ControlStore) -> list[tuple[str, str, str | None]]:
    """Every operator's own chat (recorded when they last wrote to us privately)."""
    homes = await control.keys("home:")
    return sorted({(str(v[0]), str(v[1]), v[2]) for v in homes.values()})


def _amount(value: float, currency: str) -> str:
    """``1,200.50 EUR``, ``1,200 JPY``, ``1,200.500 KWD``: as many decimals as the currency has."""
    return f"{value:,.{decimals(currency)}f} {currency}"
