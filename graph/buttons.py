"""Every button's data is ``<prefix>:<rest>``; the prefix says who answers the press. The prefixes live here,
once: two features cannot claim the same one (``@unique``), and a press is routed by a name that the
module making the button and the module answering it both import, not by a string each keeps a copy of."""

from __future__ import annotations

from enum import StrEnum, unique


@unique
class Prefix(StrEnum):
    """Who answers a press."""

    APPROVE = "ap"
    REJECT = "rj"
    EDIT = "ed"
    RESEND = "rs"
    COMPENSATE = "cp"
    """The five verbs of an approval card (graph/approvals.py), answered by the approval UI."""
    BUDGET = "bu"
    POLICY = "po"
    GOAL = "gl"
    MCP = "mc"
    APPROVE_ALL = "aa"
    """Same-day payment reminders approved together (bot/approve_all.py), each card still checked on its own."""


def encode(prefix: Prefix, *parts: str) -> str:
    """``<prefix>:<part>:<part>...``: a button's opaque data."""
    return ":".join((prefix.value, *parts))


def prefix_of(data: str | None) -> str:
    """The prefix a press's data begins with ("" for none)."""
    return (data or "").split(":", 1)[0]
