"""The runtime: one context manager that opens and closes every resource, in one asyncio loop."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO, cast

import aiosqlite
import openai
from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

from bot.access import AccessGuard
from bot.approval_commands import register_approval_commands
from bot.approval_ui import ApprovalUI, session_target
from bot.budget_commands import BudgetCommands, Controls
from bot.channels.console import ConsoleChannel, HeldOutput
from bot.commands import CommandRouter
from bot.core_commands import register_core_commands
from bot.digest import DigestService, home_chats
from bot.dispatcher import Dispatcher
from bot.memory_commands import register_memory_commands
from bot.messages import Channel, InboundMessage
from bot.scheduler import Scheduler
from bot.settings import Settings, redact_url
from connectors.base import Connector
from connectors.email import EmailConnector
from connectors.outbox import OutboxRunner
from graph.approvals import ApprovalService
from graph.budget import BudgetAlert, BudgetGuard
from graph.coordinator import Coordinator
from graph.llm import LLMClient
from graph.pricing import PriceTable
from memory.api import Memory, Note, open_memory
from memory.approvals import ApprovalStore
from memory.checkpoints import prune_checkpoints
from memory.control import ControlStore
from memory.db import Database, connect_sqlite, open_database
from memory.embedder import Embedder, OpenAIEmbedder
from memory.ingest import Ingestor
from memory.notes import NoteLedger
from memory.profile import ProfileStore
from memory.records import Records

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    """Everything that is open while solo-coo runs."""

    settings: Settings
    db: Database
    dispatcher: Dispatcher
    coordinator: Coordinator
    guard: AccessGuard
    commands: CommandRouter
    pairing_code: str | None
    approvals: ApprovalService
    approval_ui: ApprovalUI
    runner: OutboxRunner
    control: ControlStore
    controls: Controls
    digest: DigestService
    scheduler: Scheduler
    channels: list[Channel] = field(default_factory=list)
    console: ConsoleChannel | None = None
    memory: Memory | None = None
    ingestor: Ingestor | None = None


@asynccontextmanager
async def open_runtime(
    settings: Settings,
    *,
    console: bool | None = None,
    console_input: TextIO | None = None,
    console_output: TextIO | None = None,
) -> AsyncIterator[Runtime]:
    """Open the database, checkpointer, model client, coordinator and channels; close all on exit.

    ``console=None`` means: the console only when no platform channel is configured.
    """
    async with AsyncExitStack() as stack:
        data_dir = settings.data_dir
        db = await stack.enter_async_context(open_database(data_dir, settings.sqlite.busy_timeout_ms))
        ckpt_conn = await connect_sqlite(data_dir / "checkpoints.sqlite", settings.sqlite.busy_timeout_ms)
        stack.push_async_callback(ckpt_conn.close)
        saver = AsyncSqliteSaver(ckpt_conn)
        await saver.setup()
        control = ControlStore(db)
        await control.setup()
        controls = Controls(paused=bool(await control.get("paused")))
        prices = PriceTable(settings.llm.base_url, settings.llm.prices, settings.budget.usd_rate)
        budget_guard = BudgetGuard(
            db, control, prices, settings.timezone, settings.budget.currency, settings.llm.cheap_model
        )
        llm = LLMClient(settings.llm, db, prices, budget_guard)
        stack.push_async_callback(llm.close)
        guard = AccessGuard(settings.operator_ids, db, settings.pairing_code_ttl_s)
        pairing_code = await guard.load()
        # The approval store owns its own connection: its transactions must not share one.
        store_conn = await connect_sqlite(data_dir / "coo.sqlite", settings.sqlite.busy_timeout_ms)
        stack.push_async_callback(store_conn.close)
        store = ApprovalStore(store_conn)
        await store.setup()
        email = EmailConnector(settings.smtp)
        connectors: dict[str, Connector] = {email.kind: email}
        profile = ProfileStore(db)
        await profile.setup()
        approvals = ApprovalService(store, db, connectors, settings.approvals, guard.operator_ids, profile)
        records, ledger = Records(db), NoteLedger(db)
        for part in (records, ledger):
            await part.setup()
        memory = None
        if settings.memory.semantic:
            memory = await stack.enter_async_context(
                open_memory(data_dir, embedder=_embedder(settings, stack), settings=settings.embeddings)
            )
        coordinator = Coordinator(
            db,
            llm,
            saver,
            settings.llm,
            settings.timezone,
            approvals=approvals,
            email_from=settings.smtp.from_addr,
            records=records,
            profile=profile,
            memory=memory,
        )
        commands = CommandRouter()
        dispatcher = Dispatcher(db, guard, commands, coordinator)
        # The UI wakes the runner and the runner reports to the UI: the lambda binds late.
        ui = ApprovalUI(approvals, coordinator, dispatcher.send, lambda: runner.wake())
        runner = OutboxRunner(
            store, db, connectors, settings.outbox, on_outcome=ui.on_outcome, is_paused=lambda: controls.paused
        )
        dispatcher.control = control
        budget_cmds = BudgetCommands(db, control, budget_guard, controls, settings.timezone, dispatcher.send)
        dispatcher.button_handlers["bu"] = budget_cmds.on_press
        budget_guard.on_alert = lambda alert: _alert(alert, budget_cmds, control, dispatcher)
        digest = DigestService(db, store, control, budget_cmds, llm, ui, dispatcher.send, records)
        scheduler = Scheduler(control, db, settings.timezone, is_paused=lambda: controls.paused)
        scheduler.daily("digest", settings.digest_time, digest.scheduled)
        scheduler.every("checkpoint-pruning", 24 * 3600, lambda: _prune(ckpt_conn))
        dispatcher.approvals = ui
        runtime = Runtime(
            settings,
            db,
            dispatcher,
            coordinator,
            guard,
            commands,
            pairing_code,
            approvals,
            ui,
            runner,
            control,
            controls,
            digest,
            scheduler,
        )
        register_core_commands(commands, runtime_status=lambda: status_lines(runtime))
        register_approval_commands(commands, approvals, ui, settings.smtp.from_addr)
        budget_cmds.register(commands)
        register_memory_commands(commands, db, memory, ledger, profile, settings.memory.scope)
        ingestor = None
        if memory is not None:
            ingestor = Ingestor(memory, settings.memory.ingest_batch, settings.memory.ingest_interval_s)
            dispatcher.on_operator_text = lambda inbound, event_id: ingestor.add(
                Note(
                    text=inbound.text,
                    source=f"chat:{inbound.channel}",
                    at=inbound.received_at,
                    scope=settings.memory.scope,
                    ref=f"msg-{event_id}",
                )
            )
            scheduler.every("memory-maintenance", 6 * 3600, _maintain(memory))

        async def digest_now(inbound: InboundMessage, _: str) -> str:
            await digest.deliver([(inbound.channel, inbound.chat_id, inbound.thread_id)])
            return ""

        commands.add("digest", "Send the digest now", digest_now)

        if settings.telegram.configured:
            from bot.channels.telegram import TelegramChannel

            runtime.channels.append(TelegramChannel(settings.telegram, dispatcher.handle, commands.menu()))
        if settings.slack.configured:
            from bot.channels.slack import SlackChannel

            runtime.channels.append(SlackChannel(settings.slack, dispatcher.handle))
        if console or (console is None and not runtime.channels):
            runtime.console = ConsoleChannel(dispatcher.handle, console_input, console_output)
            runtime.channels.append(runtime.console)

        for channel in runtime.channels:
            dispatcher.attach(channel)
        for channel in runtime.channels:
            await channel.start()
            stack.push_async_callback(_stop_channel, channel)
        replayed = await dispatcher.replay_pending()
        if replayed:
            log.info("replayed %d update(s) left unfinished by the last run", replayed)
        await runner.recover()
        await _background(stack, runner.run_forever(), "outbox")
        await _background(stack, _sweep_expired(approvals, ui, settings.expiry_sweep_s), "expiry")
        await _background(stack, scheduler.run_forever(), "scheduler")
        if ingestor is not None:
            await _background(stack, ingestor.run_forever(), "memory-ingest")
        runtime.ingestor = ingestor
        runtime.memory = memory
        # Everything built so far lives until shutdown: keep it out of the collector's full passes,
        # which otherwise show up as 100+ ms pauses in reply latency.
        gc.freeze()
        yield runtime


async def _alert(alert: BudgetAlert, budgets: BudgetCommands, control: ControlStore, dispatcher: Dispatcher) -> None:
    """Send a budget alert to the conversation it happened in, or to every operator's own chat."""
    targets = [session_target(alert.session)] if alert.session else await home_chats(control)
    for channel, chat_id, thread_id in targets:
        try:
            await dispatcher.send(budgets.alert_message(alert, channel, chat_id, thread_id))
        except Exception:
            log.exception("budget alert could not be delivered to %s:%s", channel, chat_id)


def _embedder(settings: Settings, stack: AsyncExitStack) -> Embedder | None:
    """The ``openai`` provider uses the same endpoint and key as the chat model; None means the local model."""
    if settings.embeddings.provider != "openai":
        return None
    llm = settings.llm
    client = openai.AsyncOpenAI(
        base_url=llm.base_url or "https://api.openai.com/v1",
        api_key=llm.api_key.get_secret_value() if llm.api_key else "not-needed",
        timeout=llm.timeout_s,
    )
    embedder = OpenAIEmbedder(client, settings.embeddings.model, owns_client=True)
    stack.push_async_callback(embedder.aclose)
    return embedder


async def _prune(conn: aiosqlite.Connection) -> None:
    removed = await prune_checkpoints(conn)
    log.info("checkpoint pruning removed %d row(s)", removed)


def _maintain(memory: Memory) -> Callable[[], Awaitable[None]]:
    async def run() -> None:
        stats = await memory.maintain()
        log.info("memory maintenance: %s", stats)

    return run


async def _stop_channel(channel: Channel, timeout_s: float = 15.0) -> None:
    # A handler that never returns must not keep the process from stopping.
    try:
        await asyncio.wait_for(channel.stop(), timeout_s)
    except TimeoutError:
        log.error("channel %s did not stop within %.0fs; leaving it", channel.name, timeout_s)


async def _background(stack: AsyncExitStack, coro: Coroutine[Any, Any, None], name: str) -> None:
    task = asyncio.create_task(coro, name=name)

    async def stop() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    stack.push_async_callback(stop)


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
    elif runtime.guard.pairing_mode:
        access = "pairing (send /pair CODE from a chat to become the operator)"
    else:
        access = f"allow-list ({len(settings.operator_ids)} operator(s))"
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
    if log_file is not None:
        lines.append(f"  logs: {log_file}")
    if runtime.console is not None:
        lines.append("  type a message, /help for commands, Ctrl-D to quit.")
    return "\n".join(lines)


async def serve(settings: Settings, *, console: bool | None = None, log_file: Path | None = None) -> None:
    """Run until Ctrl-C, SIGTERM or end of console input.

    The console's output is held until the banner is printed, so the banner comes before the first prompt.
    """
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    held = HeldOutput(sys.stdout)
    async with open_runtime(settings, console=console, console_output=cast(TextIO, held)) as runtime:
        print(banner(runtime, log_file), file=sys.stderr, flush=True)
        held.release()
        waiters = [asyncio.create_task(stop.wait())]
        if runtime.console is not None:
            waiters.append(asyncio.create_task(runtime.console.closed.wait()))
        _, pending = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        log.info("stopping")
