"""Received mail bytes -> :class:`memory.mail.MailRecord`, with the standard library's ``email`` package.

Nothing in a message stops intake: bad charsets are decoded with replacement characters, broken MIME
keeps whatever parts parse, the text is capped, and attachments are kept only as name, type and size.
A message that still cannot be read becomes a raw record (``parsed=False``), stored once and skipped.
"""

from __future__ import annotations

import email
import hashlib
import logging
import re
from email import policy
from email.message import Message
from email.utils import parseaddr, parsedate_to_datetime

import html_text

from memory.mail import MailRecord

log = logging.getLogger(__name__)
MAX_TEXT_CHARS = 20_000
MAX_RAW_BYTES = 1_000_000
_KEPT_HEADERS = (
    "List-Unsubscribe",
    "List-Id",
    "Auto-Submitted",
    "Precedence",
    "X-Auto-Response-Suppress",
    "Return-Path",
    "Content-Type",
    "X-Failed-Recipients",
)
_MSGID = re.compile(r"<[^<>\s]+>")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


def parse_mail(raw: bytes) -> MailRecord:
    """The record of one message; never raises (an unreadable message gives ``parsed=False``)."""
    sha = hashlib.sha256(raw).hexdigest()
    try:
        msg = email.message_from_bytes(raw, policy=policy.default)
        return _record(msg, raw, sha)
    except Exception as exc:  # noqa: BLE001 - a message must never stop intake; it is kept raw and reported
        log.warning("an email could not be parsed (%s); it is kept raw and skipped", type(exc).__name__)
        return MailRecord(message_id=f"<sha256-{sha}@unparsed>", sha256=sha, parsed=False, raw=raw[:MAX_RAW_BYTES])


def _record(msg: Message, raw: bytes, sha: str) -> MailRecord:
    message_id = _first_id(_header(msg, "Message-ID")) or f"<sha256-{sha}@no-message-id>"
    name, addr = parseaddr(_header(msg, "From"))
    _, reply_to = parseaddr(_header(msg, "Reply-To"))
    text, attachments = _content(msg)
    return MailRecord(
        message_id=message_id,
        sha256=sha,
        from_addr=addr.strip().lower(),
        from_name=_clean(name)[:200],
        reply_to=reply_to.strip().lower() if reply_to.strip().lower() != addr.strip().lower() else "",
        subject=_clean(_header(msg, "Subject"))[:300],
        sent_at=_date(_header(msg, "Date")),
        in_reply_to=_first_id(_header(msg, "In-Reply-To")),
        references=tuple(_MSGID.findall(_header(msg, "References")))[-50:],
        body=text,
        headers={h: _clean(_header(msg, h))[:500] for h in _KEPT_HEADERS if msg.get(h) is not None},
        attachments=tuple(attachments),
    )


def _header(msg: Message, name: str) -> str:
    """A header as text; a header the parser cannot decode falls back to its raw form."""
    try:
        value = msg.get(name)
    except Exception:  # noqa: BLE001 - a malformed header is read raw rather than dropping the message
        value = msg.get_all(name, failobj=[""])[0] if hasattr(msg, "get_all") else ""
    return "" if value is None else str(value)


def _clean(text: str) -> str:
    return " ".join(_CONTROL.sub(" ", text).split())


def _first_id(value: str) -> str:
    found = _MSGID.search(value)
    return found.group(0) if found else ""


def _date(value: str) -> str | None:
    try:
        return parsedate_to_datetime(value).isoformat() if value else None
    except (TypeError, ValueError, IndexError):
        return None


def _content(msg: Message) -> tuple[str, list[tuple[str, str, int]]]:
    """The readable text (plain preferred, else HTML as text) and the attachments' name, type and size."""
    plain: list[str] = []
    html: list[str] = []
    attachments: list[tuple[str, str, int]] = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        ctype = part.get_content_type()
        disposition = part.get_content_disposition()
        if disposition == "attachment" or not ctype.startswith("text/") or ctype not in ("text/plain", "text/html"):
            if ctype.startswith("message/") or ctype == "text/rfc822-headers":
                plain.append(_text(part)[:2000])
            else:
                payload = part.get_payload(decode=True) or b""
                attachments.append((_clean(part.get_filename() or "")[:200], ctype, len(payload)))
            continue
        (plain if ctype == "text/plain" else html).append(_text(part))
    text = "\n\n".join(t for t in plain if t.strip())
    if not text.strip() and html:
        text = "\n\n".join(_html_to_text(h) for h in html)
    text = _CONTROL.sub("", text.replace("\r\n", "\n"))
    return text[:MAX_TEXT_CHARS], attachments


def _text(part: Message) -> str:
    """A text part decoded with its charset; unknown or wrong charsets give replacement characters."""
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return str(payload or "")
    payload = payload[: MAX_TEXT_CHARS * 8]
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, errors="replace")
    except LookupError:
        return payload.decode("utf-8", errors="replace")


def _html_to_text(markup: str) -> str:
    try:
        return str(html_text.extract_text(markup[: MAX_TEXT_CHARS * 8]))
    except Exception:  # noqa: BLE001 - broken HTML keeps its tags stripped the simple way
        return re.sub(r"<[^>]*>", " ", markup)
