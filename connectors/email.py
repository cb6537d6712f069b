"""Email over SMTP (aiosmtplib): one approved email, one delivery attempt sequence, one Message-ID."""

from __future__ import annotations

import re
import ssl
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any, Literal

import aiosmtplib
from pydantic import field_validator

from connectors.base import Action, AmbiguousOutcome, Executed, PermanentError, TemporaryError
from connectors.settings import SMTPSettings

_ADDRESS = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
MAX_BODY_CHARS = 100_000


def normalise_address(value: str) -> str:
    """A plain, lower-cased address; raises ValueError for anything else (no display names, no lists)."""
    address = value.strip().strip("<>").strip()
    if not _ADDRESS.match(address) or len(address) > 254:
        raise ValueError(f"'{value.strip()}' is not an email address")
    local, _, domain = address.partition("@")
    return f"{local}@{domain.lower()}"


class EmailAction(Action):
    """One email exactly as it will be sent."""

    kind: Literal["email.send"] = "email.send"
    from_addr: str
    to: tuple[str, ...]
    cc: tuple[str, ...] = ()
    subject: str
    body: str

    @field_validator("from_addr")
    @classmethod
    def _from(cls, value: str) -> str:
        return normalise_address(value)

    @field_validator("to", "cc", mode="before")
    @classmethod
    def _addresses(cls, value: Any) -> tuple[str, ...]:
        items = [value] if isinstance(value, str) else list(value or [])
        parts = [p for item in items for p in re.split(r"[,;\s]+", str(item)) if p.strip()]
        seen: dict[str, None] = {}
        for part in parts:
            seen.setdefault(normalise_address(part), None)
        return tuple(seen)

    @field_validator("to")
    @classmethod
    def _to_required(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("an email needs at least one recipient")
        return value

    @field_validator("subject")
    @classmethod
    def _subject(cls, value: str) -> str:
        subject = " ".join(value.split())
        if not subject:
            raise ValueError("the subject is empty")
        if len(subject) > 300:
            raise ValueError("the subject is longer than 300 characters")
        return subject

    @field_validator("body")
    @classmethod
    def _body(cls, value: str) -> str:
        body = value.replace("\r\n", "\n").strip("\n")
        if not body.strip():
            raise ValueError("the body is empty")
        if len(body) > MAX_BODY_CHARS:
            raise ValueError(f"the body is longer than {MAX_BODY_CHARS} characters")
        return body

    @property
    def recipients(self) -> tuple[str, ...]:
        """Everyone who receives it."""
        return self.to + self.cc


def message_id_for(idempotency_key: str, from_addr: str) -> str:
    """A stable Message-ID derived from the idempotency key (and so from the approval id)."""
    domain = from_addr.rpartition("@")[2] or "solo-coo.local"
    return f"<{idempotency_key}@{domain}>"


class EmailConnector:
    """Sends :class:`EmailAction` through the configured SMTP server."""

    kind = "email.send"

    def __init__(self, settings: SMTPSettings) -> None:
        self._settings = settings

    @property
    def from_addr(self) -> str | None:
        """The configured sender address."""
        return self._settings.from_addr

    def parse(self, payload: dict[str, Any]) -> EmailAction:
        """Parse a stored payload."""
        return EmailAction.model_validate(payload)

    def preview(self, action: Action) -> str:
        """The whole email as the card shows it."""
        assert isinstance(action, EmailAction)
        lines = [f"From: {action.from_addr}", f"To: {', '.join(action.to)}"]
        if action.cc:
            lines.append(f"Cc: {', '.join(action.cc)}")
        lines += [f"Subject: {action.subject}", "", action.body]
        return "\n".join(lines)

    def build_message(self, action: EmailAction, idempotency_key: str) -> EmailMessage:
        """The MIME message, with its stable Message-ID."""
        msg = EmailMessage()
        msg["From"] = action.from_addr
        msg["To"] = ", ".join(action.to)
        if action.cc:
            msg["Cc"] = ", ".join(action.cc)
        msg["Subject"] = action.subject
        msg["Date"] = formatdate(localtime=False, usegmt=True)
        msg["Message-ID"] = message_id_for(idempotency_key, action.from_addr)
        msg.set_content(action.body)
        return msg

    async def execute(self, action: Action, idempotency_key: str) -> Executed:
        """Send once. 4xx/connection problems before DATA: TemporaryError; 5xx: PermanentError;
        anything lost once the message body was handed over: AmbiguousOutcome."""
        assert isinstance(action, EmailAction)
        s = self._settings
        if not s.configured or s.host is None:
            raise PermanentError("email is not configured (COO_SMTP__HOST, COO_SMTP__FROM_ADDR)")
        message = self.build_message(action, idempotency_key)
        client = aiosmtplib.SMTP(
            hostname=s.host,
            port=s.port,
            timeout=s.timeout_s,
            use_tls=s.security == "tls",
            start_tls=s.security == "starttls",
            tls_context=ssl.create_default_context(),
        )
        try:
            await client.connect()
            if s.username and s.password:
                await client.login(s.username, s.password.get_secret_value())
            await client.mail(action.from_addr)
            for rcpt in action.recipients:
                await client.rcpt(rcpt)
        except aiosmtplib.SMTPResponseException as exc:
            await _quit(client)
            raise _classify(exc.code, exc.message) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            await _quit(client)
            raise TemporaryError(f"SMTP server unreachable: {type(exc).__name__}") from None
        try:
            await client.data(message.as_bytes())
        except aiosmtplib.SMTPResponseException as exc:
            # The server answered the DATA with an error code: it did not take the message.
            await _quit(client)
            raise _classify(exc.code, exc.message) from None
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            raise AmbiguousOutcome(f"connection lost during DATA ({type(exc).__name__})") from None
        await _quit(client)
        return Executed(external_id=message["Message-ID"], detail=f"accepted by {s.host}")


def _classify(code: int, text: str) -> Exception:
    reason = f"SMTP {code} {text.strip()[:200]}"
    return TemporaryError(reason) if 400 <= code < 500 else PermanentError(reason)


async def _quit(client: aiosmtplib.SMTP) -> None:
    if client.is_connected:
        try:
            await client.quit()
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            client.close()
