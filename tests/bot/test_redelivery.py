"""An answer the platform could not take (ChannelUnreachable after the channel's own retries) is not
dropped: its update stays unfinished and the turn runs again as a replay, which neither asks the model
again nor sends twice what already went out (I3)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from bot.messages import ChannelUnreachable, OutboundMessage
from bot.runtime import open_runtime
from tests.conftest import RecordingChannel, llm_settings, make_settings, operator_message
from tests.fakes.openai_api import FakeOpenAI


class _Unreachable(RecordingChannel):
    """A chat platform that cannot be reached for its first ``failures`` sends."""

    def __init__(self, name: str, failures: int) -> None:
        super().__init__(name)
        self.failures = failures

    async def send(self, message: OutboundMessage) -> list[str]:
        if self.failures > 0:
            self.failures -= 1
            raise ChannelUnreachable("no connection")
        return await super().send(message)


async def test_an_undelivered_answer_is_delivered_by_a_replay_not_dropped(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    settings = make_settings(tmp_path, llm=llm_settings(fake_llm))
    pauses: list[float] = []

    async def pause(seconds: float) -> None:  # records the pause instead of waiting it out
        pauses.append(seconds)

    async with open_runtime(settings, console=False, sleep=pause) as rt:
        chan = _Unreachable("rec", failures=1)
        rt.dispatcher.attach(chan)
        await rt.dispatcher.handle(operator_message("hello there"))
    assert pauses == [5.0]  # one pause before the replay, the default's length
    assert [m.text for m in chan.sent] == ["echo: hello there"]  # not the generic error, not twice
    assert len(fake_llm.chat_requests) == 1  # the replay resumed the finished turn
    with sqlite3.connect(tmp_path / "coo.sqlite") as conn:
        assert [r[0] for r in conn.execute("SELECT status FROM inbox")] == ["done"]
