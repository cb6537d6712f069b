"""Built-in routines the operator can switch off with /routines: a weekly health check of everything
configured (what ``coo doctor`` checks), so a revoked token or a dead SMTP login shows up in the digest
before it bites, and the memory maintenance (re-index, compaction)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import httpx

from bot.commands.router import CommandRouter
from bot.doctor import check_connectors, check_model, check_slack, check_telegram
from bot.messages import InboundMessage
from bot.settings import Settings
from graph.errors import UserFacingError
from memory.control import ControlStore
from memory.db import Database, utcnow

log = logging.getLogger(__name__)

ROUTINES: dict[str, str] = {
    "health": "weekly check of the model, chat platforms and connectors (Mondays, results in the digest)",
    "memory": "memory maintenance every 6 hours (index refresh, compaction)",
}
HEALTH_KEY = "health.last"
USAGE = "Usage: /routines | /routines off <name> | /routines on <name>  (names: " + ", ".join(ROUTINES) + ")"


def switch_key(name: str) -> str:
    """Where a routine's off switch lives."""
    return f"routine.off:{name}"


def when_on(control: ControlStore, name: str, run: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
    """``run``, skipped while the operator switched the routine off."""

    async def maybe() -> None:
        if await control.get(switch_key(name)):
            log.info("routine %s is switched off; skipped", name)
            return
        await run()

    return maybe


def health_check(settings: Settings, control: ControlStore, db: Database) -> Callable[[], Awaitable[None]]:
    """The weekly check: what fails is kept for the digest."""

    async def run() -> None:
        async with httpx.AsyncClient(timeout=10) as client:
            checks = [
                await check_model(settings, client),
                await check_telegram(settings, client),
                await check_slack(settings, client),
            ]
        checks += await check_connectors(settings)
        failed = [f"{c.name}: {c.detail}" for c in checks if c.ok is False]
        await control.put(HEALTH_KEY, {"at": utcnow().isoformat(), "failed": failed})
        await db.append_event("routine.health", "coo", {"failed": len(failed)})

    return run


def register_routines(router: CommandRouter, control: ControlStore, db: Database) -> None:
    """Add /routines."""

    async def routines(inbound: InboundMessage, args: str) -> str:
        words = args.lower().split()
        if words:
            if len(words) != 2 or words[0] not in ("on", "off") or words[1] not in ROUTINES:
                raise UserFacingError(USAGE)
            if words[0] == "off":
                await control.put(switch_key(words[1]), True)
            else:
                await control.delete(switch_key(words[1]))
            await db.append_event("routine." + words[0], inbound.sender, {"routine": words[1]})
        lines = ["Routines:"]
        for name, what in ROUTINES.items():
            state = "off" if await control.get(switch_key(name)) else "on"
            lines.append(f"- {name} ({state}): {what}")
        return "\n".join(lines)

    router.add("routines", "Built-in routines: /routines off health", routines)
