"""Start a fake server's aiohttp app on loopback (every fake in this folder does it the same way)."""

from __future__ import annotations

import ssl

from aiohttp import web


async def serve(
    app: web.Application, port: int = 0, *, cancel_handlers: bool = True, tls: ssl.SSLContext | None = None
) -> tuple[web.AppRunner, int]:
    """Serve ``app`` on 127.0.0.1:``port`` (0: any free port); the runner (to clean up) and the port.

    ``cancel_handlers``: a handler still running at shutdown (a scripted delay) is cancelled, so it
    never holds the test's exit. ``tls``: serve HTTPS with this server context.
    """
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5, handler_cancellation=cancel_handlers)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=tls).start()
    return runner, int(runner.addresses[0][1])


async def stop_listening(runner: web.AppRunner) -> None:
    """Close the listening socket and every open connection: clients now get "connection refused",
    as when the server's host is gone (an outage). :func:`listen_again` ends it."""
    for site in list(runner.sites):
        await site.stop()
    server = runner.server
    for handler in server.connections if server is not None else []:
        if handler.transport is not None:
            handler.transport.abort()


async def listen_again(runner: web.AppRunner, port: int) -> None:
    """Listen on ``port`` again after :func:`stop_listening` (the same address: clients just retry)."""
    await web.TCPSite(runner, "127.0.0.1", port).start()
