"""``coo onboard``: an interactive setup that checks every answer on the spot and writes the config file.

Steps: the model (OpenAI key, or an Ollama / llama.cpp / other OpenAI-compatible URL, tested with a
real chat request), Telegram (getMe), Slack (auth.test and apps.connections.open), email (connect,
EHLO, login), Stripe (GET /v1/balance), the operator's time zone. Every step can be skipped with
Enter; what the config file already holds is kept for skipped steps. Secrets are read without echo
and never printed. The file is written with mode 0600; the run ends with what ``coo doctor`` prints.

Everything reads from a :class:`Prompter` (a text stream, so tests drive it) and talks real HTTP.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import aiosmtplib
import httpx

from bot.settings import ENV_FILE_NAME, redact_url, user_config_dir

OPENAI_URL = "https://api.openai.com/v1"
OLLAMA_URL = "http://localhost:11434/v1"
LLAMA_CPP_URL = "http://localhost:8080/v1"
TELEGRAM_URL = "https://api.telegram.org"
SLACK_URL = "https://slack.com/api/"
STRIPE_URL = "https://api.stripe.com"
PING = "Reply with the single word OK."

INTRO = (
    "solo-coo setup. Each step checks your answer right away; press Enter to skip a step.\n"
    "Secrets are read without echo and never printed. Nothing is written until the end."
)
MODEL_MENU = (
    "\nModel: which model should your COO use?\n"
    "  1) OpenAI (an API key)\n"
    "  2) Ollama on this machine\n"
    "  3) llama.cpp server, vLLM or another OpenAI-compatible URL\n"
    "  4) skip: keep what is configured (nothing means offline mode: commands and approvals still work)"
)
SLACK_HOWTO = (
    "\nSlack: create the app in one paste. Run `coo slack-manifest`, then at https://api.slack.com/apps choose\n"
    "Create New App -> From a manifest and paste it. Install it to your workspace (Bot User OAuth Token,\n"
    "xoxb-...) and under Basic Information create an app-level token with connections:write (xapp-...)."
)


class OnboardingStopped(Exception):
    """The input ended (or the user stopped) before the config file was written."""


@dataclass(frozen=True)
class Outcome:
    """The result of one check: ``detail`` is safe to print (never holds a secret)."""

    ok: bool
    detail: str


class Prompter:
    """Questions on ``output``, answers from ``input``; secrets through ``secret_reader`` (no echo)."""

    def __init__(self, input: TextIO, output: TextIO, secret_reader: Callable[[str], str] | None = None) -> None:
        self._input = input
        self._output = output
        self._secret_reader = secret_reader

    def say(self, text: str) -> None:
        """Print a line."""
        self._output.write(text + "\n")
        self._output.flush()

    def _line(self) -> str:
        line = self._input.readline()
        if not line:
            raise OnboardingStopped("the input ended")
        return line.strip()

    def ask(self, question: str, default: str = "") -> str:
        """One answer; Enter gives ``default``."""
        shown = f" [{default}]" if default else ""
        while True:
            self._output.write(f"{question}{shown}: ")
            self._output.flush()
            answer = self._line() or default
            if self._storable(answer):
                return answer

    def ask_secret(self, question: str) -> str:
        """A secret: read without echo on a terminal, never written back."""
        while True:
            if self._secret_reader is not None:
                answer = self._secret_reader(f"{question}: ").strip()
            else:
                self._output.write(f"{question}: ")
                self._output.flush()
                answer = self._line()
                self._output.write("\n")
            if self._storable(answer):
                return answer

    def _storable(self, answer: str) -> bool:
        try:
            quote(answer)
        except ValueError as exc:
            self.say(f"  {exc}.")
            return False
        return True

    def yes(self, question: str, default: bool = True) -> bool:
        """A yes/no question."""
        while True:
            answer = self.ask(question + (" (Y/n)" if default else " (y/N)")).lower()
            if not answer:
                return default
            if answer in ("y", "yes", "n", "no"):
                return answer.startswith("y")
            self.say("Please answer y or n.")

    def choose(self, question: str, count: int, default: int) -> int:
        """A number from 1 to ``count``."""
        while True:
            answer = self.ask(question, str(default))
            if answer.isdigit() and 1 <= int(answer) <= count:
                return int(answer)
            self.say(f"Please type a number from 1 to {count}.")


# -- checks: each one real request, nothing written --------------------------------------------
def _reason(exc: Exception) -> str:
    return f"unreachable ({type(exc).__name__})"


def _http_error(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        body = None
    message = ""
    if isinstance(body, dict):
        error = body.get("error")
        detail = error.get("message", "") if isinstance(error, dict) else (error or body.get("description", ""))
        message = str(detail)
    return f"answered HTTP {response.status_code}" + (f": {message[:200]}" if message else "")


async def list_models(client: httpx.AsyncClient, base_url: str, api_key: str | None) -> list[str]:
    """Model ids the endpoint offers (``GET /models``); [] when it does not say."""
    try:
        response = await client.get(f"{base_url}/models", headers=_bearer(api_key))
        data = response.json().get("data", []) if response.status_code == 200 else []
    except (httpx.HTTPError, ValueError, AttributeError):
        return []
    return [str(item["id"]) for item in data if isinstance(item, dict) and "id" in item]


async def check_model(client: httpx.AsyncClient, base_url: str, api_key: str | None, model: str) -> Outcome:
    """A real (tiny) chat completion with this endpoint, key and model."""
    body = {"model": model, "messages": [{"role": "user", "content": PING}], "max_tokens": 5}
    try:
        response = await client.post(f"{base_url}/chat/completions", json=body, headers=_bearer(api_key))
    except httpx.HTTPError as exc:
        return Outcome(False, _reason(exc))
    if response.status_code != 200:
        return Outcome(False, _http_error(response))
    try:
        choices = response.json()["choices"]
        assert isinstance(choices, list) and choices
    except (ValueError, KeyError, TypeError, AssertionError):
        return Outcome(False, "answered, but not like an OpenAI-compatible chat endpoint")
    return Outcome(True, f"{model} at {redact_url(base_url)} answered")


async def check_telegram(client: httpx.AsyncClient, api_root: str, token: str) -> Outcome:
    """getMe with the token; the detail names the bot."""
    try:
        response = await client.get(f"{api_root}/bot{token}/getMe")
        body = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        return Outcome(False, _reason(exc))
    if response.status_code != 200 or not body.get("ok"):
        return Outcome(False, f"token rejected (HTTP {response.status_code})")
    return Outcome(True, f"token accepted for @{body['result'].get('username', '?')}")


async def check_slack(client: httpx.AsyncClient, api_base: str, bot_token: str, app_token: str) -> tuple[Outcome, str]:
    """auth.test with the bot token, apps.connections.open with the app token; also returns the team id."""
    try:
        auth = (await client.post(f"{api_base}auth.test", headers=_bearer(bot_token))).json()
        conn = (await client.post(f"{api_base}apps.connections.open", headers=_bearer(app_token))).json()
    except (httpx.HTTPError, ValueError) as exc:
        return Outcome(False, _reason(exc)), ""
    if not auth.get("ok"):
        return Outcome(False, f"bot token: auth.test failed: {auth.get('error', 'unknown')}"), ""
    if not conn.get("ok"):
        return Outcome(False, f"app token: apps.connections.open failed: {conn.get('error', 'unknown')}"), ""
    team = str(auth.get("team_id", ""))
    return Outcome(True, f"tokens accepted for workspace {auth.get('team', '?')} ({team}), Socket Mode ready"), team


async def check_smtp(host: str, port: int, security: str, username: str | None, password: str | None) -> Outcome:
    """Connect, EHLO (STARTTLS/TLS as chosen) and log in when a username is given; no mail is sent."""
    from connectors.email import smtp_handshake

    try:
        done = await smtp_handshake(host, port, security, username, password)
    except aiosmtplib.SMTPAuthenticationError as exc:
        return Outcome(False, f"login refused ({exc.code})")
    except aiosmtplib.SMTPResponseException as exc:
        return Outcome(False, f"server answered {exc.code}")
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        return Outcome(False, _reason(exc))
    return Outcome(True, f"{host}:{port} answered {done} ({security})")


async def check_stripe(client: httpx.AsyncClient, api_base: str, key: str) -> Outcome:
    """GET /v1/balance with the key (reads nothing else, changes nothing)."""
    try:
        response = await client.get(f"{api_base.rstrip('/')}/v1/balance", headers=_bearer(key))
        body = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        return Outcome(False, _reason(exc))
    if response.status_code != 200:
        return Outcome(False, _http_error(response))
    return Outcome(True, "key accepted (" + ("live mode" if body.get("livemode") else "test mode") + ")")


def _bearer(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def local_timezone(env: Mapping[str, str]) -> str | None:
    """This machine's IANA zone name, when it can be told."""
    candidates = [env.get("TZ", "").lstrip(":")]
    with_file = Path("/etc/timezone")
    if with_file.is_file():
        candidates.append(with_file.read_text(encoding="utf-8").strip())
    localtime = Path("/etc/localtime")
    if localtime.is_symlink():
        target = str(localtime.resolve())
        if "zoneinfo/" in target:
            candidates.append(target.split("zoneinfo/", 1)[1])
    for name in candidates:
        if name and _valid_zone(name):
            return name
    return None


def _valid_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


# -- the steps -----------------------------------------------------------------------------------
class Onboarding:
    """Asks, checks, and collects the ``COO_*`` values to write. ``existing`` is what the file holds."""

    def __init__(
        self, prompter: Prompter, existing: Mapping[str, str], env: Mapping[str, str], client: httpx.AsyncClient
    ) -> None:
        self.p = prompter
        self.values: dict[str, str] = dict(existing)
        self._env = env
        self._client = client
        self._operators = [o.strip() for o in self.values.get("COO_OPERATORS", "").split(",") if o.strip()]

    def _setting(self, name: str, default: str) -> str:
        """The environment's value, else the file's, else ``default`` (API roots: self-hosting and tests)."""
        return self._env.get(name) or self.values.get(name) or default

    def _report(self, outcome: Outcome, what: str) -> None:
        self.p.say(f"  {'[ok]' if outcome.ok else '[FAIL]'} {what}: {outcome.detail}")

    async def run(self) -> dict[str, str]:
        """Every step in order; returns the values to write."""
        self.p.say(INTRO)
        await self.model()
        await self.telegram()
        await self.slack()
        await self.email()
        await self.stripe()
        self.timezone()
        if self._operators:
            self.values["COO_OPERATORS"] = ",".join(dict.fromkeys(self._operators))
        return self.values

    async def model(self) -> None:
        """OpenAI, Ollama, llama.cpp or any OpenAI-compatible URL; tested with a real chat request."""
        self.p.say(MODEL_MENU)
        choice = self.p.choose("choice", 4, 4 if "COO_LLM__MODEL" in self.values else 1)
        if choice == 4:
            self.p.say("  model: skipped")
            return
        while True:
            if choice == 1:
                base, key = OPENAI_URL, self.p.ask_secret("OpenAI API key (sk-...)")
                if not key:
                    self.p.say("  model: skipped")
                    return
            else:
                suggested = OLLAMA_URL if choice == 2 else LLAMA_CPP_URL
                base = self.p.ask("endpoint URL", suggested).rstrip("/")
                if not base.startswith(("http://", "https://")):
                    self.p.say("  The URL must start with http:// or https://.")
                    continue
                key = self.p.ask_secret("API key (Enter if none)") if choice == 3 else ""
            offered = await list_models(self._client, base, key or None)
            if offered:
                self.p.say("  models offered: " + ", ".join(offered[:10]) + (" ..." if len(offered) > 10 else ""))
            default = "gpt-4o-mini" if choice == 1 else (offered[0] if offered else "")
            model = self.p.ask("model", default)
            if not model:
                outcome = Outcome(False, "no model name")
            else:
                outcome = await check_model(self._client, base, key or None, model)
            self._report(outcome, "model")
            if outcome.ok:
                for name in ("COO_LLM__BASE_URL", "COO_LLM__API_KEY"):
                    self.values.pop(name, None)
                if choice != 1:
                    self.values["COO_LLM__BASE_URL"] = base
                if key:
                    self.values["COO_LLM__API_KEY"] = key
                self.values["COO_LLM__MODEL"] = model
                return
            if not self.p.yes("  try again?"):
                return

    async def telegram(self) -> None:
        """Bot token checked with getMe; the operator's user id (or pairing later)."""
        self.p.say("\nTelegram: create a bot with @BotFather (/newbot) and paste its token.")
        api_root = self._setting("COO_TELEGRAM__API_BASE_URL", TELEGRAM_URL).rstrip("/")
        while True:
            token = self.p.ask_secret("bot token (Enter to skip)")
            if not token:
                self.p.say("  telegram: skipped")
                return
            outcome = await check_telegram(self._client, api_root, token)
            self._report(outcome, "telegram")
            if outcome.ok:
                self.values["COO_TELEGRAM__TOKEN"] = token
                break
            if not self.p.yes("  try again?"):
                return
        while True:
            user_id = self.p.ask("your Telegram user id (digits; Enter to pair later with /pair CODE)")
            if not user_id:
                return
            if re.fullmatch(r"\d{1,20}", user_id):
                self._operators.append(f"telegram:{user_id}")
                return
            self.p.say("  A Telegram user id is digits only (send /start to @userinfobot to see yours).")

    async def slack(self) -> None:
        """Bot and app tokens (Socket Mode), checked with auth.test and apps.connections.open."""
        self.p.say(SLACK_HOWTO)
        api_base = self._setting("COO_SLACK__API_BASE_URL", SLACK_URL)
        api_base = api_base if api_base.endswith("/") else api_base + "/"
        while True:
            bot_token = self.p.ask_secret("bot token xoxb-... (Enter to skip)")
            if not bot_token:
                self.p.say("  slack: skipped")
                return
            app_token = self.p.ask_secret("app-level token xapp-...")
            if not bot_token.startswith("xoxb-") or not app_token.startswith("xapp-"):
                outcome, team = Outcome(False, "the bot token starts with xoxb-, the app token with xapp-"), ""
            else:
                outcome, team = await check_slack(self._client, api_base, bot_token, app_token)
            self._report(outcome, "slack")
            if outcome.ok:
                self.values["COO_SLACK__BOT_TOKEN"] = bot_token
                self.values["COO_SLACK__APP_TOKEN"] = app_token
                break
            if not self.p.yes("  try again?"):
                return
        while True:
            member = self.p.ask("your Slack member ID (U...; profile -> Copy member ID; Enter to pair later)")
            if not member:
                return
            if re.fullmatch(r"[UW][A-Z0-9]+", member) and team:
                self._operators.append(f"slack:{team}:{member}")
                return
            self.p.say("  A member ID looks like U012AB3CD.")

    async def email(self) -> None:
        """SMTP host, port, security, login and sender; checked by connect + EHLO (+ login)."""
        self.p.say("\nEmail: the SMTP server the COO sends your approved emails through.")
        while True:
            host = self.p.ask("SMTP host (Enter to skip)")
            if not host:
                self.p.say("  email: skipped")
                return
            port_text = self.p.ask("port", "587")
            if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
                self.p.say("  The port is a number from 1 to 65535.")
                continue
            port = int(port_text)
            security = self.p.ask("security: starttls, tls or none", "tls" if port == 465 else "starttls")
            if security not in ("starttls", "tls", "none"):
                self.p.say("  Security is starttls, tls or none.")
                continue
            username = self.p.ask("username (Enter if none)")
            password = self.p.ask_secret("password") if username else ""
            sender = self.p.ask("send as (From address)", username if "@" in username else "")
            if "@" not in sender:
                outcome = Outcome(False, "the From address must be an email address")
            else:
                outcome = await check_smtp(host, port, security, username or None, password or None)
            self._report(outcome, "email")
            if outcome.ok:
                for name in ("COO_SMTP__USERNAME", "COO_SMTP__PASSWORD"):
                    self.values.pop(name, None)
                self.values.update(
                    {"COO_SMTP__HOST": host, "COO_SMTP__PORT": str(port), "COO_SMTP__SECURITY": security}
                )
                self.values["COO_SMTP__FROM_ADDR"] = sender
                if username:
                    self.values["COO_SMTP__USERNAME"] = username
                    self.values["COO_SMTP__PASSWORD"] = password
                return
            if not self.p.yes("  try again?"):
                return

    async def stripe(self) -> None:
        """A secret or restricted key, checked with GET /v1/balance."""
        self.p.say("\nStripe (for invoices): a secret key sk_... or a restricted key rk_...")
        api_base = self._setting("COO_STRIPE__API_BASE_URL", STRIPE_URL)
        while True:
            key = self.p.ask_secret("Stripe key (Enter to skip)")
            if not key:
                self.p.say("  stripe: skipped")
                return
            if not key.startswith(("sk_", "rk_")):
                outcome = Outcome(False, "a Stripe secret key starts with sk_ (or rk_ for a restricted key)")
            else:
                outcome = await check_stripe(self._client, api_base, key)
            self._report(outcome, "stripe")
            if outcome.ok:
                self.values["COO_STRIPE__API_KEY"] = key
                return
            if not self.p.yes("  try again?"):
                return

    def timezone(self) -> None:
        """The operator's IANA time zone (for the digest and due dates)."""
        default = self.values.get("COO_TIMEZONE") or local_timezone(self._env) or "UTC"
        while True:
            zone = self.p.ask("\nYour time zone (e.g. Europe/Lisbon)", default)
            if _valid_zone(zone):
                self.values["COO_TIMEZONE"] = zone
                return
            self.p.say(f"  '{zone}' is not a time zone name like Europe/Lisbon or America/New_York.")


# -- the file ------------------------------------------------------------------------------------
def quote(value: str) -> str:
    """``value`` as a .env value that python-dotenv reads back exactly.

    Single quotes when possible. python-dotenv still reads ``\\`` and ``\'`` as escapes inside them,
    so a value with a backslash or a quote goes in double quotes, escaped. It expands ``${NAME}`` in
    every kind of quoting and has no escape for it, so such a value is refused rather than changed.
    """
    if "\n" in value or "\r" in value:
        raise ValueError("a value cannot hold a line break")
    if "${" in value:
        raise ValueError("a value holding ${ would be changed when read back; set it in the environment instead")
    if "'" not in value and "\\" not in value:
        return f"'{value}'"
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_env_file(path: Path, values: Mapping[str, str]) -> None:
    """Write ``values`` atomically to ``path`` with mode 0600 (its folder 0700 when created)."""
    lines = [
        "# solo-coo configuration, written by `coo onboard`. Environment variables override these values.",
        *(f"{name}={quote(value)}" for name, value in sorted(values.items())),
    ]
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")
        os.chmod(temp, 0o600)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def read_env_file(path: Path) -> dict[str, str]:
    """The COO_ values a config file holds (empty when there is none)."""
    if not path.is_file():
        return {}
    from dotenv import dotenv_values

    return {k: v for k, v in dotenv_values(path).items() if k.startswith("COO_") and v is not None}


async def run_onboarding(
    out: Path | None = None,
    input: TextIO | None = None,
    output: TextIO | None = None,
    env: Mapping[str, str] | None = None,
) -> int:
    """The whole setup: ask, check, write ``out`` (default: the user config dir's .env), then doctor."""
    from bot.doctor import run_doctor
    from bot.settings import ConfigError, load_settings

    input = input or sys.stdin
    output = output or sys.stdout
    env = os.environ if env is None else env
    path = out or user_config_dir() / ENV_FILE_NAME
    secret_reader = (lambda prompt: getpass.getpass(prompt, stream=output)) if input.isatty() else None
    prompter = Prompter(input, output, secret_reader)
    existing = read_env_file(path)
    if existing:
        prompter.say(f"{path} exists: what you skip keeps its current value.")
    async with httpx.AsyncClient(timeout=20) as client:
        values = await Onboarding(prompter, existing, env, client).run()
    try:
        write_env_file(path, values)
    except ValueError as exc:
        raise OnboardingStopped(str(exc)) from None
    prompter.say(f"\nWrote {path} (mode 600). Here is what `coo doctor` sees now:\n")
    try:
        settings = load_settings(env_file=path)
    except ConfigError as exc:
        prompter.say(f"coo: configuration error: {exc}")
        return 2
    with contextlib.redirect_stdout(output):
        code = await run_doctor(settings)
    prompter.say(start_hint(out, path, bool(settings.operator_ids)))
    return code


def start_hint(out: Path | None, path: Path, has_operators: bool) -> str:
    """How to start with the file just written (``--config`` when ``coo run`` would not find it)."""
    found = out is None or out.absolute() == Path.cwd() / ENV_FILE_NAME
    start = "`coo run`" if found else f"`coo --config {path} run`"
    pairing = "" if has_operators else "; it prints a pairing code: send /pair CODE to your bot to become its operator"
    return f"\nStart it with {start}{pairing}."
