"""``coo onboard``: every answer checked against real HTTP/SMTP servers on localhost, the file written 0600."""

from __future__ import annotations

import asyncio
import io
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from bot.onboard import OnboardingStopped, check_smtp, check_stripe, quote, run_onboarding, write_env_file
from bot.settings import load_settings
from tests.conftest import subprocess_env
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.slack_api import FakeSlack
from tests.fakes.smtp_server import SMTPServer, free_port
from tests.fakes.telegram_api import FakeTelegram

TG_TOKEN = "42:telegram-secret-token"
STRIPE_KEY = "sk_test_stripe-secret"


@asynccontextmanager
async def fake_stripe(key: str = STRIPE_KEY) -> AsyncIterator[str]:
    """Stripe's GET /v1/balance on localhost; yields the API root for COO_STRIPE__API_BASE_URL."""

    async def balance(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {key}":
            return web.json_response({"error": {"message": "Invalid API Key provided"}}, status=401)
        return web.json_response({"object": "balance", "livemode": False, "available": []})

    app = web.Application()
    app.router.add_get("/v1/balance", balance)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


async def test_onboard_end_to_end_writes_a_private_config_that_doctor_accepts(tmp_path: Path) -> None:
    async with (
        FakeOpenAI() as llm,
        FakeTelegram(token=TG_TOKEN) as tg,
        FakeSlack(bot_token="xoxb-slack-secret", app_token="xapp-slack-secret") as slack,
        fake_stripe() as stripe_url,
    ):
        with SMTPServer() as smtp:
            answers = [
                "3", llm.base_url, llm.api_key, "",  # model: other URL, key, the offered model
                TG_TOKEN, "1001",
                "xoxb-slack-secret", "xapp-slack-secret", "U1",
                "127.0.0.1", str(smtp.port), "none", "", "me@example.org",
                STRIPE_KEY,
                "Europe/Lisbon",
            ]  # fmt: skip
            env = subprocess_env(
                tmp_path / "data",
                COO_TELEGRAM__API_BASE_URL=tg.api_root,
                COO_SLACK__API_BASE_URL=slack.api_base_url,
                COO_STRIPE__API_BASE_URL=stripe_url,
            )
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot.cli", "onboard", cwd=tmp_path, env=env,
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )  # fmt: skip
            out_b, err_b = await asyncio.wait_for(proc.communicate("\n".join(answers).encode() + b"\n"), 60)
    out, err = out_b.decode(), err_b.decode()
    assert proc.returncode == 0, out + err
    for line in (
        "[ok] model: fake-model at " + llm.base_url + " answered",
        "[ok] telegram: token accepted for @fake_bot",
        "[ok] slack: tokens accepted for workspace Fake (T1), Socket Mode ready",
        f"[ok] email: 127.0.0.1:{smtp.port} answered EHLO (none)",
        "[ok] stripe: key accepted (test mode)",
        "[ok]   model: fake-model at",  # and then what `coo doctor` says about the written file
        "[ok]   telegram: token accepted (long polling)",
        "[ok]   slack: bot token accepted for team T1 (Socket Mode)",
        "[ok]   email: 127.0.0.1",
    ):
        assert line in out, out
    for secret in (llm.api_key, TG_TOKEN, "xoxb-slack-secret", "xapp-slack-secret", STRIPE_KEY):
        assert secret not in out + err
    assert any(r["_path"] == "/v1/chat/completions" for r in llm.requests)  # a real request, not a ping
    config = tmp_path / "home" / ".config" / "solo-coo" / ".env"
    assert f"Wrote {config} (mode 600)" in out and "Start it with `coo run`." in out
    assert config.stat().st_mode & 0o777 == 0o600 and config.parent.stat().st_mode & 0o777 == 0o700
    settings = load_settings(env_file=config)
    assert settings.llm.base_url == llm.base_url and settings.llm.model == "fake-model"
    assert settings.llm.api_key is not None and settings.llm.api_key.get_secret_value() == llm.api_key
    assert settings.operator_ids == {"telegram:1001", "slack:T1:U1"}
    assert settings.smtp.port == smtp.port and settings.smtp.from_addr == "me@example.org"
    assert settings.timezone == "Europe/Lisbon"
    assert "COO_STRIPE__API_KEY='sk_test_stripe-secret'" in config.read_text()


async def test_wrong_answers_are_said_in_one_line_and_asked_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    refused = f"http://127.0.0.1:{free_port()}/v1"
    async with FakeOpenAI() as llm, FakeTelegram(token=TG_TOKEN) as tg:
        monkeypatch.setenv("COO_TELEGRAM__API_BASE_URL", tg.api_root)
        llm.fail(404)  # the first model name does not exist there
        answers = [
            "3", "localhost:11434", refused, llm.api_key, "llama3", "y",  # not a URL; nothing listening
            llm.base_url, llm.api_key, "no-such-model", "y",  # the endpoint answers 404 for that model
            llm.base_url, llm.api_key, "",  # the model it offers
            "42:wrong", "y", TG_TOKEN, "me",  "7",  # a rejected token; a user id that is not digits
            "",  # slack skipped
            "",  # email skipped
            "",  # stripe skipped
            "Mars/Olympus", "pa${HOME}ss", "UTC",
        ]  # fmt: skip
        out = io.StringIO()
        code = await run_onboarding(tmp_path / "coo.env", io.StringIO("\n".join(answers) + "\n"), out, env=os.environ)
    printed = out.getvalue()
    assert "The URL must start with http:// or https://." in printed
    assert "[FAIL] model: unreachable (ConnectError)" in printed
    assert "[FAIL] model: answered HTTP 404: scripted 404" in printed
    assert "[ok] model: fake-model at" in printed
    assert "[FAIL] telegram: token rejected (HTTP 401)" in printed and "[ok] telegram: token accepted" in printed
    assert "A Telegram user id is digits only" in printed
    assert "'Mars/Olympus' is not a time zone name" in printed
    assert "a value holding ${ would be changed when read back" in printed
    assert "42:wrong" not in printed and TG_TOKEN not in printed
    assert "Start it with `coo --config" in printed  # a file `coo run` would not find by itself
    assert code == 0, printed
    settings = load_settings(env_file=tmp_path / "coo.env")
    assert settings.llm.base_url == llm.base_url and settings.llm.model == "fake-model"
    assert settings.operator_ids == {"telegram:7"} and settings.timezone == "UTC"


async def test_skipped_steps_keep_the_file_and_input_ending_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "coo.env"
    path.write_text("COO_TELEGRAM__TOKEN='1:kept'\nCOO_OPERATORS=telegram:5\nCOO_TIMEZONE=Asia/Tokyo\n")
    before = path.read_text()
    with pytest.raises(OnboardingStopped, match="input ended"):
        await run_onboarding(path, io.StringIO("4\n\n"), io.StringIO(), env={})
    assert path.read_text() == before  # nothing written when the run did not finish
    out = io.StringIO()
    await run_onboarding(path, io.StringIO("4\n\n\n\n\n\n"), out, env={})
    settings = load_settings(env_file=path)
    assert settings.telegram.token is not None and settings.telegram.token.get_secret_value() == "1:kept"
    assert settings.operator_ids == {"telegram:5"} and settings.timezone == "Asia/Tokyo"
    assert f"{path} exists: what you skip keeps its current value." in out.getvalue()


@pytest.mark.parametrize(
    "value",
    [
        "plain",
        "it's got 'quotes' and \"more\" # not a comment",
        "a$b $HOME \\n \\' ok",
        "Tr0ub4dor\\",  # a trailing backslash (in single quotes it escaped the closing quote)
        "a\\\\b",  # two backslashes (in single quotes they read back as one)
    ],
)
def test_values_survive_the_file_exactly(tmp_path: Path, value: str) -> None:
    path = tmp_path / "coo.env"
    write_env_file(path, {"COO_SMTP__HOST": "h", "COO_SMTP__FROM_ADDR": "me@example.org", "COO_SMTP__PASSWORD": value})
    password = load_settings(env_file=path).smtp.password
    assert password is not None and password.get_secret_value() == value
    assert path.stat().st_mode & 0o777 == 0o600


def test_a_value_that_cannot_be_written_safely_is_refused() -> None:
    with pytest.raises(ValueError, match="line break"):
        quote("two\nlines")
    with pytest.raises(ValueError, match="environment instead"):
        quote("pa${HOME}ss")


async def test_smtp_check_needs_an_smtp_greeting_not_just_a_port() -> None:
    async def not_smtp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"554 this is not a mail server\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(not_smtp, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        outcome = await check_smtp("127.0.0.1", port, "none", None, None)
    assert not outcome.ok and outcome.detail == "server answered 554"
    with SMTPServer() as smtp:
        outcome = await check_smtp("127.0.0.1", smtp.port, "none", None, None)
    assert outcome.ok and outcome.detail == f"127.0.0.1:{smtp.port} answered EHLO (none)"
    assert smtp.delivered == []  # no mail was sent


async def test_stripe_key_is_checked_against_the_api() -> None:
    async with fake_stripe() as url, httpx.AsyncClient() as client:
        bad = await check_stripe(client, url, "sk_test_wrong")
        good = await check_stripe(client, url, STRIPE_KEY)
    assert not bad.ok and bad.detail == "answered HTTP 401: Invalid API Key provided"
    assert good.ok and good.detail == "key accepted (test mode)"
