"""Prompts an endpoint cut without saying so: Ollama cuts a prompt longer than its context window and still
answers. A prompt the endpoint counted at less than half our estimate was cut; the log gets one warning per
model and the operator is told once how to fix it."""

from __future__ import annotations

import logging

from graph.models.notices import ModelNotices

log = logging.getLogger(__name__)

# A prompt the endpoint counted at under half our estimate (of a prompt big enough to tell) was cut.
CUT_RATIO = 0.5
CUT_MIN_ESTIMATE = 1_500


class PromptCutWatch:
    """Compares the prompt tokens an endpoint counted with our estimate, once per model."""

    def __init__(self, notices: ModelNotices | None) -> None:
        self._notices = notices
        self._cut_models: set[str] = set()

    async def check(self, model: str, counted: int, estimate: int, session: str | None) -> None:
        """Warn (once per model) when ``counted`` says a prompt we estimated at ``estimate`` was cut. Our
        estimate of the messages alone is the measure (some endpoints do not count the tool schemas), and 0 is
        not a cut (older Ollama versions report a cached prompt as 0 tokens)."""
        if model in self._cut_models or estimate <= CUT_MIN_ESTIMATE or not 0 < counted < CUT_RATIO * estimate:
            return
        self._cut_models.add(model)
        log.warning(
            "model %s counted %d prompt tokens where about %d were sent: its endpoint seems to cut prompts "
            "to its context window (Ollama: num_ctx / OLLAMA_CONTEXT_LENGTH)",
            model,
            counted,
            estimate,
        )
        if self._notices is not None:
            await self._notices.prompt_cut(model, counted, estimate, session)
