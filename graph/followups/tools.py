"""The model's follow-up tool: add one ("remind me to chase Ana about the proposal next week"). It changes only
our own state; an email a follow-up leads to is still a card. Listing them is /followups (and the digest): every
tool offered costs prompt tokens on every turn."""

from __future__ import annotations

from pydantic import BaseModel, Field

from graph.conversation.tools import Tool, ToolContext
from graph.errors import UserFacingError
from graph.followups.book import FollowupBook
from memory.followups import FollowupStore


class AddFollowupArgs(BaseModel):
    """Arguments of add_followup."""

    contact: str = Field(min_length=1, max_length=200, description="name or email")
    when: str = Field(min_length=1, max_length=20, description="3d, 2w, 2026-12-20, friday, tomorrow")
    what: str = Field(min_length=1, max_length=500, description="about what")


def _book(ctx: ToolContext) -> FollowupBook:
    return FollowupBook(FollowupStore(ctx.db), ctx.records, ctx.timezone, ctx.clock)


async def _add_followup(ctx: ToolContext, args: AddFollowupArgs) -> str:
    book = _book(ctx)
    try:
        added = await book.add(args.contact, args.when, args.what, "model")
    except UserFacingError as exc:
        return f"error: {exc}"
    return book.saved_text(added)


FOLLOWUP_TOOLS: tuple[Tool, ...] = (
    Tool(
        "add_followup",
        "Follow up with someone on a day (then: an email card, or a reminder). Tell the operator its #id and day.",
        AddFollowupArgs,
        _add_followup,
    ),
)
