"""The goal that billed an invoice moves on when it is paid: the real runtime, a goal whose billing task sends an
invoice through the fake Stripe (real ``stripe`` SDK), a verifier that cannot see a payment until Stripe's
``invoice.paid`` event arrives, and then judges the goal met on that evidence."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from bot.runtime import Runtime
from memory.goal_evidence import EvidenceStore
from memory.records import Records
from tests.conftest import operator_message
from tests.fakes.openai_api import FakeOpenAI, Scripted
from tests.fakes.polling import eventually_async
from tests.fakes.stripe_api import FakeStripe
from tests.graph.goals.goal_helpers import Brain, finish, met_verdict, plan, task, text_of
from tests.graph.goals.test_goals import cards, goal_runtime, press

CRITERION = "Ana paid the invoice"
PAID_MARK = "its invoice was paid at Stripe"


def invoice_then_finish(customer: str) -> Callable[[dict[str, Any]], Scripted]:
    """A billing skill: propose one invoice; once told its card was sent, finish."""

    def answer(body: dict[str, Any]) -> Scripted:
        text = text_of(body)
        if "card " in text and "): sent" in text:
            return finish("invoiced " + customer)
        if "a card was shown to the operator" in text:
            return Scripted(content="waiting for the operator")
        args = {"customer": customer, "lines": [{"description": "Website", "unit_amount": "1200"}], "reason": "done"}
        return Scripted(tool_calls=[("send_invoice", args)])

    return answer


class PaidOrNot(Brain):
    """The verifier says met only when the facts it is shown carry the payment (no payment: not met, with
    ``chase`` as a follow-up task when set)."""

    verdicts: list[bool]
    chase: list[dict[str, Any]]

    def __call__(self, body: dict[str, Any]) -> Scripted | None:
        first = str(body["messages"][0].get("content") or "")
        if first.startswith("You check a goal"):
            paid = PAID_MARK in text_of(body)
            self.verdicts.append(paid)
            self.asked.append("verify")
            verdict = met_verdict("Ana paid.", CRITERION) if paid else {**not_met(), "follow_up": self.chase}
            return Scripted(tool_calls=[("submit_verdict", verdict)])
        return super().__call__(body)


def not_met() -> dict[str, Any]:
    return {
        "met": False,
        "report": "The invoice was sent; no payment yet.",
        "evidence": [{"criterion": CRITERION, "met": False, "evidence": ""}],
    }


@asynccontextmanager
async def billing_runtime(tmp_path: Path, fake_llm: FakeOpenAI) -> AsyncIterator[tuple[Runtime, Any, FakeStripe]]:
    """The goal runtime with Stripe at a fake and Ana Silva among the contacts."""
    async with FakeStripe() as fake:
        stripe = {"api_key": fake.api_key, "api_base_url": fake.api_base_url, "timeout_s": 5}
        async with goal_runtime(tmp_path, fake_llm, stripe=stripe, followups={"check_s": 86400}) as (rt, chan):
            await Records(rt.db).upsert("contact", {"name": "Ana Silva", "emails": ["ana@example.org"]}, "op")
            yield rt, chan, fake


async def bill_ana(rt: Runtime, chan: Any) -> None:
    """The operator sets the billing goal and approves its plan and then its invoice."""
    await rt.dispatcher.handle(operator_message("/goal bill Ana for the website and get paid", kind="command"))
    [plan_card] = cards(chan, "Start this plan?")
    await rt.dispatcher.handle(press(plan_card, "Approve"))
    await eventually_async(lambda: _has(chan, "Send this invoice?"), timeout=10, what="the invoice card")
    [invoice_card] = cards(chan, "Send this invoice?")
    await rt.dispatcher.handle(press(invoice_card, "Approve"))


async def see_payments(rt: Runtime) -> None:
    """The receivables loop polls Stripe's events and settles what they say."""
    assert rt.receivables is not None
    await rt.receivables.poll()
    await rt.receivables.settle()


async def paid(rt: Runtime, fake: FakeStripe) -> None:
    """Ana pays the first invoice at Stripe, and the loop sees it."""
    fake.pay(fake.sent[0])
    await see_payments(rt)


async def goal_status(rt: Runtime, status: str) -> bool:
    goals = await rt.tasks.goals()
    return bool(goals) and goals[0].status == status


async def test_a_paid_invoice_is_evidence_and_the_goal_that_billed_it_is_judged_again(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    brain = PaidOrNot(
        plans=[plan(task("t1", "billing", "Bill Ana for the website"), criteria=CRITERION)],
        skills={"Bill Ana for the website": invoice_then_finish("Ana Silva")},
    )
    brain.verdicts, brain.chase = [], []
    fake_llm.responder = brain
    async with billing_runtime(tmp_path, fake_llm) as (rt, chan, fake):
        await bill_ana(rt, chan)
        await eventually_async(lambda: goal_status(rt, "failed"), timeout=10, what="judged: not paid yet")
        goal = (await rt.tasks.goals())[0]
        await paid(rt, fake)
        await eventually_async(lambda: goal_status(rt, "done"), timeout=10, what="judged again: paid")
        await see_payments(rt)  # the same event again: no third verdict
        await asyncio.sleep(0.2)
        evidence = await EvidenceStore(rt.db).for_goal(goal.id)
        done = (await rt.tasks.goals())[0]
        events = [e for e in await rt.db.events(limit=100_000) if e.kind == "goal.evidence"]
    assert brain.verdicts == [False, True]  # the payment reached the verifier as a fact, and only then
    assert len(evidence) == 1 and evidence[0].task_id == f"{goal.id}.1.t1"
    assert PAID_MARK in evidence[0].fact and "1,200.00 USD" in evidence[0].fact
    assert done.report == "Ana paid." and len(events) == 1
    assert any(m.text.startswith(f"Goal {goal.id} is done.") for m in chan.sent)


async def test_a_follow_up_offered_before_the_payment_is_withdrawn_when_the_goal_is_met(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    brain = PaidOrNot(
        plans=[plan(task("t1", "billing", "Bill Ana for the website"), criteria=CRITERION)],
        skills={"Bill Ana for the website": invoice_then_finish("Ana Silva")},
    )
    brain.verdicts, brain.chase = [], [task("t2", "research", "Check whether Ana paid")]
    fake_llm.responder = brain
    async with billing_runtime(tmp_path, fake_llm) as (rt, chan, fake):
        await bill_ana(rt, chan)
        await eventually_async(lambda: _plans(chan, 2), timeout=10, what="a follow-up plan offered")
        assert await goal_status(rt, "proposed")
        goal = (await rt.tasks.goals())[0]
        await paid(rt, fake)
        await eventually_async(lambda: goal_status(rt, "done"), timeout=10, what="judged again: paid")
        plans = [r for r in await rt.approvals.store.for_goal(goal.id) if r.kind == "goal.plan"]
        follow_up = cards(chan, "Start this plan?")[-1]
        await rt.dispatcher.handle(press(follow_up, "Approve"))  # too late: withdrawn
        await asyncio.sleep(0.2)
        runs = (await rt.tasks.goals())[0].runs
    assert brain.verdicts == [False, True]
    assert [(p.state, p.decided_by) for p in plans][-1] == ("rejected", "coo")  # the follow-up is withdrawn
    assert runs == 1 and any(m.text.startswith("Already decided: rejected by coo") for m in chan.sent)


async def _plans(chan: Any, count: int) -> bool:
    return len(cards(chan, "Start this plan?")) >= count


async def test_a_payment_for_an_invoice_no_goal_sent_reaches_no_goal(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    async with billing_runtime(tmp_path, fake_llm) as (rt, chan, fake):
        await rt.dispatcher.handle(operator_message("/invoice Ana Silva 1200 | Website", kind="command"))
        [invoice_card] = cards(chan, "Send this invoice?")
        await rt.dispatcher.handle(press(invoice_card, "Approve"))
        await eventually_async(lambda: _sent(rt), timeout=10, what="the invoice sent")
        await paid(rt, fake)
        events = [e for e in await rt.db.events(limit=100_000) if e.kind == "goal.evidence"]
    assert events == [] and fake_llm.requests == []


async def _has(chan: Any, title: str) -> bool:
    return bool(cards(chan, title))


async def _sent(rt: Runtime) -> bool:
    return any(getattr(r.data, "status", "") == "sent" for r in await Records(rt.db).all("invoice"))
