"""Tools through which the model proposes outward actions. They never execute anything: the proposal goes
to the policy, and then to an approval card or the outbox. The tools come from the registry of kinds."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from pydantic import BaseModel, ValidationError

from connectors.base import Action, ActionError, Context
from connectors.registry import Registry
from graph.conversation.schema_text import field_errors
from graph.errors import UserFacingError


async def build_action(registry: Registry, name: str, raw_args: str, ctx: Context) -> Action:
    """Parse an action tool call into a validated action; UserFacingError (shown to the model) when bad."""
    kind = registry.for_tool(name)
    if kind is None or kind.tool is None:
        raise UserFacingError(f"no action tool named {name!r}")
    try:
        args = kind.tool.args.model_validate(listed(kind.tool.args, json.loads(raw_args or "{}")))
    except json.JSONDecodeError as exc:
        raise UserFacingError(f"the arguments of {name} are not valid JSON ({exc.msg}); call it again") from None
    except ValidationError as exc:
        raise UserFacingError(f"bad arguments for {name}: {field_errors(exc)}") from None
    try:
        return await kind.from_tool(args, ctx)
    except ActionError as exc:
        raise UserFacingError(str(exc)) from None


def listed(model: type[BaseModel], data: Any) -> Any:
    """A single value where the schema wants a list becomes a list of one (``"to": "ana@example.org"``: small
    models often write one recipient so)."""
    if not isinstance(data, dict):
        return data
    properties = model.model_json_schema().get("properties", {})
    return {
        key: [value] if isinstance(value, str) and properties.get(key, {}).get("type") == "array" else value
        for key, value in data.items()
    }


def approval_id_for(session: str, *keys: str) -> str:
    """A deterministic approval id from what names the proposal (a delivery, or a turn, a round and a
    tool call), so a re-run of the proposing code finds its own row."""
    return hashlib.sha256("\x00".join((session, *keys)).encode()).hexdigest()[:12]
