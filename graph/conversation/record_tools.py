"""Tools over canonical records and the profile. They change only our own state (never the outside
world), so they run without a card; every change is versioned with its provenance event."""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel, Field

from graph.conversation.tools import NoArgs, Tool, ToolContext
from memory.profile import FIELDS, MODEL_WRITABLE, ProfileError
from memory.records import Contact, Deal, Draft, Record, RecordError, Task


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
    """Arguments of list_todos."""

    status: str = Field(default="open", pattern="^(open|done|all)$")


class UpsertTaskArgs(BaseModel):
    """Arguments of save_todo."""

    id: str | None = None
    title: str | None = None
    due: date | None = None
    status: str | None = Field(default=None, pattern="^(open|done)$")


class UpsertDealArgs(BaseModel):
    """Arguments of upsert_deal."""

    id: str | None = None
    title: str | None = None
    contact_id: str | None = None
    amount: float | None = Field(default=None, ge=0)
    currency: str | None = None
    stage: str | None = Field(default=None, pattern="^(lead|proposal|won|lost)$")


class SaveDraftArgs(BaseModel):
    """Arguments of save_draft."""

    id: str | None = Field(default=None, description="the draft's id to save a new version of; omit to create")
    title: str = Field(min_length=1, max_length=300)
    kind: str = Field(default="other", pattern="^(post|newsletter|proposal|email|other)$")
    body: str = Field(min_length=1, max_length=50_000)


class ReadDraftArgs(BaseModel):
    """Arguments of read_draft."""

    id: str = Field(min_length=1)


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


async def _list_deals(ctx: ToolContext, _: BaseModel) -> str:
    assert ctx.records is not None
    lines = []
    for record in await ctx.records.all("deal"):
        deal = record.data
        assert isinstance(deal, Deal)
        lines.append(
            f"{record.id}: [{deal.stage}] {deal.title} {deal.amount:.2f} {deal.currency} contact {deal.contact_id}"
        )
    return "\n".join(lines) or "no deals"


async def _upsert_deal(ctx: ToolContext, args: UpsertDealArgs) -> str:
    assert ctx.records is not None
    try:
        record = await ctx.records.upsert(
            "deal", args.model_dump(exclude_none=True, exclude={"id"}), "coo", record_id=args.id, session=ctx.session
        )
    except RecordError as exc:
        return f"error: {exc}"
    return f"deal saved: {record.id} (version {record.version})"


async def _save_draft(ctx: ToolContext, args: SaveDraftArgs) -> str:
    assert ctx.records is not None
    fields = {**args.model_dump(exclude={"id"}), "goal_id": ctx.goal_id}
    try:
        record = await ctx.records.upsert("draft", fields, "coo", record_id=args.id, session=ctx.session)
    except RecordError as exc:
        return f"error: {exc}"
    return f"draft saved: draft:{record.id} version {record.version}"


async def _read_draft(ctx: ToolContext, args: ReadDraftArgs) -> str:
    assert ctx.records is not None
    record = await ctx.records.get("draft", args.id.removeprefix("draft:"))
    if record is None:
        return f"error: no draft {args.id}"
    draft = record.data
    assert isinstance(draft, Draft)
    return f"draft:{record.id} version {record.version} ({draft.kind}) {draft.title}\n\n{draft.body}"


async def _update_profile(ctx: ToolContext, args: UpdateProfileArgs) -> str:
    assert ctx.profile is not None
    try:
        await ctx.profile.set(args.field, args.value, "coo")
    except ProfileError as exc:
        return f"error: {exc}"
    return f"profile {args.field} saved"


GOAL_TOOLS: tuple[Tool, ...] = (
    Tool("list_deals", "List deals (sales in progress).", NoArgs, _list_deals),
    Tool("upsert_deal", "Create a deal, or update one by id.", UpsertDealArgs, _upsert_deal),
    Tool("save_draft", "Save a draft (a new one, or a new version by id).", SaveDraftArgs, _save_draft),
    Tool("read_draft", "Read a saved draft by its id (draft:<id>).", ReadDraftArgs, _read_draft),
)

RECORD_TOOLS: tuple[Tool, ...] = (
    Tool("find_contact", "Find contacts by name, company or email.", FindContactArgs, _find_contact),
    Tool(
        "upsert_contact",
        "Create a contact, or update one by id (only the given fields change).",
        UpsertContactArgs,
        _upsert_contact,
    ),
    Tool("log_interaction", "Record that something happened with a contact.", LogInteractionArgs, _log_interaction),
    Tool(
        "list_todos",
        "List the operator's to-do items (open, done or all). Not goals: /goals lists those.",
        ListTasksArgs,
        _list_tasks,
    ),
    Tool(
        "save_todo",
        "Add an item to the operator's to-do list, or update one by id. Not a goal: for work over several steps "
        "use start_goal.",
        UpsertTaskArgs,
        _upsert_task,
    ),
    Tool(
        "update_profile",
        "Save a fact about the business: " + ", ".join(FIELDS[f] for f in MODEL_WRITABLE) + ".",
        UpdateProfileArgs,
        _update_profile,
    ),
)
