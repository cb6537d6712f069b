"""The approval policy: a deterministic table (each kind's own hints) plus operator settings. The model
never decides, and nothing it writes is read here (I1)."""

from __future__ import annotations

from collections.abc import Collection
from enum import Enum
from typing import Literal

from connectors.base import Action, PolicyHints
from graph.settings import ApprovalSettings
from memory.control import ControlStore


class Risk(Enum):
    """What happens to a proposed action."""

    DIRECT = "direct"
    APPROVAL = "approval"
    FORBIDDEN = "forbidden"


Tolerance = Literal["cautious", "balanced", "relaxed"]
TOLERANCES: tuple[Tolerance, ...] = ("cautious", "balanced", "relaxed")  # tightest first
# Where the operator's /policy choice is kept (the control store; only operator commands write it).
POLICY_RISK_KEY = "policy.risk"


def loosens(current: Tolerance, new: Tolerance) -> bool:
    """True when ``new`` lets more actions run without a card than ``current``."""
    return TOLERANCES.index(new) > TOLERANCES.index(current)


class Policy:
    """Decides per action whether it runs directly, needs approval, or is forbidden.

    Every outward action needs approval by default. Under ``relaxed``, a kind that allows it (email)
    runs without a card when every target already succeeded before; a target never seen before always
    needs one. ``forbidden`` kinds can never be loosened.
    """

    def __init__(self, tolerance: Tolerance = "balanced", forbidden: Collection[str] = ()) -> None:
        self._tolerance = tolerance
        self._forbidden = frozenset(forbidden)

    @property
    def tolerance(self) -> Tolerance:
        """The risk tolerance this policy applies."""
        return self._tolerance

    def assess(
        self, action: Action, hints: PolicyHints, targets: Collection[str] = (), known: Collection[str] = ()
    ) -> Risk:
        """The decision for one action. ``known``: targets this kind already reached successfully."""
        if action.kind in self._forbidden:
            return Risk.FORBIDDEN
        if not hints.needs_approval:
            return Risk.DIRECT
        if self._tolerance == "relaxed" and hints.relaxed_for_known_targets and targets:
            seen = {t.lower() for t in known}
            if all(t.lower() in seen for t in targets):
                return Risk.DIRECT
        return Risk.APPROVAL


async def current_tolerance(control: ControlStore, settings: ApprovalSettings) -> Tolerance:
    """The risk tolerance in force: the operator's /policy choice, else COO_APPROVALS__RISK_TOLERANCE."""
    chosen = await control.get(POLICY_RISK_KEY)
    return chosen if chosen in TOLERANCES else settings.risk_tolerance  # type: ignore[no-any-return]
