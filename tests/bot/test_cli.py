"""The ``coo`` command as a real subprocess: fail-fast config, offline console, doctor, export/import."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import subprocess_env
from tests.fakes.coo_process import start_coo
from tests.fakes.openai_api import FakeOpenAI


def clean_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    return subprocess_env(tmp_path / "data", **extra)


async def run_coo(
    args: list[str], env: dict[str, str], cwd: Path, stdin: str = "", timeout: float = 60
) -> tuple[int, str, str]:
    proc = await start_coo(
        *args, cwd=cwd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    talk = asyncio.ensure_future(proc.communicate(stdin.encode()))
    done, _ = await asyncio.wait([talk], timeout=timeout)
    if not done:  # a hang: end it and show what it said, so the failure explains itself
        proc.kill()
        done, _ = await asyncio.wait([talk], timeout=10)  # a child it started may still hold the pipes
        talk.cancel()
        said = done.pop().result()[1].decode()[-2000:] if done else "(its pipes stayed open)"
        raise AssertionError(f"coo {' '.join(args)} still running after {timeout:.0f} s; it said: {said}")
    out, err = talk.result()
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
        ("COO_LOG_LEVEL", "LOUD", "COO_LOG_LEVEL: unknown log level 'LOUD'; one of DEBUG, INFO"),
        ("COO_STOP_GRACE_S", "8", "COO_STOP_GRACE_S: must be 0 to 7 seconds (a stop ends within 10 s"),
        ("COO_APPROVALS__FORBIDDEN", "email.send", 'COO_APPROVALS__FORBIDDEN: must be JSON, e.g. ["email.send"]'),
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


async def test_unwritable_data_dir_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("")
    env = subprocess_env(tmp_path / "a-file" / "data")  # a folder below a file: never creatable, even as root
    code, out, err = await run_coo(["run"], env, tmp_path)
    assert code == 2, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("coo: COO_DATA_DIR: ") and "not writable" in lines[0]


async def test_version(tmp_path: Path) -> None:
    from importlib.metadata import version

    code, out, _ = await run_coo(["--version"], clean_env(tmp_path), tmp_path)
    assert code == 0 and out.strip() == f"coo {version('solo-coo')}"


def run_in_terminal(args: list[str], env: dict[str, str], cwd: Path, typed: bytes, timeout: float = 60) -> str:
    """Run ``coo`` on a pseudo-terminal (stdout and stderr both on it, as a user sees them)."""
    from tests.fakes.terminal import Terminal

    with Terminal(args, env, cwd) as terminal:
        terminal.read_until("you>", timeout)  # the first prompt before typing
        terminal.type(typed)
        assert terminal.wait(timeout) == 0, terminal.screen
        return terminal.screen


def test_console_banner_comes_first_logs_go_to_a_file_and_no_pairing_code(tmp_path: Path) -> None:
    screen = run_in_terminal(["run"], clean_env(tmp_path, COO_LOG_LEVEL="DEBUG"), tmp_path, b"hello\n/status\n\x04")
    banner_at = screen.index("solo-coo is running.")
    assert banner_at < screen.index("you> ")
    assert "channels: console" in screen and "offline mode" in screen
    assert "pairing code" not in screen.lower()  # nobody could send /pair to a terminal
    assert "access: this terminal only" in screen and "coo onboard" in screen
    assert "coo> Offline mode" in screen and "COO_LLM__BASE_URL" in screen  # the reply to "hello"
    log_file = tmp_path / "data" / "coo.log"
    assert f"logs: {log_file}" in screen
    assert " DEBUG " not in screen and " INFO " not in screen  # no log line landed on the prompt
    logged = log_file.read_text()
    assert " INFO bot.serve: stopping" in logged and " DEBUG " in logged
    assert (tmp_path / "data" / "coo.sqlite").exists()
    assert (tmp_path / "data").stat().st_mode & 0o777 == 0o700  # private business data: owner only


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


async def test_rejected_telegram_token_is_one_line_without_the_token(tmp_path: Path) -> None:
    from tests.fakes.telegram_api import FakeTelegram

    async with FakeTelegram(token="42:GOOD") as tg:
        env = clean_env(tmp_path, COO_TELEGRAM__TOKEN="42:WRONG-and-secret", COO_TELEGRAM__API_BASE_URL=tg.api_root)
        code, out, err = await run_coo(["run"], env, tmp_path)
    assert code == 1
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("coo: ") and "rejected" in lines[0], err
    assert "WRONG-and-secret" not in out + err


async def test_doctor_names_config_files_and_variables_never_values(tmp_path: Path) -> None:
    env = clean_env(tmp_path, COO_LLM__BASE_URL="http://127.0.0.1:9/v1")
    config_dir = Path(env["XDG_CONFIG_HOME"]) / "solo-coo"
    config_dir.mkdir(parents=True)
    (config_dir / ".env").write_text("COO_TIMEZONE=Europe/Lisbon\nCOO_TELEGRAM__TOKEN=7:user-config-secret\n")
    (tmp_path / ".env").write_text("COO_DIGEST_TIME=07:30\n")
    code, out, _ = await run_coo(["doctor", "--quick"], env, tmp_path)
    assert code == 0, out  # --quick: no network, so the unreachable model is not even tried
    assert f"config file {config_dir / '.env'}: COO_TELEGRAM__TOKEN, COO_TIMEZONE" in out
    assert f"config file {tmp_path / '.env'}: COO_DIGEST_TIME" in out
    assert "environment: COO_DATA_DIR, COO_LLM__BASE_URL" in out
    assert "[ok]   data dir: " in out and "model" not in out
    assert "user-config-secret" not in out
    code, out, _ = await run_coo(["doctor"], env, tmp_path)
    assert code == 1 and "[FAIL] model: unreachable" in out


async def test_export_refuses_a_git_work_tree_and_import_refuses_a_used_data_dir(tmp_path: Path) -> None:
    from memory.db import open_database

    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    env = clean_env(tmp_path)
    code, _, err = await run_coo(["export", "--out", str(tmp_path / "backup")], env, repo)
    assert code == 1 and err.count("\n") == 1 and "nothing to export" in err and not (tmp_path / "data").exists()
    async with open_database(tmp_path / "data") as db:
        await db.append_event("test.seed", "test", {})
    code, _, err = await run_coo(["export", "--out", "backup"], env, repo)
    assert code == 2 and err.count("\n") == 1 and "inside the git work tree" in err and "--force" in err
    assert not (repo / "backup").exists()
    code, out, err = await run_coo(["export", "--out", str(tmp_path / "backup")], env, repo)
    assert code == 0, err
    assert "events: " in out and oct((tmp_path / "backup" / "events.jsonl").stat().st_mode & 0o777) == "0o600"
    code, _, err = await run_coo(["import", str(tmp_path / "backup")], env, tmp_path)  # the data dir has data now
    assert code == 2 and err.count("\n") == 1 and "is not empty" in err
    fresh = {**env, "COO_DATA_DIR": str(tmp_path / "restored"), "COO_MEMORY__SEMANTIC": "false"}
    code, out, err = await run_coo(["import", str(tmp_path / "backup")], fresh, tmp_path)
    assert code == 0 and out.startswith("events: 1, records: 0") and (tmp_path / "restored" / "coo.sqlite").exists()
    code, out, err = await run_coo(["export", "--out", "backup", "--force"], env, repo)
    assert code == 0 and (repo / "backup" / "records.jsonl").exists(), err


async def test_coo_run_polls_before_it_loads_the_rest_and_answers_what_came_meanwhile(tmp_path: Path) -> None:
    import signal
    import sqlite3

    from tests.fakes.telegram_api import FakeTelegram

    async with FakeTelegram(token="1:T") as tg:
        tg.push_message(1, 1, "/status")  # written while the bot was down
        tg.push_message(1, 1, "/budget set all daily 5")  # a command's arguments, before commands are known
        env = subprocess_env(
            tmp_path / "data",
            COO_OPERATORS="telegram:1",
            COO_TELEGRAM__TOKEN="1:T",
            COO_TELEGRAM__API_BASE_URL=tg.api_root,
            COO_TELEGRAM__POLL_TIMEOUT_S="1",
            COO_MEMORY__SEMANTIC="false",
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot.cli", "run", env=env, cwd=tmp_path,
            stdin=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        try:
            await tg.wait_for("sendMessage", 2, timeout=60)
        finally:
            proc.send_signal(signal.SIGTERM)
            _, err = await asyncio.wait_for(proc.communicate(), 30)
    methods = [c.method for c in tg.calls]
    # The command menu is built with everything else: polling (and storing updates) began before it.
    assert methods.index("getUpdates") < methods.index("setMyCommands"), methods
    assert proc.returncode == 0 and "Traceback" not in err.decode(), err.decode()[-2000:]
    with sqlite3.connect(tmp_path / "data" / "coo.sqlite") as conn:
        logged = [
            r[0] for r in conn.execute("SELECT json_extract(payload, '$.text') FROM events WHERE kind = 'message.in'")
        ]
    assert logged == ["/status", "/budget [withheld]"]  # arguments withheld while it was not known which are private
