"""Tools over canonical records and the profile. They change only our own state (never the outside
world), so they run without a card; every change is versioned with its provenance event."""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, Field

from graph.tools import Tool, ToolContext
from memory.profile import FIELDS, MODEL_WRITABLE, ProfileError
from memory.records import Contact, Record, RecordError, Task


class FindContactArgs(BaseModel):
    """Arguments of find_contact."""

    query: str = Field(min_length=1, max_length=200, description="a name, company or email")


class UpsertContactArgs(BaseModel):
    """Arguments of upsert_contact."""

    id: str | None = Field(default=None, description="the contact's id to update; omit to create")
    name: str | None = None
    company: str | None = None
    emails: list[str] | None = None
    phone: str | None = None
    notes: str | None = None


class LogInteractionArgs(BaseModel):
    """Arguments of log_interaction."""

    contact_id: str
    summary: str = Field(min_length=1, max_length=2000)


class ListTasksArgs(BaseModel):
    """Arguments of list_tasks."""

    status: str = Field(default="open", pattern="^(open|done|all)$")


class UpsertTaskArgs(BaseModel):
    """Arguments of upsert_task."""

    id: str | None = None
    title: str | None = None
    due: date | None = None
    status: str | None = Field(default=None, pattern="^(open|done)$")


class UpdateProfileArgs(BaseModel):
    """Arguments of update_profile."""

    field: str = Field(description="one of: " + ", ".join(MODEL_WRITABLE))
    value: str = Field(max_length=1000)


def render_contact(record: Record) -> str:
    """One line per contact, with its id."""
    c = record.data
    assert isinstance(c, Contact)
    parts = [c.name] + ([c.company] if c.company else []) + [", ".join(c.emails) or "no email"]
    return f"{record.id}: " + " | ".join(parts) + (f" | notes: {c.notes[:200]}" if c.notes else "")


async def _find_contact(ctx: ToolContext, args: FindContactArgs) -> str:
    assert ctx.records is not None
    found = await ctx.records.find_contacts(args.query)
    return "\n".join(render_contact(r) for r in found[:10]) if found else f"no contact matches {args.query!r}"


async def _upsert_contact(ctx: ToolContext, args: UpsertContactArgs) -> str:
    assert ctx.records is not None
    fields = args.model_dump(exclude_none=True, exclude={"id"})
    try:
        record = await ctx.records.upsert("contact", fields, "coo", record_id=args.id, session=ctx.session)
    except RecordError as exc:
        return f"error: {exc}"
    return f"saved (version {record.version}): {render_contact(record)}"


async def _log_interaction(ctx: ToolContext, args: LogInteractionArgs) -> str:
    assert ctx.records is not None
    record = await ctx.records.get("contact", args.contact_id)
    if record is None:
        return f"error: no contact with id {args.contact_id}"
    await ctx.db.append_event(
        "interaction.logged", "coo", {"contact_id": args.contact_id, "summary": args.summary}, session=ctx.session
    )
    return f"logged for {render_contact(record)}"


async def _list_tasks(ctx: ToolContext, args: ListTasksArgs) -> str:
    assert ctx.records is not None
    lines = []
    for record in await ctx.records.all("task"):
        task = record.data
        assert isinstance(task, Task)
        if args.status in ("all", task.status):
            lines.append(f"{record.id}: [{task.status}] {task.title}" + (f" (due {task.due})" if task.due else ""))
    return "\n".join(lines) or "no tasks"


async def _upsert_task(ctx: ToolContext, args: UpsertTaskArgs) -> str:
    assert ctx.records is not None
    try:
        record = await ctx.records.upsert(
            "task",
            args.model_dump(exclude_none=True, exclude={"id"}, mode="json"),
            "coo",
            record_id=args.id,
            session=ctx.session,
        )
    except RecordError as exc:
        return f"error: {exc}"
    return f"task saved: {record.id} (version {record.version})"


async def _update_profile(ctx: ToolContext, args: UpdateProfileArgs) -> str:
    assert ctx.profile is not None
    try:
        await ctx.profile.set(args.field, args.value, "coo")
    except ProfileError as exc:
        return f"error: {exc}"
    return f"profile {args.field} saved"


RECORD_TOOLS: tuple[Tool, ...] = (
    Tool("find_contact", "Find contacts by name, company or email.", FindContactArgs, _find_contact),
    Tool(
        "upsert_contact",
        "Create a contact, or update one by id (only the given fields change).",
        UpsertContactArgs,
        _upsert_contact,
    ),
    Tool("log_interaction", "Record that something happened with a contact.", LogInteractionArgs, _log_interaction),
    Tool("list_tasks", "List tasks (open, done or all).", ListTasksArgs, _list_tasks),
    Tool("upsert_task", "Create a task, or update one by id.", UpsertTaskArgs, _upsert_task),
    Tool(
        "update_profile",
        "Save a fact about the business: " + ", ".join(FIELDS[f] for f in MODEL_WRITABLE) + ".",
        UpdateProfileArgs,
        _update_profile,
    ),
)
