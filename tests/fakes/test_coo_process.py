"""The tests' forked ``coo`` processes behave as ``python -m bot.cli`` does: same exit codes and output, their
own environment and directory, and signals reach them."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import subprocess_env
from tests.fakes.coo_process import run_coo_blocking, start_coo


async def started(args: list[str], env: dict[str, str], cwd: Path) -> tuple[int, bytes, bytes]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot.cli", *args, env=env, cwd=cwd,
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out, err


async def forked(args: list[str], env: dict[str, str], cwd: Path) -> tuple[int, bytes, bytes]:
    proc = await start_coo(*args, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out, err


@pytest.mark.parametrize(
    ("args", "extra"),
    [
        (["--version"], {}),
        (["run"], {"COO_TIMEZONE": "Mars/Olympus"}),  # a configuration error: one line, exit 2
        (["doctor"], {}),
        (["no-such-command"], {}),  # a usage error from argparse, which names the program
    ],
)
async def test_a_forked_coo_says_and_exits_as_a_started_one(tmp_path: Path, args: list[str], extra: dict) -> None:
    env = subprocess_env(tmp_path / "data", **extra)
    assert await forked(args, env, tmp_path) == await started(args, env, tmp_path)


async def test_each_child_has_its_own_environment_and_directory(tmp_path: Path) -> None:
    for name, zone in (("one", "Mars/One"), ("two", "Mars/Two")):
        (tmp_path / name).mkdir()
        (tmp_path / name / ".env").write_text(f"COO_TIMEZONE={zone}\n")  # read from the working directory
    one = forked(["run"], subprocess_env(tmp_path / "one" / "data"), tmp_path / "one")
    two = forked(["run"], subprocess_env(tmp_path / "two" / "data"), tmp_path / "two")
    (code_one, _, err_one), (code_two, _, err_two) = await asyncio.gather(one, two)
    assert (code_one, code_two) == (2, 2)
    assert b"Mars/One" in err_one and b"Mars/Two" not in err_one
    assert b"Mars/Two" in err_two and b"Mars/One" not in err_two


async def test_kill_9_reaches_the_child_and_is_its_return_code(tmp_path: Path) -> None:
    proc = await start_coo("run", env=subprocess_env(tmp_path / "data"), cwd=tmp_path, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    seen = b""
    while b"no chat platform is configured" not in seen:  # up, and staying up
        line = await asyncio.wait_for(proc.stderr.readline(), 60)
        assert line, seen
        seen += line
    proc.send_signal(signal.SIGKILL)
    assert await asyncio.wait_for(proc.wait(), 30) == -signal.SIGKILL


def test_the_blocking_form_captures_both_streams(tmp_path: Path) -> None:
    done = run_coo_blocking("run", env=subprocess_env(tmp_path / "data", COO_TIMEZONE="Mars/Olympus"), cwd=tmp_path)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == "coo: configuration error: COO_TIMEZONE: unknown time zone 'Mars/Olympus'\n"
