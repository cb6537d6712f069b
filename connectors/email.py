"""Email over SMTP (aiosmtplib): the ``email.send`` action kind. One approved email, one delivery attempt
sequence, one Message-ID derived from the approval."""

from __future__ import annotations

import contextlib
import re
import ssl
from collections.abc import Awaitable, Callable, Sequence
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any, ClassVar, Literal

import aiosmtplib
from pydantic import BaseModel, Field, SerializerFunctionWrapHandler, field_validator, model_serializer

from connectors.base import (
    Action,
    ActionError,
    ActionKind,
    AmbiguousOutcome,
    CommandSpec,
    ConnectorSpec,
    Context,
    Deps,
    Executed,
    NotNeeded,
    PermanentError,
    PolicyHints,
    Preconditions,
    Preview,
    Progress,
    TemporaryError,
    ToolSpec,
    parse_field_lines,
)
from connectors.contacts import resolve_addresses
from connectors.settings import SMTPSettings
from memory.addresses import normalise_address

_LINE_BREAK = re.compile(r"\r\n?")
_MESSAGE_ID = re.compile(r"^<[^<>\s]{1,900}>$")
MAX_BODY_CHARS = 100_000
# How a card names an email's condition (by its scheme).
ONLY_IF = {"invoice": "the invoice is still unpaid at Stripe (read again right before sending)"}
EMAIL_USAGE = "Usage: /email <to>[,<to>…] <subject> | <body>"
EDIT_HELP = (
    "Send the corrected email in your next message: either the new body as plain text, or lines "
    "such as\nto=ana@example.org\nsubject=New subject\nbody=The new text (everything after body= is the body)"
)


class EmailAction(Action):
    """One email exactly as it will be sent."""

    kind: Literal["email.send"] = "email.send"
    from_addr: str
    to: tuple[str, ...]
    cc: tuple[str, ...] = ()
    subject: str
    body: str
    # Threading of a reply (the Message-IDs it answers); empty for a new email.
    in_reply_to: str = ""
    references: tuple[str, ...] = ()
    only_if: str | None = Field(default=None, pattern=r"^[a-z]+:[A-Za-z0-9_]+$")
    """A condition read again right before sending (``invoice:in_123``: still owed); see ``Preconditions``."""

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
        # Every line break becomes "\n" in one pass, so a stored body validates to itself (its digest holds).
        body = _LINE_BREAK.sub("\n", value).strip("\n")
        if not body.strip():
            raise ValueError("the body is empty")
        if len(body) > MAX_BODY_CHARS:
            raise ValueError(f"the body is longer than {MAX_BODY_CHARS} characters")
        return body

    @field_validator("in_reply_to", "references", mode="before")
    @classmethod
    def _message_ids(cls, value: Any) -> Any:
        items = [value] if isinstance(value, str) else list(value or [])
        for item in items:
            if item and not _MESSAGE_ID.match(str(item)):
                raise ValueError(f"'{item}' is not a Message-ID")
        return value

    @property
    def recipients(self) -> tuple[str, ...]:
        """Everyone who receives it."""
        return self.to + self.cc

    @model_serializer(mode="wrap")
    def _without_unset_extras(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """An email that answers nothing and has no send condition is stored (and so hashed into its digest)
        exactly as before threading and conditions existed: cards and outbox rows made before keep verifying,
        whether the digest is taken from the model or from their stored JSON."""
        data: dict[str, Any] = handler(self)
        if not self.in_reply_to and not self.references:
            data.pop("in_reply_to", None)
            data.pop("references", None)
        if self.only_if is None:
            data.pop("only_if", None)
        return data


class SendEmailArgs(BaseModel):
    """Arguments of the send_email tool."""

    to: list[str] = Field(min_length=1, description="recipient email addresses, or contact names")
    cc: list[str] = Field(default_factory=list, description="copy recipients")
    subject: str = Field(min_length=1)
    body: str = Field(min_length=1, description="the full plain-text body, signed as the operator")


OnSent = Callable[[str, str, tuple[str, ...], str], Awaitable[None]]
"""Told each sent email's Message-ID, idempotency key, recipients and subject (to link replies back)."""


def message_id_for(idempotency_key: str, from_addr: str) -> str:
    """A stable Message-ID derived from the idempotency key (and so from the approval id): ``<key@domain>``
    (RFC 5322). The key carries the install's id (``graph.approvals.service.idempotency_key``), so the Message-ID is
    unique across installs too; a resend of the same approval keeps it, so the recipient sees one message."""
    domain = from_addr.rpartition("@")[2] or "solo-coo.local"
    return f"<{idempotency_key}@{domain}>"


class EmailConnector(ActionKind[EmailAction]):
    """``email.send`` through the configured SMTP server."""

    name = "email.send"
    title = "Send this email?"
    args = EmailAction
    policy: ClassVar[PolicyHints] = PolicyHints(needs_approval=True, relaxed_for_known_targets=True)
    tool: ToolSpec | None = ToolSpec(
        "send_email",
        "Propose an email. The operator sees the exact email on a card and must approve it before anything is sent.",
        SendEmailArgs,
    )
    command: ClassVar[CommandSpec | None] = CommandSpec(
        "email", "Draft an email: /email <to> <subject> | <body>", EMAIL_USAGE
    )
    edit_help = EDIT_HELP
    done_verb = "Sent"
    activity = "sending email"

    def __init__(
        self, settings: SMTPSettings, on_sent: OnSent | None = None, preconditions: Preconditions | None = None
    ) -> None:
        self._settings = settings
        self._on_sent = on_sent
        self._preconditions = preconditions or Preconditions()
        self.configured = settings.configured

    @property
    def from_addr(self) -> str | None:
        """The configured sender address."""
        return self._settings.from_addr

    def build(self, fields: dict[str, Any]) -> EmailAction:
        """An email from loose fields (the sender is always the configured one)."""
        if not self._settings.from_addr:
            raise ActionError("Email is not configured: set COO_SMTP__HOST and COO_SMTP__FROM_ADDR.")
        return super().build({**fields, "from_addr": self._settings.from_addr})

    def preview(self, action: EmailAction) -> Preview:
        fields = [("From", action.from_addr), ("To", ", ".join(action.to))]
        if action.cc:
            fields.append(("Cc", ", ".join(action.cc)))
        fields.append(("Subject", action.subject))
        if action.in_reply_to:
            fields.append(("In reply to", action.in_reply_to))
        if action.only_if:
            fields.append(("Only if", ONLY_IF.get(action.only_if.partition(":")[0], action.only_if)))
        return Preview(self.title, tuple(fields), action.body)

    def summary(self, action: EmailAction) -> str:
        return f'email to {", ".join(action.to)}: "{action.subject}"'

    def targets(self, action: EmailAction) -> tuple[str, ...]:
        return action.recipients

    async def edit(self, action: EmailAction, text: str, ctx: Context) -> EmailAction:
        """A whole new body, or ``to=``/``cc=``/``subject=``/``body=`` lines."""
        try:
            changes = parse_field_lines(text, ("to", "cc", "subject", "body"), rest_field="body")
        except ActionError as exc:
            raise ActionError(f"{exc} {EDIT_HELP}") from None
        current = {"to": ",".join(action.to), "cc": ",".join(action.cc), "subject": action.subject, "body": action.body}
        return self.build({**current, "only_if": action.only_if, **changes})

    async def from_tool(self, args: BaseModel, ctx: Context) -> EmailAction:
        assert isinstance(args, SendEmailArgs)
        to = await resolve_addresses(args.to, ctx.records)
        cc = await resolve_addresses(args.cc, ctx.records)
        return self.build({"to": to, "cc": cc, "subject": args.subject, "body": args.body})

    async def from_command(self, text: str, ctx: Context) -> EmailAction:
        """``ana@x.org Proposal ready | Hi Ana, …``."""
        head, bar, body = text.partition("|")
        words = head.split(None, 1)
        if not bar or len(words) < 2 or not body.strip():
            raise ActionError(EMAIL_USAGE)
        return self.build({"to": words[0], "subject": words[1].strip(), "body": body.strip()})

    def outcome_line(self, when: str, executed: Executed) -> str:
        return f"Sent {when}. Message-ID {executed.external_id}."

    def secrets(self) -> Sequence[str]:
        password = self._settings.password
        return [password.get_secret_value()] if password else []

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
        if action.in_reply_to:
            msg["In-Reply-To"] = action.in_reply_to
        if action.references:
            msg["References"] = " ".join(action.references)
        msg.set_content(action.body)
        return msg

    async def execute(self, action: EmailAction, idempotency_key: str, progress: Progress | None = None) -> Executed:
        """Send once. 4xx/connection problems before DATA: TemporaryError; 5xx: PermanentError;
        anything lost once the message body was handed over: AmbiguousOutcome."""
        s = self._settings
        if not s.configured or s.host is None:
            raise PermanentError("email is not configured (COO_SMTP__HOST, COO_SMTP__FROM_ADDR)")
        if action.only_if and (why := await self._preconditions.why_not(action.only_if)):
            raise NotNeeded(f"not sent: {why}")
        message = self.build_message(action, idempotency_key)
        client = self._client()
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
        if self._on_sent is not None:
            # Stored before the message leaves: a reply that comes back always finds what it answers.
            await self._on_sent(message["Message-ID"], idempotency_key, action.recipients, action.subject)
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

    def _client(self, timeout_s: float | None = None) -> aiosmtplib.SMTP:
        s = self._settings
        return aiosmtplib.SMTP(
            hostname=s.host,
            port=s.port,
            timeout=timeout_s or s.timeout_s,
            use_tls=s.security == "tls",
            start_tls=s.security == "starttls",
            tls_context=ssl.create_default_context() if s.security != "none" else None,
        )

    async def check(self) -> tuple[bool | None, str]:
        """Connect, EHLO (STARTTLS or TLS as configured) and log in when a username is set; no mail is sent."""
        s = self._settings
        if not s.configured or s.host is None:
            return None, "not configured; set COO_SMTP__HOST and COO_SMTP__FROM_ADDR"
        where = f"{s.host}:{s.port}"
        try:
            steps = await smtp_handshake(
                s.host, s.port, s.security, s.username, s.password.get_secret_value() if s.password else None
            )
        except aiosmtplib.SMTPAuthenticationError as exc:
            return False, f"{where}: login refused ({exc.code})"
        except aiosmtplib.SMTPResponseException as exc:
            return False, f"{where}: server answered {exc.code}"
        except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
            return False, f"{where} unreachable ({type(exc).__name__})"
        return True, f"{where} answered {steps} ({s.security})"


async def smtp_handshake(
    host: str, port: int, security: str, username: str | None, password: str | None, timeout_s: float = 10.0
) -> str:
    """Connect, EHLO and (with a username) log in, then QUIT; returns what was done, e.g. "EHLO + login"."""
    client = aiosmtplib.SMTP(
        hostname=host, port=port, use_tls=security == "tls", start_tls=security == "starttls", timeout=timeout_s
    )
    await client.connect()
    try:
        await client.ehlo()
        done = "EHLO"
        if username:
            await client.login(username, password or "")
            done += " + login"
    finally:
        with contextlib.suppress(aiosmtplib.SMTPException, OSError):
            await client.quit()
    return done


def _classify(code: int, text: str) -> Exception:
    reason = f"SMTP {code} {text.strip()[:200]}"
    return TemporaryError(reason) if 400 <= code < 500 else PermanentError(reason)


async def _quit(client: aiosmtplib.SMTP) -> None:
    if client.is_connected:
        try:
            await client.quit()
        except (aiosmtplib.SMTPException, OSError, TimeoutError):
            client.close()


def connector(settings: SMTPSettings, deps: Deps) -> list[ActionKind[Any]]:
    """The kinds this connector declares."""
    mail = deps.mail_store
    return [EmailConnector(settings, mail.record_sent if mail is not None else None, deps.preconditions)]


CONNECTOR = ConnectorSpec("smtp", SMTPSettings, connector)
