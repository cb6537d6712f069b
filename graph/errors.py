"""Errors the coordinator distinguishes."""

from __future__ import annotations


class UserFacingError(Exception):
    """An error whose reason is shown to the operator as is."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class ModelUnavailable(Exception):
    """The model endpoint could not be reached or kept failing after retries."""
