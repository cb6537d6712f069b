"""Receivables and follow-ups at scale as deployed: ``coo run`` in its own process with ``--invoices`` open
invoices and ``--followups`` open follow-ups in its data dir, the fake Stripe API and the fake Telegram Bot API
in their own processes, real HTTP.

    python -m bench.followups [--runs 3] [--invoices 1000] [--followups 5000] [--passes 30]

Per run: the invoices are written to a fresh data dir first (as ``invoice.send`` records them: sent, with a
Stripe id, an address and a due date; 10 % due in 3 days, so the first pass proposes their ``-3`` reminder
cards, the rest due in 4 to 63 days); the follow-ups as ``/followup`` stores them (half with an address, half
reminders; 2 % due already, so the first pass proposes their cards and reminders, the rest due in 1 to 60
days). Then ``coo run`` starts with default settings except ``COO_FOLLOWUPS__CHECK_S=1`` (900 s by default:
one pass per second gives enough samples in a run). Each due check stores how long it took
(``receivables.last_check``, ``followups.last_check``); this driver reads them from SQLite. Reported for each
loop: the first pass (it proposes the cards), the p50 / p95 of the passes after it; and the bot's resident
memory (VmRSS) after the passes, against the same bot with nothing loaded (same settings, same fakes).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import tempfile
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from bench.deployed import START_TIMEOUT_S, TOKEN, _ready_url
from bench.procs import PYTHON, child_env, kill_leftovers, spawn
from bench.stats import median, percentile
from memory.db import open_database, utcnow
from memory.followups import FollowupStore, NewFollowup
from memory.records import Records

CHAT = 7200
STRIPE_KEY = "sk_test_bench_fake_key_0000000000"


@dataclass
class RunFigures:
    """One run: pass times (ms) of each loop and resident memory (MB) with and without the data."""

    first_ms: float = float("nan")
    passes_ms: list[float] = field(default_factory=list)
    rss_mb: float = float("nan")
    rss_empty_mb: float = float("nan")
    cards: int = 0
    fu_first_ms: float = float("nan")
    fu_passes_ms: list[float] = field(default_factory=list)
    fu_cards: int = 0


async def seed(data: Path, count: int, followups: int = 0) -> None:
    """``count`` open invoices, as the invoice kind records them, and ``followups`` open follow-ups."""
    today = utcnow().date()
    async with open_database(data) as db:
        store = FollowupStore(db)
        await store.setup()
        now = utcnow()
        for i in range(followups):
            due = now - timedelta(minutes=1) if i % 50 == 0 else now + timedelta(days=1 + i % 60, minutes=i)
            email = f"f{i}@example.org" if i % 4 < 2 else ""  # half: among those due, every other one
            await store.add(NewFollowup(f"Contact {i}", f"the proposal {i}", due, "manual", email))
        records = Records(db)
        await records.setup()
        for i in range(count):
            due = today + timedelta(days=3 if i % 10 == 0 else 4 + i % 60)
            fields = {
                "number": f"BENCH-{i:05d}",
                "amount": 100 + i,
                "currency": "EUR" if i % 3 else "USD",
                "due": due.isoformat(),
                "status": "sent",
                "stripe_id": f"in_bench{i:05d}",
                "url": f"https://invoice.stripe.com/i/bench{i:05d}",
                "customer": f"Customer {i}",
                "email": f"c{i}@example.org",
            }
            await records.upsert("invoice", fields, "coo", source="stripe")


def last_check(data: Path, key: str = "receivables.last_check") -> dict[str, object] | None:
    try:
        with sqlite3.connect(f"file:{data / 'coo.sqlite'}?mode=ro", uri=True, timeout=5) as conn:
            row = conn.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
    except sqlite3.OperationalError:
        return None
    return dict(json.loads(row[0])) if row else None


def reminder_cards(data: Path, origin: str = "receivables") -> int:
    with sqlite3.connect(f"file:{data / 'coo.sqlite'}?mode=ro", uri=True, timeout=5) as conn:
        sql = "SELECT COUNT(*) FROM approvals WHERE kind = 'email.send' AND origin = ?"
        return int(conn.execute(sql, (origin,)).fetchone()[0])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@dataclass
class BotFigures:
    """What one bot showed: each loop's pass times, its RSS, the cards each proposed."""

    times: list[float]
    fu_times: list[float]
    rss: float
    cards: int
    fu_cards: int


async def one_bot(work: Path, name: str, invoices: int, followups: int, passes: int) -> BotFigures:
    """Start a bot on a data dir with ``invoices`` open invoices and ``followups`` follow-ups; its pass times
    and final RSS."""
    data = work / f"{name}-data"
    data.mkdir()
    if invoices or followups:
        await seed(data, invoices, followups)
    async with AsyncExitStack() as stack:
        fake_env = child_env({}, repo_on_path=True)
        tg_argv = [PYTHON, "-m", "tests.fakes.telegram_api", "--token", TOKEN]
        tg = await stack.enter_async_context(spawn(f"{name}-tg", tg_argv, fake_env, work, ready_timeout=30))
        st_argv = [PYTHON, "-m", "tests.fakes.stripe_api", "--api-key", STRIPE_KEY]
        st = await stack.enter_async_context(spawn(f"{name}-stripe", st_argv, fake_env, work, ready_timeout=30))
        env = child_env(
            {
                "COO_TELEGRAM__TOKEN": TOKEN,
                "COO_TELEGRAM__API_BASE_URL": _ready_url(tg),
                "COO_OPERATORS": f"telegram:{CHAT}",
                "COO_DATA_DIR": str(data),
                "COO_STRIPE__API_KEY": STRIPE_KEY,
                "COO_STRIPE__API_BASE_URL": _ready_url(st),
                "COO_SMTP__HOST": "127.0.0.1",
                "COO_SMTP__PORT": "9",  # nothing is approved, so nothing is sent
                "COO_SMTP__FROM_ADDR": "me@example.org",
                "COO_FOLLOWUPS__CHECK_S": "1",
            }
        )
        cwd = work / f"{name}-cwd"
        cwd.mkdir()
        bot = await stack.enter_async_context(spawn(name, [PYTHON, "-m", "bot.cli", "run"], env, cwd))
        times: dict[str, list[float]] = {"receivables.last_check": [], "followups.last_check": []}
        seen = dict.fromkeys(times, "")
        deadline = time.monotonic() + START_TIMEOUT_S + passes * 5
        while min(len(t) for t in times.values()) < passes and time.monotonic() < deadline:
            for key, found in times.items():
                check = last_check(data, key)
                if check and check["at"] != seen[key]:
                    seen[key] = str(check["at"])
                    found.append(float(str(check["ms"])))
            await asyncio.sleep(0.1)
        if min(len(t) for t in times.values()) < passes:
            raise RuntimeError(f"{name}: only {[len(t) for t in times.values()]} due checks seen:\n{bot.tail()}")
        return BotFigures(
            times["receivables.last_check"][:passes],
            times["followups.last_check"][:passes],
            rss_mb(bot.pid),
            reminder_cards(data),
            reminder_cards(data, "followups"),
        )


async def run_once(args: argparse.Namespace) -> RunFigures:
    with tempfile.TemporaryDirectory(prefix="coo-bench-followups-") as tmp:
        work = Path(tmp)
        loaded = await one_bot(work, "loaded", args.invoices, args.followups, args.passes)
        empty = await one_bot(work, "empty", 0, 0, 3)
    return RunFigures(
        loaded.times[0],
        loaded.times[1:],
        loaded.rss,
        empty.rss,
        loaded.cards,
        loaded.fu_times[0],
        loaded.fu_times[1:],
        loaded.fu_cards,
    )


def report(runs: list[RunFigures], args: argparse.Namespace) -> str:
    p50 = median([percentile(r.passes_ms, 50) for r in runs])
    p95 = median([percentile(r.passes_ms, 95) for r in runs])
    verdict = "met" if p95 <= 200 else f"missed by {p95 - 200:.1f} ms"
    fu50 = median([percentile(r.fu_passes_ms, 50) for r in runs])
    fu95 = median([percentile(r.fu_passes_ms, 95) for r in runs])
    fu_verdict = "met" if fu95 <= 200 else f"missed by {fu95 - 200:.1f} ms"
    return "\n".join(
        [
            f"due checks with {args.invoices} open invoices and {args.followups} open follow-ups loaded, "
            f"medians of {len(runs)} run(s):",
            "receivables:",
            f"| first pass (proposes the reminder cards: {', '.join(str(r.cards) for r in runs)}) | "
            f"{median([r.first_ms for r in runs]):.1f} ms |",
            f"| later passes p50 / p95 ({args.passes - 1} per run) | {p50:.1f} / {p95:.1f} ms "
            f"(goal p95 ≤ 200 ms: {verdict}) |",
            "follow-ups:",
            f"| first pass (proposes the due cards: {', '.join(str(r.fu_cards) for r in runs)}; and reminders) | "
            f"{median([r.fu_first_ms for r in runs]):.1f} ms |",
            f"| later passes p50 / p95 ({args.passes - 1} per run) | {fu50:.1f} / {fu95:.1f} ms "
            f"(goal p95 ≤ 200 ms: {fu_verdict}) |",
            f"| coo run RSS with them / with none | {median([r.rss_mb for r in runs]):.0f} / "
            f"{median([r.rss_empty_mb for r in runs]):.0f} MB |",
            "per run p95 (receivables): " + ", ".join(f"{percentile(r.passes_ms, 95):.1f}" for r in runs),
            "per run p95 (follow-ups): " + ", ".join(f"{percentile(r.fu_passes_ms, 95):.1f}" for r in runs),
        ]
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--invoices", type=int, default=1000)
    parser.add_argument("--followups", type=int, default=5000)
    parser.add_argument("--passes", type=int, default=30)
    return parser.parse_args(argv)


async def main(args: argparse.Namespace) -> list[RunFigures]:
    return [await run_once(args) for _ in range(args.runs)]


def cli(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        runs = asyncio.run(main(args))
    finally:
        kill_leftovers()
    print(report(runs, args))


if __name__ == "__main__":
    cli()
