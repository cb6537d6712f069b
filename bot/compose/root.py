"""The composition root: everything ``coo run`` builds once it polls, through constructors, in one place.

The runtime (:mod:`bot.runtime`) imports this module in a worker thread while Telegram already polls, so
its imports are the heavy ones: the model client, the graph, semantic memory and the connectors.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from functools import partial

import aiosqlite

from bot.approval_ui import ApprovalUI
from bot.channels.console import ConsoleChannel
from bot.commands.approvals import register_approval_commands
from bot.commands.budget import Controls
from bot.commands.core import register_core_commands
from bot.commands.mcp import McpCommands
from bot.commands.memory import register_memory_commands
from bot.commands.pipeline import open_pipeline
from bot.commands.policy import PolicyCommands
from bot.commands.router import CommandRouter
from bot.compose.model import build_model, open_checkpoints, open_semantic_memory
from bot.compose.work import build_actions, build_goals, open_mcp
from bot.digest import DigestService
from bot.dispatcher import ButtonHandler, Handlers
from bot.followups import open_followups
from bot.inbox_runtime import open_inbox
from bot.logging_setup import RedactingFilter
from bot.memory_repair import MemoryRepair
from bot.messages import Channel, InboundMessage
from bot.notices import notify_access_changes
from bot.receivables import open_receivables
from bot.routines import health_check, register_routines, when_on
from bot.running import ConsoleWish, Intake, Runtime
from bot.scheduler import Scheduler
from bot.secret_values import secrets_of
from bot.settings import Settings
from bot.status import status_lines
from bot.stores import Stores
from connectors.base import Context
from connectors.outbox import OutboxRunner
from graph.approvals.service import ApprovalService
from graph.buttons import Prefix
from graph.contexts import Contexts
from graph.conversation.coordinator import Coordinator
from graph.conversation.recall import SessionRecall
from graph.conversation.record_tools import RECORD_TOOLS
from graph.conversation.tools import RECALL_TOOL, SAFE_TOOLS, ToolBox
from graph.followups.tools import FOLLOWUP_TOOLS
from graph.inbox.replies import ReplyWaits
from graph.spend.pricing import PriceTable
from memory.approvals import OutboxRow
from memory.checkpoints import prune_checkpoints
from memory.db import Database
from memory.liveness import Liveness
from memory.mail import MailStore
from memory.mail_replies import MailReplies
from memory.semantic.api import Memory
from memory.semantic.chat_notes import chat_note
from memory.semantic.ingest import Ingestor
from memory.traces import TraceRecorder, TraceStore

log = logging.getLogger(__name__)


async def build(
    settings: Settings,
    stack: AsyncExitStack,
    intake: Intake,
    console: ConsoleWish,
    clock: Callable[[], float],
) -> tuple[Runtime, PriceTable]:
    """Everything after the intake: model client, semantic memory, graph, connectors, goals, commands."""
    stores, messenger, guard = intake.stores, intake.messenger, intake.guard
    db, control = stores.db, stores.control
    controls = Controls(paused=bool(await control.get("paused")))
    saver, checkpoints = await open_checkpoints(settings, stack)
    model = build_model(settings, stores, stack, messenger, controls, clock)
    memory = await open_semantic_memory(settings, stack, model, stores.ledger)
    mail = MailStore(db)
    await mail.setup()
    mcp = await open_mcp(settings, stores, stack)
    plans, registry = build_actions(settings, stores, model.llm, mail, mcp)
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
        tools=ToolBox((*SAFE_TOOLS, RECALL_TOOL, *RECORD_TOOLS, *FOLLOWUP_TOOLS), reads=registry.read_tools),
    )
    stack.push_async_callback(coordinator.aclose)  # before memory closes (the stack unwinds in reverse)
    wakeup = asyncio.Event()
    # An action's outcome can start work at once: an approved plan's tasks, a task waiting on its card.
    tasks_wakeup = asyncio.Event()
    contexts = Contexts(
        db, settings.timezone, settings.budget.currency, stores.records, stores.profile, memory, settings.memory.scope
    )
    ui = ApprovalUI(approvals, coordinator, messenger, wakeup.set, contexts.proposal)
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
    # With an inbox to read, a goal's outreach waits for the answers to its emails (graph/inbox/replies.py).
    replies = None
    if settings.imap.configured and settings.followups.reply_wait_days > 0:
        replies = ReplyWaits(db, stores.tasks, MailReplies(db, mail), settings.followups.reply_wait_days)
    recorder = await _trace_recorder(settings, db)
    goals = build_goals(
        settings, stores, model.llm, plans, approvals, ui, messenger, contexts, controls, tasks_wakeup, recorder,
        replies,
    )  # fmt: skip
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
    pipeline = await open_pipeline(db, stores.records, settings.timezone, intake.commands)
    receivables = await open_receivables(
        settings, db, stores.records, approvals, ui, control, messenger, lambda: controls.paused, stack,
        profile=stores.profile, pipeline=pipeline, goals=goals.service,
    )  # fmt: skip
    followups = await open_followups(
        settings.followups, settings.timezone, db, stores.records, approvals, ui, control, messenger, commands,
        lambda: controls.paused,
    )  # fmt: skip
    digest = DigestService(
        db, stores.approvals, control, model.budgets, model.llm, ui, messenger.send, stores.records, registry,
        goals.service, mail,
        sections=(*((receivables.digest_lines,) if receivables else ()), followups.digest_lines, pipeline.digest_lines),
    )  # fmt: skip
    scheduler = Scheduler(control, db, settings.timezone, is_paused=lambda: controls.paused)
    loops = await open_inbox(
        imap=settings.imap, quiet_hours=settings.quiet_hours, zone=settings.timezone,
        cheap_model=settings.llm.cheap_model, memory=memory, scope=settings.memory.scope, mail=mail,
        records=stores.records, llm=model.llm, approvals=approvals, ui=ui, control=control,
        send=messenger.send_quietly, commands=commands, scheduler=scheduler, on_mail=followups.wake,
    )  # fmt: skip
    loops.append((followups.run_forever, "followups"))
    status: list[Runtime] = []  # /status reads the runtime built below
    _register_commands(
        commands, settings, stores, approvals, ui, digest, memory, repair, ingestor, contexts.proposal,
        more=(model.budgets.register, policy_cmds.register), status=lambda: status_lines(status[0]),
    )  # fmt: skip
    goals.commands.register(commands)
    mcp_cmds.register(commands)
    approve_all: dict[str, ButtonHandler] = {}
    if receivables is not None and receivables.approve_all is not None:
        approve_all[Prefix.APPROVE_ALL] = receivables.approve_all.on_press
    dispatcher.bind(
        Handlers(
            coordinator,
            ui,
            control,
            buttons={
                Prefix.BUDGET: model.budgets.on_press,
                Prefix.POLICY: policy_cmds.on_press,
                Prefix.GOAL: goals.commands.on_press,
                Prefix.MCP: mcp_cmds.on_press,
                **approve_all,
            },
            on_operator_text=_ingest_hook(ingestor, settings) if ingestor else None,
        )
    )
    channels, terminal = _channels(settings, intake, console)
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
        channels=channels,
        console=terminal,
        memory=memory,
        ingestor=ingestor,
        memory_repair=repair,
        loops=loops,
        web=web,
        receivables=receivables,
    )
    status.append(runtime)
    _schedule(runtime, checkpoints)
    return runtime, model.prices


def _register_commands(
    commands: CommandRouter,
    settings: Settings,
    stores: Stores,
    approvals: ApprovalService,
    ui: ApprovalUI,
    digest: DigestService,
    memory: Memory | None,
    repair: MemoryRepair | None,
    ingestor: Ingestor | None,
    context: Callable[[], Context],
    *,
    more: tuple[Callable[[CommandRouter], None], ...],
    status: Callable[[], list[str]],
) -> None:
    """The commands of the core, approvals, ``more`` (budgets, policy), routines, memory and the digest, in the
    order /help lists them."""
    register_core_commands(commands, runtime_status=status)
    register_approval_commands(commands, approvals, ui, context)
    for register in more:
        register(commands)
    register_routines(commands, stores.control, stores.db)
    register_memory_commands(
        commands,
        stores.db,
        memory,
        stores.notes,
        stores.profile,
        settings.memory.scope,
        repair.request if repair else lambda: None,
        ingestor.add if ingestor else None,
        MailStore(stores.db),
    )

    async def digest_now(inbound: InboundMessage, _: str) -> str:
        await digest.deliver([(inbound.channel, inbound.chat_id, inbound.thread_id)])
        return ""

    commands.add("digest", "Send the digest now", digest_now, confidential=True)


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


def _ingest_hook(ingestor: Ingestor, settings: Settings) -> Callable[[InboundMessage, int], None]:
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
