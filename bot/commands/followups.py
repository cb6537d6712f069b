"""Follow-ups in chat, without a model: ``/followup <contact or email> <when> | <what>``, ``/followups``,
``/followup done <id>``, ``/followup cancel <id>``."""

from __future__ import annotations

from typing import Literal

from bot.commands.router import CommandRouter
from bot.messages import InboundMessage
from graph.errors import UserFacingError
from graph.followups.book import FollowupBook
from prompts import messages

LISTED = 30


class FollowupCommands:
    """``/followup`` and ``/followups``."""

    def __init__(self, book: FollowupBook) -> None:
        self._book = book

    def register(self, router: CommandRouter) -> None:
        """Add both commands."""
        router.add(
            "followup",
            "Follow up later: /followup <contact or email> <when> | <what> (3d, 2w, 2026-12-20, friday)",
            self.followup,
            confidential=True,
        )
        router.add("followups", "Open follow-ups: id, due, contact, what", self.listing, confidential=True)

    async def followup(self, inbound: InboundMessage, args: str) -> str:
        """Add one, or mark one done or cancelled."""
        words = args.split()
        if len(words) == 2 and words[0].lower() in ("done", "cancel") and "|" not in args:
            followup_id = _id(words[1])
            state: Literal["done", "cancelled"] = "done" if words[0].lower() == "done" else "cancelled"
            closed = await self._book.close(followup_id, state)
            return messages.FOLLOWUP_MARKED.format(
                id=closed.id, what=closed.what, contact=self._book.contact_text(closed), state=state
            )
        head, bar, what = args.partition("|")
        parts = head.split()
        if not bar or len(parts) < 2 or not what.strip():
            raise UserFacingError(messages.FOLLOWUP_USAGE)
        added = await self._book.add(" ".join(parts[:-1]), parts[-1], what, "manual")
        return self._book.saved_text(added)

    async def listing(self, inbound: InboundMessage, args: str) -> str:
        """The open ones, soonest first."""
        found = await self._book.store.listing(limit=LISTED)
        if not found:
            return messages.FOLLOWUPS_NONE
        total = await self._book.store.count()
        lines = [messages.FOLLOWUPS_HEAD.format(count=total), *(self._book.line(f) for f in found)]
        if total > len(found):
            lines.append(messages.FOLLOWUPS_MORE.format(count=total - len(found)))
        return "\n".join(lines)


def _id(text: str) -> int:
    digits = text.removeprefix("#")
    if not digits.isdigit() or len(digits) > 12:
        raise UserFacingError(messages.FOLLOWUP_USAGE)
    return int(digits)
