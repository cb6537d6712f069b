"""COO_IMAP__SECURITY=tls and starttls against Dovecot with a certificate from a CA made at test time: with the
CA given to the client (SSL_CERT_FILE), intake reads the mail over TLS; without it the certificate is refused
(the connection is verified, never trusted blindly), in one clear line."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.imap import MailIntake, probe
from memory.db import open_database
from memory.mail import MailStore
from tests.fakes.dovecot import Dovecot, available
from tests.fakes.tls_certs import MadeCA, make_ca
from tests.inbox.conftest import imap_settings
from tests.inbox.mails import mail


@pytest.fixture
def ca(tmp_path: Path) -> MadeCA:
    return make_ca(tmp_path / "ca")


@pytest.fixture
def tls_dovecot(ca: MadeCA) -> Iterator[Dovecot]:
    if not available():
        pytest.fail("dovecot is not installed: .ci/run installs dovecot-imapd")
    server = Dovecot(tls=(ca.cert, ca.key))
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("security", ["tls", "starttls"])
async def test_intake_reads_over_tls_with_the_ca_and_refuses_without_it(
    tmp_path: Path, ca: MadeCA, tls_dovecot: Dovecot, security: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await asyncio.to_thread(tls_dovecot.append, mail("Over TLS", "Hello"))
    port = tls_dovecot.tls_port if security == "tls" else tls_dovecot.port
    settings = imap_settings(tls_dovecot, security=security, port=port, timeout_s=5)
    ok, detail = await asyncio.to_thread(probe, settings)  # the machine's CAs do not know ours
    assert not ok and detail == f"cannot reach 127.0.0.1:{port} ({security}): SSLCertVerificationError"
    monkeypatch.setenv("SSL_CERT_FILE", str(ca.ca))
    ok, detail = await asyncio.to_thread(probe, settings)
    assert ok, detail
    async with open_database(tmp_path) as db:
        store = MailStore(db)
        await store.setup()
        assert await MailIntake(settings, store).sync_once() == 1
        found = await store.by_message_id("<m1@acme.test>")
    assert found is not None and found.record.subject == "Over TLS"
