"""The checks ``coo onboard`` makes: each one real request (nothing is written), and the format checks
that need no network (a Telegram token's shape, a time zone's name, with suggestions)."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import aiosmtplib
import httpx

from bot.settings import redact_url

PING = "Reply with the single word OK."
# What @BotFather hands out: the bot's id, a colon, then (today) 35 characters of this alphabet.
TELEGRAM_TOKEN = re.compile(r"\d{1,20}:[A-Za-z0-9_-]{30,64}")
TELEGRAM_TOKEN_HINT = (
    "  That is not a bot token: @BotFather gives one like 123456789:AAF1x..., digits, a colon, then about "
    "35 letters, digits, - or _."
)


@dataclass(frozen=True)
class Outcome:
    """The result of one check: ``detail`` is safe to print (never holds a secret)."""

    ok: bool
    detail: str


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
        if name and valid_zone(name):
            return name
    return None


def valid_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


def telegram_token_problem(token: str) -> str | None:
    """One line saying why ``token`` cannot be a Telegram bot token (never repeating it), or None."""
    return None if TELEGRAM_TOKEN.fullmatch(token) else TELEGRAM_TOKEN_HINT


def zone_suggestions(name: str, limit: int = 3) -> list[str]:
    """Zone names close to ``name``: the same name in other case first, then close spellings of the whole
    name or of its city (``lisbon``, ``new york``)."""
    zones = available_timezones()
    by_lower = {zone.lower(): zone for zone in zones}
    typed = name.strip().lower().replace(" ", "_")
    if typed in by_lower:
        return [by_lower[typed]]
    by_city = {zone.rsplit("/", 1)[1].lower(): zone for zone in sorted(zones) if "/" in zone}
    found = [by_lower[z] for z in difflib.get_close_matches(typed, by_lower, n=limit, cutoff=0.75)]
    found += [by_city[c] for c in difflib.get_close_matches(typed.rsplit("/", 1)[-1], by_city, n=limit, cutoff=0.75)]
    return list(dict.fromkeys(found))[:limit]
