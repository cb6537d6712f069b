"""The fallback chain as deployed: `coo run` as its own process, the fake Telegram Bot API, and three fake
model endpoints, each its own process: the main one down (503), one slow (it times out) and rate-limited
(429), one with a model too dear for the budget and one that answers. The operator gets the answer, is told
once about the skipped fallback and about the unpriced main model, and /spend and the ledger say which
model answered."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import sys
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

from tests.bot.test_crash_recovery import TOKEN, bot, stop
from tests.conftest import ROOT, subprocess_env
from tests.fakes.telegram_api import Call, FakeTelegram

KEY = "sk-test-key-000000000000"


@asynccontextmanager
async def model_process(*flags: str) -> AsyncIterator[str]:
    """``python -m tests.fakes.openai_api FLAGS`` as its own process; yields its base URL."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.fakes.openai_api", "--api-key", KEY, *flags,
        cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode().split()
        assert line[:1] == ["ready"], line
        yield line[1]
    finally:
        proc.terminate()
        await proc.wait()


def replies(tg: FakeTelegram) -> list[str]:
    return [str(c.params.get("text", "")) for c in tg.calls if c.method == "sendMessage" and c.status == 200]


def ledger(data_dir: Path) -> list[tuple[str, str, float]]:
    with sqlite3.connect(data_dir / "coo.sqlite", timeout=5) as conn:
        return [(r[0], r[1], r[2]) for r in conn.execute("SELECT model, outcome, cost FROM llm_calls ORDER BY id")]


def sent(text: str) -> object:
    return lambda c: isinstance(c, Call) and c.method == "sendMessage" and text in str(c.params.get("text", ""))


async def test_the_chain_answers_through_down_slow_limited_and_over_budget_endpoints(tmp_path: Path) -> None:
    async with AsyncExitStack() as stack:
        tg = await stack.enter_async_context(FakeTelegram(token=TOKEN))
        main = await stack.enter_async_context(model_process("--status", "503"))
        flaky = await stack.enter_async_context(
            model_process("--delay", "slow-model=20", "--status", "limited-model=429")
        )
        good = await stack.enter_async_context(model_process())
        fallbacks = [
            {"base_url": flaky, "api_key": KEY, "model": "slow-model"},
            {"base_url": flaky, "api_key": KEY, "model": "limited-model"},
            {"base_url": good, "api_key": KEY, "model": "pricey-model"},
            {"base_url": good, "api_key": KEY, "model": "good-model"},
        ]
        # main-model has no price: counted high (15/75 USD per million tokens), and the chat is told so once.
        prices = {m: [1.0, 2.0] for m in ("slow-model", "limited-model", "good-model")}
        data_dir = tmp_path / "data"
        data_dir.mkdir()
        env = subprocess_env(
            data_dir,
            COO_OPERATORS="telegram:1001",
            COO_TELEGRAM__TOKEN=TOKEN,
            COO_TELEGRAM__API_BASE_URL=tg.api_root,
            COO_TELEGRAM__POLL_TIMEOUT_S="1",
            COO_LLM__BASE_URL=main,
            COO_LLM__API_KEY=KEY,
            COO_LLM__MODEL="main-model",
            COO_LLM__MAX_ATTEMPTS="1",
            COO_LLM__TIMEOUT_S="2",
            COO_LLM__FALLBACKS=json.dumps(fallbacks),
            COO_LLM__PRICES=json.dumps({**prices, "pricey-model": [100000.0, 100000.0]}),
        )
        proc = await stack.enter_async_context(bot(env))
        tg.push_message(1001, 1001, "/budget set daily 1")
        await tg.wait_for(sent("Budget set"), timeout=60)
        tg.push_message(1001, 1001, "hello chain")
        await tg.wait_for(sent("echo: hello chain"), timeout=60)
        tg.push_message(1001, 1001, "hello again")
        await tg.wait_for(sent("echo: hello again"), timeout=60)
        tg.push_message(1001, 1001, "/spend")
        await tg.wait_for(sent("Prices in use"), timeout=60)
        await stop(proc)
    texts = replies(tg)
    skipped = [t for t in texts if "skipped the fallback model pricey-model (fallback 3)" in t]
    assert len(skipped) == 1 and "daily budget" in skipped[0] and "USD" in skipped[0]
    unpriced = [t for t in texts if "main-model has no known price" in t]
    assert len(unpriced) == 1 and "15.00/75.00 USD per million tokens" in unpriced[0]
    spend = next(t for t in texts if "Prices in use" in t)
    assert "main-model (main): 15.00/75.00 USD per million tokens in/out, no known price" in spend
    assert "By model this month: " in spend and "good-model" in spend.split("By model this month: ")[1]
    rows = ledger(data_dir)
    answered = [(m, o) for m, o, _ in rows if o.startswith("ok")]
    assert answered[:2] == [("good-model", "ok (fallback 4)")] * 2
    first_turn = [(m, o) for m, o, _ in rows[: rows.index(next(r for r in rows if r[1].startswith("ok"))) + 1]]
    assert first_turn == [
        ("main-model", "error: the model endpoint answered HTTP 503"),
        ("slow-model", "error: the model did not answer in time"),
        ("limited-model", "error: the model endpoint answered HTTP 429"),
        ("good-model", "ok (fallback 4)"),
    ]
    assert all(m != "pricey-model" for m, _, _ in rows)  # skipped: never called, nothing held
