"""Actions, goals and MCP: the registry of action kinds, the planner and the task runner, built once ``coo run``
polls (see :mod:`bot.compose.root`)."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

from bot.approval_ui import ApprovalUI
from bot.commands.budget import Controls
from bot.commands.goals import ChatNotifier, GoalCommands
from bot.messenger import Messenger
from bot.settings import Settings
from bot.stores import Stores
from connectors.base import Context, Deps
from connectors.catalog import build_registry
from connectors.registry import Registry
from graph.approvals.service import ApprovalService
from graph.conversation.record_tools import GOAL_TOOLS, RECORD_TOOLS
from graph.conversation.tools import RECALL_TOOL, SAFE_TOOLS, ToolBox, ToolContext
from graph.goals.plan_kind import PlanKind
from graph.goals.planner import Planner
from graph.goals.runner import SkillExecutor, TaskRunner
from graph.goals.service import GoalService
from graph.goals.skills import all_skills, usable_skills
from graph.models.llm import LLMClient
from memory.db import utcnow
from memory.mail import MailStore
from memory.records import Records
from memory.semantic.api import Memory

if TYPE_CHECKING:
    from connectors.mcp.family import McpFamily


@dataclass(frozen=True)
class Goals:
    """Goals, their runner and their commands."""

    service: GoalService
    runner: TaskRunner
    commands: GoalCommands


def build_goals(
    settings: Settings,
    stores: Stores,
    llm: LLMClient,
    plans: PlanKind,
    approvals: ApprovalService,
    ui: ApprovalUI,
    messenger: Messenger,
    memory: Memory | None,
    controls: Controls,
    wakeup: asyncio.Event,
) -> Goals:
    context = partial(proposal_context, stores.records, settings.budget.currency)
    service = GoalService(
        stores.tasks,
        approvals,
        llm,
        stores.ledger,
        stores.control,
        ChatNotifier(messenger, ui),
        settings.tasks,
        settings.timezone,
        currency=settings.budget.currency,
        skills=plans.skills,
    )

    def tool_context(session: str, goal_id: str) -> ToolContext:
        return ToolContext(
            db=stores.db,
            session=session,
            timezone=settings.timezone,
            records=stores.records,
            profile=stores.profile,
            memory=memory,
            scope=settings.memory.scope,
            goal_id=goal_id,
        )

    tools = ToolBox((*SAFE_TOOLS, RECALL_TOOL, *RECORD_TOOLS, *GOAL_TOOLS), reads=approvals.registry.read_tools)
    executor = SkillExecutor(
        all_skills(), llm, tools, approvals, tool_context, context, settings.tasks, settings.llm.cheap_model
    )
    runner = TaskRunner(
        stores.tasks, service, executor, approvals, settings.tasks, is_paused=lambda: controls.paused, wakeup=wakeup
    )
    commands = GoalCommands(service, plans, approvals, ui, messenger, context, runner.wake)
    return Goals(service, runner, commands)


async def open_mcp(settings: Settings, stores: Stores, stack: AsyncExitStack) -> McpFamily | None:
    """The operator's MCP servers, connecting in the background (none configured: None, and no SDK import)."""
    if not settings.mcp.servers:
        return None
    from connectors.mcp.family import McpFamily
    from connectors.mcp.hub import McpHub
    from memory.mcp_trust import McpTrustStore

    trust = McpTrustStore(stores.db)
    await trust.setup()
    hub = McpHub(settings.mcp)
    family = McpFamily(hub, trust, settings.approvals.forbidden)
    await family.load()
    stack.push_async_callback(hub.close)
    hub.start()
    return family


def build_actions(
    settings: Settings, stores: Stores, llm: LLMClient, mail: MailStore, mcp: McpFamily | None
) -> tuple[PlanKind, Registry]:
    """The connectors' action kinds plus plans, whose planner is offered only skills that can act; MCP tools
    as a family of kinds declared at run time."""
    deps = Deps(records=stores.records, currency=settings.budget.currency, mail_store=mail)
    connectors = build_registry(settings, deps)
    unconfigured = {kind.tool.name for kind in connectors if kind.tool and not kind.configured}
    skills = usable_skills(all_skills(), unconfigured)
    descriptions = {name: skill.description for name, skill in skills.items()}
    planner = Planner(llm, descriptions, settings.timezone, settings.budget.currency)
    plans = PlanKind(stores.tasks, planner)
    return plans, Registry([*connectors, plans], families=(mcp,) if mcp else ())


def proposal_context(records: Records, currency: str) -> Context:
    """What a slash command or an edit may use to build an action: contacts, the currency, today."""
    return Context(records=records, currency=currency, today=utcnow().date())
