"""Stripe events in (I3): polled with a stored cursor through the real SDK against the fake Stripe API, or
delivered as signed webhooks to the real listener; stored once per event id before Stripe is told."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
import stripe

from connectors.stripe_events import EVENT_TYPES, WEBHOOK_PATH, StripeEventPoller, StripeWebhook
from connectors.stripe_settings import StripeSettings
from memory.control import ControlStore
from memory.db import open_database
from memory.stripe_events import StripeEventStore
from tests.fakes.smtp_server import free_port
from tests.fakes.stripe_api import JSON, FakeStripe, made_up_webhook_secret

SECRET = made_up_webhook_secret()


def invoice(number: str, total: int = 120000) -> JSON:
    return {"id": f"in_{number}", "object": "invoice", "number": number, "currency": "usd", "amount_paid": total}


@asynccontextmanager
async def events_store(tmp_path: Path) -> AsyncIterator[StripeEventStore]:
    async with open_database(tmp_path) as db:
        await ControlStore(db).setup()
        store = StripeEventStore(db)
        await store.setup()
        yield store


@asynccontextmanager
async def poller(fake: FakeStripe, store: StripeEventStore) -> AsyncIterator[StripeEventPoller]:
    settings = StripeSettings(api_key=fake.api_key, api_base_url=fake.api_base_url)
    polling = StripeEventPoller(settings, store)
    try:
        yield polling
    finally:
        await polling.close()


async def test_poll_stores_new_events_once_and_moves_the_cursor_with_them(tmp_path: Path) -> None:
    async with FakeStripe() as fake, events_store(tmp_path) as store, poller(fake, store) as polling:
        fake.record_event("invoice.paid", invoice("INV-1"))
        fake.record_event("invoice.sent", invoice("INV-1"))  # not a type we read
        fake.record_event("invoice.voided", invoice("INV-2"))
        assert await polling.poll() == 2
        assert [e.type for e in await store.unhandled()] == ["invoice.paid", "invoice.voided"]
        cursor = await store.cursor()
        assert cursor is not None and cursor["id"] == fake.events[2]["id"]
        assert await polling.poll() == 0  # nothing new: nothing stored twice
        later = fake.record_event("charge.refunded", {"id": "ch_1", "object": "charge", "invoice": "in_INV-1"})
        assert await polling.poll() == 1
        assert (await store.cursor() or {})["id"] == later["id"]
        assert await store.count() == 3
        # every list asked Stripe for the five types only
        sent_types = fake.calls("events.list")[-1].params["types"]
        assert sorted(sent_types) == sorted(EVENT_TYPES)


async def test_poll_pages_through_more_events_than_one_page(tmp_path: Path) -> None:
    async with FakeStripe() as fake, events_store(tmp_path) as store, poller(fake, store) as polling:
        for i in range(250):
            fake.record_event("invoice.paid", invoice(f"INV-{i}"))
        assert await polling.poll() == 250
        numbers = [e.data["number"] for e in await store.unhandled(limit=1000)]
        assert numbers == [f"INV-{i}" for i in range(250)]  # oldest first
        assert len(fake.calls("events.list")) == 3
        fake.record_event("invoice.paid", invoice("INV-250"))
        assert await polling.poll() == 1
        assert len(fake.calls("events.list")) == 4  # the cursor is on the first page: one request


async def test_a_failed_poll_stores_nothing_and_leaves_the_cursor(tmp_path: Path) -> None:
    async with FakeStripe() as fake, events_store(tmp_path) as store, poller(fake, store) as polling:
        fake.record_event("invoice.paid", invoice("INV-1"))
        assert await polling.poll() == 1
        before = await store.cursor()
        for i in range(150):
            fake.record_event("invoice.paid", invoice(f"INV-x{i}"))
        fake.fail_next("events.list", 500)  # Stripe is down: nothing stored, the cursor stays
        with pytest.raises(stripe.APIError):
            await polling.poll()
        assert await store.cursor() == before and await store.count() == 1
        assert await polling.poll() == 150


@asynccontextmanager
async def webhook(store: StripeEventStore, woken: list[int]) -> AsyncIterator[str]:
    port = free_port()
    settings = StripeSettings(
        api_key="sk_test_x",
        webhook_secret=SECRET,  # type: ignore[arg-type]
        webhook_listen=f"127.0.0.1:{port}",
    )
    hook = StripeWebhook(settings, store, lambda: woken.append(1))
    await hook.start()
    try:
        yield f"http://127.0.0.1:{port}{WEBHOOK_PATH}"
    finally:
        await hook.stop()


async def test_a_replayed_webhook_is_one_event(tmp_path: Path) -> None:
    woken: list[int] = []
    async with FakeStripe() as fake, events_store(tmp_path) as store, webhook(store, woken) as url:
        event = fake.record_event("invoice.paid", invoice("INV-7"))
        assert await fake.deliver(url, event, SECRET) == 200
        assert await fake.deliver(url, event, SECRET) == 200  # Stripe retries a delivery it did not see answered
        stored = await store.unhandled()
        assert [(e.id, e.type, e.object_id) for e in stored] == [(event["id"], "invoice.paid", "in_INV-7")]
        assert woken  # the loop is told to apply it now


@pytest.mark.parametrize("forgery", ["wrong secret", "tampered body", "no header", "too old"])
async def test_a_bad_signature_gets_400_and_nothing_is_stored(tmp_path: Path, forgery: str) -> None:
    woken: list[int] = []
    async with FakeStripe() as fake, events_store(tmp_path) as store, webhook(store, woken) as url:
        event = fake.record_event("invoice.paid", invoice("INV-8"))
        if forgery == "wrong secret":
            status = await fake.deliver(url, event, "whsec_someone_else")
        elif forgery == "too old":  # outside the 300 s tolerance: a replay of an old capture
            status = await fake.deliver(url, event, SECRET, at=int(time.time()) - 301)
        else:
            body, signature = fake.signed(event, SECRET)
            headers = {} if forgery == "no header" else {"Stripe-Signature": signature}
            if forgery == "tampered body":
                body = body.replace(b"INV-8", b"INV-9")
            async with aiohttp.ClientSession() as session, session.post(url, data=body, headers=headers) as answer:
                status = answer.status
        assert status == 400
        assert await store.count() == 0 and not woken
