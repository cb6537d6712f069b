"""Every configured secret value (I4): what the logs, error lines and task traces redact."""

from __future__ import annotations

from bot.settings import Settings, url_password
from connectors.base import Deps
from connectors.catalog import build_registry


def secrets_of(settings: Settings) -> list[str]:
    """Every configured secret value, to be redacted from logs, error lines and traces (I4)."""
    values = [
        settings.llm.api_key,
        settings.telegram.token,
        settings.telegram.webhook_secret,
        settings.slack.bot_token,
        settings.slack.app_token,
        settings.slack.signing_secret,
        settings.imap.password,
    ]
    found = [v.get_secret_value() for v in values if v is not None]
    passwords = (url_password(settings.llm.base_url), url_password(settings.telegram.api_base_url))
    registry = build_registry(settings, Deps(records=None, currency=settings.budget.currency))
    found += settings.mcp.secrets() + settings.llm.secret_values()
    return found + [p for p in passwords if p] + registry.secrets()
