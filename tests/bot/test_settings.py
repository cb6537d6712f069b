"""Where settings come from (environment, ./.env, the user config dir), and bad values as one line."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bot.settings import ConfigError, Settings, load_settings, redact_url, user_config_dir


def test_data_and_config_default_to_the_user_dirs() -> None:
    settings = load_settings(env_file=None)
    assert settings.data_dir == Path(os.environ["XDG_DATA_HOME"]) / "solo-coo"
    assert user_config_dir() == Path(os.environ["XDG_CONFIG_HOME"]) / "solo-coo"
    assert settings.files_read == ()


def test_env_files_working_dir_wins_over_user_config_and_environment_over_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    user_file = user_config_dir() / ".env"
    user_file.parent.mkdir(parents=True, exist_ok=True)
    user_file.write_text("COO_TIMEZONE=Europe/Lisbon\nCOO_DIGEST_TIME=06:00\nCOO_LOG_LEVEL=warning\n")
    monkeypatch.chdir(tmp_path)
    try:
        assert load_settings().files_read == (user_file,)
        assert load_settings().timezone == "Europe/Lisbon"
        (tmp_path / ".env").write_text("COO_TIMEZONE=Asia/Tokyo\n")
        monkeypatch.setenv("COO_DIGEST_TIME", "09:15")
        settings = load_settings()
    finally:
        user_file.unlink()
    assert settings.files_read == (user_file, tmp_path / ".env")
    assert settings.timezone == "Asia/Tokyo"  # ./.env over the user config dir
    assert settings.digest_time == "09:15"  # the environment over both
    assert settings.log_level == "WARNING"  # read from the user file, normalised


def test_an_explicit_config_file_must_exist(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"config file .*nope\.env does not exist"):
        load_settings(env_file=tmp_path / "nope.env")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("COO_LOG_LEVEL", "LOUD", "COO_LOG_LEVEL: unknown log level 'LOUD'"),
        ("COO_APPROVALS__FORBIDDEN", "email.send", 'COO_APPROVALS__FORBIDDEN: must be JSON, e.g. ["email.send"]'),
        ("COO_LLM__PRICES", "gpt=1,2", "COO_LLM__PRICES: must be JSON, e.g. {"),
        ("COO_LLM", "not-json", "COO_LLM: must be JSON"),
        # money: a negative price would credit the ledger; NaN or infinity breaks every comparison with a cap
        ("COO_LLM__PRICES", '{"gpt-4o": [-1, 10]}', "COO_LLM__PRICES: gpt-4o: a price must be 0 or more"),
        ("COO_LLM__PRICES", '{"gpt-4o": [2.5, -0.01]}', "COO_LLM__PRICES: gpt-4o: a price must be 0 or more"),
        ("COO_LLM__PRICES", '{"gpt-4o": [NaN, 10]}', "COO_LLM__PRICES: gpt-4o: a price must be a finite number"),
        ("COO_LLM__PRICES", '{"gpt-4o": [1, Infinity]}', "COO_LLM__PRICES: gpt-4o: a price must be a finite number"),
        ("COO_LLM__PRICES", '{"gpt-4o": [1e400, 1]}', "COO_LLM__PRICES: gpt-4o: a price must be a finite number"),
        ("COO_BUDGET__USD_RATE", "inf", "COO_BUDGET__USD_RATE: Input should be a finite number"),
        ("COO_BUDGET__USD_RATE", "nan", "COO_BUDGET__USD_RATE: Input should be a finite number"),
        ("COO_BUDGET__USD_RATE", "-0.9", "COO_BUDGET__USD_RATE: Input should be greater than 0"),
    ],
)
def test_bad_values_name_the_variable(monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings(env_file=None)
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


def test_a_non_json_list_in_a_config_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "coo.env").write_text("COO_APPROVALS__FORBIDDEN=email.send\n")
    with pytest.raises(ConfigError, match=r"^COO_APPROVALS__FORBIDDEN: must be JSON"):
        load_settings(env_file=tmp_path / "coo.env")


def test_the_tests_own_construction_reads_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("COO_TIMEZONE=Asia/Tokyo\n")
    assert Settings(_env_file=None, data_dir=tmp_path).timezone == "UTC"  # type: ignore[call-arg]


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:s3cret@llm.example.org/v1", "https://[REDACTED]@llm.example.org/v1"),
        ("http://localhost:11434/v1", "http://localhost:11434/v1"),
        ("https://llm.example.org/v1?api-key=s3cret", "https://llm.example.org/v1?[REDACTED]"),
    ],
)
def test_urls_are_shown_without_credentials(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_the_example_config_is_valid_and_leaves_the_data_dir_alone() -> None:
    from tests.conftest import ROOT

    settings = load_settings(env_file=ROOT / ".env.example")
    assert settings.data_dir == Path(os.environ["XDG_DATA_HOME"]) / "solo-coo"  # Docker's /data stays in charge


def test_an_empty_variable_counts_as_unset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`COO_TELEGRAM__TOKEN=` (a template's blank line) is not a token: before, the bot crashed at start on an
    empty token, and an empty model key switched the offline mode off."""
    for name in ("COO_TELEGRAM__TOKEN", "COO_SLACK__BOT_TOKEN", "COO_LLM__API_KEY", "COO_LLM__BASE_URL"):
        monkeypatch.setenv(name, "")
    (tmp_path / "coo.env").write_text("COO_SMTP__PASSWORD=\nCOO_DIGEST_TIME=\n")
    settings = load_settings(tmp_path / "coo.env")
    assert not settings.telegram.configured and settings.slack.bot_token is None
    assert not settings.llm.configured and settings.smtp.password is None
    assert settings.digest_time == Settings.model_fields["digest_time"].default


def test_connector_settings_come_from_the_connectors_folder_under_the_same_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from connectors.catalog import all_connectors, settings_of
    from connectors.publish import PublishSettings
    from connectors.settings import SMTPSettings
    from connectors.stripe_settings import StripeSettings

    assert [(s.settings_field, s.settings_model) for s in all_connectors()] == [
        ("smtp", SMTPSettings),
        ("publish", PublishSettings),
        ("stripe", StripeSettings),
    ]
    monkeypatch.setenv("COO_SMTP__HOST", "mail.example.org")
    monkeypatch.setenv("COO_SMTP__SECURITY", "tls")
    monkeypatch.setenv("COO_STRIPE__API_KEY", "sk_test_abc")
    monkeypatch.setenv("COO_PUBLISH__WEBHOOK_URL", "https://hooks.example.org/x")
    monkeypatch.setenv("COO_PUBLISH__WEBHOOK_SECRET", "s")
    settings = load_settings(env_file=None)
    assert (settings.smtp.host, settings.smtp.security) == ("mail.example.org", "tls")
    assert settings_of(settings, StripeSettings).api_key.get_secret_value() == "sk_test_abc"  # type: ignore[union-attr]
    assert settings_of(settings, PublishSettings).all()["default"].url == "https://hooks.example.org/x"
    monkeypatch.setenv("COO_SMTP__PORT", "0")
    with pytest.raises(ConfigError, match=r"^COO_SMTP__PORT: Input should be greater than or equal to 1$"):
        load_settings(env_file=None)
