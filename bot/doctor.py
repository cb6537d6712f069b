"""``coo doctor``: what is configured, what is reachable, what is missing."""

from __future__ import annotations

import asyncio
import os
import tempfile
from collections.abc import Awaitable
from dataclasses import dataclass

import httpx

from bot.settings import Settings, default_env_files, redact_url
from connectors.base import Deps
from connectors.catalog import build_registry
from graph.settings import Connection

_OPENAI_VARIABLES = ("OPENAI_API_KEY", "OPENAI_BASE_URL")


@dataclass(frozen=True)
class Check:
    """One line of the report. ``ok`` None means "not configured"."""

    name: str
    ok: bool | None
    detail: str

    def render(self) -> str:
        """``[ok] name: detail``."""
        mark = {True: "[ok]  ", False: "[FAIL]", None: "[--]  "}[self.ok]
        return f"{mark} {self.name}: {self.detail}"


async def _http(name: str, coro: Awaitable[httpx.Response], ok_detail: str) -> Check:
    try:
        response = await coro
    except httpx.HTTPError as exc:
        return Check(name, False, f"unreachable ({type(exc).__name__})")
    if response.status_code >= 400:
        return Check(name, False, f"answered HTTP {response.status_code}")
    return Check(name, True, ok_detail)


async def check_model(settings: Settings, client: httpx.AsyncClient) -> Check:
    """GET <base>/models with the key (or the credentials the URL held, as basic auth)."""
    llm = settings.llm
    if not llm.configured:
        return Check("model", None, "offline mode; set COO_LLM__BASE_URL and/or COO_LLM__API_KEY")
    return await _endpoint("model", llm.connection(), llm.model, client)


async def check_fallbacks(settings: Settings, client: httpx.AsyncClient) -> list[Check]:
    """Each endpoint of COO_LLM__FALLBACKS, checked like the main one."""
    entries = settings.llm.fallbacks if settings.llm.configured else []
    checks = [
        _endpoint(f"model fallback {n}", entry.connection(), entry.model, client)
        for n, entry in enumerate(entries, start=1)
    ]
    return list(await asyncio.gather(*checks))


async def _endpoint(name: str, target: Connection, model: str, client: httpx.AsyncClient) -> Check:
    detail = f"{model} at {redact_url(target.base_url)} reachable"
    return await _http(name, client.get(f"{target.base_url}/models", headers=target.auth_headers()), detail)


async def check_prices(settings: Settings) -> list[Check]:
    """The price each model's calls are counted at; a model nobody priced is flagged (it is counted high)."""
    from graph.models.fallbacks import prices_in_use
    from graph.models.notices import price_text
    from graph.spend.pricing import UNPRICED, PriceTable

    prices = PriceTable(settings.llm.prices, settings.budget.usd_rate, settings.llm.free)
    found = await asyncio.to_thread(prices_in_use, settings.llm, prices)  # reads the price catalog
    currency = settings.budget.currency
    return [
        Check("price", None if p.price.source == UNPRICED else True, price_text(p.label, p.model, p.price, currency))
        for p in found
    ]


async def check_telegram(settings: Settings, client: httpx.AsyncClient) -> Check:
    """getMe with the bot token."""
    tg = settings.telegram
    if tg.token is None:
        return Check("telegram", None, "not configured; set COO_TELEGRAM__TOKEN")
    url = f"{tg.api_base_url}/bot{tg.token.get_secret_value()}/getMe"
    mode = f"webhook {redact_url(tg.webhook_url)}" if tg.webhook_url else "long polling"
    return await _http("telegram", client.get(url), f"token accepted ({mode})")


async def check_slack(settings: Settings, client: httpx.AsyncClient) -> Check:
    """auth.test with the bot token (Slack answers 200 with ok=false on bad tokens)."""
    sl = settings.slack
    if sl.bot_token is None:
        return Check("slack", None, "not configured; set COO_SLACK__BOT_TOKEN and COO_SLACK__APP_TOKEN")
    headers = {"Authorization": f"Bearer {sl.bot_token.get_secret_value()}"}
    try:
        response = await client.post(f"{sl.api_base_url}auth.test", headers=headers)
        body = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        return Check("slack", False, f"unreachable ({type(exc).__name__})")
    if not body.get("ok"):
        return Check("slack", False, f"auth.test failed: {body.get('error', 'unknown')}")
    mode = "Socket Mode" if sl.socket_mode else f"HTTP mode on {sl.http_listen}"
    return Check("slack", True, f"bot token accepted for team {body.get('team_id', '?')} ({mode})")


async def check_connectors(settings: Settings) -> list[Check]:
    """Every connector's own check (email: EHLO and login; Stripe: the key; publish: destinations)."""
    registry = build_registry(settings, Deps(records=None, currency=settings.budget.currency))
    primary = [kind for kind in registry if kind.tool is not None or kind.command is not None]
    results = await asyncio.gather(*(kind.check() for kind in primary))
    return [Check(kind.noun, ok, detail) for kind, (ok, detail) in zip(primary, results, strict=True)]


def check_data_dir(settings: Settings) -> Check:
    """The data dir exists (or can be made) and is writable."""
    path = settings.data_dir
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)  # private business data: owner only
        with tempfile.NamedTemporaryFile(dir=path):
            pass
    except OSError as exc:
        return Check("data dir", False, f"{path} not writable ({exc.strerror})")
    return Check("data dir", True, str(path.resolve()))


async def run_doctor(settings: Settings, *, quick: bool = False) -> int:
    """Print the report; exit code 1 when something configured is not reachable.

    ``quick`` checks only what needs no network (config parsed, data dir writable): a health check.
    """
    print("\n".join(config_summary(settings)), flush=True)
    checks = [check_data_dir(settings)]
    if not quick:
        async with httpx.AsyncClient(timeout=10) as client:
            checks += await asyncio.gather(
                check_model(settings, client),
                check_telegram(settings, client),
                check_slack(settings, client),
            )
            checks += await check_fallbacks(settings, client)
        checks += await check_prices(settings)
        checks += await check_connectors(settings)
        from bot.mcp_cli import check_mcp_servers

        checks += [Check(*found) for found in await check_mcp_servers(settings)]
        checks.append(Check("access", True, access_detail(settings)))
        checks.append(Check("embeddings", True, f"{settings.embeddings.provider} provider"))
    print("\n".join(c.render() for c in checks), flush=True)
    return 1 if any(c.ok is False for c in checks) else 0


def access_detail(settings: Settings) -> str:
    """Who may use the bot, as ``coo run`` will do it: it opens pairing (and prints a code) only where a
    chat platform could redeem the code and nobody can use the bot yet."""
    if settings.operator_ids:
        return f"allow-list of {len(settings.operator_ids)}"
    if not (settings.telegram.configured or settings.slack.configured):
        return "this terminal only (no chat platform, so no pairing code; set up Telegram or Slack to pair)"
    return "pairing: `coo run` prints a one-time code at start, unless someone has paired (`coo pair` opens one)"


def config_summary(settings: Settings) -> list[str]:
    """Which config files were read and which variables each set, then the environment's (names only)."""
    from dotenv import dotenv_values

    lines = []
    for path in settings.files_read:
        names = sorted(name for name in dotenv_values(path) if name.upper().startswith("COO_"))
        lines.append(f"config file {path}: {', '.join(names) if names else 'no COO_ variables'}")
    if not settings.files_read:
        looked = " or ".join(str(path) for path in default_env_files())
        lines.append(f"config files: none (looked for {looked})")
    names = env_summary()
    lines.append("environment: " + (", ".join(names) if names else "no COO_ variables"))
    return lines


def env_summary() -> list[str]:
    """Names of the COO_ (and OPENAI_) variables set in the environment (values never shown)."""
    return sorted(name for name in os.environ if name.startswith("COO_") or name in _OPENAI_VARIABLES)
