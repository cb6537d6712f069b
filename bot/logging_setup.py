"""One logging configuration, with secrets redacted (I4)."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

# Shapes of well-known credentials, redacted even when we were not told the value.
_PATTERNS = (
    re.compile(r"\b\d{6,12}:[A-Za-z0-9_-]{30,}\b"),  # Telegram bot token
    re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{8,}\b"),  # Slack tokens
    re.compile(r"\bxapp-[A-Za-z0-9-]{8,}\b"),
    re.compile(r"\bsk-[A-Za-z0-9_-]{16,}\b"),  # OpenAI-style keys
    re.compile(r"\b[sr]k_(?:live|test)_[A-Za-z0-9]{8,}\b"),  # Stripe secret / restricted keys
    re.compile(r"\bwhsec_[A-Za-z0-9]{8,}\b"),  # webhook signing secrets
)
# user:password@ (or a lone user@) inside any URL.
_URL_CREDENTIALS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s]+@")
REDACTED = "[REDACTED]"
# Loggers of HTTP clients and SDKs log request lines (with URLs and headers) at INFO/DEBUG: only
# their warnings pass, whatever level the operator chose. Matched by prefix ("httpx" also covers
# "httpx2", which openai uses).
QUIET_PREFIXES = (
    *("httpx", "httpcore", "openai", "urllib3", "aiohttp", "stripe", "slack_sdk", "websockets", "hpack"),
    "imapclient",
)


def redact_url_credentials(text: str) -> str:
    """``text`` with every ``scheme://user:pw@`` in it turned into ``scheme://[REDACTED]@``."""
    return _URL_CREDENTIALS.sub(lambda m: m.group(1) + REDACTED + "@", text)


class RedactingFilter(logging.Filter):
    """Replaces known secret values and credential shapes in every record's final message."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._secrets = sorted({s for s in secrets if s and len(s) >= 4}, key=len, reverse=True)

    def redact(self, text: str) -> str:
        """``text`` with secrets replaced."""
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        for pattern in _PATTERNS:
            text = pattern.sub(REDACTED, text)
        return redact_url_credentials(text)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.msg = self.redact(message)
        record.args = None
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True


class QuietClientsFilter(logging.Filter):
    """Drops records below WARNING from HTTP client loggers, whatever their own level says."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or not record.name.startswith(QUIET_PREFIXES)


def configure_logging(level: str, secrets: Iterable[str], handler: logging.Handler | None = None) -> RedactingFilter:
    """Configure the root logger once: redaction on the handler, HTTP client loggers at WARNING."""
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_coo", False):
            root.removeHandler(old)
    handler = handler or logging.StreamHandler()
    handler._coo = True  # type: ignore[attr-defined]
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(QuietClientsFilter())
    redactor = RedactingFilter(secrets)
    handler.addFilter(redactor)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for noisy in (*QUIET_PREFIXES, "httpx2", "aiohttp.access", "apscheduler"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return redactor
