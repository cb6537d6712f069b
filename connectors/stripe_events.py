"""Stripe events in: polled from ``GET /v1/events`` with a stored cursor (the default, no public URL), or
received as signed webhooks. Either way an event is stored (once per event id) before Stripe is told it
arrived: before the cursor moves past it, before the webhook's 2xx (I3). What the events mean for the
business is decided elsewhere (``graph.receivables``); this module is protocol only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import stripe
from aiohttp import web

from connectors.stripe_account import new_client
from connectors.stripe_settings import StripeSettings
from memory.db import utcnow
from memory.stripe_events import StripeEvent, StripeEventStore

log = logging.getLogger(__name__)

EVENT_TYPES = (
    "invoice.paid",
    "invoice.payment_failed",
    "invoice.voided",
    "invoice.marked_uncollectible",
    "charge.refunded",
)
WEBHOOK_PATH = "/stripe/webhook"
WEBHOOK_TOLERANCE_S = 300
# The first poll (no cursor yet) looks this far back: a payment made just before the first start counts.
FIRST_LOOK_BACK = timedelta(days=1)
PAGE = 100


def as_event(event: Any) -> StripeEvent:
    """An SDK event (polled or from a webhook) as stored: the object it is about, as plain JSON."""
    obj = event.data.object
    data = obj.to_dict(for_json=True) if hasattr(obj, "to_dict") else dict(obj)
    return StripeEvent(str(event.id), str(event.type), int(event.created), str(data.get("id", "")), data)


class StripeEventPoller:
    """Reads new events from Stripe and stores them; the cursor is the newest event stored."""

    def __init__(
        self, settings: StripeSettings, store: StripeEventStore, clock: Callable[[], datetime] = utcnow
    ) -> None:
        self._settings = settings
        self._store = store
        self._clock = clock
        self._http: stripe.HTTPXClient | None = None
        self._client: stripe.StripeClient | None = None

    def _stripe(self) -> stripe.StripeClient:
        assert self._settings.api_key is not None, "polling needs COO_STRIPE__API_KEY"
        if self._client is None:
            self._http, self._client = new_client(self._settings)
        return self._client

    async def poll(self) -> int:
        """Fetch every event newer than the cursor, store them and move the cursor together. Returns how
        many were new. A failure (Stripe down) stores nothing and leaves the cursor: the next poll retries."""
        cursor = await self._store.cursor()
        since = int(cursor["created"]) if cursor else int((self._clock() - FIRST_LOOK_BACK).timestamp())
        seen = str(cursor["id"]) if cursor else None
        newest_first: list[StripeEvent] = []
        after: str | None = None
        while True:
            params: dict[str, Any] = {"types": list(EVENT_TYPES), "created": {"gte": since}, "limit": PAGE}
            if after:
                params["starting_after"] = after
            page = await self._stripe().v1.events.list_async(params=params)  # type: ignore[arg-type]
            events = [as_event(e) for e in page.data]
            reached = seen is not None and any(e.id == seen for e in events)
            newest_first += [e for e in events if e.id != seen]
            if reached or not page.has_more or not events:
                break
            after = events[-1].id
        if not newest_first:
            return 0
        top = newest_first[0]
        return await self._store.add(newest_first[::-1], {"id": top.id, "created": top.created})

    async def close(self) -> None:
        """Close the HTTP client (safe twice)."""
        http, self._http, self._client = self._http, None, None
        if http is not None:
            await http.close_async()


class StripeWebhook:
    """``POST /stripe/webhook`` on ``COO_STRIPE__WEBHOOK_LISTEN``: the signature is checked with the SDK
    (300 s tolerance), the event stored (once per id), then 200. A bad signature gets 400 and stores nothing."""

    def __init__(self, settings: StripeSettings, store: StripeEventStore, on_stored: Callable[[], None]) -> None:
        assert settings.webhook_secret is not None and settings.webhook_listen
        self._secret = settings.webhook_secret.get_secret_value()
        host, _, port = settings.webhook_listen.rpartition(":")
        self._host, self._port = host.strip("[]"), int(port)
        self._store = store
        self._on_stored = on_stored
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        """Listen."""
        app = web.Application(client_max_size=1024 * 1024)
        app.router.add_post(WEBHOOK_PATH, self.handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, self._host, self._port).start()

    async def handle(self, request: web.Request) -> web.Response:
        """One delivery: verified, stored, then answered."""
        body = await request.read()
        try:
            event = stripe.Webhook.construct_event(
                body.decode("utf-8"), request.headers.get("Stripe-Signature"), self._secret, WEBHOOK_TOLERANCE_S
            )
        except (ValueError, UnicodeDecodeError, stripe.SignatureVerificationError) as exc:
            log.warning("stripe webhook refused: %s", type(exc).__name__)
            return web.json_response({"error": "invalid signature or payload"}, status=400)
        if event.type in EVENT_TYPES:
            await self._store.add([as_event(event)])  # before the 2xx: an event acknowledged is never lost
            self._on_stored()
        return web.json_response({"received": True})

    async def stop(self) -> None:
        """Stop listening (safe twice)."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
