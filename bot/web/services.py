"""What the console calls: the same services as the chat commands."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bot.access import AccessGuard
from bot.approval_ui import ApprovalUI
from bot.web.channel import WebChannel
from bot.web.views import Views
from graph.goals.service import GoalService
from memory.web_sessions import WebAuthStore


@dataclass(frozen=True)
class Services:
    """The pages' reads, the approval UI, goals, the access guard, sign-ins and the console's channel."""

    views: Views
    ui: ApprovalUI
    goals: GoalService
    guard: AccessGuard
    auth: WebAuthStore
    channel: WebChannel
    wake_tasks: Callable[[], None]
