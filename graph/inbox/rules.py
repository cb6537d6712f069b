"""Triage by rules alone: bounces, auto-replies (RFC 3834), mailing lists, receipts, known contacts.

These run before any model and are the whole of triage in offline mode. A rule that is sure (a bounce,
an auto-reply, a list) is final; otherwise the result is the model's starting point.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from memory.mail import MailRecord

MailClass = Literal["needs_reply", "waiting_on_us", "fyi", "receipt", "newsletter", "suspicious"]
Urgency = Literal["high", "normal", "low"]
CLASSES: tuple[str, ...] = ("needs_reply", "waiting_on_us", "fyi", "receipt", "newsletter", "suspicious")
URGENCIES: tuple[str, ...] = ("high", "normal", "low")
NEEDS_OPERATOR = frozenset({"needs_reply", "waiting_on_us", "suspicious"})

_URGENT = re.compile(r"\b(urgent|asap|immediately|today|deadline)\b", re.IGNORECASE)
_RECEIPT = re.compile(r"\b(receipt|invoice|payment (received|confirmation)|order confirmation|your order)\b", re.I)
_AUTO_SUBJECT = re.compile(r"^(auto(matic)? ?reply|out of (the )?office|autoreply|abwesenheit)", re.IGNORECASE)
_DAEMON = re.compile(r"^(mailer-daemon|postmaster)@", re.IGNORECASE)
# Invisible characters that only serve to hide text from a human reader (Unicode tags, bidi overrides).
_HIDDEN = re.compile("[\U000e0000-\U000e007f\u202a-\u202e\u2066-\u2069]")


@dataclass(frozen=True)
class Verdict:
    """What triage decided about one message."""

    mail_class: str
    urgency: str
    summary: str
    final: bool = False

    @property
    def needs_operator(self) -> bool:
        """Whether the operator should see it in /inbox."""
        return self.mail_class in NEEDS_OPERATOR


def by_rules(record: MailRecord, known_contact: bool, replies_to_ours: bool) -> Verdict:
    """The rules' verdict. ``final`` means no model is asked."""
    headers = {k.lower(): v for k, v in record.headers.items()}
    subject = record.subject or "(no subject)"
    if not record.parsed:
        return Verdict("suspicious", "low", "A message that could not be read; kept as it came", final=True)
    if _is_bounce(record, headers):
        return Verdict("fyi", "normal", f"Delivery failure: {subject}", final=True)
    if _is_auto_reply(record, headers):
        return Verdict("fyi", "low", f"Automatic reply: {subject}", final=True)
    if (
        "list-unsubscribe" in headers
        or "list-id" in headers
        or headers.get("precedence", "").lower() in ("bulk", "list")
    ):
        return Verdict("newsletter", "low", f"Newsletter: {subject}", final=True)
    if _HIDDEN.search(record.body) or _HIDDEN.search(record.subject) or _spoofed_name(record):
        return Verdict("suspicious", "low", f"Looks deceptive (hidden text or a borrowed name): {subject}", final=True)
    if _RECEIPT.search(subject):
        return Verdict("receipt", "low", f"Receipt or invoice: {subject}")
    urgency = "high" if _URGENT.search(subject) else "normal"
    if replies_to_ours:
        return Verdict("waiting_on_us", urgency, f"Reply to our email: {subject}")
    if known_contact:
        return Verdict("needs_reply", urgency, f"From a contact: {subject}")
    return Verdict("needs_reply", "low", subject)


def _is_bounce(record: MailRecord, headers: dict[str, str]) -> bool:
    ctype = headers.get("content-type", "").lower()
    return (
        ("multipart/report" in ctype and "delivery-status" in ctype)
        or bool(_DAEMON.match(record.from_addr))
        or "x-failed-recipients" in headers
    )


def _is_auto_reply(record: MailRecord, headers: dict[str, str]) -> bool:
    auto = headers.get("auto-submitted", "").strip().lower()
    return (
        (bool(auto) and not auto.startswith("no"))
        or headers.get("precedence", "").lower() == "auto_reply"
        or "x-auto-response-suppress" in headers
        or bool(_AUTO_SUBJECT.match(record.subject))
    )


def _spoofed_name(record: MailRecord) -> bool:
    """A display name that carries another address than the sender's ("ceo@bank.test" <x@evil.test>)."""
    found = re.search(r"[\w.+-]+@[\w-]+(\.[\w-]+)+", record.from_name)
    return found is not None and found.group(0).lower() != record.from_addr
