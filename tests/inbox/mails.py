"""Builders of raw emails for the inbox tests."""

from __future__ import annotations

from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime


def mail(
    subject: str = "Hello",
    body: str = "Hi there",
    sender: str = "Ana Lima <ana@acme.test>",
    to: str = "me@solo.test",
    message_id: str | None = "<m1@acme.test>",
    **headers: str,
) -> bytes:
    """A simple text email as bytes; extra headers by keyword (``Reply_To`` -> ``Reply-To``)."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(datetime(2026, 12, 1, 9, 30, tzinfo=UTC))
    if message_id:
        msg["Message-ID"] = message_id
    for name, value in headers.items():
        msg[name.replace("_", "-")] = value
    msg.set_content(body)
    return msg.as_bytes()
