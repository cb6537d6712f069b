"""The receivables loop at the edge: polls Stripe's events (or takes them from the webhook), applies them,
checks which reminders are due, and shows what changed in every operator's own chat."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING

import stripe

from bot.approval_ui import ApprovalUI
from bot.approve_all import ApproveAll
from bot.digest import home_chats
from bot.messages import OutboundMessage
from bot.messenger import Messenger
from connectors.amounts import decimals
from connectors.catalog import settings_of
from connectors.stripe_events import WEBHOOK_PATH, StripeEventPoller, StripeWebhook
from connectors.stripe_settings import StripeSettings
from graph.pipeline.service import Pipeline
from graph.receivables.aging import aging_lines
from graph.receivables.goal_link import GoalPayments
from graph.receivables.service import Changed, Receivables
from memory.aio import wait_at_most
from memory.control import ControlStore
from memory.db import Database, utcnow
from memory.goal_evidence import EvidenceStore
from memory.profile import ProfileStore
from memory.records import Invoice, Records
from memory.stripe_events import StripeEventStore
from prompts import messages

if TYPE_CHECKING:
    from bot.settings import Settings
    from graph.approvals.service import ApprovalService
    from graph.goals.service import GoalService

log = logging.getLogger(__name__)

LAST_CHECK = "receivables.last_check"


class ReceivablesLoop:
    """Runs the events poll every ``poll_s`` and the due check every ``check_s`` (both at start too)."""

    def __init__(
        self,
        service: Receivables,
        events: StripeEventStore,
        poller: StripeEventPoller | None,
        ui: ApprovalUI,
        control: ControlStore,
        messenger: Messenger,
        intervals: tuple[float, float],
        is_paused: Callable[[], bool] = lambda: False,
        wakeup: asyncio.Event | None = None,
        approve_all: ApproveAll | None = None,
    ) -> None:
        """``intervals``: (seconds between event polls, seconds between due checks); ``wakeup`` is set by
        whoever stores events (the webhook) to have them applied now; ``approve_all``: reminders due together
        come as one message with "Approve all N" (without it, each card alone)."""
        self._service = service
        self._events = events
        self._poller = poller
        self._ui = ui
        self._control = control
        self._messenger = messenger
        self._poll_s, self._check_s = intervals
        self._is_paused = is_paused
        self._wake = wakeup or asyncio.Event()
        self._lock = asyncio.Lock()
        self._approve_all = approve_all

    @property
    def approve_all(self) -> ApproveAll | None:
        """The "Approve all N" messages (its button is routed to it)."""
        return self._approve_all

    def wake(self) -> None:
        """Apply stored events now (the webhook stored one)."""
        self._wake.set()

    async def run_forever(self) -> None:
        """Until cancelled. Each step's failure is logged and retried at its next turn."""
        # The first poll one interval in: a start asks Stripe nothing.
        next_check = time.monotonic()
        next_poll = next_check + self._poll_s
        while True:
            self._wake.clear()
            now = time.monotonic()
            if not self._is_paused():
                if self._poller is not None and now >= next_poll:
                    next_poll = now + self._poll_s
                    await self._step("polling Stripe's events", self.poll)
                await self._step("applying Stripe's events", self.settle)
                if now >= next_check:
                    next_check = now + self._check_s
                    await self._step("checking due reminders", self.check)
            soonest = min(next_check, next_poll if self._poller is not None else next_check)
            await wait_at_most(self._wake.wait(), max(0.05, soonest - time.monotonic()))

    async def _step(self, what: str, run: Callable[[], Awaitable[None]]) -> None:
        try:
            await run()
        except stripe.StripeError as exc:
            log.warning("receivables: %s failed: %s", what, type(exc).__name__)
        except Exception:
            log.exception("receivables: %s failed", what)

    async def poll(self) -> None:
        """Store Stripe's new events (the cursor moves with them)."""
        assert self._poller is not None
        new = await self._poller.poll()
        if new:
            log.info("receivables: %d new Stripe event(s)", new)

    async def settle(self) -> None:
        """Apply every stored event not applied yet, oldest first; each marked handled after its effects."""
        async with self._lock:
            for event in await self._events.unhandled():
                await self._show(await self._service.apply(event))
                await self._events.mark_handled(event.id)

    async def check(self) -> None:
        """One due check: new reminder cards shown, replaced ones withdrawn."""
        started = time.perf_counter()
        async with self._lock:
            changed = await self._service.check_due()
            await self._show(changed)
        took_ms = (time.perf_counter() - started) * 1000
        # When it last ran and how long it took (status, tests and bench/followups.py read it).
        await self._control.put(LAST_CHECK, {"at": utcnow().isoformat(), "ms": round(took_ms, 3)})

    async def _show(self, changed: Changed) -> None:
        for row, status in changed.withdrawn:
            await self._ui.refresh(row, status)
        targets = await home_chats(self._control)
        for text in changed.notices:
            for channel, chat_id, thread_id in targets:
                await self._messenger.notice(OutboundMessage(channel, chat_id, text, thread_id))
        for channel, chat_id, thread_id in targets:
            if self._approve_all is not None and len(changed.show) > 1:
                head = messages.REMINDERS_GROUP.format(count=len(changed.show))
                await self._approve_all.show(changed.show, head, channel, chat_id, thread_id)
                continue
            for row in changed.show:
                await self._ui.show(row.id, channel, chat_id, thread_id)

    async def digest_lines(self) -> list[str]:
        """The digest's part: aging of open invoices, and how many reminders wait for approval."""
        records = await self._service.records.all("invoice")
        invoices = (r.data for r in records if isinstance(r.data, Invoice))
        lines = aging_lines(invoices, self._service.today(), decimals)
        waiting = sum(len(rows) for rows in (await self._service.pending()).values())
        if waiting:
            lines.append(messages.REMINDERS_WAITING.format(count=waiting))
        return lines


async def open_receivables(
    settings: Settings,
    db: Database,
    records: Records,
    approvals: ApprovalService,
    ui: ApprovalUI,
    control: ControlStore,
    messenger: Messenger,
    is_paused: Callable[[], bool],
    stack: AsyncExitStack,
    profile: ProfileStore | None = None,
    pipeline: Pipeline | None = None,
    goals: GoalService | None = None,
) -> ReceivablesLoop | None:
    """The loop, when Stripe is configured: events polled (and, in webhook mode, the listener started).
    ``profile`` words the reminders; a payment moves its payer in ``pipeline`` and reaches ``goals``."""
    stripe_settings = settings_of(settings, StripeSettings)
    if not stripe_settings.configured:
        return None
    events = StripeEventStore(db)
    await events.setup()
    poller = StripeEventPoller(stripe_settings, events)
    stack.push_async_callback(poller.close)
    wakeup = asyncio.Event()
    if stripe_settings.webhook_secret is not None:
        webhook = StripeWebhook(stripe_settings, events, wakeup.set)
        await webhook.start()
        stack.push_async_callback(webhook.stop)
        log.info("stripe webhook listening on %s%s", stripe_settings.webhook_listen, WEBHOOK_PATH)
    linked = None
    if goals is not None:
        evidence = EvidenceStore(db)
        await evidence.setup()
        linked = GoalPayments(approvals, evidence, goals)
    service = Receivables(
        approvals, records, settings.receivables, settings.timezone, decimals,
        profile=profile, pipeline=pipeline, goals=linked,
    )  # fmt: skip
    return ReceivablesLoop(
        service,
        events,
        poller,
        ui,
        control,
        messenger,
        (stripe_settings.events_poll_s, settings.followups.check_s),
        is_paused,
        wakeup,
        ApproveAll(ui, control, messenger.send),
    )
