"""``coo import`` with semantic memory on: the semantic memory rebuilt from the export's lines (remembered
notes and the operator's chat messages, re-embedded; what was forgotten stays forgotten)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from bot.settings import Settings
from memory.db import Event
from memory.event_log import EventLine
from memory.notes import NoteLine, StoredNote

if TYPE_CHECKING:
    from memory.semantic.api import Note

EMBED_BATCH = 64

log = logging.getLogger(__name__)


def memories_of(events: Sequence[EventLine], notes: Sequence[NoteLine], scope: str, tz: str) -> list[Note]:
    """What semantic memory held: remembered notes and the operator's chat messages, minus what was
    forgotten, as the product's own ingestion writes them (a chat note carries its date and speaker)."""
    from memory.semantic.chat_notes import forgotten_refs, notes_from_log  # loads semantic memory's API: only when on

    logged = [Event(e.id, e.at, e.actor, e.session, e.kind, e.payload) for e in events]
    remembered = [StoredNote(n.ref, n.scope, n.source, n.text, n.at) for n in notes]
    return notes_from_log(logged, remembered, scope, tz, forgotten_refs(logged))


async def rebuild_semantic(
    staging: Path, events: Sequence[EventLine], notes: Sequence[NoteLine], settings: Settings
) -> int:
    """Index what semantic memory held into ``staging`` (a note it refuses is logged and left out); returns
    how many notes were written."""
    # Imported here: the vector store and embedder cost a second or more to load, and are not needed
    # when semantic memory is off.
    from memory.semantic.api import InvalidNote, open_memory

    memories = memories_of(events, notes, settings.memory.scope, settings.timezone)
    if not memories:
        return 0
    embedder = None
    if settings.embeddings.provider == "openai":
        import openai

        from memory.semantic.embedder import OpenAIEmbedder

        llm = settings.llm
        client = openai.AsyncOpenAI(
            base_url=llm.base_url or "https://api.openai.com/v1",
            api_key=llm.api_key.get_secret_value() if llm.api_key else "not-needed",
            timeout=llm.timeout_s,
        )
        embedder = OpenAIEmbedder(client, settings.embeddings.model, owns_client=True)
    written = 0
    try:
        async with open_memory(staging, embedder=embedder, settings=settings.embeddings) as memory:
            for start in range(0, len(memories), EMBED_BATCH):
                batch = memories[start : start + EMBED_BATCH]
                while batch:
                    try:
                        written += len(await memory.add_many(batch))
                        break
                    except InvalidNote as exc:
                        # One note the memory refuses (e.g. too long) must not cost the others.
                        log.warning("semantic memory refused %s: %s", batch[exc.index].ref, exc)
                        batch = batch[: exc.index] + batch[exc.index + 1 :]
    finally:
        if embedder is not None:
            await embedder.aclose()
    return written
