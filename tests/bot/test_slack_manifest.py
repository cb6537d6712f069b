"""``coo slack-manifest``: one paste creates the Slack app the channel needs."""

from __future__ import annotations

import json

import pytest
import yaml

from bot.cli import main
from bot.slack_manifest import manifest


def test_printed_yaml_is_the_manifest_with_socket_mode(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["slack-manifest", "--name", "Lumen COO"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed == manifest(name="Lumen COO")
    assert printed["settings"]["socket_mode_enabled"] is True
    assert printed["settings"]["interactivity"] == {"is_enabled": True}
    assert set(printed["settings"]["event_subscriptions"]["bot_events"]) == {"app_mention", "message.im"}
    assert set(printed["oauth_config"]["scopes"]["bot"]) == {
        "app_mentions:read", "chat:write", "commands", "im:history", "im:read", "im:write",
    }  # fmt: skip
    assert printed["features"]["slash_commands"][0]["command"] == "/coo"
    assert printed["features"]["app_home"]["messages_tab_enabled"] is True


def test_http_mode_points_every_request_url_at_the_events_endpoint(capsys: pytest.CaptureFixture[str]) -> None:
    url = "https://coo.example.org/slack/events"
    assert main(["slack-manifest", "--format", "json", "--http-url", url]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["settings"]["socket_mode_enabled"] is False
    assert printed["settings"]["event_subscriptions"]["request_url"] == url
    assert printed["settings"]["interactivity"]["request_url"] == url
    assert printed["features"]["slash_commands"][0]["url"] == url
