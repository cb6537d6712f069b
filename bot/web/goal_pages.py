"""The console's goal pages: one goal with its tasks, and one task with its attempts' traces."""

from __future__ import annotations

from aiohttp import web

from bot.web.actions import Render
from bot.web.views import STATE_NAMES, Views


def register_goal_pages(app: web.Application, views: Views, render: Render) -> None:
    """Add ``/goals/{id}`` and ``/tasks/{id}``."""
    pages = GoalPages(views, render)
    app.router.add_get("/goals/{id}", pages.goal)
    app.router.add_get("/tasks/{id}", pages.task)


class GoalPages:
    """Handlers of the goal and trace pages."""

    def __init__(self, views: Views, render: Render) -> None:
        self._views = views
        self._render = render

    async def goal(self, request: web.Request) -> web.Response:
        """A goal, its runs' tasks with their attempts, and its buttons."""
        page = await self._views.goal_page(request.match_info["id"])
        if page is None:
            raise web.HTTPNotFound(text="No such goal.")
        return await self._render(request, "goal.html", names=STATE_NAMES, **page)

    async def task(self, request: web.Request) -> web.Response:
        """A task and each kept attempt's trace: model, prompt, tool calls, output, tokens and cost."""
        page = await self._views.task_page(request.match_info["id"])
        if page is None:
            raise web.HTTPNotFound(text="No such task.")
        return await self._render(request, "trace.html", names=STATE_NAMES, **page)
