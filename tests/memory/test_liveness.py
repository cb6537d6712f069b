"""Processes sharing a data dir tell a live one's work from a crash's leftovers (memory.liveness)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from memory.liveness import Liveness

REPO = Path(__file__).resolve().parents[2]
HOLDER = (
    "import sys, pathlib\n"
    "from memory.liveness import Liveness\n"
    "with Liveness(pathlib.Path(sys.argv[1])) as me:\n"
    "    print(me.owner, flush=True)\n"
    "    sys.stdin.read()\n"
)


@contextmanager
def other_process(directory: Path) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """A separate Python process holding its mark in ``directory`` until its stdin closes."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(directory)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        yield proc, proc.stdout.readline().strip()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_this_process_is_alive_and_an_unknown_or_malformed_name_is_not(tmp_path: Path) -> None:
    with Liveness(tmp_path) as me:
        assert me.alive(me.owner)
        assert not me.alive("12345-0badcafe")
        assert not me.alive("../../etc/passwd")
    assert list(tmp_path.iterdir()) == []  # an orderly end removes its mark


def test_another_running_process_is_alive_until_killed(tmp_path: Path) -> None:
    with Liveness(tmp_path) as me, other_process(tmp_path) as (proc, owner):
        assert owner != me.owner and me.alive(owner)
        os.kill(proc.pid, signal.SIGKILL)  # no chance to clean up: the kernel drops its lock
        proc.wait()
        assert not me.alive(owner)
        assert not (tmp_path / f"{owner}.lock").exists()  # and its mark is removed


def test_an_orderly_end_is_seen_as_gone(tmp_path: Path) -> None:
    with Liveness(tmp_path) as me, other_process(tmp_path) as (proc, owner):
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait()
        assert not me.alive(owner)


def test_marks_of_killed_processes_are_swept_at_the_next_start(tmp_path: Path) -> None:
    with other_process(tmp_path) as (proc, owner):
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert (tmp_path / f"{owner}.lock").exists()
    with Liveness(tmp_path) as me:
        assert [p.name for p in tmp_path.iterdir()] == [f"{me.owner}.lock"]
