"""Prompt size over a long conversation: 1,000 turns through the real coordinator with a fake model.

    python -m bench.context_size [--turns 1000] [--budget 6000]

Prints the prompt tokens (local estimate, tools included) of the model call at turns 10, 100, 500
and 1,000, the largest prompt seen, and whether a fact stated at turn 5 is in the prompt of the last
turn (recalled from semantic memory, since the turn itself has long been summarized away).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import tempfile
import time
from pathlib import Path

from bot.messages import InboundMessage
from bot.runtime import open_runtime
from bot.settings import Settings
from graph.models.llm import estimate_message_tokens
from tests.conftest import RecordingChannel
from tests.fakes.openai_api import FakeOpenAI

FACT = "Our largest client, Acme Robotics, pays invoices on net 45 terms through their AP portal."
QUESTION = "What payment terms does Acme Robotics have with us?"
TOPICS = [
    "the website redesign",
    "a podcast guest",
    "the quarterly taxes",
    "a new logo",
    "coffee suppliers",
    "the newsletter",
    "a conference talk",
    "hiring a contractor",
    "the CRM export",
    "pricing tiers",
]


async def run(turns: int, budget: int) -> None:
    logging.basicConfig(level=logging.WARNING)
    checkpoints = {10, 100, 500, turns}
    sizes: dict[int, int] = {}
    biggest = 0
    with tempfile.TemporaryDirectory() as tmp:
        async with FakeOpenAI() as llm:
            settings = Settings(
                _env_file=None,
                data_dir=Path(tmp),
                operators="telegram:1",  # type: ignore[call-arg]
                llm={"base_url": llm.base_url, "api_key": llm.api_key, "model": "fake", "context_budget": budget},
                memory={"ingest_interval_s": 0.05},
            )
            async with open_runtime(settings, console=False) as rt:
                rt.dispatcher.attach(RecordingChannel("rec"))
                started = time.perf_counter()
                for turn in range(1, turns + 1):
                    if turn == 5:
                        text = FACT
                    elif turn == turns:
                        assert rt.ingestor is not None
                        await rt.ingestor.wait_idle()
                        text = QUESTION
                    else:
                        text = f"Turn {turn}: some notes about {TOPICS[turn % len(TOPICS)]}, nothing urgent. " * 3
                    before = len(llm.chat_requests)
                    await rt.dispatcher.handle(InboundMessage("rec", "1", "telegram:1", text, update_key=f"t{turn}"))
                    answer = [r for r in llm.chat_requests[before:] if r["messages"][0]["role"] == "system"][-1]
                    size = estimate_message_tokens([*answer["messages"], *answer.get("tools", [])])
                    biggest = max(biggest, size)
                    if turn in checkpoints:
                        sizes[turn] = size
                elapsed = time.perf_counter() - started
                summaries = sum(r["messages"][0]["role"] == "user" for r in llm.chat_requests)
            last_prompt = "\n".join(str(m.get("content")) for m in answer["messages"])
    print(f"command: python -m bench.context_size --turns {turns} --budget {budget}")
    for turn in sorted(sizes):
        print(f"turn {turn:>5}: prompt {sizes[turn]:>5} tokens (budget {budget})")
    print(f"largest prompt over all {turns} turns: {biggest} tokens; within budget: {biggest <= budget}")
    print(f"summary calls: {summaries}; wall time {elapsed:.1f}s ({elapsed / turns * 1000:.1f} ms/turn)")
    print(f"fact from turn 5 in the prompt at turn {turns}: {FACT in last_prompt}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--turns", type=int, default=1000)
    parser.add_argument("--budget", type=int, default=6000)
    args = parser.parse_args()
    asyncio.run(run(args.turns, args.budget))


if __name__ == "__main__":
    main()
