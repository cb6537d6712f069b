"""The ``coo`` command as a real subprocess: fail-fast config, offline console, doctor."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from tests.conftest import subprocess_env
from tests.fakes.openai_api import FakeOpenAI


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return subprocess_env(tmp_path / "data", **extra)


async def run_coo(
    args: list[str], env: dict[str, str], cwd: Path, stdin: str = "", timeout: float = 60
) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot.cli",
        *args,
        cwd=cwd,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin.encode()), timeout)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("COO_TIMEZONE", "Mars/Olympus", "COO_TIMEZONE: unknown time zone 'Mars/Olympus'"),
        ("COO_DIGEST_TIME", "25:00", "COO_DIGEST_TIME: must be HH:MM"),
        ("COO_OPERATORS", "telegram:abc", "COO_OPERATORS: 'telegram:abc' is not telegram:<user_id>"),
        ("COO_LLM__BASE_URL", "localhost:11434", "COO_LLM__BASE_URL: must start with http://"),
        ("COO_TELEGRAM__WEBHOOK_URL", "https://example.org/hook", "COO_TELEGRAM__WEBHOOK_SECRET is required"),
        ("COO_SMTP__SECURITY", "ssl", "COO_SMTP__SECURITY:"),
        ("COO_SLACK__HTTP_LISTEN", "0.0.0.0:99999", "COO_SLACK__HTTP_LISTEN: must be host:port"),
        ("COO_EMBEDDINGS__PROVIDER", "openai", "COO_EMBEDDINGS__PROVIDER: 'openai' needs COO_LLM__BASE_URL"),
        ("COO_SLACK__BOT_TOKEN", "xoxb-" + "1", "COO_SLACK__APP_TOKEN (Socket Mode) or COO_SLACK__SIGNING_SECRET"),
    ],
)
async def test_bad_configuration_exits_with_one_clear_line(
    tmp_path: Path, variable: str, value: str, expected: str
) -> None:
    code, out, err = await run_coo(["run"], clean_env(tmp_path, **{variable: value}), tmp_path)
    assert code == 2
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("coo: configuration error: ")
    assert expected in lines[0]
    assert not (tmp_path / "data").exists()  # nothing was started


async def test_bad_value_in_dotenv_file_is_named(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("COO_LLM__TIMEOUT_S=-3\n")
    code, _, err = await run_coo(["run"], clean_env(tmp_path), tmp_path)
    assert code == 2 and "COO_LLM__TIMEOUT_S" in err


async def test_run_without_configuration_starts_offline_console(tmp_path: Path) -> None:
    code, out, err = await run_coo(["run"], clean_env(tmp_path), tmp_path, stdin="hello\n/status\n")
    assert code == 0, err
    assert "channels: console" in err and "offline mode" in err
    assert "pairing code:" not in err  # nobody could use one: only the terminal can reach the bot
    assert "COO_TELEGRAM__TOKEN" in err  # says how to add a channel
    assert "coo> Offline mode" in out and "COO_LLM__BASE_URL" in out
    assert (tmp_path / "data" / "coo.sqlite").exists()


async def test_chat_talks_to_the_model(tmp_path: Path) -> None:
    async with FakeOpenAI() as llm:
        llm.reply("Hi from the model")
        env = clean_env(tmp_path, OPENAI_API_KEY=llm.api_key, OPENAI_BASE_URL=llm.base_url)
        code, out, err = await run_coo(["chat"], env, tmp_path, stdin="hello\n")
    assert code == 0, err
    assert "coo> Hi from the model" in out
    assert llm.api_key not in out + err


async def test_doctor_reports_reachability(tmp_path: Path) -> None:
    async with FakeOpenAI() as llm:
        env = clean_env(tmp_path, COO_LLM__BASE_URL=llm.base_url, COO_LLM__API_KEY=llm.api_key)
        code, out, _ = await run_coo(["doctor"], env, tmp_path)
    assert code == 0, out
    assert "[ok]   model: gpt-4o-mini at " in out
    assert "[--]   telegram: not configured" in out
    env = clean_env(
        tmp_path,
        COO_LLM__BASE_URL="http://127.0.0.1:9/v1",
        COO_SMTP__HOST="127.0.0.1",
        COO_SMTP__PORT="9",
        COO_SMTP__FROM_ADDR="me@example.org",
    )
    code, out, _ = await run_coo(["doctor"], env, tmp_path)
    assert code == 1
    assert "[FAIL] model: unreachable" in out and "[FAIL] email: 127.0.0.1:9 unreachable" in out


async def test_doctor_checks_telegram_and_slack_tokens(tmp_path: Path) -> None:
    from tests.fakes.slack_api import FakeSlack
    from tests.fakes.telegram_api import FakeTelegram

    async with FakeTelegram(token="42:GOOD") as tg, FakeSlack() as slack:
        good = clean_env(
            tmp_path,
            COO_TELEGRAM__TOKEN="42:GOOD",
            COO_TELEGRAM__API_BASE_URL=tg.api_root,
            COO_SLACK__BOT_TOKEN="xoxb-test",
            COO_SLACK__APP_TOKEN="xapp-test",
            COO_SLACK__API_BASE_URL=slack.api_base_url,
        )
        code, out, _ = await run_coo(["doctor"], good, tmp_path)
        assert code == 0, out
        assert "[ok]   telegram: token accepted (long polling)" in out
        assert "[ok]   slack: bot token accepted for team T1 (Socket Mode)" in out
        bad = {**good, "COO_TELEGRAM__TOKEN": "42:WRONG", "COO_SLACK__BOT_TOKEN": "xoxb-wrong"}
        code, out, _ = await run_coo(["doctor"], bad, tmp_path)
    assert code == 1
    assert "[FAIL] telegram: answered HTTP 401" in out and "[FAIL] slack: auth.test failed: invalid_auth" in out
    assert "WRONG" not in out and "xoxb-wrong" not in out  # doctor never prints a secret
