"""Errors the coordinator distinguishes, and the one place an action's refusal becomes a reply."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from connectors.base import ActionError
from memory.errors import CooError, InternalError, UserFacingError

__all__ = ["CooError", "InternalError", "ModelUnavailable", "UserFacingError", "user_facing"]


class ModelUnavailable(InternalError):
    """The model endpoint could not be reached or kept failing after retries."""


@contextmanager
def user_facing() -> Iterator[None]:
    """An ``ActionError`` raised inside (a proposal or an edit that cannot become an action; its message is
    written for the operator) comes out as a ``UserFacingError`` with that reason."""
    try:
        yield
    except ActionError as exc:
        raise UserFacingError(str(exc)) from None
