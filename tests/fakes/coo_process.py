"""``coo`` processes for the tests, forked from one interpreter per test run that has already
imported the product (a ``coo`` start spends about 1.3 s of CPU importing; a fork costs milliseconds).

What a child still is: its own process, with its own pid (SIGTERM and kill -9 reach it), its own
files, sockets and event loop, and the environment, working directory, arguments and standard streams
the test gave it. It runs ``bot/cli.py`` as ``__main__`` from the top, as ``python -m bot.cli`` does,
and ends through the interpreter's own exit (atexit, thread joins, flushes).

What it does not prove is a cold start: the import order, what a start loads, and its time. The
tests about those (``tests/bot/test_composition.py``, the polling-first test in ``test_cli.py``, the
pseudo-terminal tests) and every benchmark start ``python -m bot.cli`` as a user does.

The server that forks them is :mod:`tests.fakes.fork_server`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import tempfile
from pathlib import Path
from typing import IO, Any

from tests.fakes.fork_server import request_bytes, socket_path

Stream = int | IO[Any] | None


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


def _connect(args: tuple[str, ...], env: dict[str, str], cwd: Path | str, ends: _Ends) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(socket_path())
        data = request_bytes("bot.cli", list(args), env, str(cwd), argv0="coo")
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
