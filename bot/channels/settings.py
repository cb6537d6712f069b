"""The chat channels' settings: Telegram (polling or webhook) and Slack (Socket Mode or HTTP).

Read as ``COO_TELEGRAM__*`` and ``COO_SLACK__*`` through the settings root, ``bot/settings.py``.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator

_LISTEN_RE = re.compile(r"^[^:\s]*:\d{1,5}$")


def _check_listen(value: str | None) -> str | None:
    if value in (None, ""):
        return None
    assert value is not None
    if not _LISTEN_RE.match(value) or int(value.rpartition(":")[2]) > 65535:
        raise ValueError("must be host:port, e.g. 0.0.0.0:8443")
    return value


def split_listen(value: str) -> tuple[str, int]:
    """``"host:port"`` (already validated) -> ``(host, port)``; an empty host means every interface."""
    host, _, port = value.rpartition(":")
    return host or "0.0.0.0", int(port)


class TelegramSettings(BaseModel):
    """Telegram bot: long polling unless a webhook URL is set."""

    token: SecretStr | None = None
    api_base_url: str = "https://api.telegram.org"
    webhook_url: str | None = None
    webhook_secret: SecretStr | None = None
    webhook_listen: str = "0.0.0.0:8443"
    poll_timeout_s: float = Field(default=10.0, ge=0)

    @field_validator("api_base_url")
    @classmethod
    def _root(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("webhook_url")
    @classmethod
    def _hook(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        assert value is not None
        if not value.startswith(("https://", "http://")):
            raise ValueError("must be an https:// URL")
        return value

    @field_validator("webhook_listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        checked = _check_listen(value)
        return checked or "0.0.0.0:8443"

    @model_validator(mode="after")
    def _secret_with_webhook(self) -> TelegramSettings:
        if self.webhook_url and not self.webhook_secret:
            raise ValueError("COO_TELEGRAM__WEBHOOK_SECRET is required when a webhook URL is set")
        return self

    @property
    def configured(self) -> bool:
        """True when a bot token is set."""
        return self.token is not None

    @property
    def webhook_address(self) -> tuple[str, int]:
        """Where the webhook server listens."""
        return split_listen(self.webhook_listen)


class SlackSettings(BaseModel):
    """Slack app: Socket Mode with an app token, HTTP mode with a signing secret."""

    bot_token: SecretStr | None = None
    app_token: SecretStr | None = None
    signing_secret: SecretStr | None = None
    http_listen: str = "0.0.0.0:3000"
    api_base_url: str = "https://slack.com/api/"

    @field_validator("api_base_url")
    @classmethod
    def _root(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value if value.endswith("/") else value + "/"

    @field_validator("http_listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        return _check_listen(value) or "0.0.0.0:3000"

    @model_validator(mode="after")
    def _mode(self) -> SlackSettings:
        if self.bot_token and not (self.app_token or self.signing_secret):
            raise ValueError("set COO_SLACK__APP_TOKEN (Socket Mode) or COO_SLACK__SIGNING_SECRET (HTTP mode)")
        if self.app_token and not self.app_token.get_secret_value().startswith("xapp-"):
            raise ValueError("COO_SLACK__APP_TOKEN must be an app-level token starting with xapp-")
        return self

    @property
    def configured(self) -> bool:
        """True when a bot token is set."""
        return self.bot_token is not None

    @property
    def http_address(self) -> tuple[str, int]:
        """Where HTTP mode listens."""
        return split_listen(self.http_listen)

    @property
    def socket_mode(self) -> bool:
        """Socket Mode is the default whenever an app token is present."""
        return self.app_token is not None
