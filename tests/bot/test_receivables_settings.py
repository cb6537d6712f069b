"""Bad receivables configuration stops the start with one line naming the variable."""

from __future__ import annotations

import pytest

from bot.settings import ConfigError, load_settings


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"COO_RECEIVABLES__CADENCE": "3,7"}, "COO_RECEIVABLES__CADENCE: must be JSON"),
        ({"COO_RECEIVABLES__CADENCE": "[400]"}, "COO_RECEIVABLES__CADENCE: each offset must be a whole number"),
        ({"COO_FOLLOWUPS__CHECK_S": "0"}, "COO_FOLLOWUPS__CHECK_S: Input should be greater than or equal to 1"),
        ({"COO_STRIPE__EVENTS_POLL_S": "0"}, "COO_STRIPE__EVENTS_POLL_S: Input should be greater than 0"),
        (
            {"COO_STRIPE__WEBHOOK_SECRET": "hunter2", "COO_STRIPE__WEBHOOK_LISTEN": "127.0.0.1:8471"},
            "COO_STRIPE__WEBHOOK_SECRET: must be a Stripe webhook signing secret (whsec_...)",
        ),
        (
            {"COO_STRIPE__WEBHOOK_SECRET": "whsec_x", "COO_STRIPE__WEBHOOK_LISTEN": "8471"},
            "COO_STRIPE__WEBHOOK_LISTEN: must be host:port",
        ),
        ({"COO_STRIPE__WEBHOOK_SECRET": "whsec_x"}, "COO_STRIPE: webhook mode needs both COO_STRIPE__WEBHOOK_SECRET"),
    ],
)
def test_bad_values_name_the_variable(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        load_settings(env_file=None)
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_settings(env_file=None)
    assert settings.receivables.cadence == [-3, 0, 3, 7, 14]
    assert settings.followups.check_s == 900 and settings.stripe.events_poll_s == 60
    assert settings.stripe.webhook_secret is None and settings.stripe.webhook_listen == ""
