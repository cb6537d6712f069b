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


def build_action(name: str, raw_args: str, email_from: str | None) -> Action:
    """Parse a tool call into a validated action; UserFacingError (shown to the model) when bad."""
    entry = ACTION_TOOLS.get(name)
    if entry is None:
        raise UserFacingError(f"no action tool named {name!r}")
    try:
        args = entry[1].model_validate(json.loads(raw_args or "{}"))
    except (json.JSONDecodeError, ValidationError) as exc:
        raise UserFacingError(f"bad arguments for {name}: {str(exc)[:300]}") from None
    assert isinstance(args, SendEmailArgs)
    return email_from_fields(
        {"to": ",".join(args.to), "cc": ",".join(args.cc), "subject": args.subject, "body": args.body}, email_from
    )


def approval_id_for(session: str, tool_call_id: str) -> str:
    """A deterministic approval id, so a re-run of the proposing node finds its own row."""
    return hashlib.sha256(f"{session}\x00{tool_call_id}".encode()).hexdigest()[:12]
