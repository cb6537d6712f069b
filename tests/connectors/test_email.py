"""The SMTP connector against a real SMTP server on localhost."""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from connectors.base import AmbiguousOutcome, PermanentError, TemporaryError
from connectors.email import EmailAction, EmailConnector, message_id_for
from connectors.settings import SMTPSettings
from tests.fakes.smtp_server import SMTPServer, free_port
from tests.fakes.tls_certs import make_ca


def action(**kw: object) -> EmailAction:
    fields: dict[str, object] = {
        "from_addr": "me@example.org",
        "to": ("ana@example.org",),
        "subject": "Proposal",
        "body": "Hi Ana,\nthe proposal is ready. Ünïcødé ✓",
    }
    fields.update(kw)
    return EmailAction.model_validate(fields)


async def test_sends_exact_content_with_stable_message_id() -> None:
    with SMTPServer() as smtp:
        connector = EmailConnector(SMTPSettings.model_validate(smtp.settings()))
        done = await connector.execute(action(cc=("bo@example.org",)), "coo-abc123")
    assert len(smtp.delivered) == 1
    got = smtp.delivered[0]
    assert got.rcpt_tos == ["ana@example.org", "bo@example.org"]
    assert got.message["Subject"] == "Proposal" and got.message["Cc"] == "bo@example.org"
    assert got.body == "Hi Ana,\nthe proposal is ready. Ünïcødé ✓"
    assert got.message["Message-ID"] == "<coo-abc123@example.org>" == done.external_id
    assert message_id_for("coo-abc123", "x@example.org") == "<coo-abc123@example.org>"


@pytest.mark.parametrize(
    ("mode", "error"),
    [("tempfail", TemporaryError), ("permfail", PermanentError), ("drop_after_data", AmbiguousOutcome)],
)
async def test_failures_are_classified(mode: str, error: type[Exception]) -> None:
    with SMTPServer(default_mode=mode) as smtp:  # type: ignore[arg-type]
        connector = EmailConnector(SMTPSettings.model_validate(smtp.settings()))
        with pytest.raises(error):
            await connector.execute(action(), "coo-1")


async def test_starttls_checks_the_servers_certificate_before_any_mail_goes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = make_ca(tmp_path / "ca")
    served = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    served.load_cert_chain(made.cert, made.key)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    with SMTPServer(tls=served) as smtp:
        connector = EmailConnector(SMTPSettings.model_validate(smtp.settings(security="starttls")))
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)  # the machine's store does not know this CA
        with pytest.raises(TemporaryError, match="unreachable"):
            await connector.execute(action(), "coo-untrusted")
        assert smtp.delivered == []
        monkeypatch.setenv("SSL_CERT_FILE", str(made.ca))
        await connector.execute(action(), "coo-trusted")
    assert [d.message["Message-ID"] for d in smtp.delivered] == ["<coo-trusted@example.org>"]


async def test_server_down_is_temporary() -> None:
    settings = SMTPSettings(host="127.0.0.1", port=free_port(), from_addr="me@example.org", security="none")
    with pytest.raises(TemporaryError, match="unreachable"):
        await EmailConnector(settings).execute(action(), "coo-1")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"to": ()}, "at least one recipient"),
        ({"to": ("not-an-address",)}, "is not an email address"),
        ({"to": ("ana@example.org\r\nBcc: evil@x.org",)}, "is not an email address"),
        ({"subject": "   "}, "subject is empty"),
        ({"body": "\n \n"}, "body is empty"),
        ({"body": "x" * 100_001}, "longer than 100000"),
    ],
)
def test_bad_input_is_refused_with_a_clear_reason(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        action(**fields)


def test_digest_binds_every_field() -> None:
    base = action()
    assert base.digest() == action().digest()
    for change in (
        {"to": ("bo@example.org",)},
        {"cc": ("x@example.org",)},
        {"subject": "Other"},
        {"body": "Hi Ana, changed"},
        {"from_addr": "other@example.org"},
    ):
        assert action(**change).digest() != base.digest()
    # normalisation: the same email written differently has the same digest
    assert action(to=(" ana@EXAMPLE.org ",), subject=" Proposal ").digest() == base.digest()


@pytest.mark.parametrize("body", ["one\r\r\ntwo", "one\rtwo", "one\r\ntwo\r", "\r\none\n\r\n"])
def test_a_stored_body_validates_to_itself(body: str) -> None:
    """The outbox re-validates the stored action and compares digests: any other text would be refused."""
    action = EmailAction(from_addr="me@example.org", to=("ana@example.org",), subject="s", body=body)
    again = EmailAction.model_validate(action.model_dump(mode="json"))
    assert again.body == action.body and again.digest() == action.digest()
    assert "\r" not in action.body
