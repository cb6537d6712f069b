"""The signed-webhook publish connector against a real local HTTP server that verifies what it gets."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import date
from typing import Any

import pytest
from pydantic import ValidationError

from connectors.base import ActionError, Context, Deps, PermanentError, TemporaryError
from connectors.publish import PostAction, PublishArgs, PublishPost, PublishSettings, connector, sign
from tests.fakes.smtp_server import free_port
from tests.fakes.webhook_server import WebhookServer

KEY = "coo-0123456789abcdef01234567"
CTX = Context(records=None, currency="usd", today=date(2026, 11, 25))


def kind(**settings: Any) -> PublishPost:
    (found,) = connector(PublishSettings.model_validate(settings), Deps(records=None, currency="usd"))
    assert isinstance(found, PublishPost)
    return found


def post(**kw: Any) -> PostAction:
    fields: dict[str, Any] = {"destination": "default", "title": "Launch day", "text": "We are live. Ünïcødé ✓"}
    fields.update(kw)
    return PostAction.model_validate(fields)


async def test_delivers_one_signed_post_with_the_idempotency_key() -> None:
    async with WebhookServer() as hook:
        publish = kind(webhook_url=hook.url, webhook_secret=hook.secret)
        done = await publish.execute(post(tags=("News", "launch", "news")), KEY)
    (got,) = hook.received
    assert got.signature_ok and got.key == KEY and got.status == 201
    expected = {"title": "Launch day", "text": "We are live. Ünïcødé ✓", "tags": ["news", "launch"]}
    assert got.body == {**expected, "idempotency_key": KEY}
    assert done.external_id == "https://blog.example.org/post-1" and done.detail.startswith("to default")


async def test_5xx_is_retried_with_the_same_key_and_posts_once() -> None:
    async with WebhookServer(script=[503]) as hook:
        publish = kind(webhook_url=hook.url, webhook_secret=hook.secret)
        with pytest.raises(TemporaryError, match="HTTP 503"):
            await publish.execute(post(), KEY)
        await publish.execute(post(), KEY)
        await publish.execute(post(), KEY)  # a replay after an unknown outcome: the same post, by its key
    assert [r.status for r in hook.received] == [503, 201, 201]
    assert {r.key for r in hook.received} == {KEY} and len(hook.posts) == 1


async def test_429_is_retried_with_the_same_key_and_posts_once() -> None:
    async with WebhookServer(script=[429]) as hook:
        publish = kind(webhook_url=hook.url, webhook_secret=hook.secret)
        with pytest.raises(TemporaryError, match="HTTP 429"):
            await publish.execute(post(), KEY)
        await publish.execute(post(), KEY)
    assert [r.status for r in hook.received] == [429, 201]
    assert {r.key for r in hook.received} == {KEY} and len(hook.posts) == 1


async def test_a_redirect_is_not_followed_and_fails_with_the_reason() -> None:
    async with WebhookServer(script=[307]) as hook:
        publish = kind(webhook_url=hook.url, webhook_secret=hook.secret)
        with pytest.raises(PermanentError, match="redirect \\(HTTP 307\\); redirects are not followed"):
            await publish.execute(post(), KEY)
    assert [r.path for r in hook.received] == ["/hook"]  # nothing went to the Location


async def test_4xx_is_permanent_and_an_unreachable_destination_temporary() -> None:
    async with WebhookServer() as hook:
        wrong_secret = kind(webhook_url=hook.url, webhook_secret="not-the-secret")
        with pytest.raises(PermanentError, match="refused the post \\(HTTP 401\\)"):
            await wrong_secret.execute(post(), KEY)
    assert hook.posts == {}
    gone = kind(webhook_url=f"http://127.0.0.1:{free_port()}/hook", webhook_secret="s")
    with pytest.raises(TemporaryError, match="unreachable"):
        await gone.execute(post(), KEY)


async def test_a_destination_removed_from_the_settings_is_refused_at_execution() -> None:
    publish = kind(destinations={"blog": {"url": "http://127.0.0.1:9/x", "secret": "s"}})
    with pytest.raises(PermanentError, match="'default' is no longer configured"):
        await publish.execute(post(), KEY)


async def test_the_model_names_a_destination_and_never_supplies_a_url() -> None:
    publish = kind(
        destinations={
            "blog": {"url": "https://blog.example.org/hook", "secret": "a"},
            "news": {"url": "https://news.example.org/hook", "secret": "b"},
        }
    )
    assert "blog, news" in (publish.tool.description if publish.tool else "")
    ok = await publish.from_tool(PublishArgs(destination="news", title="T", text="Body"), CTX)
    assert ok.destination == "news"
    for destination in ("https://evil.example.com/hook", "http://127.0.0.1:8080/", "blog ", "elsewhere"):
        with pytest.raises(ActionError, match="is not a configured destination; destinations: blog, news"):
            await publish.from_tool(PublishArgs(destination=destination, title="T", text="Body"), CTX)


async def test_the_command_picks_the_only_destination_or_a_named_one() -> None:
    single = kind(webhook_url="https://hooks.example.org/x", webhook_secret="s")
    action = await single.from_command("Launch day | We are live.\nSecond line.", CTX)
    assert (action.destination, action.title, action.text) == ("default", "Launch day", "We are live.\nSecond line.")
    several = kind(
        destinations={"blog": {"url": "https://a/x", "secret": "a"}, "news": {"url": "https://b/x", "secret": "b"}}
    )
    assert (await several.from_command("@news Hello | Text", CTX)).destination == "news"
    with pytest.raises(ActionError, match="'default' is not a configured destination; destinations: blog, news"):
        await several.from_command("Hello | Text", CTX)
    for bad in ("no bar", "| text only", "Title |  "):
        with pytest.raises(ActionError, match="Usage: /post"):
            await single.from_command(bad, CTX)


async def test_edit_changes_title_tags_and_text_and_bad_edits_say_why() -> None:
    publish = kind(webhook_url="https://hooks.example.org/x", webhook_secret="s")
    action = post()
    edited = await publish.edit(action, "title=Launch week\ntags=a, B\ntext=Line one\nline two", CTX)
    assert (edited.title, edited.tags, edited.text) == ("Launch week", ("a", "b"), "Line one\nline two")
    assert (await publish.edit(action, "Just a new text", CTX)).text == "Just a new text"
    with pytest.raises(ActionError, match="could not read that edit"):
        await publish.edit(action, "title=New\ndestination=https://evil.example.com", CTX)
    with pytest.raises(ActionError, match="not valid"):
        await publish.edit(action, "title=   ", CTX)


def test_settings_need_a_secret_and_an_http_url() -> None:
    with pytest.raises(ValidationError, match="WEBHOOK_SECRET is required"):
        PublishSettings(webhook_url="https://x.example.org/hook")
    with pytest.raises(ValidationError, match="must be an http"):
        PublishSettings(webhook_url="ftp://x.example.org/hook", webhook_secret="s")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="must be an http"):
        PublishSettings.model_validate({"destinations": {"blog": {"url": "file:///etc/passwd", "secret": "s"}}})
    assert kind(webhook_url="https://x.example.org/h", webhook_secret="s3cr3t").secrets() == ["s3cr3t"]
    assert kind().configured is False


def test_signature_is_hmac_sha256_of_the_raw_body() -> None:
    body = json.dumps({"a": 1}).encode()
    assert sign("k", body) == hmac.new(b"k", body, hashlib.sha256).hexdigest()
    assert sign("k", body) != sign("other", body) and sign("k", body) != sign("k", body + b" ")
