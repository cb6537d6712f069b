"""CPU of one ``coo run`` start: exec -> its answer to a message that was waiting -> SIGTERM -> exit.

    python -m bench.start_cpu [--runs 5] [--semantic on|off]

``coo run`` is its own process with default settings (the web console on its default port included) and
only what a user sets (token, Bot API root, operator, a fresh data dir); the fake Telegram Bot API serves
real HTTP from this driver's process. The figure is the user+sys CPU of the ``coo`` process (all threads,
from ``getrusage`` of the reaped child), and the wall time to the answer; medians over the runs. It is what
a restart costs a small machine. The crash, stop and CLI tests do not pay it: they fork their ``coo``
processes from an interpreter that has already imported the product (``tests/fakes/coo_process.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.procs import child_env
from tests.fakes.telegram_api import FakeTelegram

TOKEN = "123456:BENCH-TOKEN"
OPERATOR = 1001


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def one_start(semantic: bool) -> tuple[float, float]:
    """(CPU seconds of the coo process, seconds from exec to its answer)."""
    data = Path(tempfile.mkdtemp(prefix="coo-start-")) / "data"
    data.mkdir()
    async with FakeTelegram(token=TOKEN) as tg:
        env = child_env({
            "COO_DATA_DIR": str(data), "COO_TELEGRAM__TOKEN": TOKEN, "COO_TELEGRAM__API_BASE_URL": tg.api_root,
            "COO_OPERATORS": f"telegram:{OPERATOR}", "COO_MEMORY__SEMANTIC": str(semantic).lower(),
        })  # fmt: skip
        tg.push_message(OPERATOR, OPERATOR, "/status")
        before = _children_cpu()
        started = time.monotonic()
        with (data / "coo-run.log").open("wb") as log:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "bot.cli", "run", env=env, cwd=data,
                stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=log,
            )  # fmt: skip
            await tg.wait_for("sendMessage", timeout=120)
            answered = time.monotonic() - started
            proc.send_signal(signal.SIGTERM)
            await proc.wait()
        return _children_cpu() - before, answered


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--semantic", choices=("on", "off"), default="on")
    args = parser.parse_args()
    cpu, wall = [], []
    for _ in range(args.runs):
        used, answered = await one_start(args.semantic == "on")
        cpu.append(used)
        wall.append(answered)
    print(
        f"coo run start, semantic memory {args.semantic}, {args.runs} runs, PYTHONDONTWRITEBYTECODE="
        f"{os.environ.get('PYTHONDONTWRITEBYTECODE', '')!r}"
    )
    print(
        f"  CPU per start (exec -> answer -> SIGTERM -> exit): median {statistics.median(cpu):.2f} s "
        f"(min {min(cpu):.2f}, max {max(cpu):.2f})"
    )
    print(f"  exec -> answer to the waiting message: median {statistics.median(wall):.2f} s")


if __name__ == "__main__":
    asyncio.run(main())
