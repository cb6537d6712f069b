"""A process the product starts through the stand-in behaves as one it started itself: the same output, exit
code, arguments and directory; and a kill of the stand-in ends the real process too."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path

from tests.fakes.fork_server import socket_path
from tests.fakes.mcp_servers import stdio_command

STAND_IN = Path(__file__).with_name("forked_command.py")
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test", "version": "1"}},
}


async def _run(argv: list[str], cwd: Path, given: bytes) -> tuple[int, bytes, bytes]:
    proc = await asyncio.create_subprocess_exec(
        *argv, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(given), 60)
    assert proc.returncode is not None
    return proc.returncode, out, err


def _take(path: Path) -> str | None:
    """The file's text, removing it; None when there is none."""
    if not path.exists():
        return None
    text = path.read_text()
    path.unlink()
    return text


async def test_output_exit_code_arguments_and_directory_are_a_started_processs(tmp_path: Path) -> None:
    (tmp_path / "in.json").write_text('{"b": [1, 2], "a": "x"}')
    out = tmp_path / "out.json"
    for args, given in (([], b'{"z": 1}'), ([], b"{not json"), (["--sort-keys", "in.json", "out.json"], b"")):
        started = await _run([sys.executable, "-m", "json.tool", *args], tmp_path, given), _take(out)
        stand_in = [sys.executable, "-I", "-S", str(STAND_IN), socket_path(), "json.tool", *args]
        assert (await _run(stand_in, tmp_path, given), _take(out)) == started
        assert started[0][0] == (1 if given == b"{not json" else 0)
    assert json.loads(started[1] or "") == {"a": "x", "b": [1, 2]}  # the last case wrote it, in the test's folder


async def test_a_kill_9_of_the_stand_in_ends_the_server_it_stands_for(tmp_path: Path) -> None:
    spec = stdio_command("calendar", tmp_path / "state")
    proc = await asyncio.create_subprocess_exec(
        spec["command"], *spec["args"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(json.dumps(INITIALIZE).encode() + b"\n")
    answer = await asyncio.wait_for(proc.stdout.readline(), 60)  # the stand-in's stdout is gone: the server's
    assert json.loads(answer)["id"] == 1
    proc.send_signal(signal.SIGKILL)
    # Our end of stdin stays open, so the server would wait for more forever: its output ends only if it did
    # (and asyncio reports the stand-in's end only once its pipes closed).
    assert await asyncio.wait_for(proc.stdout.read(), 30) == b""
    assert await asyncio.wait_for(proc.wait(), 30) == -signal.SIGKILL
    proc.stdin.close()
