"""A program on a pseudo-terminal, read and typed to as a person at a terminal would.

Like a real terminal it answers cursor-position requests (``ESC [6n``), which line editors send.
Waits are on what the screen shows; the deadline only keeps a broken run from hanging the suite.
"""

from __future__ import annotations

import fcntl
import os
import pty
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path
from types import TracebackType

CPR_REQUEST = b"\x1b[6n"


def _take_terminal() -> None:
    """In the child, after setsid: the pty on stdin becomes its controlling terminal (/dev/tty, which
    getpass reads secrets from)."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Terminal:
    """``python -m bot.cli ARGS`` with stdin, stdout and stderr on one pseudo-terminal."""

    def __init__(self, args: list[str], env: dict[str, str], cwd: Path, rows: int = 40, cols: int = 120) -> None:
        self._main, child = pty.openpty()
        fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bot.cli", *args],
            cwd=cwd,
            env={**env, "TERM": "xterm-256color"},  # what a terminal emulator sets, whatever this machine has
            stdin=child,
            stdout=child,
            stderr=child,
            start_new_session=True,
            preexec_fn=_take_terminal,
        )
        os.close(child)
        self._raw = b""
        self._seen = 0  # where the next read_until starts looking

    @property
    def screen(self) -> str:
        """Everything the program wrote so far (escape sequences included, CRLF as LF)."""
        return self._raw.decode(errors="replace").replace("\r\n", "\n")

    def cooked(self) -> bool:
        """True when the terminal is in its normal line mode (echo and line editing by the kernel), as a
        shell needs it back; a line editor turns both off while it reads."""
        lflag = termios.tcgetattr(self._main)[3]
        return bool(lflag & termios.ECHO) and bool(lflag & termios.ICANON)

    def type(self, keys: bytes) -> None:
        """Send keystrokes, as typed."""
        os.write(self._main, keys)

    def read_until(self, marker: str, timeout: float = 30) -> str:
        """Read until ``marker`` appears after what earlier calls found; returns the text up to its end."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.screen.find(marker, self._seen)
            if found >= 0:
                self._seen = found + len(marker)
                return self.screen[: found + len(marker)]
            assert time.monotonic() < deadline, f"{marker!r} never shown:\n{self.screen}"
            if not self._read_some(1.0):
                assert self.proc.poll() is None, f"exited before {marker!r}:\n{self.screen}"

    def _read_some(self, wait_s: float) -> bool:
        if not select.select([self._main], [], [], wait_s)[0]:
            return False
        try:
            chunk = os.read(self._main, 65536)
        except OSError:  # the program closed the terminal
            return False
        for _ in range(chunk.count(CPR_REQUEST)):
            self.type(b"\x1b[1;1R")
        self._raw += chunk
        return bool(chunk)

    def wait(self, timeout: float = 30) -> int:
        """Read until the program ends; its exit code."""
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            assert time.monotonic() < deadline, f"still running:\n{self.screen}"
            self._read_some(0.2)
        while self._read_some(0):
            pass
        return self.proc.returncode

    def __enter__(self) -> Terminal:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self._main)
