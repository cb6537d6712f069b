"""kill -9 of the bot process around an approved email (I2, I3): real `coo run` subprocesses against
the fake Telegram Bot API and a real SMTP server. After a restart: at most one email, and the card
tells the truth."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from tests.conftest import subprocess_env
from tests.fakes.coo_process import CooProcess, start_coo
from tests.fakes.polling import eventually
from tests.fakes.smtp_server import SMTPServer, free_port
from tests.fakes.telegram_api import FakeTelegram

TOKEN = "123456:TEST-TOKEN"


def bot_env(tg: FakeTelegram, data_dir: Path, smtp_port: int, **extra: str) -> dict[str, str]:
    return subprocess_env(
        data_dir,
        COO_OPERATORS="telegram:1001",
        COO_TELEGRAM__TOKEN=TOKEN,
        COO_TELEGRAM__API_BASE_URL=tg.api_root,
        COO_TELEGRAM__POLL_TIMEOUT_S="1",
        COO_SMTP__HOST="127.0.0.1",
        COO_SMTP__PORT=str(smtp_port),
        COO_SMTP__FROM_ADDR="me@example.org",
        COO_SMTP__SECURITY="none",
        COO_SMTP__TIMEOUT_S="30",
        COO_OUTBOX__POLL_S="0.1",
        **extra,
    )


@asynccontextmanager
async def bot(env: dict[str, str]) -> AsyncIterator[CooProcess]:
    """`coo run` as its own process; its log goes to a file (a pipe nobody reads would fill and stall
    it), and is printed when the test fails so the failure explains itself."""
    log_path = Path(env["COO_DATA_DIR"]) / "coo-run.log"
    with log_path.open("ab") as log_file:
        proc = await start_coo("run", env=env, cwd=env["COO_DATA_DIR"], stderr=log_file)
    try:
        yield proc
    except BaseException:
        print(f"--- {log_path} (last 6000 chars) ---\n{log_path.read_text(errors='replace')[-6000:]}")
        raise
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGKILL)
        await proc.wait()


def kill9(proc: CooProcess) -> None:
    proc.send_signal(signal.SIGKILL)


async def stop(proc: CooProcess) -> None:
    """Stop the bot the way an operator does (SIGTERM): it finishes what is in flight, then exits.

    Whatever it would still send (a duplicate, if any) is sent before it has exited.
    """
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(proc.wait(), 30) == 0


def outbox(data_dir: Path) -> list[tuple[str, int]]:
    with sqlite3.connect(data_dir / "coo.sqlite", timeout=5) as conn:
        try:
            return [(r[0], r[1]) for r in conn.execute("SELECT state, attempts FROM outbox")]
        except sqlite3.OperationalError:
            return []


async def approve_email(tg: FakeTelegram) -> dict[str, Any]:
    """Ask for an email with /email, wait for its card, press Approve. Returns the card message."""
    tg.push_message(1001, 1001, "/email ana@example.org Proposal | Hi Ana, the proposal is ready.")
    calls = await tg.wait_for(lambda c: c.method == "sendMessage" and "reply_markup" in c.params, 1, timeout=30)
    card = calls[-1]
    buttons = [b for row in card.params["reply_markup"]["inline_keyboard"] for b in row]
    approve = next(b["callback_data"] for b in buttons if b["text"] == "Approve")
    message_id = next(
        m["message_id"] for (chat, _), m in tg._messages.items() if chat == "1001" and m.get("reply_markup")
    )
    tg.push_callback(1001, 1001, message_id, approve)
    return {"message_id": message_id, "approve": approve}


def card_edits(tg: FakeTelegram) -> list[str]:
    return [str(c.params.get("text", "")) for c in tg.calls if c.method == "editMessageText" and c.status == 200]


async def test_killed_right_after_approval_sends_exactly_once_after_restart(tmp_path: Path) -> None:
    smtp_port = free_port()  # nothing listens yet: the first attempt fails and the row waits in the outbox
    async with FakeTelegram(token=TOKEN) as tg:
        env = bot_env(tg, tmp_path, smtp_port, COO_OUTBOX__BACKOFF_BASE_S="4")
        async with bot(env) as proc:
            await approve_email(tg)
            await eventually(lambda: outbox(tmp_path) == [("queued", 1)], timeout=20, what="an approved, queued action")
            kill9(proc)
        with SMTPServer(port=smtp_port) as smtp:
            async with bot(env) as restarted:
                await smtp.wait_delivered(1, timeout=30)
                await eventually(
                    lambda: any(t.startswith("Sent at") for t in card_edits(tg)), timeout=20, what="card shows sent"
                )
                await stop(restarted)
    assert len(smtp.delivered) == 1
    assert smtp.delivered[0].body == "Hi Ana, the proposal is ready."
    assert outbox(tmp_path) == [("sent", 2)]


async def test_killed_right_after_the_smtp_call_is_unknown_never_resent(tmp_path: Path) -> None:
    with SMTPServer(modes=["slow_ack"], slow_ack_s=10) as smtp:
        async with FakeTelegram(token=TOKEN) as tg:
            env = bot_env(tg, tmp_path, smtp.port)
            async with bot(env) as proc:
                await approve_email(tg)
                await smtp.wait_delivered(1, timeout=30)  # the server has the message; "250" has not come yet
                assert outbox(tmp_path) == [("running", 1)]
                kill9(proc)
            async with bot(env) as restarted:
                await eventually(
                    lambda: any(t.startswith("Unknown outcome") for t in card_edits(tg)),
                    timeout=20,
                    what="card shows unknown",
                )
                await stop(restarted)
            edit = next(
                c
                for c in tg.calls
                if c.method == "editMessageText" and str(c.params.get("text", "")).startswith("Unknown outcome")
            )
    assert len(smtp.delivered) == 1
    assert outbox(tmp_path) == [("unknown", 1)]
    resend = [b["text"] for row in edit.params["reply_markup"]["inline_keyboard"] for b in row]
    assert resend == ["Resend"]


async def test_killed_while_handling_a_message_answers_it_after_restart(tmp_path: Path) -> None:
    """I3: an update that was acknowledged to Telegram but not answered is answered after a restart."""
    from tests.fakes.openai_api import FakeOpenAI, Scripted

    async with FakeOpenAI() as llm, FakeTelegram(token=TOKEN) as tg:
        llm.script.append(Scripted(content="first try", delay_s=30))
        env = bot_env(tg, tmp_path, free_port(), COO_LLM__BASE_URL=llm.base_url, COO_LLM__API_KEY=llm.api_key)
        async with bot(env) as proc:
            tg.push_message(1001, 1001, "are you there?")
            await eventually(lambda: len(llm.chat_requests) == 1, timeout=20, what="the model call")
            kill9(proc)
        llm.reply("yes, after a restart")
        async with bot(env) as restarted:
            await tg.wait_for(
                lambda c: c.method == "sendMessage" and c.params.get("text") == "yes, after a restart", 1, timeout=30
            )
            await stop(restarted)
    replies = [c.params["text"] for c in tg.calls if c.method == "sendMessage"]
    assert replies.count("yes, after a restart") == 1 and "first try" not in replies


async def test_a_message_killed_mid_turn_is_still_remembered_after_restart(tmp_path: Path) -> None:
    """A message is queued for semantic memory in process memory only (while its turn runs): kill -9
    loses the queue, and the replayed turn does not queue it again. The next start indexes it from
    the log."""
    from memory import open_memory
    from tests.fakes.openai_api import FakeOpenAI, Scripted

    async with FakeOpenAI() as llm, FakeTelegram(token=TOKEN) as tg:
        llm.script.append(Scripted(content="first try", delay_s=30))
        env = bot_env(
            tg, tmp_path, free_port(), COO_LLM__BASE_URL=llm.base_url, COO_LLM__API_KEY=llm.api_key,
            COO_MEMORY__SEMANTIC="true",
        )  # fmt: skip
        async with bot(env) as proc:
            tg.push_message(1001, 1001, "Globex signed the maintenance contract for 2027")
            await eventually(lambda: len(llm.chat_requests) == 1, timeout=20, what="the model call")
            kill9(proc)
        llm.reply("noted")
        async with bot(env) as restarted:
            await tg.wait_for(lambda c: c.method == "sendMessage" and c.params.get("text") == "noted", 1, timeout=30)
            await stop(restarted)  # what is queued is written before it exits
    async with open_memory(tmp_path) as mem:
        hits = await mem.recall("Globex maintenance contract", k=5)
        assert await mem.count() == 1
    assert [h.text.endswith("operator: Globex signed the maintenance contract for 2027") for h in hits] == [True]
