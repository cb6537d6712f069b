"""kill -9 of `coo run` in the middle of intake: after a restart every message is stored exactly once."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
from pathlib import Path

from tests.bot.test_crash_recovery import TOKEN, bot, bot_env
from tests.fakes.dovecot import PASSWORD, USER, Dovecot
from tests.fakes.polling import eventually
from tests.fakes.smtp_server import free_port
from tests.fakes.telegram_api import FakeTelegram
from tests.inbox.mails import mail

TOTAL = 600


def _rows(data_dir: Path, sql: str) -> list[tuple[object, ...]]:
    try:
        with sqlite3.connect(data_dir / "coo.sqlite", timeout=5) as conn:
            return list(conn.execute(sql))
    except sqlite3.OperationalError:  # not created yet
        return []


def _stored(data_dir: Path) -> int:
    rows = _rows(data_dir, "SELECT COUNT(*) FROM mail_messages")
    return int(rows[0][0]) if rows else 0  # type: ignore[call-overload]


async def test_kill_9_mid_intake_loses_and_doubles_nothing(tmp_path: Path, dovecot: Dovecot) -> None:
    raws = [mail(f"Order {n}", "x" * 4000, message_id=f"<order-{n}@shop.test>") for n in range(TOTAL)]
    await asyncio.to_thread(dovecot.append_many, raws)
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    imap = {
        "COO_IMAP__HOST": "127.0.0.1",
        "COO_IMAP__PORT": str(dovecot.port),
        "COO_IMAP__USERNAME": USER,
        "COO_IMAP__PASSWORD": PASSWORD,
        "COO_IMAP__SECURITY": "none",
        "COO_IMAP__POLL_S": "1",
        "COO_LOG_LEVEL": "DEBUG",
    }
    async with FakeTelegram(token=TOKEN) as tg:
        env = bot_env(tg, data_dir, free_port(), **imap)
        async with bot(env) as proc:
            await eventually(lambda: _stored(data_dir) > 0, timeout=60, what="intake to start storing")
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
        at_kill = _stored(data_dir)
        assert 0 < at_kill < TOTAL, "the kill came after intake had finished: the test proves nothing"
        # Whatever was stored is whole: each message has its location, and the cursor is not past them.
        cursor = _rows(data_dir, "SELECT last_uid FROM mail_cursors WHERE folder = 'INBOX'")
        assert cursor and cursor[0][0] == at_kill
        async with bot(env) as proc:
            await eventually(lambda: _stored(data_dir) == TOTAL, timeout=120, what="every message stored")
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 30) == 0
    ids = _rows(data_dir, "SELECT message_id FROM mail_messages")
    assert sorted(str(r[0]) for r in ids) == sorted(f"<order-{n}@shop.test>" for n in range(TOTAL))
    uids = _rows(data_dir, "SELECT uid FROM mail_locations ORDER BY uid")
    assert [r[0] for r in uids] == list(range(1, TOTAL + 1))
    assert PASSWORD not in (data_dir / "coo-run.log").read_text()  # I4, even at DEBUG
    assert all(b"\\Seen" not in flags for flags in (await asyncio.to_thread(dovecot.flags)).values())
