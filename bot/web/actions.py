"""The console's POSTs: Approve, Edit, Reject (through the approval UI, like a press in chat); Retry, Skip and
Cancel goal (the goal service, like the buttons of a blocked task's message in chat).

A form carries the card's id, nonce and digest as the page showed it: when the card changed since (decided
in chat or in another tab, replaced by an edit), the form is refused and nothing happens.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from bot.messages import InboundMessage
from bot.web.auth import session_of
from bot.web.channel import WEB
from bot.web.services import Services
from graph.approvals.cards import button_data
from graph.buttons import Prefix
from graph.errors import UserFacingError
from memory.approvals import ApprovalRow, CardRef
from memory.tasks import TransitionRefused

VERBS = {"approve": Prefix.APPROVE, "reject": Prefix.REJECT}


Render = Callable[..., Awaitable[web.Response]]
"""``render(request, template, status=..., **values)``: a page."""


def register_actions(
    app: web.Application, services: Services, render: Render, back: Callable[[str], web.HTTPSeeOther]
) -> None:
    """Add the POST routes."""
    actions = Actions(services, render, back)
    app.router.add_post("/cards/{id}/decide", actions.decide)
    app.router.add_post("/cards/{id}/edit", actions.edit)
    app.router.add_post("/tasks/{id}/retry", actions.retry)
    app.router.add_post("/tasks/{id}/skip", actions.skip)
    app.router.add_post("/goals/{id}/cancel", actions.cancel)


class Actions:
    """The console's handlers that change something."""

    def __init__(self, services: Services, render: Render, back: Callable[[str], web.HTTPSeeOther]) -> None:
        self._services = services
        self._render = render
        self._back = back
        self._ui = services.ui
        self._channel = services.channel

    async def _card(self, request: web.Request) -> tuple[ApprovalRow, web.Response | None]:
        """The card a form names, or a refusal when it is not that card as the page showed it."""
        form = await request.post()
        row = await self._ui.store.get(request.match_info["id"])
        operator = session_of(request).operator
        if row is None or not hmac.compare_digest(str(form.get("nonce", "")), row.nonce):
            raise web.HTTPNotFound(text="No such card.")
        if operator not in row.approvers:
            return row, await self._refuse(request, 403, "You are not one of this card's approvers; nothing was done.")
        if row.state != "pending" or not hmac.compare_digest(str(form.get("digest", "")), row.digest):
            who = f" by {row.decided_by}" if row.decided_by else ""
            text = f"This card changed since the page was loaded ({row.state}{who}); nothing was done. Look again."
            return row, await self._refuse(request, 409, text)
        return row, None

    async def _refuse(self, request: web.Request, status: int, text: str) -> web.Response:
        views = self._services.views
        values: dict[str, Any] = {"pending": await views.pending_cards(), "recent": await views.recent_cards()}
        return await self._render(request, "cards.html", status=status, notes=[text], **values)

    def _inbound(self, operator: str, text: str = "", data: str | None = None) -> InboundMessage:
        if data is not None:
            return InboundMessage(WEB, operator, operator, text, "callback", callback_data=data, private=True)
        return InboundMessage(WEB, operator, operator, text, "message", private=True)

    async def decide(self, request: web.Request) -> web.StreamResponse:
        """Approve or Reject: the same press as in chat (the same checks; a second press is refused)."""
        row, refused = await self._card(request)
        if refused is not None:
            return refused
        verb = VERBS.get(str((await request.post()).get("verb", "")))
        if verb is None:
            raise web.HTTPBadRequest(text="Unknown decision.")
        operator = session_of(request).operator
        # Shown here: presses are accepted only from where a card was shown, and this page showed it.
        await self._ui.store.add_card(row.id, CardRef(WEB, operator, None, ""))
        await self._ui.on_press(self._inbound(operator, data=button_data(verb, row)))
        raise self._back("/cards")

    async def edit(self, request: web.Request) -> web.StreamResponse:
        """A correction, parsed as in chat: the card is replaced by a new one (new digest) to approve."""
        row, refused = await self._card(request)
        if refused is not None:
            return refused
        text = str((await request.post()).get("text", "")).strip()
        if not text:
            return await self._refuse(request, 400, "Write the correction first; nothing was changed.")
        operator = session_of(request).operator
        try:
            await self._ui.on_edit(self._inbound(operator, text), row.id)
        except UserFacingError as exc:
            return await self._refuse(request, 400, str(exc))
        await self._services.auth.record(operator, "web.edit", {"approval_id": row.id})
        raise self._back("/cards")

    async def retry(self, request: web.Request) -> web.StreamResponse:
        """A blocked task gets another round of attempts (the goal service's Retry)."""
        return await self._task_button(request, "retry")

    async def skip(self, request: web.Request) -> web.StreamResponse:
        """A blocked task counts as done, with nothing to hand on (the goal service's Skip)."""
        return await self._task_button(request, "skip")

    async def _task_button(self, request: web.Request, verb: str) -> web.StreamResponse:
        operator = session_of(request).operator
        services = self._services
        task_id = request.match_info["id"]
        task = await services.goals.ledger.task(task_id)
        if task is None:
            raise web.HTTPNotFound(text="No such task.")
        try:
            if verb == "retry":
                await services.goals.retry(task_id, operator)
                self._channel.note(operator, f"Retrying task {task.title}.")
            else:
                await services.goals.skip(task_id, operator)
                self._channel.note(operator, f"Skipped task {task.title}.")
            await services.auth.record(operator, f"web.{verb}", {"task_id": task_id, "goal_id": task.goal_id})
        except TransitionRefused:
            self._channel.note(operator, "That task is not blocked any more; nothing was changed.")
        services.wake_tasks()
        raise self._back(await _back_to(request, task.goal_id))

    async def cancel(self, request: web.Request) -> web.StreamResponse:
        """Cancel a goal: its unfinished tasks and the cards they wait on (the goal service's Cancel)."""
        operator = session_of(request).operator
        services = self._services
        goal = await services.goals.ledger.goal(request.match_info["id"])
        if goal is None:
            raise web.HTTPNotFound(text="No such goal.")
        if await services.goals.cancel(goal.id, operator):
            self._channel.note(operator, f"Cancelled the goal {goal.text[:80]}.")
            await services.auth.record(operator, "web.cancel", {"goal_id": goal.id})
        else:
            self._channel.note(operator, f"That goal is already {goal.status}; nothing was changed.")
        services.wake_tasks()
        raise self._back(await _back_to(request, goal.id))


async def _back_to(request: web.Request, goal_id: str) -> str:
    """Where a goal button's form came from: the goal's page, or the board (nothing else: no open redirect)."""
    return f"/goals/{goal_id}" if (await request.post()).get("back") == "goal" else "/goals"
