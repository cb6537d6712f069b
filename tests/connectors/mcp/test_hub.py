"""The hub's serving loop ends when the hub closes, however the client library hands back the cancellation."""

from __future__ import annotations

import asyncio
import socket

from connectors.mcp.hub import McpHub, _stop_if_closing, reconnecting
from connectors.mcp.settings import McpSettings


class Reconnected(BaseException):
    """Raised by a session that should never have been started (not an Exception: the loop cannot catch it)."""


class Sessions:
    """Sessions for :func:`reconnecting`: the first waits and, when the cancel arrives, does what the client library
    did once under load (seen in a hung `coo doctor`): the connection's error came out instead of the
    cancellation. Any later session means the loop reconnected after it was cancelled."""

    def __init__(self) -> None:
        self.entered = asyncio.Event()
        self.started = 0
        self.failures: list[Exception] = []
        self.ended = 0
        self.pauses: list[float] = []

    async def session(self) -> None:
        self.started += 1
        if self.started > 1:
            raise Reconnected(f"session {self.started} started after the cancel")
        try:
            self.entered.set()
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise ConnectionError("the server closed the connection") from None

    def end(self) -> None:
        self.ended += 1

    async def pause(self, seconds: float) -> None:
        self.pauses.append(seconds)


async def test_a_cancel_the_client_turned_into_an_error_still_ends_the_loop() -> None:
    sessions = Sessions()
    task = asyncio.create_task(reconnecting(sessions.session, sessions.failures.append, sessions.end, sessions.pause))
    await sessions.entered.wait()
    task.cancel()
    await asyncio.wait([task])
    assert task.cancelled()  # not Reconnected: it never went back to reconnect
    assert (sessions.started, sessions.failures, sessions.ended, sessions.pauses) == (1, [], 1, [])


async def test_failed_sessions_are_reported_and_retried_with_growing_pauses() -> None:
    failures: list[Exception] = []
    ended: list[None] = []
    pauses: list[float] = []
    done = asyncio.Event()

    async def refused() -> None:
        raise ConnectionError("refused")

    async def pause(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == 6:
            done.set()
            await asyncio.Event().wait()  # held here until the test cancels the loop

    task = asyncio.create_task(reconnecting(refused, failures.append, lambda: ended.append(None), pause))
    await done.wait()
    task.cancel()
    await asyncio.wait([task])
    assert task.cancelled() and len(failures) == len(ended) == 6
    assert pauses == [1.0, 2.0, 5.0, 10.0, 30.0, 30.0]


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
