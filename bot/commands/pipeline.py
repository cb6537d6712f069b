"""``/pipeline`` in chat: contacts by stage and the next steps due, and setting a contact's stage or next step
(no model; dates in the operator's zone)."""

from __future__ import annotations

from bot.commands.router import CommandRouter
from bot.messages import InboundMessage
from graph.pipeline.service import Pipeline
from memory.db import Database
from memory.pipeline import PipelineStore
from memory.records import Records


class PipelineCommands:
    """``/pipeline`` and its forms."""

    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline

    def register(self, router: CommandRouter) -> None:
        """Add ``/pipeline``."""
        router.add(
            "pipeline",
            "Contacts by stage and next steps due; /pipeline <contact> <stage> or next <when> | <what>",
            self.run,
            confidential=True,
        )

    async def run(self, inbound: InboundMessage, args: str) -> str:
        """No arguments: the overview; otherwise one contact's request (bad input: one clear error)."""
        if not args.strip():
            return await self._pipeline.overview()
        return await self._pipeline.handle(args, inbound.sender)


async def open_pipeline(db: Database, records: Records, timezone: str, router: CommandRouter) -> Pipeline:
    """The pipeline's tables made, ``/pipeline`` registered; the service (payments move payers with it)."""
    store = PipelineStore(db)
    await store.setup()
    pipeline = Pipeline(store, records, timezone)
    PipelineCommands(pipeline).register(router)
    return pipeline
