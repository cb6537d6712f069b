"""The chat channels' settings (bot/channels/settings.py) read through ``load_settings`` by their
``COO_TELEGRAM__*`` and ``COO_SLACK__*`` names: each mistake is one line naming the variable."""

from __future__ import annotations

import pytest

from bot import settings as settings_root
from bot.channels import settings as channel_settings
from bot.settings import ConfigError, load_settings


def refused(monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as error:
        load_settings(None)
    return str(error.value)


def test_telegram_defaults_to_polling_and_a_webhook_needs_its_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COO_TELEGRAM__TOKEN", "123:ABC")
    polling = load_settings(None).telegram
    assert polling.configured and polling.webhook_url is None and polling.api_base_url == "https://api.telegram.org"
    assert refused(monkeypatch, COO_TELEGRAM__WEBHOOK_URL="https://bot.example/hook") == (
        "COO_TELEGRAM__WEBHOOK_SECRET is required when a webhook URL is set"
    )
    monkeypatch.setenv("COO_TELEGRAM__WEBHOOK_SECRET", "s3cret")
    monkeypatch.setenv("COO_TELEGRAM__WEBHOOK_LISTEN", ":8443")
    hooked = load_settings(None).telegram
    assert hooked.webhook_address == ("0.0.0.0", 8443)


@pytest.mark.parametrize(
    ("name", "value", "error"),
    [
        ("COO_TELEGRAM__WEBHOOK_URL", "bot.example/hook", "COO_TELEGRAM__WEBHOOK_URL: must be an https:// URL"),
        ("COO_TELEGRAM__WEBHOOK_LISTEN", "8443", "COO_TELEGRAM__WEBHOOK_LISTEN: must be host:port, e.g. 0.0.0.0:8443"),
        ("COO_TELEGRAM__WEBHOOK_LISTEN", "0.0.0.0:70000", "COO_TELEGRAM__WEBHOOK_LISTEN: must be host:port"),
        ("COO_TELEGRAM__API_BASE_URL", "api.telegram.org", "COO_TELEGRAM__API_BASE_URL: must start with http://"),
        ("COO_SLACK__HTTP_LISTEN", "slack:http", "COO_SLACK__HTTP_LISTEN: must be host:port"),
        ("COO_SLACK__API_BASE_URL", "slack.com/api", "COO_SLACK__API_BASE_URL: must start with http://"),
    ],
)
def test_a_bad_channel_value_is_one_line_naming_it(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, error: str
) -> None:
    message = refused(monkeypatch, **{name: value})
    assert message.startswith(error) and "\n" not in message


def test_slack_needs_socket_mode_or_http_mode_and_a_real_app_token(monkeypatch: pytest.MonkeyPatch) -> None:
    assert refused(monkeypatch, COO_SLACK__BOT_TOKEN="xoxb-1") == (
        "COO_SLACK: set COO_SLACK__APP_TOKEN (Socket Mode) or COO_SLACK__SIGNING_SECRET (HTTP mode)"
    )
    assert refused(monkeypatch, COO_SLACK__APP_TOKEN="xoxb-2") == (
        "COO_SLACK__APP_TOKEN must be an app-level token starting with xapp-"
    )
    monkeypatch.setenv("COO_SLACK__APP_TOKEN", "xapp-1")
    socket = load_settings(None).slack
    assert socket.configured and socket.socket_mode
    monkeypatch.delenv("COO_SLACK__APP_TOKEN")
    monkeypatch.setenv("COO_SLACK__SIGNING_SECRET", "sig")
    monkeypatch.setenv("COO_SLACK__API_BASE_URL", "http://127.0.0.1:9/api")
    http = load_settings(None).slack
    assert not http.socket_mode and http.http_address == ("0.0.0.0", 3000)
    assert http.api_base_url == "http://127.0.0.1:9/api/"


def test_the_channel_models_are_the_ones_the_settings_root_uses() -> None:
    """Callers import them from either module: one class each, not two copies."""
    assert settings_root.TelegramSettings is channel_settings.TelegramSettings
    assert settings_root.SlackSettings is channel_settings.SlackSettings
    assert settings_root.Settings.model_fields["slack"].annotation is channel_settings.SlackSettings
