"""The runtime: one context manager that opens and closes every resource, in one asyncio loop.

It opens the intake first (the database, the access guard, the dispatcher, Telegram's polling), then
imports and builds the rest in :mod:`bot.compose.root`, starts it, and on exit stops it in order
(:mod:`bot.lifecycle`). ``coo run`` itself is :mod:`bot.serve`; the banner and /status :mod:`bot.status`.
"""

from __future__ import annotations

import asyncio
import gc
import importlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, TextIO, cast

from bot.access import AccessGuard
from bot.commands.router import CommandRouter
from bot.dispatcher import Dispatcher
from bot.lifecycle import Background, Grace, close_channel, in_daemon_thread, wind_down
from bot.messages import Channel
from bot.messenger import Messenger
from bot.running import ConsoleWish, Intake, Runtime
from bot.settings import Settings
from bot.stores import open_stores
from memory.db import utcnow
from memory.operators import OperatorStore

if TYPE_CHECKING:
    from bot.approval_ui import ApprovalUI
    from bot.channels.telegram import TelegramChannel
    from graph.approvals.service import ApprovalService
    from graph.spend.pricing import PriceTable

COMPOSITION_ROOT = "bot.compose.root"
"""What ``coo run`` imports only once it polls (in a worker thread): the model client, the graph, semantic
memory, connectors, and the commands and loops built on them."""

log = logging.getLogger(__name__)


async def _open_intake(
    settings: Settings, stack: AsyncExitStack, early: bool, sleep: Callable[[float], Awaitable[object]]
) -> Intake:
    """Open the database, the access guard and the dispatcher; with ``early``, start Telegram now.

    Telegram then polls within a second of start while the model client, the graph, semantic memory
    and the connectors are imported and built; what arrives meanwhile is stored at once and handled
    once they are ready, in order, after what the last run left unfinished.
    """
    stores = await open_stores(settings, stack)
    guard = AccessGuard(settings.operator_ids, stores.operators)
    await guard.load()
    pairing_code = await _open_pairing(settings, guard, stores.operators)
    messenger = Messenger(stores.db)
    commands = CommandRouter()
    dispatcher = Dispatcher(stores.db, guard, commands, messenger, sleep=sleep)
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
    return Intake(stores, guard, pairing_code, messenger, commands, dispatcher, pending, started)


def _load_heavy_parts() -> None:
    """Import what the first reply needs but polling does not (run in a worker thread: the loop stays live)."""
    importlib.import_module(COMPOSITION_ROOT)


async def _open_pairing(settings: Settings, guard: AccessGuard, operators: OperatorStore) -> str | None:
    """A one-time code at start, only while nobody can use the bot and a chat platform could redeem it."""
    platform = settings.telegram.configured or settings.slack.configured
    if guard.has_operators or not platform:
        return None
    ttl = timedelta(seconds=settings.pairing_code_ttl_s)
    return await operators.open_pairing("start", ttl, revoke_others=True)


@asynccontextmanager
async def open_runtime(
    settings: Settings,
    *,
    console: bool | None = None,
    console_input: TextIO | None = None,
    console_output: TextIO | None = None,
    clock: Callable[[], float] = time.monotonic,
    today: Callable[[], datetime] = utcnow,
    grace: Grace | None = None,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> AsyncIterator[Runtime]:
    """Open the stores, model client, coordinator, goals and channels; close all on exit.

    ``console=None`` means: the console only when no platform channel is configured. ``clock`` (monotonic
    seconds) drives the circuit breakers' windows and cooldowns, so tests can step over a cooldown; ``today``
    (aware datetimes) is now for the calendar: what follow-ups' days ("3d", "friday") count from and are due
    against, the conversation's time and its tools' today, a proposal's date and the digest's.
    On exit, replies and executions in flight get ``grace`` to finish (see :mod:`bot.lifecycle`). ``sleep``
    paces the retries of an answer the chat platform could not take.
    """
    async with AsyncExitStack() as stack:
        # A console-only run has nothing to poll: the order only matters with a platform channel.
        intake = await _open_intake(settings, stack, early=console is not True, sleep=sleep)
        await in_daemon_thread(_load_heavy_parts)
        from bot.compose.root import build

        wish = ConsoleWish(console, console_input, console_output)
        runtime, prices = await build(settings, stack, intake, wish, clock, today)
        await _start(runtime, stack, prices, intake, grace or Grace())
        if runtime.web is not None:
            await runtime.web.start()
            stack.push_async_callback(runtime.web.stop)
        yield runtime


async def _start(rt: Runtime, stack: AsyncExitStack, prices: PriceTable, intake: Intake, grace: Grace) -> None:
    """Start channels (replaying what a crash left unfinished), the outbox, the scheduler and ingestion.

    On exit (the stack unwinds in reverse) the stop runs in this order: the channels stop receiving;
    replies, the outbox's execution and task attempts in flight finish within ``grace``, sending through
    channels still open; what is left is cancelled (and resumed at the next start); then channels close.
    That order holds from the first step here, so a start given up from now on (another platform still
    connecting, say) lets the replies already under way finish, as a running stop does: one cut mid-send
    would be sent again by the next start.
    """
    for channel in rt.channels:
        rt.messenger.attach(channel)
        stack.push_async_callback(close_channel, channel)  # closing twice, or before the start, is harmless
    background = Background()
    stack.push_async_callback(background.cancel)
    stack.push_async_callback(wind_down, rt.channels, rt.dispatcher, background, grace)  # a stop's first step
    for channel in rt.channels:
        if channel in intake.started:
            await cast("TelegramChannel", channel).set_commands(rt.commands.menu())
            continue
        await channel.start()
        replayed = await rt.dispatcher.replay(intake.pending, {channel.name})
        if replayed:
            log.info("%s: handling %d update(s) left unfinished by the last run", channel.name, len(replayed))
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
    # Everything built so far lives until shutdown: keep it out of the collector's full passes,
    # which otherwise show up as 100+ ms pauses in reply latency.
    gc.freeze()


async def _sweep_expired(approvals: ApprovalService, ui: ApprovalUI, every_s: float) -> None:
    """Expire cards past their time (fail closed) and say so on them."""
    while True:
        try:
            for row in await approvals.expire_due():
                await ui.on_expired(row)
        except Exception:
            log.exception("expiry sweep failed; will retry")
        await asyncio.sleep(every_s)
