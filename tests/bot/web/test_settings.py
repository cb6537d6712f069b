"""The console's settings (``COO_WEB__*``): where it listens, the address its links use, and whether the
session cookie is Secure. A bad value is one line naming the variable, read through ``load_settings``."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from bot.settings import ConfigError, load_settings
from bot.web.settings import WebSettings


@pytest.mark.parametrize("off", ["", "off", "OFF", " none ", "false", "0"])
def test_off_values_turn_the_console_off(off: str) -> None:
    assert not WebSettings(listen=off).enabled


def test_links_point_at_the_public_url_else_a_reachable_listening_address() -> None:
    assert WebSettings().base_url == "http://127.0.0.1:8470"
    assert WebSettings(listen=":9000").base_url == "http://127.0.0.1:9000"
    assert WebSettings(listen=":9000").address == ("0.0.0.0", 9000)
    behind = WebSettings(listen="127.0.0.1:8470", public_url=" https://coo.example.org/console/ ")
    assert behind.base_url == "https://coo.example.org/console" and behind.secure
    assert not WebSettings(public_url="http://coo.lan").secure


@pytest.mark.parametrize("listen", ["8470", "localhost", "127.0.0.1:99999", "host: 80", "a:b"])
def test_a_bad_listen_address_is_refused(listen: str) -> None:
    with pytest.raises(ValidationError, match="must be host:port"):
        WebSettings(listen=listen)


@pytest.mark.parametrize(
    "url",
    ["coo.example.org", "ftp://coo.example.org", "https://", "https://coo.example.org/?next=evil", "https://x/#a"],
)
def test_a_public_url_that_is_not_a_plain_http_address_is_refused(url: str) -> None:
    with pytest.raises(ValidationError, match="http:// or https:// address"):
        WebSettings(public_url=url)


def test_the_error_through_load_settings_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COO_WEB__LISTEN", "8470")
    with pytest.raises(ConfigError) as refused:
        load_settings(None)
    assert str(refused.value).startswith("COO_WEB__LISTEN: must be host:port")
    monkeypatch.setenv("COO_WEB__LISTEN", "")  # an empty value turns the console off (not ignored)
    assert not load_settings(None).web.enabled
