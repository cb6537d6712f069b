"""SIGTERM and SIGINT end a real `coo run` in every state, and what was in flight is answered (I3):
finished within the grace, or left unfinished for the next start, never marked done unanswered.

The bound on each exit is a liveness bound (the process is gone), not a timing claim; the times seen
are printed for the record (`pytest -s`).
"""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from tests.bot.test_crash_recovery import TOKEN, bot, bot_env
from tests.conftest import subprocess_env
from tests.fakes.coo_process import CooProcess, start_coo
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.polling import eventually
from tests.fakes.smtp_server import free_port
from tests.fakes.telegram_api import Call, FakeTelegram

EXIT_BOUND_S = 30.0
"""Generous: the process promises 10 s; a loaded CI machine must not make this flaky."""


def log_text(data_dir: Path) -> str:
    path = data_dir / "coo-run.log"
    return path.read_text(errors="replace") if path.exists() else ""


async def until_logged(data_dir: Path, text: str, times: int = 1, timeout: float = 60) -> None:  # noqa: ASYNC109
    """Until ``text`` is in the bot's log ``times`` times (the log of every run goes to one file)."""
    await eventually(lambda: log_text(data_dir).count(text) >= times, timeout=timeout, what=f"{text!r} in the log")


async def stop_with(proc: CooProcess | asyncio.subprocess.Process, sig: signal.Signals = signal.SIGTERM) -> int:
    """Send ``sig`` and wait for the exit (within the liveness bound); print how long it took."""
    sent = time.monotonic()
    proc.send_signal(sig)
    code = await asyncio.wait_for(proc.wait(), EXIT_BOUND_S)
    print(f"\n[stop] {sig.name}: exited {code} after {time.monotonic() - sent:.2f} s")
    return code


def inbox_states(data_dir: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(data_dir / "coo.sqlite", timeout=5) as conn:
        return [(r[0], r[1]) for r in conn.execute("SELECT update_key, status FROM inbox ORDER BY rowid")]


def journaled_replies(data_dir: Path) -> list[str]:
    """The updates whose reply the process saw accepted by the platform (the reply journal)."""
    with sqlite3.connect(data_dir / "coo.sqlite", timeout=5) as conn:
        return [r[0] for r in conn.execute("SELECT update_key FROM replies ORDER BY rowid")]


def replies(tg: FakeTelegram, text: str) -> list[Call]:
    return [c for c in tg.calls if c.method == "sendMessage" and c.status == 200 and c.params.get("text") == text]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_a_stop_while_telegram_is_unreachable_at_start_ends_the_process(
    tmp_path: Path, sig: signal.Signals
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens: every call is refused
    env = subprocess_env(
        tmp_path,
        COO_OPERATORS="telegram:1001",
        COO_TELEGRAM__TOKEN=TOKEN,
        COO_TELEGRAM__API_BASE_URL=closed,
        COO_MEMORY__SEMANTIC="false",
    )
    async with bot(env) as proc:
        await until_logged(tmp_path, "Bot API unreachable")
        assert await stop_with(proc, sig) == 0
    assert "Traceback" not in log_text(tmp_path)


async def test_a_stop_while_polling_retries_an_outage_ends_the_process(tmp_path: Path) -> None:
    async with FakeTelegram(token=TOKEN) as tg:
        env = bot_env(tg, tmp_path, free_port(), COO_MEMORY__SEMANTIC="false")
        async with bot(env) as proc:
            await until_logged(tmp_path, "solo-coo is running.")
            await tg.go_down()
            await until_logged(tmp_path, "telegram polling failed")
            assert await stop_with(proc) == 0


async def test_a_stop_mid_reply_lets_the_reply_finish_and_marks_it_done(tmp_path: Path) -> None:
    """Item 3: SIGTERM while the model works; the reply still goes out before the exit, once."""
    async with FakeOpenAI() as llm, FakeTelegram(token=TOKEN) as tg:
        llm.gate = asyncio.Event()
        llm.reply("the answer, after the stop began")
        env = bot_env(
            tg, tmp_path, free_port(), COO_LLM__BASE_URL=llm.base_url, COO_LLM__API_KEY=llm.api_key,
            COO_MEMORY__SEMANTIC="false",
        )  # fmt: skip
        async with bot(env) as proc:
            tg.push_message(1001, 1001, "are you there?")
            await eventually(lambda: len(llm.chat_requests) == 1, timeout=60, what="the model call")
            sent = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            await until_logged(tmp_path, "SIGTERM: stopping")
            llm.gate.set()  # the model answers while the process is stopping
            assert await asyncio.wait_for(proc.wait(), EXIT_BOUND_S) == 0
            print(f"\n[stop] SIGTERM mid-reply: exited 0 after {time.monotonic() - sent:.2f} s")
        assert len(replies(tg, "the answer, after the stop began")) == 1
        assert [status for _, status in inbox_states(tmp_path)] == ["done"]
        async with bot(env) as restarted:  # nothing is answered twice after the restart
            await until_logged(tmp_path, "solo-coo is running.", times=2)
            assert await stop_with(restarted) == 0
    assert len(replies(tg, "the answer, after the stop began")) == 1 and len(llm.chat_requests) == 1


async def test_a_stop_mid_reply_past_the_grace_leaves_it_for_the_next_start(tmp_path: Path) -> None:
    """A model call longer than the grace: the process still ends, and the restart answers (I3)."""
    async with FakeOpenAI() as llm, FakeTelegram(token=TOKEN) as tg:
        llm.gate = asyncio.Event()  # not opened while the first process lives
        env = bot_env(
            tg, tmp_path, free_port(), COO_LLM__BASE_URL=llm.base_url, COO_LLM__API_KEY=llm.api_key,
            COO_MEMORY__SEMANTIC="false",
        )  # fmt: skip
        async with bot(env) as proc:
            tg.push_message(1001, 1001, "are you there?")
            await eventually(lambda: len(llm.chat_requests) == 1, timeout=60, what="the model call")
            assert await stop_with(proc) == 0
        assert [status for _, status in inbox_states(tmp_path)] == ["pending"]
        assert tg.sent() == []
        llm.gate.set()
        llm.reply("yes, after a restart")
        async with bot(env) as restarted:
            await tg.wait_for(lambda c: bool(replies(tg, "yes, after a restart")), timeout=60)
            assert await stop_with(restarted) == 0
    assert len(replies(tg, "yes, after a restart")) == 1
    assert [status for _, status in inbox_states(tmp_path)] == ["done"]


async def test_a_stop_mid_intake_leaves_stored_updates_for_the_next_start(tmp_path: Path) -> None:
    """SIGTERM right after an update was stored (the offset moved past it), while the model client,
    the graph and the rest still load: the process ends, and the next start answers the update."""
    async with FakeTelegram(token=TOKEN) as tg:
        env = bot_env(tg, tmp_path, free_port(), COO_MEMORY__SEMANTIC="false")
        update_id = tg.push_message(1001, 1001, "/status")  # waiting before the start
        async with bot(env) as proc:
            sent: list[float] = []

            def confirmed(call: Call) -> None:
                if call.method == "getUpdates" and (call.params.get("offset") or 0) > update_id:
                    proc.send_signal(signal.SIGTERM)
                    sent.append(time.monotonic())
                    tg.on_call = None

            tg.on_call = confirmed
            assert await asyncio.wait_for(proc.wait(), EXIT_BOUND_S) == 0
            print(f"\n[stop] SIGTERM mid-intake: exited 0 after {time.monotonic() - sent[0]:.2f} s")
        methods = [c.method for c in tg.calls]
        assert "setMyCommands" not in methods and "sendMessage" not in methods  # it never got past the intake
        assert inbox_states(tmp_path) == [(f"telegram:{update_id}", "pending")]
        async with bot(env) as restarted:
            await tg.wait_for("sendMessage", timeout=60)
            assert await stop_with(restarted) == 0
    assert inbox_states(tmp_path) == [(f"telegram:{update_id}", "done")]
    assert len(tg.sent()) == 1 and "channels: telegram" in tg.sent()[0]["text"]


async def test_a_stop_late_in_the_start_lets_a_reply_under_way_finish(tmp_path: Path) -> None:
    """Handling has begun but the start has not ended (Slack is unreachable, so its connection is retried):
    a stop gives the start up, yet the reply already under way finishes and is marked done. Cut mid-send,
    it would be left unfinished and the next start would send it a second time."""
    async with FakeTelegram(token=TOKEN) as tg:
        slack_down = f"http://127.0.0.1:{free_port()}/api/"  # nothing listens there
        slack = {"COO_SLACK__BOT_TOKEN": "xoxb-test", "COO_SLACK__APP_TOKEN": "xapp-test"}
        env = bot_env(tg, tmp_path, free_port(), COO_MEMORY__SEMANTIC="false")
        update_id = tg.push_message(1001, 1001, "/status")  # waiting before the start
        answer = tg.hold("sendMessage")
        async with bot({**env, **slack, "COO_SLACK__API_BASE_URL": slack_down}) as proc:
            await tg.wait_for("sendMessage", timeout=60)  # the reply is on its way, not answered yet
            await until_logged(tmp_path, "slack: API unreachable")
            assert "solo-coo is running." not in log_text(tmp_path)  # still starting
            proc.send_signal(signal.SIGTERM)
            await until_logged(tmp_path, "SIGTERM: stopping")
            answer.set()
            assert await asyncio.wait_for(proc.wait(), EXIT_BOUND_S) == 0
        assert inbox_states(tmp_path) == [(f"telegram:{update_id}", "done")]
        assert journaled_replies(tmp_path) == [f"telegram:{update_id}"]  # its answer came back: it was sent
        assert " ERROR " not in log_text(tmp_path)
        async with bot(env) as restarted:  # without Slack: it starts, and answers nothing again
            await until_logged(tmp_path, "solo-coo is running.")
            assert await stop_with(restarted) == 0
    assert len(tg.sent()) == 1 and "channels: telegram" in tg.sent()[0]["text"]


async def test_coo_run_with_no_channel_and_no_input_stays_up_and_says_what_is_missing(tmp_path: Path) -> None:
    """Under Docker or systemd stdin is empty: exiting at its end is a restart loop. It says what is missing
    once and stays up until stopped."""
    env = subprocess_env(tmp_path, COO_MEMORY__SEMANTIC="false")
    proc = await start_coo("run", env=env, cwd=tmp_path, stderr=asyncio.subprocess.PIPE)
    try:
        assert proc.stderr is not None
        seen = b""
        while b"no chat platform is configured" not in seen:
            line = await asyncio.wait_for(proc.stderr.readline(), 60)
            assert line, f"coo run ended instead of staying up: {seen.decode(errors='replace')}"
            seen += line
        assert proc.returncode is None
        assert b"COO_TELEGRAM__TOKEN" in seen and b"coo onboard" in seen
        assert await stop_with(proc) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


async def test_a_stop_mid_task_ends_the_process_and_the_task_runs_again_after_the_restart(tmp_path: Path) -> None:
    """A goal's task attempt waits on the model when SIGTERM comes: the process ends, and after the
    restart the task (its lease lapsed) runs again and the goal is done (I7)."""
    from tests.fakes.openai_api import goals_script

    async with FakeOpenAI() as llm, FakeTelegram(token=TOKEN) as tg:
        llm.responder = goals_script(1)
        env = bot_env(
            tg, tmp_path, free_port(), COO_LLM__BASE_URL=llm.base_url, COO_LLM__API_KEY=llm.api_key,
            COO_MEMORY__SEMANTIC="false", COO_TASKS__LEASE_S="3", COO_STOP_GRACE_S="1",
        )  # fmt: skip
        async with bot(env) as proc:
            tg.push_message(1001, 1001, "/goal get the newsletter ready")
            [card] = await tg.wait_for(
                lambda c: c.method == "sendMessage" and str(c.params.get("text", "")).startswith("Start this plan?"),
                timeout=60,
            )
            llm.gate = asyncio.Event()  # from now on the model answers only when the test says so
            planned = len(llm.chat_requests)
            approve = next(
                b["callback_data"] for row in card.params["reply_markup"]["inline_keyboard"] for b in row
                if b["text"] == "Approve"
            )  # fmt: skip
            assert card.message_id is not None
            tg.push_callback(1001, 1001, card.message_id, approve)
            await eventually(lambda: len(llm.chat_requests) > planned, timeout=60, what="the task's model call")
            assert await stop_with(proc) == 0
        assert "SIGTERM: stopping (work in flight gets up to 1 s)" in log_text(tmp_path)  # COO_STOP_GRACE_S
        assert not [c for c in tg.sent() if " is done." in str(c.get("text"))]
        llm.gate.set()
        async with bot(env) as restarted:
            await tg.wait_for(
                lambda c: c.method == "sendMessage" and " is done." in str(c.params.get("text", "")), timeout=90
            )
            assert await stop_with(restarted) == 0
