"""One answer, as a value: what it says, the cards after it, where it goes, and what the event log keeps.

The dispatcher builds a :class:`Reply` for each update it answers and hands it to
:meth:`bot.messenger.Messenger.deliver`, which sends it once (journalled, so a replayed turn skips
what was already sent).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from bot.messages import Button, InboundMessage, OutboundMessage

ShowCard = Callable[[str, str, str, str | None], Awaitable[None]]
"""Shows one approval's card: ``(approval_id, channel, chat_id, thread_id)`` (see ``ApprovalUI.show``)."""


class TurnAnswer(Protocol):
    """What a conversation turn answers (the coordinator's ``TurnResult``), as a reply needs it."""

    @property
    def reply(self) -> str: ...

    @property
    def log_text(self) -> str | None: ...

    @property
    def cards(self) -> Sequence[str]: ...


@dataclass(frozen=True)
class Reply:
    """A reply to one chat (and thread): its text, its buttons, then the approval cards shown after it.

    ``log_text`` replaces the text in the event log (a private command's answer is withheld there);
    ``quietly`` logs a failure to deliver instead of raising it (answers to strangers, error notes).
    """

    channel: str
    chat_id: str
    thread_id: str | None = None
    text: str = ""
    buttons: tuple[Button, ...] = ()
    cards: tuple[str, ...] = ()
    log_text: str | None = None
    quietly: bool = False

    @classmethod
    def to(cls, inbound: InboundMessage, text: str, *, log_text: str | None = None, quietly: bool = False) -> Reply:
        """A text reply in the chat and thread ``inbound`` came from."""
        return cls(inbound.channel, inbound.chat_id, inbound.thread_id, text, log_text=log_text, quietly=quietly)

    @classmethod
    def of_turn(cls, answer: TurnAnswer, channel: str, chat_id: str, thread_id: str | None) -> Reply:
        """A conversation turn's answer: its text (as logged) and then its cards, in the order proposed."""
        return cls(channel, chat_id, thread_id, answer.reply, cards=tuple(answer.cards), log_text=answer.log_text)

    @property
    def message(self) -> OutboundMessage | None:
        """The text as a message to send; None when the reply has only cards."""
        if not self.text:
            return None
        return OutboundMessage(self.channel, self.chat_id, self.text, self.thread_id, self.buttons)
