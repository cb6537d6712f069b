"""Questions confirmed with a tap (bot/confirmations.py) on a real control store: answered once, only in the
chat where they were asked, only with their nonce, and stale after their time. /policy and /mcp trust
build on this (tests/bot/commands/test_policy.py shows the policy side)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from bot.confirmations import Answer, Confirmations
from bot.messages import InboundMessage
from memory.control import ControlStore
from memory.db import open_database
from tests.conftest import operator_message


@pytest.fixture
async def control(tmp_path: Path) -> AsyncIterator[ControlStore]:
    async with open_database(tmp_path) as db:
        store = ControlStore(db)
        await store.setup()
        yield store


def press(data: str, **changes: str) -> InboundMessage:
    return replace(operator_message("", kind="callback", data=data), **changes)  # type: ignore[arg-type]


async def test_a_question_is_answered_once_with_what_was_asked(control: ControlStore) -> None:
    asking = Confirmations(control, "qq", "question:", timedelta(minutes=15))
    confirm, cancel = await asking.ask(operator_message("/ask"), {"level": "relaxed"})
    assert (confirm.label, cancel.label) == ("Confirm", "Cancel") and asking.minutes == 15
    assert confirm.data.startswith("qq:ok:") and cancel.data.startswith("qq:no:")
    assert await asking.answer(press(confirm.data)) == Answer(True, True, {"level": "relaxed"})
    assert await asking.answer(press(confirm.data)) is None
    assert await asking.answer(press(cancel.data)) is None  # the other button of a decided question


async def test_cancel_is_an_answer_too(control: ControlStore) -> None:
    asking = Confirmations(control, "qq", "question:", timedelta(minutes=15))
    _, cancel = await asking.ask(operator_message("/ask"), {"tool": "cal.list"})
    assert await asking.answer(press(cancel.data)) == Answer(False, True, {"tool": "cal.list"})


async def test_a_press_in_another_chat_or_channel_leaves_the_question_open(control: ControlStore) -> None:
    asking = Confirmations(control, "qq", "question:", timedelta(minutes=15))
    confirm, _ = await asking.ask(operator_message("/ask"), {"level": "relaxed"})
    assert await asking.answer(press(confirm.data, chat_id="2002")) is None
    assert await asking.answer(press(confirm.data, channel="slack")) is None
    assert (await asking.answer(press(confirm.data))) is not None


@pytest.mark.parametrize(
    "forge",
    [
        lambda p, v, i, n: f"{p}:{v}:{i}:{'f' * len(n)}",  # a guessed nonce
        lambda p, v, i, n: f"{p}:{v}:{i}",  # no nonce
        lambda p, v, i, n: f"{p}:maybe:{i}:{n}",  # no such answer
        lambda p, v, i, n: f"{p}:{v}:{i}:{n}:extra",
        lambda p, v, i, n: f"{p}:{v}:../{i}:{n}",  # another key
    ],
)
async def test_forged_presses_decide_nothing(control: ControlStore, forge: object) -> None:
    asking = Confirmations(control, "qq", "question:", timedelta(minutes=15))
    confirm, _ = await asking.ask(operator_message("/ask"), {"level": "relaxed"})
    forged = forge(*confirm.data.split(":"))  # type: ignore[operator]
    assert await asking.answer(press(forged)) is None
    assert await asking.answer(press(confirm.data)) is not None  # still open for the real press


async def test_a_question_past_its_time_is_answered_as_stale_once(control: ControlStore) -> None:
    asking = Confirmations(control, "qq", "question:", timedelta(seconds=-1))
    confirm, _ = await asking.ask(operator_message("/ask"), {"level": "relaxed"})
    assert await asking.answer(press(confirm.data)) == Answer(True, False, {"level": "relaxed"})
    assert await asking.answer(press(confirm.data)) is None


async def test_two_askers_do_not_answer_each_others_questions(control: ControlStore) -> None:
    policy = Confirmations(control, "po", "policy.pending:", timedelta(minutes=15))
    mcp = Confirmations(control, "mc", "mcp.trust.pending:", timedelta(minutes=15))
    confirm, _ = await policy.ask(operator_message("/policy"), {"level": "relaxed"})
    assert await mcp.answer(press(confirm.data)) is None
    assert await policy.answer(press(confirm.data)) is not None
