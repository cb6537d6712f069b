"""The approval policy: a deterministic table in code plus operator settings. The model never decides."""

from __future__ import annotations

from collections.abc import Collection
from enum import Enum
from typing import Literal

from connectors.base import Action
from connectors.email import EmailAction


class Risk(Enum):
    """What happens to a proposed action."""

    DIRECT = "direct"
    APPROVAL = "approval"
    FORBIDDEN = "forbidden"


# Every outward action to a third party needs approval by default (I1).
DEFAULT_TABLE: dict[str, Risk] = {
    "email.send": Risk.APPROVAL,
    "payment.charge": Risk.APPROVAL,
    "publish.post": Risk.APPROVAL,
}

Tolerance = Literal["cautious", "balanced", "relaxed"]
TOLERANCES: tuple[Tolerance, ...] = ("cautious", "balanced", "relaxed")  # tightest first
# Where the operator's /policy choice is kept (the control store; only operator commands write it).
POLICY_RISK_KEY = "policy.risk"


def loosens(current: Tolerance, new: Tolerance) -> bool:
    """True when ``new`` lets more actions run without a card than ``current``."""
    return TOLERANCES.index(new) > TOLERANCES.index(current)


class Policy:
    """Decides per action whether it runs directly, needs approval, or is forbidden.

    ``relaxed`` lets email to addresses already emailed before run without a card; an address
    never seen before always needs approval; ``forbidden`` kinds can never be loosened. Unknown
    kinds need approval (fail closed).
    """

    def __init__(self, tolerance: Tolerance = "balanced", forbidden: Collection[str] = ()) -> None:
        self._tolerance = tolerance
        self._forbidden = frozenset(forbidden)

    @property
    def tolerance(self) -> Tolerance:
        """The risk tolerance this policy applies."""
        return self._tolerance

    def assess(self, action: Action, known_recipients: Collection[str] = ()) -> Risk:
        """The decision for one action."""
        if action.kind in self._forbidden:
            return Risk.FORBIDDEN
        base = DEFAULT_TABLE.get(action.kind, Risk.APPROVAL)
        if base is Risk.FORBIDDEN or self._tolerance != "relaxed":
            return base
        if isinstance(action, EmailAction):
            known = {r.lower() for r in known_recipients}
            if all(r.lower() in known for r in action.recipients):
                return Risk.DIRECT
        return base
