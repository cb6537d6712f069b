"""The web console as deployed: ``coo run`` in its own process, the fake Telegram Bot API and a fake model in
their own processes, real HTTP.

    python -m bench.web [--events 10000] [--goals 200] [--renders 40] [--messages 40]

- Page render: the data dir is seeded with ``--events`` events and ``--goals`` goals (4 tasks each, one
  blocked), a month of model spend, 100 contacts of 3 versions each, 50 remembered notes and 200 received
  emails (40 need the operator); the Timeline is also read filtered by kind, by one goal, by one contact, by a
  week with no events (every event is looked at) and exported whole; a session is opened with
  ``coo web-login`` and the console's link; each page is fetched ``--renders`` times in turn; p50 and p95
  per page (request to last byte).
- Reply path: ``--messages`` chat messages one after another (each waits for its reply), with the console
  off (``COO_WEB__LISTEN=off``) and then on, each a fresh process over the same seeded history (pages are
  rendered in a third one); median push-to-reply time of each.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import socket
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path

import aiohttp

from bench.deployed import API_KEY, ECHO_LIMIT, MODEL, START_TIMEOUT_S, TOKEN, Fakes, _ready_url
from bench.procs import PYTHON, child_env, kill_leftovers, spawn
from bench.stats import median, percentile

CHAT = 7300
PAGES = (
    "/",
    "/cards",
    "/goals",
    "/timeline",
    "/timeline?kind=approval.decided",
    "/timeline?goal={goal}",
    "/timeline?contact={contact}",
    "/timeline?from={week_ago}&to={yesterday}",
    "/timeline/export",
    "/spend",
    "/memory",
)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def seed(data: Path, events: int, goals: int) -> dict[str, str]:
    """A business with history: events, goals with tasks (one blocked each), model spend, contacts with their
    versions, notes and mail. Returns what the filtered pages name (a goal, a contact, a quiet week)."""
    from datetime import timedelta

    from memory.db import LLMCall, open_database, utcnow
    from memory.ledger import CostLedger
    from memory.mail import Location, MailRecord, MailStore
    from memory.notes import NoteLedger, StoredNote
    from memory.records import Records
    from memory.tasks import TaskLedger

    async with open_database(data) as db:
        tasks, ledger, records, notes, mail = TaskLedger(db), CostLedger(db), Records(db), NoteLedger(db), MailStore(db)
        for store in (tasks, records, notes, mail):
            await store.setup()
        await ledger.setup()
        goal_ids = []
        for g in range(goals):
            goal = await tasks.create_goal(f"Goal number {g}: find sponsors", f"telegram:{CHAT}", "bench", "active")
            goal_ids.append(goal.id)
            specs = [{"key": f"t{k}", "title": f"Task {k} of goal {g}", "skill": "research", "instructions": "x"}
                     for k in range(4)]  # fmt: skip
            first, *_ = await tasks.add_run(goal.id, specs)
            for before, after in (("todo", "ready"), ("ready", "running"), ("running", "blocked")):
                await tasks.move(first.id, before, after)  # type: ignore[arg-type]
        contact_ids = []
        for c in range(100):
            person = {"name": f"Person {c}", "emails": [f"person{c}@example.org"]}
            made = await records.upsert("contact", person, "bench")
            await records.upsert("contact", {"company": f"Company {c}"}, "bench", made.id)
            await records.upsert("contact", {"phone": f"+1 555 {c:04d}"}, "bench", made.id)
            contact_ids.append(made.id)
        for n in range(50):
            await notes.add(StoredNote(f"n-bench{n}", "default", "remember:bench", f"Remembered thing {n}", utcnow()))
        for m in range(200):
            record = MailRecord(f"<m{m}@example.org>", f"h{m}", f"person{m % 100}@example.org", "", subject=f"Mail {m}")
            mail_id, _ = await mail.store(record, Location("INBOX", 1, m + 1))
            needs = m % 5 == 0
            await mail.set_triage(mail_id, "needs_reply" if needs else "fyi", "high" if m % 25 == 0 else "normal",
                                  f"About mail {m}", needs)  # fmt: skip
        for i in range(max(0, events - goals * 8 - 300)):
            payload = {"n": i, "text": f"something that happened, number {i}", "to": f"person{i % 100}@example.org"}
            await db.append_event("bench.note", "bench", payload)
        for i in range(300):
            await ledger.record(LLMCall(None, f"goal-{i % 7}", MODEL, 900, 120, False, 800, "ok", 0.003))
    today = utcnow().date()
    return {
        "goal": goal_ids[len(goal_ids) // 2],
        "contact": contact_ids[len(contact_ids) // 2],
        "week_ago": str(today - timedelta(days=7)),
        "yesterday": str(today - timedelta(days=1)),
    }


async def _start_bot(
    stack: AsyncExitStack, work: Path, name: str, web: str
) -> tuple[Fakes, dict[str, str], aiohttp.ClientSession]:
    fake_env = child_env({}, repo_on_path=True)
    tg = await stack.enter_async_context(
        spawn(
            f"{name}-tg", [PYTHON, "-m", "tests.fakes.telegram_api", "--token", TOKEN], fake_env, work, ready_timeout=30
        )
    )
    model_argv = [PYTHON, "-m", "tests.fakes.openai_api", "--api-key", API_KEY, "--echo-limit", str(ECHO_LIMIT)]
    llm = await stack.enter_async_context(spawn(f"{name}-model", model_argv, fake_env, work, ready_timeout=30))
    http = await stack.enter_async_context(aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)))
    fakes = Fakes(http, _ready_url(tg), _ready_url(llm))
    env = child_env(
        {
            "COO_TELEGRAM__TOKEN": TOKEN,
            "COO_TELEGRAM__API_BASE_URL": _ready_url(tg),
            "COO_OPERATORS": f"telegram:{CHAT}",
            "COO_LLM__BASE_URL": _ready_url(llm),
            "COO_LLM__API_KEY": API_KEY,
            "COO_LLM__MODEL": MODEL,
            "COO_DATA_DIR": str(work / f"{name}-data"),
            "COO_WEB__LISTEN": web,
        }
    )
    cwd = work / f"{name}-cwd"
    cwd.mkdir()
    bot = await stack.enter_async_context(spawn(name, [PYTHON, "-m", "bot.cli", "run"], env, cwd))
    if not await fakes.until(lambda: fakes.first_poll_at is not None, START_TIMEOUT_S):
        raise RuntimeError(f"{name} never polled:\n{bot.tail()}")
    return fakes, env, http


async def _sign_in(http: aiohttp.ClientSession, env: dict[str, str], cwd: Path) -> str:
    proc = await asyncio.create_subprocess_exec(
        PYTHON, "-m", "bot.cli", "web-login", env=env, cwd=cwd, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    link = re.search(r"(http://\S+/login/\S+)", out.decode())
    if link is None:
        raise RuntimeError(f"coo web-login printed no link: {out.decode()!r}")
    base, token = link.group(1).split("/login/")
    async with http.post(f"{base}/login", data={"token": token}) as done:
        if done.status != 200:
            raise RuntimeError(f"sign-in refused: {done.status}")
    return base


async def renders(http: aiohttp.ClientSession, base: str, count: int, names: dict[str, str]) -> dict[str, list[float]]:
    """Each page ``count`` times in turn; ms from request to last byte."""
    times: dict[str, list[float]] = {page: [] for page in PAGES}
    for _ in range(count):
        for page in PAGES:
            started = time.perf_counter()
            async with http.get(base + page.format(**names)) as response:
                await response.read()
                if response.status != 200:
                    raise RuntimeError(f"{page}: {response.status}")
            times[page].append((time.perf_counter() - started) * 1000)
    return times


async def replies(fakes: Fakes, count: int, tag: str) -> list[float]:
    """Messages one after another; ms from push to the reply seen by the fake Bot API."""
    times = []
    for i in range(count):
        text = f"{tag} message {i}: how is the week looking?"
        started = time.perf_counter()
        await fakes.push([(CHAT, text)])
        if not await fakes.until(lambda text=text: f"echo: {text}" in fakes.reply_texts, 60):
            raise RuntimeError(f"no reply to {text!r}")
        times.append((time.perf_counter() - started) * 1000)
    return times


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="coo-bench-web-") as tmp:
        work = Path(tmp)
        for name in ("pages", "off", "on"):  # the same history in each: only the console differs
            names = await seed(work / f"{name}-data", args.events, args.goals)
            if name == "pages":
                shown = names
        async with AsyncExitStack() as stack:
            _, env, http = await _start_bot(stack, work, "pages", f"127.0.0.1:{_free_port()}")
            base = await _sign_in(http, env, work / "pages-cwd")
            await renders(http, base, 3, shown)  # warm-up
            pages = await renders(http, base, args.renders, shown)
        # Replies on fresh processes (no page was rendered there), the console off first.
        measured: dict[str, list[float]] = {}
        for name, web in (("off", "off"), ("on", f"127.0.0.1:{_free_port()}")):
            async with AsyncExitStack() as stack:
                fakes, _, _ = await _start_bot(stack, work, name, web)
                await replies(fakes, 5, "warm")
                measured[name] = await replies(fakes, args.messages, name)
    on, off = measured["on"], measured["off"]
    print(f"web console, {args.events} events, {args.goals} goals, {args.renders} renders per page")
    print(f"{'page':<42} {'p50 ms':>8} {'p95 ms':>8}")
    for page, values in pages.items():
        print(f"{page:<42} {median(values):>8.1f} {percentile(values, 95):>8.1f}")
    print(f"reply path, {args.messages} sequential messages: median {median(on):.1f} ms with the console on, "
          f"{median(off):.1f} ms with it off")  # fmt: skip


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--goals", type=int, default=200)
    parser.add_argument("--renders", type=int, default=40)
    parser.add_argument("--messages", type=int, default=40)
    return parser.parse_args(argv)


def cli(argv: list[str] | None = None) -> None:
    try:
        asyncio.run(main(parse_args(argv)))
    finally:
        kill_leftovers()


if __name__ == "__main__":
    cli(sys.argv[1:])
