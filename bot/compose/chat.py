"""The chat side of the composition root: the commands ``/help`` lists (in its order), and who answers a
button press by its prefix (see :mod:`bot.compose.root`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from bot.approval_ui import ApprovalUI
from bot.commands.approvals import register_approval_commands
from bot.commands.budget import BudgetCommands
from bot.commands.core import register_core_commands
from bot.commands.goals import GoalCommands
from bot.commands.mcp import McpCommands
from bot.commands.memory import register_memory_commands
from bot.commands.policy import PolicyCommands
from bot.commands.router import CommandRouter
from bot.digest import DigestService
from bot.dispatcher import ButtonHandler, Handlers, TextHook
from bot.memory_repair import MemoryRepair
from bot.messages import InboundMessage
from bot.receivables import ReceivablesLoop
from bot.routines import register_routines
from bot.settings import Settings
from bot.stores import Stores
from connectors.base import Context
from graph.approvals.service import ApprovalService
from graph.buttons import Prefix
from graph.conversation.coordinator import Coordinator
from memory.mail import MailStore
from memory.semantic.chat_notes import chat_note
from memory.semantic.ingest import Ingestor

if TYPE_CHECKING:
    from memory.semantic.api import Memory


@dataclass(frozen=True)
class ChatParts:
    """What answers in chat besides the coordinator: the feature commands that also own buttons."""

    budgets: BudgetCommands
    policy: PolicyCommands
    goals: GoalCommands
    mcp: McpCommands
    receivables: ReceivablesLoop | None


@dataclass(frozen=True)
class Upkeep:
    """Semantic memory's background work: ingesting notes, and repairing the index (None without memory)."""

    ingestor: Ingestor | None
    repair: MemoryRepair | None


def register_commands(
    commands: CommandRouter,
    settings: Settings,
    stores: Stores,
    approvals: ApprovalService,
    ui: ApprovalUI,
    digest: DigestService,
    memory: Memory | None,
    upkeep: Upkeep,
    context: Callable[[], Context],
    parts: ChatParts,
    status: Callable[[], list[str]],
) -> None:
    """The commands of the core, approvals, budgets, policy, routines, memory, the digest, goals and MCP, in the
    order /help lists them (the features opened before registered theirs already)."""
    register_core_commands(commands, runtime_status=status)
    register_approval_commands(commands, approvals, ui, context)
    parts.budgets.register(commands)
    parts.policy.register(commands)
    register_routines(commands, stores.control, stores.db)
    register_memory_commands(
        commands,
        stores.db,
        memory,
        stores.notes,
        stores.profile,
        settings.memory.scope,
        upkeep.repair.request if upkeep.repair else lambda: None,
        upkeep.ingestor.add if upkeep.ingestor else None,
        MailStore(stores.db),
    )

    async def digest_now(inbound: InboundMessage, _: str) -> str:
        await digest.deliver([(inbound.channel, inbound.chat_id, inbound.thread_id)])
        return ""

    commands.add("digest", "Send the digest now", digest_now, confidential=True)
    parts.goals.register(commands)
    parts.mcp.register(commands)


def handlers(
    coordinator: Coordinator, ui: ApprovalUI, stores: Stores, parts: ChatParts, upkeep: Upkeep, settings: Settings
) -> Handlers:
    """What the dispatcher hands an accepted update to: buttons by prefix (the rest are cards), the coordinator."""
    buttons: dict[str, ButtonHandler] = {
        Prefix.BUDGET: parts.budgets.on_press,
        Prefix.POLICY: parts.policy.on_press,
        Prefix.GOAL: parts.goals.on_press,
        Prefix.MCP: parts.mcp.on_press,
    }
    if parts.receivables is not None and parts.receivables.approve_all is not None:
        buttons[Prefix.APPROVE_ALL] = parts.receivables.approve_all.on_press
    hook = _ingest_hook(upkeep.ingestor, settings) if upkeep.ingestor else None
    return Handlers(coordinator, ui, stores.control, buttons=buttons, on_operator_text=hook)


def _ingest_hook(ingestor: Ingestor, settings: Settings) -> TextHook:
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
