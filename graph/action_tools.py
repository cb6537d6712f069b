"""Tools through which the model proposes outward actions. They never execute anything: the
proposal goes to the policy, and then to an approval card or the outbox."""

from __future__ import annotations

import hashlib
import json
from functools import cache
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from connectors.base import Action
from graph.approvals import email_from_fields
from graph.errors import UserFacingError
from memory.records import Records


class SendEmailArgs(BaseModel):
    """Arguments of send_email."""

    to: list[str] = Field(min_length=1, description="recipient email addresses")
    cc: list[str] = Field(default_factory=list, description="copy recipients")
    subject: str = Field(min_length=1)
    body: str = Field(min_length=1, description="the full plain-text body, signed as the operator")


ACTION_TOOLS: dict[str, tuple[str, type[BaseModel]]] = {
    "send_email": (
        "Propose an email. The operator sees the exact email on a card and must approve it before anything is sent.",
        SendEmailArgs,
    ),
}


@cache
def action_schemas() -> list[dict[str, Any]]:
    """OpenAI tool schemas for the action tools."""
    out = []
    for name, (description, model) in ACTION_TOOLS.items():
        params = model.model_json_schema()
        params.pop("title", None)
        out.append({"type": "function", "function": {"name": name, "description": description, "parameters": params}})
    return out


async def resolve_recipients(names: list[str], records: Records | None) -> list[str]:
    """Addresses stay; names are looked up in contacts. Ambiguous or unknown names are an error that
    tells the model to ask the operator (it never guesses an address)."""
    out = []
    for item in names:
        if "@" in item or records is None:
            out.append(item)
            continue
        found = [r for r in await records.find_contacts(item) if getattr(r.data, "emails", None)]
        if len(found) == 1:
            out.append(found[0].data.emails[0])  # type: ignore[attr-defined]
        elif not found:
            raise UserFacingError(f"no contact named {item!r} has an email address; ask the operator for it")
        else:
            options = "; ".join(f"{r.data.name} <{r.data.emails[0]}>" for r in found[:5])  # type: ignore[attr-defined]
            raise UserFacingError(f"{item!r} is ambiguous ({options}); ask the operator which one")
    return out


async def build_action(name: str, raw_args: str, email_from: str | None, records: Records | None = None) -> Action:
    """Parse a tool call into a validated action; UserFacingError (shown to the model) when bad."""
    entry = ACTION_TOOLS.get(name)
    if entry is None:
        raise UserFacingError(f"no action tool named {name!r}")
    try:
        args = entry[1].model_validate(json.loads(raw_args or "{}"))
    except (json.JSONDecodeError, ValidationError) as exc:
        raise UserFacingError(f"bad arguments for {name}: {str(exc)[:300]}") from None
    assert isinstance(args, SendEmailArgs)
    to = await resolve_recipients(args.to, records)
    cc = await resolve_recipients(args.cc, records)
    return email_from_fields(
        {"to": ",".join(to), "cc": ",".join(cc), "subject": args.subject, "body": args.body}, email_from
    )


def approval_id_for(session: str, tool_call_id: str) -> str:
    """A deterministic approval id, so a re-run of the proposing node finds its own row."""
    return hashlib.sha256(f"{session}\x00{tool_call_id}".encode()).hexdigest()[:12]
