"""Child processes for benchmarks: start, read their output, measure their CPU, and always stop them.

Every child gets PR_SET_PDEATHSIG (SIGTERM when the driver dies, even by SIGKILL), and
:func:`spawn` stops it (SIGTERM, then SIGKILL) when its context exits, on errors and Ctrl-C too.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
_PR_SET_PDEATHSIG = 1
_CLK_TCK = os.sysconf("SC_CLK_TCK")
_STOP_GRACE_S = 10.0
_live: set[int] = set()


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: the kernel sends SIGTERM when the driver exits.
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (all its threads), from /proc/<pid>/stat."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    # Fields after the command name (which may contain spaces) start at field 3; utime, stime are 14, 15.
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def context_switches(pid: int) -> int:
    """Voluntary context switches of a process so far, summed over its threads (each time a thread
    went to sleep: waiting for work, for the GIL, for I/O); from /proc/<pid>/task/*/status."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            status = (task / "status").read_text()
        except OSError:
            continue  # the thread ended meanwhile
        total += sum(int(line.split()[1]) for line in status.splitlines() if line.startswith("voluntary_ctxt"))
    return total


async def until_idle(
    pid: int, *, window_s: float = 0.5, idle_share: float = 0.04, quiet_windows: int = 2, timeout_s: float = 120.0
) -> float:
    """Wait until a process is idle: its CPU use stays below ``idle_share`` of one core for
    ``quiet_windows`` windows in a row (or ``timeout_s`` passed). Returns the seconds waited.

    Benchmarks count a phase's CPU up to this point, so work a process defers (background
    ingestion, prepared recall) is charged to the phase that caused it, not to the next one.
    """
    start = time.monotonic()
    quiet = 0
    last = cpu_seconds(pid)
    while quiet < quiet_windows and time.monotonic() - start < timeout_s:
        await asyncio.sleep(window_s)
        now = cpu_seconds(pid)
        quiet = quiet + 1 if now - last < idle_share * window_s else 0
        last = now
    return time.monotonic() - start


@dataclass
class Child:
    """A running child process and what it printed (stderr lines with their arrival times)."""

    name: str
    proc: asyncio.subprocess.Process
    started_at: float
    """``time.monotonic()`` just before the process was created."""
    lines: list[tuple[float, str]] = field(default_factory=list)
    _seen: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def pid(self) -> int:
        """The process id."""
        return self.proc.pid

    async def wait_line(self, match: Callable[[str], bool], timeout: float) -> tuple[float, str]:
        """The first stderr line (time, text) that ``match``es; TimeoutError after ``timeout`` s."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for at, line in self.lines:
                if match(line):
                    return at, line
            if self.proc.returncode is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")
            self._seen.clear()
            await asyncio.wait_for(self._seen.wait(), max(0.0, deadline - loop.time()))

    def tail(self, n: int = 20) -> str:
        """The last ``n`` stderr lines (for error messages)."""
        return "\n".join(line for _, line in self.lines[-n:])


async def _drain(child: Child, stream: asyncio.StreamReader) -> None:
    while line := await stream.readline():
        child.lines.append((time.monotonic(), line.decode(errors="replace").rstrip()))
        child._seen.set()
    child._seen.set()


@asynccontextmanager
async def spawn(
    name: str, argv: list[str], env: dict[str, str], cwd: Path, *, ready_timeout: float | None = None
) -> AsyncIterator[Child]:
    """Start ``argv``; stdout and stderr are read into ``Child.lines``. Stopped when the block exits.

    With ``ready_timeout``, wait until the child prints a line starting with ``ready `` (the fakes).
    """
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *argv,
        env=env,
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        preexec_fn=_die_with_parent,
    )
    _live.add(proc.pid)
    child = Child(name, proc, started)
    assert proc.stdout is not None
    reader = asyncio.create_task(_drain(child, proc.stdout), name=f"{name}-output")
    try:
        if ready_timeout is not None:
            await child.wait_line(lambda line: line.startswith("ready "), ready_timeout)
        yield child
    finally:
        await stop(proc)
        _live.discard(proc.pid)
        reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await reader


async def stop(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM, then SIGKILL if it has not exited within a grace period."""
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.wait_for(asyncio.shield(proc.wait()), _STOP_GRACE_S)
    except (TimeoutError, asyncio.CancelledError):
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


def kill_leftovers() -> None:
    """SIGKILL any child still alive (last resort at interpreter exit)."""
    for pid in list(_live):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        _live.discard(pid)


def child_env(extra: dict[str, str], *, repo_on_path: bool = False) -> dict[str, str]:
    """This environment without any COO_* / OPENAI_* variable, plus ``extra``.

    ``repo_on_path`` puts the repository on PYTHONPATH (the fakes and the floor bot live in tests/
    and bench/, which are not installed packages).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COO_", "OPENAI_"))}
    env.pop("PYTHONPATH", None)
    if repo_on_path:
        env["PYTHONPATH"] = str(REPO)
    env.update(extra)
    return env


PYTHON = sys.executable
