"""MCP servers as the operator configures them (``COO_MCP__SERVERS``, ``COO_MCP__READ_ONLY``)."""

from __future__ import annotations

import re

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator

SERVER_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")
QUALIFIED_TOOL = re.compile(r"^([a-z0-9][a-z0-9_-]{0,31})\.([A-Za-z0-9_.-]{1,64})$")
KIND_PATTERN = re.compile(r"^mcp\.([a-z0-9][a-z0-9_-]{0,31})\.([A-Za-z0-9_.-]{1,64})$")
"""The action kind of a call to an MCP tool: ``mcp.<server>.<tool>``."""


class McpServerSettings(BaseModel):
    """One server: a command started over stdio, or a streamable HTTP URL. ``env`` and ``headers`` hold
    secrets (tokens): they are redacted everywhere and never shown."""

    model_config = {"extra": "forbid"}

    command: str | None = None
    args: list[str] = Field(default_factory=list)
    env: dict[str, SecretStr] = Field(default_factory=dict)
    url: str | None = None
    headers: dict[str, SecretStr] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_transport(self) -> McpServerSettings:
        if bool(self.command) == bool(self.url):
            raise ValueError('give either "command" (stdio) or "url" (streamable HTTP)')
        if self.url and not self.url.startswith(("http://", "https://")):
            raise ValueError(f'"url" must start with http:// or https://, not {self.url[:20]!r}')
        return self

    @property
    def transport(self) -> str:
        """``stdio`` or ``http``."""
        return "stdio" if self.command else "http"

    def secrets(self) -> list[str]:
        """Every secret value of this server."""
        values = [v.get_secret_value() for v in (*self.env.values(), *self.headers.values())]
        # "Bearer <token>": the token alone is a secret too (a log line may hold it without its scheme).
        return values + [v.split(" ", 1)[1] for v in values if " " in v.strip()]


class McpSettings(BaseModel):
    """Every MCP server by name, and the tools the operator trusts as read-only (``server.tool``)."""

    servers: dict[str, McpServerSettings] = Field(default_factory=dict)
    read_only: tuple[str, ...] = ()
    connect_timeout_s: float = Field(default=20.0, gt=0)
    call_timeout_s: float = Field(default=60.0, gt=0)
    result_chars: int = Field(default=4000, ge=200)

    @field_validator("servers")
    @classmethod
    def _names(cls, value: dict[str, McpServerSettings]) -> dict[str, McpServerSettings]:
        for name in value:
            if not SERVER_NAME.match(name):
                raise ValueError(f"server name {name!r}: lower-case letters, digits, '-' and '_' only (32 at most)")
        return value

    @field_validator("read_only")
    @classmethod
    def _tools(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            if not QUALIFIED_TOOL.match(item):
                raise ValueError(f"{item!r} is not <server>.<tool>")
        return value

    def secrets(self) -> list[str]:
        """Every secret of every server."""
        return [s for server in self.servers.values() for s in server.secrets() if s]
