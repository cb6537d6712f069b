"""Our own message types. Channel adapters translate platform updates to and from these."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

from memory.errors import InternalError

InboundKind = Literal["message", "edit", "command", "callback", "other"]


@dataclass(frozen=True)
class Button:
    """One tap target. ``data`` is a short opaque id, never an action payload."""

    label: str
    data: str


@dataclass(frozen=True)
class InboundMessage:
    """One update from a platform, already reduced to what the core needs.

    ``sender`` is the operator identity as written in COO_OPERATORS
    (``telegram:<user_id>``, ``slack:<team_id>:<user_id>``, ``console:local``).
    ``update_key`` is the platform's delivery id used for at-most-once handling (I3).
    """

    channel: str
    chat_id: str
    sender: str
    text: str = ""
    kind: InboundKind = "message"
    thread_id: str | None = None
    update_key: str | None = None
    message_id: str | None = None
    callback_data: str | None = None
    received_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    private: bool | None = None

    @property
    def in_private_chat(self) -> bool:
        """True in a one-to-one chat with the bot, where memories, cards and figures may be shown.

        Adapters say so when the platform tells them (``private``); otherwise a chat whose id is
        the sender's own user id is private (Telegram's rule), and the console always is.
        """
        if self.private is not None:
            return self.private
        return self.channel == "console" or self.chat_id == self.sender.rsplit(":", 1)[-1]

    @property
    def session_key(self) -> str:
        """``channel:chat[:thread]``; also the LangGraph thread id."""
        base = f"{self.channel}:{self.chat_id}"
        return f"{base}:{self.thread_id}" if self.thread_id else base


@dataclass(frozen=True)
class OutboundMessage:
    """A reply or card to show in one chat (and thread).

    ``edit_message_id`` replaces an earlier message in place instead of sending a new one.
    """

    channel: str
    chat_id: str
    text: str
    thread_id: str | None = None
    buttons: tuple[Button, ...] = ()
    edit_message_id: str | None = None

    @classmethod
    def reply_to(cls, inbound: InboundMessage, text: str, buttons: tuple[Button, ...] = ()) -> OutboundMessage:
        """A reply in the same chat and thread as ``inbound``."""
        return cls(
            channel=inbound.channel,
            chat_id=inbound.chat_id,
            thread_id=inbound.thread_id,
            text=text,
            buttons=buttons,
        )


def inbound_to_json(inbound: InboundMessage) -> dict[str, Any]:
    """JSON-plain form of an InboundMessage (as the inbox stores it)."""
    data = asdict(inbound)
    data["received_at"] = inbound.received_at.isoformat()
    return data


def inbound_from_json(data: dict[str, Any]) -> InboundMessage:
    """Inverse of :func:`inbound_to_json`."""
    fields = dict(data)
    fields["received_at"] = datetime.fromisoformat(fields["received_at"])
    return InboundMessage(**fields)


# Returns once the update is stored (or refused); raises when it could not be stored, so that the
# adapter does not acknowledge it to the platform (I3).
InboundHandler = Callable[[InboundMessage], Awaitable[object]]


class ChannelUnreachable(InternalError):
    """``Channel.send`` could not reach its platform, retries included: the message was not delivered (or it
    is not known that it was). What was being answered stays unfinished, to be answered again later (I3)."""


class Channel(Protocol):
    """What the core needs from a platform adapter. Adapters stay thin translators."""

    name: str

    async def start(self) -> None:
        """Connect and begin delivering updates to the inbound handler."""

    async def stop(self) -> None:
        """Stop receiving and release connections."""

    async def send(self, message: OutboundMessage) -> list[str]:
        """Deliver a message (split as the platform requires); return platform message ids."""
        ...

    def typing(self, chat_id: str, thread_id: str | None) -> AbstractAsyncContextManager[None]:
        """Show a "working" indicator for as long as the context is open."""
        ...
