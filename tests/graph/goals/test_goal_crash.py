"""I7: kill -9 of `coo run` in the middle of a goal's task. After a restart the task runs again (its lease
expired) and no email goes out twice: its card is found again by id, and the outbox sends once."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
from pathlib import Path
from typing import Any

from tests.bot.test_crash_recovery import bot, bot_env
from tests.fakes.openai_api import FakeOpenAI, Scripted
from tests.fakes.smtp_server import SMTPServer
from tests.fakes.telegram_api import FakeTelegram
from tests.graph.goals.goal_helpers import Brain, email_then_finish, finish, plan, task, text_of

TOKEN = "123456:TEST-TOKEN"


def goal_env(tg: FakeTelegram, llm: FakeOpenAI, smtp: SMTPServer, data: Path, **extra: str) -> dict[str, str]:
    """`coo run`'s environment for these tests: a model, a short task lease and no semantic memory."""
    return bot_env(
        tg,
        data,
        smtp.port,
        COO_LLM__BASE_URL=llm.base_url,
        COO_LLM__API_KEY=llm.api_key,
        COO_TASKS__LEASE_S="2",
        COO_TASKS__POLL_S="0.1",
        COO_MEMORY__SEMANTIC="false",
        **extra,
    )


def buttons(call: Any) -> dict[str, str]:
    rows = call.params.get("reply_markup", {}).get("inline_keyboard", [])
    return {b["text"]: b["callback_data"] for row in rows for b in row}


async def press(tg: FakeTelegram, title: str, label: str, count: int = 1) -> None:
    """Wait for the ``count``-th card starting with ``title`` and press ``label`` on it."""
    calls = await tg.wait_for(
        lambda c: c.method == "sendMessage" and str(c.params.get("text", "")).startswith(title), count, timeout=60
    )
    card = calls[count - 1]
    message_id = next(
        m["message_id"]
        for (chat, _), m in tg._messages.items()
        if chat == "1001" and m.get("text") == card.params["text"]
    )
    tg.push_callback(1001, 1001, message_id, buttons(card)[label])


async def test_killed_mid_task_the_task_runs_again_and_the_email_goes_once(tmp_path: Path) -> None:
    pid: dict[str, int] = {}
    outreach = email_then_finish("ana@example.org", "Sponsor us?", "Hi Ana, would you sponsor us?")
    seen = {"outreach": 0}

    def first_call_kills(body: dict[str, Any]) -> Scripted:
        seen["outreach"] += 1
        if seen["outreach"] == 1:
            os.kill(pid["bot"], signal.SIGKILL)  # the bot dies while this task waits for the model
        return outreach(body)

    brain = Brain(
        plans=[
            plan(task("t1", "research", "Find the sponsor"), task("t2", "outreach", "Email the sponsor", after=("t1",)))
        ],
        skills={"Email the sponsor": first_call_kills},
    )
    with SMTPServer() as smtp:
        async with FakeOpenAI() as llm, FakeTelegram(token=TOKEN) as tg:
            llm.responder = brain
            env = goal_env(tg, llm, smtp, tmp_path)
            async with bot(env) as proc:
                pid["bot"] = proc.pid
                tg.push_message(1001, 1001, "/goal get a sponsor")
                await press(tg, "Start this plan?", "Approve")
                await asyncio.wait_for(proc.wait(), 60)  # killed mid-task
            async with bot(env) as proc:
                pid["bot"] = proc.pid
                await press(tg, "Send this email?", "Approve")  # after the lease expired, the task ran again
                await smtp.wait_delivered(1, timeout=60)
                await tg.wait_for(
                    lambda c: (
                        str(c.params.get("text", "")).startswith("Goal ")
                        and " is done." in str(c.params.get("text", ""))
                    ),
                    1,
                    timeout=60,
                )
                proc.terminate()  # a graceful stop: whatever it still had queued would be sent or kept
                await asyncio.wait_for(proc.wait(), 60)
            with sqlite3.connect(tmp_path / "coo.sqlite") as db:
                actions = db.execute("SELECT kind, state, attempts FROM outbox ORDER BY kind").fetchall()
            assert actions == [("email.send", "sent", 1), ("goal.plan", "sent", 1)]  # one email, one attempt
    email_cards = [
        c
        for c in tg.calls
        if c.method == "sendMessage" and str(c.params.get("text", "")).startswith("Send this email?")
    ]
    assert len(smtp.delivered) == 1 and len(email_cards) == 1
    assert seen["outreach"] >= 3  # killed, proposed again after the restart, finished after the decision


async def test_a_rerun_that_words_its_email_differently_sends_nothing_twice(tmp_path: Path) -> None:
    """Under "relaxed" an email to a known address goes out without a card. The bot dies right after the task
    queued its email; the re-run starts over and its model words the email differently (a new digest). The
    re-run's email is the same step of the task as the first one, so it is not sent again (I7)."""
    pid: dict[str, int] = {}
    seen = {"killed": False, "told": ""}

    def outreach(body: dict[str, Any]) -> Scripted:
        text = text_of(body)
        if "queued without a card" in text or "proposed earlier" in text:
            if not seen["killed"]:
                seen["killed"] = True
                os.kill(pid["bot"], signal.SIGKILL)  # the email is queued; the task has not finished
            seen["told"] = text
            return finish("emailed ana@example.org")
        wording = "Hello Ana, would you sponsor our issue?" if seen["killed"] else "Hi Ana, would you sponsor us?"
        args = {"to": ["ana@example.org"], "subject": "Sponsor us?", "body": wording, "reason": "a sponsor"}
        return Scripted(tool_calls=[("send_email", args)])

    brain = Brain(plans=[plan(task("t1", "outreach", "Email the sponsor"))], skills={"Email the sponsor": outreach})
    with SMTPServer() as smtp:
        async with FakeOpenAI() as llm, FakeTelegram(token=TOKEN) as tg:
            llm.responder = brain
            env = goal_env(tg, llm, smtp, tmp_path, COO_APPROVALS__RISK_TOLERANCE="relaxed")
            async with bot(env) as proc:
                pid["bot"] = proc.pid
                tg.push_message(1001, 1001, "/email ana@example.org Hello | A first note")  # Ana becomes known
                await press(tg, "Send this email?", "Approve")
                await smtp.wait_delivered(1, timeout=60)
                tg.push_message(1001, 1001, "/goal get a sponsor")
                await press(tg, "Start this plan?", "Approve")
                await asyncio.wait_for(proc.wait(), 60)  # killed mid-task, its email queued
            async with bot(env) as proc:
                pid["bot"] = proc.pid
                await tg.wait_for(
                    lambda c: (
                        str(c.params.get("text", "")).startswith("Goal ")
                        and " is done." in str(c.params.get("text", ""))
                    ),
                    1,
                    timeout=60,
                )
                await smtp.wait_delivered(2, timeout=60)
                proc.terminate()
                await asyncio.wait_for(proc.wait(), 60)
            with sqlite3.connect(tmp_path / "coo.sqlite") as db:
                emails = db.execute("SELECT state FROM outbox WHERE kind = 'email.send'").fetchall()
    assert emails == [("sent",), ("sent",)]  # the /email and the task's one email; the re-run added none
    assert [d.rcpt_tos for d in smtp.delivered] == [["ana@example.org"], ["ana@example.org"]]
    assert "Hi Ana, would you sponsor us?" in smtp.delivered[1].body  # the first attempt's words
    assert "proposed earlier" in seen["told"]  # the re-run was told what its earlier attempt did


async def test_killed_while_verifying_the_goal_is_verified_after_restart(tmp_path: Path) -> None:
    """kill -9 while the verifier's model call is in flight leaves the goal `verifying`; after a restart it is
    verified again and done, with one report."""
    pid: dict[str, int] = {}
    brain = Brain(plans=[plan(task("t1", "research", "Find the sponsor"))])

    def killed_on_first_check(body: dict[str, Any]) -> Scripted | None:
        if str(body["messages"][0].get("content") or "").startswith("You check a goal") and "verify" not in brain.asked:
            os.kill(pid["bot"], signal.SIGKILL)  # the bot dies while the verifier thinks
        return brain(body)

    def status() -> str:
        with sqlite3.connect(tmp_path / "coo.sqlite") as db:
            return str(db.execute("SELECT status FROM goals").fetchone()[0])

    with SMTPServer() as smtp:
        async with FakeOpenAI() as llm, FakeTelegram(token=TOKEN) as tg:
            llm.responder = killed_on_first_check
            env = goal_env(tg, llm, smtp, tmp_path)
            async with bot(env) as proc:
                pid["bot"] = proc.pid
                tg.push_message(1001, 1001, "/goal find a sponsor")
                await press(tg, "Start this plan?", "Approve")
                await asyncio.wait_for(proc.wait(), 60)  # killed while verifying
            assert status() == "verifying"
            async with bot(env) as proc:
                pid["bot"] = proc.pid
                await tg.wait_for(_done_report, 1, timeout=60)
                proc.terminate()
                await asyncio.wait_for(proc.wait(), 60)
            final = status()
    assert final == "done" and brain.asked.count("verify") == 2  # the killed check, then one after the restart
    assert len([c for c in tg.calls if _done_report(c)]) == 1


def _done_report(call: Any) -> bool:
    text = str(call.params.get("text", ""))
    return call.method == "sendMessage" and text.startswith("Goal ") and " is done." in text
