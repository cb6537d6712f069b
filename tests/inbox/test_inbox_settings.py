"""Inbox settings: one clear line naming the variable when something is wrong."""

from __future__ import annotations

import pytest

from bot.settings import ConfigError, load_settings


def test_folders_and_quiet_hours_are_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COO_IMAP__HOST", "imap.example.org")
    monkeypatch.setenv("COO_IMAP__FOLDERS", '["INBOX", "Clients"]')
    monkeypatch.setenv("COO_QUIET_HOURS", "22:00-07:00")
    settings = load_settings(None)
    assert settings.imap.folders == ["INBOX", "Clients"] and settings.imap.port == 993
    assert settings.imap.security == "tls" and settings.imap.poll_s == 60 and settings.quiet_hours == "22:00-07:00"
    monkeypatch.setenv("COO_IMAP__FOLDERS", "[]")
    with pytest.raises(ConfigError, match=r"^COO_IMAP__FOLDERS: must be a JSON list of folder names"):
        load_settings(None)
    monkeypatch.setenv("COO_IMAP__FOLDERS", '["INBOX"]')
    monkeypatch.setenv("COO_QUIET_HOURS", "25:00-07:00")
    with pytest.raises(ConfigError, match=r"^COO_QUIET_HOURS: must be HH:MM-HH:MM"):
        load_settings(None)
