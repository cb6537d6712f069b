"""The record and profile tools on real stores (SQLite in a temp dir), called as the model calls them: by name
with JSON arguments through the tool box. Every change is a new version with its event; bad arguments and
refused writes come back as one error line and change nothing."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from graph.conversation.record_tools import GOAL_TOOLS, RECORD_TOOLS
from graph.conversation.tools import ToolBox, ToolContext
from memory.db import open_database
from memory.profile import ProfileStore
from memory.records import Records

BOX = ToolBox((*RECORD_TOOLS, *GOAL_TOOLS))


@asynccontextmanager
async def tool_context(tmp_path: Path) -> AsyncIterator[ToolContext]:
    async with open_database(tmp_path) as db:
        records, profile = Records(db), ProfileStore(db)
        await records.setup()
        await profile.setup()
        yield ToolContext(db, "rec:1001", "UTC", records=records, profile=profile)


async def call(ctx: ToolContext, tool: str, **args: object) -> str:
    return await BOX.run(ctx, tool, json.dumps(args))


async def test_a_contact_saved_then_updated_is_found_with_its_new_version(tmp_path: Path) -> None:
    async with tool_context(tmp_path) as ctx:
        saved = await call(ctx, "upsert_contact", name="Ana Lima", company="Acme", emails=["ana@acme.example"])
        contact_id = saved.split(": ", 2)[1]
        updated = await call(ctx, "upsert_contact", id=contact_id, notes="prefers mornings")
        found = await call(ctx, "find_contact", query="acme")
        logged = await call(ctx, "log_interaction", contact_id=contact_id, summary="called about the retainer")
        assert ctx.records is not None
        events = await ctx.db.events(kind=("interaction.logged",))
    assert saved.startswith("saved (version 1): ")
    assert updated == f"saved (version 2): {contact_id}: Ana Lima | Acme | ana@acme.example | notes: prefers mornings"
    assert found == f"{contact_id}: Ana Lima | Acme | ana@acme.example | notes: prefers mornings"
    assert logged.startswith("logged for ") and [e.payload["contact_id"] for e in events] == [contact_id]


async def test_bad_arguments_come_back_as_one_error_line_and_write_nothing(tmp_path: Path) -> None:
    async with tool_context(tmp_path) as ctx:
        not_json = await BOX.run(ctx, "save_todo", "{title: 'call Ana'")
        bad_status = await call(ctx, "save_todo", title="call Ana", status="someday")
        no_contact = await call(ctx, "log_interaction", contact_id="c-none", summary="x")
        nothing = await call(ctx, "find_contact", query="Ana")
        todos = await call(ctx, "list_todos", status="all")
    assert not_json.startswith("error: the arguments of save_todo are not valid JSON")
    assert bad_status.startswith("error: bad arguments for save_todo: ") and "\n" not in bad_status
    assert no_contact == "error: no contact with id c-none"
    assert nothing == "no contact matches 'Ana'"
    assert "call Ana" not in todos


async def test_the_model_cannot_write_a_profile_field_only_the_operator_sets(tmp_path: Path) -> None:
    async with tool_context(tmp_path) as ctx:
        assert ctx.profile is not None
        await ctx.profile.set("instructions", "never email on Sundays", "telegram:1001")
        refused = await call(ctx, "update_profile", field="instructions", value="email whenever you like")
        saved = await call(ctx, "update_profile", field="business", value="Ana's Bakery")
        profile = await ctx.profile.get()
    assert refused.startswith("error: ") and "instructions" in refused
    assert profile.values["instructions"] == "never email on Sundays"
    assert saved == "profile business saved" and profile.values["business"] == "Ana's Bakery"


async def test_a_draft_keeps_every_version_and_reads_back_the_newest(tmp_path: Path) -> None:
    async with tool_context(tmp_path) as ctx:
        first = await call(ctx, "save_draft", kind="email", title="Offer", body="Dear Ana, v1")
        draft_id = first.split("draft:", 1)[1].split(" ", 1)[0]
        await call(ctx, "save_draft", id=draft_id, kind="email", title="Offer", body="Dear Ana, v2")
        read = await call(ctx, "read_draft", id=f"draft:{draft_id}")
        missing = await call(ctx, "read_draft", id="draft:none")
    assert read.startswith(f"draft:{draft_id} version 2 (email) Offer") and read.endswith("Dear Ana, v2")
    assert missing == "error: no draft draft:none"


def test_a_tools_schema_is_made_once_and_each_caller_gets_its_own_copy() -> None:
    deal = next(t for t in GOAL_TOOLS if t.name == "upsert_deal")
    first = deal.schema()
    first["function"]["parameters"]["properties"].clear()  # a caller that changes what it was given
    again = deal.schema()
    assert again["function"]["name"] == "upsert_deal" and again["function"]["parameters"]["properties"]
    assert ToolBox([deal]).schemas() == [again]
