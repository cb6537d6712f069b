"""A card rendered: its text and buttons, from the structured fields (never from model prose), with where a task's
card comes from and bidi controls shown, not obeyed; and the opaque button data a press carries back."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from connectors.base import ActionKind
from graph.buttons import Prefix
from memory.approvals import ApprovalRow

Verb = Literal["approve", "reject", "edit", "resend", "compensate"]
VERBS: dict[str, Verb] = {
    Prefix.APPROVE: "approve",
    Prefix.REJECT: "reject",
    Prefix.EDIT: "edit",
    Prefix.RESEND: "resend",
    Prefix.COMPENSATE: "compensate",
}


@dataclass(frozen=True)
class Card:
    """A platform-neutral card: text and (label, opaque data) buttons."""

    text: str
    buttons: tuple[tuple[str, str], ...] = ()


def button_data(verb: str, row: ApprovalRow) -> str:
    """Opaque, short callback data: ``<verb>:<id>:<nonce>`` (well under Telegram's 64 bytes)."""
    return f"{verb}:{row.id}:{row.nonce}"


def parse_button(data: str) -> tuple[Verb, str, str] | None:
    """Inverse of :func:`button_data`; None for anything malformed."""
    parts = data.split(":")
    if len(parts) != 3 or parts[0] not in VERBS or not all(parts[1:]) or len(data) > 64:
        return None
    return VERBS[parts[0]], parts[1], parts[2]


def render_card(
    kind: ActionKind[Any], row: ApprovalRow, status: str | None = None, buttons: tuple[tuple[str, str], ...] = ()
) -> Card:
    """The card, from the structured fields (never from model prose).

    Without a status it is the pending card (Approve / Edit / Reject); with one, the decided card
    with ``buttons`` given as (label, verb) pairs (Resend, Retry, Void...).
    """
    preview = kind.preview(kind.parse(row.action))
    shown = visible_controls(preview.render() + provenance(row.context))
    if status is None:
        expires = row.expires_at.strftime("%Y-%m-%d %H:%M UTC")
        text = f"{preview.title}\n\n{shown}\n\n(approval {row.id}, expires {expires})"
        verbs = (("Approve", Prefix.APPROVE), ("Edit", Prefix.EDIT), ("Reject", Prefix.REJECT))
        return Card(text, tuple((label, button_data(v, row)) for label, v in verbs))
    return Card(f"{status}\n\n{shown}\n\n(approval {row.id})", tuple((lb, button_data(v, row)) for lb, v in buttons))


def provenance(context: dict[str, Any]) -> str:
    """Where a task's card comes from, so the operator decides without opening anything else."""
    if not context.get("goal_id"):
        return ""
    lines = [f"\n\nProposed for goal {context['goal_id']}: {context.get('goal', '')}"]
    lines.append(f"by task {context.get('task', '?')} ({context.get('skill', '?')})")
    if context.get("reason"):
        lines.append(f"Why: {context['reason']}")
    for used in context.get("used", [])[:5]:
        lines.append(f"Used: {used}")
    return "\n".join(lines)


# Bidirectional controls: in a card they could make the text shown differ from the text sent (e.g. a
# right-to-left override reversing a subject or an amount). They are shown, not obeyed.
_INVISIBLE = re.compile("[\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def visible_controls(text: str) -> str:
    """``text`` with bidi controls replaced by a visible ``<U+XXXX>``."""
    return _INVISIBLE.sub(lambda m: f"<U+{ord(m.group()):04X}>", text)
