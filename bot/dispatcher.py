"""The core entry for every inbound update: access check, durable claim, then command or coordinator.

Adapters call :meth:`Dispatcher.accept`, which returns once the update is refused or stored (I3:
only then may the platform be told it arrived); handling goes on in a task of its own. Turns
within one conversation run in order; conversations run concurrently.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from bot.access import AccessGuard, Verdict
from bot.commands.router import CommandRouter
from bot.messages import Channel, ChannelUnreachable, InboundMessage, inbound_from_json, inbound_to_json
from bot.messenger import Messenger
from bot.refusals import Refusals
from bot.reply import Reply
from graph.buttons import prefix_of
from graph.errors import UserFacingError
from memory.db import Claim, Database, clean_text
from prompts.messages import ANSWERED_PRIVATELY, EDITED_COMMAND, GENERIC_ERROR, NEEDS_PRIVATE_CHAT, TOO_LONG_TO_READ

if TYPE_CHECKING:  # the heavy parts are built after the dispatcher: keep importing this module light
    from bot.approval_ui import ApprovalUI
    from graph.conversation.coordinator import Coordinator
    from memory.control import ControlStore

log = logging.getLogger(__name__)

ButtonHandler = Callable[[InboundMessage], Awaitable[None]]
TextHook = Callable[[InboundMessage, int], None]
MAX_INPUT_CHARS = 100_000


@dataclass(frozen=True)
class Handlers:
    """What handles an accepted update: bound once the heavy parts are built (see :meth:`Dispatcher.bind`)."""

    coordinator: Coordinator
    approvals: ApprovalUI
    control: ControlStore
    buttons: Mapping[str, ButtonHandler]
    """Button presses go to the handler registered for the data's prefix; the rest are cards."""
    on_operator_text: TextHook | None = None
    """Called with each free-text operator message and its event id (semantic memory ingestion)."""


class Dispatcher:
    """Receives InboundMessages from every channel; builds one :class:`Reply` per answer for the messenger.

    It can accept (check, store) updates before it can handle them: ``coo run`` starts polling with
    only the database open, and handling begins once :meth:`bind` brings the model, the graph and
    the rest; what arrived meanwhile is stored and waits, in order. (That is why handling is bound
    after construction: the handlers are built from the model and the graph, which are imported in a
    worker thread while Telegram already polls into this dispatcher.)
    """

    def __init__(
        self,
        db: Database,
        guard: AccessGuard,
        commands: CommandRouter,
        messenger: Messenger,
        handlers: Handlers | None = None,
        redeliver_s: float = 5.0,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        """``redeliver_s``: the pause before a turn whose answer could not be delivered runs again, taken
        with ``sleep`` (tests pass one that records the pause instead of waiting it out)."""
        self._db = db
        self._guard = guard
        self._commands = commands
        self._messenger = messenger
        self._handlers = handlers
        self._ready = asyncio.Event()
        if handlers is not None:
            self._ready.set()
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._refusals = Refusals(db, guard, messenger)
        self._homes: dict[str, tuple[str, str, str | None]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._quiet = asyncio.Event()
        self._quiet.set()
        self._redeliver_s = redeliver_s
        self._sleep = sleep

    def bind(self, handlers: Handlers) -> None:
        """Start handling: updates accepted so far are handled now, in the order they came.

        The one step after construction, kept so that updates are stored (I3) while the handlers are still
        being built: ``coo run`` polls before it loads the rest (see the class docstring).
        """
        self._handlers = handlers
        self._ready.set()

    @property
    def _bound(self) -> Handlers:
        assert self._handlers is not None, "Dispatcher.bind() was not called"
        return self._handlers

    def attach(self, channel: Channel) -> None:
        """Make a channel available for replies (the messenger's; kept for the tests that hold the dispatcher)."""
        self._messenger.attach(channel)

    async def accept(self, inbound: InboundMessage) -> asyncio.Task[None] | None:
        """Check access (first, I6), store the update (I3), and start handling it.

        Returns the handling task, or None for a duplicate. Raises when the update could not be
        stored: the adapter must then not acknowledge it, so the platform delivers it again.
        """
        return (await self.accept_many([inbound]))[0]

    async def accept_many(self, inbounds: Sequence[InboundMessage]) -> list[asyncio.Task[None] | None]:
        """:meth:`accept` for a platform's batch of updates, stored in one commit (all, or none and it raises).

        Handling starts in the batch's order, so each conversation's turns keep their order. An update
        whose access check fails is refused on its own (see :meth:`_check`); the rest go on.
        """
        verdicts = [await self._check(inbound) for inbound in inbounds]
        for inbound, verdict in zip(inbounds, verdicts, strict=True):
            if verdict is Verdict.ERROR:  # its refusal is on record before the platform is told it arrived (I3)
                await self._refusals.audit(inbound, verdict)
        allowed = [
            replace(i, text=clean_text(i.text)) for i, v in zip(inbounds, verdicts, strict=True) if v is Verdict.ALLOW
        ]
        claimed = iter(await self._db.claim_updates([self._claim(i) for i in allowed if i.update_key is not None]))
        ready = iter(allowed)
        tasks: list[asyncio.Task[None] | None] = []
        for inbound, verdict in zip(inbounds, verdicts, strict=True):
            if verdict is not Verdict.ALLOW:
                tasks.append(self._spawn(self._refusals.refuse(inbound, verdict), f"refuse {inbound.sender}"))
                continue
            inbound = next(ready)
            if inbound.update_key is None:  # no platform delivery id (the console): logged, nothing to dedupe
                claim = self._claim(inbound)
                event_id: int | None = await self._db.append_event(
                    "message.in", inbound.sender, claim.logged, session=inbound.session_key
                )
            else:
                event_id = next(claimed)
            if event_id is None:
                log.info("duplicate delivery %s dropped", inbound.update_key)
                tasks.append(None)
                continue
            tasks.append(self._spawn(self._process(inbound, event_id, replaying=False), f"update {inbound.update_key}"))
        return tasks

    async def _check(self, inbound: InboundMessage) -> Verdict:
        """The access check for one update; if it fails, that update alone is refused (fail closed).

        One update the check cannot decide must not fail the whole batch: the batch would never be
        stored, the platform would deliver it again and again, and nobody would be answered. It is
        refused like a stranger's (not stored, audited, answered with the generic error); the failure
        is logged here, once.
        """
        try:
            return await self._guard.check(inbound)
        except Exception:
            log.exception(
                "access check failed for update %s in session %s; refused", inbound.update_key, inbound.session_key
            )
            return Verdict.ERROR

    def _loggable(self, text: str) -> str:
        """``text`` as the event log may keep it. Until the commands are registered it is not known which
        are private, so every command's arguments are withheld (fail closed)."""
        if self._ready.is_set():
            return self._commands.loggable(text)
        parsed = CommandRouter.parse(text)
        return f"/{parsed[0]} [withheld]" if parsed and parsed[1] else text

    def _claim(self, inbound: InboundMessage) -> Claim:
        """What storing an update writes: the update itself and its ``message.in`` event (a private
        command's arguments withheld)."""
        logged = {"text": self._loggable(inbound.text[:MAX_INPUT_CHARS]), "kind": inbound.kind}
        return Claim(inbound.update_key or "", inbound.session_key, inbound_to_json(inbound), inbound.sender, logged)

    async def handle(self, inbound: InboundMessage) -> None:
        """Accept an update and wait until it is handled (the console, tests)."""
        task = await self.accept(inbound)
        if task is not None:
            await task

    async def pending(self) -> list[tuple[InboundMessage, int | None]]:
        """Deliveries a crash left stored but unfinished, oldest first (an unreadable one is logged and closed)."""
        found = []
        for key, payload, event_id in await self._db.pending_updates():
            try:
                found.append((inbound_from_json(payload), event_id))
            except (KeyError, TypeError, ValueError):
                log.error("stored update %s cannot be read back; it is not replayed", key)
                await self._db.finish_update(key)
        return found

    async def replay_pending(self) -> int:
        """Handle again what a crash left stored but unfinished, for every attached channel; wait for it."""
        tasks = await self.replay(await self.pending(), self._messenger.channel_names())
        await asyncio.gather(*tasks)
        return len(tasks)

    async def replay(
        self, pending: list[tuple[InboundMessage, int | None]], channels: set[str]
    ) -> list[asyncio.Task[None]]:
        """Start handling again the unfinished deliveries of ``channels`` (I3: never lost once stored).

        The tasks start in order, so each takes its conversation's turn before newer updates do.
        """
        tasks = []
        for inbound, event_id in pending:
            if inbound.channel in channels and await self._guard.allowed(inbound.sender):
                coro = self._process(inbound, event_id or 0, replaying=True)
                tasks.append(self._spawn(coro, f"replay {inbound.update_key}"))
        return tasks

    async def drain(self, timeout_s: float) -> None:
        """Let in-flight handling finish (up to ``timeout_s``), then cancel what is left.

        Before :meth:`bind` nothing can finish: what waits is cancelled at once (it stays stored and
        is handled after the next start).
        """
        if self._tasks and self._ready.is_set():
            await asyncio.wait(set(self._tasks), timeout=timeout_s)
        for task in set(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def in_flight(self) -> list[asyncio.Task[None]]:
        """The handling tasks not finished yet (a stop waits for them, within its grace)."""
        return list(self._tasks)

    async def quiet(self) -> None:
        """Until no accepted update is being handled or waiting (background work yields to replies)."""
        await self._quiet.wait()

    def _spawn(self, coro: Awaitable[None], name: str) -> asyncio.Task[None]:
        task = asyncio.ensure_future(coro)
        task.set_name(name)
        self._tasks.add(task)
        self._quiet.clear()
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not self._tasks:
            self._quiet.set()

    async def _process(self, inbound: InboundMessage, event_id: int, replaying: bool) -> None:
        await self._ready.wait()
        # One turn at a time per conversation; other conversations run concurrently.
        async with self._locks[inbound.session_key]:
            while not await self._turn(inbound, event_id, replaying):
                if inbound.update_key is None:
                    return  # nothing stored to answer again (the console never gets here)
                # Not delivered and not finished (I3): it runs again as a replay (what was sent is not
                # sent twice, a finished model call is not made again) until it is, or until a stop
                # leaves it to the next start.
                replaying = True
                await self._sleep(self._redeliver_s)
            if inbound.update_key is not None:
                await self._db.finish_update(inbound.update_key)

    async def _turn(self, inbound: InboundMessage, event_id: int, replaying: bool) -> bool:
        """Handle one update; False when its answer could not be delivered (the platform is unreachable)."""
        with self._messenger.turn(inbound.update_key, replaying):
            try:
                reply = await self._answer(inbound, event_id, replaying)
                if reply is not None:
                    await self._messenger.deliver(reply, self._bound.approvals.show)
            except ChannelUnreachable as exc:
                log.warning("update %s: the answer could not be delivered (%s); it stays due", inbound.update_key, exc)
                return False
            except UserFacingError as exc:
                return await self._tell(inbound, Reply.to(inbound, exc.reason))
            except Exception:
                log.exception("failed to handle update %s in session %s", inbound.update_key, inbound.session_key)
                return await self._tell(inbound, Reply.to(inbound, GENERIC_ERROR))
        return True

    async def _tell(self, inbound: InboundMessage, reply: Reply) -> bool:
        """Send an error's answer; False when the platform could not be reached (the update then stays due).
        Any other failure (a blocked chat, Slack's not_in_channel) is logged once: the update is still
        finished, not replayed (and redone) on every start."""
        try:
            await self._messenger.deliver(reply)
        except ChannelUnreachable as exc:
            log.warning("update %s: the answer could not be delivered (%s); it stays due", inbound.update_key, exc)
            return False
        except Exception:
            log.exception(
                "could not deliver the answer to update %s in session %s", inbound.update_key, inbound.session_key
            )
        return True

    async def _answer(self, inbound: InboundMessage, event_id: int, replaying: bool) -> Reply | None:
        """What an accepted update is answered (None: nothing, or its handler answered itself, as presses do)."""
        if inbound.kind == "callback":
            handler = self._bound.buttons.get(prefix_of(inbound.callback_data))
            await (handler or self._bound.approvals.on_press)(inbound)
            return None
        await self._remember_home(inbound)
        if inbound.kind == "other":
            return None  # e.g. reactions or membership changes: nothing to answer
        if inbound.kind == "edit" and CommandRouter.parse(inbound.text):
            # Editing a message fixes it; it is not a new order. Running the command again could send,
            # charge or publish a second time (where the policy lets a command act without a card).
            raise UserFacingError(EDITED_COMMAND)
        if inbound.kind == "command" or CommandRouter.parse(inbound.text):
            return await self._command(inbound)
        if len(inbound.text) > MAX_INPUT_CHARS:
            raise UserFacingError(TOO_LONG_TO_READ.format(chars=len(inbound.text), limit=MAX_INPUT_CHARS))
        if inbound.kind == "message" and await self._bound.approvals.take_edit(inbound):
            return None
        if not inbound.text.strip():
            raise UserFacingError("I can only read text for now.")
        on_text = self._bound.on_operator_text
        if on_text is not None and not replaying:
            on_text(inbound, event_id)
        channel = self._messenger.channel(inbound.channel)
        async with channel.typing(inbound.chat_id, inbound.thread_id):
            result = await self._bound.coordinator.respond(
                inbound.session_key,
                inbound.text,
                inbound.sender,
                turn_key=inbound.update_key,
                replaying=replaying,
                answering=event_id or None,
            )
        return Reply.of_turn(result, inbound.channel, inbound.chat_id, inbound.thread_id)

    async def _command(self, inbound: InboundMessage) -> Reply | None:
        """Run a slash command; a confidential one typed in a group answers in the operator's private chat."""
        target = inbound
        if self._commands.is_confidential(inbound.text) and not inbound.in_private_chat:
            private = await self._private_chat(inbound)
            if private is None:
                raise UserFacingError(NEEDS_PRIVATE_CHAT)
            target = replace(inbound, chat_id=private[1], thread_id=private[2])
            await self._messenger.deliver(Reply.to(inbound, ANSWERED_PRIVATELY))  # a pointer, before it runs
        answer = await self._commands.run(target)
        if not answer:
            return None
        return Reply.to(target, answer, log_text="[withheld]" if self._commands.is_private(inbound.text) else None)

    async def _private_chat(self, inbound: InboundMessage) -> tuple[str, str, str | None] | None:
        """The sender's private chat on this channel: where they last wrote privately, else (Telegram) their id."""
        home = self._homes.get(inbound.sender) or await self._bound.control.get(f"home:{inbound.sender}")
        if home and home[0] == inbound.channel:
            return (str(home[0]), str(home[1]), home[2])
        if inbound.channel == "telegram":
            return ("telegram", inbound.sender.rsplit(":", 1)[-1], None)
        return None

    async def _remember_home(self, inbound: InboundMessage) -> None:
        """An operator's private chat is where the digest and alerts without a conversation go."""
        home = (inbound.channel, inbound.chat_id, inbound.thread_id)
        if inbound.in_private_chat and self._homes.get(inbound.sender) != home:
            await self._bound.control.put(f"home:{inbound.sender}", list(home))
            self._homes[inbound.sender] = home
