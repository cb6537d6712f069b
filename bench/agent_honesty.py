"""Honest outcomes with a weak model, as deployed: ``coo run`` in its own process, the fake model in its own
(``--weak``: it answers as small real models do, see tests/fakes/weak_model.py), the fake Bot API in another, a
real SMTP server (aiosmtpd) in the driver's process, real HTTP.

    python -m bench.agent_honesty [--goals 50] [--batch 10] [--well-behaved]

50 scripted goals (outreach, billing, drafting, research; each with one of the weak model's faults, named in
its text) are sent in batches; the driver approves each plan card and each email card as the operator would, and
never presses Retry or Skip. A goal is settled when it ended (done, failed, cancelled) or waits on the operator
(a blocked task, nothing else running). Then, from the ledger (the run's SQLite file) and the fake model's truth
(``/_fake/truth``: the tasks it really finished with a well-formed ``finish_task``, the goals its verdict really
showed met):

- false "done": a task the product marked done that the model never finished; a goal reported done that the
  verifier never showed to be met (target 0);
- honest share of tasks and goals (target 100 %);
- recovered without the operator: goals whose fault a robust agent gets past, that ended done;
- model calls and tokens per goal (the ``llm_calls`` ledger, by the goal's workflow; median).

``--well-behaved`` runs the same goals with no fault (regression check: every goal should end done).
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import sqlite3
import tempfile
from collections import Counter
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from bench.goals import API_KEY, MODEL, OPERATOR, TOKEN, Control, _fake
from bench.procs import PYTHON, child_env, kill_leftovers, spawn
from bench.stats import median
from tests.fakes.smtp_server import SMTPServer
from tests.fakes.weak_model import FAULTS, RECOVERABLE

CATEGORIES = (
    ("outreach", "email {n:02d}: email lena{n:02d}@example.org about sponsoring the newsletter"),
    ("billing", "invoice {n:02d}: invoice Acme {n:02d} for the October retainer"),
    ("drafting", "draft {n:02d}: draft the newsletter issue about pricing"),
    ("research", "research {n:02d}: research which past sponsors paid on time"),
)
SETTLE_TIMEOUT_S = 240.0


@dataclass
class Figures:
    """What one run measured."""

    goals: int = 0
    tasks: int = 0
    false_done_tasks: int = 0
    false_done_goals: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    recoverable: int = 0
    recovered: int = 0
    calls_per_goal: list[int] = field(default_factory=list)
    tokens_per_goal: list[int] = field(default_factory=list)
    unsettled: int = 0
    emails_sent: int = 0
    by_fault: dict[str, Counter[str]] = field(default_factory=dict)


def scripted_goals(count: int, well_behaved: bool) -> list[tuple[str, str]]:
    """(fault, goal text) for each goal: categories in turn, faults in turn."""
    goals = []
    for n in range(count):
        _, template = CATEGORIES[n % len(CATEGORIES)]
        fault = "ok" if well_behaved else FAULTS[n % len(FAULTS)]
        goals.append((fault, template.format(n=n) + f" (weak: {fault})"))
    return goals


async def run(args: argparse.Namespace) -> Figures:
    """One deployed run."""
    with tempfile.TemporaryDirectory(prefix="coo-honesty-") as tmp, SMTPServer() as smtp:
        work = Path(tmp)
        data_dir = work / "coo-data"
        async with AsyncExitStack() as stack:
            tg_root = await _fake(
                stack, "fake-telegram", [PYTHON, "-m", "tests.fakes.telegram_api", "--token", TOKEN], work
            )
            mode = ["--weak-fault", "ok"] if args.well_behaved else ["--weak"]
            model_argv = [PYTHON, "-m", "tests.fakes.openai_api", "--api-key", API_KEY, *mode]
            model_base = await _fake(stack, "fake-model", model_argv, work)
            smtp_env = {f"COO_SMTP__{k.upper()}": str(v) for k, v in smtp.settings().items()}
            env = child_env(
                {
                    "COO_TELEGRAM__TOKEN": TOKEN,
                    "COO_TELEGRAM__API_BASE_URL": tg_root,
                    "COO_OPERATORS": f"telegram:{OPERATOR}",
                    "COO_LLM__BASE_URL": model_base,
                    "COO_LLM__API_KEY": API_KEY,
                    "COO_LLM__MODEL": MODEL,
                    "COO_DATA_DIR": str(data_dir),
                    **smtp_env,
                }
            )
            cwd = work / "cwd"
            cwd.mkdir()
            bot = await stack.enter_async_context(spawn("coo", [PYTHON, "-m", "bot.cli", "run"], env, cwd))
            await bot.wait_line(lambda line: "solo-coo is running." in line, 120)
            http = await stack.enter_async_context(aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)))
            control = Control(http, tg_root, model_base)
            goals = scripted_goals(args.goals, args.well_behaved)
            unsettled = 0
            for start in range(0, len(goals), args.batch):
                unsettled += await _drive(control, [t for _, t in goals[start : start + args.batch]], data_dir)
            async with http.get(model_base.removesuffix("/v1") + "/_fake/truth") as response:
                truth = await response.json()
        figures = await asyncio.to_thread(_measure, data_dir / "coo.sqlite", goals, truth)
        figures.unsettled = unsettled
        figures.emails_sent = len(smtp.delivered)
    return figures


async def _drive(control: Control, texts: list[str], data_dir: Path) -> int:
    """Send a batch of goals, approve their plan and email cards, until each settled; how many did not."""
    await control.push_texts([f"/goal {t}" for t in texts])
    pressed: set[int] = set()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + SETTLE_TIMEOUT_S
    while loop.time() < deadline:
        await control.poll(0.5)
        for card in control.replies:
            title = str(card["text"])
            if int(card["message_id"]) in pressed or not title.startswith(("Start this plan?", "Send this email?")):
                continue
            approve = next((d for label, d in card["buttons"] if label == "Approve"), None)
            if approve is not None:
                pressed.add(int(card["message_id"]))
                await control.press(int(card["message_id"]), approve)
        left = await asyncio.to_thread(_unsettled, data_dir / "coo.sqlite", texts)
        if left == 0:
            return 0
    return await asyncio.to_thread(_unsettled, data_dir / "coo.sqlite", texts)


def _read(path: Path, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as conn:
        return list(conn.execute(sql, params))


def _unsettled(path: Path, texts: list[str]) -> int:
    """Goals of the batch not yet ended and not waiting on the operator (a blocked task, nothing else moving)."""
    if not path.exists():
        return len(texts)
    left = 0
    for text in texts:
        rows = _read(path, "SELECT id, status FROM goals WHERE text = ?", (text,))
        if not rows:
            left += 1
            continue
        goal_id, status = rows[0]
        if status in ("done", "failed", "cancelled"):
            continue
        states = [r[0] for r in _read(path, "SELECT state FROM tasks WHERE goal_id = ?", (goal_id,))]
        moving = {"ready", "running", "waiting_approval"} & set(states)  # a "todo" task waits on the others
        if not ("blocked" in states and not moving):
            left += 1
    return left


def _measure(path: Path, goals: list[tuple[str, str]], truth: dict[str, list[str]]) -> Figures:
    figures = Figures(goals=len(goals))
    finished = {tuple(item.split("\x00", 1)) for item in truth["finished"]}
    met = set(truth["met"])
    for fault, text in goals:
        rows = _read(path, "SELECT id, status FROM goals WHERE text = ?", (text,))
        if not rows:
            figures.outcomes["never planned"] += 1
            continue
        goal_id, status = rows[0]
        tasks = _read(path, "SELECT title, state FROM tasks WHERE goal_id = ?", (goal_id,))
        figures.tasks += len(tasks)
        figures.false_done_tasks += sum(state == "done" and (text, title) not in finished for title, state in tasks)
        false_goal = status == "done" and text not in met
        figures.false_done_goals += false_goal
        outcome = status if status != "active" else ("blocked" if any(s == "blocked" for _, s in tasks) else "active")
        figures.outcomes[outcome] += 1
        figures.by_fault.setdefault(fault, Counter())[outcome] += 1
        if fault in RECOVERABLE:
            figures.recoverable += 1
            figures.recovered += status == "done"
        calls = _read(
            path,
            "SELECT COUNT(*), COALESCE(SUM(prompt_tokens + completion_tokens), 0) FROM llm_calls WHERE workflow = ?",
            (f"goal-{goal_id}",),
        )[0]
        figures.calls_per_goal.append(int(calls[0]))
        figures.tokens_per_goal.append(int(calls[1]))
    return figures


def report(figures: Figures, args: argparse.Namespace) -> str:
    """The figures as lines."""
    honest_tasks = 1 - figures.false_done_tasks / figures.tasks if figures.tasks else 0.0
    honest_goals = 1 - figures.false_done_goals / figures.goals if figures.goals else 0.0
    mode = "well-behaved fake model" if args.well_behaved else "weak-model mode"
    lines = [
        f"{figures.goals} goals ({mode}), {figures.tasks} tasks; coo run as deployed",
        f"false done: {figures.false_done_tasks} task(s), {figures.false_done_goals} goal(s)",
        f"honest: tasks {honest_tasks:.0%}, goals {honest_goals:.0%}",
        f"recovered without the operator: {figures.recovered}/{figures.recoverable} goals with a recoverable fault",
        f"model calls per goal: median {median(figures.calls_per_goal):.0f} (max {max(figures.calls_per_goal)})",
        f"tokens per goal: median {median(figures.tokens_per_goal):.0f} (max {max(figures.tokens_per_goal)})",
        f"outcomes: {dict(figures.outcomes)}; emails sent: {figures.emails_sent}; unsettled: {figures.unsettled}",
        "by fault: " + "; ".join(f"{f}: {dict(c)}" for f, c in sorted(figures.by_fault.items())),
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--goals", type=int, default=50)
    parser.add_argument("--batch", type=int, default=10, help="goals sent at once")
    parser.add_argument("--well-behaved", action="store_true", help="no faults (the regression check)")
    return parser.parse_args(argv)


def cli(argv: list[str] | None = None) -> None:
    atexit.register(kill_leftovers)
    args = parse_args(argv)
    figures = asyncio.run(run(args))
    print(report(figures, args))


if __name__ == "__main__":
    cli()
