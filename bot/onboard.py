"""``coo onboard``: an interactive setup that checks every answer on the spot and writes the config file.

Steps: the model (OpenAI key, or an Ollama / llama.cpp / other OpenAI-compatible URL, tested with a
real chat request; for a local one, whether its calls cost anything), Telegram (getMe), Slack (auth.test
and apps.connections.open), email (connect, EHLO, login), Stripe (GET /v1/balance), the operator's time
zone. Every step can be skipped with Enter; what the config file already holds is kept for skipped steps.
A malformed answer is asked again on its own; after a failed check the operator tries again (every
answer kept as the default), saves it unchecked (e.g. offline) or skips. Secrets are read without echo
and never printed. The file is written with mode 0600; the run ends with what ``coo doctor`` prints.

Everything reads from a :class:`Prompter` (a text stream, so tests drive it) and talks real HTTP.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TextIO

import httpx

from bot.onboard_checks import (
    Outcome,
    check_model,
    check_slack,
    check_smtp,
    check_stripe,
    check_telegram,
    list_models,
    local_timezone,
    telegram_token_problem,
    valid_zone,
    zone_suggestions,
)
from bot.onboard_io import OnboardingStopped, Prompter, read_env_file, write_env_file
from bot.settings import ENV_FILE_NAME, Settings, user_config_dir
from graph.spend.pricing import UNKNOWN_MODEL_USD

OPENAI_URL = "https://api.openai.com/v1"
OLLAMA_URL = "http://localhost:11434/v1"
LLAMA_CPP_URL = "http://localhost:8080/v1"
TELEGRAM_URL = "https://api.telegram.org"
SLACK_URL = "https://slack.com/api/"
STRIPE_URL = "https://api.stripe.com"
OPENAI, OLLAMA, LLAMA_CPP, OTHER_URL, SKIP_MODEL = range(1, 6)

INTRO = (
    "solo-coo setup. Each step checks your answer right away; press Enter to skip a step.\n"
    "Secrets are read without echo and never printed. Nothing is written until the end."
)
MODEL_MENU = (
    "\nModel: which model should your COO use?\n"
    "  1) OpenAI (an API key)\n"
    "  2) Ollama on this machine\n"
    "  3) llama.cpp server on this machine\n"
    "  4) another OpenAI-compatible URL (vLLM, LM Studio, a gateway)\n"
    "  5) skip: keep what is configured (nothing means offline mode: commands and approvals still work)"
)
FREE_QUESTION = "  Does this model cost you nothing per call (it runs on your own hardware)?"
FREE_YES = "  Its calls count as 0 in /spend and budgets (COO_LLM__FREE=true)."
FREE_NO = (
    "  Its calls are counted at its listed price, or at {0}/{1} USD per 1M tokens when it has none; "
    "set COO_LLM__FREE=true or COO_LLM__PRICES to change that."
)
SLACK_HOWTO = (
    "\nSlack: create the app in one paste. Run `coo slack-manifest`, then at https://api.slack.com/apps choose\n"
    "Create New App -> From a manifest and paste it. Install it to your workspace (Bot User OAuth Token,\n"
    "xoxb-...) and under Basic Information create an app-level token with connections:write (xapp-...)."
)
SAVED_UNCHECKED = "  saved unchecked: `coo doctor` checks it again once it can."


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
        choice = self.p.choose("choice", SKIP_MODEL, SKIP_MODEL)  # Enter skips, as the screen says
        if choice == SKIP_MODEL:
            self.p.say("  model: skipped")
            return
        base = {OPENAI: OPENAI_URL, OLLAMA: OLLAMA_URL, LLAMA_CPP: LLAMA_CPP_URL}.get(choice, "")
        key = model = ""
        while True:
            if choice == OPENAI:
                key = self.p.ask_secret("OpenAI API key (sk-...)", keep=key)
                if not key:
                    self.p.say("  model: skipped")
                    return
            else:
                base = self._ask_url(base)
                if choice == OTHER_URL:
                    key = self.p.ask_secret("API key" if key else "API key (Enter if none)", keep=key)
            offered = await list_models(self._client, base, key or None)
            if offered:
                self.p.say("  models offered: " + ", ".join(offered[:10]) + (" ..." if len(offered) > 10 else ""))
            model = self.p.ask("model", model or ("gpt-4o-mini" if choice == OPENAI else next(iter(offered), "")))
            if not model:
                outcome = Outcome(False, "no model name")
            else:
                outcome = await check_model(self._client, base, key or None, model)
            self._report(outcome, "model")
            decision = "save" if outcome.ok else self.p.after_failure(can_save=bool(model))
            if decision == "skip":
                return
            if decision == "save":
                self._save_model(choice, base, key, model, checked=outcome.ok)
                return

    def _ask_url(self, default: str) -> str:
        while True:
            base = self.p.ask("endpoint URL", default).rstrip("/")
            if base.startswith(("http://", "https://")):
                return base
            self.p.say("  The URL must start with http:// or https://.")

    def _save_model(self, choice: int, base: str, key: str, model: str, checked: bool) -> None:
        for name in ("COO_LLM__BASE_URL", "COO_LLM__API_KEY", "COO_LLM__FREE"):
            self.values.pop(name, None)
        if key:
            self.values["COO_LLM__API_KEY"] = key
        self.values["COO_LLM__MODEL"] = model
        if not checked:
            self.p.say(SAVED_UNCHECKED)
        if choice == OPENAI:
            return
        self.values["COO_LLM__BASE_URL"] = base
        # Free only on the operator's word (I5); on their own machine that is the usual answer.
        if self.p.yes(FREE_QUESTION, default=choice in (OLLAMA, LLAMA_CPP)):
            self.values["COO_LLM__FREE"] = "true"
            self.p.say(FREE_YES)
        else:
            self.p.say(FREE_NO.format(*UNKNOWN_MODEL_USD))

    async def telegram(self) -> None:
        """Bot token checked for its shape, then with getMe; the operator's user id (or pairing later)."""
        self.p.say("\nTelegram: create a bot with @BotFather (/newbot) and paste its token.")
        api_root = self._setting("COO_TELEGRAM__API_BASE_URL", TELEGRAM_URL).rstrip("/")
        token = ""
        while True:
            token = self.p.ask_secret("bot token" if token else "bot token (Enter to skip)", keep=token)
            if not token:
                self.p.say("  telegram: skipped")
                return
            problem = telegram_token_problem(token)
            if problem:
                self.p.say(problem)
                token = ""
                continue
            outcome = await check_telegram(self._client, api_root, token)
            self._report(outcome, "telegram")
            decision = "save" if outcome.ok else self.p.after_failure()
            if decision == "skip":
                return
            if decision == "save":
                break
        self.values["COO_TELEGRAM__TOKEN"] = token
        if not outcome.ok:
            self.p.say(SAVED_UNCHECKED)
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
        bot_token = app_token = ""
        while True:
            bot_token = self._ask_token("bot token xoxb-...", "xoxb-", bot_token)
            app_token = self._ask_token("app-level token xapp-...", "xapp-", app_token) if bot_token else ""
            if not app_token:
                self.p.say("  slack: skipped")
                return
            outcome, team = await check_slack(self._client, api_base, bot_token, app_token)
            self._report(outcome, "slack")
            decision = "save" if outcome.ok else self.p.after_failure()
            if decision == "skip":
                return
            if decision == "save":
                break
        self.values["COO_SLACK__BOT_TOKEN"] = bot_token
        self.values["COO_SLACK__APP_TOKEN"] = app_token
        if not outcome.ok:
            self.p.say(SAVED_UNCHECKED + " Pair with /pair CODE once it runs.")
            return
        while True:
            member = self.p.ask("your Slack member ID (U...; profile -> Copy member ID; Enter to pair later)")
            if not member:
                return
            if re.fullmatch(r"[UW][A-Z0-9]+", member):
                self._operators.append(f"slack:{team}:{member}")
                return
            self.p.say("  A member ID looks like U012AB3CD.")

    def _ask_token(self, what: str, prefix: str, keep: str) -> str:
        """A token that must start with ``prefix``; asked again on its own until it does, "" skips."""
        while True:
            token = self.p.ask_secret(what if keep else f"{what} (Enter to skip)", keep=keep)
            if not token or token.startswith(prefix):
                return token
            self.p.say(f"  That one does not start with {prefix}: the {what.split(' ')[0]} token does.")

    async def email(self) -> None:
        """SMTP host, port, security, login and sender; checked by connect + EHLO (+ login)."""
        self.p.say("\nEmail: the SMTP server the COO sends your approved emails through.")
        host = security = username = password = sender = ""
        port = 0
        while True:
            host = self.p.ask("SMTP host" if host else "SMTP host (Enter to skip)", host)
            if not host:
                self.p.say("  email: skipped")
                return
            port = self._ask_port(port or 587)
            security = self._ask_security(security or ("tls" if port == 465 else "starttls"))
            username = self.p.ask("username (Enter if none)", username, clearable=True)
            password = self.p.ask_secret("password", keep=password) if username else ""
            sender = self._ask_sender(sender or (username if "@" in username else ""))
            outcome = await check_smtp(host, port, security, username or None, password or None)
            self._report(outcome, "email")
            decision = "save" if outcome.ok else self.p.after_failure()
            if decision == "skip":
                return
            if decision == "save":
                break
        if not outcome.ok:
            self.p.say(SAVED_UNCHECKED)
        for name in ("COO_SMTP__USERNAME", "COO_SMTP__PASSWORD"):
            self.values.pop(name, None)
        self.values.update({"COO_SMTP__HOST": host, "COO_SMTP__PORT": str(port), "COO_SMTP__SECURITY": security})
        self.values["COO_SMTP__FROM_ADDR"] = sender
        if username:
            self.values["COO_SMTP__USERNAME"] = username
            self.values["COO_SMTP__PASSWORD"] = password

    def _ask_port(self, default: int) -> int:
        while True:
            text = self.p.ask("port", str(default))
            if text.isdigit() and 1 <= int(text) <= 65535:
                return int(text)
            self.p.say("  The port is a number from 1 to 65535.")

    def _ask_security(self, default: str) -> str:
        while True:
            security = self.p.ask("security: starttls, tls or none", default).lower()
            if security in ("starttls", "tls", "none"):
                return security
            self.p.say("  Security is starttls, tls or none.")

    def _ask_sender(self, default: str) -> str:
        while True:
            sender = self.p.ask("send as (From address)", default)
            if "@" in sender:
                return sender
            self.p.say("  The From address is an email address, like me@example.org.")

    async def stripe(self) -> None:
        """A secret or restricted key, checked with GET /v1/balance."""
        self.p.say("\nStripe (for invoices): a secret key sk_... or a restricted key rk_...")
        api_base = self._setting("COO_STRIPE__API_BASE_URL", STRIPE_URL)
        key = ""
        while True:
            key = self.p.ask_secret("Stripe key" if key else "Stripe key (Enter to skip)", keep=key)
            if not key:
                self.p.say("  stripe: skipped")
                return
            if not key.startswith(("sk_", "rk_")):
                self.p.say("  A Stripe secret key starts with sk_ (or rk_ for a restricted key).")
                key = ""
                continue
            outcome = await check_stripe(self._client, api_base, key)
            self._report(outcome, "stripe")
            decision = "save" if outcome.ok else self.p.after_failure()
            if decision == "skip":
                return
            if decision == "save":
                break
        if not outcome.ok:
            self.p.say(SAVED_UNCHECKED)
        self.values["COO_STRIPE__API_KEY"] = key

    def timezone(self) -> None:
        """The operator's IANA time zone (for the digest and due dates); a near miss gets a suggestion."""
        default = self.values.get("COO_TIMEZONE") or local_timezone(self._env) or "UTC"
        while True:
            zone = self.p.ask("\nYour time zone (e.g. Europe/Lisbon)", default)
            if valid_zone(zone):
                self.values["COO_TIMEZONE"] = zone
                return
            close = zone_suggestions(zone)
            if close:
                self.p.say(
                    f"  '{zone}' is not a time zone name; did you mean {' or '.join(close)}? Enter takes {close[0]}."
                )
                default = close[0]
            else:
                self.p.say(f"  '{zone}' is not a time zone name like Europe/Lisbon or America/New_York.")


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
    prompter.say(start_hint(out, path, settings))
    return code


def start_hint(out: Path | None, path: Path, settings: Settings) -> str:
    """How to start with the file just written (``--config`` when ``coo run`` would not find it), and how
    the operator gets in: the same rule as ``coo run`` (a pairing code only where a chat could use it)."""
    found = out is None or out.absolute() == Path.cwd() / ENV_FILE_NAME
    start = "`coo run`" if found else f"`coo --config {path} run`"
    if settings.operator_ids:
        access = ""
    elif settings.telegram.configured or settings.slack.configured:
        access = "; it prints a one-time pairing code: send /pair CODE to your bot to become its operator"
    else:
        access = "; with no chat platform it answers in this terminal only, so it prints no pairing code"
    return f"\nStart it with {start}{access}."
