"""The one settings root. Each package owns its sub-model; this module composes them.

Names follow DESIGN.md: prefix ``COO_``, nested with ``__``, ``.env`` read too.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from connectors.settings import OutboxSettings, SMTPSettings
from graph.settings import ApprovalSettings, BudgetSettings, LLMSettings
from memory.settings import EmbeddingsSettings, MemorySettings, SqliteSettings

_OPERATOR_RE = re.compile(r"^(telegram:-?\d+|slack:[A-Z0-9]+:[A-Z0-9]+)$")
_TIME_RE = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
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


class Settings(BaseSettings):
    """Everything solo-coo can be configured with."""

    model_config = SettingsConfigDict(env_prefix="COO_", env_nested_delimiter="__", env_file=".env", extra="ignore")

    data_dir: Path = Path("./coo-data")
    operators: str = ""
    timezone: str = "UTC"
    digest_time: str = "08:00"
    log_level: str = "INFO"
    pairing_code_ttl_s: int = Field(default=900, ge=30)

    llm: LLMSettings = LLMSettings()
    telegram: TelegramSettings = TelegramSettings()
    slack: SlackSettings = SlackSettings()
    smtp: SMTPSettings = SMTPSettings()
    approvals: ApprovalSettings = ApprovalSettings()
    budget: BudgetSettings = BudgetSettings()
    outbox: OutboxSettings = OutboxSettings()
    expiry_sweep_s: float = Field(default=30.0, gt=0)
    embeddings: EmbeddingsSettings = EmbeddingsSettings()
    memory: MemorySettings = MemorySettings()
    sqlite: SqliteSettings = SqliteSettings()

    @field_validator("operators")
    @classmethod
    def _operators(cls, value: str) -> str:
        for item in _split(value):
            if not _OPERATOR_RE.match(item):
                raise ValueError(f"'{item}' is not telegram:<user_id> or slack:<team_id>:<user_id>")
        return value

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone '{value}'") from None
        return value

    @field_validator("digest_time")
    @classmethod
    def _time(cls, value: str) -> str:
        if not _TIME_RE.match(value):
            raise ValueError("must be HH:MM (24 h)")
        return value

    @property
    def operator_ids(self) -> frozenset[str]:
        """The allow-list; empty means pairing mode."""
        return frozenset(_split(self.operators))


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


class ConfigError(Exception):
    """Bad configuration: the message is one line naming the variable."""


def load_settings(env_file: str | Path | None = ".env") -> Settings:
    """Read settings from the environment (and ``.env``), honouring OPENAI_* as fallbacks.

    Raises ConfigError with one line per problem, each naming the variable.
    """
    try:
        settings = Settings(_env_file=env_file)  # type: ignore[call-arg]
    except ValidationError as exc:
        raise ConfigError("; ".join(_describe(err) for err in exc.errors())) from None
    llm = settings.llm
    updates: dict[str, object] = {}
    if llm.api_key is None and os.environ.get("OPENAI_API_KEY"):
        updates["api_key"] = SecretStr(os.environ["OPENAI_API_KEY"])
    if llm.base_url is None and os.environ.get("OPENAI_BASE_URL"):
        try:
            updates["base_url"] = LLMSettings(base_url=os.environ["OPENAI_BASE_URL"]).base_url
        except ValidationError:
            raise ConfigError("OPENAI_BASE_URL: must start with http:// or https://") from None
    if updates:
        settings.llm = llm.model_copy(update=updates)
    if settings.embeddings.provider == "openai" and not settings.llm.configured:
        raise ConfigError("COO_EMBEDDINGS__PROVIDER: 'openai' needs COO_LLM__BASE_URL and/or COO_LLM__API_KEY")
    return settings


def _describe(err: object) -> str:
    assert isinstance(err, dict)
    loc = [str(part) for part in err.get("loc", ()) if not str(part).startswith("function-")]
    name = "COO_" + "__".join(part.upper() for part in loc) if loc else "COO_*"
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    if msg.startswith("COO_"):
        return msg
    return f"{name}: {msg}"
