"""COO_FOLLOWUPS__*: the defaults, a value read from the environment, and one clear line for a bad one."""

from __future__ import annotations

import pytest

from bot.settings import ConfigError, load_settings


def test_defaults_and_a_value_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    defaults = load_settings(env_file=None).followups
    monkeypatch.setenv("COO_FOLLOWUPS__REPLY_WAIT_DAYS", "3")
    assert (defaults.reply_wait_days, defaults.check_s) == (5, 900)
    assert load_settings(env_file=None).followups.reply_wait_days == 3


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("-1", "COO_FOLLOWUPS__REPLY_WAIT_DAYS: Input should be greater than or equal to 0"),
        ("61", "COO_FOLLOWUPS__REPLY_WAIT_DAYS: Input should be less than or equal to 60"),
        ("five", "COO_FOLLOWUPS__REPLY_WAIT_DAYS: Input should be a valid integer"),
    ],
)
def test_a_bad_wait_names_the_variable(monkeypatch: pytest.MonkeyPatch, value: str, message: str) -> None:
    monkeypatch.setenv("COO_FOLLOWUPS__REPLY_WAIT_DAYS", value)
    with pytest.raises(ConfigError) as caught:
        load_settings(env_file=None)
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)
