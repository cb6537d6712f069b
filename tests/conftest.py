"""Shared fixtures: settings in a temp dir, a fake model server, a recording channel."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

import aiosqlite
import pytest

from bot.messages import InboundHandler, InboundMessage, OutboundMessage
from bot.settings import Settings
from memory.grouped import on_thread
from memory.semantic.lance_import import REST_CLIENT, defer_package_init
from tests.fakes.fork_server import share_with_workers
from tests.fakes.openai_api import FakeOpenAI
from tests.layout import ROOT
from tests.memory_tmp import use_memory_tmp
from tests.schedule import longest_first
from tests.warm_start import compile_once, distributed, share_collection_tracing

_update_keys = iter(range(10**9))
# As the product imports LanceDB (memory/semantic/lance_import.py), before any test module imports it itself.
defer_package_init(REST_CLIENT)


def pytest_configure(config: pytest.Config) -> None:
    """In the controlling process, before any worker starts: temporary files in memory where a tmpfs allows
    (tests/memory_tmp.py), compile once, and start the fork server the workers share
    (tests/fakes/fork_server.py). In each worker: share the tracing of the collection between the workers
    (see tests/warm_start.py)."""
    if hasattr(config, "workerinput"):
        share_collection_tracing(config)
        return
    use_memory_tmp()
    compile_once(config)
    if distributed(config):
        share_with_workers()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest files first, so that no worker is left alone with one at the end (see tests/schedule.py)."""
    longest_first(items)


def home_env(home: Path) -> dict[str, str]:
    """HOME and the XDG dirs under ``home``: no test reads or writes the real user's config or data dirs."""
    return {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "XDG_DATA_HOME": str(home / ".local" / "share"),
        "XDG_STATE_HOME": str(home / ".local" / "state"),
    }


def subprocess_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """The environment for a real ``coo`` subprocess: none of the machine's COO_/OPENAI_ settings,
    and a home of its own next to ``data_dir``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COO_", "OPENAI_", "XDG_"))}
    env.update(home_env(data_dir.parent / "home"))
    env.update({"PYTHONPATH": str(ROOT), "COO_DATA_DIR": str(data_dir), "PYTHONUNBUFFERED": "1"})
    env["COO_WEB__LISTEN"] = "off"  # the web console's fixed port would clash between tests; its own tests turn it on
    # As in make_settings: semantic memory (LanceDB and the embedding model, ~1.2 s of CPU per start) only
    # where a test is about memory; it passes COO_MEMORY__SEMANTIC="true".
    env["COO_MEMORY__SEMANTIC"] = "false"
    env.update(extra)
    return env


def operator_message(text: str, kind: str = "message", data: str | None = None) -> InboundMessage:
    """A message from the default operator (telegram:1001) on the recording channel, with a fresh update key."""
    return InboundMessage(
        "rec",
        "1001",
        "telegram:1001",
        text,
        kind=kind,  # type: ignore[arg-type]
        callback_data=data,
        update_key=f"op:{next(_update_keys)}",
    )


def number_in(number: str, text: str) -> bool:
    """``number`` standing alone in ``text``, not inside a longer one such as a timestamp's microseconds
    (a check for a secret PIN in an export must not fail when a timestamp happens to hold its digits)."""
    return re.search(rf"(?<!\d){number}(?!\d)", text) is not None


def user_turns(request: dict[str, Any]) -> list[str]:
    """The operator's turns in a chat request (a leading context-data message is not a turn)."""
    messages = request["messages"][1:]
    if messages and str(messages[0]["content"]).startswith("Context gathered by the system"):
        messages = messages[1:]
    return [m["content"] for m in messages if m["role"] == "user"]


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    """Settings that ignore the machine's environment and any .env file."""
    # Semantic memory loads an embedding model: only the tests about memory turn it on.
    base: dict[str, Any] = {
        "data_dir": data_dir,
        "operators": "telegram:1001,slack:T1:U1",
        "memory": {"semantic": False},
        "web": {"listen": ""},  # the web console's tests turn it on, on a free port
    }
    base.update(overrides)
    return Settings(_env_file=None, **base)  # type: ignore[call-arg]


def llm_settings(fake: FakeOpenAI, **extra: Any) -> dict[str, Any]:
    """LLM settings pointing at a fake server, with fast retries.

    ``fake-model`` is priced as a model nobody priced would be (15/75 per million tokens), but by the
    settings: so budgets behave the same, and no reply is preceded by the one-time "no known price" line
    (tests/graph/spend/test_model_prices.py covers it). A test's own ``prices`` come on top.
    """
    return {
        "base_url": fake.base_url,
        "api_key": fake.api_key,
        "model": "fake-model",
        "retry_base_s": 0.01,
        "timeout_s": 2.0,
        **extra,
        "prices": {"fake-model": (15.0, 75.0), **extra.get("prices", {})},
    }


@pytest.fixture(scope="session")
def _test_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, _test_home: Path) -> None:
    for name in list(os.environ):
        if name.startswith("COO_") or name in ("OPENAI_API_KEY", "OPENAI_BASE_URL"):
            monkeypatch.delenv(name)
    for name, value in home_env(_test_home).items():
        if name != "HOME":  # the XDG dirs are enough for platformdirs; HOME stays for other tools
            monkeypatch.setenv(name, value)


@pytest.fixture
async def fake_llm() -> AsyncIterator[FakeOpenAI]:
    async with FakeOpenAI() as server:
        yield server


class QuietGate:
    """Stands for the dispatcher's ``quiet()``: records that background work asked, opens on ``open()``."""

    def __init__(self) -> None:
        self.asked = asyncio.Event()
        self._open = asyncio.Event()

    async def __call__(self) -> None:
        self.asked.set()
        await self._open.wait()

    def open(self) -> None:
        self._open.set()


class DateClock:
    """A wall clock (aware datetimes) that moves only when a test sets ``at``: due checks and day boundaries."""

    def __init__(self, at: datetime) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def on(self, day: date) -> None:
        """Noon (UTC) on ``day``."""
        self.at = datetime.combine(day, time(12, 0), tzinfo=UTC)


class ManualClock:
    """A monotonic clock that moves only when a test says so (breaker windows and cooldowns)."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class RecordingChannel:
    """A real Channel that keeps what it was asked to send. Tests push inbound updates into it."""

    def __init__(self, name: str, on_inbound: InboundHandler | None = None) -> None:
        self.name = name
        self.on_inbound = on_inbound
        self.sent: list[OutboundMessage] = []
        self.typing_count = 0
        self._new = asyncio.Condition()

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def send(self, message: OutboundMessage) -> list[str]:
        async with self._new:
            self.sent.append(message)
            self._new.notify_all()
        return [str(len(self.sent))]

    @asynccontextmanager
    async def typing(self, chat_id: str, thread_id: str | None) -> AsyncIterator[None]:
        self.typing_count += 1
        yield

    async def wait_sent(self, count: int, timeout: float = 5.0) -> list[OutboundMessage]:
        async with self._new:
            await asyncio.wait_for(self._new.wait_for(lambda: len(self.sent) >= count), timeout)
        return self.sent


@pytest.fixture
def captured_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.DEBUG)
    yield caplog


@asynccontextmanager
async def paused_before(conn: aiosqlite.Connection, prefix: str) -> AsyncIterator[asyncio.Event]:
    """Hold ``conn``'s SQLite thread just before the first statement starting with ``prefix`` until the
    block ends. The event is set once it is held: the write is on the thread, and its caller can be
    cancelled meanwhile (what is on the thread runs all the same)."""
    loop = asyncio.get_running_loop()
    reached = asyncio.Event()
    resume = threading.Event()
    armed = [True]

    def trace(sql: str) -> None:  # on SQLite's thread, before each statement runs
        if armed[0] and sql.startswith(prefix):
            armed[0] = False
            loop.call_soon_threadsafe(reached.set)
            resume.wait()

    await on_thread(conn, lambda raw: raw.set_trace_callback(trace))
    try:
        yield reached
    finally:
        resume.set()
