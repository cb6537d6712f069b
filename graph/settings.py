"""Settings owned by the coordinator: the model endpoint."""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import unquote, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator

OPENAI_URL = "https://api.openai.com/v1"
NO_KEY = "not-needed"  # what the SDK sends as a key when the endpoint needs none (it insists on one)


@dataclass(frozen=True)
class Connection:
    """How to reach an endpoint: its URL without credentials, the key the SDK sends as a bearer token, and
    extra headers (basic auth from credentials the operator put in the URL)."""

    base_url: str
    api_key: str
    headers: dict[str, str] = field(default_factory=dict)

    def auth_headers(self) -> dict[str, str]:
        """The Authorization header a plain HTTP client sends to this endpoint (none without key or credentials)."""
        if self.headers:
            return dict(self.headers)
        return {} if self.api_key == NO_KEY else {"Authorization": f"Bearer {self.api_key}"}


def connection(base_url: str | None, api_key: SecretStr | None) -> Connection:
    """The :class:`Connection` for ``base_url`` (OpenAI's when None) and ``api_key``.

    ``user:password@`` always leaves the URL (aiohttp refuses to send a request whose URL holds
    credentials next to an Authorization header, and they must not travel in logs or error texts with
    the URL, I4). Without an API key they are sent as basic auth; with one, the key is sent (as a
    bearer token: both cannot share the header) and the credentials are not.
    """
    url = base_url or OPENAI_URL
    key = api_key.get_secret_value() if api_key else NO_KEY
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return Connection(url, key)
    host = parts.netloc.rpartition("@")[2]
    stripped = urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))
    if api_key is not None:
        return Connection(stripped, key)
    pair = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
    basic = base64.b64encode(pair.encode()).decode("ascii")
    return Connection(stripped, NO_KEY, {"Authorization": f"Basic {basic}"})


def has_credentials(url: str | None) -> bool:
    """Whether ``url`` holds ``user:password@``."""
    if not url:
        return False
    parts = urlsplit(url)
    return parts.username is not None or parts.password is not None


def _check_url(value: str | None) -> str | None:
    if value in (None, ""):
        return None
    assert value is not None
    if not value.startswith(("http://", "https://")):
        raise ValueError("must start with http:// or https://")
    try:
        urlsplit(value).port  # noqa: B018 (a port out of range raises here, at start, not at every call)
    except ValueError:
        raise ValueError("has a port that is not a number from 0 to 65535") from None
    return value.rstrip("/")


class FallbackSettings(BaseModel):
    """One further endpoint of ``COO_LLM__FALLBACKS``: tried in order when the ones before it fail."""

    model_config = ConfigDict(extra="forbid")

    base_url: str
    api_key: SecretStr | None = None
    model: str = Field(min_length=1)
    cheap_model: str | None = None
    """What this endpoint serves for calls meant for the cheap model (None: ``model``)."""
    free: bool = False
    """The operator's word that this endpoint costs nothing, like ``COO_LLM__FREE`` for the main one."""

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        checked = _check_url(value)
        if checked is None:
            raise ValueError("must be set (an http:// or https:// URL)")
        return checked

    def connection(self) -> Connection:
        """How to reach this endpoint."""
        return connection(self.base_url, self.api_key)


class LLMSettings(BaseModel):
    """Any OpenAI-compatible endpoint. Nothing set means offline mode."""

    base_url: str | None = None
    api_key: SecretStr | None = None
    model: str = "gpt-4o-mini"
    cheap_model: str | None = None
    timeout_s: float = Field(default=30.0, gt=0)
    max_attempts: int = Field(default=3, ge=1, le=10)
    retry_base_s: float = Field(default=0.5, ge=0)
    offline_cooldown_s: float = Field(default=30.0, ge=0)
    max_tool_rounds: int = Field(default=4, ge=1, le=20)
    max_completion_tokens: int = Field(default=1024, ge=16)
    breaker_failures: int = Field(default=3, ge=1)
    breaker_window_s: float = Field(default=300.0, gt=0)
    fallbacks: list[FallbackSettings] = Field(default_factory=list)
    prices: dict[str, tuple[float, float]] = Field(default_factory=dict)
    # The operator's word that this endpoint costs nothing (own hardware): never inferred from its address.
    free: bool = False
    context_budget: int = Field(default=6000, ge=500)

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        return _check_url(value)

    @field_validator("prices")
    @classmethod
    def _prices(cls, value: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
        # A negative price would credit the ledger and NaN or infinity defeats every cap (I5): refuse to start.
        for model, pair in value.items():
            problem = price_problem(pair)
            if problem:
                raise ValueError(f"{model}: {problem}")
        return value

    @property
    def configured(self) -> bool:
        """True when a model endpoint is configured (otherwise offline mode)."""
        return self.base_url is not None or self.api_key is not None

    def connection(self) -> Connection:
        """How to reach the main endpoint."""
        return connection(self.base_url, self.api_key)

    def secret_values(self) -> list[str]:
        """Every key and URL password of the main endpoint and the fallbacks (to redact from logs, I4)."""
        keys = [self.api_key, *(f.api_key for f in self.fallbacks)]
        urls = [self.base_url, *(f.base_url for f in self.fallbacks)]
        passwords = [urlsplit(u).password for u in urls if u and has_credentials(u)]
        return [k.get_secret_value() for k in keys if k is not None] + [p for p in passwords if p]


def price_problem(pair: tuple[float, float]) -> str | None:
    """What is wrong with a (input, output) price per million tokens, or None."""
    if not all(math.isfinite(price) for price in pair):
        return f"a price must be a finite number, not {list(pair)}"
    if min(pair) < 0:
        return f"a price must be 0 or more, not {list(pair)}"
    return None


class ApprovalSettings(BaseModel):
    """The human gate: how long a card is valid, and the operator's risk tolerance."""

    ttl_hours: float = Field(default=24.0, gt=0, le=24 * 30)
    risk_tolerance: Literal["cautious", "balanced", "relaxed"] = "balanced"
    forbidden: tuple[str, ...] = ()


class BudgetSettings(BaseModel):
    """The operator's currency. Default prices are in USD; ``usd_rate`` converts them (1 USD = rate)."""

    currency: str = Field(default="USD", min_length=1, max_length=8)
    usd_rate: float = Field(default=1.0, gt=0, allow_inf_nan=False)


class TaskSettings(BaseModel):
    """The task runner: how many tasks at once, leases, retries, progress messages."""

    concurrency: int = Field(default=2, ge=1, le=16)
    lease_s: float = Field(default=120.0, gt=0)
    max_attempts: int = Field(default=3, ge=1, le=20)
    retry_base_s: float = Field(default=10.0, ge=0)
    poll_s: float = Field(default=1.0, gt=0)
    max_rounds: int = Field(default=6, ge=2, le=30)
    progress_interval_s: float = Field(default=3.0, ge=0)
