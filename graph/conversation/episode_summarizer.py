"""Episode summaries written by the model, for semantic memory's summary tier.

Memory writes an extractive summary as soon as an episode closes and hands the episode to this
summarizer in the background; when the call fails (no budget left, model down) the extractive one
stays. Every call goes through :class:`graph.models.llm.LLMClient`, so the budget is reserved first (I5),
under its own workflow, ``memory``, which ``/spend`` shows.
"""

from __future__ import annotations

from collections.abc import Sequence

from graph.conversation.context import clip_text
from graph.models.llm import LLMClient
from prompts import load_prompt

WORKFLOW = "memory"
# A longer episode is cut to its newest part: a summary call stays cheap whatever the day held.
MAX_EPISODE_TOKENS = 3_000


class ModelSummarizer:
    """Summarizes a closed episode with the cheap model (or the main one when no cheap model is set)."""

    def __init__(self, llm: LLMClient, model: str | None) -> None:
        self._llm = llm
        self._model = model

    @property
    def name(self) -> str:
        """``model/<name>``: which model wrote a summary is stored with it."""
        return f"model/{self._model or self._llm.model}"

    async def __call__(self, lines: Sequence[str]) -> str:
        """The episode's summary; raises when the call is not made (budget) or fails."""
        turns = clip_text("\n".join(lines), MAX_EPISODE_TOKENS)
        prompt = load_prompt("episode_summary").format(turns=turns)
        reply = await self._llm.chat([{"role": "user", "content": prompt}], workflow=WORKFLOW, model=self._model)
        return reply.content
