"""The graph layer built directly from its real parts (no runtime, no channel): the stores on SQLite in a temp dir,
the model client against the fake OpenAI server, the action kinds of a default install, and a notifier that keeps
what the operator would be shown."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bot.compose.work import build_actions
from bot.stores import Stores, open_stores
from graph.approvals.service import ApprovalService
from graph.contexts import Contexts
from graph.conversation.record_tools import GOAL_TOOLS, RECORD_TOOLS
from graph.conversation.tools import RECALL_TOOL, SAFE_TOOLS, ToolBox
from graph.goals.board import ButtonSpec
from graph.goals.executor import SkillExecutor
from graph.goals.plan_kind import PlanKind
from graph.goals.service import GoalService
from graph.goals.skills import all_skills
from graph.models.llm import LLMClient
from graph.spend.budget import BudgetGuard
from graph.spend.pricing import PriceTable
from memory.mail import MailStore
from memory.tasks import Goal, Task
from memory.traces import TraceRecorder, TraceStore
from tests.conftest import DateClock, llm_settings, make_settings
from tests.fakes.openai_api import FakeOpenAI

SESSION = "rec:1001"
OPERATOR = "telegram:1001"
NOON = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)


@dataclass
class Shown:
    """What the goal layer showed the operator: messages (text, buttons) and cards, in order."""

    posts: list[tuple[str, ButtonSpec]] = field(default_factory=list)
    cards: list[str] = field(default_factory=list)

    async def post(self, session: str, text: str, buttons: ButtonSpec = (), replace: str | None = None) -> str | None:
        self.posts.append((text, buttons))
        return f"m{len(self.posts)}"

    async def show_card(self, approval_id: str, session: str) -> None:
        self.cards.append(approval_id)


@dataclass
class GoalParts:
    """Everything a goal-layer test builds on."""

    stores: Stores
    llm: LLMClient
    approvals: ApprovalService
    goals: GoalService
    executor: SkillExecutor
    shown: Shown
    clock: DateClock
    settings: Any
    plans: PlanKind
    contexts: Contexts

    async def goal_with_tasks(self, *specs: dict[str, Any], budget: float | None = None) -> tuple[Goal, list[Task]]:
        """An active goal with one run of ``specs`` (the plan approved), its first tasks ready."""
        ledger = self.stores.tasks
        goal = await ledger.create_goal("find a sponsor", SESSION, OPERATOR, status="active")
        if budget is not None:
            await ledger.update_goal(goal.id, budget=budget)
        await ledger.add_run(goal.id, list(specs))
        await ledger.promote(self.clock())
        fresh = await ledger.goal(goal.id)
        assert fresh is not None
        return fresh, await ledger.tasks(goal.id)


def spec(key: str, title: str, skill: str = "research", after: tuple[str, ...] = ()) -> dict[str, Any]:
    """One task of a run, as the ledger takes it."""
    return {"key": key, "title": title, "skill": skill, "instructions": title, "depends_on": list(after)}


@asynccontextmanager
async def goal_parts(
    tmp_path: Path, fake: FakeOpenAI, tasks: dict[str, Any] | None = None, **more: Any
) -> AsyncIterator[GoalParts]:
    """The goal service and the skill executor on real stores; ``tasks`` overrides COO_TASKS__*, ``more`` other
    settings (``smtp=...``)."""
    settings = make_settings(tmp_path, llm=llm_settings(fake), tasks=tasks or {}, **more)
    clock = DateClock(NOON)
    async with AsyncExitStack() as stack:
        stores = await open_stores(settings, stack)
        mail = MailStore(stores.db)
        await mail.setup()
        prices = PriceTable(settings.llm.prices, settings.budget.usd_rate, settings.llm.free)
        guard = BudgetGuard(stores.ledger, stores.db, stores.control, prices, settings.timezone, None)
        llm = LLMClient(settings.llm, stores.ledger, prices, guard)
        stack.push_async_callback(llm.close)
        plans, registry = build_actions(settings, stores, llm, mail, None)
        approvals = ApprovalService(
            stores.approvals, stores.db, registry, settings.approvals, lambda: {OPERATOR}, stores.control
        )
        shown = Shown()
        goals = GoalService(
            stores.tasks, approvals, llm, stores.ledger, stores.control, shown, settings.tasks, "UTC",
            skills=plans.skills,
        )  # fmt: skip
        contexts = Contexts(stores.db, "UTC", settings.budget.currency, records=stores.records)
        tools = ToolBox((*SAFE_TOOLS, RECALL_TOOL, *RECORD_TOOLS, *GOAL_TOOLS), reads=registry.read_tools)
        trace_store = TraceStore(stores.db)
        await trace_store.setup()
        executor = SkillExecutor(
            all_skills(), llm, tools, approvals, contexts, settings.tasks, None, TraceRecorder(trace_store, str)
        )
        yield GoalParts(stores, llm, approvals, goals, executor, shown, clock, settings, plans, contexts)
