"""Every configured secret value is found for redaction (I4): the channels', the model endpoints' (keys and
URL passwords, fallbacks included), IMAP's, MCP servers' and every connector's."""

from __future__ import annotations

from pathlib import Path

from bot.secret_values import secrets_of
from tests.conftest import make_settings

SECRETS = {
    "llm key": "sk-main-key-1",
    "llm url password": "llm-url-pass-2",
    "fallback key": "sk-fallback-3",
    "fallback url password": "fb-url-pass-4",
    "telegram token": "123:telegram-token-5",
    "telegram webhook": "tg-webhook-secret-6",
    "telegram url password": "tg-url-pass-7",
    "slack bot": "xoxb-slack-8",
    "slack app": "xapp-slack-9",
    "slack signing": "slack-signing-10",
    "imap": "imap-pass-11",
    "mcp env": "mcp-env-12",
    "mcp bearer": "mcp-bearer-13",
    "smtp": "smtp-pass-14",
    "stripe": "sk_test_stripe_15",
}


def test_every_configured_secret_is_found(tmp_path: Path) -> None:
    s = SECRETS
    settings = make_settings(
        tmp_path,
        llm={
            "base_url": f"https://user:{s['llm url password']}@llm.example/v1",
            "api_key": s["llm key"],
            "fallbacks": [
                {
                    "base_url": f"https://u:{s['fallback url password']}@fb.example/v1",
                    "api_key": s["fallback key"],
                    "model": "m2",
                }
            ],
        },
        telegram={
            "token": s["telegram token"],
            "webhook_url": "https://bot.example/hook",
            "webhook_secret": s["telegram webhook"],
            "api_base_url": f"https://u:{s['telegram url password']}@tg.example",
        },
        slack={"bot_token": s["slack bot"], "app_token": s["slack app"], "signing_secret": s["slack signing"]},
        imap={"host": "imap.example", "username": "me", "password": s["imap"]},
        mcp={
            "servers": {
                "crm": {
                    "url": "https://crm.example/mcp",
                    "env": {"TOKEN": s["mcp env"]},
                    "headers": {"Authorization": f"Bearer {s['mcp bearer']}"},
                }
            }
        },  # fmt: skip
        smtp={"host": "smtp.example", "username": "me", "password": s["smtp"]},
        stripe={"api_key": s["stripe"]},
    )
    found = set(secrets_of(settings))
    missing = [name for name, value in SECRETS.items() if value not in found]
    assert missing == []


def test_nothing_configured_means_nothing_to_redact(tmp_path: Path) -> None:
    """No empty string ever: redacting "" would mangle every log line."""
    assert secrets_of(make_settings(tmp_path)) == []


def test_a_url_without_credentials_adds_no_password(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, llm={"base_url": "https://llm.example/v1", "api_key": "sk-only"})
    assert set(secrets_of(settings)) == {"sk-only"}
