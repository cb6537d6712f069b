"""The chat side of cards and goals built directly on the goal layer's real parts (tests/graph/parts.py): the
approval UI on a recording chat channel, and a command router to register commands in. No runtime, no
coordinator: a card made here comes from a command or a goal, so no conversation is resumed."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bot.approval_ui import ApprovalUI
from bot.commands.router import CommandRouter
from bot.messages import InboundMessage
from bot.messenger import Messenger
from connectors.email import EmailAction
from memory.approvals import ApprovalRow
from tests.conftest import RecordingChannel
from tests.fakes.openai_api import FakeOpenAI
from tests.graph.parts import OPERATOR, SESSION, GoalParts, goal_parts

_keys = itertools.count(1)
SMTP = {"host": "127.0.0.1", "port": 2525, "from_addr": "coo@example.org"}
"""Email configured (nothing is sent here: no outbox runs), so /email and reply cards can be built."""


@dataclass
class Chat:
    """The goal layer's parts, the approval UI on channel ``rec`` (chat 1001) and a router."""

    parts: GoalParts
    messenger: Messenger
    chan: RecordingChannel
    ui: ApprovalUI
    router: CommandRouter = field(default_factory=CommandRouter)
    wakes: list[None] = field(default_factory=list)

    def inbound(self, text: str, sender: str = OPERATOR, chat: str = "1001", **more: Any) -> InboundMessage:
        """A message in the chat (a command when it starts with /), with a fresh update key."""
        more.setdefault("kind", "command" if text.startswith("/") else "message")
        return InboundMessage("rec", chat, sender, text, update_key=f"k{next(_keys)}", **more)

    async def say(self, text: str, sender: str = OPERATOR, chat: str = "1001") -> str:
        """Run a command as ``sender`` in ``chat``; its answer."""
        return await self.router.run(self.inbound(text, sender, chat))

    async def email_card(self, subject: str = "Proposal ready", shown: bool = True) -> ApprovalRow:
        """A pending email card to ana@example.org, shown in the chat unless ``shown`` is False."""
        email = EmailAction(from_addr="coo@example.org", to=("ana@example.org",), subject=subject, body="Hi Ana")
        proposal = await self.parts.approvals.propose(email, SESSION, "command", OPERATOR)
        assert proposal.approval is not None
        if shown:
            await self.ui.show(proposal.approval.id, "rec", "1001", None)
        return proposal.approval

    async def state(self, approval_id: str) -> str:
        row = await self.parts.approvals.store.get(approval_id)
        assert row is not None
        return row.state


@asynccontextmanager
async def chat_parts(tmp_path: Path, fake: FakeOpenAI, **more: Any) -> AsyncIterator[Chat]:
    """:func:`goal_parts` plus the approval UI on a recording channel; ``more`` as for goal_parts."""
    async with goal_parts(tmp_path, fake, **more) as parts:
        messenger, chan = Messenger(parts.stores.db), RecordingChannel("rec")
        messenger.attach(chan)
        box: list[Chat] = []

        async def resume(session: str, root_id: str, decision: dict[str, str]) -> Any:
            raise AssertionError(f"no conversation waits on a command's card ({session}, {decision})")

        ui = ApprovalUI(parts.approvals, resume, messenger, lambda: box[0].wakes.append(None), parts.contexts.proposal)
        box.append(Chat(parts, messenger, chan, ui))
        yield box[0]
