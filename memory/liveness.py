"""Which processes working on one data dir are alive.

Each process (``coo run``, ``coo chat``) holds an exclusive lock on a file of its own for as long as
it runs. The kernel drops the lock when the process ends, however it ends (kill -9 included), so
another process can tell what a crash left behind from what a live process is still doing, with no
clock and no heartbeat: it tries to take the lock.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
from pathlib import Path
from types import TracebackType

try:
    import fcntl
except ImportError:  # pragma: no cover - not on Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

_OWNER = re.compile(r"^[0-9]{1,10}-[0-9a-f]{8}$")


class Liveness:
    """This process's mark in ``directory``, and a test of other processes' marks.

    Use as a context manager; :attr:`owner` names this process in rows it works on.
    """

    def __init__(self, directory: Path) -> None:
        self.owner = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._directory = directory
        self._fd: int | None = None

    def __enter__(self) -> Liveness:
        self._directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._sweep()
        # Locked under a name nobody tests, then renamed into place: another process's sweep must never
        # find the mark unlocked (it would take this process for gone and remove its mark).
        hidden = self._directory / f".{self.owner}.new"
        fd = os.open(hidden, os.O_CREAT | os.O_RDWR, 0o600)
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.replace(hidden, self._path(self.owner))
        self._fd = fd
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            self._path(self.owner).unlink()
        os.close(self._fd)
        self._fd = None

    def alive(self, owner: str) -> bool:
        """Is the process that wrote ``owner`` still running? This process is; an unknown name is not.

        Without file locks (Windows) nothing can be told, and every other owner counts as gone, as
        before this existed.
        """
        if owner == self.owner:
            return True
        if fcntl is None or not _OWNER.match(owner):
            return False
        try:
            fd = os.open(self._path(owner), os.O_RDWR)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        else:
            with contextlib.suppress(FileNotFoundError):
                self._path(owner).unlink()  # its process is gone: so is its mark
            return False
        finally:
            os.close(fd)

    def _sweep(self) -> None:
        """Remove the marks of processes that are gone (they ended without removing their own)."""
        for path in self._directory.glob("*.lock"):
            if _OWNER.match(path.stem) and not self.alive(path.stem):
                log.debug("removed the mark of ended process %s", path.stem)

    def _path(self, owner: str) -> Path:
        return self._directory / f"{owner}.lock"
