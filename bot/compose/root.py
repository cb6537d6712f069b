"""The composition root: everything ``coo run`` builds once it polls, through constructors, in one place.

The runtime (:mod:`bot.runtime`) imports this module in a worker thread while Telegram already polls, so
its imports are the heavy ones: the model client, the graph, semantic memory and the connectors.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING

import aiosqlite

from bot.approval_ui import ApprovalUI
from bot.channels.console import ConsoleChannel
from bot.commands.budget import Controls
from bot.commands.mcp import McpCommands
from bot.commands.pipeline import open_pipeline
from bot.commands.policy import PolicyCommands
from bot.compose.chat import ChatParts, Upkeep, handlers, register_commands
from bot.compose.model import Model, build_model, open_checkpoints, open_semantic_memory
from bot.compose.work import Goals, build_actions, build_goals, open_mcp
from bot.digest import DigestService
from bot.followups import open_followups
from bot.inbox_runtime import Loop, open_inbox
from bot.logging_setup import RedactingFilter
from bot.memory_repair import MemoryRepair
from bot.messages import Channel
from bot.messenger import Messenger
from bot.notices import notify_access_changes
from bot.receivables import ReceivablesLoop, open_receivables
from bot.routines import health_check, when_on
from bot.running import ConsoleWish, Intake, Runtime
from bot.scheduler import Scheduler
from bot.secret_values import secrets_of
from bot.settings import Settings
from bot.status import status_lines
from bot.stores import Stores
from connectors.outbox import OutboxRunner
from connectors.registry import Registry
from graph.approvals.service import ApprovalService
from graph.contexts import Contexts
from graph.conversation.coordinator import Coordinator
from graph.conversation.recall import SessionRecall
from graph.conversation.record_tools import RECORD_TOOLS
from graph.conversation.tools import RECALL_TOOL, SAFE_TOOLS, ToolBox
from graph.followups.tools import FOLLOWUP_TOOLS
from graph.inbox.replies import ReplyWaits
from graph.models.llm import LLMClient
from graph.spend.pricing import PriceTable
from memory.approvals import OutboxRow
from memory.checkpoints import OneTripSqliteSaver, prune_checkpoints
from memory.db import Database
from memory.liveness import Liveness
from memory.mail import MailStore
from memory.mail_replies import MailReplies
from memory.semantic.ingest import Ingestor
from memory.traces import TraceRecorder, TraceStore

if TYPE_CHECKING:  # the web console is imported only when it is enabled
    from bot.web.server import WebConsole
    from memory.semantic.api import Memory

log = logging.getLogger(__name__)


async def build(
    settings: Settings,
    stack: AsyncExitStack,
    intake: Intake,
    console: ConsoleWish,
    clock: Callable[[], float],
    today: Callable[[], datetime],
) -> tuple[Runtime, PriceTable]:
    """Everything after the intake, part by part: the model client, semantic memory, actions and cards, the
    coordinator, goals, the features' commands and loops, the handlers, the channels."""
    stores, messenger = intake.stores, intake.messenger
    controls = Controls(paused=bool(await stores.control.get("paused")))
    saver, checkpoints = await open_checkpoints(settings, stack)
    model = build_model(settings, stores, stack, messenger, controls, clock)
    memory = await open_semantic_memory(settings, stack, model, stores.ledger)
    mail = await _mail(stores.db)
    mcp = await open_mcp(settings, stores, stack)
    plans, registry = build_actions(settings, stores, model.llm, mail, mcp)
    stack.push_async_callback(registry.close)
    approvals = ApprovalService(
        stores.approvals, stores.db, registry, settings.approvals, intake.guard.operator_ids, stores.control
    )
    contexts = Contexts(
        stores.db, settings.timezone, settings.budget.currency, stores.records, stores.profile, memory,
        settings.memory.scope, clock=today,
    )  # fmt: skip
    coordinator = _coordinator(settings, model.llm, saver, contexts, approvals, registry, intake, stack)
    cards = _cards(settings, stores, approvals, coordinator, registry, contexts, messenger, controls, stack, clock)
    goals = build_goals(
        settings, stores, model.llm, plans, approvals, cards.ui, messenger, contexts, controls, cards.tasks_wakeup,
        await _trace_recorder(settings, stores.db), _reply_waits(settings, stores, mail),
    )  # fmt: skip
    policy = PolicyCommands(stores.db, stores.control, settings.approvals, messenger)
    mcp_cmds = McpCommands(mcp.hub if mcp else None, mcp, stores.control, messenger)
    upkeep = _upkeep(settings, stores, memory, intake, stack)
    web = await _web(settings, stores, approvals, cards.ui, goals, intake)
    features = await _features(
        settings, stores, stack, intake, approvals, cards.ui, controls, goals, model, registry, mail, memory, today
    )
    parts = ChatParts(model.budgets, policy, goals.commands, mcp_cmds, features.receivables)
    status: list[Runtime] = []  # /status reads the runtime built below
    register_commands(
        intake.commands, settings, stores, approvals, cards.ui, features.digest, memory, upkeep, contexts.proposal,
        parts, status=lambda: status_lines(status[0]),
    )  # fmt: skip
    intake.dispatcher.bind(handlers(coordinator, cards.ui, stores, parts, upkeep, settings))
    channels, terminal = _channels(settings, intake, console)
    runtime = Runtime(
        settings, stores.db, stores.ledger, messenger, intake.dispatcher, coordinator, intake.guard, stores.operators,
        intake.commands, intake.pairing_code, approvals, cards.ui, cards.runner, stores.control, controls,
        features.digest, features.scheduler, goals=goals.service, task_runner=goals.runner, tasks=stores.tasks,
        channels=channels, console=terminal, memory=memory, ingestor=upkeep.ingestor, memory_repair=upkeep.repair,
        loops=features.loops, web=web, receivables=features.receivables,
    )  # fmt: skip
    status.append(runtime)
    _schedule(runtime, checkpoints)
    return runtime, model.prices


@dataclass(frozen=True)
class _Cards:
    """Cards shown and pressed, and the outbox that executes what they approve."""

    ui: ApprovalUI
    runner: OutboxRunner
    tasks_wakeup: asyncio.Event
    """Set when an action's outcome can start work at once: an approved plan's tasks, a task waiting on its card."""


@dataclass(frozen=True)
class _Features:
    """The features' parts with loops or digest sections: pipeline, receivables, follow-ups, the inbox."""

    digest: DigestService
    scheduler: Scheduler
    receivables: ReceivablesLoop | None
    loops: list[Loop]


async def _mail(db: Database) -> MailStore:
    mail = MailStore(db)
    await mail.setup()
    return mail


def _coordinator(
    settings: Settings,
    llm: LLMClient,
    saver: OneTripSqliteSaver,
    contexts: Contexts,
    approvals: ApprovalService,
    registry: Registry,
    intake: Intake,
    stack: AsyncExitStack,
) -> Coordinator:
    """The conversation: the graph, its tools (the registry's reads too), and recall that yields to replies."""
    coordinator = Coordinator(
        llm,
        saver,
        settings.llm,
        contexts,
        approvals=approvals,
        recall=SessionRecall(contexts.db, contexts.memory, contexts.scope, yield_to=intake.dispatcher.quiet),
        tools=ToolBox((*SAFE_TOOLS, RECALL_TOOL, *RECORD_TOOLS, *FOLLOWUP_TOOLS), reads=registry.read_tools),
    )
    stack.push_async_callback(coordinator.aclose)  # before memory closes (the stack unwinds in reverse)
    return coordinator


def _cards(
    settings: Settings,
    stores: Stores,
    approvals: ApprovalService,
    coordinator: Coordinator,
    registry: Registry,
    contexts: Contexts,
    messenger: Messenger,
    controls: Controls,
    stack: AsyncExitStack,
    clock: Callable[[], float],
) -> _Cards:
    """The approval UI and the outbox runner: an outcome is shown on its card, then the task runner looks."""
    wakeup = asyncio.Event()
    tasks_wakeup = asyncio.Event()
    ui = ApprovalUI(approvals, coordinator.resume, messenger, wakeup.set, contexts.proposal)
    runner = OutboxRunner(
        stores.approvals,
        stores.db,
        registry,
        settings.outbox,
        on_outcome=partial(_reported, ui=ui, then=tasks_wakeup.set),
        liveness=stack.enter_context(Liveness(settings.data_dir / "procs")),
        is_paused=lambda: controls.paused,
        wakeup=wakeup,
        clock=clock,
    )
    return _Cards(ui, runner, tasks_wakeup)


def _reply_waits(settings: Settings, stores: Stores, mail: MailStore) -> ReplyWaits | None:
    """With an inbox to read, a goal's outreach waits for the answers to its emails (graph/inbox/replies.py)."""
    if settings.imap.configured and settings.followups.reply_wait_days > 0:
        return ReplyWaits(stores.db, stores.tasks, MailReplies(stores.db, mail), settings.followups.reply_wait_days)
    return None


def _upkeep(settings: Settings, stores: Stores, memory: Memory | None, intake: Intake, stack: AsyncExitStack) -> Upkeep:
    """Semantic memory's ingestion and repair, both yielding to replies (none without semantic memory)."""
    if memory is None:
        return Upkeep(None, None)
    memory_settings = settings.memory
    ingestor = Ingestor(
        memory, memory_settings.ingest_batch, memory_settings.ingest_interval_s, yield_to=intake.dispatcher.quiet
    )
    repair = MemoryRepair(memory, stores.db, stores.notes, memory_settings.scope, settings.timezone)
    stack.push_async_callback(repair.aclose)
    return Upkeep(ingestor, repair)


async def _web(
    settings: Settings, stores: Stores, approvals: ApprovalService, ui: ApprovalUI, goals: Goals, intake: Intake
) -> WebConsole | None:
    """The web console, when enabled (its channel attached, /web registered)."""
    if not settings.web.enabled:
        return None
    from bot.web.wiring import WebParts, build_web

    parts = WebParts(
        stores.db, stores.ledger, stores.control, stores.tasks, approvals, ui, goals.service, intake.guard,
        goals.runner.wake,
    )  # fmt: skip
    return await build_web(settings, parts, intake.messenger, intake.commands)


async def _features(
    settings: Settings,
    stores: Stores,
    stack: AsyncExitStack,
    intake: Intake,
    approvals: ApprovalService,
    ui: ApprovalUI,
    controls: Controls,
    goals: Goals,
    model: Model,
    registry: Registry,
    mail: MailStore,
    memory: Memory | None,
    today: Callable[[], datetime],
) -> _Features:
    """The pipeline, receivables, follow-ups and the inbox (each registers its commands), and the digest of all."""
    db, control, messenger, commands = stores.db, stores.control, intake.messenger, intake.commands
    paused = lambda: controls.paused  # noqa: E731
    pipeline = await open_pipeline(db, stores.records, settings.timezone, commands)
    receivables = await open_receivables(
        settings, db, stores.records, approvals, ui, control, messenger, paused, stack,
        profile=stores.profile, pipeline=pipeline, goals=goals.service,
    )  # fmt: skip
    followups = await open_followups(
        settings.followups, settings.timezone, db, stores.records, approvals, ui, control, messenger, commands, paused,
        today,
    )  # fmt: skip
    digest = DigestService(
        db, stores.approvals, control, model.budgets, model.llm, ui, messenger.send, stores.records, registry,
        goals.service, mail,
        sections=(*((receivables.digest_lines,) if receivables else ()), followups.digest_lines, pipeline.digest_lines),
        clock=today,
    )  # fmt: skip
    scheduler = Scheduler(control, db, settings.timezone, is_paused=paused)
    loops = await open_inbox(
        imap=settings.imap, quiet_hours=settings.quiet_hours, zone=settings.timezone,
        cheap_model=settings.llm.cheap_model, memory=memory, scope=settings.memory.scope, mail=mail,
        records=stores.records, llm=model.llm, approvals=approvals, ui=ui, control=control,
        send=messenger.send_quietly, commands=commands, scheduler=scheduler, on_mail=followups.wake,
    )  # fmt: skip
    loops.append((followups.run_forever, "followups"))
    return _Features(digest, scheduler, receivables, loops)


def _schedule(rt: Runtime, checkpoints: aiosqlite.Connection) -> None:
    scheduler = rt.scheduler
    scheduler.daily("digest", rt.settings.digest_time, rt.digest.scheduled)
    scheduler.every("checkpoint-pruning", 24 * 3600, lambda: _prune(checkpoints))
    scheduler.every("operator-notices", 10, partial(_notify_access, rt))
    scheduler.weekly(
        "health-check",
        0,
        rt.settings.digest_time,
        when_on(rt.control, "health", health_check(rt.settings, rt.control, rt.db)),
    )
    if rt.memory_repair is not None:
        scheduler.every("memory-maintenance", 6 * 3600, when_on(rt.control, "memory", _maintain(rt.memory_repair)))


async def _trace_recorder(settings: Settings, db: Database) -> TraceRecorder:
    """Where task attempts' traces go, with every configured secret redacted (I4) as in the logs."""
    store = TraceStore(db)
    await store.setup()
    return TraceRecorder(store, RedactingFilter(secrets_of(settings)).redact)


def _channels(settings: Settings, intake: Intake, console: ConsoleWish) -> tuple[list[Channel], ConsoleChannel | None]:
    """The channels to run: those the intake started, the configured platforms, and the terminal if wanted."""
    dispatcher, menu = intake.dispatcher, intake.commands.menu()
    channels: list[Channel] = list(intake.started)
    if settings.telegram.configured and not any(c.name == "telegram" for c in channels):
        from bot.channels.telegram import TelegramChannel

        channels.append(TelegramChannel(settings.telegram, dispatcher.accept, menu, on_batch=dispatcher.accept_many))
    if settings.slack.configured:
        from bot.channels.slack import SlackChannel

        channels.append(SlackChannel(settings.slack, dispatcher.accept))
    terminal = None
    if console.wanted or (console.wanted is None and not channels):
        terminal = ConsoleChannel(dispatcher.handle, console.stdin, console.stdout)
        channels.append(terminal)
    return channels, terminal


async def _reported(row: OutboxRow, ui: ApprovalUI, then: Callable[[], None]) -> None:
    """Show an action's outcome on its card, then let the task runner look (whatever the card did)."""
    try:
        await ui.on_outcome(row)
    finally:
        then()


async def _notify_access(rt: Runtime) -> None:
    await notify_access_changes(rt.db, rt.control, rt.messenger)


async def _prune(conn: aiosqlite.Connection) -> None:
    removed = await prune_checkpoints(conn)
    log.info("checkpoint pruning removed %d row(s)", removed)


def _maintain(repair: MemoryRepair) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        fed_back = await repair.run()
        log.info("memory maintenance done%s", f"; {fed_back} note(s) fed back after a rebuild" if fed_back else "")

    return run
