"""kill -9 of `coo run` while a goal's task waits for a reply: the wait survives the restart (state and deadline),
no attempt runs meanwhile, and the reply that arrives after the restart wakes the task once."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
from datetime import datetime
from pathlib import Path

from memory.db import utcnow
from tests.bot.test_crash_recovery import bot
from tests.fakes.dovecot import PASSWORD, USER, Dovecot
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.polling import eventually
from tests.fakes.smtp_server import SMTPServer
from tests.fakes.telegram_api import FakeTelegram
from tests.graph.goals.goal_helpers import Brain, met_verdict, plan, task
from tests.graph.goals.test_goal_crash import TOKEN, goal_env, press
from tests.inbox.mails import mail
from tests.inbox.test_goal_replies import PITCH, pitch_then_report


def _task_row(data_dir: Path) -> tuple[str, str, int] | None:
    try:
        with sqlite3.connect(data_dir / "coo.sqlite", timeout=5) as conn:
            row = conn.execute("SELECT state, next_try_at, attempts FROM tasks").fetchone()
    except sqlite3.OperationalError:  # not created yet
        return None
    return (str(row[0]), str(row[1]), int(row[2])) if row else None


async def test_kill_9_while_waiting_keeps_the_wait_and_the_reply_wakes_it_after_restart(
    tmp_path: Path, dovecot: Dovecot
) -> None:
    brain = Brain(plans=[plan(task("t1", "outreach", PITCH))], skills={PITCH: pitch_then_report()})
    brain.verdict = met_verdict("Ana said yes.")
    imap = {
        "COO_IMAP__HOST": "127.0.0.1",
        "COO_IMAP__PORT": str(dovecot.port),
        "COO_IMAP__USERNAME": USER,
        "COO_IMAP__PASSWORD": PASSWORD,
        "COO_IMAP__SECURITY": "none",
        "COO_IMAP__POLL_S": "1",
    }
    with SMTPServer() as smtp:
        async with FakeOpenAI() as llm, FakeTelegram(token=TOKEN) as tg:
            llm.responder = brain
            env = goal_env(tg, llm, smtp, tmp_path, **imap)
            async with bot(env) as proc:
                tg.push_message(1001, 1001, "/goal get a sponsor for December")
                await press(tg, "Start this plan?", "Approve")
                await press(tg, "Send this email?", "Approve")
                [sent] = await smtp.wait_delivered(1, timeout=60)
                await eventually(lambda: (_task_row(tmp_path) or ("",))[0] == "waiting_reply", timeout=60, what="wait")
                proc.send_signal(signal.SIGKILL)
                await proc.wait()
            state, due, attempts = _task_row(tmp_path) or ("", "", 0)
            assert state == "waiting_reply" and attempts == 1
            assert datetime.fromisoformat(due) > utcnow()  # the deadline was kept with the state
            asked = len(brain.asked)
            async with bot(env) as proc:
                ours = str(sent.message["Message-ID"])
                answer = mail("Re: Sponsor", "Yes, we sponsor it: 500 EUR.", In_Reply_To=ours)
                await asyncio.to_thread(dovecot.append, answer)
                await tg.wait_for(lambda c: " is done." in str(c.params.get("text", "")), 1, timeout=60)
                proc.send_signal(signal.SIGTERM)
                assert await asyncio.wait_for(proc.wait(), 30) == 0
            with sqlite3.connect(tmp_path / "coo.sqlite") as db:
                outcomes = [r[0] for r in db.execute("SELECT outcome FROM task_attempts ORDER BY id")]
                result = db.execute("SELECT state, result FROM tasks").fetchone()
    assert len(smtp.delivered) == 1  # the pitch went once
    assert outcomes == ["waiting", "done"]  # nothing ran while it waited, before or after the kill
    assert result[0] == "done" and "Ana answered: yes" in result[1]
    assert brain.asked[asked:].count(PITCH) == 1 and brain.asked[asked:][-1] == "verify"
