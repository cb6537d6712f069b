"""Inbox intake as deployed: ``coo run`` in its own process reading a real Dovecot over IMAP.

    python -m bench.inbox [--messages 1000] [--paced 100] [--model]

On loopback: Dovecot (Debian's, run unprivileged by ``tests.fakes.dovecot``), the fake Telegram Bot API
(the bot's channel; ``python -m tests.fakes.telegram_api``), with ``--model`` an instantly answering fake
OpenAI-compatible model whose every answer is a triage verdict, and the bot: ``python -m bot.cli run`` with
default settings plus the IMAP account (``COO_IMAP__POLL_S`` left at 60: new mail is seen through IDLE).

Phases, each once the bot is idle:
- backlog: N messages waiting in the mailbox when the bot starts; stored/s = N / (start banner -> last
  stored): what intake alone can do;
- burst: N messages APPENDed as fast as one IMAP connection goes; stored/s = N / (first APPEND -> last
  stored), triaged/s likewise; arrival (the APPEND's OK) -> stored p50/p95; bot CPU per message (user+sys
  of the bot process, all threads, until idle again); RSS after, and the peak (VmHWM);
- paced: P messages at 10 per second; arrival -> stored p50/p95 (what one new email waits, with IDLE).
"Stored" is the row's ``received_at`` (wall clock, as the product writes it); arrival is the driver's wall
clock when Dovecot answered the APPEND; both on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import tempfile
import time
from datetime import datetime
from pathlib import Path

from bench.procs import PYTHON, REPO, Child, child_env, cpu_seconds, kill_leftovers, spawn, until_idle
from bench.stats import median, percentile
from tests.fakes.dovecot import PASSWORD, USER, Dovecot
from tests.inbox.mails import mail

TOKEN = "123456789:BENCH-fake-token-not-secret"
API_KEY = "sk-bench-fake-key-000000000000"
VERDICT = '{"class": "needs_reply", "urgency": "normal", "summary": "A customer asks about the order"}'
BANNER = "solo-coo is running."


def _raw(n: int, tag: str) -> bytes:
    body = f"Hello,\n\nthis is message {n}: could you tell me where my order {n} is?\n\nThanks,\nCustomer {n}\n"
    return mail(f"Order {n}", body, sender=f"Customer {n} <c{n}@shop.test>", message_id=f"<{tag}-{n}@shop.test>")


def _append(server: Dovecot, raws: list[bytes], pace_s: float) -> list[float]:
    """APPEND each message over one connection; the wall-clock time each was accepted."""
    accepted = []
    with server.client() as client:
        for raw in raws:
            client.append("INBOX", raw)
            accepted.append(time.time())
            if pace_s:
                time.sleep(pace_s)
    return accepted


def _rows(db: Path, tag: str) -> list[tuple[str, str, str | None]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as conn:
        return list(
            conn.execute(
                "SELECT message_id, received_at, class FROM mail_messages WHERE message_id LIKE ?", (f"<{tag}-%",)
            )
        )


async def _until_stored(db: Path, tag: str, count: int, timeout_s: float) -> list[tuple[str, str, str | None]]:
    deadline = time.monotonic() + timeout_s
    while True:
        rows = await asyncio.to_thread(_rows, db, tag)
        if len(rows) >= count and all(r[2] is not None for r in rows):
            return rows
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(rows)} of {count} stored after {timeout_s:.0f} s")
        await asyncio.sleep(0.05)


def _rss_kb(pid: int) -> tuple[int, int]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])


async def _phase(
    bot: Child, server: Dovecot, db: Path, tag: str, count: int, pace_s: float
) -> tuple[list[float], float, float, float]:
    """Latencies (s), seconds from the first APPEND to the last stored, bot CPU seconds (until idle), and
    seconds from the first APPEND to the last (the arrival rate bounds the figure)."""
    raws = [_raw(n, tag) for n in range(count)]
    cpu0 = cpu_seconds(bot.pid)
    started = time.time()
    accepted = await asyncio.to_thread(_append, server, raws, pace_s)
    rows = await _until_stored(db, tag, count, timeout_s=600)
    await until_idle(bot.pid)
    cpu = cpu_seconds(bot.pid) - cpu0
    stored = {r[0]: datetime.fromisoformat(r[1]).timestamp() for r in rows}
    latencies = [stored[f"<{tag}-{n}@shop.test>"] - accepted[n] for n in range(count)]
    return latencies, max(stored.values()) - started, cpu, accepted[-1] - started


async def run(args: argparse.Namespace) -> None:
    server = Dovecot()
    await asyncio.to_thread(server.start)
    try:
        with tempfile.TemporaryDirectory(prefix="coo-bench-inbox-") as tmp:
            data = Path(tmp) / "data"
            data.mkdir()
            env = {
                "COO_DATA_DIR": str(data),
                "COO_OPERATORS": "telegram:1001",
                "COO_TELEGRAM__TOKEN": TOKEN,
                "COO_IMAP__HOST": "127.0.0.1",
                "COO_IMAP__PORT": str(server.port),
                "COO_IMAP__USERNAME": USER,
                "COO_IMAP__PASSWORD": PASSWORD,
                "COO_IMAP__SECURITY": "none",
                "HOME": tmp,
            }
            fake_tg = [PYTHON, "-m", "tests.fakes.telegram_api", "--token", TOKEN]
            async with spawn("telegram", fake_tg, child_env({}, repo_on_path=True), REPO, ready_timeout=30) as tg:
                env["COO_TELEGRAM__API_BASE_URL"] = _ready(tg)
                if args.model:
                    fake_llm = [PYTHON, "-m", "tests.fakes.openai_api", "--api-key", API_KEY, "--answer", VERDICT]
                    llm_env = child_env({}, repo_on_path=True)
                    async with spawn("model", fake_llm, llm_env, REPO, ready_timeout=30) as llm:
                        model = {"COO_LLM__BASE_URL": _ready(llm), "COO_LLM__API_KEY": API_KEY}
                        await _measure(args, server, {**env, **model, "COO_LLM__MODEL": "gpt-4o-mini"}, data, "model")
                else:
                    await _measure(args, server, env, data, "rules")
    finally:
        await asyncio.to_thread(server.stop)


async def _measure(args: argparse.Namespace, server: Dovecot, env: dict[str, str], data: Path, path: str) -> None:
    db = data / "coo.sqlite"
    await asyncio.to_thread(_append, server, [_raw(n, "backlog") for n in range(args.messages)], 0.0)
    async with spawn("coo", [PYTHON, "-m", "bot.cli", "run"], child_env(env), data) as bot:
        await bot.wait_line(lambda line: BANNER in line, 120)
        up = time.time()
        rows = await _until_stored(db, "backlog", args.messages, timeout_s=600)
        backlog = max(datetime.fromisoformat(r[1]).timestamp() for r in rows) - up
        await until_idle(bot.pid)
        burst, wall, cpu, appending = await _phase(bot, server, db, "burst", args.messages, 0.0)
        rss, peak = _rss_kb(bot.pid)
        paced, *_ = await _phase(bot, server, db, "paced", args.paced, 0.1)
    n = args.messages
    print(f"inbox bench ({path} path): {n} waiting at start, {n} in a burst, {args.paced} paced at 10/s")
    print(f"  backlog: {n / backlog:.0f} messages/s stored ({backlog:.2f} s from the start banner to the last stored)")
    print(f"  burst: {n / wall:.0f} messages/s stored ({wall:.2f} s from the first APPEND;")
    print(f"         the APPENDs themselves took {appending:.2f} s, {n / appending:.0f}/s)")
    print(f"  burst arrival -> stored: p50 {median(burst):.3f} s, p95 {percentile(burst, 95):.3f} s")
    print(f"  paced arrival -> stored (IDLE): p50 {median(paced):.3f} s, p95 {percentile(paced, 95):.3f} s")
    print(f"  bot CPU per message: {cpu / n * 1000:.2f} ms; RSS {rss / 1024:.0f} MB (peak {peak / 1024:.0f} MB)")


def _ready(child: Child) -> str:
    return next(line for _, line in child.lines if line.startswith("ready ")).split()[1]


def cli(argv: list[str] | None = None) -> None:
    """Parse arguments and run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--paced", type=int, default=100)
    parser.add_argument("--model", action="store_true", help="triage with an instantly answering fake model")
    args = parser.parse_args(argv)
    try:
        asyncio.run(run(args))
    finally:
        kill_leftovers()


if __name__ == "__main__":
    cli()
