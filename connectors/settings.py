"""Settings owned by the connectors."""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator


class SMTPSettings(BaseModel):
    """Outgoing mail. Unset host means email is not configured."""

    host: str | None = None
    port: int = Field(default=587, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    from_addr: str | None = None
    security: Literal["none", "starttls", "tls"] = "starttls"
    timeout_s: float = Field(default=30.0, gt=0)

    @property
    def configured(self) -> bool:
        """True when a host and a sender address are set."""
        return bool(self.host and self.from_addr)


class OutboxSettings(BaseModel):
    """How approved actions are executed: retries with backoff on temporary errors."""

    max_attempts: int = Field(default=5, ge=1, le=50)
    backoff_base_s: float = Field(default=2.0, ge=0)
    backoff_max_s: float = Field(default=300.0, ge=0)
    poll_s: float = Field(default=1.0, gt=0)
    breaker_failures: int = Field(default=5, ge=1)
    breaker_window_s: float = Field(default=600.0, gt=0)
    breaker_cooldown_s: float = Field(default=300.0, gt=0)


class IMAPSettings(BaseModel):
    """The inbox the COO reads. Unset host means inbox reading is off."""

    host: str | None = None
    port: int = Field(default=993, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    security: Literal["tls", "starttls", "none"] = "tls"
    folders: list[str] = Field(default_factory=lambda: ["INBOX"])
    poll_s: float = Field(default=60.0, gt=0)
    timeout_s: float = Field(default=30.0, gt=0)
    after_triage: str = "none"
    """What intake does on the server once a message is triaged: ``none`` (read-only), ``seen`` (mark it read)
    or ``move:<folder>`` (move it there); opt-in, and safe to repeat after a crash."""

    @field_validator("after_triage")
    @classmethod
    def _after_triage(cls, value: str) -> str:
        value = value.strip()
        if value in ("none", "seen") or (value.startswith("move:") and value[5:].strip()):
            return value if value in ("none", "seen") else "move:" + value[5:].strip()
        raise ValueError("must be none, seen or move:<folder>, e.g. move:Archive")

    @model_validator(mode="after")
    def _not_into_a_read_folder(self) -> IMAPSettings:
        if self.move_to is not None and self.move_to in self.folders:
            raise ValueError(
                f"COO_IMAP__AFTER_TRIAGE moves mail to {self.move_to}, a folder it reads (COO_IMAP__FOLDERS): "
                "choose another folder"
            )
        return self

    @property
    def move_to(self) -> str | None:
        """The folder triaged mail is moved to (None unless ``after_triage`` is ``move:<folder>``)."""
        return self.after_triage[5:] if self.after_triage.startswith("move:") else None

    @field_validator("folders", mode="before")
    @classmethod
    def _folders(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = json.loads(value)
        if not isinstance(value, list) or not value or not all(isinstance(f, str) and f.strip() for f in value):
            raise ValueError('must be a JSON list of folder names, e.g. ["INBOX"]')
        return [f.strip() for f in value]

    @property
    def configured(self) -> bool:
        """True when a host is set."""
        return bool(self.host)
