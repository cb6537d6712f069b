"""I6 pairing mode: a one-time, expiring code; strangers never reach the coordinator."""

from __future__ import annotations

import asyncio
import signal
import sys
from pathlib import Path

from bot.dispatcher import REFUSAL
from bot.messages import InboundMessage
from bot.runtime import open_runtime
from tests.conftest import RecordingChannel, llm_settings, make_settings, subprocess_env
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.telegram_api import FakeTelegram

_n = iter(range(10**6))


def msg(text: str, user: str) -> InboundMessage:
    return InboundMessage(
        "rec",
        user,
        f"telegram:{user}",
        text,
        kind="command" if text.startswith("/") else "message",
        update_key=f"p:{next(_n)}",
    )


async def test_pairing_with_the_printed_code_once(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    settings = make_settings(tmp_path, operators="", llm=llm_settings(fake_llm))
    async with open_runtime(settings, console=False) as rt:
        chan = RecordingChannel("rec")
        rt.dispatcher.attach(chan)
        code = rt.pairing_code
        assert code is not None and len(code) == 8
        await rt.dispatcher.handle(msg("hello", "7"))
        await rt.dispatcher.handle(msg("/pair WRONGCOD", "7"))
        assert rt.guard.is_operator("telegram:7") is False
        await rt.dispatcher.handle(msg(f"/pair {code.lower()}", "7"))
        assert chan.sent[-1].text.startswith("Paired.")
        await rt.dispatcher.handle(msg("now I'm in", "7"))
        assert chan.sent[-1].text == "echo: now I'm in"
        await rt.dispatcher.handle(msg(f"/pair {code}", "8"))  # one use only
        assert not rt.guard.is_operator("telegram:8")
    assert [m.text for m in chan.sent].count(REFUSAL) == 2  # one per stranger (7 before pairing, then 8)
    assert len(fake_llm.chat_requests) == 1
    async with open_runtime(settings, console=False) as rt:  # a paired operator stays paired
        assert rt.guard.is_operator("telegram:7") and rt.pairing_code != code


async def test_pairing_code_expires_and_locks_after_failures(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, operators="", pairing_code_ttl_s=30)
    async with open_runtime(settings, console=False) as rt:
        rt.dispatcher.attach(RecordingChannel("rec"))
        code = rt.pairing_code
        for _ in range(5):
            await rt.dispatcher.handle(msg("/pair AAAAAAAA", "9"))
        await rt.dispatcher.handle(msg(f"/pair {code}", "9"))  # right code, but locked after 5 misses
        assert not rt.guard.is_operator("telegram:9")
        failed = await rt.db.events(kind="access.pair_failed")
    assert len(failed) == 6
    async with open_runtime(settings, console=False) as rt:
        rt.dispatcher.attach(RecordingChannel("rec"))
        assert rt.guard._pairing is not None
        rt.guard._pairing.expires_at = 0.0  # the code's time is up
        await rt.dispatcher.handle(msg(f"/pair {rt.pairing_code}", "9"))
        assert not rt.guard.is_operator("telegram:9")


async def test_sigterm_stops_coo_run_cleanly(tmp_path: Path) -> None:
    async with FakeTelegram(token="1:T") as tg:
        env = subprocess_env(
            tmp_path,
            COO_OPERATORS="telegram:1",
            COO_TELEGRAM__TOKEN="1:T",
            COO_TELEGRAM__API_BASE_URL=tg.api_root,
            COO_TELEGRAM__POLL_TIMEOUT_S="1",
            COO_MEMORY__SEMANTIC="false",
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bot.cli",
            "run",
            env=env,
            cwd=tmp_path,
            stdin=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        await tg.wait_for("getUpdates", 1, timeout=30)
        tg.push_message(1, 1, "/status")
        await tg.wait_for("sendMessage", 1, timeout=30)
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert "Traceback" not in err.decode()
