"""kill -9 of `coo run` around a payment reminder (I7, I2): a real bot process against the fake Telegram Bot
API, the fake Stripe API and a real SMTP server. The cadence is set so that a reminder is due the day the
invoice is sent (offset -14 with invoices due in 14 days), and the due check runs every second. After a
restart nothing is proposed twice and nothing is sent twice."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.bot.stored_cards import card_states, cards_sent, last_check, shown_in
from tests.bot.test_crash_recovery import TOKEN, bot, bot_env, card_edits, kill9, stop
from tests.bot.test_invoice_crash import approve_invoice
from tests.fakes.polling import eventually
from tests.fakes.smtp_server import SMTPServer
from tests.fakes.stripe_api import FakeStripe
from tests.fakes.telegram_api import FakeTelegram


def reminders(data_dir: Path) -> list[tuple[str, str]]:
    """(approval state, outbox state) of every reminder proposed."""
    return card_states(data_dir, "a.kind = 'email.send'")


def delivered_to(data_dir: Path) -> list[str]:
    """The Telegram message ids the reminder card is recorded as shown in."""
    return shown_in(data_dir, "a.kind = 'email.send'")


def checks(data_dir: Path) -> str:
    """When the last due check ran (ISO), or ''."""
    return last_check(data_dir, "receivables.last_check")


def reminder_cards(tg: FakeTelegram) -> list[Any]:
    return cards_sent(tg.calls, "\nOnly if: ")


async def press(tg: FakeTelegram, card: Any, label: str) -> None:
    buttons = [b for row in card.params["reply_markup"]["inline_keyboard"] for b in row]
    data = next(b["callback_data"] for b in buttons if b["text"] == label)
    message_id = next(
        m["message_id"]
        for (chat, _), m in tg._messages.items()
        if chat == "1001" and m.get("text") == card.params["text"]
    )
    tg.push_callback(1001, 1001, message_id, data)


@asynccontextmanager
async def fakes(tmp_path: Path, smtp: SMTPServer) -> AsyncIterator[tuple[FakeTelegram, FakeStripe, dict[str, str]]]:
    async with FakeTelegram(token=TOKEN) as tg, FakeStripe() as fake:
        env = bot_env(
            tg,
            tmp_path,
            smtp.port,
            COO_STRIPE__API_KEY=fake.api_key,
            COO_STRIPE__API_BASE_URL=fake.api_base_url,
            COO_RECEIVABLES__CADENCE="[-14]",
            COO_FOLLOWUPS__CHECK_S="1",
            COO_STRIPE__EVENTS_POLL_S="1",
            COO_OUTBOX__BACKOFF_BASE_S="0.1",
        )
        yield tg, fake, env


@pytest.mark.parametrize("card", ["delivered", "not delivered"])
async def test_killed_after_a_reminder_is_proposed_it_is_proposed_once_and_shown_once(
    tmp_path: Path, card: str
) -> None:
    with SMTPServer() as smtp:
        async with fakes(tmp_path, smtp) as (tg, fake, env):
            if card == "not delivered":  # the card is recorded, its sendMessage fails: nobody has seen it
                is_card = lambda c: "\nOnly if: " in str(c.params.get("text"))  # noqa: E731
                tg.fail_next("sendMessage", 400, description="Bad Request: chat not found", when=is_card)
            async with bot(env) as proc:
                await approve_invoice(tg)
                await eventually(lambda: reminders(tmp_path), timeout=30, what="the reminder proposed")
                if card == "delivered":  # shown, and where it was shown is stored
                    await eventually(lambda: delivered_to(tmp_path), timeout=10, what="the card shown")
                else:
                    refused = lambda: any(c.method == "sendMessage" and c.status == 400 for c in tg.calls)  # noqa: E731
                    await eventually(refused, timeout=10, what="the card refused")
                kill9(proc)
            killed_at = checks(tmp_path)
            async with bot(env) as restarted:
                # two due checks after the restart: each would have proposed it again
                await eventually(lambda: checks(tmp_path) > killed_at, timeout=30, what="a check after restart")
                seen = checks(tmp_path)
                await eventually(lambda: checks(tmp_path) > seen, timeout=30, what="a second check")
                await eventually(lambda: reminder_cards(tg), timeout=10, what="the card shown")
                await stop(restarted)
    assert reminders(tmp_path) == [("pending", "")]
    assert len(reminder_cards(tg)) == 1
    assert len(fake.sent) == 1 and smtp.delivered == []


async def test_killed_while_a_reminder_is_being_sent_it_is_never_sent_twice(tmp_path: Path) -> None:
    with SMTPServer(modes=["slow_ack"], slow_ack_s=10) as smtp:
        async with fakes(tmp_path, smtp) as (tg, fake, env):
            async with bot(env) as proc:
                await approve_invoice(tg)
                await eventually(lambda: reminder_cards(tg), timeout=30, what="the reminder card")
                await press(tg, reminder_cards(tg)[0], "Approve")
                await smtp.wait_delivered(1, timeout=30)  # the server has it; "250" has not come yet
                kill9(proc)
            async with bot(env) as restarted:
                await eventually(
                    lambda: any(t.startswith("Unknown outcome") for t in card_edits(tg)), timeout=30, what="unknown"
                )
                seen = checks(tmp_path)
                await eventually(lambda: checks(tmp_path) > seen, timeout=30, what="a due check after restart")
                await stop(restarted)
    assert len(smtp.delivered) == 1
    assert reminders(tmp_path) == [("approved", "unknown")]
    assert len(reminder_cards(tg)) == 1


def paid_notices(tg: FakeTelegram) -> list[str]:
    return [c.params["text"] for c in tg.calls if c.method == "sendMessage" and " paid " in c.params.get("text", "")]


async def test_a_payment_seen_by_the_running_bot_withdraws_the_pending_reminder(tmp_path: Path) -> None:
    with SMTPServer() as smtp:
        async with fakes(tmp_path, smtp) as (tg, fake, env), bot(env) as running:
            await approve_invoice(tg)
            await eventually(lambda: reminder_cards(tg), timeout=30, what="the reminder card")
            fake.pay(fake.sent[0])
            await eventually(
                lambda: any(t.startswith("Withdrawn: ") for t in card_edits(tg)), timeout=30, what="withdrawn"
            )
            # The notice is sent after the card is withdrawn: a stop in between would leave it for the next start.
            await eventually(lambda: paid_notices(tg), timeout=30, what="the paid notice")
            await stop(running)
    number = next(iter(fake.invoices.values()))["number"]
    told = paid_notices(tg)
    assert told == [f"ana paid {number}: 1,200.00 USD"]
    assert reminders(tmp_path) == [("rejected", "")] and smtp.delivered == []
