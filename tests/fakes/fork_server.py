"""One interpreter per test run that has imported the product and the MCP SDK, and forks a child for each
process a test (or the product under test) starts: a ``coo`` (:mod:`tests.fakes.coo_process`) or a fake MCP
server (:mod:`tests.fakes.forked_command`).

Why: a start spends most of its CPU importing (a ``coo`` about 1.3 s, an MCP server of the official SDK
about 0.8 s), and the suite starts over a hundred; on two cores that was the largest part of the suite's
time. A fork after the imports costs milliseconds.

A request names the module to run as ``__main__`` and brings the arguments, the environment, the working
directory and the three standard streams (passed as file descriptors). The server answers the child's pid,
and its exit code when it ends. A ``tied`` child also ends when the requester's connection closes: the
requester is then a stand-in process the product started, and whatever kills it must end the child too.

The server runs as ``python -m tests.fakes.fork_server SOCKET``; its standard input is a pipe from the process
that started it (pytest's controlling process in a distributed run, else the test process), so it ends (and
kills what it started) when that process does.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import importlib
import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
# What `coo run`, `coo doctor` and the other commands import in the tests' configurations, and what the
# fake MCP servers import. Only modules that start no thread at import: a fork copies one thread only.
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
    "anyio",
    "mcp.server.mcpserver",
)


# ---------------------------------------------------------------- the server (a separate process)


def _receive(conn: socket.socket) -> tuple[dict[str, Any], list[int]]:
    data, fds, _, _ = socket.recv_fds(conn, 1 << 16, 3)
    size, _, body = data.partition(b"\n")
    while len(body) < int(size):
        chunk = conn.recv(1 << 16)
        if not chunk:
            raise ConnectionError("the requester hung up mid-request")
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
            with contextlib.suppress(OSError):  # the requester may have gone already
                conn.sendall(f"{os.waitstatus_to_exitcode(status)}\n".encode())
            conn.close()


def _single_threaded() -> None:
    threads = os.listdir(f"/proc/{os.getpid()}/task")
    if len(threads) != 1:
        raise SystemExit(f"fork_server: {len(threads)} threads after the imports; a fork would lose all but one")


def _preload() -> None:
    for name in PRELOAD:
        importlib.import_module(name)
    # As in `python -m bot.cli`: the command's module runs as __main__ and is not yet imported as itself.
    sys.modules.pop("bot.cli")
    del sys.modules["bot"].cli
    _single_threaded()
    gc.freeze()  # the imported objects stay out of every child's collections: their pages stay shared


def _serve(path: str) -> tuple[dict[str, Any], list[int], socket.socket]:
    """Fork a child per request until the process that started it goes; returns in each child with its
    request. The socket is bound first: a request made while the imports run waits in the backlog."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    sys.stdout.write("bound\n")
    sys.stdout.flush()
    _preload()
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)
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
                    print(f"fork_server: bad request: {exc!r}", file=sys.stderr)
                    conn.close()
                    continue
                pid = os.fork()
                if pid == 0:
                    selector.close()
                    listener.close()
                    for other in children.values():
                        other.close()
                    signal.set_wakeup_fd(-1)
                    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                    os.close(wake_read)
                    os.close(wake_write)
                    return request, fds, conn
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


def _end_with(conn: socket.socket) -> None:
    """A tied child ends when its requester does: the requester never writes, so a read returns at its end."""
    conn.recv(1)
    os._exit(1)


def _become(request: dict[str, Any], fds: list[int], conn: socket.socket) -> None:
    """In the child: take the request's environment, directory and streams, then run its module."""
    import runpy

    if request.get("tied"):
        threading.Thread(target=_end_with, args=(conn,), daemon=True).start()
    else:
        conn.close()
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    for fd in set(fds) - {0, 1, 2}:
        os.close(fd)
    sys.path[0] = request["cwd"]
    sys.argv = [request.get("argv0", request["module"]), *request["args"]]
    code: Any = 0
    try:
        runpy.run_module(request["module"], run_name="__main__", alter_sys=True)
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


# ---------------------------------------------------------------- starting it (in the test worker)


@dataclass
class _Server:
    path: str
    process: subprocess.Popen[bytes]


_server: _Server | None = None
# Names the run's shared server in the test workers' environment (see ``share_with_workers``).
SHARED = "SOLO_COO_TEST_FORK_SERVER"


def share_with_workers() -> None:
    """Start the fork server in the controlling process, before the test workers, and name it in the
    environment they inherit: one server preloads for the whole run instead of one per worker (~3 s of CPU
    each). Forks are cheap and the server answers one request at a time, so four workers share it easily.
    Only its socket is waited for: the imports run while the workers collect the suite."""
    global _server
    _server = _start(wait_until_ready=False)
    os.environ[SHARED] = _server.path


def socket_path() -> str:
    """The socket of the run's shared fork server, or else of this process's own, started at the first call."""
    global _server
    shared = os.environ.get(SHARED)
    if shared and _server is None:  # a test worker: the controlling process started it
        return shared
    if _server is None or _server.process.poll() is not None:
        _server = _start(wait_until_ready=True)
    return _server.path


def _start(wait_until_ready: bool) -> _Server:
    path = os.path.join(tempfile.mkdtemp(prefix="coo-fork-"), "socket")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COO_", "OPENAI_", "XDG_"))}
    env.update({"PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"})
    process = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "tests.fakes.fork_server", path],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=ROOT,
        env=env,
    )
    assert process.stdout is not None
    expected = [b"bound\n", b"ready\n"] if wait_until_ready else [b"bound\n"]
    for line in expected:
        if process.stdout.readline() != line:
            raise RuntimeError(f"the fork server did not start (exit {process.wait()})")
    server = _Server(path, process)
    atexit.register(_stop_server, server)
    return server


def _stop_server(server: _Server) -> None:
    assert server.process.stdin is not None
    server.process.stdin.close()
    server.process.wait(30)
    shutil.rmtree(os.path.dirname(server.path))  # the socket's folder: one was left per worker and run


def request_bytes(module: str, args: list[str], env: dict[str, str], cwd: str, **more: Any) -> bytes:
    """One request: its length, a newline, then the JSON (the file descriptors travel beside it)."""
    body = json.dumps({"module": module, "args": args, "env": env, "cwd": cwd, **more}).encode()
    return f"{len(body)}\n".encode() + body


if __name__ == "__main__":
    _become(*_serve(sys.argv[1]))
