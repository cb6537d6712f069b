"""The console's HTTP server: aiohttp on the runtime's event loop, pages rendered on the server (Jinja2)."""

from __future__ import annotations

import functools
import logging
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jinja2
from aiohttp import web

from bot.web.actions import register_actions
from bot.web.auth import COOKIE, CSRF_NAME, make_guard, refuse, session_of
from bot.web.followups import followups_due
from bot.web.goal_pages import register_goal_pages
from bot.web.inbox import inbox_items
from bot.web.links import LINK_TTL
from bot.web.live import register_live
from bot.web.memory_pages import register_memory_pages
from bot.web.services import Services
from bot.web.settings import WebSettings
from bot.web.timeline import register_timeline
from bot.web.views import STATE_NAMES, TASK_STATES
from prompts.messages import GENERIC_ERROR

log = logging.getLogger(__name__)
HERE = Path(__file__).parent
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
}


@functools.cache
def _templates() -> jinja2.Environment:
    """The pages' templates, one environment per process: each template is compiled once, at its first use,
    and then shared by every console (rendering does not change the environment)."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        enable_async=True,
        undefined=jinja2.StrictUndefined,
    )


class WebConsole:
    """Serves the console until stopped."""

    def __init__(self, settings: WebSettings, services: Services) -> None:
        self.settings = settings
        self.services = services
        self.root = urlsplit(settings.public_url).path.rstrip("/") if settings.public_url else ""
        self._env = _templates()
        self._runner: web.AppRunner | None = None

    def login_url(self, token: str) -> str:
        """The address of a one-time login link."""
        return f"{self.settings.base_url}/login/{token}"

    async def new_link(self, operator: str, via: str) -> str:
        """A one-time login link for ``operator`` (10 minutes, one use)."""
        return self.login_url(await self.services.auth.create_link(operator, LINK_TTL, via))

    def app(self) -> web.Application:
        """The application (routes, the access middleware, security headers)."""
        app = web.Application(middlewares=[_headers, make_guard(self.services.auth, self.services.guard)])
        app.router.add_get("/login/{token}", self.login_page)
        app.router.add_post("/login", self.login)
        app.router.add_static("/static/", HERE / "static")
        app.router.add_get("/", self.today)
        app.router.add_get("/cards", self.cards)
        app.router.add_get("/spend", self.spend)
        app.router.add_get("/goals", self.goals)
        app.router.add_post("/logout", self.logout)
        register_actions(app, self.services, self.render, self.back)
        register_timeline(app, self.services, self.render)
        register_memory_pages(app, self.services, self.render, self.back)
        register_live(app, self.services)
        register_goal_pages(app, self.services.views, self.render)
        return app

    async def start(self) -> None:
        """Listen (an address already in use is logged; chat goes on without the console)."""
        runner = web.AppRunner(self.app(), access_log=None, handle_signals=False)
        await runner.setup()
        host, port = self.settings.address
        try:
            await web.TCPSite(runner, host, port).start()
        except OSError as exc:
            await runner.cleanup()
            log.error("web console: cannot listen on %s (%s); running without it", self.settings.listen, exc)
            return
        self._runner = runner
        log.info("web console on %s", self.settings.base_url)

    @property
    def serving(self) -> bool:
        """True while the server listens."""
        return self._runner is not None

    async def stop(self) -> None:
        """Stop listening and end open live streams."""
        self.services.channel.poke()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def render(self, request: web.Request, name: str, status: int = 200, **values: Any) -> web.Response:
        """A page from its template, with the operator, the CSRF token and the notes for them."""
        session = session_of(request) if CSRF_NAME in request else None
        notes = self.services.channel.take(session.operator) if session else []
        text = await self._env.get_template(name).render_async(
            root=self.root,
            operator=session.operator if session else "",
            csrf=request.get(CSRF_NAME, ""),
            notes=[*notes, *values.pop("notes", [])],
            path=request.path,
            **values,
        )
        return web.Response(text=text, status=status, content_type="text/html")

    def back(self, path: str) -> web.HTTPSeeOther:
        """Go to a page after a POST (so a reload does not post again)."""
        return web.HTTPSeeOther(self.root + path)

    # -- access ------------------------------------------------------------------------------------
    async def login_page(self, request: web.Request) -> web.Response:
        """The link's page: one button; the link is used only when it is pressed (a preview does not)."""
        token = request.match_info["token"]
        if not await self.services.auth.link_valid(token):
            return refuse(401, "This sign-in link was already used or has expired. Ask for a new one with /web.")
        return await self.render(request, "login.html", token=token)

    async def login(self, request: web.Request) -> web.StreamResponse:
        """Use the link once: a session cookie (HttpOnly, SameSite=Strict, Secure behind HTTPS)."""
        form = await request.post()
        hours = self.settings.session_hours
        redeemed = await self.services.auth.redeem(str(form.get("token", "")), timedelta(hours=hours))
        if redeemed is None:
            return refuse(401, "This sign-in link was already used or has expired. Ask for a new one with /web.")
        response = self.back("/")
        response.set_cookie(
            COOKIE,
            redeemed[1],
            max_age=int(hours * 3600),
            path=self.root or "/",
            httponly=True,
            samesite="Strict",
            secure=self.settings.secure,
        )
        raise response

    async def logout(self, request: web.Request) -> web.StreamResponse:
        """End this session."""
        await self.services.auth.revoke(request.cookies.get(COOKIE, ""), session_of(request).operator)
        response = refuse(200, "Signed out.")
        response.del_cookie(COOKIE, path=self.root or "/")
        return response

    # -- pages -------------------------------------------------------------------------------------
    async def today(self, request: web.Request) -> web.Response:
        """What needs the operator, spend against caps, active goals."""
        views = self.services.views
        return await self.render(
            request,
            "today.html",
            cards=await views.pending_cards(),
            inbox=await inbox_items(views.db, views.timezone),
            followups=await followups_due(views.db, views.timezone),
            blocked=await views.blocked_tasks(),
            spend=await views.spend(),
            goals=await views.open_goals(),
        )

    async def cards(self, request: web.Request) -> web.Response:
        """Pending cards with Approve / Edit / Reject, and recent decided ones."""
        views = self.services.views
        return await self.render(
            request, "cards.html", pending=await views.pending_cards(), recent=await views.recent_cards()
        )

    async def spend(self, request: web.Request) -> web.Response:
        """Spend per period, per day and per workflow against the caps."""
        views = self.services.views
        return await self.render(request, "spend.html", spend=await views.spend(), charts=await views.spend_charts())

    async def goals(self, request: web.Request) -> web.Response:
        """A board: a column per task state for each goal."""
        return await self.render(
            request, "goals.html", board=await self.services.views.board(), states=TASK_STATES, names=STATE_NAMES
        )


@web.middleware
async def _headers(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
    except web.HTTPException as exc:
        exc.headers.update(SECURITY_HEADERS)
        raise
    except Exception:
        # Logged once here; the browser gets the short generic answer with the same headers as any page.
        log.exception("web console: %s %s failed", request.method, request.path)
        return web.Response(status=500, text=GENERIC_ERROR, headers=SECURITY_HEADERS)
    if not response.prepared:
        response.headers.update(SECURITY_HEADERS)
    return response
