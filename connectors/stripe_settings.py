"""Stripe's settings (``COO_STRIPE__*``): the key, the API root, the invoice terms, and how payment events
arrive (polled, or as signed webhooks). Read by the invoice connector and by the payment events' intake."""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator


class StripeSettings(BaseModel):
    """Stripe: a secret or restricted key; the API root (a test server in tests)."""

    api_key: SecretStr | None = None
    api_base_url: str = "https://api.stripe.com"
    timeout_s: float = Field(default=30.0, gt=0)
    due_days: int = Field(default=14, ge=1, le=365)
    events_poll_s: float = Field(default=60.0, gt=0)
    webhook_secret: SecretStr | None = None
    webhook_listen: str = ""

    @field_validator("webhook_secret")
    @classmethod
    def _whsec(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith("whsec_"):
            raise ValueError("must be a Stripe webhook signing secret (whsec_...)")
        return value

    @field_validator("webhook_listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        host, colon, port = value.rpartition(":")
        if value and (not colon or not host or not port.isdigit() or not 0 < int(port) < 65536):
            raise ValueError("must be host:port, e.g. 127.0.0.1:8471")
        return value

    @field_validator("api_base_url")
    @classmethod
    def _root(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("api_key")
    @classmethod
    def _key(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(("sk_", "rk_")):
            raise ValueError("must be a Stripe secret key (sk_...) or restricted key (rk_...)")
        return value

    @model_validator(mode="after")
    def _webhook_pair(self) -> StripeSettings:
        if bool(self.webhook_secret) != bool(self.webhook_listen):
            raise ValueError("webhook mode needs both COO_STRIPE__WEBHOOK_SECRET and COO_STRIPE__WEBHOOK_LISTEN")
        return self

    @property
    def configured(self) -> bool:
        """True when a key is set."""
        return self.api_key is not None
