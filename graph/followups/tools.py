"""The model's follow-up tools: add one ("remind me to chase Ana about the proposal next week") and list the
open ones. They change only our own state; an email a follow-up leads to is still a card."""

from __future__ import annotations

from pydantic import BaseModel, Field

from graph.conversation.tools import NoArgs, Tool, ToolContext
from graph.errors import UserFacingError
from graph.followups.book import FollowupBook
from memory.followups import FollowupStore


class AddFollowupArgs(BaseModel):
    """Arguments of add_followup."""

    contact: str = Field(min_length=1, max_length=200, description="the contact's name or email address")
    when: str = Field(
        min_length=1,
        max_length=20,
        description="when: 3d (days), 2w (weeks), 2026-12-20, a weekday such as friday, today or tomorrow",
    )
    what: str = Field(min_length=1, max_length=500, description="what to follow up on, e.g. 'the proposal'")


def _book(ctx: ToolContext) -> FollowupBook:
    return FollowupBook(FollowupStore(ctx.db), ctx.records, ctx.timezone)


async def _add_followup(ctx: ToolContext, args: AddFollowupArgs) -> str:
    book = _book(ctx)
    try:
        added = await book.add(args.contact, args.when, args.what, "model")
    except UserFacingError as exc:
        return f"error: {exc}"
    return book.saved_text(added)


async def _list_followups(ctx: ToolContext, _: NoArgs) -> str:
    book = _book(ctx)
    found = await book.store.listing(limit=50)
    return "\n".join(book.line(f) for f in found) or "no open follow-ups"


FOLLOWUP_TOOLS: tuple[Tool, ...] = (
    Tool(
        "add_followup",
        "Remember to follow up with someone on a day: when it comes, an email card to them (threaded to the "
        "last email sent to them) or, without an address, a reminder to the operator. Tell the operator what "
        "was saved, with its #id and day.",
        AddFollowupArgs,
        _add_followup,
    ),
    Tool("list_followups", "List the open follow-ups: #id, due, contact, what.", NoArgs, _list_followups),
)
