"""Telegram reply path as deployed: ``coo run`` in its own process, fakes in theirs, real HTTP.

    python -m bench.deployed [--runs 3] [--sequential 200] [--chats 20] [--per-chat 10] [--bots coo,floor]

Each run starts, on loopback: the fake Telegram Bot API (``python -m tests.fakes.telegram_api``), an
instantly answering fake OpenAI-compatible model (``python -m tests.fakes.openai_api``, it echoes
``echo: <message>`` and reports usage), and the bot: ``python -m bot.cli run`` with default settings
and only what a user sets (token, Bot API root, operators, model endpoint, key and name, a fresh
data dir), or the floor (``python -m bench.floor_bot``: bare python-telegram-bot + openai). This
driver talks to the fakes' control APIs over HTTP; every timestamp is CLOCK_MONOTONIC, which all
processes share.

Per run and bot:
- cold start: process start -> first getUpdates the fake sees, -> the start banner on stderr, and -> the
  reply to a message that was waiting when the bot started;
- first reply: the first warm-up message, handout -> reply (loads what the first turn needs);
- (a) sequential: one chat, the next message is pushed once the previous reply arrived; latency =
  handout (the fake's getUpdates response carries the update) -> the fake receives the sendMessage
  that answers it; (b) pre-model: handout -> the fake model receives the chat request for it;
  (c) bot CPU per message: user+sys CPU of the bot process (all threads, from /proc) from the first
  message of (a) until the bot is idle again (so deferred work such as ingestion counts), / messages;
  the part spent before the last reply is shown too. Each phase starts once the bot is idle;
- (d) burst: C chats x M messages pushed at once; wall = push -> last reply; per message latency;
  the bot's CPU, and how often its threads went to sleep (voluntary context switches: waiting for
  work, the GIL or I/O; each is a wake-up later), per message up to the last reply;
- (e) lost / duplicated replies, and replies out of order within a chat;
- (f) memory: the bot's resident set (VmRSS, from /proc) idle after start with no traffic (a bot of its
  own, started with nothing waiting, once its first poll is seen and its CPU has settled), and idle
  again after all the phases above, with the peak (VmHWM) of the run.
Warm-up messages (a separate chat) are not in (a)-(e). The table shows the median over runs.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import json
import math
import os
import signal
import tempfile
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench.chat_text import messages
from bench.procs import (
    PYTHON,
    REPO,
    Child,
    child_env,
    context_switches,
    cpu_seconds,
    kill_leftovers,
    spawn,
    until_idle,
)
from bench.profile_report import report
from bench.stats import median, percentile

TOKEN = "123456789:BENCH-fake-token-not-secret"
API_KEY = "sk-bench-fake-key-000000000000"
MODEL = "gpt-4o-mini"
PRESTART_CHAT = 7000
PRESTART_TEXT = "Good morning! Anything urgent for today?"
"""Sent before the bot starts (the fake holds it): its reply times how long a user waits at a cold start."""
WARMUP_CHAT = 7001
SEQ_CHAT = 7002
FIRST_BURST_CHAT = 8001
ECHO_LIMIT = 1000
"""The fake model echoes at most this many characters (a summary prompt would otherwise come back whole)."""
REPLY_TIMEOUT_S = 60.0
BURST_TIMEOUT_S = 300.0
START_TIMEOUT_S = 120.0
SETTLE_S = 1.0
"""How long to keep listening after the last expected reply, to catch duplicates."""

BANNERS = {"coo": "solo-coo is running.", "floor": "floor bot is running."}


def bot_argv(kind: str) -> list[str]:
    """The command that starts a bot of ``kind`` (``coo`` or ``floor``)."""
    if kind == "coo":
        return [PYTHON, "-m", "bot.cli", "run"]
    return [PYTHON, "-m", "bench.floor_bot"]


@dataclass
class Phase:
    """Latencies (ms) of one phase and what was lost, duplicated or reordered."""

    latencies_ms: list[float] = field(default_factory=list)
    pre_model_ms: list[float] = field(default_factory=list)
    expected: int = 0
    lost: int = 0
    duplicated: int = 0
    out_of_order: int = 0
    wall_s: float = math.nan
    cpu_s: float = math.nan
    """CPU of the bot from the phase's first message until it was idle again (deferred work included)."""
    cpu_replies_s: float = math.nan
    """CPU of the bot from the phase's first message to its last reply only."""
    switches_replies: float = math.nan
    """Voluntary context switches of the bot's threads from the phase's first message to its last reply."""

    def pct(self, p: float) -> float:
        """Latency percentile in ms."""
        return percentile(self.latencies_ms, p)


@dataclass
class RunFigures:
    """Everything one run of one bot measured."""

    bot: str
    to_first_poll_s: float = math.nan
    to_banner_s: float = math.nan
    to_first_reply_s: float = math.nan
    first_reply_ms: float = math.nan
    sequential: Phase = field(default_factory=Phase)
    burst: Phase = field(default_factory=Phase)
    model_calls: int = 0
    other_replies: list[str] = field(default_factory=list)
    seq_handouts: list[float] = field(default_factory=list)
    """Handout time of each sequential message, in order (for the profile's PTB entry figure)."""
    seq_update_ids: list[int] = field(default_factory=list)
    started_at: float = math.nan
    first_poll_at: float = math.nan
    idle_rss_mb: float = math.nan
    """Resident set after start-up settled, no message ever sent (a bot of its own)."""
    used_rss_mb: float = math.nan
    """Resident set idle again after all the phases."""
    peak_rss_mb: float = math.nan
    """Peak resident set of the run (VmHWM)."""

    def row(self) -> dict[str, float]:
        """The figures of the table, by name."""
        seq, burst = self.sequential, self.burst
        return {
            "seq_p50": seq.pct(50),
            "seq_p95": seq.pct(95),
            "seq_p99": seq.pct(99),
            "pre_model_p50": percentile(seq.pre_model_ms, 50),
            "cpu_ms": seq.cpu_s * 1000 / max(1, len(seq.latencies_ms)),
            "cpu_replies_ms": seq.cpu_replies_s * 1000 / max(1, len(seq.latencies_ms)),
            "burst_wall_s": burst.wall_s,
            "burst_p50": burst.pct(50),
            "burst_p99": burst.pct(99),
            "burst_cpu_ms": burst.cpu_s * 1000 / max(1, len(burst.latencies_ms)),
            "burst_cpu_replies_ms": burst.cpu_replies_s * 1000 / max(1, len(burst.latencies_ms)),
            "burst_switches": burst.switches_replies / max(1, len(burst.latencies_ms)),
            "lost": seq.lost + burst.lost,
            "duplicated": seq.duplicated + burst.duplicated,
            "out_of_order": burst.out_of_order,
            "first_poll_s": self.to_first_poll_s,
            "banner_s": self.to_banner_s,
            "cold_reply_s": self.to_first_reply_s,
            "first_reply_ms": self.first_reply_ms,
            "idle_rss_mb": self.idle_rss_mb,
            "used_rss_mb": self.used_rss_mb,
            "peak_rss_mb": self.peak_rss_mb,
        }


class Fakes:
    """The driver's side of the fakes' control APIs."""

    def __init__(self, http: aiohttp.ClientSession, telegram_root: str, model_base: str) -> None:
        self._http = http
        self._tg = telegram_root
        self._llm = model_base.removesuffix("/v1")
        self._next_call = 0
        self.replies: list[dict[str, Any]] = []
        """Every sendMessage the fake Bot API received so far (chat_id, text, at)."""
        self.reply_texts: set[str] = set()
        self.first_poll_at: float | None = None

    async def push(self, batch: Sequence[tuple[int, str]]) -> list[int]:
        """Queue messages (chat id = user id, text) at once; their update ids."""
        body = {"messages": [{"user_id": chat, "chat_id": chat, "text": text} for chat, text in batch]}
        async with self._http.post(f"{self._tg}/_fake/push", json=body) as response:
            response.raise_for_status()
            return list((await response.json())["update_ids"])

    async def poll(self, wait_s: float) -> None:
        """Fetch new calls (waiting up to ``wait_s`` for one); keeps replies and the first poll time."""
        url = f"{self._tg}/_fake/calls?after={self._next_call}&wait={wait_s}"
        async with self._http.get(url) as response:
            response.raise_for_status()
            body = await response.json()
        self._next_call = body["next"]
        for call in body["calls"]:
            method = call["method"].lower()
            if method == "getupdates" and self.first_poll_at is None:
                self.first_poll_at = call["at"]
            elif method == "sendmessage" and call["status"] == 200:
                self.replies.append(call)
                self.reply_texts.add(str(call["text"]))

    async def until(self, done: Any, timeout_s: float) -> bool:
        """Poll until ``done()`` is true; False after ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        while not done():
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            await self.poll(min(1.0, left))
        return True

    async def handouts(self) -> dict[int, float]:
        """update_id -> when a getUpdates response first carried it."""
        async with self._http.get(f"{self._tg}/_fake/handouts") as response:
            response.raise_for_status()
            return {int(k): float(v) for k, v in (await response.json())["handed_out"].items()}

    async def model_requests(self) -> list[dict[str, Any]]:
        """Every request the fake model received (chat and embeddings), with arrival times."""
        async with self._http.get(f"{self._llm}/_fake/requests?after=0") as response:
            response.raise_for_status()
            return list((await response.json())["requests"])


def _reply_text(text: str) -> str:
    return f"echo: {text[:ECHO_LIMIT]}"


def _reply_times(fakes: Fakes) -> dict[str, list[float]]:
    times: dict[str, list[float]] = defaultdict(list)
    for call in fakes.replies:
        times[str(call["text"])].append(float(call["at"]))
    return times


def _score(
    phase: Phase,
    sent: Sequence[tuple[int, int, str]],
    fakes: Fakes,
    handouts: dict[int, float],
    model_at: dict[str, float],
) -> None:
    """Fill latencies, lost, duplicated and order from (update_id, chat, text) in push order."""
    replies = _reply_times(fakes)
    phase.expected = len(sent)
    last_in_chat: dict[int, float] = {}
    for update_id, chat, text in sent:
        stamps = replies.get(_reply_text(text), [])
        if not stamps:
            phase.lost += 1
            continue
        phase.duplicated += len(stamps) - 1
        handed = handouts.get(update_id)
        if handed is None:
            continue
        phase.latencies_ms.append((stamps[0] - handed) * 1000)
        if text in model_at:
            phase.pre_model_ms.append((model_at[text] - handed) * 1000)
        if stamps[0] < last_in_chat.get(chat, -math.inf):
            phase.out_of_order += 1
        last_in_chat[chat] = stamps[0]


def _status_mb(pid: int, name: str) -> float:
    """A size field of /proc/<pid>/status (``VmRSS``, ``VmHWM``) in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/{pid}/status has no {name}")


@dataclass
class Deployment:
    """The fakes and a bot that has polled once."""

    fakes: Fakes
    bot: Child
    pid: int
    """The process whose CPU and memory are measured."""


@asynccontextmanager
async def deployment(
    kind: str,
    args: argparse.Namespace,
    operators: Sequence[int],
    profile: Any = None,
    waiting: Sequence[tuple[int, str]] = (),
) -> AsyncIterator[Deployment]:
    """Start the fakes, queue ``waiting`` messages, start a bot and wait for its first poll; stop all on exit."""
    with tempfile.TemporaryDirectory(prefix="coo-deployed-") as tmp:
        work = Path(tmp)
        async with AsyncExitStack() as stack:
            fake_env = child_env({}, repo_on_path=True)
            tg = await stack.enter_async_context(
                spawn(
                    "fake-telegram",
                    [PYTHON, "-m", "tests.fakes.telegram_api", "--token", TOKEN],
                    fake_env,
                    work,
                    ready_timeout=30,
                )
            )
            llm = await stack.enter_async_context(
                spawn(
                    "fake-model",
                    [PYTHON, "-m", "tests.fakes.openai_api", "--api-key", API_KEY, "--echo-limit", str(ECHO_LIMIT)],
                    fake_env,
                    work,
                    ready_timeout=30,
                )
            )
            tg_root = _ready_url(tg)
            model_base = _ready_url(llm)
            env = child_env(
                {
                    "COO_TELEGRAM__TOKEN": TOKEN,
                    "COO_TELEGRAM__API_BASE_URL": tg_root,
                    "COO_OPERATORS": ",".join(f"telegram:{c}" for c in operators),
                    "COO_LLM__BASE_URL": model_base,
                    "COO_LLM__API_KEY": API_KEY,
                    "COO_LLM__MODEL": MODEL,
                    "COO_DATA_DIR": str(work / "coo-data"),
                },
                repo_on_path=kind == "floor",
            )
            if kind == "coo":
                env.update(args.coo_env)
            argv = bot_argv(kind) if profile is None else profile.argv(kind, bot_argv(kind), env)
            http = await stack.enter_async_context(aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)))
            fakes = Fakes(http, tg_root, model_base)
            bot_cwd = work / "cwd"  # an empty folder: no .env file is read from it
            bot_cwd.mkdir()
            if waiting:
                await fakes.push(waiting)
            bot = await stack.enter_async_context(spawn(kind, argv, env, bot_cwd))
            pid = profile.bot_pid(bot) if profile is not None else bot.pid
            if not await fakes.until(lambda: fakes.first_poll_at is not None, START_TIMEOUT_S):
                raise RuntimeError(f"{kind} never polled:\n{bot.tail()}")
            yield Deployment(fakes, bot, pid)


async def idle_rss(kind: str, args: argparse.Namespace) -> float:
    """Resident set (MB) of a bot started with nothing waiting, once it polls, shows its banner and is idle."""
    async with deployment(kind, args, [PRESTART_CHAT]) as started:
        await started.bot.wait_line(lambda line: BANNERS[kind] in line, START_TIMEOUT_S)
        await until_idle(started.pid, quiet_windows=4)
        return _status_mb(started.pid, "VmRSS")


async def run_once(kind: str, texts: list[str], args: argparse.Namespace, profile: Any = None) -> RunFigures:
    """Start the fakes and one bot, drive warm-up, sequential and burst phases, and measure them."""
    figures = RunFigures(kind)
    n_warm, n_seq = args.warmup, args.sequential
    warm, seq, burst = texts[:n_warm], texts[n_warm : n_warm + n_seq], texts[n_warm + n_seq :]
    burst_chats = list(range(FIRST_BURST_CHAT, FIRST_BURST_CHAT + args.chats))
    if profile is None:
        figures.idle_rss_mb = await idle_rss(kind, args)
    operators = (PRESTART_CHAT, WARMUP_CHAT, SEQ_CHAT, *burst_chats)
    async with deployment(kind, args, operators, profile, [(PRESTART_CHAT, PRESTART_TEXT)]) as started:
        fakes, bot, pid = started.fakes, started.bot, started.pid
        assert fakes.first_poll_at is not None
        figures.to_first_poll_s = fakes.first_poll_at - bot.started_at
        figures.started_at, figures.first_poll_at = bot.started_at, fakes.first_poll_at
        banner_at, _ = await bot.wait_line(lambda line: BANNERS[kind] in line, START_TIMEOUT_S)
        figures.to_banner_s = banner_at - bot.started_at
        waited = _reply_text(PRESTART_TEXT)
        if await fakes.until(lambda: waited in fakes.reply_texts, REPLY_TIMEOUT_S):
            figures.to_first_reply_s = _reply_times(fakes)[waited][0] - bot.started_at

        sent_warm = await _sequential(fakes, WARMUP_CHAT, warm)
        handouts = await fakes.handouts()
        first = sent_warm[0]
        first_reply = _reply_times(fakes).get(_reply_text(first[2]))
        if first_reply and first[0] in handouts:
            figures.first_reply_ms = (first_reply[0] - handouts[first[0]]) * 1000

        await until_idle(pid)  # the warm-up's deferred work is not charged to the sequential phase
        if profile is not None and profile.phase == "sequential":
            await profile.begin(bot)
        cpu0, t0 = cpu_seconds(pid), time.monotonic()
        sent_seq = await _sequential(fakes, SEQ_CHAT, seq)
        figures.sequential.cpu_replies_s = cpu_seconds(pid) - cpu0
        figures.sequential.wall_s = time.monotonic() - t0
        await until_idle(pid)
        figures.sequential.cpu_s = cpu_seconds(pid) - cpu0
        if profile is not None and profile.phase == "sequential":
            await profile.end(bot)

        if profile is not None and profile.phase == "burst":
            await profile.begin(bot)
        cpu0, switches0 = cpu_seconds(pid), context_switches(pid)
        batch = [(burst_chats[i % len(burst_chats)], text) for i, text in enumerate(burst)]
        pushed_at = time.monotonic()
        ids = await fakes.push(batch)
        sent_burst = [(u, c, t) for u, (c, t) in zip(ids, batch, strict=True)]
        expected = {_reply_text(t) for _, _, t in sent_burst}
        await fakes.until(lambda: expected <= fakes.reply_texts, BURST_TIMEOUT_S)
        figures.burst.cpu_replies_s = cpu_seconds(pid) - cpu0
        figures.burst.switches_replies = context_switches(pid) - switches0
        await until_idle(pid)
        figures.burst.cpu_s = cpu_seconds(pid) - cpu0
        figures.used_rss_mb, figures.peak_rss_mb = _status_mb(pid, "VmRSS"), _status_mb(pid, "VmHWM")
        if profile is not None and profile.phase == "burst":
            await profile.end(bot)
        times = _reply_times(fakes)
        arrived = [times[r][0] for r in expected if r in times]
        figures.burst.wall_s = (max(arrived) - pushed_at) if arrived else math.nan
        await asyncio.sleep(SETTLE_S)
        await fakes.poll(0)

        handouts = await fakes.handouts()
        requests = await fakes.model_requests()
        model_at: dict[str, float] = {}
        for request in requests:
            if request["path"].endswith("/chat/completions"):
                figures.model_calls += 1
                model_at.setdefault(request["last_user"], request["at"])
        figures.seq_update_ids = [u for u, _, _ in sent_seq]
        figures.seq_handouts = [handouts.get(u, math.nan) for u, _, _ in sent_seq]
        _score(figures.sequential, sent_seq, fakes, handouts, model_at)
        _score(figures.burst, sent_burst, fakes, handouts, model_at)
        known = {_reply_text(t) for t in [*texts, PRESTART_TEXT]}
        figures.other_replies = [str(c["text"]) for c in fakes.replies if str(c["text"]) not in known]
    return figures


def _ready_url(child: Child) -> str:
    line = next(line for _, line in child.lines if line.startswith("ready "))
    return line.split(" ", 1)[1].strip()


async def _sequential(fakes: Fakes, chat: int, texts: Sequence[str]) -> list[tuple[int, int, str]]:
    """Push one message, wait for its reply (or time out: counted as lost), push the next."""
    sent = []
    for text in texts:
        (update_id,) = await fakes.push([(chat, text)])
        sent.append((update_id, chat, text))
        wanted = _reply_text(text)
        await fakes.until(lambda wanted=wanted: wanted in fakes.reply_texts, REPLY_TIMEOUT_S)
    return sent


# ---- profile -------------------------------------------------------------------------------------


class Profile:
    """``--profile DIR``: run ``coo run`` under ``bench.traced`` and py-spy over one phase (sequential or burst)."""

    def __init__(self, directory: Path, rate: int, pyspy: bool, phase: str = "sequential") -> None:
        self.directory = directory
        self.rate = rate
        self.pyspy = pyspy
        self.phase = phase
        """Which phase is profiled: ``sequential`` or ``burst``."""
        self._spy: asyncio.subprocess.Process | None = None
        directory.mkdir(parents=True, exist_ok=True)

    def argv(self, kind: str, argv: list[str], env: dict[str, str]) -> list[str]:
        """The traced launcher in place of ``python -m bot.cli run``; sets its environment."""
        env["BENCH_TRACE"] = str(self.directory / "trace.json")
        env["PYTHONPATH"] = str(REPO)
        return [PYTHON, "-m", "bench.traced", *argv[2:]]

    def bot_pid(self, bot: Child) -> int:
        """The process whose CPU is measured."""
        return bot.pid

    async def begin(self, bot: Child) -> None:
        """Reset the tracer's window and start sampling."""
        (self.directory / "trace.json").unlink(missing_ok=True)
        os.kill(bot.pid, signal.SIGUSR1)
        if self.pyspy:
            spy = Path(PYTHON).with_name("py-spy")
            self._spy = await asyncio.create_subprocess_exec(
                str(spy), "record", "--pid", str(bot.pid), "--rate", str(self.rate), "--format", "raw",
                "--threads", "--nonblocking", "-o", str(self.directory / "pyspy.txt"),
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            )  # fmt: skip

    async def end(self, bot: Child) -> None:
        """Write the tracer's window and stop sampling (py-spy writes its file on SIGINT)."""
        os.kill(bot.pid, signal.SIGUSR2)
        if self._spy is not None:
            self._spy.send_signal(signal.SIGINT)
            await asyncio.wait_for(self._spy.wait(), 60)
            self._spy = None
        trace = self.directory / "trace.json"
        for _ in range(200):  # the tracer writes it from its signal handler, within a moment
            if trace.exists():
                break
            await asyncio.sleep(0.05)

    def report(self, figures: RunFigures) -> str:
        """The breakdown, with handout -> handler entry from the tracer's stamps."""
        trace = json.loads((self.directory / "trace.json").read_text())
        entries = {int(k): v for k, v in trace["handler_entry"].items()}
        ptb = [
            (entries[u] - h) * 1000
            for u, h in zip(figures.seq_update_ids, figures.seq_handouts, strict=True)
            if u in entries and not math.isnan(h)
        ]
        if self.phase == "burst":
            return report(self.directory, figures.burst.expected, self.rate)
        text = report(self.directory, len(figures.seq_update_ids), self.rate, ptb)
        entered = trace.get("startup", {}).get("launcher_entered_at")
        if entered is not None:
            text += (
                f"\n  process start -> launcher entered (interpreter start-up): {entered - figures.started_at:.2f} s"
                f"\n  launcher entered -> first getUpdates: {figures.first_poll_at - entered:.2f} s"
            )
        return text


# ---- report --------------------------------------------------------------------------------------

ROWS = [
    ("sequential p50 / p95 / p99 (handout -> reply)", ("seq_p50", "seq_p95", "seq_p99"), "{:.1f}", " ms"),
    ("time before the model is called (p50)", ("pre_model_p50",), "{:.1f}", " ms"),
    ("bot CPU per message (sequential, until idle)", ("cpu_ms",), "{:.1f}", " ms"),
    ("  of which until the last reply", ("cpu_replies_ms",), "{:.1f}", " ms"),
    ("burst: all answered (wall)", ("burst_wall_s",), "{:.2f}", " s"),
    ("burst per message p50 / p99", ("burst_p50", "burst_p99"), "{:.0f}", " ms"),
    ("bot CPU per message (burst, until idle)", ("burst_cpu_ms",), "{:.1f}", " ms"),
    ("  of which until the last reply", ("burst_cpu_replies_ms",), "{:.1f}", " ms"),
    ("bot threads put to sleep per message (burst, to the last reply)", ("burst_switches",), "{:.1f}", ""),
    ("lost / duplicated / out of order", ("lost", "duplicated", "out_of_order"), "{:.0f}", ""),
    ("cold start: to the first poll", ("first_poll_s",), "{:.2f}", " s"),
    ("cold start: to the banner", ("banner_s",), "{:.2f}", " s"),
    ("cold start: to the reply to a message sent before start", ("cold_reply_s",), "{:.2f}", " s"),
    ("first reply after start (handout -> reply)", ("first_reply_ms",), "{:.0f}", " ms"),
    ("memory: idle after start, no traffic (RSS)", ("idle_rss_mb",), "{:.0f}", " MB"),
    ("memory: idle after the phases (RSS) / peak", ("used_rss_mb", "peak_rss_mb"), "{:.0f}", " MB"),
]


def _cell(runs: list[RunFigures], keys: Sequence[str], fmt: str, unit: str) -> str:
    if not runs:
        return "-"
    values = [median([r.row()[k] for r in runs]) for k in keys]
    if any(math.isnan(v) for v in values):
        return "-"
    return " / ".join(fmt.format(v) for v in values) + unit


def table(results: dict[str, list[RunFigures]]) -> str:
    """The Markdown table of medians, one column per bot."""
    bots = list(results)
    names = {"coo": "solo-coo (`coo run`)", "floor": "floor (PTB + openai)"}
    lines = [
        "| | " + " | ".join(names.get(b, b) for b in bots) + " |",
        "|---|" + "---|" * len(bots),
    ]
    for label, keys, fmt, unit in ROWS:
        lines.append(f"| {label} | " + " | ".join(_cell(results[b], keys, fmt, unit) for b in bots) + " |")
    return "\n".join(lines)


def _quarter(figures: RunFigures, which: int) -> float:
    values = figures.sequential.latencies_ms
    q = max(1, len(values) // 4)
    return percentile(values[:q] if which == 0 else values[-q:], 50)


def per_run(figures: RunFigures) -> str:
    """One line per run, for the log."""
    r = figures.row()
    return (
        f"{figures.bot}: seq p50 {r['seq_p50']:.1f} p95 {r['seq_p95']:.1f} p99 {r['seq_p99']:.1f} ms, "
        f"pre-model p50 {r['pre_model_p50']:.1f} ms, cpu {r['cpu_ms']:.1f} ms/msg "
        f"({r['cpu_replies_ms']:.1f} to the last reply); "
        f"burst wall {r['burst_wall_s']:.2f} s p50 {r['burst_p50']:.0f} p99 {r['burst_p99']:.0f} ms "
        f"cpu {r['burst_cpu_ms']:.1f} ms/msg ({r['burst_cpu_replies_ms']:.1f} to the last reply, "
        f"{r['burst_switches']:.1f} thread sleeps/msg); lost {r['lost']:.0f} dup {r['duplicated']:.0f} "
        f"order {r['out_of_order']:.0f}; poll {r['first_poll_s']:.2f} s banner {r['banner_s']:.2f} s "
        f"reply to a waiting message {r['cold_reply_s']:.2f} s "
        f"first reply {r['first_reply_ms']:.0f} ms; RSS idle {r['idle_rss_mb']:.0f} MB, after the phases "
        f"{r['used_rss_mb']:.0f} MB, peak {r['peak_rss_mb']:.0f} MB; model calls {figures.model_calls}; "
        f"seq p50 of first / last quarter {_quarter(figures, 0):.0f} / {_quarter(figures, -1):.0f} ms"
        + (
            f"; {len(figures.other_replies)} other replies, e.g. {figures.other_replies[0][:80]!r}"
            if figures.other_replies
            else ""
        )
    )


async def main(args: argparse.Namespace) -> dict[str, list[RunFigures]]:
    """Run every bot ``--runs`` times, interleaved so that machine load drifts hit both alike."""
    if args.profile is not None:
        profile = Profile(args.profile, args.rate, not args.no_pyspy, args.profile_phase)
        figures = await run_once("coo", _texts(args), args, profile)
        print(f"profiled run (tracer and py-spy add overhead) {per_run(figures)}")
        print(profile.report(figures))
        return {"coo": [figures]}
    bots = [b.strip() for b in args.bots.split(",") if b.strip()]
    texts = _texts(args)
    results: dict[str, list[RunFigures]] = {b: [] for b in bots}
    for run in range(1, args.runs + 1):
        for bot in bots:
            figures = await run_once(bot, texts, args)
            results[bot].append(figures)
            print(f"run {run}/{args.runs} {per_run(figures)}", flush=True)
            if args.save is not None:
                _save(args.save, run, figures)
    print()
    print(
        f"Median of {args.runs} run(s): {args.sequential} sequential messages in one chat, then a burst of "
        f"{args.chats} chats x {args.per_chat}; {args.warmup} warm-up messages not counted."
    )
    print(table(results))
    return results


def _save(directory: Path, run: int, figures: RunFigures) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    data = {
        "row": figures.row(),
        "sequential_ms": figures.sequential.latencies_ms,
        "pre_model_ms": figures.sequential.pre_model_ms,
        "burst_ms": figures.burst.latencies_ms,
        "model_calls": figures.model_calls,
        "other_replies": figures.other_replies,
    }
    (directory / f"{figures.bot}-{run}.json").write_text(json.dumps(data))


def _texts(args: argparse.Namespace) -> list[str]:
    n = args.warmup + args.sequential + args.chats * args.per_chat
    if args.short_text:
        return [f"m-{i}" for i in range(n)]
    return messages(n, seed=args.seed)


def _env_pair(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError("expected NAME=VALUE")
    return name, value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per bot; the table shows medians")
    parser.add_argument("--bots", default="coo,floor", help="comma separated: coo, floor")
    parser.add_argument("--sequential", type=int, default=200, help="messages in the sequential phase")
    parser.add_argument("--chats", type=int, default=20, help="chats in the burst")
    parser.add_argument("--per-chat", type=int, default=10, help="messages per chat in the burst")
    parser.add_argument("--warmup", type=int, default=5, help="unmeasured warm-up messages (own chat)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the message texts")
    parser.add_argument(
        "--profile", type=Path, default=None, help="one traced + py-spy run of coo; files go to this folder"
    )
    parser.add_argument("--rate", type=int, default=200, help="py-spy samples per second (--profile)")
    parser.add_argument("--no-pyspy", action="store_true", help="--profile with the tracer only")
    parser.add_argument(
        "--profile-phase", choices=("sequential", "burst"), default="sequential", help="the phase --profile covers"
    )
    diagnosis = parser.add_argument_group("diagnosis only (the figures to quote use none of these)")
    diagnosis.add_argument(
        "--coo-env", type=_env_pair, action="append", default=[], metavar="NAME=VALUE",
        help="an extra environment variable for coo run, e.g. COO_MEMORY__SEMANTIC=false",
    )  # fmt: skip
    diagnosis.add_argument("--short-text", action="store_true", help='texts "m-<i>" instead of realistic ones')
    diagnosis.add_argument("--save", type=Path, default=None, help="write per-message latencies as JSON here")
    return parser.parse_args(argv)


def cli(argv: list[str] | None = None) -> None:
    """Entry point: run, print, and leave no child process behind."""
    atexit.register(kill_leftovers)
    # Ctrl-C cancels the run so that every child is stopped; SIGTERM does the same, and SIGINT is
    # handled even when the shell started us with it ignored (a background job).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: signal.raise_signal(signal.SIGINT))
    try:
        asyncio.run(main(parse_args(argv)))
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    finally:
        kill_leftovers()


if __name__ == "__main__":
    cli()
