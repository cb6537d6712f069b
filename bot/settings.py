"""The one settings root. Each package owns its sub-model; this module composes them.

Names follow DESIGN.md: prefix ``COO_``, nested with ``__``. A ``.env`` file is read from the working
directory and from the user config dir (``~/.config/solo-coo/.env`` on Linux); the working directory's
wins, the environment wins over both.
"""

from __future__ import annotations

import json
import os
import re
import typing
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import platformdirs
from pydantic import BaseModel, Field, PrivateAttr, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from bot.channels.settings import SlackSettings, TelegramSettings
from bot.lifecycle import STOP_GRACE_S
from bot.web.settings import WebSettings
from connectors.catalog import known_kinds, settings_model
from connectors.mcp.settings import KIND_PATTERN as MCP_KIND
from connectors.mcp.settings import McpSettings
from connectors.settings import IMAPSettings, OutboxSettings
from graph.followups.settings import FollowupsSettings
from graph.receivables.settings import ReceivablesSettings
from graph.settings import ApprovalSettings, BudgetSettings, LLMSettings, TaskSettings
from memory.errors import UserFacingError
from memory.settings import EmbeddingsSettings, MemorySettings, SqliteSettings

_OPERATOR_RE = re.compile(r"^(telegram:-?\d+|slack:[A-Z0-9]+:[A-Z0-9]+)$")
_TIME_RE = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
QUIET_HOURS_RE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
APP_NAME = "solo-coo"
ENV_FILE_NAME = ".env"


def user_data_dir() -> Path:
    """Where data lives by default (``~/.local/share/solo-coo`` on Linux, honouring XDG_DATA_HOME)."""
    return Path(platformdirs.user_data_dir(APP_NAME, appauthor=False))


def user_config_dir() -> Path:
    """Where ``coo onboard`` writes the config file (``~/.config/solo-coo`` on Linux, honouring XDG_CONFIG_HOME)."""
    return Path(platformdirs.user_config_dir(APP_NAME, appauthor=False))


def default_env_files() -> list[Path]:
    """The config files looked up, in order of increasing precedence: user config dir, then working dir."""
    return [user_config_dir() / ENV_FILE_NAME, Path.cwd() / ENV_FILE_NAME]


def redact_url(url: str) -> str:
    """``url`` without credentials: ``user:password@`` and the query string are replaced (I4)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "[unparsable URL]"
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "[REDACTED]@" + netloc.rpartition("@")[2]
    query = "[REDACTED]" if parts.query else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def url_password(url: str | None) -> str | None:
    """The password inside a URL's ``user:password@`` part, if any (to be redacted from logs)."""
    if not url:
        return None
    try:
        return urlsplit(url).password
    except ValueError:
        return None


if TYPE_CHECKING:
    _ConnectorFields = BaseModel
else:
    # One field per connector (``smtp``, ``stripe``, ``publish``, ...), from the connectors folder: a new
    # connector's settings are read as ``COO_<FIELD>__*`` without a line here. Typed access: settings_of().
    _ConnectorFields = settings_model()


class Settings(BaseSettings, _ConnectorFields):
    """Everything solo-coo can be configured with (and, inherited, every connector's settings field)."""

    model_config = SettingsConfigDict(
        env_prefix="COO_", env_nested_delimiter="__", env_file=".env", extra="ignore", env_ignore_empty=True
    )

    data_dir: Path = Field(default_factory=user_data_dir)
    operators: str = ""
    timezone: str = "UTC"
    digest_time: str = "08:00"
    quiet_hours: str = ""
    log_level: str = "INFO"
    pairing_code_ttl_s: int = Field(default=900, ge=30)
    stop_grace_s: float = STOP_GRACE_S
    """How long a stop lets work in flight finish; at most 7 s, so the process is still gone within 10 s."""

    llm: LLMSettings = LLMSettings()
    telegram: TelegramSettings = TelegramSettings()
    slack: SlackSettings = SlackSettings()
    imap: IMAPSettings = IMAPSettings()
    mcp: McpSettings = McpSettings()
    approvals: ApprovalSettings = ApprovalSettings()
    budget: BudgetSettings = BudgetSettings()
    outbox: OutboxSettings = OutboxSettings()
    tasks: TaskSettings = TaskSettings()
    expiry_sweep_s: float = Field(default=30.0, gt=0)
    embeddings: EmbeddingsSettings = EmbeddingsSettings()
    memory: MemorySettings = MemorySettings()
    sqlite: SqliteSettings = SqliteSettings()
    web: WebSettings = WebSettings()
    receivables: ReceivablesSettings = ReceivablesSettings()
    followups: FollowupsSettings = FollowupsSettings()
    _files_read: tuple[Path, ...] = PrivateAttr(default=())

    @property
    def files_read(self) -> tuple[Path, ...]:
        """The config files that existed and were read (for ``coo doctor``)."""
        return self._files_read

    @field_validator("stop_grace_s")
    @classmethod
    def _stop_grace(cls, value: float) -> float:
        if not 0 <= value <= STOP_GRACE_S:
            raise ValueError(f"must be 0 to {STOP_GRACE_S:g} seconds (a stop ends within 10 s whatever it waits for)")
        return value

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        level = value.strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"unknown log level '{value}'; one of {', '.join(LOG_LEVELS)}")
        return level

    @field_validator("approvals")
    @classmethod
    def _forbidden_kinds(cls, value: ApprovalSettings) -> ApprovalSettings:
        known = known_kinds()
        unknown = [kind for kind in value.forbidden if kind not in known and not MCP_KIND.match(kind)]
        if unknown:
            raise ValueError(f"COO_APPROVALS__FORBIDDEN: unknown action kind '{unknown[0]}'; one of {', '.join(known)}")
        return value

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

    @field_validator("quiet_hours")
    @classmethod
    def _quiet(cls, value: str) -> str:
        if value.strip() and not QUIET_HOURS_RE.match(value.strip()):
            raise ValueError("must be HH:MM-HH:MM, e.g. 22:00-07:00")
        return value.strip()

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


class ConfigError(UserFacingError):
    """Bad configuration: the message is one line naming the variable."""


EnvFiles = str | Path | list[Path] | None


def load_settings(env_file: EnvFiles = "default") -> Settings:
    """Read settings from the environment and config files, honouring OPENAI_* as fallbacks.

    ``env_file`` "default" reads :func:`default_env_files`; a path or a list of paths reads exactly
    those (later ones win); None reads no file. Raises ConfigError with one line naming the variable.
    """
    candidates = default_env_files() if env_file == "default" else _as_paths(env_file)
    files = [path for path in candidates if path.is_file()]
    for path in candidates:
        if env_file != "default" and not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
    try:
        settings = Settings(_env_file=files or None)  # type: ignore[call-arg]
    except ValidationError as exc:
        raise ConfigError("; ".join(_describe(err) for err in exc.errors())) from None
    except SettingsError as exc:
        raise ConfigError(_describe_settings_error(exc, files)) from None
    settings._files_read = tuple(files)
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
    if os.environ.get("COO_WEB__LISTEN", "unset").strip() == "":  # empty values are otherwise ignored
        settings.web = settings.web.model_copy(update={"listen": ""})
    if settings.embeddings.provider == "openai" and not settings.llm.configured:
        raise ConfigError("COO_EMBEDDINGS__PROVIDER: 'openai' needs COO_LLM__BASE_URL and/or COO_LLM__API_KEY")
    return settings


def _as_paths(env_file: EnvFiles) -> list[Path]:
    if env_file is None:
        return []
    if isinstance(env_file, list):
        return [Path(p) for p in env_file]
    return [Path(env_file)]


def _describe_settings_error(exc: SettingsError, files: list[Path]) -> str:
    """pydantic-settings fails before validation when a list/map value is not JSON: name the variable."""
    match = re.search(r'field "([^"]+)"', str(exc))
    field = match.group(1) if match else ""
    prefix = f"COO_{field.upper()}"
    values = _raw_values(files)
    for name in sorted(values):
        if name != prefix and not name.startswith(prefix + "__"):
            continue
        kind = _complex_kind(name.removeprefix("COO_").lower().split("__"))
        if kind is None:
            continue
        try:
            json.loads(values[name])
        except ValueError:
            example = '["email.send"]' if kind == "list" else '{"name": value}'
            return f"{name}: must be JSON, e.g. {example}"
    return f"{prefix or 'COO_*'}: a value is not valid JSON (lists and maps are written as JSON)"


def _raw_values(files: list[Path]) -> dict[str, str]:
    from dotenv import dotenv_values

    values: dict[str, str] = {}
    for path in files:
        values.update({k.upper(): v for k, v in dotenv_values(path).items() if v is not None})
    values.update({k.upper(): v for k, v in os.environ.items()})
    return values


def _complex_kind(path: list[str]) -> str | None:
    """ "list" or "map" when the setting at ``path`` is read as JSON; None for plain values."""
    annotation: object = Settings
    for part in path:
        model = annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None
        if model is None or part not in model.model_fields:
            return None
        annotation = model.model_fields[part].annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "map"
    origin = typing.get_origin(annotation)
    if origin in (list, tuple, set, frozenset):
        return "list"
    if origin is dict:
        return "map"
    return None


def _describe(err: object) -> str:
    assert isinstance(err, dict)
    loc = [str(part) for part in err.get("loc", ()) if not str(part).startswith("function-")]
    name = "COO_" + "__".join(part.upper() for part in loc) if loc else "COO_*"
    msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
    if msg.startswith("COO_"):
        return msg
    return f"{name}: {msg}"
