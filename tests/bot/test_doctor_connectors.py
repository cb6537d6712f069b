"""`coo doctor` as a real process: the Stripe key checked against the fake Stripe API (GET /v1/balance,
nothing changed) and the publish destinations listed (nothing sent to them); no secret printed."""

from __future__ import annotations

import json
from pathlib import Path

from tests.bot.test_cli import clean_env, run_coo
from tests.fakes.stripe_api import FakeStripe
from tests.fakes.webhook_server import WebhookServer


async def test_doctor_checks_the_stripe_key_and_lists_publish_destinations(tmp_path: Path) -> None:
    async with FakeStripe() as stripe, WebhookServer() as hook:
        named = {"news": {"url": hook.url, "secret": "news-secret-123"}}
        env = clean_env(
            tmp_path,
            COO_STRIPE__API_KEY=stripe.api_key,
            COO_STRIPE__API_BASE_URL=stripe.api_base_url,
            COO_PUBLISH__WEBHOOK_URL=hook.url,
            COO_PUBLISH__WEBHOOK_SECRET=hook.secret,
            COO_PUBLISH__DESTINATIONS=json.dumps(named),
        )
        code, out, err = await run_coo(["doctor"], env, tmp_path)
        assert code == 0, out + err
        assert f"[ok]   invoice: key accepted at {stripe.api_base_url}" in out
        assert "[ok]   post: destinations: default, news" in out
        assert [r.endpoint for r in stripe.requests] == ["balance.retrieve"] and hook.received == []
        bad = {**env, "COO_STRIPE__API_KEY": "sk_test_wrong_key_000"}
        code, out, err = await run_coo(["doctor"], bad, tmp_path)
    assert code == 1
    assert "[FAIL] invoice: the key was rejected" in out
    for secret in ("sk_test_wrong_key_000", stripe.api_key, hook.secret, "news-secret-123"):
        assert secret not in out + err


async def test_doctor_says_what_to_set_for_unconfigured_connectors(tmp_path: Path) -> None:
    code, out, _ = await run_coo(["doctor"], clean_env(tmp_path), tmp_path)
    assert code == 0, out
    assert "[--]   invoice: not configured; set COO_STRIPE__API_KEY" in out
    assert "[--]   post: not configured; set COO_PUBLISH__WEBHOOK_URL and COO_PUBLISH__WEBHOOK_SECRET" in out
