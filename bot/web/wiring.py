"""Building the console from the runtime's services, the /web command and ``coo web-login``."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bot.access import AccessGuard
from bot.approval_ui import ApprovalUI
from bot.commands.router import CommandRouter
from bot.messages import InboundMessage
from bot.messenger import Messenger
from bot.settings import Settings
from bot.web.channel import WebChannel
from bot.web.server import WebConsole
from bot.web.services import Services
from bot.web.views import Views
from graph.approvals.service import ApprovalService
from graph.errors import UserFacingError
from graph.goals.service import GoalService
from memory.control import ControlStore
from memory.db import Database
from memory.ledger import CostLedger
from memory.notes import NoteLedger
from memory.records import Records
from memory.tasks import TaskLedger
from memory.traces import TraceStore
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
    traces = TraceStore(parts.db)
    await traces.setup()
    views = Views(
        parts.db,
        parts.approvals,
        parts.ledger,
        parts.control,
        parts.tasks,
        settings.timezone,
        settings.budget.currency,
        traces,
    )
    console = WebConsole(
        settings.web,
        Services(
            views,
            parts.ui,
            parts.goals,
            parts.guard,
            auth,
            channel,
            parts.wake_tasks,
            commands=commands,
            records=Records(parts.db),
            notes=NoteLedger(parts.db),
        ),
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
