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
from connectors.base import Deps
from connectors.catalog import build_registry
from connectors.registry import Registry
from graph.approvals.service import ApprovalService
from graph.contexts import Contexts
from graph.conversation.record_tools import GOAL_TOOLS, RECORD_TOOLS
from graph.conversation.tools import RECALL_TOOL, SAFE_TOOLS, ToolBox
from graph.goals.plan_kind import PlanKind
from graph.goals.planner import Planner
from graph.goals.runner import SkillExecutor, TaskRunner
from graph.goals.service import GoalService
from graph.goals.skill_graph import FINISH
from graph.goals.skills import all_skills, check_skills, usable_skills
from graph.inbox.replies import ReplyWaits
from graph.models.llm import LLMClient
from graph.pipeline.service import pipeline_summary
from memory.goal_evidence import EvidenceStore
from memory.mail import MailStore
from memory.traces import TraceRecorder

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
    contexts: Contexts,
    controls: Controls,
    wakeup: asyncio.Event,
    recorder: TraceRecorder,
    replies: ReplyWaits | None = None,
) -> Goals:
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
        evidence=EvidenceStore(stores.db),
        replies=replies,
        clock=contexts.clock,
    )

    tools = ToolBox((*SAFE_TOOLS, RECALL_TOOL, *RECORD_TOOLS, *GOAL_TOOLS), reads=approvals.registry.read_tools)
    check_skills(all_skills(), {*tools.names(), *approvals.registry.tool_names(), FINISH})
    executor = SkillExecutor(
        all_skills(), llm, tools, approvals, contexts, settings.tasks, settings.llm.cheap_model, recorder, replies
    )
    runner = TaskRunner(
        stores.tasks, service, executor, approvals, settings.tasks, is_paused=lambda: controls.paused, wakeup=wakeup,
        replies=replies,
    )  # fmt: skip
    commands = GoalCommands(service, plans, approvals, ui, messenger, contexts.proposal, runner.wake)
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
    pipeline = partial(pipeline_summary, stores.db, stores.records, settings.timezone)
    planner = Planner(llm, descriptions, settings.timezone, settings.budget.currency, context=pipeline)
    plans = PlanKind(stores.tasks, planner)
    return plans, Registry([*connectors, plans], families=(mcp,) if mcp else ())
