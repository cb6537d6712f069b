"""The approval service: turns proposed actions into approval rows and decides them (I1).

Approve is a compare-and-set pending -> approved that also queues the outbox row, after checking
the approver, the nonce, the chat the press came from, the expiry and the digest. Expiry or any
error means rejected (fail closed).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from connectors.base import Action, ActionKind, Executed
from connectors.registry import Registry
from graph.approvals.cards import Card, Verb, parse_button, render_card
from graph.approvals.policy import Policy, Risk, current_tolerance
from graph.errors import UserFacingError, user_facing
from graph.settings import ApprovalSettings
from memory.approvals import ApprovalRow, ApprovalStore, CardRef
from memory.control import ControlStore
from memory.db import Database, utcnow
from memory.install import content_digest
from prompts.messages import NOT_RESENDABLE

# Callers at the edge take these from here with the service (the card's text and buttons: ``cards.py``).
__all__ = ["ApprovalService", "Decision", "Proposal", "idempotency_key"]

log = logging.getLogger(__name__)

_ALPHABET = "abcdefghijkmnopqrstuvwxyz23456789"


@dataclass(frozen=True)
class Proposal:
    """What became of a proposed action."""

    risk: Risk
    approval: ApprovalRow | None


@dataclass(frozen=True)
class Decision:
    """The result of pressing a button. ``status`` "ignored" means: do nothing visible."""

    status: Literal["decided", "already", "expired", "ignored", "edit", "resend", "compensate"]
    approval: ApprovalRow | None = None
    verb: Verb | None = None
    proposed: ApprovalRow | None = None


class ApprovalService:
    """Creates, shows and decides approvals."""

    def __init__(
        self,
        store: ApprovalStore,
        db: Database,
        registry: Registry,
        settings: ApprovalSettings,
        operators: Callable[[], Collection[str]],
        control: ControlStore,
    ) -> None:
        self._store = store
        self._db = db
        self._registry = registry
        self._settings = settings
        self._operators = operators
        self._control = control

    @property
    def store(self) -> ApprovalStore:
        """The underlying store."""
        return self._store

    @property
    def registry(self) -> Registry:
        """The action kinds."""
        return self._registry

    def kind(self, name: str) -> ActionKind[Any]:
        """The kind of that name (UserFacingError when no connector declares it)."""
        with user_facing():
            return self._registry.kind(name)

    async def policy(self) -> Policy:
        """The policy now: the risk tolerance an operator set with /policy, else the configured one.

        Only operator commands write what this reads (I1): no tool, model output or profile field
        can loosen it. Forbidden kinds come from settings only; nothing can lift them.
        """
        return Policy(await current_tolerance(self._control, self._settings), self._settings.forbidden)

    def digest(self, action: Action) -> str:
        """The digest an approval of ``action`` carries on this install: keyed with its secret, so no file
        written elsewhere (a crafted export) can hold one that verifies (``memory.install``)."""
        return self._db.install.seal(action.digest())

    async def known_targets(self, kind: ActionKind[Any]) -> set[str]:
        """Targets an action of this kind already reached successfully from this install (e.g. addresses
        emailed before). Rows brought by an import, or whose digest does not verify here, are history,
        not trust: a backup must not widen what the policy lets through without a card."""
        known: set[str] = set()
        for row in await self._store.outbox_in("sent"):
            if row.kind != kind.name or row.restored:
                continue
            action = kind.parse(row.action)
            if self._db.install.verifies(action.digest(), row.digest):
                known.update(kind.targets(action))
        return known

    def approval_id(self, name: str) -> str:
        """The id of the approval for the proposal named ``name``
        (see :func:`graph.conversation.action_tools.approval_id_for`): unique to this install, so its
        idempotency key and Message-ID are too."""
        return self._db.install.scoped(name)

    async def find(self, name: str) -> ApprovalRow | None:
        """The approval proposed under ``name``; one stored under the bare name by a version before
        install-unique ids (a replay after an upgrade) is found too."""
        return await self._store.get(self.approval_id(name)) or await self._store.get(name)

    async def proposed(self, approval_id: str) -> Proposal | None:
        """The proposal recorded under the name ``approval_id``, if any."""
        row = await self.find(approval_id)
        if row is None:
            return None
        return Proposal(Risk.APPROVAL if row.decided_by != "policy" else Risk.DIRECT, row)

    async def propose_once(
        self,
        approval_id: str | None,
        build: Callable[[], Awaitable[Action]],
        thread: str,
        origin: str,
        requested_by: str,
    ) -> Proposal:
        """The proposal already recorded under ``approval_id`` (a replayed command, a node run again after a
        crash), else ``build()``'s action proposed under it. Building again is skipped, not just deduped: it
        may not give the same action (a due date the next day, a new goal) and may cost (planning)."""
        if approval_id is not None and (earlier := await self.proposed(approval_id)) is not None:
            return earlier
        return await self.propose(await build(), thread, origin, requested_by, approval_id)

    async def propose(
        self,
        action: Action,
        thread: str,
        origin: str,
        requested_by: str,
        approval_id: str | None = None,
        root_id: str | None = None,
        context: dict[str, Any] | None = None,
    ) -> Proposal:
        """Record a proposed action. Idempotent for a given ``approval_id`` (a node that re-runs); that
        name is made unique to this install (:meth:`approval_id`) before it becomes the row's id.

        ``context`` is the card's provenance (the goal, task and skill that proposed it, what it used,
        why); it is shown on the card but is not part of the action or its digest.
        """
        if approval_id is not None and (earlier := await self.proposed(approval_id)) is not None:
            assert earlier.approval is not None
            if earlier.approval.digest != self.digest(action):
                # Never show or run another action's card for this one (fail closed).
                raise RuntimeError(f"approval {approval_id} already holds a different action")
            return earlier
        kind = self.kind(action.kind)
        policy = await self.policy()
        known = await self.known_targets(kind) if kind.policy.relaxed_for_known_targets else set()
        risk = policy.assess(action, kind.policy, kind.targets(action), known)
        if risk is Risk.FORBIDDEN:
            await self._db.append_event("approval.forbidden", requested_by, {"kind": action.kind}, session=thread)
            return Proposal(risk, None)
        now = utcnow()
        new_id = self.approval_id(approval_id) if approval_id else "".join(secrets.choice(_ALPHABET) for _ in range(12))
        row = ApprovalRow(
            id=new_id,
            root_id=root_id or new_id,
            thread=thread,
            origin=origin,
            kind=action.kind,
            action=action.model_dump(mode="json"),
            digest=self.digest(action),
            approvers=tuple(sorted({*self._operators(), requested_by})),
            nonce="".join(secrets.choice(_ALPHABET) for _ in range(8)),
            created_at=now,
            expires_at=now + timedelta(hours=self._settings.ttl_hours),
            state="pending",
            decided_by=None,
            decided_at=None,
            cards=(),
            context=context or {},
        )
        await self._store.create(row)
        await self._db.append_event(
            "approval.requested",
            requested_by,
            {"approval_id": row.id, "kind": row.kind, "digest": row.digest, "risk": risk.value},
            session=thread,
        )
        if risk is Risk.DIRECT:
            key = idempotency_key(row.id, self._db.install.id)
            await self._store.decide(row.id, row.nonce, "approved", "policy", outbox_key=key)
            await self._db.append_event(
                "approval.decided",
                "policy",
                {"approval_id": row.id, "decision": "approved", "digest": row.digest},
                session=thread,
            )
        stored = await self._store.get(row.id)
        return Proposal(risk, stored)

    async def decide(self, data: str, approver: str, channel: str, chat_id: str) -> Decision:
        """Handle a button press. Forged, foreign or malformed presses change nothing."""
        parsed = parse_button(data)
        row = await self._store.get(parsed[1]) if parsed else None
        if parsed is None or row is None or not hmac.compare_digest(row.nonce, parsed[2]):
            await self._audit("approval.forged", approver, {"data": data[:80]}, None)
            return Decision("ignored")
        verb = parsed[0]
        shown_here = any(c.channel == channel and c.chat_id == chat_id for c in row.cards)
        if approver not in row.approvers or not shown_here:
            await self._audit("approval.foreign", approver, {"approval_id": row.id, "chat": chat_id}, row.thread)
            return Decision("ignored", row)
        if verb == "resend":
            return await self._resend(row, approver)
        if verb == "compensate":
            return await self._compensate(row, approver)
        if row.state != "pending":
            return Decision("already", row, verb)
        if utcnow() >= row.expires_at:
            await self.expire(row)
            return Decision("expired", await self._store.get(row.id), verb)
        if verb == "edit":
            await self._store.request_edit(row.thread, row.id)
            return Decision("edit", row, verb)
        if verb == "approve":
            # The stored payload must still hash to the digest the card showed (fail closed otherwise).
            action = self.kind(row.kind).parse(row.action)
            if not self._db.install.verifies(action.digest(), row.digest):
                log.error("approval %s: payload does not match its digest; rejecting", row.id)
                won = await self._store.decide(row.id, row.nonce, "rejected", "digest-mismatch")
                return Decision("decided" if won else "already", await self._store.get(row.id), "reject")
            key = idempotency_key(row.id, self._db.install.id)
            won = await self._store.decide(row.id, row.nonce, "approved", approver, outbox_key=key)
        else:
            won = await self._store.decide(row.id, row.nonce, "rejected", approver)
        decided = await self._store.get(row.id)
        if not won:
            return Decision("already", decided, verb)
        assert decided is not None
        await self._audit(
            "approval.decided",
            approver,
            {"approval_id": row.id, "decision": decided.state, "digest": row.digest},
            row.thread,
        )
        return Decision("decided", decided, verb)

    async def expire(self, row: ApprovalRow) -> bool:
        """Pending -> expired (rejected by time)."""
        won = await self._store.decide(row.id, row.nonce, "expired", "expiry")
        if won:
            await self._audit(
                "approval.decided",
                "expiry",
                {"approval_id": row.id, "decision": "expired", "digest": row.digest},
                row.thread,
            )
        return won

    async def withdraw(self, row: ApprovalRow, by: str) -> ApprovalRow | None:
        """Pending -> rejected without the operator (what it was for no longer needs it: the invoice it
        chases was paid). Returns the decided row, or None when it was decided meanwhile."""
        if not await self._store.decide(row.id, row.nonce, "rejected", by):
            return None
        await self._audit(
            "approval.decided", by, {"approval_id": row.id, "decision": "withdrawn", "digest": row.digest}, row.thread
        )
        return await self._store.get(row.id)

    async def expire_due(self) -> list[ApprovalRow]:
        """Expire every pending approval past its time; returns the ones this call expired."""
        expired = []
        for row in await self._store.due_expired(utcnow()):
            if await self.expire(row):
                fresh = await self._store.get(row.id)
                assert fresh is not None
                expired.append(fresh)
        return expired

    async def supersede(self, old: ApprovalRow, action: Action, editor: str) -> ApprovalRow:
        """Replace a pending approval by a corrected one (new id, new digest, new card)."""
        if not await self._store.decide(old.id, old.nonce, "superseded", editor):
            raise UserFacingError("That card was decided meanwhile; nothing was changed.")
        await self._audit(
            "approval.decided",
            editor,
            {"approval_id": old.id, "decision": "superseded", "digest": old.digest},
            old.thread,
        )
        proposal = await self.propose(action, old.thread, old.origin, editor, root_id=old.root_id, context=old.context)
        if proposal.approval is None:
            raise UserFacingError("That action is forbidden by your policy.")
        return proposal.approval

    async def current(self, approval_id: str, goal_id: str) -> ApprovalRow | None:
        """A goal's card itself, or, when it was edited, the correction that replaced it."""
        row = await self._store.get(approval_id)
        if row is None or row.state != "superseded":
            return row
        successors = [r for r in await self._store.for_goal(goal_id) if r.root_id == row.root_id]
        return next((r for r in successors if r.state != "superseded"), None)

    async def add_card(self, approval_id: str, card: CardRef) -> None:
        """Remember where a card was shown (presses are only accepted from those chats)."""
        await self._store.add_card(approval_id, card)

    def render(self, row: ApprovalRow, status: str | None = None, buttons: tuple[tuple[str, str], ...] = ()) -> Card:
        """The card of ``row`` (see :func:`graph.approvals.cards.render_card`)."""
        return render_card(self.kind(row.kind), row, status, buttons)

    async def _resend(self, row: ApprovalRow, approver: str) -> Decision:
        outbox = await self._store.outbox(row.id)
        if outbox is None:
            return Decision("ignored", row)  # there is nothing to resend: no button ever offered this
        if outbox.state != "unknown":
            return Decision("already", row, "resend")
        if not self._db.install.verifies(content_digest(outbox.action), outbox.digest):
            raise UserFacingError(NOT_RESENDABLE)  # e.g. restored from another install's backup: not ours to run
        if not await self._store.finish(row.id, "queued", "resend requested by operator", expect="unknown"):
            return Decision("already", row, "resend")
        await self._audit("outbox.resend", approver, {"approval_id": row.id, "digest": row.digest}, row.thread)
        return Decision("resend", row, "resend")

    async def _compensate(self, row: ApprovalRow, approver: str) -> Decision:
        """The undo button of a done action (e.g. Void on a sent invoice): propose the undo on its own card."""
        kind = self.kind(row.kind)
        outbox = await self._store.outbox(row.id)
        if kind.compensation is None or outbox is None or outbox.state != "sent":
            return Decision("ignored", row)
        undo = kind.compensate(kind.parse(row.action), Executed(outbox.external_id or "", outbox.detail))
        if undo is None:
            return Decision("ignored", row)
        proposal = await self.propose(
            undo,
            row.thread,
            "command",
            approver,
            approval_id=hashlib.sha256(f"undo:{row.id}".encode()).hexdigest()[:12],
        )
        if proposal.approval is None:
            raise UserFacingError(f"Your policy forbids {undo.kind}.")
        return Decision("compensate", row, "compensate", proposal.approval)

    async def _audit(self, kind: str, actor: str, payload: dict[str, object], thread: str | None) -> None:
        await self._db.append_event(kind, actor, payload, session=thread)


def idempotency_key(approval_id: str, install_id: str) -> str:
    """The idempotency key of an approval's execution: derived from its id and the install's, stored before
    the call (I2), so two installs (e.g. a test and a live one on one Stripe account) never share one. A row
    approved before keys had the install's part keeps the key it was stored with."""
    return "coo-" + hashlib.sha256(f"{install_id}\x00{approval_id}".encode()).hexdigest()[:24]
