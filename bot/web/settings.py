"""Settings of the web console (``COO_WEB__*``)."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, field_validator

_LISTEN = re.compile(r"^[^:\s]*:\d{1,5}$")
OFF = ("", "off", "none", "false", "0")


class WebSettings(BaseModel):
    """Where the console listens (empty or ``off``: no console) and its address behind a reverse proxy."""

    listen: str = "127.0.0.1:8470"
    public_url: str | None = None
    session_hours: float = Field(default=12.0, gt=0, le=24 * 30)

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        value = value.strip()
        if value.lower() in OFF:
            return ""
        if not _LISTEN.match(value) or int(value.rpartition(":")[2]) > 65535:
            raise ValueError("must be host:port, e.g. 127.0.0.1:8470 (empty or off: no web console)")
        return value

    @field_validator("public_url")
    @classmethod
    def _public(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
            raise ValueError("must be the console's http:// or https:// address, e.g. https://coo.example.org")
        return value.strip().rstrip("/")

    @property
    def enabled(self) -> bool:
        """True when the console is to be served."""
        return bool(self.listen)

    @property
    def address(self) -> tuple[str, int]:
        """(host, port) to bind."""
        host, _, port = self.listen.rpartition(":")
        return host or "0.0.0.0", int(port)

    @property
    def base_url(self) -> str:
        """The address links point at: the public URL, else the listening address."""
        if self.public_url:
            return self.public_url
        host, port = self.address
        shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
        return f"http://{shown}:{port}"

    @property
    def secure(self) -> bool:
        """True behind HTTPS: the session cookie is then Secure."""
        return bool(self.public_url and self.public_url.startswith("https://"))
