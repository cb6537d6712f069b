"""The loop `coo` commands run on."""

from __future__ import annotations

import asyncio
import sys

import pytest

from bot import eventloop


@pytest.mark.skipif(sys.platform == "win32", reason="uvloop is not installed on Windows")
def test_commands_run_on_uvloop_and_return_the_result() -> None:
    async def loop_module() -> str:
        return type(asyncio.get_running_loop()).__module__

    assert eventloop.run(loop_module()).startswith("uvloop")


def test_an_exception_of_the_main_coroutine_reaches_the_caller() -> None:
    async def fail() -> None:
        raise LookupError("boom")

    with pytest.raises(LookupError, match="boom"):
        eventloop.run(fail())
