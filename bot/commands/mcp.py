"""/mcp: the operator's MCP tools with their class, and /mcp trust (asks for confirmation, like /policy).
Nothing a server or the model writes reaches the trust decision: only a press by an operator in the chat
where it was asked, before it expires."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from bot.commands.router import CommandRouter
from bot.confirmations import Confirmations
from bot.messages import InboundMessage, OutboundMessage
from bot.messenger import Messenger
from connectors.base import ActionError
from connectors.mcp.settings import QUALIFIED_TOOL
from graph.errors import UserFacingError
from memory.control import ControlStore
from prompts.messages import (
    MCP_LEGEND,
    MCP_NONE,
    MCP_SERVER_LINE,
    MCP_TOOL_LINE,
    MCP_TRUST_CONFIRM,
    MCP_TRUST_KEPT,
    MCP_TRUST_STALE,
    MCP_TRUSTED,
    MCP_USAGE,
)

if TYPE_CHECKING:  # the MCP SDK is imported only when servers are configured
    from connectors.mcp.family import McpFamily
    from connectors.mcp.hub import McpHub

BUTTON_PREFIX = "mc"
_PENDING = "mcp.trust.pending:"


def describe_tools(hub: McpHub | None, family: McpFamily | None) -> str:
    """Every server, its state, and each tool's class with why (for /mcp and ``coo mcp``)."""
    if hub is None or family is None or not hub.settings.servers:
        return MCP_NONE
    classes = family.classes()
    lines = []
    for server, state in hub.states.items():
        detail = f", {state.detail}" if state.detail else ""
        lines.append(MCP_SERVER_LINE.format(server=server, transport=state.transport, state=state.state, detail=detail))
        for c in (c for c in classes if c.tool.server == server):
            lines.append(MCP_TOOL_LINE.format(tool=c.tool.name, cls=c.cls, why=c.why))
    return "\n".join([*lines, "", MCP_LEGEND])


class McpCommands:
    """``/mcp`` and its confirmation buttons (``mc:<ok|no>:<id>:<nonce>``)."""

    def __init__(
        self,
        hub: McpHub | None,
        family: McpFamily | None,
        control: ControlStore,
        messenger: Messenger,
        confirm_within: timedelta = timedelta(minutes=15),
    ) -> None:
        self._hub = hub
        self._family = family
        self._messenger = messenger
        self._confirmations = Confirmations(control, BUTTON_PREFIX, _PENDING, confirm_within)

    def register(self, router: CommandRouter) -> None:
        """Add /mcp."""
        router.add("mcp", "Tool servers (MCP): list, or trust a tool as read-only", self.mcp, confidential=True)

    async def mcp(self, inbound: InboundMessage, args: str) -> str:
        words = args.split()
        if not words or self._family is None:
            return describe_tools(self._hub, self._family)
        if len(words) != 2 or words[0].lower() != "trust" or not QUALIFIED_TOOL.match(words[1]):
            raise UserFacingError(MCP_USAGE)
        try:
            tool = self._family.tool_for_trust(words[1])
        except ActionError as exc:
            raise UserFacingError(str(exc)) from None
        await self._ask(inbound, tool.qualified, tool.fingerprint, tool.description)
        return ""

    async def _ask(self, inbound: InboundMessage, qualified: str, fingerprint: str, description: str) -> None:
        buttons = await self._confirmations.ask(inbound, {"tool": qualified, "fingerprint": fingerprint})
        minutes = self._confirmations.minutes
        text = MCP_TRUST_CONFIRM.format(tool=qualified, description=repr(description[:300]), minutes=minutes)
        await self._messenger.send(OutboundMessage.reply_to(inbound, text, buttons))

    async def on_press(self, inbound: InboundMessage) -> None:
        """A press on a confirmation (the operator check already ran). Forged data changes nothing."""
        answer = await self._confirmations.answer(inbound)
        if answer is None or self._family is None:
            return
        tool = str(answer.asked.get("tool", ""))
        if not answer.fresh:
            text = MCP_TRUST_STALE
        elif answer.confirmed:
            try:
                await self._family.trust(tool, str(answer.asked.get("fingerprint", "")), inbound.sender)
                text = MCP_TRUSTED.format(tool=tool, who=inbound.sender)
            except ActionError as exc:
                text = str(exc)
        else:
            text = MCP_TRUST_KEPT.format(tool=tool)
        await self._messenger.send(OutboundMessage.reply_to(inbound, text))
