"""The follow-ups loop at the edge: a due check every ``check_s`` (and at start), replies applied as soon as
the inbox stores mail, and what came up shown in every operator's own chat (cards, or reminders)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime

from bot.approval_ui import ApprovalUI
from bot.commands.followups import FollowupCommands
from bot.commands.router import CommandRouter
from bot.digest import home_chats
from bot.messages import OutboundMessage
from bot.messenger import Messenger
from graph.approvals.service import ApprovalService
from graph.followups.book import FollowupBook
from graph.followups.service import Changed, DueFollowups
from graph.followups.settings import FollowupsSettings
from memory.aio import wait_at_most
from memory.approvals import ApprovalRow
from memory.control import ControlStore
from memory.db import Database, utcnow
from memory.followups import Followup, FollowupStore
from memory.records import Records

log = logging.getLogger(__name__)

LAST_CHECK = "followups.last_check"
Target = tuple[str, str, str | None]


class FollowupsLoop:
    """Runs the due check every ``check_s``; :meth:`wake` (the inbox stored mail) applies replies now."""

    def __init__(
        self,
        service: DueFollowups,
        ui: ApprovalUI,
        control: ControlStore,
        messenger: Messenger,
        check_s: float,
        is_paused: Callable[[], bool] = lambda: False,
    ) -> None:
        self._service = service
        self._ui = ui
        self._control = control
        self._messenger = messenger
        self._check_s = check_s
        self._is_paused = is_paused
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()

    @property
    def service(self) -> DueFollowups:
        """The due check."""
        return self._service

    def wake(self) -> None:
        """New mail was stored: look for replies now."""
        self._wake.set()

    async def run_forever(self) -> None:
        """Until cancelled. A failed step is logged and tried again at its next turn."""
        next_check = time.monotonic()
        while True:
            woken = self._wake.is_set()
            self._wake.clear()
            if not self._is_paused():
                if time.monotonic() >= next_check:
                    next_check = time.monotonic() + self._check_s
                    await self._step("checking due follow-ups", self.check)
                elif woken:
                    await self._step("applying replies to follow-ups", self.replies)
            await wait_at_most(self._wake.wait(), max(0.05, next_check - time.monotonic()))

    async def _step(self, what: str, run: Callable[[], Awaitable[None]]) -> None:
        try:
            await run()
        except Exception:
            log.exception("follow-ups: %s failed", what)

    async def check(self) -> None:
        """One due check; what came up is shown. How long it took is stored (status, tests, the bench)."""
        started = time.perf_counter()
        async with self._lock:
            await self._show(await self._service.check_due())
            await self._deliver()
        took_ms = (time.perf_counter() - started) * 1000
        await self._control.put(LAST_CHECK, {"at": utcnow().isoformat(), "ms": round(took_ms, 3)})

    async def replies(self) -> None:
        """Cancel the automatic follow-ups that new mail answers."""
        async with self._lock:
            await self._show(await self._service.replies_seen())

    async def _show(self, changed: Changed) -> None:
        for row, status in changed.withdrawn:
            await self._ui.refresh(row, status)

    async def _deliver(self) -> None:
        """Show each proposed card (or reminder), then mark it shown. Until an operator has a chat with us,
        and while a card's every send fails, it waits for the next check; a crash between showing and
        marking shows it again (a card shown twice still decides one approval)."""
        targets = await home_chats(self._control)
        if not targets:
            return
        for followup, row in await self._service.to_deliver():
            try:
                await self._deliver_one(followup, row, targets)
            except Exception:  # one refused send must not hold back the others; tried again next check
                log.exception("follow-ups: could not show follow-up #%d", followup.id)

    async def _deliver_one(self, followup: Followup, row: ApprovalRow | None, targets: list[Target]) -> None:
        if followup.approval_id is None:
            text = self._service.reminder_text(followup)
            for channel, chat_id, thread_id in targets:
                await self._messenger.notice(OutboundMessage(channel, chat_id, text, thread_id))
        elif row is not None and row.state == "pending":
            if not any(card.message_id for card in row.cards):
                for channel, chat_id, thread_id in targets:
                    await self._ui.show(row.id, channel, chat_id, thread_id)
            shown = await self._service.card(row.id)
            if shown is None or not any(card.message_id for card in shown.cards):
                return  # not seen anywhere yet: the next check tries again
        await self._service.book.store.mark_delivered(followup.id)

    async def digest_lines(self) -> list[str]:
        """The digest's part: follow-ups due today."""
        return await self._service.due_today()


async def open_followups(
    settings: FollowupsSettings,
    timezone: str,
    db: Database,
    records: Records,
    approvals: ApprovalService,
    ui: ApprovalUI,
    control: ControlStore,
    messenger: Messenger,
    commands: CommandRouter,
    is_paused: Callable[[], bool],
    today: Callable[[], datetime] = utcnow,
) -> FollowupsLoop:
    """The store set up, ``/followup`` and ``/followups`` registered, and the loop for the runtime to start."""
    store = FollowupStore(db)
    await store.setup()
    book = FollowupBook(store, records, timezone, today)
    FollowupCommands(book).register(commands)
    service = DueFollowups(book, approvals, settings, timezone, today)
    return FollowupsLoop(service, ui, control, messenger, settings.check_s, is_paused)
