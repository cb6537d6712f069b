"""The hub's serving tasks end when it closes, however the client library hands back the cancellation."""

from __future__ import annotations

import asyncio
import socket

from connectors.mcp.hub import McpHub, _stop_if_closing
from connectors.mcp.settings import McpSettings


async def _a_session(entered: asyncio.Event, rounds: list[int]) -> None:
    """The first connection waits; when the cancel arrives it does what the client library did once under
    load (seen in a hung `coo doctor`): the connection's error came out instead of the cancellation. Every
    later connection is refused at once."""
    if len(rounds) > 1:
        raise ConnectionError("refused")
    try:
        entered.set()
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        raise ConnectionError("the server closed the connection") from None


async def _serving_loop(entered: asyncio.Event, rounds: list[int]) -> None:
    """The shape of the hub's loop: a session, its failure, the guard, a back-off, again (three rounds at most,
    so that without the guard the test fails instead of hanging)."""
    while len(rounds) < 3:
        rounds.append(1)
        try:
            await _a_session(entered, rounds)
        except ConnectionError:
            _stop_if_closing()
        _stop_if_closing()
        await asyncio.sleep(0)


async def test_a_cancel_the_client_turned_into_an_error_still_ends_the_loop() -> None:
    entered = asyncio.Event()
    rounds: list[int] = []
    task = asyncio.create_task(_serving_loop(entered, rounds))
    await entered.wait()
    task.cancel()
    await asyncio.wait([task])
    assert task.cancelled() and rounds == [1]  # it never went back to reconnect


async def test_without_a_cancel_the_guard_lets_a_failed_session_be_retried() -> None:
    _stop_if_closing()  # nothing asked this task to stop: no exception


async def test_close_ends_a_hub_whose_server_cannot_be_reached() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # bound, never listening: every connect is refused
        hub = McpHub(McpSettings.model_validate({"servers": {"gone": {"url": f"http://127.0.0.1:{port}/mcp"}}}))
        hub.start()
        await hub.wait_listed(20)
        assert hub.states["gone"].state == "down"
        await asyncio.wait_for(hub.close(), 10)
