"""A Reply is built from what is answered: the chat and thread it came from, a turn's text, cards and log text."""

from __future__ import annotations

from dataclasses import FrozenInstanceError

import pytest

from bot.messages import Button, InboundMessage, OutboundMessage
from bot.reply import Reply
from graph.conversation.coordinator import TurnResult


def inbound(thread: str | None = "77") -> InboundMessage:
    return InboundMessage(channel="slack", chat_id="C1", sender="slack:T1:U1", text="hi", thread_id=thread)


def test_a_reply_goes_to_the_chat_and_thread_it_answers() -> None:
    reply = Reply.to(inbound(), "Done.", log_text="[withheld]")
    assert (reply.channel, reply.chat_id, reply.thread_id) == ("slack", "C1", "77")
    assert reply.message == OutboundMessage("slack", "C1", "Done.", "77")
    assert reply.log_text == "[withheld]" and not reply.quietly and reply.cards == ()


def test_a_turn_answer_keeps_its_text_its_log_text_and_its_cards_in_order() -> None:
    result = TurnResult("Here is the draft.", cards=("a1", "a2"), log_text="Here is [memory 3].")
    reply = Reply.of_turn(result, "telegram", "1001", None)
    assert reply.cards == ("a1", "a2")
    assert reply.log_text == "Here is [memory 3]."
    assert reply.message == OutboundMessage("telegram", "1001", "Here is the draft.")


def test_a_reply_of_cards_alone_has_no_text_message() -> None:
    reply = Reply.of_turn(TurnResult("", cards=("a1",)), "telegram", "1001", None)
    assert reply.message is None and reply.cards == ("a1",)


def test_buttons_go_with_the_text_and_a_reply_cannot_change_once_built() -> None:
    button = Button("Yes", "pc:yes")
    reply = Reply("console", "local", text="Sure?", buttons=(button,))
    assert reply.message is not None and reply.message.buttons == (button,)
    with pytest.raises(FrozenInstanceError):
        reply.text = "changed"  # type: ignore[misc]
