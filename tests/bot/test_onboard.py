"""``coo onboard``: every answer checked against real HTTP/SMTP servers on localhost, the file written 0600."""

from __future__ import annotations

import asyncio
import io
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from aiohttp import web

from bot.doctor import access_detail
from bot.onboard import run_onboarding, start_hint
from bot.onboard_checks import TELEGRAM_TOKEN_HINT, check_smtp, check_stripe, telegram_token_problem, zone_suggestions
from bot.onboard_io import OnboardingStopped, Prompter, quote, write_env_file
from bot.runtime import open_runtime
from bot.settings import load_settings
from bot.status import banner
from tests.conftest import make_settings, subprocess_env
from tests.fakes.coo_process import start_coo
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.slack_api import FakeSlack
from tests.fakes.smtp_server import SMTPServer, free_port
from tests.fakes.telegram_api import FakeTelegram, made_up_token
from tests.fakes.terminal import Terminal

TG_TOKEN = made_up_token()  # the shape @BotFather gives, made up per run
STRIPE_KEY = "sk_test_stripe-secret"
WRONG_TOKEN = "42:" + "w" * 35


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
                "4", llm.base_url, llm.api_key, "", "",  # model: other URL, key, the offered model; not free
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
            proc = await start_coo(
                "onboard", cwd=tmp_path, env=env,
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
            "4", "localhost:11434", refused, llm.api_key, "llama3", "r",  # not a URL (asked again); nothing listening
            llm.base_url, "", "no-such-model", "r",  # the key kept; the endpoint answers 404 for that model
            "", "", "fake-model", "",  # URL and key kept, the model it offers; not free
            "42:wrong", WRONG_TOKEN, "r", TG_TOKEN, "me",  "7",  # malformed; rejected; a user id that is not digits
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
    assert "That is not a bot token: @BotFather gives one like 123456789:AAF1x..." in printed
    assert "42:wrong" not in printed and WRONG_TOKEN not in printed and TG_TOKEN not in printed
    assert "Start it with `coo --config" in printed  # a file `coo run` would not find by itself
    assert code == 0, printed
    settings = load_settings(env_file=tmp_path / "coo.env")
    assert settings.llm.base_url == llm.base_url and settings.llm.model == "fake-model"
    assert settings.llm.api_key is not None and settings.llm.api_key.get_secret_value() == llm.api_key
    assert settings.operator_ids == {"telegram:7"} and settings.timezone == "UTC"


async def test_skipped_steps_keep_the_file_and_input_ending_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "coo.env"
    path.write_text("COO_TELEGRAM__TOKEN='1:kept'\nCOO_OPERATORS=telegram:5\nCOO_TIMEZONE=Asia/Tokyo\n")
    before = path.read_text()
    with pytest.raises(OnboardingStopped, match="input ended"):
        await run_onboarding(path, io.StringIO("\n\n"), io.StringIO(), env={})
    assert path.read_text() == before  # nothing written when the run did not finish
    out = io.StringIO()
    await run_onboarding(path, io.StringIO("\n\n\n\n\n\n"), out, env={})  # Enter at every step, the menu too
    settings = load_settings(env_file=path)
    assert settings.telegram.token is not None and settings.telegram.token.get_secret_value() == "1:kept"
    assert settings.operator_ids == {"telegram:5"} and settings.timezone == "Asia/Tokyo"
    assert f"{path} exists: what you skip keeps its current value." in out.getvalue()
    assert "choice [5]: " in out.getvalue() and "OpenAI API key" not in out.getvalue()  # Enter skipped the model


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


async def test_a_failed_check_can_be_saved_anyway_and_a_local_model_is_asked_whether_it_is_free(
    tmp_path: Path,
) -> None:
    """Offline at setup time: the model and the Telegram token cannot be checked, the operator keeps them."""
    closed = f"http://127.0.0.1:{free_port()}"
    answers = [
        "2", f"{closed}/v1", "llama3.1:8b", "s", "",  # Ollama, unreachable: saved anyway; free (Enter: yes)
        TG_TOKEN, "s", "1001",  # unreachable: saved anyway, and the user id still asked
        "", "", "",  # slack, email, stripe skipped
        "UTC",
    ]  # fmt: skip
    out = io.StringIO()
    env = {"COO_TELEGRAM__API_BASE_URL": closed}
    code = await run_onboarding(tmp_path / "coo.env", io.StringIO("\n".join(answers) + "\n"), out, env=env)
    printed = out.getvalue()
    assert "[FAIL] model: unreachable (ConnectError)" in printed and "[FAIL] telegram: unreachable" in printed
    assert printed.count("try again (r), save it anyway (s) or skip (n)? [r]: ") == 2
    assert printed.count("saved unchecked: `coo doctor` checks it again once it can.") == 2
    assert "Does this model cost you nothing per call (it runs on your own hardware)? (Y/n)" in printed
    assert "Its calls count as 0 in /spend and budgets (COO_LLM__FREE=true)." in printed
    assert code == 1  # doctor, at the end, still finds them unreachable
    settings = load_settings(env_file=tmp_path / "coo.env")
    assert settings.llm.base_url == f"{closed}/v1" and settings.llm.model == "llama3.1:8b" and settings.llm.free
    assert settings.telegram.token is not None and settings.telegram.token.get_secret_value() == TG_TOKEN
    assert settings.operator_ids == {"telegram:1001"}
    assert TG_TOKEN not in printed


async def test_a_paid_endpoint_is_not_free_unless_the_operator_says_so(tmp_path: Path) -> None:
    path = tmp_path / "coo.env"
    path.write_text("COO_LLM__FREE=true\n")  # from an earlier run with a local model
    async with FakeOpenAI() as llm:
        answers = ["4", llm.base_url, llm.api_key, "", "", "", "", "", "", "UTC"]  # Enter: not free
        out = io.StringIO()
        await run_onboarding(path, io.StringIO("\n".join(answers) + "\n"), out, env={})
    printed = out.getvalue()
    assert "(it runs on your own hardware)? (y/N)" in printed
    assert "counted at its listed price, or at 15.0/75.0 USD per 1M tokens when it has none" in printed
    assert "COO_LLM__FREE" not in path.read_text() and not load_settings(env_file=path).llm.free


async def test_a_retry_keeps_the_answers_and_a_bad_port_asks_only_for_the_port(tmp_path: Path) -> None:
    with SMTPServer() as smtp:
        answers = [
            "", "", "",  # model, telegram, slack skipped
            "127.0.0.1", "25x", str(free_port()), "none", "", "me@example.org",  # a bad port; then a closed one
            "r", "", str(smtp.port), "", "", "",  # only the port retyped: host, security, no login, From kept
            "",  # stripe skipped
            "UTC",
        ]  # fmt: skip
        out = io.StringIO()
        await run_onboarding(tmp_path / "coo.env", io.StringIO("\n".join(answers) + "\n"), out, env={})
    printed = out.getvalue()
    assert "The port is a number from 1 to 65535." in printed
    assert printed.count("SMTP host") == 2 and "SMTP host [127.0.0.1]: " in printed  # not asked again for the port
    assert "[FAIL] email: unreachable" in printed and f"[ok] email: 127.0.0.1:{smtp.port} answered" in printed
    assert "send as (From address) [me@example.org]: " in printed
    settings = load_settings(env_file=tmp_path / "coo.env")
    assert (settings.smtp.host, settings.smtp.port, settings.smtp.security) == ("127.0.0.1", smtp.port, "none")
    assert settings.smtp.username is None and settings.smtp.from_addr == "me@example.org"


def test_a_near_miss_time_zone_gets_a_suggestion() -> None:
    assert zone_suggestions("europe/lisbon") == ["Europe/Lisbon"]
    assert zone_suggestions("AMERICA/NEW YORK") == ["America/New_York"]
    assert "Europe/Lisbon" in zone_suggestions("Europe/Lisbn")
    assert "Europe/Lisbon" in zone_suggestions("lisbon")
    assert zone_suggestions("Mars/Olympus") == []


def test_a_telegram_token_is_checked_for_its_shape() -> None:
    assert telegram_token_problem(TG_TOKEN) is None
    assert telegram_token_problem(made_up_token(123456789)[:-4] + "x_-9") is None  # "_" and "-" are allowed
    for wrong in ("", "42:wrong", "bot123456789:" + "a" * 35, "123456789 " + "a" * 35, "12:" + "a" * 34 + "!"):
        assert telegram_token_problem(wrong) == TELEGRAM_TOKEN_HINT


async def test_doctor_and_onboard_promise_a_pairing_code_exactly_when_coo_run_prints_one(tmp_path: Path) -> None:
    """No chat platform: nobody could send /pair, so no code is opened, and doctor and onboard say so."""
    console_only = make_settings(tmp_path / "a", operators="")
    assert "no pairing code" in access_detail(console_only)
    assert "no pairing code" in start_hint(None, tmp_path / ".env", console_only)
    async with open_runtime(console_only, console=False) as rt:
        assert rt.pairing_code is None and "pairing code" not in banner(rt)
    async with FakeTelegram(token=TG_TOKEN) as tg:
        telegram = {"token": TG_TOKEN, "api_base_url": tg.api_root, "poll_timeout_s": 0.5}
        with_telegram = make_settings(tmp_path / "b", operators="", telegram=telegram)
        assert "`coo run` prints a one-time code at start" in access_detail(with_telegram)
        assert "it prints a one-time pairing code" in start_hint(None, tmp_path / ".env", with_telegram)
        async with open_runtime(with_telegram, console=False) as rt:
            assert rt.pairing_code is not None and f"pairing code: {rt.pairing_code} (one use" in banner(rt)


def test_coo_onboard_on_a_terminal(tmp_path: Path) -> None:
    """As a newcomer types it: Enter skips the model, a malformed token gets one line, a token that cannot
    be checked offline is saved anyway, a time zone in lower case is corrected; secrets never echo."""
    closed = f"http://127.0.0.1:{free_port()}"
    env = subprocess_env(tmp_path / "data", COO_TELEGRAM__API_BASE_URL=closed)
    with Terminal(["onboard"], env, tmp_path) as terminal:
        terminal.read_until("choice [5]: ")
        terminal.type(b"\r")
        terminal.read_until("model: skipped")
        terminal.read_until("bot token (Enter to skip): ")
        terminal.type(b"not-a-token\r")
        terminal.read_until("That is not a bot token")
        terminal.read_until("bot token (Enter to skip): ")
        terminal.type(TG_TOKEN.encode() + b"\r")
        terminal.read_until("save it anyway (s) or skip (n)? [r]: ")
        terminal.type(b"s\r")
        terminal.read_until("Enter to pair later with /pair CODE): ")
        terminal.type(b"\r")
        for prompt in ("xoxb-... (Enter to skip): ", "SMTP host (Enter to skip): ", "Stripe key (Enter to skip): "):
            terminal.read_until(prompt)
            terminal.type(b"\r")
        terminal.read_until("Your time zone (e.g. Europe/Lisbon)")
        terminal.type(b"europe/lisbon\r")
        terminal.read_until("did you mean Europe/Lisbon? Enter takes Europe/Lisbon.")
        terminal.type(b"\r")
        assert terminal.wait() == 1, terminal.screen  # doctor: the saved token is still unreachable
    screen = terminal.screen
    assert "not-a-token" not in screen and TG_TOKEN not in screen
    assert "access: pairing: `coo run` prints a one-time code at start" in screen
    assert "it prints a one-time pairing code: send /pair CODE to your bot" in screen
    settings = load_settings(env_file=tmp_path / "home" / ".config" / "solo-coo" / ".env")
    assert settings.telegram.token is not None and settings.telegram.token.get_secret_value() == TG_TOKEN
    assert settings.timezone == "Europe/Lisbon" and not settings.llm.configured


def test_a_kept_answer_shows_as_the_default_and_a_secret_is_kept_without_being_shown() -> None:
    out = io.StringIO()
    prompter = Prompter(io.StringIO("\n-\n\nnew\n"), out)
    assert prompter.ask("username (Enter if none)", "me", clearable=True) == "me"
    assert prompter.ask("username (Enter if none)", "me", clearable=True) == ""  # "-": none after all
    assert prompter.ask_secret("password", keep="pw-typed-before") == "pw-typed-before"
    assert prompter.ask_secret("password", keep="pw-typed-before") == "new"
    assert "username (Enter if none) [me; - for none]: " in out.getvalue()
    assert "password (Enter keeps the one you typed): " in out.getvalue()
    assert "pw-typed-before" not in out.getvalue()
