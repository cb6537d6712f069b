"""MCP tools as deployed: ``coo run`` in its own process, real MCP servers it starts over stdio, the fake
Telegram Bot API and a fake model in their own processes, real HTTP.

    python -m bench.mcp [--runs 3] [--calls 20] [--servers 5] [--tools 20]

Per run:
- first poll: process start -> first getUpdates, with no MCP server configured and with ``--servers``
  servers of ``--tools`` tools each (the servers connect in the background: they must not delay it);
  and start -> every server listed (asked with /mcp over Telegram until each says ``up``);
- a trusted read through the COO: the fake model answers ``call mcp_s0__list_events {...}`` with that tool
  call; the time from the model's request that got the call to its next request (which carries the tool's
  result) is the turn's tool step. The same for the built-in ``current_time`` (no I/O). The difference is
  what an MCP read adds to a turn; minus a direct call to the same server (an MCP client in this process,
  on the event loop ``coo run`` uses, the same tool, no COO), it is the COO's own overhead per call.

The three are measured in rounds (an MCP step, a built-in step, a direct call), after ``WARM_UP`` rounds
that are not counted (the embedder's first load, first calls), and each waits until the bot is idle, as
an operator reading the last answer would: each turn's embedding of the message for memory runs in the
background after its reply, and on a small machine a measurement sent at once would time that instead.
The machine's own load then weighs on all three alike.
The table shows medians over runs (each run's median of ``--calls`` rounds).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench.deployed import API_KEY, MODEL, START_TIMEOUT_S, TOKEN, Fakes, _ready_url
from bench.procs import PYTHON, REPO, child_env, kill_leftovers, spawn, until_idle
from bench.stats import median
from bot import eventloop

SERVER = REPO / "tests" / "fakes" / "mcp_servers.py"
READ_TOOL = "mcp_s0__list_events"
CHAT = 7100
DAY = '{"day": "2026-12-11"}'
WARM_UP = 5


@dataclass
class RunFigures:
    """One run's figures (ms unless named _s)."""

    first_poll_plain_s: float = float("nan")
    first_poll_mcp_s: float = float("nan")
    all_listed_s: float = float("nan")
    mcp_step_ms: list[float] = field(default_factory=list)
    builtin_step_ms: list[float] = field(default_factory=list)
    direct_ms: list[float] = field(default_factory=list)


def servers_env(count: int, state: Path) -> dict[str, str]:
    servers = {f"s{i}": {"command": PYTHON, "args": [str(SERVER), "wide", str(state / f"s{i}")]} for i in range(count)}
    return {"COO_MCP__SERVERS": json.dumps(servers), "COO_MCP__READ_ONLY": json.dumps(["s0.list_events"])}


async def _start(stack: AsyncExitStack, work: Path, name: str) -> tuple[Fakes, str, str]:
    fake_env = child_env({}, repo_on_path=True)
    tg_argv = [PYTHON, "-m", "tests.fakes.telegram_api", "--token", TOKEN]
    tg = await stack.enter_async_context(spawn(f"{name}-tg", tg_argv, fake_env, work, ready_timeout=30))
    model_argv = [PYTHON, "-m", "tests.fakes.openai_api", "--api-key", API_KEY, "--tool-calls"]
    llm = await stack.enter_async_context(spawn(f"{name}-model", model_argv, fake_env, work, ready_timeout=30))
    http = await stack.enter_async_context(aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)))
    return Fakes(http, _ready_url(tg), _ready_url(llm)), _ready_url(tg), _ready_url(llm)


def _bot_env(tg_root: str, model_base: str, data: Path, extra: dict[str, str]) -> dict[str, str]:
    return child_env(
        {
            "COO_TELEGRAM__TOKEN": TOKEN,
            "COO_TELEGRAM__API_BASE_URL": tg_root,
            "COO_OPERATORS": f"telegram:{CHAT}",
            "COO_LLM__BASE_URL": model_base,
            "COO_LLM__API_KEY": API_KEY,
            "COO_LLM__MODEL": MODEL,
            "COO_DATA_DIR": str(data),
            **extra,
        }
    )


async def _first_poll(work: Path, name: str, extra: dict[str, str], figures: RunFigures, args: Any) -> None:
    """Start a bot, time its first poll; with servers, also until all are listed and the tool steps."""
    async with AsyncExitStack() as stack:
        fakes, tg_root, model_base = await _start(stack, work, name)
        cwd = work / f"{name}-cwd"
        cwd.mkdir()
        env = _bot_env(tg_root, model_base, work / f"{name}-data", extra)
        bot = await stack.enter_async_context(spawn(name, [PYTHON, "-m", "bot.cli", "run"], env, cwd))
        if not await fakes.until(lambda: fakes.first_poll_at is not None, START_TIMEOUT_S):
            raise RuntimeError(f"{name} never polled:\n{bot.tail()}")
        assert fakes.first_poll_at is not None
        poll_s = fakes.first_poll_at - bot.started_at
        if not extra:
            figures.first_poll_plain_s = poll_s
            return
        figures.first_poll_mcp_s = poll_s
        await _until_listed(fakes, args.servers)
        figures.all_listed_s = time.monotonic() - bot.started_at
        await _rounds(fakes, bot.pid, work, args.calls, figures)


async def _until_listed(fakes: Fakes, servers: int) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        listing = await _listing(fakes)
        if listing.count(": up, 20 tools") == servers:
            return
        await asyncio.sleep(0.5)
    raise RuntimeError("the MCP servers were never all listed")


async def _listing(fakes: Fakes) -> str:
    """The /mcp reply (a long one comes in parts)."""
    seen = len(fakes.replies)
    await fakes.push([(CHAT, "/mcp")])
    await fakes.until(lambda: any("/mcp trust <server>" in str(r["text"]) for r in fakes.replies[seen:]), 30)
    return "\n".join(str(r["text"]) for r in fakes.replies[seen:])


async def _ask(fakes: Fakes, text: str, timeout: float) -> None:
    seen = len(fakes.replies)
    await fakes.push([(CHAT, text)])
    if not await fakes.until(lambda: len(fakes.replies) > seen, timeout):
        raise RuntimeError(f"no reply to {text!r}")


async def _steps(fakes: Fakes, text: str, calls: int) -> list[float]:
    """Per call: model request answered with the tool call -> the next request (with the tool's result)."""
    before = len(await fakes.model_requests())
    for _ in range(calls):
        await _ask(fakes, text, 60)
    deadline = time.monotonic() + 30
    while True:  # a reply can be a notice that came before the turn's second request: wait for that request
        chat = [r for r in (await fakes.model_requests())[before:] if r["path"].endswith("/chat/completions")]
        ours = [r for r in chat if r["last_user"] == text]
        if len(ours) >= 2 * calls or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.05)
    # Each call is two requests in order: the one answered with the tool call, then the one with its result.
    return [(answered["at"] - asked["at"]) * 1000 for asked, answered in zip(ours[::2], ours[1::2], strict=False)]


async def _rounds(fakes: Fakes, pid: int, work: Path, calls: int, figures: RunFigures) -> None:
    """``WARM_UP`` uncounted rounds, then ``calls`` rounds of an MCP step, a built-in step and a direct call,
    each once the bot is idle."""
    from mcp import Client, StdioServerParameters

    target = StdioServerParameters(command=PYTHON, args=[str(SERVER), "wide", str(work / "direct")])
    async with Client(target, cache=None) as client:
        await client.list_tools()
        for i in range(WARM_UP + calls):
            counted = i >= WARM_UP
            await until_idle(pid, window_s=0.2)
            mcp = await _steps(fakes, f"call {READ_TOOL} {DAY}", 1)
            await until_idle(pid, window_s=0.2)
            builtin = await _steps(fakes, "call current_time {}", 1)
            await until_idle(pid, window_s=0.2)
            t0 = time.perf_counter()
            await client.call_tool("list_events", json.loads(DAY))
            direct = (time.perf_counter() - t0) * 1000
            if counted:
                figures.mcp_step_ms += mcp
                figures.builtin_step_ms += builtin
                figures.direct_ms.append(direct)


async def run_once(args: argparse.Namespace) -> RunFigures:
    figures = RunFigures()
    with tempfile.TemporaryDirectory(prefix="coo-mcp-bench-") as tmp:
        work = Path(tmp)
        await _first_poll(work, "plain", {}, figures, args)
        await _first_poll(work, "mcp", servers_env(args.servers, work), figures, args)
    return figures


def report(runs: list[RunFigures], args: argparse.Namespace) -> str:
    def med(values: list[float]) -> float:
        return median(values) if values else float("nan")

    mcp = median([med(r.mcp_step_ms) for r in runs])
    builtin = median([med(r.builtin_step_ms) for r in runs])
    direct = median([med(r.direct_ms) for r in runs])
    rows = [
        f"runs: {len(runs)}, {args.calls} calls each, {args.servers} servers x {args.tools} tools (stdio)",
        f"first poll, no MCP server          {median([r.first_poll_plain_s for r in runs]):7.2f} s",
        f"first poll, {args.servers} servers configured    {median([r.first_poll_mcp_s for r in runs]):7.2f} s",
        f"start -> every server listed       {median([r.all_listed_s for r in runs]):7.2f} s",
        f"turn's tool step, MCP read p50     {mcp:7.2f} ms",
        f"turn's tool step, built-in p50     {builtin:7.2f} ms",
        f"direct MCP call (no COO) p50       {direct:7.2f} ms",
        f"MCP read adds to a turn            {mcp - builtin:7.2f} ms",
        f"COO overhead per call              {mcp - builtin - direct:7.2f} ms   (aim: < 5 ms)",
    ]
    return "\n".join(rows)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--calls", type=int, default=20, help="counted rounds per run")
    parser.add_argument("--servers", type=int, default=5)
    parser.add_argument("--tools", type=int, default=20, choices=[20], help="tools per server (the wide server)")
    return parser.parse_args(argv)


async def main(args: argparse.Namespace) -> list[RunFigures]:
    runs = []
    for i in range(args.runs):
        runs.append(await run_once(args))
        print(f"run {i + 1}: {runs[-1]}", file=sys.stderr, flush=True)
    return runs


def cli(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        # The driver runs on the loop ``coo run`` uses, so the direct call is timed on it too.
        print(report(eventloop.run(main(args)), args))
    finally:
        kill_leftovers()


if __name__ == "__main__":
    cli()
