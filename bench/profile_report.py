"""Turn a ``bench.traced`` window and a py-spy raw profile into a per-message breakdown.

    python -m bench.profile_report DIR MESSAGES [--rate HZ]

DIR holds ``trace.json`` (from ``bench.traced``) and ``pyspy.txt`` (``py-spy record --format raw
--threads``); MESSAGES is how many messages the window handled. Used by ``bench.deployed --profile``.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

from bench.traced import TARGETS

# CPU categories by the first component of a frame's file (py-spy prints paths relative to
# sys.path). A sample goes to the known component nearest its leaf, so stdlib helpers (json,
# typing) count for the library that called them.
COMPONENTS = {
    "onnxruntime": "embedder (ONNX Runtime, native)",
    "lancedb": "LanceDB / pyarrow (Python side)",
    "pyarrow": "LanceDB / pyarrow (Python side)",
    "openai": "openai SDK",
    "httpx": "HTTP client (httpx, httpcore, h11, anyio)",
    "httpcore": "HTTP client (httpx, httpcore, h11, anyio)",
    "httpx2": "HTTP client (httpx, httpcore, h11, anyio)",
    "httpcore2": "HTTP client (httpx, httpcore, h11, anyio)",
    "h11": "HTTP client (httpx, httpcore, h11, anyio)",
    "anyio": "HTTP client (httpx, httpcore, h11, anyio)",
    "telegram": "python-telegram-bot",
    "aiosqlite": "aiosqlite / sqlite3",
    "sqlite": "aiosqlite / sqlite3",
    "sqlite3": "aiosqlite / sqlite3",
    "langgraph": "LangGraph",
    "_internal": "LangGraph",
    "pregel": "LangGraph",
    "channels": "LangGraph",
    "serde": "LangGraph",
    "checkpoint": "LangGraph",
    "langchain_core": "LangGraph",
    "pydantic": "pydantic",
    "pydantic_core": "pydantic",
    "bot": "solo-coo bot/",
    "graph": "solo-coo graph/",
    "memory": "solo-coo memory/",
    "connectors": "solo-coo connectors/",
    "asyncio": "asyncio loop machinery",
    "selectors.py": "asyncio loop machinery",
}
# Our functions whose inclusive CPU matters (matched by function name in any frame).
FUNCTIONS = [
    "claim_updates",
    "append_event",
    "finish_update",
    "settle",
    "reserve",
    "assemble_context",
    "prompt_recall",
    "lexical_recall",
    "_run",
    "touched_records",
    "summarize",
    "call_model",
    "respond",
    "aput",
    "aput_writes",
    "aget_tuple",
    "_deliver_batch",
    "send_message",
    "embed_query",
    "embed_passages",
    "flush",
    "vector_search",
    "text_search",
]
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>.*):(?P<line>\d+)\)$")


def _frames(stack: str) -> list[tuple[str, str]]:
    out = []
    for part in stack.split(";"):
        match = _FRAME.match(part)
        if match:
            out.append((match["func"], match["file"]))
    return out


def pyspy_breakdown(path: Path, rate: float, messages: int) -> dict[str, Any]:
    """CPU ms per message: by category (leaf-first path match), by our functions, by top leaves, by thread."""
    per_sample_ms = 1000.0 / rate / max(1, messages)
    categories: Counter[str] = Counter()
    main_categories: Counter[str] = Counter()
    functions: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    threads: Counter[str] = Counter()
    total = 0
    for raw in path.read_text().splitlines():
        stack, _, count_text = raw.rpartition(" ")
        if not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        head, _, rest = stack.partition(";")
        thread = head.split(": ", 1)[1] if ": " in head else head
        threads[re.sub(r"[\d_-]+$", "", thread) or thread] += count
        frames = _frames(rest)
        category = "other"
        for _func, file in reversed(frames):
            found = COMPONENTS.get(file.lstrip("/").split("/", 1)[0])
            if found:
                category = found
                break
        categories[category] += count
        if thread == "MainThread":
            main_categories[category] += count
        names = {func.rsplit(".", 1)[-1] for func, _ in frames}
        for name in FUNCTIONS:
            if name in names:
                functions[name] += count
        if frames:
            func, file = frames[-1]
            leaves[f"{func} ({Path(file).name})"] += count
    return {
        "total_ms": total * per_sample_ms,
        "categories": {k: v * per_sample_ms for k, v in categories.most_common()},
        "main_categories": {k: v * per_sample_ms for k, v in main_categories.most_common()},
        "functions": {k: functions[k] * per_sample_ms for k in FUNCTIONS if functions[k]},
        "leaves": {k: v * per_sample_ms for k, v in leaves.most_common(25)},
        "threads": {k: v * per_sample_ms for k, v in threads.most_common()},
    }


def report(directory: Path, messages: int, rate: float, ptb_entry_ms: list[float] | None = None) -> str:
    """The breakdown as text."""
    trace = json.loads((directory / "trace.json").read_text())
    n = max(1, messages)
    lines = [f"Per-message breakdown over {messages} sequential messages (wall time, spans overlap):"]
    lines.append(f"  {'span':58} {'calls/msg':>9} {'ms/msg':>8} {'ms/call':>8}")
    spans = trace["spans"]
    for _, _, label in TARGETS:
        if label not in spans:
            continue
        calls, seconds = spans[label]
        lines.append(f"  {label:58} {calls / n:9.2f} {seconds * 1000 / n:8.2f} {seconds * 1000 / max(1, calls):8.2f}")
    if ptb_entry_ms:
        ordered = sorted(ptb_entry_ms)
        lines.append(f"  handout -> our Telegram handler entered (PTB + HTTP): p50 {ordered[len(ordered) // 2]:.2f} ms")
    lines.append("SQLite statements per message, by database file:")
    for name, kinds in sorted(trace["sql"].items()):
        parts = ", ".join(f"{k} {v / n:.1f}" for k, v in sorted(kinds.items(), key=lambda kv: -kv[1]))
        lines.append(f"  {name}: {parts}")
    for name, (hops, seconds) in sorted(trace["sql_hops"].items()):
        lines.append(
            f"  {name}: {hops / n:.1f} aiosqlite thread round trips/msg, "
            f"{seconds * 1000 / n:.2f} ms/msg waiting on them"
        )
    lines.append("CPU per message by thread (from /proc/self/task):")
    for name, seconds in sorted(trace["threads"].items(), key=lambda kv: -kv[1]):
        if seconds > 0:
            lines.append(f"  {name:40} {seconds * 1000 / n:8.2f} ms")
    startup = trace.get("startup", {})
    if startup:
        lines.append(f"Start-up (traced launcher; its imports are eager): imports {startup['imports_s']:.2f} s")
        for label, (calls, seconds) in startup.get("spans", {}).items():
            if label.startswith("start:") or label.startswith("LanceDB"):
                lines.append(f"  {label:58} {calls:4d} x {seconds * 1000:8.1f} ms")
    spy = directory / "pyspy.txt"
    if spy.exists():
        cpu = pyspy_breakdown(spy, rate, messages)
        lines.append(f"py-spy CPU samples: {cpu['total_ms']:.1f} ms/msg in all threads; by category (leaf first):")
        for name, ms in cpu["categories"].items():
            lines.append(f"  {name:40} {ms:8.2f} ms")
        lines.append("py-spy CPU of the main thread (the event loop) by category (ms/msg):")
        for name, ms in cpu["main_categories"].items():
            lines.append(f"  {name:40} {ms:8.2f} ms")
        lines.append("py-spy CPU inclusive in these functions (ms/msg):")
        for name, ms in cpu["functions"].items():
            lines.append(f"  {name:40} {ms:8.2f} ms")
        lines.append("py-spy CPU by thread (ms/msg):")
        for name, ms in cpu["threads"].items():
            lines.append(f"  {name:40} {ms:8.2f} ms")
        lines.append("py-spy hottest leaf functions (ms/msg):")
        for name, ms in cpu["leaves"].items():
            lines.append(f"  {name[:70]:70} {ms:8.2f} ms")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Print the breakdown of a profile directory."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("directory", type=Path)
    parser.add_argument("messages", type=int)
    parser.add_argument("--rate", type=float, default=200)
    args = parser.parse_args(argv)
    print(report(args.directory, args.messages, args.rate))


if __name__ == "__main__":
    main()
