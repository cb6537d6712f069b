"""Access to the console (I6): a session cookie from a one-time link, re-checked operator, CSRF on POST."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Middleware

from bot.access import AccessGuard
from memory.web_sessions import WebAuthStore, WebSession

COOKIE = "coo_session"
PUBLIC = ("/login", "/static/")
SESSION_KEY_NAME = web.RequestKey("coo.session", WebSession)
CSRF_NAME = web.RequestKey("coo.csrf", str)
FORGED = "This form is not from your console page (missing or wrong token); nothing was done."
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def csrf_token(session_token: str) -> str:
    """The CSRF token of a session: derived from the cookie, so it is never stored and dies with it."""
    return hashlib.sha256(b"coo-csrf:" + session_token.encode()).hexdigest()


def refuse(status: int, text: str) -> web.Response:
    """A refusal page (no template: it must work whatever else failed)."""
    body = (
        "<!doctype html><meta charset=utf-8><meta name=viewport content='width=device-width'>"
        f"<title>solo-coo</title><p>{text}</p>"
    )
    return web.Response(status=status, text=body, content_type="text/html")


def make_guard(store: WebAuthStore, guard: AccessGuard) -> Middleware:
    """The middleware: public paths pass; everything else needs a live session of a current operator;
    a POST also needs the session's CSRF token."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(PUBLIC):
            return await handler(request)
        token = request.cookies.get(COOKIE, "")
        session = await store.session(token) if token else None
        if session is None:
            return refuse(401, "Sign in with a link: send /web to the bot in a private chat, or run coo web-login.")
        if not await guard.allowed(session.operator):
            return refuse(403, "You are no longer an operator of this solo-coo.")
        if request.method not in ("GET", "HEAD"):
            form = await request.post()
            sent = str(form.get("csrf", ""))
            if not hmac.compare_digest(sent.encode(), csrf_token(token).encode()):
                await store.refused_post(session.operator, request.path)
                return refuse(403, FORGED)
        request[SESSION_KEY_NAME] = session
        request[CSRF_NAME] = csrf_token(token)
        return await handler(request)

    return middleware


def session_of(request: web.Request) -> WebSession:
    """The signed-in operator's session (set by the middleware)."""
    session: WebSession = request[SESSION_KEY_NAME]
    return session
