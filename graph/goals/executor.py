"""A task attempt's skill run: the prompt (the goal, the task, the results it depends on, the replies it awaits,
all outside text quoted as data), the tools the skill may use, and one pass of the skill's subgraph. Budget,
model and skill errors become an :class:`~graph.goals.skill_context.Outcome`; nothing escapes but bugs."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from langgraph.graph.state import CompiledStateGraph

from graph.approvals.service import ApprovalService
from graph.contexts import Contexts
from graph.conversation.context import as_data
from graph.conversation.tools import ToolBox, read_schema
from graph.errors import ModelUnavailable
from graph.goals.skill_context import Outcome, card_context, ended, skill_system, with_reason
from graph.goals.skill_graph import SkillContext, SkillState, build_skill_graph
from graph.goals.skills import Skill
from graph.inbox.replies import ReplyWaits
from graph.models.llm import LLMClient
from graph.settings import TaskSettings
from graph.spend.budget import BudgetExceeded
from memory.tasks import Goal, Task
from memory.traces import TraceRecorder
from prompts import load_prompt


@functools.cache
def _compiled_skill_graph() -> CompiledStateGraph[Any, Any, Any, Any]:
    """The skill subgraph, compiled once per process and shared by every executor: it has no checkpointer
    and keeps nothing between runs (each run's state and context are its own), and compiling it costs about
    4 ms of CPU (LangGraph disassembles every node, looking for subgraphs)."""
    return build_skill_graph().compile()


class SkillExecutor:
    """Runs one attempt of one task through its skill's subgraph."""

    def __init__(
        self,
        skills: dict[str, Skill],
        llm: LLMClient,
        tools: ToolBox,
        approvals: ApprovalService,
        contexts: Contexts,
        settings: TaskSettings,
        cheap_model: str | None,
        recorder: TraceRecorder,
        replies: ReplyWaits | None = None,
    ) -> None:
        """``replies`` (with an inbox to read them from): a task's attempt reads the answers to its emails."""
        self._skills = skills
        self._llm = llm
        self._tools = tools
        self._approvals = approvals
        self._contexts = contexts
        self._settings = settings
        self._cheap = cheap_model
        self._recorder = recorder
        self._replies = replies
        self._graph = _compiled_skill_graph()
        self._action_schemas: tuple[tuple[int, ...], list[dict[str, Any]]] = ((), [])

    async def run(
        self,
        goal: Goal,
        task: Task,
        inputs: str,
        limit: Any,
        goal_active: Callable[[], Awaitable[bool]],
    ) -> Outcome:
        """One attempt. Budget, model and skill errors become outcomes; nothing escapes but bugs.
        ``goal_active`` is asked before each proposal: a cancelled goal's attempt proposes nothing.
        The answers to the task's emails, quoted, go into the task's message as data (I8)."""
        skill = self._skills.get(task.skill)
        if skill is None:
            return Outcome("blocked", error=f"unknown skill {task.skill}")
        if not self._llm.available():
            return Outcome("retry", error="no model answers now")
        reads = [read for read in self._tools.reads() if read.key and skill.may_read(read.key)]
        schemas = [s for s in self._all_schemas() if s["function"]["name"] in skill.tools]
        schemas += [read_schema(read) for read in reads]
        prompt = (
            load_prompt(skill.prompt)
            + "\n\n"
            + load_prompt("task").format(
                goal=as_data(goal.text),
                skill=skill.name,
                title=task.title,
                instructions=task.instructions,
                expected=task.expected or "(not said)",
                inputs=as_data(inputs) or "(none)",
                notes=as_data("\n".join(task.notes)) or "(nothing yet)",
            )
        )
        replies = await self._replies.for_task(task.id) if self._replies else ""
        if replies:
            prompt += "\n\n" + load_prompt("task_replies").format(replies=as_data(replies))
        proposal_ctx = self._contexts.proposal(goal.session, goal.requested_by)
        tool_ctx = self._contexts.tool(goal.session, goal.id)
        system = await skill_system(tool_ctx, proposal_ctx.currency, self._sender())
        state: SkillState = {"messages": [{"role": "system", "content": system}, {"role": "user", "content": prompt}]}
        trace = await self._recorder.start(task.id, task.attempts, state["messages"])
        context = SkillContext(
            skill=skill,
            llm=self._llm,
            tools=self._tools,
            tool_ctx=tool_ctx,
            approvals=self._approvals,
            proposal_ctx=proposal_ctx,
            workflow=goal.workflow,
            task_id=task.id,
            stretch=task.resumes,
            provenance=card_context(goal, task, skill.name),
            model=self._cheap if skill.tier == "routine" and self._cheap else None,
            limit=limit,
            max_rounds=self._settings.max_rounds,
            max_tokens=skill.max_tokens,
            thread=goal.session,
            requested_by=goal.requested_by,
            schemas=schemas,
            allowed=frozenset((*skill.tools, *(read.name for read in reads))),
            goal_active=goal_active,
            trace=trace,
        )
        outcome = await self._invoke(state, context)
        await trace.end(outcome.kind, outcome.error)
        return outcome

    async def _invoke(self, state: SkillState, context: SkillContext) -> Outcome:
        try:
            final: dict[str, Any] = await self._graph.ainvoke(state, context=context)
        except BudgetExceeded as exc:
            return Outcome("blocked", error=f"budget reached ({exc})")
        except ModelUnavailable as exc:
            return Outcome("retry", error=f"the model is unavailable ({exc})")
        trace = tuple(final.get("trace", []))
        common = {"model": final.get("model", ""), "cost": final.get("cost", 0.0), "trace": trace}
        proposals = tuple(dict.fromkeys(final.get("proposals", [])))
        if proposals:
            return Outcome("waiting", waiting_on=proposals, result=final.get("result"), **common)
        return ended(final.get("result"), str(final.get("failure") or ""), common)

    def awaits_replies(self, skill: str) -> bool:
        """Whether a task of ``skill`` waits for answers to the emails it got sent."""
        found = self._skills.get(skill)
        return found is not None and found.awaits_replies

    def _sender(self) -> str:
        """The address emails go out from, when email is configured."""
        kind = self._approvals.registry.for_tool("send_email")
        return str(getattr(kind, "from_addr", None) or "")

    def model_down(self) -> bool:
        """The model is configured but its breaker is open (an outage): no attempt could get an answer."""
        return self._llm.configured and not self._llm.available()

    def _all_schemas(self) -> list[dict[str, Any]]:
        actions = self._approvals.registry.tool_schemas()
        key = tuple(id(s) for s in actions)
        if self._action_schemas[0] != key:  # built once per set of action tools (their costs are cached by id)
            self._action_schemas = (key, [with_reason(s) for s in actions])
        return [*self._tools.schemas(), *self._action_schemas[1]]
