"""The runtime: one context manager that opens and closes every resource, in one asyncio loop."""

from __future__ import annotations

import asyncio
import gc
import importlib
import logging
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, TextIO, cast

import aiosqlite

from bot.access import AccessGuard
from bot.channels.console import ConsoleChannel, HeldOutput
from bot.commands.router import CommandRouter
from bot.dispatcher import Dispatcher, Handlers
from bot.lifecycle import Background, Grace, StopSignals, close_channel, in_daemon_thread, wind_down
from bot.messages import Channel, InboundMessage, OutboundMessage
from bot.messenger import Messenger
from bot.settings import Settings, redact_url
from memory.approvals import ApprovalStore
from memory.control import ControlStore
from memory.db import Database, connect_sqlite, open_database, utcnow
from memory.ledger import CostLedger
from memory.liveness import Liveness
from memory.mail import MailStore
from memory.notes import NoteLedger
from memory.operators import OperatorStore
from memory.profile import ProfileStore
from memory.records import Records
from memory.tasks import TaskLedger
from memory.traces import TraceRecorder, TraceStore

if TYPE_CHECKING:
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    from bot.approval_ui import ApprovalUI
    from bot.channels.telegram import TelegramChannel
    from bot.commands.budget import BudgetCommands, Controls
    from bot.commands.goals import GoalCommands
    from bot.commands.policy import PolicyCommands
    from bot.digest import DigestService
    from bot.inbox_runtime import Loop
    from bot.memory_repair import MemoryRepair
    from bot.receivables import ReceivablesLoop
    from bot.scheduler import Scheduler
    from bot.web.server import WebConsole
    from connectors.base import Context
    from connectors.mcp.family import McpFamily
    from connectors.outbox import OutboxRunner
    from connectors.registry import Registry
    from graph.approvals.service import ApprovalService
    from graph.conversation.coordinator import Coordinator
    from graph.goals.plan_kind import PlanKind
    from graph.goals.runner import TaskRunner
    from graph.goals.service import GoalService
    from graph.models.llm import LLMClient
    from graph.spend.budget import BudgetAlert, BudgetGuard
    from graph.spend.pricing import PriceTable
    from memory.approvals import OutboxRow
    from memory.semantic.api import Memory
    from memory.semantic.embedder import Embedder, EmbeddingMeter
    from memory.semantic.ingest import Ingestor

HEAVY_MODULES = (
    "openai",
    "langgraph.graph",
    "memory.checkpoints",
    "memory.semantic.api",
    "memory.semantic.ingest",
    "graph.conversation.coordinator",
    "graph.goals.runner",
    "graph.goals.service",
    "graph.goals.planner",
    "graph.goals.plan_kind",
    "graph.goals.skills",
    "connectors.catalog",
    "connectors.outbox",
    "bot.approval_ui",
    "bot.commands.approvals",
    "bot.commands.budget",
    "bot.commands.core",
    "bot.digest",
    "bot.commands.goals",
    "bot.commands.memory",
    "bot.notices",
    "bot.commands.policy",
    "bot.routines",
    "bot.scheduler",
    "bot.receivables",
)
"""What ``coo run`` imports only once it polls: the model client, the graph, semantic memory, connectors."""

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """Everything that is open while solo-coo runs."""

    settings: Settings
    db: Database
    ledger: CostLedger
    messenger: Messenger
    dispatcher: Dispatcher
    coordinator: Coordinator
    guard: AccessGuard
    operators: OperatorStore
    commands: CommandRouter
    pairing_code: str | None
    approvals: ApprovalService
    approval_ui: ApprovalUI
    runner: OutboxRunner
    control: ControlStore
    controls: Controls
    digest: DigestService
    scheduler: Scheduler
    goals: GoalService
    task_runner: TaskRunner
    tasks: TaskLedger
    channels: list[Channel] = field(default_factory=list)
    console: ConsoleChannel | None = None
    memory: Memory | None = None
    ingestor: Ingestor | None = None
    memory_repair: MemoryRepair | None = None
    loops: list[Loop] = field(default_factory=list)
    """More background loops of features (the inbox's intake and triage), started with the others."""
    web: WebConsole | None = None
    receivables: ReceivablesLoop | None = None


@dataclass(frozen=True)
class _Console:
    """Whether to open the terminal channel (None: only without a platform channel), and its streams."""

    wanted: bool | None
    stdin: TextIO | None
    stdout: TextIO | None


@dataclass(frozen=True)
class _Stores:
    """The durable state, opened first."""

    db: Database
    approvals: ApprovalStore
    control: ControlStore
    ledger: CostLedger
    operators: OperatorStore
    profile: ProfileStore
    records: Records
    notes: NoteLedger
    tasks: TaskLedger


async def _open_stores(settings: Settings, stack: AsyncExitStack) -> _Stores:
    data_dir = settings.data_dir
    timeout = settings.sqlite.busy_timeout_ms
    db = await stack.enter_async_context(open_database(data_dir, timeout))
    # The approval store owns its own connection: its transactions must not share one.
    store_conn = await connect_sqlite(data_dir / "coo.sqlite", timeout)
    stack.push_async_callback(store_conn.close)
    approvals = ApprovalStore(store_conn)
    await approvals.setup(db.install)
    stores = _Stores(
        db,
        approvals,
        ControlStore(db),
        CostLedger(db),
        OperatorStore(db),
        ProfileStore(db),
        Records(db),
        NoteLedger(db),
        TaskLedger(db),
    )
    for part in (stores.control, stores.operators, stores.profile, stores.records, stores.notes, stores.tasks):
        await part.setup()
    recovered = await stores.ledger.setup()
    if recovered:
        log.warning("%d model call(s) were in flight when the last run stopped; counted at their estimate", recovered)
    return stores


async def _open_checkpoints(settings: Settings, stack: AsyncExitStack) -> tuple[AsyncSqliteSaver, aiosqlite.Connection]:
    """The checkpoint saver on its own connection."""
    from memory.checkpoints import OneTripSqliteSaver

    conn = await connect_sqlite(settings.data_dir / "checkpoints.sqlite", settings.sqlite.busy_timeout_ms)
    stack.push_async_callback(conn.close)
    saver = OneTripSqliteSaver(conn)
    await saver.setup()
    return saver, conn


@dataclass(frozen=True)
class _Intake:
    """What ``coo run`` opens before anything heavy: enough to store updates (I3) and refuse strangers (I6)."""

    stores: _Stores
    guard: AccessGuard
    pairing_code: str | None
    messenger: Messenger
    commands: CommandRouter
    dispatcher: Dispatcher
    pending: list[tuple[InboundMessage, int | None]]
    started: list[Channel]
    """Channels already receiving (Telegram): their updates are stored and wait for the rest."""


async def _open_intake(settings: Settings, stack: AsyncExitStack, early: bool) -> _Intake:
    """Open the database, the access guard and the dispatcher; with ``early``, start Telegram now.

    Telegram then polls within a second of start while the model client, the graph, semantic memory
    and the connectors are imported and built; what arrives meanwhile is stored at once and handled
    once they are ready, in order, after what the last run left unfinished.
    """
    stores = await _open_stores(settings, stack)
    guard = AccessGuard(settings.operator_ids, stores.operators)
    await guard.load()
    pairing_code = await _open_pairing(settings, guard, stores.operators)
    messenger = Messenger(stores.db)
    commands = CommandRouter()
    dispatcher = Dispatcher(stores.db, guard, commands, messenger)
    pending = await dispatcher.pending()
    # If the rest fails to start, nothing could handle what was stored: stop waiting for it at once.
    stack.push_async_callback(dispatcher.drain, 0.0)
    started: list[Channel] = []
    if early and settings.telegram.configured:
        from bot.channels.telegram import TelegramChannel

        telegram = TelegramChannel(settings.telegram, dispatcher.accept, (), on_batch=dispatcher.accept_many)
        messenger.attach(telegram)
        replayed = await dispatcher.replay(pending, {telegram.name})  # ahead of anything newer
        if replayed:
            log.info("telegram: handling %d update(s) left unfinished by the last run", len(replayed))
        await telegram.start()
        stack.push_async_callback(close_channel, telegram)
        started.append(telegram)
    return _Intake(stores, guard, pairing_code, messenger, commands, dispatcher, pending, started)


def _load_heavy_parts() -> None:
    """Import what the first reply needs but polling does not (run in a worker thread: the loop stays live)."""
    for name in HEAVY_MODULES:
        importlib.import_module(name)


async def _open_pairing(settings: Settings, guard: AccessGuard, operators: OperatorStore) -> str | None:
    """A one-time code at start, only while nobody can use the bot and a chat platform could redeem it."""
    platform = settings.telegram.configured or settings.slack.configured
    if guard.has_operators or not platform:
        return None
    ttl = timedelta(seconds=settings.pairing_code_ttl_s)
    return await operators.open_pairing("start", ttl, revoke_others=True)


@dataclass(frozen=True)
class _Model:
    """The model client and what prices and caps its calls."""

    llm: LLMClient
    prices: PriceTable
    budgets: BudgetCommands
    guard: BudgetGuard


def _build_model(
    settings: Settings,
    stores: _Stores,
    stack: AsyncExitStack,
    messenger: Messenger,
    controls: Controls,
    clock: Callable[[], float],
) -> _Model:
    from bot.commands.budget import BudgetCommands
    from graph.models.llm import LLMClient
    from graph.models.notices import ModelNotices, price_lines
    from graph.spend.budget import BudgetGuard
    from graph.spend.pricing import PriceTable

    control = stores.control
    prices = PriceTable(settings.llm.prices, settings.budget.usd_rate, settings.llm.free)
    currency = settings.budget.currency
    budgets = BudgetCommands(
        stores.db,
        stores.ledger,
        control,
        currency,
        controls,
        settings.timezone,
        messenger.send,
        price_lines=partial(price_lines, settings.llm, prices, currency),
    )
    guard = BudgetGuard(
        stores.ledger,
        stores.db,
        control,
        prices,
        settings.timezone,
        settings.llm.cheap_model,
        on_alert=partial(_alert, budgets=budgets, control=control, messenger=messenger),
    )
    notices = ModelNotices(control, partial(_model_notice, control=control, messenger=messenger), currency)
    llm = LLMClient(settings.llm, stores.ledger, prices, guard, clock, notices)
    stack.push_async_callback(llm.close)
    return _Model(llm, prices, budgets, guard)


@dataclass(frozen=True)
class _Goals:
    """Goals, their runner and their commands."""

    service: GoalService
    runner: TaskRunner
    commands: GoalCommands


def _build_goals(
    settings: Settings,
    stores: _Stores,
    llm: LLMClient,
    plans: PlanKind,
    approvals: ApprovalService,
    ui: ApprovalUI,
    messenger: Messenger,
    memory: Memory | None,
    controls: Controls,
    wakeup: asyncio.Event,
    recorder: TraceRecorder,
) -> _Goals:
    from bot.commands.goals import ChatNotifier, GoalCommands
    from graph.conversation.record_tools import GOAL_TOOLS, RECORD_TOOLS
    from graph.conversation.tools import RECALL_TOOL, SAFE_TOOLS, ToolBox, ToolContext
    from graph.goals.runner import SkillExecutor, TaskRunner
    from graph.goals.service import GoalService
    from graph.goals.skills import all_skills

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
        all_skills(), llm, tools, approvals, tool_context, context, settings.tasks, settings.llm.cheap_model, recorder
    )
    runner = TaskRunner(
        stores.tasks, service, executor, approvals, settings.tasks, is_paused=lambda: controls.paused, wakeup=wakeup
    )
    commands = GoalCommands(service, plans, approvals, ui, messenger, context, runner.wake)
    return _Goals(service, runner, commands)


@asynccontextmanager
async def open_runtime(
    settings: Settings,
    *,
    console: bool | None = None,
    console_input: TextIO | None = None,
    console_output: TextIO | None = None,
    clock: Callable[[], float] = time.monotonic,
    grace: Grace | None = None,
) -> AsyncIterator[Runtime]:
    """Open the stores, model client, coordinator, goals and channels; close all on exit.

    ``console=None`` means: the console only when no platform channel is configured. ``clock`` (monotonic
    seconds) drives the circuit breakers' windows and cooldowns, so tests can step over a cooldown.
    On exit, replies and executions in flight get ``grace`` to finish (see :mod:`bot.lifecycle`).
    """
    async with AsyncExitStack() as stack:
        # A console-only run has nothing to poll: the order only matters with a platform channel.
        intake = await _open_intake(settings, stack, early=console is not True)
        await in_daemon_thread(_load_heavy_parts)
        runtime, prices = await _build(settings, stack, intake, _Console(console, console_input, console_output), clock)
        await _start(runtime, stack, prices, intake, grace or Grace())
        if runtime.web is not None:
            await runtime.web.start()
            stack.push_async_callback(runtime.web.stop)
        yield runtime


async def _build(
    settings: Settings,
    stack: AsyncExitStack,
    intake: _Intake,
    console: _Console,
    clock: Callable[[], float],
) -> tuple[Runtime, PriceTable]:
    """Everything after the intake: model client, semantic memory, graph, connectors, goals, commands."""
    from bot.approval_ui import ApprovalUI
    from bot.commands.budget import Controls
    from bot.commands.mcp import McpCommands
    from bot.commands.policy import PolicyCommands
    from bot.digest import DigestService
    from bot.inbox_runtime import open_inbox
    from bot.memory_repair import MemoryRepair
    from bot.receivables import open_receivables
    from bot.scheduler import Scheduler
    from connectors.outbox import OutboxRunner
    from graph.approvals.service import ApprovalService
    from graph.conversation.coordinator import Coordinator
    from graph.conversation.recall import SessionRecall
    from graph.conversation.record_tools import RECORD_TOOLS
    from graph.conversation.tools import RECALL_TOOL, SAFE_TOOLS, ToolBox
    from memory.semantic.ingest import Ingestor

    stores, messenger, guard = intake.stores, intake.messenger, intake.guard
    db, control = stores.db, stores.control
    controls = Controls(paused=bool(await control.get("paused")))
    saver, checkpoints = await _open_checkpoints(settings, stack)
    model = _build_model(settings, stores, stack, messenger, controls, clock)
    memory = await _open_semantic_memory(settings, stack, model, stores.ledger)
    mail = MailStore(db)
    await mail.setup()
    mcp = await _open_mcp(settings, stores, stack)
    plans, registry = _build_actions(settings, stores, model.llm, mail, mcp)
    stack.push_async_callback(registry.close)
    approvals = ApprovalService(stores.approvals, db, registry, settings.approvals, guard.operator_ids, control)
    coordinator = Coordinator(
        db,
        model.llm,
        saver,
        settings.llm,
        settings.timezone,
        approvals=approvals,
        currency=settings.budget.currency,
        records=stores.records,
        profile=stores.profile,
        memory=memory,
        scope=settings.memory.scope,
        recall=SessionRecall(db, memory, settings.memory.scope, yield_to=intake.dispatcher.quiet),
        tools=ToolBox((*SAFE_TOOLS, RECALL_TOOL, *RECORD_TOOLS), reads=registry.read_tools),
    )
    stack.push_async_callback(coordinator.aclose)  # before memory closes (the stack unwinds in reverse)
    wakeup = asyncio.Event()
    # An action's outcome can start work at once: an approved plan's tasks, a task waiting on its card.
    tasks_wakeup = asyncio.Event()
    context = partial(proposal_context, stores.records, settings.budget.currency)
    ui = ApprovalUI(approvals, coordinator, messenger.send, wakeup.set, context)
    runner = OutboxRunner(
        stores.approvals,
        db,
        registry,
        settings.outbox,
        on_outcome=partial(_reported, ui=ui, then=tasks_wakeup.set),
        liveness=stack.enter_context(Liveness(settings.data_dir / "procs")),
        is_paused=lambda: controls.paused,
        wakeup=wakeup,
        clock=clock,
    )
    recorder = await _trace_recorder(settings, db)
    goals = _build_goals(
        settings, stores, model.llm, plans, approvals, ui, messenger, memory, controls, tasks_wakeup, recorder
    )
    policy_cmds = PolicyCommands(db, control, settings.approvals, messenger)
    mcp_cmds = McpCommands(mcp.hub if mcp else None, mcp, control, messenger)
    ingestor = repair = None
    if memory is not None:
        ingestor = Ingestor(
            memory, settings.memory.ingest_batch, settings.memory.ingest_interval_s, yield_to=intake.dispatcher.quiet
        )
        repair = MemoryRepair(memory, db, stores.notes, settings.memory.scope, settings.timezone)
        stack.push_async_callback(repair.aclose)
    commands, dispatcher = intake.commands, intake.dispatcher
    web = None
    if settings.web.enabled:
        from bot.web.wiring import WebParts, build_web

        wake = goals.runner.wake
        parts = WebParts(db, stores.ledger, control, stores.tasks, approvals, ui, goals.service, guard, wake)
        web = await build_web(settings, parts, messenger, commands)
    receivables = await open_receivables(
        settings, db, stores.records, approvals, ui, control, messenger, lambda: controls.paused, stack
    )
    digest = DigestService(
        db, stores.approvals, control, model.budgets, model.llm, ui, messenger.send, stores.records, registry,
        goals.service, mail, sections=(receivables.digest_lines,) if receivables else (),
    )  # fmt: skip
    scheduler = Scheduler(control, db, settings.timezone, is_paused=lambda: controls.paused)
    loops = await open_inbox(
        imap=settings.imap, quiet_hours=settings.quiet_hours, zone=settings.timezone,
        cheap_model=settings.llm.cheap_model, memory=memory, scope=settings.memory.scope, mail=mail,
        records=stores.records, llm=model.llm, approvals=approvals, ui=ui, control=control,
        send=messenger.send_quietly, commands=commands, scheduler=scheduler,
    )  # fmt: skip
    runtime = Runtime(
        settings,
        db,
        stores.ledger,
        messenger,
        dispatcher,
        coordinator,
        guard,
        stores.operators,
        commands,
        intake.pairing_code,
        approvals,
        ui,
        runner,
        control,
        controls,
        digest,
        scheduler,
        goals=goals.service,
        task_runner=goals.runner,
        tasks=stores.tasks,
        channels=list(intake.started),
        memory=memory,
        ingestor=ingestor,
        memory_repair=repair,
        loops=loops,
        web=web,
        receivables=receivables,
    )
    _register_commands(runtime, model.budgets, policy_cmds, stores, context)
    goals.commands.register(commands)
    mcp_cmds.register(commands)
    dispatcher.bind(
        Handlers(
            coordinator,
            ui,
            control,
            buttons={
                "bu": model.budgets.on_press,
                "po": policy_cmds.on_press,
                "gl": goals.commands.on_press,
                "mc": mcp_cmds.on_press,
            },
            on_operator_text=_ingest_hook(ingestor, settings) if ingestor else None,
        )
    )
    _schedule(runtime, checkpoints)
    _make_channels(runtime, console)
    return runtime, model.prices


async def _trace_recorder(settings: Settings, db: Database) -> TraceRecorder:
    """Where task attempts' traces go, with every configured secret redacted (I4) as in the logs."""
    from bot.logging_setup import RedactingFilter
    from bot.secret_values import secrets_of

    store = TraceStore(db)
    await store.setup()
    return TraceRecorder(store, RedactingFilter(secrets_of(settings)).redact)


async def _open_semantic_memory(
    settings: Settings, stack: AsyncExitStack, model: _Model, ledger: CostLedger
) -> Memory | None:
    """Semantic memory, unless switched off; with a model, closed episodes are summarized by it (budgeted)."""
    if not settings.memory.semantic:
        return None
    from graph.conversation.episode_summarizer import ModelSummarizer
    from graph.spend.embedding_meter import BudgetedEmbeddings
    from memory.semantic.api import open_memory

    llm = model.llm
    summarizer = ModelSummarizer(llm, settings.llm.cheap_model) if llm.configured else None
    embedder = _embedder(settings, stack, BudgetedEmbeddings(model.guard, ledger))
    return await stack.enter_async_context(
        open_memory(settings.data_dir, embedder=embedder, settings=settings.embeddings, summarizer=summarizer)
    )


async def _open_mcp(settings: Settings, stores: _Stores, stack: AsyncExitStack) -> McpFamily | None:
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


def _build_actions(
    settings: Settings, stores: _Stores, llm: LLMClient, mail: MailStore, mcp: McpFamily | None
) -> tuple[PlanKind, Registry]:
    """The connectors' action kinds plus plans, whose planner is offered only skills that can act; MCP tools
    as a family of kinds declared at run time."""
    from connectors.base import Deps
    from connectors.catalog import build_registry
    from connectors.registry import Registry
    from graph.goals.plan_kind import PlanKind
    from graph.goals.planner import Planner
    from graph.goals.skills import all_skills, usable_skills

    deps = Deps(records=stores.records, currency=settings.budget.currency, mail_store=mail)
    connectors = build_registry(settings, deps)
    unconfigured = {kind.tool.name for kind in connectors if kind.tool and not kind.configured}
    skills = usable_skills(all_skills(), unconfigured)
    descriptions = {name: skill.description for name, skill in skills.items()}
    planner = Planner(llm, descriptions, settings.timezone, settings.budget.currency)
    plans = PlanKind(stores.tasks, planner)
    return plans, Registry([*connectors, plans], families=(mcp,) if mcp else ())


async def _reported(row: OutboxRow, ui: ApprovalUI, then: Callable[[], None]) -> None:
    """Show an action's outcome on its card, then let the task runner look (whatever the card did)."""
    try:
        await ui.on_outcome(row)
    finally:
        then()


def proposal_context(records: Records, currency: str) -> Context:
    """What a slash command or an edit may use to build an action: contacts, the currency, today."""
    from connectors.base import Context

    return Context(records=records, currency=currency, today=utcnow().date())


def _ingest_hook(ingestor: Ingestor, settings: Settings) -> Callable[[InboundMessage, int], None]:
    from memory.semantic.chat_notes import chat_note

    def hook(inbound: InboundMessage, event_id: int) -> None:
        ingestor.add(
            chat_note(
                inbound.text,
                inbound.received_at,
                inbound.channel,
                f"msg-{event_id}",
                settings.memory.scope,
                settings.timezone,
            )
        )

    return hook


def _register_commands(
    rt: Runtime, budgets: BudgetCommands, policy: PolicyCommands, stores: _Stores, context: Callable[[], Context]
) -> None:
    from bot.commands.approvals import register_approval_commands
    from bot.commands.core import register_core_commands
    from bot.commands.memory import register_memory_commands
    from bot.routines import register_routines

    commands, settings = rt.commands, rt.settings
    register_core_commands(commands, runtime_status=lambda: status_lines(rt))
    register_approval_commands(commands, rt.approvals, rt.approval_ui, context)
    budgets.register(commands)
    policy.register(commands)
    register_routines(commands, rt.control, rt.db)
    repair = rt.memory_repair.request if rt.memory_repair else lambda: None
    later = rt.ingestor.add if rt.ingestor else None
    register_memory_commands(
        commands, rt.db, rt.memory, stores.notes, stores.profile, settings.memory.scope, repair, later
    )

    async def digest_now(inbound: InboundMessage, _: str) -> str:
        await rt.digest.deliver([(inbound.channel, inbound.chat_id, inbound.thread_id)])
        return ""

    commands.add("digest", "Send the digest now", digest_now, confidential=True)


def _schedule(rt: Runtime, checkpoints: aiosqlite.Connection) -> None:
    from bot.routines import health_check, when_on

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


async def _notify_access(rt: Runtime) -> None:
    from bot.notices import notify_access_changes

    await notify_access_changes(rt.db, rt.control, rt.messenger)


def _make_channels(rt: Runtime, console: _Console) -> None:
    settings = rt.settings
    if settings.telegram.configured and not any(c.name == "telegram" for c in rt.channels):
        from bot.channels.telegram import TelegramChannel

        rt.channels.append(
            TelegramChannel(
                settings.telegram, rt.dispatcher.accept, rt.commands.menu(), on_batch=rt.dispatcher.accept_many
            )
        )
    if settings.slack.configured:
        from bot.channels.slack import SlackChannel

        rt.channels.append(SlackChannel(settings.slack, rt.dispatcher.accept))
    if console.wanted or (console.wanted is None and not rt.channels):
        rt.console = ConsoleChannel(rt.dispatcher.handle, console.stdin, console.stdout)
        rt.channels.append(rt.console)


async def _start(rt: Runtime, stack: AsyncExitStack, prices: PriceTable, intake: _Intake, grace: Grace) -> None:
    """Start channels (replaying what a crash left unfinished), the outbox, the scheduler and ingestion.

    On exit (the stack unwinds in reverse) the stop runs in this order: the channels stop receiving;
    replies, the outbox's execution and task attempts in flight finish within ``grace``, sending through
    channels still open; what is left is cancelled (and resumed at the next start); then channels close.
    """
    for channel in rt.channels:
        rt.messenger.attach(channel)
    for channel in rt.channels:
        stack.push_async_callback(close_channel, channel)  # closing twice is harmless
        if channel in intake.started:
            await cast("TelegramChannel", channel).set_commands(rt.commands.menu())
            continue
        await channel.start()
        replayed = await rt.dispatcher.replay(intake.pending, {channel.name})
        if replayed:
            log.info("%s: handling %d update(s) left unfinished by the last run", channel.name, len(replayed))
    background = Background()
    stack.push_async_callback(background.cancel)
    await rt.runner.recover()
    background.spawn(rt.runner.run_forever(), "outbox", stop=rt.runner.stop)
    background.spawn(_sweep_expired(rt.approvals, rt.approval_ui, rt.settings.expiry_sweep_s), "expiry")
    background.spawn(rt.scheduler.run_forever(), "scheduler")
    background.spawn(rt.task_runner.run_forever(), "tasks", stop=rt.task_runner.stop)
    if rt.receivables is not None:
        background.spawn(rt.receivables.run_forever(), "receivables")
    if rt.ingestor is not None:
        backlog = rt.memory_repair.missing if rt.memory_repair else None  # what a crash kept out of the index
        background.spawn(rt.ingestor.run_forever(backlog), "memory-ingest")
    for make, name in rt.loops:
        background.spawn(make(), name)
    if rt.coordinator.llm.configured:
        # The price table's first lookup reads a large catalog: do it now, off the loop.
        from graph.models.fallbacks import prices_in_use

        background.spawn(asyncio.to_thread(prices_in_use, rt.settings.llm, prices), "prices")
    stack.push_async_callback(wind_down, rt.channels, rt.dispatcher, background, grace)  # a stop's first step
    # Everything built so far lives until shutdown: keep it out of the collector's full passes,
    # which otherwise show up as 100+ ms pauses in reply latency.
    gc.freeze()


async def _alert(alert: BudgetAlert, *, budgets: BudgetCommands, control: ControlStore, messenger: Messenger) -> None:
    """Send a budget alert to the conversation it happened in, or to every operator's own chat."""
    from bot.approval_ui import session_target
    from bot.digest import home_chats

    targets = [session_target(alert.session)] if alert.session else await home_chats(control)
    for channel, chat_id, thread_id in targets:
        await messenger.notice(budgets.alert_message(alert, channel, chat_id, thread_id))


async def _model_notice(text: str, session: str | None, *, control: ControlStore, messenger: Messenger) -> None:
    """A line about the models (an unpriced one, a skipped fallback) to the conversation it happened in, or to
    every operator's own chat."""
    from bot.approval_ui import session_target
    from bot.digest import home_chats

    targets = [session_target(session)] if session else await home_chats(control)
    for channel, chat_id, thread_id in targets:
        await messenger.notice(OutboundMessage(channel, chat_id, text, thread_id))


def _embedder(settings: Settings, stack: AsyncExitStack, meter: EmbeddingMeter) -> Embedder | None:
    """The ``openai`` provider uses the same endpoint and key as the chat model, its calls metered by
    ``meter`` (they are paid: I5); None means the local model, which costs nothing."""
    if settings.embeddings.provider != "openai":
        return None
    import openai

    from memory.semantic.embedder import OpenAIEmbedder

    llm = settings.llm
    target = llm.connection()  # credentials in the URL become basic auth, as for the chat model
    client = openai.AsyncOpenAI(
        base_url=target.base_url,
        api_key=target.api_key,
        default_headers=target.headers or None,
        timeout=llm.timeout_s,
        max_retries=0,  # one reservation pays for one request; ingestion retries with backoff itself
    )
    embedder = OpenAIEmbedder(client, settings.embeddings.model, owns_client=True, meter=meter)
    stack.push_async_callback(embedder.aclose)
    return embedder


async def _prune(conn: aiosqlite.Connection) -> None:
    from memory.checkpoints import prune_checkpoints

    removed = await prune_checkpoints(conn)
    log.info("checkpoint pruning removed %d row(s)", removed)


def _maintain(repair: MemoryRepair) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        fed_back = await repair.run()
        log.info("memory maintenance done%s", f"; {fed_back} note(s) fed back after a rebuild" if fed_back else "")

    return run


async def _sweep_expired(approvals: ApprovalService, ui: ApprovalUI, every_s: float) -> None:
    """Expire cards past their time (fail closed) and say so on them."""
    while True:
        try:
            for row in await approvals.expire_due():
                await ui.on_expired(row)
        except Exception:
            log.exception("expiry sweep failed; will retry")
        await asyncio.sleep(every_s)


def status_lines(runtime: Runtime) -> list[str]:
    """The start banner and /status: channels, model or offline, data dir, access mode (never a credential)."""
    settings = runtime.settings
    names = [c.name for c in runtime.channels] or ["none"]
    llm = runtime.coordinator.llm
    if not llm.configured:
        model = "offline mode (no model configured: set COO_LLM__BASE_URL / COO_LLM__API_KEY)"
    elif not llm.available():
        model = f"{llm.model} (unreachable: offline mode until it answers)"
    else:
        model = f"{llm.model} at {redact_url(settings.llm.base_url or 'https://api.openai.com/v1')}"
    if not _chat_platforms(runtime):
        access = "this terminal only (no chat platform configured)"
    elif runtime.pairing_code:
        access = "pairing open (send /pair CODE from a chat to become the operator)"
    else:
        count = len(runtime.guard.operator_ids()) - 1
        access = f"{count} operator(s); `coo pair` opens pairing for another, `coo operators` lists them"
    return [
        f"channels: {', '.join(names)}",
        f"model: {model}",
        f"data dir: {settings.data_dir.resolve()}",
        f"access: {access}",
    ]


def _chat_platforms(runtime: Runtime) -> list[Channel]:
    return [c for c in runtime.channels if c is not runtime.console]


def banner(runtime: Runtime, log_file: Path | None = None) -> str:
    """What ``coo run`` prints at start, before the first prompt."""
    lines = ["solo-coo is running.", *("  " + line for line in status_lines(runtime))]
    # A pairing code is only useful where someone can send /pair: a chat platform.
    if runtime.pairing_code and _chat_platforms(runtime):
        ttl_min = runtime.settings.pairing_code_ttl_s // 60
        lines.append(f"  pairing code: {runtime.pairing_code} (one use, expires in {ttl_min} min)")
    if not runtime.settings.telegram.configured and not runtime.settings.slack.configured:
        lines.append(
            "  no chat platform configured: run `coo onboard` (or set COO_TELEGRAM__TOKEN / COO_SLACK__BOT_TOKEN)."
        )
    if runtime.web is not None and runtime.web.serving:
        address = runtime.web.settings.base_url
        lines.append(f"  web console: {address} (sign in: /web in a private chat, or coo web-login)")
    if log_file is not None:
        lines.append(f"  logs: {log_file}")
    if runtime.console is not None:
        lines.append("  type a message, /help for commands, Ctrl-D to quit.")
    return "\n".join(lines)


NOTHING_TO_TALK_THROUGH = (
    "coo: input ended and no chat platform is configured, so nobody can reach solo-coo: set "
    "COO_TELEGRAM__TOKEN or COO_SLACK__BOT_TOKEN (`coo onboard` writes them) and restart. "
    "Staying up until stopped; `coo chat` ends with its input."
)


async def serve(settings: Settings, *, console: bool | None = None, log_file: Path | None = None) -> None:
    """Run until Ctrl-C, SIGTERM or end of console input.

    A signal during the start gives the start up at once (see :mod:`bot.lifecycle`). The console's
    output is held until the banner is printed, so the banner comes before the first prompt.
    """
    signals = StopSignals()
    signals.install()
    opened = asyncio.Event()
    run = asyncio.create_task(_serve(settings, console, log_file, signals, opened), name="coo-run")
    asked = asyncio.create_task(signals.requested.wait())
    try:
        await asyncio.wait({run, asked}, return_when=asyncio.FIRST_COMPLETED)
        if not run.done() and not opened.is_set():
            log.info("stopping during the start")
            run.cancel()
        try:
            await run
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if not run.cancelled() or (current is not None and current.cancelling()):
                raise
    finally:
        asked.cancel()
        signals.disarm()


async def _serve(
    settings: Settings, console: bool | None, log_file: Path | None, signals: StopSignals, opened: asyncio.Event
) -> None:
    held = HeldOutput(sys.stdout)
    grace = Grace(hurry=signals.hurry)
    async with open_runtime(settings, console=console, console_output=cast(TextIO, held), grace=grace) as runtime:
        opened.set()
        print(banner(runtime, log_file), file=sys.stderr, flush=True)
        held.release()
        waiters = [asyncio.create_task(signals.requested.wait())]
        if runtime.console is not None:
            waiters.append(asyncio.create_task(runtime.console.closed.wait()))
        _, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        if not signals.requested.is_set() and console is None and not _chat_platforms(runtime) and not _a_terminal():
            # Under Docker or systemd stdin is empty: ending here would only be restarted, again and again.
            print(NOTHING_TO_TALK_THROUGH, file=sys.stderr, flush=True)
            await signals.requested.wait()
        log.info("stopping")


def _a_terminal() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except ValueError:  # stdin closed
        return False
