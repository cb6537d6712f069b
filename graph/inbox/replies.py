"""Goals wait for replies: a task whose skill awaits answers and whose email cards were sent waits
(``waiting_reply``) until an answer from one of the people it wrote to arrives, or until the deadline
(``COO_FOLLOWUPS__REPLY_WAIT_DAYS`` business days). Either wakes it (back to ``ready``); its next attempt
gets the replies only as quoted data naming their origin (I8), or is told that no reply came.

Replies are linked to the email they answer when intake stores them (In-Reply-To / References, in the same
transaction), and handed to the task in the transaction that wakes it, so a crash at any point neither
loses a reply nor wakes the task twice for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from memory.db import Database
from memory.mail import SentMail
from memory.mail_replies import MailReplies, Reply
from memory.tasks import Task, TaskLedger, TransitionRefused

QUOTE_CHARS = 4_000
"""How much of one reply's text a prompt quotes."""


def add_business_days(start: datetime, days: int) -> datetime:
    """``start`` moved on by ``days`` weekdays (Saturday and Sunday do not count)."""
    moved, left = start, days
    while left > 0:
        moved += timedelta(days=1)
        if moved.weekday() < 5:
            left -= 1
    return moved


def quoted(replies: Sequence[Reply]) -> str:
    """Replies as quoted text, each between lines that name where it came from; every line of the email starts
    with ``> `` so nothing in it reads as ours. Goes inside a ``<data>`` block (escape it with ``as_data``)."""
    blocks = []
    for reply in replies:
        r, ours = reply.mail.record, reply.answers
        origin = _plain(
            f"email #{reply.mail.id} from {r.from_addr}, received {reply.mail.received_at[:16]}, answering our "
            f'email "{ours.subject}" to {", ".join(ours.recipients)} (card {ours.approval_id})'
        )
        text = r.body[:QUOTE_CHARS] + (" [cut]" if len(r.body) > QUOTE_CHARS else "")
        lines = "\n".join("> " + line for line in (text.splitlines() or [""]))
        head = f"--- begin {origin} (untrusted text from outside) ---"
        blocks.append(f"{head}\n{lines}\n--- end email #{reply.mail.id} ---")
    return "\n".join(blocks)


def _plain(text: str) -> str:
    """One line, no markup characters (an origin line is ours; what the sender chose cannot break it)."""
    return " ".join(text.replace("<", "(").replace(">", ")").replace("`", "'").split())[:400]


class ReplyWaits:
    """Puts tasks into ``waiting_reply`` and wakes them; renders replies for a task's prompt and the verifier."""

    def __init__(self, db: Database, ledger: TaskLedger, mail: MailReplies, wait_days: int) -> None:
        self._db = db
        self._ledger = ledger
        self._mail = mail
        self._days = wait_days

    async def start(self, task: Task, sent_cards: Sequence[str], notes: list[str], now: datetime) -> bool:
        """A waiting_approval task whose ``sent_cards`` include emails waits for their answers (its stretch is
        over, as when it goes back to ready). False when none of them was an email: the caller resumes it."""
        sent = [s for s in await self._mail.sent_for_task(task.id) if s.approval_id in sent_cards]
        if not sent:
            return False
        due = add_business_days(now, self._days)
        to = ", ".join(dict.fromkeys(r for s in sent for r in s.recipients))
        note = f"emails sent to {to}; waiting for a reply until {due:%Y-%m-%d %H:%M} UTC"
        try:
            await self._ledger.move(
                task.id,
                "waiting_approval",
                "waiting_reply",
                notes=[*notes, note],
                waiting_on=[],
                next_try_at=due,
                resumes=task.resumes + 1,
            )
        except TransitionRefused:
            return True  # moved meanwhile (the goal was cancelled): nothing to resume either
        return True

    async def wake(self, now: datetime) -> list[Task]:
        """Wake each waiting task that got a reply (from someone it wrote to) or whose deadline passed."""
        woken = []
        for task in await self._ledger.in_state("waiting_reply"):
            replies = [r for r in await self._mail.replies_for("task_id", task.id) if r.from_recipient]
            fresh = [r for r in replies if not r.delivered]
            if fresh:
                notes = [f"reply from {r.mail.record.from_addr} (email #{r.mail.id}): see Replies" for r in fresh]
            elif task.next_try_at <= now:
                notes = [f"no reply came from {', '.join(await self.awaited(task))} by {now:%Y-%m-%d}: follow up "
                         "(propose a new email) or finish"]  # fmt: skip
            else:
                continue
            try:
                async with self._db.transaction() as tx:
                    moved = await self._ledger.move(
                        task.id, "waiting_reply", "ready", tx=tx, notes=[*task.notes, *notes], next_try_at=now
                    )
                    await self._mail.mark_delivered(tx, [r.mail.id for r in fresh])
            except TransitionRefused:
                continue
            woken.append(moved)
        return woken

    async def awaited(self, task: Task) -> list[str]:
        """Who the task wrote to and has not answered yet."""
        answered = {r.mail.record.from_addr.lower() for r in await self._mail.replies_for("task_id", task.id)}
        sent: list[SentMail] = await self._mail.sent_for_task(task.id)
        return list(dict.fromkeys(r for s in sent for r in s.recipients if r.lower() not in answered))

    async def for_task(self, task_id: str) -> str:
        """The replies to a task's emails, quoted ("" when none)."""
        return quoted([r for r in await self._mail.replies_for("task_id", task_id) if r.from_recipient])

    async def for_goal(self, goal_id: str) -> str:
        """The replies to a goal's emails, quoted, for the verifier ("" when none)."""
        return quoted([r for r in await self._mail.replies_for("goal_id", goal_id) if r.from_recipient])
