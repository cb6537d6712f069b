"""Per-message overhead of the Telegram path: FakeTelegram + instant FakeOpenAI + the real runtime.

    python -m bench.telegram_overhead [--sequential N] [--chats C] [--per-chat M] [--poll-timeout S]

Overhead of one message = time from pushing its update into the fake Bot API to the moment the fake
receives the sendMessage that answers it (the fake model echoes ``echo: <text>`` at once). Everything
(fakes, PTB long polling, dispatcher, LangGraph with its SQLite checkpointer, the openai client) runs
in this one asyncio loop, as in production, so the fakes' own cost is included.

(a) sequential: one chat, the next message is pushed only after the previous reply arrived.
(b) concurrent: C chats x M messages, all pushed at once.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import statistics
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from bot.runtime import open_runtime
from bot.settings import Settings, TelegramSettings
from graph.settings import LLMSettings
from tests.fakes.openai_api import FakeOpenAI
from tests.fakes.telegram_api import FakeTelegram

TOKEN = "123:BENCH"
SEQ_CHAT = 1001
WARMUP_CHAT = 1000
FIRST_CONCURRENT_CHAT = 2001
TARGET_P50_MS = 40.0
TARGET_P99_MS = 150.0
REPLY_TIMEOUT_S = 30.0
SETTLE_S = 0.5
"""How long to keep listening after the last expected reply, to catch duplicates."""


class TimedTelegram(FakeTelegram):
    """FakeTelegram that stamps the arrival time of every sendMessage by its text."""

    def __init__(self, token: str) -> None:
        super().__init__(token)
        self.received: defaultdict[str, list[float]] = defaultdict(list)
        self.waiters: dict[str, asyncio.Event] = {}

    def _dispatch(self, name: str, params: dict[str, Any]) -> Any:
        if name == "sendmessage":
            text = str(params.get("text", ""))
            self.received[text].append(time.perf_counter())
            waiter = self.waiters.get(text)
            if waiter is not None:
                waiter.set()
        return super()._dispatch(name, params)

    def expect(self, text: str) -> asyncio.Event:
        event = self.waiters.setdefault(text, asyncio.Event())
        if self.received.get(text):
            event.set()
        return event


@dataclass
class Result:
    name: str
    latencies_ms: list[float] = field(default_factory=list)
    elapsed_s: float = 0.0
    expected: int = 0
    lost: int = 0
    duplicated: int = 0

    @property
    def throughput(self) -> float:
        return len(self.latencies_ms) / self.elapsed_s if self.elapsed_s else 0.0

    def pct(self, p: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        index = min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))  # nearest rank
        return ordered[index]

    def passed(self) -> bool:
        return (
            self.pct(50) <= TARGET_P50_MS and self.pct(99) <= TARGET_P99_MS and self.lost == 0 and self.duplicated == 0
        )

    def line(self) -> str:
        return (
            f"{self.name}: p50 {self.pct(50):.1f} ms  p95 {self.pct(95):.1f} ms  p99 {self.pct(99):.1f} ms  "
            f"throughput {self.throughput:.1f} msgs/s  lost {self.lost}  duplicated {self.duplicated}  "
            f"[targets: p50 <= {TARGET_P50_MS:.0f} ms, p99 <= {TARGET_P99_MS:.0f} ms, 0 lost, 0 duplicated: "
            f"{'PASS' if self.passed() else 'MISS'}]"
        )


def _text(chat: int, i: int) -> str:
    return f"m-{chat}-{i}"


def _reply(chat: int, i: int) -> str:
    return f"echo: {_text(chat, i)}"


def _count(tg: TimedTelegram, result: Result, sent_at: dict[str, float]) -> None:
    """Latency of the first reply per message; lost = no reply, duplicated = more than one."""
    for text, pushed in sent_at.items():
        stamps = tg.received.get(_reply(*_parse(text)), [])
        if not stamps:
            result.lost += 1
            continue
        result.latencies_ms.append((stamps[0] - pushed) * 1000)
        result.duplicated += len(stamps) - 1


def _parse(text: str) -> tuple[int, int]:
    _, chat, i = text.split("-")
    return int(chat), int(i)


async def _warm_up(tg: TimedTelegram, n: int) -> None:
    """First turns pay one-time costs (imports, first connections); they are not measured."""
    for i in range(n):
        done = tg.expect(_reply(WARMUP_CHAT, i))
        tg.push_message(user_id=WARMUP_CHAT, chat_id=WARMUP_CHAT, text=_text(WARMUP_CHAT, i))
        await asyncio.wait_for(done.wait(), REPLY_TIMEOUT_S)


async def sequential(tg: TimedTelegram, n: int) -> Result:
    result = Result(f"(a) sequential, 1 chat x {n}", expected=n)
    sent_at: dict[str, float] = {}
    start = time.perf_counter()
    for i in range(n):
        text = _text(SEQ_CHAT, i)
        done = tg.expect(_reply(SEQ_CHAT, i))
        sent_at[text] = time.perf_counter()
        tg.push_message(user_id=SEQ_CHAT, chat_id=SEQ_CHAT, text=text)
        with contextlib.suppress(TimeoutError):  # a missing reply is counted as lost below
            await asyncio.wait_for(done.wait(), REPLY_TIMEOUT_S)
    result.elapsed_s = time.perf_counter() - start
    await asyncio.sleep(SETTLE_S)
    _count(tg, result, sent_at)
    return result


async def concurrent(tg: TimedTelegram, chats: int, per_chat: int) -> Result:
    ids = range(FIRST_CONCURRENT_CHAT, FIRST_CONCURRENT_CHAT + chats)
    result = Result(f"(b) concurrent, {chats} chats x {per_chat}", expected=chats * per_chat)
    sent_at: dict[str, float] = {}
    waiters = [tg.expect(_reply(chat, i)) for i in range(per_chat) for chat in ids]
    start = time.perf_counter()
    for i in range(per_chat):
        for chat in ids:
            text = _text(chat, i)
            sent_at[text] = time.perf_counter()
            tg.push_message(user_id=chat, chat_id=chat, text=text)
    with contextlib.suppress(TimeoutError):  # missing replies are counted as lost below
        await asyncio.wait_for(asyncio.gather(*(w.wait() for w in waiters)), REPLY_TIMEOUT_S)
    last = max((stamps[0] for stamps in tg.received.values() if stamps), default=start)
    result.elapsed_s = last - start
    await asyncio.sleep(SETTLE_S)
    _count(tg, result, sent_at)
    return result


def _order_violations(tg: TimedTelegram, chats: int, per_chat: int) -> int:
    """Replies within one chat that arrived before the reply to an earlier message of that chat."""
    bad = 0
    for chat in range(FIRST_CONCURRENT_CHAT, FIRST_CONCURRENT_CHAT + chats):
        stamps = [tg.received.get(_reply(chat, i), [float("inf")])[0] for i in range(per_chat)]
        bad += sum(1 for a, b in zip(stamps, stamps[1:], strict=False) if b < a)
    return bad


async def main(args: argparse.Namespace) -> list[Result]:
    for name in list(os.environ):  # the bench must not pick up the machine's configuration
        if name.startswith("COO_") or name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
            del os.environ[name]
    concurrent_ids = range(FIRST_CONCURRENT_CHAT, FIRST_CONCURRENT_CHAT + args.chats)
    operators = ",".join(f"telegram:{u}" for u in (WARMUP_CHAT, SEQ_CHAT, *concurrent_ids))
    with tempfile.TemporaryDirectory(prefix="coo-bench-") as data_dir:
        tg = TimedTelegram(TOKEN)
        async with tg, FakeOpenAI() as llm:
            settings = Settings(
                _env_file=None,  # type: ignore[call-arg]
                data_dir=Path(data_dir),
                operators=operators,
                llm=LLMSettings(
                    base_url=llm.base_url, api_key=SecretStr(llm.api_key), model="fake-model", timeout_s=10
                ),
                telegram=TelegramSettings(
                    token=SecretStr(TOKEN), api_base_url=tg.api_root, poll_timeout_s=args.poll_timeout
                ),
            )
            async with open_runtime(settings, console=False):
                await _warm_up(tg, args.warmup)
                seq = await sequential(tg, args.sequential)
                conc = await concurrent(tg, args.chats, args.per_chat)
                order = _order_violations(tg, args.chats, args.per_chat)
    results = [seq, conc]
    print(f"telegram overhead: real runtime + PTB long polling (poll timeout {args.poll_timeout:g} s) against")
    print(f"FakeTelegram, instant FakeOpenAI; {args.warmup} warm-up turns not counted")
    for result in results:
        print(result.line())
    quarter = max(1, args.sequential // 4)
    early, late = seq.latencies_ms[:quarter], seq.latencies_ms[-quarter:]
    if early and late:
        print(
            f"    (a) p50 of the first {quarter}: {statistics.median(early):.1f} ms, "
            f"of the last {quarter}: {statistics.median(late):.1f} ms (conversation length effect)"
        )
    if conc.throughput:
        print(
            f"    (b) all pushed at once, so its latency is mostly queueing behind the other messages; "
            f"loop time per message = 1/throughput = {1000 / conc.throughput:.1f} ms"
        )
    print(f"    (b) replies out of order within a chat: {order}")
    return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--sequential", type=int, default=200, help="messages in the sequential run")
    parser.add_argument("--chats", type=int, default=20, help="chats in the concurrent run")
    parser.add_argument("--per-chat", type=int, default=10, help="messages per chat in the concurrent run")
    parser.add_argument("--warmup", type=int, default=5, help="unmeasured warm-up turns")
    parser.add_argument("--poll-timeout", type=float, default=1.0, help="getUpdates long-poll timeout (s)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    outcome = asyncio.run(main(parse_args()))
    raise SystemExit(0 if all(r.passed() for r in outcome) else 1)
