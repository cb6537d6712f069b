"""The outbox runner on its own: real SQLite (the approval store), the real publish connector posting to a
real local webhook server, a liveness mark in tmp_path and a manual clock for the breakers. An approved
action is executed once with its stored key, whatever fails on the way (I2, I7)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from connectors import email, publish
from connectors.base import Action, Deps
from connectors.outbox import OutboxRunner
from connectors.publish import PostAction, PublishSettings
from connectors.registry import Registry
from connectors.settings import OutboxSettings, SMTPSettings
from memory.approvals import ApprovalRow, ApprovalStore, OutboxRow
from memory.db import Database, open_database, utcnow
from memory.liveness import Liveness
from tests.conftest import ManualClock
from tests.fakes.webhook_server import WebhookServer

KEY = "coo-0123456789abcdef01234567"
POST = PostAction(destination="default", title="Launch day", text="We are live.")
# No waiting between attempts: a retry is due at once (the backoff itself is not what these tests are about).
FAST = OutboxSettings(backoff_base_s=0, backoff_max_s=0)


@dataclass
class Outcomes:
    """The on_outcome handler: what the cards were told, in order; ``fail`` makes the next reports fail."""

    rows: list[OutboxRow] = field(default_factory=list)
    fail: bool = False

    async def __call__(self, row: OutboxRow) -> None:
        if self.fail:
            raise ConnectionError("the chat is unreachable")
        self.rows.append(row)


@dataclass
class Parts:
    runner: OutboxRunner
    store: ApprovalStore
    db: Database
    hook: WebhookServer
    outcomes: Outcomes
    clock: ManualClock
    liveness: Liveness


@asynccontextmanager
async def outbox(tmp_path: Path, settings: OutboxSettings = FAST, script: tuple[int, ...] = ()) -> AsyncIterator[Parts]:
    async with WebhookServer(script=list(script)) as hook, open_database(tmp_path) as db:
        store = ApprovalStore(db.connection)
        await store.setup(db.install)
        deps = Deps(records=None, currency="usd")
        posts = PublishSettings(webhook_url=hook.url, webhook_secret=hook.secret)
        kinds = [*publish.connector(posts, deps), *email.connector(SMTPSettings(), deps)]
        registry, outcomes, clock = Registry(kinds), Outcomes(), ManualClock()
        with Liveness(tmp_path / "live") as liveness:
            runner = OutboxRunner(store, db, registry, settings, outcomes, liveness, clock=clock)
            try:
                yield Parts(runner, store, db, hook, outcomes, clock, liveness)
            finally:
                await registry.close()


async def approve(parts: Parts, approval_id: str, action: Action, kind: str | None = None) -> None:
    """An approved card, as the approval service stores it: the action sealed by this install, then queued."""
    now = utcnow()
    payload = action.model_dump(mode="json")
    row = ApprovalRow(
        approval_id, approval_id, "telegram:1001", "operator", kind or payload["kind"], payload,
        parts.db.install.seal(action.digest()), ("operator",), "nonce", now, now + timedelta(hours=1), "pending",
        None, None, (),
    )  # fmt: skip
    assert await parts.store.create(row)
    assert await parts.store.decide(approval_id, "nonce", "approved", "operator", outbox_key=f"{KEY}-{approval_id}")


async def state(parts: Parts, approval_id: str) -> OutboxRow:
    row = await parts.store.outbox(approval_id)
    assert row is not None
    return row


async def events(parts: Parts) -> list[str]:
    return [e.kind for e in await parts.db.events(kind=None) if e.kind.startswith("action.")]


async def test_an_approved_post_is_delivered_once_with_its_key_and_reported_once(tmp_path: Path) -> None:
    async with outbox(tmp_path) as parts:
        await approve(parts, "ap-1", POST)
        assert await parts.runner.run_once()
        assert not await parts.runner.run_once()  # nothing else is due: no second post
        row = await state(parts, "ap-1")
        (got,) = parts.hook.received
        assert got.key == f"{KEY}-ap-1" and got.signature_ok and got.body["title"] == "Launch day"
        assert row.state == "sent" and row.attempts == 1 and row.external_id == "https://blog.example.org/post-1"
        assert [r.state for r in parts.outcomes.rows] == ["sent"]
        assert await parts.store.unreported() == []
        assert await events(parts) == ["action.sent"]


async def test_an_action_changed_after_its_approval_fails_and_nothing_is_sent(tmp_path: Path) -> None:
    async with outbox(tmp_path) as parts:
        await approve(parts, "ap-1", POST)
        changed = POST.model_copy(update={"text": "Send the customer list to x@evil.test"})
        await parts.db.connection.execute(
            "UPDATE outbox SET action = ? WHERE approval_id = 'ap-1'", (json.dumps(changed.model_dump(mode="json")),)
        )
        await parts.db.connection.commit()
        assert await parts.runner.run_once()
        row = await state(parts, "ap-1")
        assert row.state == "failed" and row.detail == "the stored action does not match its approved digest"
        assert parts.hook.received == [] and [r.detail for r in parts.outcomes.rows] == [row.detail]


async def test_a_row_no_connector_handles_fails_with_its_kind_named(tmp_path: Path) -> None:
    async with outbox(tmp_path) as parts:
        await approve(parts, "ap-1", POST, kind="fax.send")
        assert await parts.runner.run_once()
        row = await state(parts, "ap-1")
        assert (row.state, row.detail) == ("failed", "no connector for fax.send") and parts.hook.received == []


async def test_a_503_is_retried_with_the_same_key_and_posts_once(tmp_path: Path) -> None:
    async with outbox(tmp_path, script=(503,)) as parts:
        await approve(parts, "ap-1", POST)
        assert await parts.runner.run_once()
        retry = await state(parts, "ap-1")
        assert (retry.state, retry.attempts) == ("queued", 1) and "HTTP 503" in retry.detail
        assert parts.outcomes.rows == []  # not an outcome yet: the card keeps saying it is sending
        assert await parts.runner.run_once()
        row = await state(parts, "ap-1")
        assert (row.state, row.attempts) == ("sent", 2)
        assert [r.status for r in parts.hook.received] == [503, 201]
        assert {r.key for r in parts.hook.received} == {f"{KEY}-ap-1"} and len(parts.hook.posts) == 1
        assert await events(parts) == ["action.retry", "action.sent"]


async def test_a_resumable_action_out_of_attempts_is_unknown_never_failed(tmp_path: Path) -> None:
    async with outbox(tmp_path, OutboxSettings(max_attempts=1), script=(503,)) as parts:
        await approve(parts, "ap-1", POST)
        assert await parts.runner.run_once()
        row = await state(parts, "ap-1")
        assert row.state == "unknown" and "gave up after 1 attempts; it may have happened" in row.detail


async def test_the_breaker_opens_defers_the_next_row_then_lets_one_probe_through(tmp_path: Path) -> None:
    settings = FAST.model_copy(update={"breaker_failures": 2, "breaker_cooldown_s": 60.0})
    async with outbox(tmp_path, settings, script=(503, 503)) as parts:
        await approve(parts, "ap-1", POST)
        assert await parts.runner.run_once() and await parts.runner.run_once()
        assert parts.runner.breakers["publish.post"].state == "open"
        assert await parts.runner.run_once()  # claimed, and put back: the breaker is open
        deferred = await state(parts, "ap-1")
        assert len(parts.hook.received) == 2 and deferred.state == "queued" and deferred.attempts == 2
        assert deferred.next_attempt_at > utcnow() + timedelta(seconds=50)  # back after the cooldown
        assert await events(parts) == ["action.retry", "action.breaker_open", "action.retry", "action.deferred"]
        # The cooldown passes: the breaker's clock moves, and the row's retry time arrives.
        parts.clock.advance(61)
        await parts.db.connection.execute("UPDATE outbox SET next_attempt_at = ?", (utcnow().isoformat(),))
        await parts.db.connection.commit()
        assert await parts.runner.run_once()
        assert (await state(parts, "ap-1")).state == "sent" and parts.runner.breakers["publish.post"].state == "closed"
        assert [r.status for r in parts.hook.received] == [503, 503, 201]


async def test_rows_a_dead_process_left_running_are_resumed_or_shown_unknown(tmp_path: Path) -> None:
    mail = email.EmailAction(from_addr="coo@example.org", to=("ana@example.org",), subject="Hello", body="Hi Ana")
    async with outbox(tmp_path) as parts:
        await approve(parts, "ap-post", POST)
        await approve(parts, "ap-mail", mail)
        dead = "4242-deadbeef"  # a process that left no liveness mark
        assert await parts.store.claim_due(utcnow(), dead) and await parts.store.claim_due(utcnow(), dead)
        recovered = await parts.runner.recover()
        # The mail server may have the mail: its outcome is unknown, shown, never resent by itself.
        assert [(r.approval_id, r.state) for r in recovered] == [("ap-mail", "unknown")]
        assert [(r.approval_id, r.state) for r in parts.outcomes.rows] == [("ap-mail", "unknown")]
        # The post's destination dedupes on the key: it is completed with the same one.
        assert (await state(parts, "ap-post")).state == "queued"
        assert await parts.runner.run_once() and not await parts.runner.run_once()
        assert [r.key for r in parts.hook.received] == [f"{KEY}-ap-post"]
        assert (await state(parts, "ap-mail")).state == "unknown"


async def test_a_row_this_live_process_is_running_is_left_alone_by_recover(tmp_path: Path) -> None:
    async with outbox(tmp_path) as parts:
        await approve(parts, "ap-1", POST)
        assert await parts.store.claim_due(utcnow(), parts.liveness.owner)
        assert await parts.runner.recover() == []
        assert (await state(parts, "ap-1")).state == "running"


async def test_an_outcome_the_chat_did_not_take_is_reported_again_on_the_next_start(tmp_path: Path) -> None:
    async with outbox(tmp_path) as parts:
        await approve(parts, "ap-1", POST)
        parts.outcomes.fail = True
        assert await parts.runner.run_once()
        assert (await state(parts, "ap-1")).state == "sent" and parts.outcomes.rows == []
        assert [r.approval_id for r in await parts.store.unreported()] == ["ap-1"]
        parts.outcomes.fail = False
        await parts.runner.recover()
        assert [(r.approval_id, r.state) for r in parts.outcomes.rows] == [("ap-1", "sent")]
        assert await parts.store.unreported() == [] and len(parts.hook.received) == 1
