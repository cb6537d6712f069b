"""I3 with I5: a budget alert is a notice, not one of the turn's replies. It takes no number of the turn's reply
journal, so a replay after a crash still sends the reply; and it is sent at most once."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from bot.runtime import open_runtime
from tests.conftest import RecordingChannel, llm_settings, make_settings, operator_message
from tests.fakes.openai_api import FakeOpenAI
from tests.security.test_delivery import crashed

PRICES = {"fake-model": [1000.0, 2000.0]}


async def test_a_replay_after_a_near_cap_alert_still_sends_the_reply(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    settings = make_settings(tmp_path, llm=llm_settings(fake_llm, prices=PRICES))
    async with open_runtime(settings, console=False) as rt:
        chan = RecordingChannel("rec")
        rt.dispatcher.attach(chan)
        # The chat call's estimate (its prompt and 1,024 completion tokens) is over 80 % of this cap.
        await rt.dispatcher.handle(operator_message("/budget set chat 3.6/day", kind="command"))
        message = operator_message("what is on today?")
        await rt.dispatcher.handle(message)
    texts = [m.text for m in chan.sent]
    assert texts[1].startswith("Heads-up") and texts[2] == "echo: what is on today?" and len(texts) == 3
    # A crash after the alert went out and before the reply did: the update is pending again and the
    # reply's journal entry is gone (the recording channel's message ids are 1, 2, 3 in order).
    with sqlite3.connect(tmp_path / "coo.sqlite") as conn:
        crashed(conn, message)
        gone = conn.execute(
            "DELETE FROM replies WHERE update_key = ? AND ids = ?", (message.update_key, json.dumps(["3"]))
        ).rowcount
    assert gone == 1
    async with open_runtime(settings, console=False) as rt:
        chan = RecordingChannel("rec")
        rt.dispatcher.attach(chan)
        assert await rt.dispatcher.replay_pending() == 1
    # Before: the alert held send number 0, the replay's reply took number 0 and was skipped as sent.
    # The alert itself is not sent again.
    assert [m.text for m in chan.sent] == ["echo: what is on today?"]
