"""What is open while solo-coo runs (:class:`Runtime`), and what ``coo run`` opens before it (:class:`Intake`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TextIO

from bot.access import AccessGuard
from bot.channels.console import ConsoleChannel
from bot.commands.router import CommandRouter
from bot.dispatcher import Dispatcher
from bot.messages import Channel, InboundMessage
from bot.messenger import Messenger
from bot.settings import Settings
from bot.stores import Stores
from memory.control import ControlStore
from memory.db import Database
from memory.ledger import CostLedger
from memory.operators import OperatorStore
from memory.tasks import TaskLedger

if TYPE_CHECKING:
    from bot.approval_ui import ApprovalUI
    from bot.commands.budget import Controls
    from bot.digest import DigestService
    from bot.inbox_runtime import Loop
    from bot.memory_repair import MemoryRepair
    from bot.receivables import ReceivablesLoop
    from bot.scheduler import Scheduler
    from bot.web.server import WebConsole
    from connectors.outbox import OutboxRunner
    from graph.approvals.service import ApprovalService
    from graph.conversation.coordinator import Coordinator
    from graph.goals.runner import TaskRunner
    from graph.goals.service import GoalService
    from memory.semantic.api import Memory
    from memory.semantic.ingest import Ingestor


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
class ConsoleWish:
    """Whether to open the terminal channel (None: only without a platform channel), and its streams."""

    wanted: bool | None
    stdin: TextIO | None
    stdout: TextIO | None


@dataclass(frozen=True)
class Intake:
    """What ``coo run`` opens before anything heavy: enough to store updates (I3) and refuse strangers (I6)."""

    stores: Stores
    guard: AccessGuard
    pairing_code: str | None
    messenger: Messenger
    commands: CommandRouter
    dispatcher: Dispatcher
    pending: list[tuple[InboundMessage, int | None]]
    started: list[Channel]
    """Channels already receiving (Telegram): their updates are stored and wait for the rest."""
