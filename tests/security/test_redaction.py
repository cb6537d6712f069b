"""I4: a password inside COO_LLM__BASE_URL never reaches the banner, the logs or the event log, and HTTP
client loggers (including httpx2, which openai uses) stay quiet below WARNING."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path

import httpx

from bot.doctor import check_telegram
from bot.logging_setup import QuietClientsFilter, RedactingFilter
from tests.conftest import make_settings, subprocess_env
from tests.fakes.coo_process import start_coo
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.telegram_api import FakeTelegram

PASSWORD = "gw-pass-" + "Q7x9" * 3


async def test_a_password_in_the_model_url_is_never_printed(tmp_path: Path) -> None:
    async with FakeOpenAI() as llm, FakeTelegram(token="1:T") as tg:
        url = llm.base_url.replace("http://", f"http://gateway:{PASSWORD}@")
        env = subprocess_env(
            tmp_path,
            COO_OPERATORS="telegram:1",
            COO_TELEGRAM__TOKEN="1:T",
            COO_TELEGRAM__API_BASE_URL=tg.api_root,
            COO_TELEGRAM__POLL_TIMEOUT_S="1",
            COO_LLM__BASE_URL=url,
            COO_LLM__API_KEY=llm.api_key,
            COO_LOG_LEVEL="DEBUG",
            COO_MEMORY__SEMANTIC="false",
        )
        proc = await start_coo("run", env=env, cwd=tmp_path, stderr=asyncio.subprocess.PIPE)
        try:
            await tg.wait_for("getUpdates", 1, timeout=30)
            tg.push_message(1, 1, "hello over the gateway")
            tg.push_message(1, 1, "/status")
            await tg.wait_for(lambda c: c.method == "sendMessage", 2, timeout=30)
        finally:
            proc.terminate()
            _, err = await asyncio.wait_for(proc.communicate(), 30)
    stderr = err.decode()
    assert "solo-coo is running" in stderr and "[REDACTED]@" in stderr  # the banner names the endpoint
    assert PASSWORD not in stderr
    replies = " ".join(str(c.params.get("text")) for c in tg.calls if c.method == "sendMessage")
    assert PASSWORD not in replies
    with sqlite3.connect(tmp_path / "coo.sqlite") as conn:
        log = " ".join(row[0] for row in conn.execute("SELECT payload FROM events"))
    assert PASSWORD not in log


def test_http_client_loggers_are_quiet_below_warning_by_prefix() -> None:
    quiet = QuietClientsFilter()
    for name in ("httpx", "httpx2", "httpx2._client", "httpcore.connection", "openai._base_client", "stripe"):
        assert not quiet.filter(logging.LogRecord(name, logging.INFO, __file__, 1, "GET https://x", None, None))
        assert quiet.filter(logging.LogRecord(name, logging.WARNING, __file__, 1, "retry", None, None))
    assert quiet.filter(logging.LogRecord("bot.runtime", logging.INFO, __file__, 1, "started", None, None))


def test_credentials_in_any_url_are_redacted_from_log_lines() -> None:
    redact = RedactingFilter().redact
    line = f"POST http://user:{PASSWORD}@10.0.0.5:4000/v1/chat/completions failed; see https://ok.example/x?to=a@b.c"
    out = redact(line)
    assert PASSWORD not in out and "http://[REDACTED]@10.0.0.5:4000" in out and "to=a@b.c" in out


async def test_doctor_shows_the_telegram_webhook_url_without_its_credentials(tmp_path: Path) -> None:
    async with FakeTelegram("123:ABC") as tg:
        telegram = {
            "token": "123:ABC",
            "api_base_url": tg.api_root,
            "webhook_url": "https://hook:Hunter2-pass@bot.example.org/tg?key=qs-secret-1",
            "webhook_secret": "s3cret-Value_1",
        }
        settings = make_settings(tmp_path, telegram=telegram)
        async with httpx.AsyncClient(timeout=30) as client:
            line = (await check_telegram(settings, client)).render()
    # before: "... (webhook https://hook:Hunter2-pass@bot.example.org/tg?key=qs-secret-1)"
    assert line == "[ok]   telegram: token accepted (webhook https://[REDACTED]@bot.example.org/tg?[REDACTED])"
