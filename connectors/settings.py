"""Settings owned by the connectors."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field, SecretStr


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
