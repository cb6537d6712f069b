"""I3: an update is stored before Telegram is told it arrived, and a replay resumes instead of redoing.

The subprocess test kills `coo run` with SIGKILL at the exact moment the fake Bot API sees the
getUpdates offset move past what it handed out, several times, and counts replies per message.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
from functools import partial
from pathlib import Path

from bot.dispatcher import inbound_to_json
from bot.messages import InboundMessage
from bot.runtime import open_runtime
from tests.conftest import RecordingChannel, llm_settings, make_settings, operator_message, subprocess_env
from tests.fakes.coo_process import CooProcess, start_coo
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.telegram_api import Call, FakeTelegram

TOKEN = "123456:TEST-TOKEN"
TRIALS = 4
PER_TRIAL = 3


async def test_killed_when_the_offset_moves_every_message_is_answered_exactly_once(tmp_path: Path) -> None:
    async with FakeOpenAI() as llm, FakeTelegram(token=TOKEN) as tg:
        env = subprocess_env(
            tmp_path,
            COO_OPERATORS="telegram:1001",
            COO_TELEGRAM__TOKEN=TOKEN,
            COO_TELEGRAM__API_BASE_URL=tg.api_root,
            COO_TELEGRAM__POLL_TIMEOUT_S="1",
            COO_LLM__BASE_URL=llm.base_url,
            COO_LLM__API_KEY=llm.api_key,
            COO_MEMORY__SEMANTIC="false",
        )
        texts: list[str] = []
        for trial in range(TRIALS):
            proc = await start(env, tmp_path)
            pushed: list[int] = []
            killed = asyncio.Event()
            tg.on_call = partial(kill_when_confirmed, pid=proc.pid, pushed=pushed, killed=killed)
            await tg.wait_for("getUpdates", len([c for c in tg.calls if c.method == "getUpdates"]) + 1, timeout=30)
            for i in range(PER_TRIAL):
                text = f"trial {trial} message {i}"
                texts.append(text)
                pushed.append(tg.push_message(1001, 1001, text))
            await asyncio.wait_for(killed.wait(), 30)
            await proc.wait()
        tg.on_call = None
        proc = await start(env, tmp_path)
        try:
            await tg.wait_for(lambda c: c.method == "sendMessage" and c.status == 200, len(texts), timeout=60)
        finally:
            # A graceful stop finishes what is in flight: a duplicate, if any, is sent before the exit.
            proc.send_signal(signal.SIGTERM)
            await proc.wait()
    replies = [str(c.params.get("text")) for c in tg.calls if c.method == "sendMessage" and c.status == 200]
    assert sorted(replies) == sorted(f"echo: {t}" for t in texts)  # each exactly once, none lost
    asked = [r["messages"][-1]["content"] for r in llm.chat_requests]
    assert len(asked) <= len(texts) + TRIALS  # at most one repeated model call per crash (a call in flight)


def kill_when_confirmed(call: Call, *, pid: int, pushed: list[int], killed: asyncio.Event) -> None:
    """The offset moving past the pushed updates is Telegram's "it arrived": the bot dies right then."""
    moved = call.method == "getUpdates" and pushed and int(call.params.get("offset") or 0) > pushed[-1]
    if moved and not killed.is_set():
        os.kill(pid, signal.SIGKILL)
        killed.set()


async def start(env: dict[str, str], cwd: Path) -> CooProcess:
    return await start_coo("run", env=env, cwd=cwd)


def crashed(conn: sqlite3.Connection, message: InboundMessage) -> None:
    """Put the inbox row back as a crash before "done" would have left it (stored, not finished)."""
    conn.execute(
        "UPDATE inbox SET status = 'pending', payload = ? WHERE update_key = ?",
        (json.dumps(inbound_to_json(message)), message.update_key),
    )


async def test_a_replay_after_the_reply_was_sent_resends_nothing_and_asks_the_model_nothing(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    settings = make_settings(tmp_path, llm=llm_settings(fake_llm))
    async with open_runtime(settings, console=False) as rt:
        chan = RecordingChannel("rec")
        rt.dispatcher.attach(chan)
        message = operator_message("are you there?")
        await rt.dispatcher.handle(message)
    assert [m.text for m in chan.sent] == ["echo: are you there?"] and len(fake_llm.chat_requests) == 1
    # What a crash after the reply went out, but before the update was marked done, leaves behind.
    with sqlite3.connect(tmp_path / "coo.sqlite") as conn:
        crashed(conn, message)
    async with open_runtime(settings, console=False) as rt:
        chan = RecordingChannel("rec")
        rt.dispatcher.attach(chan)
        assert await rt.dispatcher.replay_pending() == 1
        pending = await rt.db.pending_updates()
    assert chan.sent == [] and len(fake_llm.chat_requests) == 1 and pending == []


async def test_a_replay_of_an_unanswered_turn_resumes_from_its_checkpoint(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    settings = make_settings(tmp_path, llm=llm_settings(fake_llm))
    async with open_runtime(settings, console=False) as rt:
        chan = RecordingChannel("rec")
        rt.dispatcher.attach(chan)
        message = operator_message("what is on today?")
        await rt.dispatcher.handle(message)
    # The model answered and the turn was checkpointed, but the reply never reached the chat.
    with sqlite3.connect(tmp_path / "coo.sqlite") as conn:
        crashed(conn, message)
        conn.execute("DELETE FROM replies WHERE update_key = ?", (message.update_key,))
    async with open_runtime(settings, console=False) as rt:
        chan = RecordingChannel("rec")
        rt.dispatcher.attach(chan)
        await rt.dispatcher.replay_pending()
        history = await rt.coordinator.history("rec:1001")
    assert [m.text for m in chan.sent] == ["echo: what is on today?"]  # sent now, once
    assert len(fake_llm.chat_requests) == 1  # the model was not asked again
    assert [m["content"] for m in history if m["role"] == "user"] == ["what is on today?"]  # not appended twice
