"""Goals as deployed: ``coo run`` in its own process, fakes in theirs, real HTTP.

    python -m bench.goals [--goals 20] [--tasks 5] [--runs 3]

Each run starts, on loopback: the fake Telegram Bot API, a fake model that answers at once (every
planner call gets a plan of ``--tasks`` tasks: t1, then t2..t(n-1) in parallel after it, then the last
after those; every task finishes at its first call; every check says "met"), and ``coo run`` with
default settings (task concurrency 2, runner poll 1 s) and only what a user sets. The driver sends
``--alone`` goals one at a time (each approved when its card came, the next sent when it is done), then
``--goals`` ``/goal`` messages at once, waits for their plan cards, and taps Approve on all of them at once.

Figures per run:
- approve -> first task: when the fake Bot API handed out the tap -> when the fake model received the
  first task's call for that goal (CLOCK_MONOTONIC, shared by all processes), for a goal alone and for
  goals approved at once (there it includes waiting for a free task slot: concurrency 2);
- tasks/s: tasks done over the time from the first task started to the last done (the event log);
- task wall time: each task's running -> done in the event log (model call, skill graph, ledger, all);
- all goals done: first tap -> the last goal's "is done" message.
Then, on a copy of the run's database (so the tables have the run's size), the ledger's own cost per
task transition: the product's ``TaskLedger`` calls a task goes through (created with its run, promoted,
claimed with its lease, attempt started, heartbeat, attempt ended, done), each timed, p50/p99 over
``--ledger-goals`` x ``--tasks`` tasks. That part runs in this process with nothing else running.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import shutil
import sqlite3
import tempfile
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

from bench.deployed import Fakes
from bench.procs import PYTHON, Child, child_env, kill_leftovers, spawn
from bench.stats import median, percentile

TOKEN = "123456789:BENCH-fake-token-not-secret"
API_KEY = "sk-bench-fake-key-000000000000"
MODEL = "gpt-4o-mini"
OPERATOR = 7001
TIMEOUT_S = 300.0


@dataclass
class RunFigures:
    """What one run measured."""

    approve_alone_ms: list[float] = field(default_factory=list)
    approve_to_first_task_ms: list[float] = field(default_factory=list)
    task_wall_ms: list[float] = field(default_factory=list)
    tasks_done: int = 0
    tasks_per_s: float = 0.0
    all_done_s: float = 0.0
    ledger_ms: dict[str, list[float]] = field(default_factory=dict)


class Control(Fakes):
    """The driver's side of the fakes' control APIs (``bench.deployed``'s), for one operator's chat."""

    async def push_texts(self, texts: list[str]) -> None:
        """Queue the operator's messages at once."""
        await self.push([(OPERATOR, text) for text in texts])

    async def press(self, message_id: int, data: str) -> int:
        """Tap a button of a message the bot sent; the update id of the press."""
        body = {"user_id": OPERATOR, "chat_id": OPERATOR, "message_id": message_id, "data": data}
        async with self._http.post(f"{self._tg}/_fake/press", json=body) as response:
            response.raise_for_status()
            return int((await response.json())["update_id"])

    async def until_true(self, done: Callable[[], bool], timeout_s: float) -> None:
        """Collect the bot's messages until ``done()``; TimeoutError after ``timeout_s``."""
        if not await self.until(done, timeout_s):
            raise TimeoutError("the bot did not get there in time")

    def starting_with(self, prefix: str) -> list[dict[str, Any]]:
        """The bot's messages so far whose text starts with ``prefix``."""
        return [c for c in self.replies if str(c["text"]).startswith(prefix)]


def _ready_url(child: Child) -> str:
    line = next(text for _, text in child.lines if text.startswith("ready "))
    return line.removeprefix("ready ").strip()


async def _fake(stack: AsyncExitStack, name: str, argv: list[str], work: Path) -> str:
    child = await stack.enter_async_context(spawn(name, argv, child_env({}, repo_on_path=True), work, ready_timeout=30))
    return _ready_url(child)


async def run_once(args: argparse.Namespace) -> RunFigures:
    """One deployed run, then the ledger figures on a copy of its database."""
    figures = RunFigures()
    with tempfile.TemporaryDirectory(prefix="coo-goals-") as tmp:
        work = Path(tmp)
        data_dir = work / "coo-data"
        async with AsyncExitStack() as stack:
            tg_root = await _fake(
                stack, "fake-telegram", [PYTHON, "-m", "tests.fakes.telegram_api", "--token", TOKEN], work
            )
            model_argv = [PYTHON, "-m", "tests.fakes.openai_api", "--api-key", API_KEY, "--goal-tasks", str(args.tasks)]
            model_base = await _fake(stack, "fake-model", model_argv, work)
            env = child_env(
                {
                    "COO_TELEGRAM__TOKEN": TOKEN,
                    "COO_TELEGRAM__API_BASE_URL": tg_root,
                    "COO_OPERATORS": f"telegram:{OPERATOR}",
                    "COO_LLM__BASE_URL": model_base,
                    "COO_LLM__API_KEY": API_KEY,
                    "COO_LLM__MODEL": MODEL,
                    "COO_DATA_DIR": str(data_dir),
                }
            )
            cwd = work / "cwd"  # an empty folder: no .env file is read from it
            cwd.mkdir()
            bot = await stack.enter_async_context(spawn("coo", [PYTHON, "-m", "bot.cli", "run"], env, cwd))
            await bot.wait_line(lambda line: "solo-coo is running." in line, 120)
            http = await stack.enter_async_context(aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)))
            control = Control(http, tg_root, model_base)
            await _drive(control, args, figures)
            await _read_log(data_dir / "coo.sqlite", figures)
        figures.ledger_ms = await _ledger_costs(data_dir / "coo.sqlite", work / "ledger", args)
    return figures


async def _drive(control: Control, args: argparse.Namespace, figures: RunFigures) -> None:
    alone = [f"/goal alone {i:02d}: get the newsletter ready" for i in range(args.alone)]
    for number, text in enumerate(alone, 1):
        taps = await _propose_and_approve(control, [text])
        await control.until_true(lambda n=number: len(_done(control)) >= n, TIMEOUT_S)  # type: ignore[misc]
        figures.approve_alone_ms += await _to_first_task(control, taps)
    burst = [f"/goal burst {i:02d}: get the newsletter ready" for i in range(args.goals)]
    before = len(_done(control))
    taps = await _propose_and_approve(control, burst)
    await control.until_true(lambda: len(_done(control)) >= before + args.goals, TIMEOUT_S)
    figures.approve_to_first_task_ms = await _to_first_task(control, taps)
    handouts = await control.handouts()
    figures.all_done_s = max(c["at"] for c in _done(control)) - min(handouts[u] for u in taps if u in handouts)


async def _propose_and_approve(control: Control, texts: list[str]) -> dict[int, str]:
    """Send the goals at once, wait for their plan cards, tap Approve on each; tap update id -> goal."""
    goals = {t.removeprefix("/goal ") for t in texts}

    def cards() -> list[dict[str, Any]]:
        return [c for c in control.starting_with("Start this plan?") if _goal_of_card(c) in goals]

    await control.push_texts(texts)
    await control.until_true(lambda: len(cards()) >= len(texts), TIMEOUT_S)
    taps = {}
    for card in cards():
        data = next(d for label, d in card["buttons"] if label == "Approve")
        taps[await control.press(int(card["message_id"]), data)] = _goal_of_card(card)
    return taps


def _goal_of_card(card: dict[str, Any]) -> str:
    return str(card["text"]).split("Goal: ", 1)[1].split(" (", 1)[0]


async def _to_first_task(control: Control, taps: dict[int, str]) -> list[float]:
    """For each tap: when it was handed out -> when the model got the first task call of its goal (ms)."""
    handouts = await control.handouts()
    first_call: dict[str, float] = {}
    for request in await control.model_requests():
        text = str(request["last_user"])
        if "\nGoal: " in text and "\nYour task (" in text:
            first_call.setdefault(text.split("\nGoal: ", 1)[1].split("\n", 1)[0], request["at"])
    return [
        (first_call[goal] - handouts[update]) * 1000
        for update, goal in taps.items()
        if goal in first_call and update in handouts
    ]


def _done(control: Control) -> list[dict[str, Any]]:
    return [c for c in control.replies if " is done." in str(c["text"])]


async def _read_log(path: Path, figures: RunFigures) -> None:
    def read() -> list[tuple[str, str, str]]:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
            return list(
                conn.execute(
                    "SELECT at, kind, json_extract(payload, '$.task_id') FROM events "
                    "WHERE kind IN ('task.running', 'task.done') ORDER BY id"
                )
            )

    started: dict[str, datetime] = {}
    ended: dict[str, datetime] = {}
    for at, kind, task_id in await asyncio.to_thread(read):
        when = datetime.fromisoformat(at)
        (started if kind == "task.running" else ended)[task_id] = when
    figures.task_wall_ms = [(ended[t] - started[t]).total_seconds() * 1000 for t in ended if t in started]
    figures.tasks_done = len(ended)
    if ended and started:
        span = (max(ended.values()) - min(started.values())).total_seconds()
        figures.tasks_per_s = len(ended) / span if span > 0 else 0.0


async def _ledger_costs(source: Path, folder: Path, args: argparse.Namespace) -> dict[str, list[float]]:
    """Time the ledger calls of each task's life on a copy of the run's database."""
    from memory.db import open_database
    from memory.tasks import TaskLedger

    await asyncio.to_thread(_copy_database, source, folder)
    costs: dict[str, list[float]] = defaultdict(list)

    async def timed(name: str, call: Awaitable[Any]) -> Any:
        started = time.perf_counter()
        result = await call
        costs[name].append((time.perf_counter() - started) * 1000 / (args.tasks if name == "create run" else 1))
        return result

    specs = [
        {"key": f"t{i}", "title": f"Step {i}", "skill": "research", "instructions": "x"} for i in range(args.tasks)
    ]
    async with open_database(folder) as db:
        ledger = TaskLedger(db)
        await ledger.setup()
        for n in range(args.ledger_goals):
            goal = await ledger.create_goal(f"ledger bench {n}", "telegram:1", "telegram:1", status="active")
            await timed("create run", ledger.add_run(goal.id, specs, 1))
            now = datetime.now().astimezone()
            await timed("promote", ledger.promote(now))
            for _ in range(args.tasks):
                task = await timed("claim", ledger.claim("bench", timedelta(minutes=2), now))
                attempt = await timed("start attempt", ledger.start_attempt(task))
                await timed("heartbeat", ledger.heartbeat(task.id, "bench", now + timedelta(minutes=2)))
                await timed("end attempt", ledger.end_attempt(attempt, "done", "", MODEL, 0.0001, [{"tool": "x"}]))
                await timed("done", ledger.move(task.id, "running", "done", result={"summary": "ok"}, lease_owner=None))
    return dict(costs)


def _copy_database(source: Path, folder: Path) -> None:
    folder.mkdir()
    for suffix in ("", "-wal", "-shm"):
        if Path(f"{source}{suffix}").exists():
            shutil.copy(f"{source}{suffix}", folder / f"coo.sqlite{suffix}")


def _fmt(values: list[float], unit: str = "ms", digits: int = 1) -> str:
    return f"{median(values):.{digits}f} / {percentile(values, 99):.{digits}f} {unit}" if values else "-"


def report(runs: list[RunFigures], args: argparse.Namespace) -> str:
    """The figures as a table: medians over runs of each run's figure."""
    lines = [
        f"goals: {args.goals} x {args.tasks} tasks, {len(runs)} run(s); medians over runs",
        "",
        "| figure | p50 | p99 |",
        "|---|---|---|",
    ]
    first = [median(r.approve_to_first_task_ms) for r in runs]
    first99 = [percentile(r.approve_to_first_task_ms, 99) for r in runs]
    wall = [median(r.task_wall_ms) for r in runs]
    wall99 = [percentile(r.task_wall_ms, 99) for r in runs]
    alone = [median(r.approve_alone_ms) for r in runs]
    alone99 = [percentile(r.approve_alone_ms, 99) for r in runs]
    lines.append(
        f"| approve -> first task's model call, one goal | {median(alone):.0f} ms | {median(alone99):.0f} ms |"
    )
    lines.append(
        f"| approve -> first task's model call, {args.goals} approved at once | {median(first):.0f} ms "
        f"| {median(first99):.0f} ms |"
    )
    lines.append(f"| task running -> done (instant model) | {median(wall):.0f} ms | {median(wall99):.0f} ms |")
    names = list(runs[0].ledger_ms)
    per_task = [sum(median(r.ledger_ms[n]) for n in names if n != "promote") for r in runs]
    for name in names:
        p50 = median([median(r.ledger_ms[name]) for r in runs])
        p99 = median([percentile(r.ledger_ms[name], 99) for r in runs])
        lines.append(f"| ledger: {name} | {p50:.2f} ms | {p99:.2f} ms |")
    lines.append(f"| ledger: one task's transitions together | {median(per_task):.2f} ms | |")
    lines += [
        "",
        f"tasks done per run: {[r.tasks_done for r in runs]}; tasks/s: {median([r.tasks_per_s for r in runs]):.1f}; "
        f"first tap -> last goal done: {median([r.all_done_s for r in runs]):.1f} s",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--goals", type=int, default=20, help="goals approved at once")
    parser.add_argument("--alone", type=int, default=5, help="goals approved one at a time first")
    parser.add_argument("--tasks", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--ledger-goals", type=int, default=100, help="goals for the ledger timing (x tasks)")
    return parser.parse_args(argv)


async def main(args: argparse.Namespace) -> list[RunFigures]:
    runs = []
    for number in range(args.runs):
        figures = await run_once(args)
        print(
            f"run {number + 1}: approve->first task alone {_fmt(figures.approve_alone_ms, digits=0)}, "
            f"in a burst {_fmt(figures.approve_to_first_task_ms, digits=0)}, "
            f"task wall {_fmt(figures.task_wall_ms, digits=0)}, {figures.tasks_done} tasks, "
            f"{figures.tasks_per_s:.1f} tasks/s, all done in {figures.all_done_s:.1f} s",
            flush=True,
        )
        runs.append(figures)
    return runs


def cli(argv: list[str] | None = None) -> None:
    atexit.register(kill_leftovers)
    args = parse_args(argv)
    runs = asyncio.run(main(args))
    print(report(runs, args))


if __name__ == "__main__":
    cli()
