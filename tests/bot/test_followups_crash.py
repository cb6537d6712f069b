"""kill -9 of `coo run` around a follow-up's card (I7): a real bot process against the fake Telegram Bot API
and a real SMTP server, a follow-up already due in its data dir, the due check every second. After a restart
the card is proposed once and seen once, and approving it sends one email."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from memory.db import open_database, utcnow
from memory.followups import FollowupStore, NewFollowup
from tests.bot.stored_cards import card_states, cards_sent, last_check, query
from tests.bot.stored_cards import shown_in as shown
from tests.bot.test_crash_recovery import TOKEN, bot, bot_env, kill9, stop
from tests.bot.test_receivables_crash import press
from tests.fakes.polling import eventually
from tests.fakes.smtp_server import SMTPServer
from tests.fakes.telegram_api import FakeTelegram


def cards_stored(data_dir: Path) -> list[tuple[str, str]]:
    """(approval state, outbox state) of every follow-up card proposed."""
    return card_states(data_dir, "a.origin = 'followups'")


def shown_in(data_dir: Path) -> list[str]:
    """The Telegram message ids the card is recorded as shown in."""
    return shown(data_dir, "a.origin = 'followups'")


def checks(data_dir: Path) -> str:
    return last_check(data_dir, "followups.last_check")


def followup_cards(tg: FakeTelegram) -> list[Any]:
    return cards_sent(tg.calls, "I wanted to follow up on")


async def seed(data_dir: Path) -> None:
    """A follow-up with Ana that came due a minute ago."""
    async with open_database(data_dir) as db:
        store = FollowupStore(db)
        await store.setup()
        due = utcnow() - timedelta(minutes=1)
        await store.add(NewFollowup("Ana Silva", "the proposal", due, "manual", "ana@example.org"))


@pytest.mark.parametrize(
    ("card", "ending"), [("delivered", "kill -9"), ("not delivered", "kill -9"), ("delivered", "SIGTERM")]
)
async def test_killed_after_a_followup_card_is_proposed_it_is_proposed_once_and_sends_once(
    tmp_path: Path, card: str, ending: str
) -> None:
    """Ended (kill -9, or stopped with SIGTERM between two due checks) once the card is proposed: after the
    restart the card is still the one card, and the email goes once."""
    await seed(tmp_path)
    with SMTPServer() as smtp:
        async with FakeTelegram(token=TOKEN) as tg:
            env = bot_env(tg, tmp_path, smtp.port, COO_FOLLOWUPS__CHECK_S="1", COO_OUTBOX__BACKOFF_BASE_S="0.1")
            if card == "not delivered":  # the card is recorded, its sendMessage fails: nobody has seen it
                is_card = lambda c: "I wanted to follow up on" in str(c.params.get("text"))  # noqa: E731
                tg.fail_next("sendMessage", 400, description="Bad Request: chat not found", when=is_card)
            async with bot(env) as proc:
                tg.push_message(1001, 1001, "/followups")  # the operator's own chat: where cards go
                await tg.wait_for(lambda c: "Open follow-ups (1):" in str(c.params.get("text")), timeout=30)
                await eventually(lambda: cards_stored(tmp_path), timeout=30, what="the card proposed")
                if card == "delivered":
                    await eventually(lambda: shown_in(tmp_path), timeout=10, what="the card shown")
                else:
                    refused = lambda: any(c.method == "sendMessage" and c.status == 400 for c in tg.calls)  # noqa: E731
                    await eventually(refused, timeout=10, what="the card refused")
                if ending == "SIGTERM":
                    await stop(proc)
                else:
                    kill9(proc)
            killed_at = checks(tmp_path)
            async with bot(env) as restarted:
                # two due checks after the restart: each would have proposed it again
                await eventually(lambda: checks(tmp_path) > killed_at, timeout=30, what="a check after restart")
                seen = checks(tmp_path)
                await eventually(lambda: checks(tmp_path) > seen, timeout=30, what="a second check")
                await eventually(lambda: followup_cards(tg), timeout=10, what="the card shown")
                await press(tg, followup_cards(tg)[0], "Approve")
                await smtp.wait_delivered(1, timeout=30)
                await eventually(lambda: cards_stored(tmp_path) == [("approved", "sent")], timeout=30, what="sent")
                seen = checks(tmp_path)
                await eventually(lambda: checks(tmp_path) > seen, timeout=30, what="a check after the send")
                await stop(restarted)
    assert cards_stored(tmp_path) == [("approved", "sent")]
    assert len(followup_cards(tg)) == 1
    assert len(smtp.delivered) == 1 and smtp.delivered[0].rcpt_tos == ["ana@example.org"]
    assert query(tmp_path, "SELECT state FROM followups") == [("done",)]
