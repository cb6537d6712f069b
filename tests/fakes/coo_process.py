"""``coo`` processes for the tests, forked from one interpreter per test worker that has already
imported the product.

Why: a ``coo`` start spends about 1.3 s of CPU importing, and the suite starts over a hundred; on two
cores that was the largest part of the suite's time. A fork after the imports costs milliseconds.

What a child still is: its own process, with its own pid (SIGTERM and kill -9 reach it), its own
files, sockets and event loop, and the environment, working directory, arguments and standard streams
the test gave it. It runs ``bot/cli.py`` as ``__main__`` from the top, as ``python -m bot.cli`` does,
and ends through the interpreter's own exit (atexit, thread joins, flushes).

What it does not prove is a cold start: the import order, what a start loads, and its time. The
tests about those (``tests/bot/test_composition.py``, the polling-first test in ``test_cli.py``, the
pseudo-terminal tests) and every benchmark start ``python -m bot.cli`` as a user does.

The server side runs as ``python -m tests.fakes.coo_process SOCKET``; its standard input is a pipe
from the test worker, so it ends (and kills what it started) when the worker does.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import gc
import importlib
import json
import os
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parents[2]
# What `coo run`, `coo doctor` and the other commands import in the tests' configurations. Only modules
# that start no thread at import: a fork copies one thread only.
PRELOAD = (
    "bot.cli",
    "bot.compose.root",
    "bot.channels.telegram",
    "bot.channels.slack",
    "bot.channels.console",
    "bot.web.server",
    "bot.doctor",
    "bot.onboard",
    "bot.backup",
    "bot.export",
    "bot.mcp_cli",
    "openai",
    "stripe",
)
Stream = int | IO[Any] | None


# ---------------------------------------------------------------- the server (a separate process)


def _receive(conn: socket.socket) -> tuple[dict[str, Any], list[int]]:
    data, fds, _, _ = socket.recv_fds(conn, 1 << 16, 3)
    size, _, body = data.partition(b"\n")
    while len(body) < int(size):
        chunk = conn.recv(1 << 16)
        if not chunk:
            raise ConnectionError("the test worker hung up mid-request")
        body += chunk
    return json.loads(body), fds


def _reap(children: dict[int, socket.socket]) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        conn = children.pop(pid, None)
        if conn is not None:
            with contextlib.suppress(OSError):  # the test may have gone already
                conn.sendall(f"{os.waitstatus_to_exitcode(status)}\n".encode())
            conn.close()


def _single_threaded() -> None:
    threads = os.listdir(f"/proc/{os.getpid()}/task")
    if len(threads) != 1:
        raise SystemExit(f"coo_process: {len(threads)} threads after the imports; a fork would lose all but one")


def _serve(path: str) -> tuple[dict[str, Any], list[int]]:
    """Fork a child per request until the test worker goes; returns in each child with its request."""
    for name in PRELOAD:
        importlib.import_module(name)
    # As in `python -m bot.cli`: the command's module runs as __main__ and is not yet imported as itself.
    sys.modules.pop("bot.cli")
    del sys.modules["bot"].cli
    _single_threaded()
    gc.freeze()  # the imported objects stay out of every child's collections: their pages stay shared
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    selector.register(wake_read, selectors.EVENT_READ)
    selector.register(sys.stdin.fileno(), selectors.EVENT_READ)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    children: dict[int, socket.socket] = {}
    while True:
        for key, _ in selector.select():
            if key.fileobj is listener:
                conn, _ = listener.accept()
                try:
                    request, fds = _receive(conn)
                except (OSError, ValueError) as exc:  # one test's broken request ends only that request
                    print(f"coo_process: bad request: {exc!r}", file=sys.stderr)
                    conn.close()
                    continue
                pid = os.fork()
                if pid == 0:
                    selector.close()
                    listener.close()
                    for other in [conn, *children.values()]:
                        other.close()
                    signal.set_wakeup_fd(-1)
                    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                    os.close(wake_read)
                    os.close(wake_write)
                    return request, fds
                for fd in fds:
                    os.close(fd)
                conn.sendall(f"{pid}\n".encode())
                children[pid] = conn
            elif key.fileobj == wake_read:
                os.read(wake_read, 4096)
                _reap(children)
            elif not os.read(sys.stdin.fileno(), 4096):  # the test worker is gone: so is everything it started
                for pid in children:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
                raise SystemExit(0)


def _become(request: dict[str, Any], fds: list[int]) -> None:
    """In the child: take the test's environment, directory and streams, then run ``python -m bot.cli``."""
    import runpy

    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    for fd in set(fds) - {0, 1, 2}:
        os.close(fd)
    sys.path[0] = request["cwd"]
    sys.argv = ["coo", *request["args"]]
    code: Any = 0
    try:
        runpy.run_module("bot.cli", run_name="__main__", alter_sys=True)
    except SystemExit as stop:
        code = stop.code
    except BaseException:
        traceback.print_exc()
        code = 1
    _exit(code)


def _exit(code: Any) -> None:
    """The interpreter's exit up to its module teardown, which a fork's child need not pay for (freeing
    every preloaded object): wait for threads, run atexit callbacks, flush the standard streams."""
    threading._shutdown()  # type: ignore[attr-defined]
    atexit._run_exitfuncs()
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code or 0)


# ---------------------------------------------------------------- the client (in the test worker)


@dataclass
class _Server:
    path: str
    process: subprocess.Popen[bytes]


_server: _Server | None = None


def _the_server() -> _Server:
    global _server
    if _server is None or _server.process.poll() is not None:
        path = os.path.join(tempfile.mkdtemp(prefix="coo-fork-"), "socket")
        env = {k: v for k, v in os.environ.items() if not k.startswith(("COO_", "OPENAI_", "XDG_"))}
        env.update({"PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"})
        process = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "tests.fakes.coo_process", path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=ROOT,
            env=env,
        )
        assert process.stdout is not None
        ready = process.stdout.readline()
        if ready != b"ready\n":
            raise RuntimeError(f"the coo fork server did not start (exit {process.wait()})")
        _server = _Server(path, process)
        atexit.register(_stop_server, _server)
    return _server


def _stop_server(server: _Server) -> None:
    assert server.process.stdin is not None
    server.process.stdin.close()
    server.process.wait(30)


class _Ends:
    """The standard streams a child gets, and the test's ends of its pipes."""

    def __init__(self, stdin: Stream, stdout: Stream, stderr: Stream) -> None:
        self.child: list[int] = []
        self.ours: list[int | None] = []
        self._close: list[int] = []
        for index, spec in enumerate((stdin, stdout, stderr)):
            self._add(spec, reading=index == 0)

    def _add(self, spec: Stream, reading: bool) -> None:
        if spec == subprocess.PIPE:
            read_end, write_end = os.pipe()
            child, ours = (read_end, write_end) if reading else (write_end, read_end)
            self.child.append(child)
            self._close.append(child)
            self.ours.append(ours)
            return
        if spec is None or spec == subprocess.DEVNULL:
            fd = os.open(os.devnull, os.O_RDWR)
            self._close.append(fd)
        elif spec == subprocess.STDOUT:
            fd = self.child[1]
        elif isinstance(spec, int):
            fd = spec
        else:
            fd = spec.fileno()
        self.child.append(fd)
        self.ours.append(None)

    def close_child_ends(self) -> None:
        for fd in self._close:
            os.close(fd)


def _request(args: tuple[str, ...], env: dict[str, str], cwd: Path | str) -> bytes:
    body = json.dumps({"args": list(args), "env": env, "cwd": str(cwd)}).encode()
    return f"{len(body)}\n".encode() + body


def _connect(args: tuple[str, ...], env: dict[str, str], cwd: Path | str, ends: _Ends) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(_the_server().path)
        data = _request(args, env, cwd)
        sent = socket.send_fds(sock, [data], ends.child)
        sock.sendall(data[sent:])
    finally:
        ends.close_child_ends()
    return sock


class CooProcess:
    """A running ``coo``: what the tests used of ``asyncio.subprocess.Process``."""

    def __init__(self, pid: int, status: asyncio.StreamReader, streams: list[Any], keep: asyncio.StreamWriter):
        self.pid = pid
        self.returncode: int | None = None
        self.stdin: asyncio.StreamWriter | None = streams[0]
        self.stdout: asyncio.StreamReader | None = streams[1]
        self.stderr: asyncio.StreamReader | None = streams[2]
        self._status = status
        self._keep = keep
        self._ended = asyncio.ensure_future(self._read_status())

    async def _read_status(self) -> int:
        line = await self._status.readline()
        self._keep.close()
        if not line:
            raise RuntimeError(f"the coo fork server went away before coo {self.pid} ended")
        self.returncode = int(line)
        return self.returncode

    async def wait(self) -> int:
        return await asyncio.shield(self._ended)

    def send_signal(self, sig: int) -> None:
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):  # ended, not reaped yet
                os.kill(self.pid, sig)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    async def communicate(self, input: bytes | None = None) -> tuple[bytes, bytes]:  # noqa: A002
        if self.stdin is not None:
            if input:
                self.stdin.write(input)
                with contextlib.suppress(ConnectionError):
                    await self.stdin.drain()
            self.stdin.close()
        out, err = await asyncio.gather(_read_all(self.stdout), _read_all(self.stderr))
        await self.wait()
        return out, err


async def _read_all(stream: asyncio.StreamReader | None) -> bytes:
    return b"" if stream is None else await stream.read()


async def _stream(fd: int | None, writing: bool) -> Any:
    if fd is None:
        return None
    loop = asyncio.get_running_loop()
    if writing:
        transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, os.fdopen(fd, "wb", 0))
        return asyncio.StreamWriter(transport, protocol, None, loop)
    reader = asyncio.StreamReader(limit=1 << 20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", 0))
    return reader


async def start_coo(
    *args: str,
    env: dict[str, str],
    cwd: Path | str,
    stdin: Stream = subprocess.DEVNULL,
    stdout: Stream = subprocess.DEVNULL,
    stderr: Stream = subprocess.DEVNULL,
) -> CooProcess:
    """``coo ARGS`` as its own process, like ``asyncio.create_subprocess_exec(python, -m, bot.cli, ...)``."""
    ends = _Ends(stdin, stdout, stderr)
    sock = _connect(args, env, cwd, ends)
    reader, writer = await asyncio.open_unix_connection(sock=sock)
    line = await reader.readline()
    if not line:
        raise RuntimeError("the coo fork server did not start the process")
    streams = [
        await _stream(ends.ours[0], True),
        await _stream(ends.ours[1], False),
        await _stream(ends.ours[2], False),
    ]
    return CooProcess(int(line), reader, streams, writer)


def run_coo_blocking(
    *args: str, env: dict[str, str], cwd: Path | str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """``coo ARGS`` to its end, like ``subprocess.run(..., capture_output=True, text=True, timeout=...)``."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        sock = _connect(args, env, cwd, _Ends(subprocess.DEVNULL, out, err))
        with sock, sock.makefile("rb") as status:
            sock.settimeout(timeout)
            pid = int(status.readline())
            try:
                code = int(status.readline())
            except TimeoutError:
                os.kill(pid, signal.SIGKILL)
                raise subprocess.TimeoutExpired(["coo", *args], timeout) from None
        out.seek(0)
        err.seek(0)
        said = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    return subprocess.CompletedProcess(["coo", *args], code, *said)


if __name__ == "__main__":
    _become(*_serve(sys.argv[1]))
