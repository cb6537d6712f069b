"""A raw Bot API update read into what the core needs: commands (and those meant for another bot), edits,
button presses, topics, private chats; an update that cannot be read is skipped with one log line."""

from __future__ import annotations

from typing import Any

import pytest
from telegram import Bot

from bot.channels.telegram_updates import last_id, parse_update, to_inbound
from bot.messages import InboundMessage

BOT = Bot("123456:TEST-token")  # only parses here; it never makes a request


def raw_message(text: str, chat: int = 7, topic: int | None = None, field: str = "message") -> dict[str, Any]:
    chat_obj = {"id": chat, "type": "private" if chat > 0 else "supergroup"}
    message: dict[str, Any] = {"message_id": 11, "date": 0, "chat": chat_obj, "text": text}
    message["from"] = {"id": 7, "is_bot": False, "first_name": "Op"}
    if topic is not None:
        message.update(message_thread_id=topic, is_topic_message=True)
    if field == "edited_message":
        message["edit_date"] = 1
    return {"update_id": 501, field: message}


def read(raw: dict[str, Any], username: str | None = "CooBot") -> InboundMessage | None:
    update = parse_update(BOT, raw)
    assert update is not None
    return to_inbound(update, username)


def test_a_private_message_is_read_with_its_delivery_key() -> None:
    inbound = read(raw_message("hello"))
    assert inbound is not None
    assert (inbound.channel, inbound.chat_id, inbound.sender, inbound.text) == ("telegram", "7", "telegram:7", "hello")
    assert inbound.kind == "message" and inbound.update_key == "telegram:501" and inbound.in_private_chat


def test_a_command_for_this_bot_is_a_command_and_one_for_another_bot_is_not() -> None:
    ours = read(raw_message("/pause@CooBot now", chat=-100))
    theirs = read(raw_message("/pause@OtherBot now", chat=-100))
    assert ours is not None and (ours.kind, ours.text) == ("command", "/pause now")
    assert theirs is not None and (theirs.kind, theirs.text) == ("other", "/pause@OtherBot now")
    assert not ours.in_private_chat


def test_an_edit_in_a_topic_keeps_its_thread() -> None:
    inbound = read(raw_message("fixed", chat=-100, topic=42, field="edited_message"))
    assert inbound is not None and inbound.kind == "edit" and inbound.thread_id == "42"
    assert inbound.session_key == "telegram:-100:42"


def test_a_button_press_carries_its_data() -> None:
    raw = {
        "update_id": 502,
        "callback_query": {
            "id": "q1",
            "from": {"id": 7, "is_bot": False, "first_name": "Op"},
            "chat_instance": "c",
            "data": "ap:abc:nonce",
            "message": raw_message("card")["message"],
        },
    }
    inbound = read(raw)
    assert inbound is not None and inbound.kind == "callback" and inbound.callback_data == "ap:abc:nonce"


def test_an_update_without_a_user_is_not_for_us() -> None:
    raw = {"update_id": 503, "channel_post": {"message_id": 1, "date": 0, "chat": {"id": -5, "type": "channel"}}}
    assert read(raw) is None


def test_an_update_that_cannot_be_read_is_skipped_with_one_error(caplog: pytest.LogCaptureFixture) -> None:
    assert parse_update(BOT, {"message": {"text": "no id"}}) is None
    assert parse_update(BOT, {"update_id": 504, "message": {"message_id": "not a number"}}) is None
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 2 and "504" in errors[1]
    assert last_id([{"update_id": 1}, "junk", {"update_id": 3}, {"no": "id"}]) == 3
