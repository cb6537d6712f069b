"""The connector contract: preview, execute with an idempotency key, optional compensate."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import BaseModel


class TemporaryError(Exception):
    """The call did not happen and may succeed later (4xx SMTP, connection refused...)."""


class PermanentError(Exception):
    """The call did not happen and will not succeed as is (5xx SMTP, bad address...)."""


class AmbiguousOutcome(Exception):
    """The call may or may not have had its effect (e.g. connection lost after DATA). Never retried."""


@dataclass(frozen=True)
class Executed:
    """A successful execution: the provider's id for it (e.g. the Message-ID) and a short detail."""

    external_id: str
    detail: str


class Action(BaseModel):
    """An outward action's exact, final payload. Frozen: what was approved is what runs."""

    model_config = {"frozen": True, "extra": "forbid"}

    kind: str

    def digest(self) -> str:
        """SHA-256 over the canonical JSON of every field: recipients, amounts, body, URL."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class Connector(Protocol):
    """A side effect on the outside world."""

    kind: str

    def parse(self, payload: dict[str, Any]) -> Action:
        """Parse a stored payload back into this connector's action model."""
        ...

    def preview(self, action: Action) -> str:
        """Exactly what the approval card shows: every field that will be executed."""
        ...

    async def execute(self, action: Action, idempotency_key: str) -> Executed:
        """Do it once. Raises TemporaryError, PermanentError or AmbiguousOutcome."""
        ...
