"""kill -9 of `coo run` in the middle of sending an invoice (I7): a real bot process against the fake
Telegram Bot API and the fake Stripe API (both in this process). The fake Stripe kills the bot the moment
it has executed and stored the Nth POST of the five steps (customer, draft, lines, finalize, send), so
the bot never hears the answer. After a restart: exactly one invoice, sent once, and the card shows it."""

from __future__ import annotations

import os
import signal
import sqlite3
from pathlib import Path

import pytest

from tests.bot.test_crash_recovery import TOKEN, bot, bot_env, card_edits
from tests.fakes.polling import eventually
from tests.fakes.smtp_server import free_port
from tests.fakes.stripe_api import FakeStripe, Request
from tests.fakes.telegram_api import FakeTelegram

STEPS = ["customers.create", "invoices.create", "invoices.add_lines", "invoices.finalize", "invoices.send"]


def outbox_state(data_dir: Path) -> list[str]:
    with sqlite3.connect(data_dir / "coo.sqlite", timeout=5) as conn:
        return [r[0] for r in conn.execute("SELECT state FROM outbox")]


async def approve_invoice(tg: FakeTelegram) -> None:
    tg.push_message(1001, 1001, "/invoice ana@example.org 1200 | Website redesign")
    calls = await tg.wait_for(lambda c: c.method == "sendMessage" and "reply_markup" in c.params, 1, timeout=30)
    buttons = [b for row in calls[-1].params["reply_markup"]["inline_keyboard"] for b in row]
    approve = next(b["callback_data"] for b in buttons if b["text"] == "Approve")
    message_id = next(
        m["message_id"] for (chat, _), m in tg._messages.items() if chat == "1001" and m.get("reply_markup")
    )
    tg.push_callback(1001, 1001, message_id, approve)


@pytest.mark.parametrize("step", STEPS)
async def test_killed_after_each_stripe_step_completes_one_invoice_after_restart(tmp_path: Path, step: str) -> None:
    async with FakeTelegram(token=TOKEN) as tg, FakeStripe() as fake:
        env = bot_env(
            tg,
            tmp_path,
            free_port(),
            COO_STRIPE__API_KEY=fake.api_key,
            COO_STRIPE__API_BASE_URL=fake.api_base_url,
            COO_OUTBOX__BACKOFF_BASE_S="0.1",
        )
        killed: list[Request] = []
        async with bot(env) as proc:

            def kill_at_step(req: Request) -> None:
                if req.endpoint == step and not killed:
                    killed.append(req)
                    os.kill(proc.pid, signal.SIGKILL)  # executed and stored at Stripe; the answer never arrives

            fake.on_processed = kill_at_step
            await approve_invoice(tg)
            await proc.wait()
        assert proc.returncode == -signal.SIGKILL and killed
        assert outbox_state(tmp_path) == ["running"]
        fake.on_processed = None
        async with bot(env):
            await eventually(
                lambda: any(t.startswith("Sent at") for t in card_edits(tg)), timeout=30, what="the card shows it"
            )
            await eventually(lambda: outbox_state(tmp_path) == ["sent"], timeout=10, what="the outbox row sent")
    assert len(fake.customers) == 1 and len(fake.invoices) == 1
    invoice = next(iter(fake.invoices.values()))
    assert fake.sent == [invoice["id"]] and invoice["status"] == "open" and invoice["total"] == 120000
    assert len(invoice["lines"]["data"]) == 1
    shown = next(t for t in card_edits(tg) if t.startswith("Sent at"))
    assert f"Invoice {invoice['number']}, 1,200.00 USD, {invoice['hosted_invoice_url']}" in shown
    # the interrupted step was answered from Stripe's idempotency store, with the same key
    if step != "customers.create":  # a customer created before the kill is found by its email instead
        again = fake.calls(step)
        assert len(again) == 2 and again[1].replayed and again[0].key == again[1].key
