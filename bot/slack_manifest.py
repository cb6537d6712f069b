"""The Slack app manifest: everything the Slack channel needs, so creating the app is one paste.

Scopes, events, the ``/coo`` slash command, interactivity (card buttons) and the Messages tab, with
Socket Mode on (no public URL). With ``http_url`` the same app is set up for HTTP mode instead.
"""

from __future__ import annotations

import json
from typing import Any

# What bot/channels/slack.py uses: DMs (message.im), mentions in channels, /coo, replies and card edits.
BOT_SCOPES = ("app_mentions:read", "chat:write", "commands", "im:history", "im:read", "im:write")
BOT_EVENTS = ("app_mention", "message.im")
SLASH_COMMAND = "/coo"


def manifest(name: str = "solo-coo", http_url: str | None = None) -> dict[str, Any]:
    """The manifest as a dict; ``http_url`` (``https://<host>/slack/events``) switches Socket Mode off."""
    if not 1 <= len(name) <= 35:
        raise ValueError("the app name must be 1 to 35 characters")
    command: dict[str, Any] = {
        "command": SLASH_COMMAND,
        "description": "Talk to your COO: /coo help",
        "usage_hint": "help | status | pending | budget | digest",
        "should_escape": False,
    }
    events: dict[str, Any] = {"bot_events": list(BOT_EVENTS)}
    interactivity: dict[str, Any] = {"is_enabled": True}
    if http_url:
        command["url"] = http_url
        events["request_url"] = http_url
        interactivity["request_url"] = http_url
    return {
        "display_information": {
            "name": name,
            "description": "An AI COO for a one-person company, with one-tap approvals.",
            "background_color": "#1f2933",
        },
        "features": {
            "app_home": {
                "home_tab_enabled": False,
                "messages_tab_enabled": True,
                "messages_tab_read_only_enabled": False,
            },
            "bot_user": {"display_name": name[:80], "always_online": True},
            "slash_commands": [command],
        },
        "oauth_config": {"scopes": {"bot": list(BOT_SCOPES)}},
        "settings": {
            "event_subscriptions": events,
            "interactivity": interactivity,
            "org_deploy_enabled": False,
            "socket_mode_enabled": not http_url,
            "token_rotation_enabled": False,
        },
    }


def render(data: dict[str, Any], fmt: str = "yaml") -> str:
    """``data`` as YAML (what Slack's manifest editor shows first) or JSON."""
    if fmt == "json":
        return json.dumps(data, indent=2)
    return "\n".join(_yaml(data, 0))


def _scalar(value: Any) -> str:
    # JSON scalars are valid YAML: strings double-quoted with JSON escapes, true/false, numbers.
    return json.dumps(value)


def _yaml(value: Any, indent: int) -> list[str]:
    pad = "  " * indent
    lines: list[str] = []
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(item, dict | list) and item:
                lines.append(f"{pad}{key}:")
                lines += _yaml(item, indent + 1)
            else:
                lines.append(f"{pad}{key}: {_scalar(item)}")
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict) and item:
                first, *rest = _yaml(item, indent + 1)
                lines.append(f"{pad}- {first.lstrip()}")
                lines += rest
            else:
                lines.append(f"{pad}- {_scalar(item)}")
    return lines
