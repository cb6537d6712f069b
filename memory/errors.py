"""The root of solo-coo's own exceptions, and its two branches.

- :class:`UserFacingError`: its reason is written for the operator and shown as is (a chat reply, or one
  ``coo:`` line in the terminal).
- :class:`InternalError`: everything else of ours. A handler that does not expect it logs it once and
  gives the operator a short generic reply; some are caught and turned into an outcome (the outbox's
  ``TemporaryError``) or a reply on purpose (an ``ActionError``'s reason becomes a ``UserFacingError``
  in one place, ``graph.errors.user_facing``).

They live in the lowest layer so every layer's exceptions can sit under them. A class keeps its older base
(``ValueError``, ``RuntimeError``) as a second one, so what catches it is unchanged.
"""

from __future__ import annotations


class CooError(Exception):
    """Any of solo-coo's own exceptions."""


class UserFacingError(CooError):
    """An error whose reason is shown to the operator as is."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class InternalError(CooError):
    """An error of ours that is not shown to the operator as is."""
