"""Building the console from the runtime's services, the /web command and ``coo web-login``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bot.access import CONSOLE_OPERATOR, AccessGuard
from bot.approval_ui import ApprovalUI
from bot.commands.router import CommandRouter
from bot.messages import InboundMessage
from bot.messenger import Messenger
from bot.settings import Settings
from bot.web.channel import WebChannel
from bot.web.server import LINK_TTL, WebConsole
from bot.web.services import Services
from bot.web.views import Views
from graph.approvals.service import ApprovalService
from graph.errors import UserFacingError
from graph.goals.service import GoalService
from memory.control import ControlStore
from memory.db import Database, open_database
from memory.ledger import CostLedger
from memory.tasks import TaskLedger
from memory.web_sessions import WebAuthStore
from prompts.messages import WEB_LINK, WEB_PRIVATE_ONLY


@dataclass(frozen=True)
class WebParts:
    """What the console reads and calls, all built by the runtime."""

    db: Database
    ledger: CostLedger
    control: ControlStore
    tasks: TaskLedger
    approvals: ApprovalService
    ui: ApprovalUI
    goals: GoalService
    guard: AccessGuard
    wake_tasks: Callable[[], None]


async def build_web(settings: Settings, parts: WebParts, messenger: Messenger, commands: CommandRouter) -> WebConsole:
    """The console (not listening yet), its channel attached to the messenger and /web registered."""
    auth = WebAuthStore(parts.db)
    await auth.setup()
    channel = WebChannel()
    messenger.attach(channel)
    views = Views(
        parts.db,
        parts.approvals,
        parts.ledger,
        parts.control,
        parts.tasks,
        settings.timezone,
        settings.budget.currency,
    )
    console = WebConsole(
        settings.web, Services(views, parts.ui, parts.goals, parts.guard, auth, channel, parts.wake_tasks)
    )
    register_web_command(commands, console)
    return console


def register_web_command(router: CommandRouter, console: WebConsole) -> None:
    """``/web``: a one-time link to the console, only in the operator's private chat (kept out of the log)."""

    async def web_link(inbound: InboundMessage, _: str) -> str:
        if not inbound.in_private_chat:
            raise UserFacingError(WEB_PRIVATE_ONLY)
        return WEB_LINK.format(url=await console.new_link(inbound.sender, inbound.channel))

    router.add("web", "A one-time link to the web console", web_link, private=True)


async def manage_sessions(settings: Settings, revoke: str | None) -> list[str]:
    """``coo web-sessions [--revoke ID]``: the live console sessions, or end one at once."""
    async with open_database(settings.data_dir, settings.sqlite.busy_timeout_ms) as db:
        auth = WebAuthStore(db)
        await auth.setup()
        if revoke is not None:
            ended = await auth.revoke_id(revoke.strip().lower(), "cli")
            return [f"ended {ended} session(s)" if ended else f"no live session {revoke} (see coo web-sessions)"]
        lines = [
            f"{s.id}  {s.operator}  since {s.created_at:%Y-%m-%d %H:%M} UTC, until {s.expires_at:%Y-%m-%d %H:%M} UTC"
            for s in await auth.live()
        ]
        return lines or ["no live web console sessions"]


async def login_link(settings: Settings) -> str:
    """``coo web-login``: a one-time link for the operator at this machine."""
    async with open_database(settings.data_dir, settings.sqlite.busy_timeout_ms) as db:
        auth = WebAuthStore(db)
        await auth.setup()
        token = await auth.create_link(CONSOLE_OPERATOR, LINK_TTL, "cli")
    return f"{settings.web.base_url}/login/{token}"
