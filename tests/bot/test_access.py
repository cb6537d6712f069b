"""I6: a running bot stops cleanly (pairing itself is proven in tests/security/test_pairing.py)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from bot.messages import InboundMessage
from tests.conftest import subprocess_env
from tests.fakes.coo_process import start_coo
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
        proc = await start_coo("run", env=env, cwd=tmp_path, stderr=asyncio.subprocess.PIPE)
        await tg.wait_for("getUpdates", 1, timeout=30)
        tg.push_message(1, 1, "/status")
        await tg.wait_for("sendMessage", 1, timeout=30)
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert "Traceback" not in err.decode()
