"""A payment reaches the goal whose task billed it: the task's outcome gets the payment as evidence, and the goal
is judged again with it (paid is evidence the verifier reads; it does not mark anything met by itself)."""

from __future__ import annotations

import logging

from graph.approvals.service import ApprovalService
from graph.goals.service import GoalService
from memory.goal_evidence import EvidenceStore
from memory.stripe_events import StripeEvent

log = logging.getLogger(__name__)

BILLING_KIND = "invoice.send"


class GoalPayments:
    """Finds the goal task that sent a paid invoice and hands the goal the fact."""

    def __init__(self, approvals: ApprovalService, evidence: EvidenceStore, goals: GoalService) -> None:
        self._approvals = approvals
        self._evidence = evidence
        self._goals = goals

    async def paid(self, event: StripeEvent, invoice_id: str, notice: str) -> list[str]:
        """The ids of the goals an ``invoice.paid`` event reached (each recorded once per event)."""
        reached = []
        for outbox in await self._approvals.store.outbox_in("sent"):
            if outbox.kind != BILLING_KIND or outbox.external_id != invoice_id:
                continue
            row = await self._approvals.store.get(outbox.approval_id)
            context = row.context if row is not None else {}
            goal_id, task_id = str(context.get("goal_id") or ""), str(context.get("task_id") or "")
            if not goal_id or not task_id:
                continue  # sent from a command, not by a goal's task
            fact = f"task {context.get('task', task_id)}: its invoice was paid at Stripe ({notice}; event {event.id})"
            await self._evidence.add(f"stripe:{event.id}:{task_id}", goal_id, task_id, fact, "stripe")
            seen = [e.at for e in await self._evidence.for_goal(goal_id) if e.source.startswith(f"stripe:{event.id}:")]
            if await self._goals.evidence_arrived(goal_id, max(seen)):
                log.info("goal %s: verified again after invoice %s was paid", goal_id, invoice_id)
            reached.append(goal_id)
        return reached
