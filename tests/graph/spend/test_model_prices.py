"""An unpriced model (a local llama on 127.0.0.1) is counted high, never free unless the operator says so
(I5), but it is impossible to miss: its first use puts one line in the chat saying how it is counted and how
to change that; /spend shows the price in use and which model spent."""

from __future__ import annotations

from functools import partial
from pathlib import Path

from bot.commands.budget import BudgetCommands, Controls
from bot.messages import OutboundMessage
from graph.models.llm import LLMClient
from graph.models.notices import ModelNotices, price_lines
from graph.settings import LLMSettings
from graph.spend.budget import BudgetGuard
from graph.spend.pricing import PriceTable
from memory.control import ControlStore
from memory.db import open_database
from memory.ledger import CostLedger
from tests.conftest import llm_settings
from tests.fakes.openai_api import FakeOpenAI
from tests.graph.models.test_llm_fallbacks import HELLO, Told

LOCAL = "llama3.1:8b"


async def calls_to(tmp_path: Path, fake: FakeOpenAI, times: int, free: bool = False) -> tuple[Told, str]:
    """``times`` calls to the local model through a client like ``coo run``'s; what the operator was told
    and what /spend says."""
    async with open_database(tmp_path) as db:
        ledger = CostLedger(db)
        await ledger.setup()
        store = ControlStore(db)
        await store.setup()
        settings = LLMSettings(**llm_settings(fake, model=LOCAL, free=free))
        prices = PriceTable({}, free=free)
        told = Told()
        guard = BudgetGuard(ledger, db, store, prices, "UTC", None)
        client = LLMClient(settings, ledger, prices, guard, notices=ModelNotices(store, told, "USD"))
        try:
            for _ in range(times):
                await client.chat(HELLO, session="rec:1001")
        finally:
            await client.close()

        async def send(_: OutboundMessage) -> list[str]:
            return []

        lines = partial(price_lines, settings, prices, "USD")
        spend = BudgetCommands(db, ledger, store, "USD", Controls(), "UTC", send, price_lines=lines)
        return told, await spend.spend_text()


async def test_the_first_call_to_an_unpriced_model_tells_the_chat_once_how_it_is_counted(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    told, _ = await calls_to(tmp_path, fake_llm, times=3)
    # Before: only coo.log said so ("no known price ... counted at 15.0/75.0 USD per 1M tokens").
    assert len(told.lines) == 1
    text, session = told.lines[0]
    assert session == "rec:1001" and "\n" not in text
    assert f"{LOCAL} has no known price" in text and "15.00/75.00 USD per million tokens" in text
    assert "COO_LLM__FREE=true" in text and "COO_LLM__PRICES" in text
    again, _ = await calls_to(tmp_path, fake_llm, times=1)  # a restart on the same data: not again
    assert again.lines == []


async def test_a_model_the_operator_said_is_free_is_not_announced_and_costs_nothing(
    tmp_path: Path, fake_llm: FakeOpenAI
) -> None:
    told, spend = await calls_to(tmp_path, fake_llm, times=1, free=True)
    assert told.lines == []
    assert f"By model this month: {LOCAL} 0.00 USD" in spend
    assert f"- {LOCAL} (main): 0.00/0.00 USD per million tokens in/out, free by your word" in spend


async def test_spend_shows_the_price_in_use_and_which_model_spent(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    _, spend = await calls_to(tmp_path, fake_llm, times=1)
    # Before: /spend showed totals per workflow only, and nothing said the local model was counted at 15/75.
    assert f"By model this month: {LOCAL} 0.0" in spend
    assert "Prices in use:" in spend
    assert f"- {LOCAL} (main): 15.00/75.00 USD per million tokens in/out, no known price, so counted high" in spend
