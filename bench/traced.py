"""Launcher that runs a module (``bot.cli``) with timing wrappers on the per-message path.

    BENCH_TRACE=/tmp/trace.json python -m bench.traced bot.cli run

For profiling under ``bench.deployed --profile`` only; no product code knows about it. The wrappers
measure wall time per call (async spans include time spent waiting for the loop, a thread or HTTP)
and do not change behaviour. SQLite statements are counted per database file through
``sqlite3.Connection.set_trace_callback``. SIGUSR1 starts a measuring window (resets everything);
SIGUSR2 writes the window's figures as JSON to ``$BENCH_TRACE``:

- ``spans``: name -> [calls, total wall seconds];
- ``sql``: database file -> statement kind (INSERT, SELECT, COMMIT, ...) -> count;
- ``sql_hops``: database file -> [aiosqlite thread round trips, total wall seconds];
- ``handler_entry``: Telegram update_id -> ``time.monotonic()`` when our channel got the update;
- ``threads``: thread name -> CPU seconds in the window (from /proc/self/task).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import json
import os
import runpy
import signal
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

_spans: defaultdict[str, list[float]] = defaultdict(lambda: [0, 0.0])
_sql: defaultdict[str, defaultdict[str, int]] = defaultdict(lambda: defaultdict(int))
_hops: defaultdict[str, list[float]] = defaultdict(lambda: [0, 0.0])
_entries: dict[int, float] = {}
_thread_cpu_at_start: dict[str, float] = {}
_startup: dict[str, Any] = {}
_CLK_TCK = os.sysconf("SC_CLK_TCK")

# (module, dotted attribute, label). Async or sync callables; classes' methods are wrapped in place.
TARGETS = [
    ("bot.dispatcher", "Dispatcher.accept_many", "dispatcher.accept_many (access + claim of a getUpdates batch)"),
    ("bot.dispatcher", "Dispatcher._process", "dispatcher._process (whole turn, after the claim)"),
    ("bot.access", "AccessGuard.check", "access check"),
    ("memory.db", "Database.claim_updates", "dedupe claim (inbox + message.in of a batch, one commit)"),
    ("memory.db", "Database.append_event", "event log append (insert + commit)"),
    ("memory.db", "Database.finish_update", "inbox finish (update + commit)"),
    ("memory.ledger", "CostLedger.settle", "model-call ledger settle (delete hold + insert + event, commit)"),
    ("memory.db", "Database.sent_reply", "reply journal read (replays only)"),
    ("bot.dispatcher", "Dispatcher._remember_home", "remember home chat"),
    ("bot.approval_ui", "ApprovalUI.take_edit", "pending card-edit check"),
    ("graph.conversation.coordinator", "Coordinator.respond", "graph run (ainvoke, all nodes + checkpoints)"),
    ("graph.conversation.nodes", "call_model", "node call_model (prompt + model call)"),
    ("graph.conversation.nodes", "assemble_context", "prompt assembly (assemble_context)"),
    ("graph.conversation.prompt", "prompt_recall", "prompt recall (lexical + prepared)"),
    ("graph.conversation.recall", "lexical_recall", "lexical recall (SQLite FTS5)"),
    ("graph.conversation.recall", "SessionRecall._run", "prepared semantic recall (background)"),
    ("graph.conversation.nodes", "recall", "recall on the spot (offline replies)"),
    ("graph.conversation.prompt", "recall", "recall on the spot (offline replies)"),  # its fallback in prompts
    ("graph.conversation.prompt", "touched_records", "contacts read (touched_records)"),
    ("graph.conversation.prompt", "summarize", "summary fold (model call)"),
    ("graph.conversation.prompt", "offered_tools", "tool schemas (offered_tools)"),
    ("graph.conversation.nodes", "offered_tools", "tool schemas (offered_tools)"),  # call_model's own call
    ("graph.conversation.prompt", "assemble", "prompt building (assemble)"),
    ("memory.profile", "ProfileStore.get", "profile read"),
    ("memory.semantic.api", "Memory.recall", "Memory.recall"),
    ("memory.semantic.api", "Memory.add_many", "Memory.add_many (ingestion)"),
    ("memory.semantic.embedder", "LocalEmbedder.embed_query", "query embedding (to_thread)"),
    ("memory.semantic.embedder", "LocalEmbedder.embed_passages", "passage embedding (to_thread)"),
    ("memory.semantic.embedder", "LocalEmbedder._run", "embedder native call (worker thread)"),
    ("memory.semantic.store", "SemanticStore.vector_search", "LanceDB vector search"),
    ("memory.semantic.store", "SemanticStore.text_search", "LanceDB full-text search"),
    ("memory.semantic.store", "SemanticStore.add", "LanceDB add"),
    ("memory.semantic.ingest", "Ingestor.flush", "ingestion flush"),
    ("graph.models.llm", "LLMClient.chat", "LLMClient.chat (budget + HTTP + ledger)"),
    ("graph.spend.budget", "BudgetGuard.reserve", "budget reserve (I5: caps + hold, commit)"),
    ("openai.resources.chat.completions", "AsyncCompletions.create", "openai create (build + HTTP + parse)"),
    ("bot.messenger", "Messenger.deliver", "Messenger.deliver (the reply, then its cards)"),
    ("bot.messenger", "Messenger.send", "Messenger.send (sendMessage + journal/event commit)"),
    ("bot.channels.telegram", "TelegramChannel.send", "TelegramChannel.send (PTB sendMessage)"),
    ("bot.channels.telegram", "TelegramChannel._keep_typing", "typing indicator (task lifetime; sendChatAction)"),
    ("langgraph.checkpoint.sqlite.aio", "AsyncSqliteSaver.aput", "checkpoint aput"),
    ("langgraph.checkpoint.sqlite.aio", "AsyncSqliteSaver.aput_writes", "checkpoint aput_writes"),
    ("langgraph.checkpoint.sqlite.aio", "AsyncSqliteSaver.aget_tuple", "checkpoint aget_tuple"),
    ("memory.semantic.store", "SemanticStore.refresh", "LanceDB index refresh (background)"),
    # start-up only (reported from the first window's start, see ``startup``)
    ("bot.settings", "load_settings", "start: load settings"),
    ("langgraph.checkpoint.sqlite.aio", "AsyncSqliteSaver.setup", "checkpointer setup() (LangGraph calls it per op)"),
    ("memory.semantic.store", "SemanticStore.open", "start: LanceDB open (+ scalar/FTS indexes)"),
    ("bot.access", "AccessGuard.load", "start: access guard load"),
    ("graph.conversation.coordinator", "Coordinator.__init__", "start: coordinator (graph compile)"),
    ("bot.channels.telegram", "TelegramChannel.start", "start: Telegram start (getMe, setMyCommands, poll)"),
    ("bot.dispatcher", "Dispatcher.replay_pending", "start: inbox replay"),
    ("connectors.outbox", "OutboxRunner.recover", "start: outbox recover"),
]


def _timed(fn: Callable[..., Any], label: str) -> Callable[..., Any]:
    span = _spans  # bound once: the wrapper runs on hot paths
    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                entry = span[label]
                entry[0] += 1
                entry[1] += time.perf_counter() - start

        return async_wrapper

    async def finish_later(awaitable: Any, start: float) -> Any:
        try:
            return await awaitable
        finally:
            entry = span[label]
            entry[0] += 1
            entry[1] += time.perf_counter() - start

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        result = fn(*args, **kwargs)
        if inspect.iscoroutine(result):  # e.g. openai's create: a sync decorator around a coroutine
            return finish_later(result, start)
        entry = span[label]
        entry[0] += 1
        entry[1] += time.perf_counter() - start
        return result

    return wrapper


def _install_targets() -> None:
    # graph.conversation.wiring binds the node functions at import:
    # graph.conversation.nodes must be wrapped before it loads.
    ordered = sorted(TARGETS, key=lambda target: target[0] != "graph.conversation.nodes")
    for module_name, attr, label in ordered:
        module = importlib.import_module(module_name)
        owner: Any = module
        *path, name = attr.split(".")
        for part in path:
            owner = getattr(owner, part)
        setattr(owner, name, _timed(getattr(owner, name), label))


def _install_handler_entry() -> None:
    from bot.channels import telegram

    original = telegram.parse_update

    @functools.wraps(original)
    def parse(bot: Any, raw: Any) -> Any:
        if isinstance(raw, dict) and isinstance(raw.get("update_id"), int):
            _entries.setdefault(raw["update_id"], time.monotonic())
        return original(bot, raw)

    telegram.parse_update = parse  # the channel reads every raw update through this name


def _install_sqlite() -> None:
    import aiosqlite

    connect = aiosqlite.Connection._connect
    execute = aiosqlite.Connection._execute

    def label(conn: Any) -> str:
        for cell in getattr(conn._connector, "__closure__", None) or ():
            value = cell.cell_contents
            if isinstance(value, str | Path):
                return Path(value).name
        return "?"

    async def traced_connect(self: Any) -> Any:
        result = await connect(self)
        name = label(self)
        self._bench_label = name

        def count(statement: str) -> None:
            word = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else "?"
            _sql[name][word] += 1

        await execute(self, self._conn.set_trace_callback, count)
        return result

    async def traced_execute(self: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return await execute(self, fn, *args, **kwargs)
        finally:
            entry = _hops[getattr(self, "_bench_label", "?")]
            entry[0] += 1
            entry[1] += time.perf_counter() - start

    aiosqlite.Connection._connect = traced_connect  # type: ignore[method-assign]
    aiosqlite.Connection._execute = traced_execute  # type: ignore[method-assign]


def _thread_cpu() -> dict[str, float]:
    names = {t.native_id: t.name for t in threading.enumerate()}
    out: dict[str, float] = defaultdict(float)
    for task in Path("/proc/self/task").iterdir():
        try:
            stat = (task / "stat").read_text()
            comm = (task / "comm").read_text().strip()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        tid = int(task.name)
        name = names.get(tid) or comm
        # Group pools (asyncio_0, asyncio_1 / Thread-3 (...)) by their kind, not by their number.
        kind = "main (event loop)" if tid == os.getpid() else _kind(name)
        out[kind] += (int(fields[11]) + int(fields[12])) / _CLK_TCK
    return dict(out)


def _kind(name: str) -> str:
    if "_connection_worker_thread" in name:
        return "aiosqlite worker threads"
    if name.startswith("asyncio_"):
        return "asyncio.to_thread pool"
    if name == "python":
        return "unnamed native threads"
    return name.rstrip("0123456789-_ ") or name


def _reset(*_: Any) -> None:
    if "spans" not in _startup:  # the first window begins after start-up: keep what start-up cost
        _startup["spans"] = {k: [int(v[0]), v[1]] for k, v in _spans.items()}
    _spans.clear()
    _sql.clear()
    _hops.clear()
    _entries.clear()
    _thread_cpu_at_start.clear()
    _thread_cpu_at_start.update(_thread_cpu())


def _dump(*_: Any) -> None:
    now = _thread_cpu()
    threads = {k: round(v - _thread_cpu_at_start.get(k, 0.0), 3) for k, v in now.items()}
    report = {
        "spans": {k: [int(v[0]), v[1]] for k, v in _spans.items()},
        "sql": {k: dict(v) for k, v in _sql.items()},
        "sql_hops": {k: [int(v[0]), v[1]] for k, v in _hops.items()},
        "handler_entry": {str(k): v for k, v in _entries.items()},
        "threads": threads,
        "startup": _startup,
    }
    target = Path(os.environ["BENCH_TRACE"])
    partial = target.with_suffix(".partial")
    partial.write_text(json.dumps(report))
    partial.replace(target)  # the driver waits for the file: it must appear whole


def main() -> None:
    """``python -m bench.traced MODULE [ARGS...]``: run MODULE as __main__ with the wrappers."""
    if len(sys.argv) < 2:
        raise SystemExit("usage: python -m bench.traced MODULE [ARGS...]")
    _startup["launcher_entered_at"] = time.monotonic()
    _install_sqlite()
    _install_targets()  # imports bot, graph, memory and their libraries: most of what `coo run` imports
    _install_handler_entry()
    _startup["imports_s"] = time.monotonic() - _startup["launcher_entered_at"]
    signal.signal(signal.SIGUSR1, _reset)
    signal.signal(signal.SIGUSR2, _dump)
    module = sys.argv[1]
    sys.argv = [module, *sys.argv[2:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
