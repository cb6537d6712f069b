"""The connector contract: every outward action kind declares, in its own module, everything the rest of
the product needs to know about it. Nothing outside that module names a kind.

An :class:`ActionKind` has: the arguments model (the exact payload hashed into the approval digest),
the card preview, how an operator's edit is parsed, the digest line, policy hints, how the model and a
slash command propose it, ``execute`` with an idempotency key, and optionally a compensation (the action
that undoes it, proposed through its own card).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from memory.errors import InternalError
from memory.install import content_digest
from memory.mail import MailStore
from memory.records import Records


class TemporaryError(InternalError):
    """The call did not happen and may succeed later (4xx SMTP, connection refused, 429...)."""


class PermanentError(InternalError):
    """The call did not happen and will not succeed as is (5xx SMTP, bad address, Stripe 4xx...)."""


class AmbiguousOutcome(InternalError):
    """The call may or may not have had its effect (e.g. connection lost after DATA). Never retried."""


class NotNeeded(PermanentError):
    """The action was not done because a condition it was approved under no longer holds (an invoice paid
    before its reminder went out); the message says why."""


class ActionError(InternalError, ValueError):
    """A proposal or an edit that cannot become an action; the message is shown to the operator as is."""


@dataclass(frozen=True)
class Executed:
    """A successful execution: the provider's id for it (e.g. the Message-ID) and a short detail."""

    external_id: str
    detail: str


class Action(BaseModel):
    """An outward action's exact, final payload. Frozen: what was approved is what runs."""

    model_config = {"frozen": True, "extra": "forbid"}

    kind: str

    def digest(self) -> str:
        """SHA-256 over the canonical JSON of every field: recipients, amounts, body, URL."""
        return content_digest(self.model_dump(mode="json"))


@dataclass(frozen=True)
class Preview:
    """What a card shows: a title, labelled fields, then free lines (a body, invoice lines, a post)."""

    title: str
    fields: tuple[tuple[str, str], ...]
    body: str = ""

    def render(self) -> str:
        """Plain text, the same on every channel."""
        lines = [f"{label}: {value}" for label, value in self.fields]
        return "\n".join(lines) + (f"\n\n{self.body}" if self.body else "")


@dataclass(frozen=True)
class PolicyHints:
    """How the approval policy treats a kind by default. Outward actions need a card unless the
    operator chose ``relaxed`` and the kind allows it for targets that already succeeded before."""

    needs_approval: bool = True
    relaxed_for_known_targets: bool = False


@dataclass(frozen=True)
class ToolSpec:
    """How the model proposes this kind: a tool name, what it is for, and its arguments model."""

    name: str
    description: str
    args: type[BaseModel]
    parameters: dict[str, Any] | None = None
    """The JSON schema shown to the model, when it is not ``args``' own (a tool described at run time)."""


@dataclass(frozen=True)
class ReadTool:
    """A tool the model may call without a card: a read of an outside system the operator trusts. What it
    returns is outside content (``origin`` names where from): quoted as data, never instructions (I8)."""

    name: str
    description: str
    parameters: dict[str, Any]
    origin: str
    run: Callable[[dict[str, Any]], Awaitable[str]]
    key: str = ""
    """How the operator names it (``server.tool``): skills declare the reads they may use by this name."""


@dataclass(frozen=True)
class CommandSpec:
    """The slash command that proposes this kind without a model."""

    name: str
    description: str
    usage: str


@dataclass(frozen=True)
class Context:
    """What proposing an action may use: contact records, the operator's currency and today's date,
    and where the proposal comes from (the conversation and who asked)."""

    records: Records | None
    currency: str
    today: date
    session: str = ""
    requested_by: str = ""


class Progress:
    """The steps an execution already completed, stored with its outbox row before the next step,
    so an interrupted execution resumes where it was (with the same idempotency keys)."""

    def __init__(self, done: dict[str, Any], save: Callable[[dict[str, Any]], Awaitable[None]]) -> None:
        self._done = dict(done)
        self._save = save

    def get(self, step: str) -> Any:
        """The stored result of a step, or None."""
        return self._done.get(step)

    async def record(self, step: str, result: Any) -> None:
        """Store a step's result (JSON-plain) before going on."""
        self._done[step] = result
        await self._save(dict(self._done))

    @property
    def steps(self) -> dict[str, Any]:
        """Everything stored so far."""
        return dict(self._done)


A = TypeVar("A", bound=Action)


class ActionKind(Generic[A]):
    """One kind of outward action. Subclasses set the class attributes and implement the methods."""

    name: str
    title: str
    args: type[A]
    policy: ClassVar[PolicyHints] = PolicyHints()
    tool: ToolSpec | None = None
    command: ClassVar[CommandSpec | None] = None
    edit_help: ClassVar[str] = "Send the corrected fields as lines: name=value."
    # True when the remote side honours idempotency keys: an interrupted or failed call is completed
    # later with the same keys (I7) instead of being left "unknown".
    resumable: ClassVar[bool] = False
    # The kind whose action undoes this one (offered as a button on a done card), if any.
    compensation: ClassVar[str | None] = None
    compensation_label: ClassVar[str] = "Undo"
    done_verb: ClassVar[str] = "Done"
    # The status line of an approved card while it runs, and what a card that never ran says.
    working: ClassVar[str] = "Sending…"
    nothing_done: ClassVar[str] = "Nothing was sent."
    # How the policy's refusals name it: "Your policy forbids sending email."
    activity: ClassVar[str] = "this action"
    # Connectors that leave (or configure) a single kind leave this False when they cannot run.
    configured: bool = True

    def parse(self, payload: dict[str, Any]) -> A:
        """A stored payload back into the arguments model."""
        return self.args.model_validate(payload)

    def build(self, fields: dict[str, Any]) -> A:
        """The arguments model from loose fields; ActionError with every reason when it is not valid."""
        try:
            return self.args.model_validate({"kind": self.name, **fields})
        except ValidationError as exc:
            raise ActionError(f"That {self.noun} is not valid: {reasons(exc)}") from None

    @property
    def noun(self) -> str:
        """What one action of this kind is called ("email", "invoice", "post")."""
        return self.name.split(".", 1)[0]

    def preview(self, action: A) -> Preview:
        """Exactly what the card shows: every field that will be executed."""
        raise NotImplementedError

    def summary(self, action: A) -> str:
        """One line for the digest and lists."""
        return self.name

    def targets(self, action: A) -> tuple[str, ...]:
        """Who or what receives the action (for "already done before" policy hints)."""
        return ()

    async def edit(self, action: A, text: str, ctx: Context) -> A:
        """The operator's correction applied; ActionError (with the help) when it cannot be read."""
        raise ActionError(f"A {self.noun} cannot be edited. Reject it and ask again.")

    async def from_tool(self, args: BaseModel, ctx: Context) -> A:
        """The action the model proposed (contacts resolved, never guessed)."""
        raise NotImplementedError

    async def from_command(self, text: str, ctx: Context) -> A:
        """The action a slash command proposed."""
        raise NotImplementedError

    async def execute(self, action: A, idempotency_key: str, progress: Progress | None = None) -> Executed:
        """Do it once. Raises TemporaryError, PermanentError or AmbiguousOutcome."""
        raise NotImplementedError

    async def reconcile(self) -> list[str]:
        """Bring our records up to date with the remote side (a daily job); returns what changed."""
        return []

    def compensate(self, action: A, executed: Executed) -> Action | None:
        """The action that undoes a done one (proposed through its own card), if any."""
        return None

    def outcome_line(self, when: str, executed: Executed) -> str:
        """The status line of a done card."""
        return f"{self.done_verb} {when}. {executed.detail}".strip()

    def secrets(self) -> Sequence[str]:
        """Values to redact from every log (keys, passwords, signing secrets)."""
        return ()

    async def close(self) -> None:
        """Release connections (several kinds may share one client: closing twice must be safe)."""
        return None

    async def check(self) -> tuple[bool | None, str]:
        """For ``coo doctor``: (True/False/None for not configured, detail)."""
        return (None, "not configured") if not self.configured else (True, "configured")


def reasons(exc: ValidationError) -> str:
    """A pydantic error as one readable line."""
    return "; ".join(str(err.get("msg", "")).removeprefix("Value error, ") for err in exc.errors()) or str(exc)


_FIELD_LINE = re.compile(r"^\s*([a-z_]+)\s*[=:]\s?(.*)$", re.IGNORECASE)


def parse_field_lines(text: str, fields: Sequence[str], rest_field: str | None = None) -> dict[str, str]:
    """Parse ``name=value`` lines of an edit. With ``rest_field``, everything after ``rest_field=`` (to the
    end) is its value, and a text that does not start with a field line is all of it.

    Raises ActionError naming the first line that is not ``name=value`` for a known name.
    """
    lines = text.strip().splitlines()
    if not lines:
        raise ActionError("The edit is empty.")
    first = _FIELD_LINE.match(lines[0])
    if rest_field and (first is None or first.group(1).lower() not in fields):
        return {rest_field: text.strip()}
    out: dict[str, str] = {}
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        match = _FIELD_LINE.match(line)
        name = match.group(1).lower() if match else ""
        if match is None or name not in fields:
            known = ", ".join(f"{f}=" for f in fields)
            raise ActionError(f"I could not read that edit: {line.strip()[:60]!r} is not one of {known}.")
        if name == rest_field:
            out[name] = "\n".join([match.group(2), *lines[i + 1 :]]).strip()
            break
        out[name] = match.group(2).strip()
    return out


def when_text(at: datetime) -> str:
    """How cards say when something happened."""
    return f"at {at:%Y-%m-%d %H:%M} UTC"


Check = Callable[[str], Awaitable[str | None]]


class Preconditions:
    """Conditions an action can carry (``invoice:in_123``: that invoice is still owed), asked right before it
    executes: state that can change outside is read again before the effect (I8). A connector adds the
    checks it can answer; a check returns why the action is no longer wanted, or None. A condition nobody
    can check stops the action (fail closed)."""

    def __init__(self) -> None:
        self._checks: dict[str, Check] = {}

    def add(self, scheme: str, check: Check) -> None:
        """Answer conditions ``<scheme>:<argument>`` with ``check(argument)``."""
        self._checks[scheme] = check

    async def why_not(self, condition: str) -> str | None:
        """Why an action under ``condition`` must not run now, or None when it still may."""
        scheme, _, argument = condition.partition(":")
        check = self._checks.get(scheme)
        if check is None:
            raise PermanentError(f"the condition {condition!r} cannot be checked here, so nothing was done")
        return await check(argument)


@dataclass(frozen=True)
class Deps:
    """What connectors get from the runtime: records (to resolve and record customers), the currency, and
    the preconditions every connector built with the same ``Deps`` shares."""

    records: Records | None
    currency: str
    mail_store: MailStore | None = None  # where sent Message-IDs are kept (replies link back)
    preconditions: Preconditions = field(default_factory=Preconditions)


@dataclass(frozen=True)
class ConnectorSpec:
    """A connector, as its module declares it (``CONNECTOR = ConnectorSpec(...)``): the settings field it
    reads (``COO_<FIELD>__*``), that field's model, and the function that makes its kinds from them."""

    settings_field: str
    settings_model: type[BaseModel]
    make: Callable[[Any, Deps], list[ActionKind[Any]]]
