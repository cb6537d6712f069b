"""The model client and what prices and caps its calls, semantic memory and the checkpoints: built once
``coo run`` polls (see :mod:`bot.compose.root`)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import aiosqlite

from bot.approval_ui import session_target
from bot.commands.budget import BudgetCommands, Controls
from bot.digest import home_chats
from bot.messages import OutboundMessage
from bot.messenger import Messenger
from bot.settings import Settings
from bot.stores import Stores
from graph.conversation.episode_summarizer import ModelSummarizer
from graph.models.llm import LLMClient
from graph.models.notices import ModelNotices, price_lines
from graph.spend.budget import BudgetAlert, BudgetGuard
from graph.spend.embedding_meter import BudgetedEmbeddings
from graph.spend.pricing import PriceTable
from memory.checkpoints import OneTripSqliteSaver
from memory.control import ControlStore
from memory.db import connect_sqlite
from memory.ledger import CostLedger
from memory.semantic.contracts import Embedder, EmbeddingMeter

if TYPE_CHECKING:
    from memory.semantic.api import Memory

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Model:
    """The model client and what prices and caps its calls."""

    llm: LLMClient
    prices: PriceTable
    budgets: BudgetCommands
    guard: BudgetGuard


def build_model(
    settings: Settings,
    stores: Stores,
    stack: AsyncExitStack,
    messenger: Messenger,
    controls: Controls,
    clock: Callable[[], float],
) -> Model:
    control = stores.control
    prices = PriceTable(settings.llm.prices, settings.budget.usd_rate, settings.llm.free)
    currency = settings.budget.currency
    budgets = BudgetCommands(
        stores.db,
        stores.ledger,
        control,
        currency,
        controls,
        settings.timezone,
        messenger.send,
        price_lines=partial(price_lines, settings.llm, prices, currency),
    )
    guard = BudgetGuard(
        stores.ledger,
        stores.db,
        control,
        prices,
        settings.timezone,
        settings.llm.cheap_model,
        on_alert=partial(_alert, budgets=budgets, control=control, messenger=messenger),
    )
    notices = ModelNotices(control, partial(_model_notice, control=control, messenger=messenger), currency)
    llm = LLMClient(settings.llm, stores.ledger, prices, guard, clock, notices)
    stack.push_async_callback(llm.close)
    return Model(llm, prices, budgets, guard)


async def open_checkpoints(
    settings: Settings, stack: AsyncExitStack
) -> tuple[OneTripSqliteSaver, aiosqlite.Connection]:
    """The checkpoint saver on its own connection."""
    conn = await connect_sqlite(settings.data_dir / "checkpoints.sqlite", settings.sqlite.busy_timeout_ms)
    stack.push_async_callback(conn.close)
    saver = OneTripSqliteSaver(conn)
    await saver.setup()
    return saver, conn


async def open_semantic_memory(
    settings: Settings, stack: AsyncExitStack, model: Model, ledger: CostLedger
) -> Memory | None:
    """Semantic memory, unless switched off; with a model, closed episodes are summarized by it (budgeted)."""
    if not settings.memory.semantic:
        return None
    from memory.semantic.api import open_memory  # NumPy, PyArrow and LanceDB: only when memory is on

    llm = model.llm
    summarizer = ModelSummarizer(llm, settings.llm.cheap_model) if llm.configured else None
    embedder = _embedder(settings, stack, BudgetedEmbeddings(model.guard, ledger))
    return await stack.enter_async_context(
        open_memory(settings.data_dir, embedder=embedder, settings=settings.embeddings, summarizer=summarizer)
    )


def _embedder(settings: Settings, stack: AsyncExitStack, meter: EmbeddingMeter) -> Embedder | None:
    """The ``openai`` provider uses the same endpoint and key as the chat model, its calls metered by
    ``meter`` (they are paid: I5); None means the local model, which costs nothing."""
    if settings.embeddings.provider != "openai":
        return None

    import openai

    from memory.semantic.embedder import OpenAIEmbedder

    llm = settings.llm
    target = llm.connection()  # credentials in the URL become basic auth, as for the chat model
    client = openai.AsyncOpenAI(
        base_url=target.base_url,
        api_key=target.api_key,
        default_headers=target.headers or None,
        timeout=llm.timeout_s,
        max_retries=0,  # one reservation pays for one request; ingestion retries with backoff itself
    )
    embedder = OpenAIEmbedder(client, settings.embeddings.model, owns_client=True, meter=meter)
    stack.push_async_callback(embedder.aclose)
    return embedder


async def _alert(alert: BudgetAlert, *, budgets: BudgetCommands, control: ControlStore, messenger: Messenger) -> None:
    """Send a budget alert to the conversation it happened in, or to every operator's own chat."""
    targets = [session_target(alert.session)] if alert.session else await home_chats(control)
    for channel, chat_id, thread_id in targets:
        await messenger.notice(budgets.alert_message(alert, channel, chat_id, thread_id))


async def _model_notice(text: str, session: str | None, *, control: ControlStore, messenger: Messenger) -> None:
    """A line about the models (an unpriced one, a skipped fallback) to the conversation it happened in, or to
    every operator's own chat."""
    targets = [session_target(session)] if session else await home_chats(control)
    for channel, chat_id, thread_id in targets:
        await messenger.notice(OutboundMessage(channel, chat_id, text, thread_id))
