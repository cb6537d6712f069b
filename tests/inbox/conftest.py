"""A real Dovecot per test, and settings that point intake at it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from connectors.imap import IMAPSettings
from tests.fakes.dovecot import PASSWORD, USER, Dovecot, available


@pytest.fixture
def dovecot() -> Iterator[Dovecot]:
    """A running Dovecot on a free loopback port (installed by .ci/run)."""
    if not available():
        pytest.fail("dovecot is not installed: .ci/run installs dovecot-imapd")
    server = Dovecot()
    try:
        server.start()
        yield server
    finally:
        server.stop()


def imap_settings(server: Dovecot, **extra: object) -> IMAPSettings:
    """Intake settings for ``server`` (plain IMAP on loopback)."""
    values: dict[str, object] = {
        "host": "127.0.0.1",
        "port": server.port,
        "username": USER,
        "password": PASSWORD,
        "security": "none",
        "poll_s": 5.0,
    }
    values.update(extra)
    return IMAPSettings.model_validate(values)
