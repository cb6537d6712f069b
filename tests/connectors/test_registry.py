"""The registry on its own, built from real connectors (publish configured, email and Stripe not) and the
MCP family over a real MCP server: every kind by name, the tools the model is offered, and what changes
when a family's tools do."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from connectors import email, publish, stripe_invoices
from connectors.base import ActionError, ActionKind, Deps
from connectors.mcp.family import McpFamily
from connectors.publish import PublishSettings
from connectors.registry import Registry
from connectors.settings import SMTPSettings
from connectors.stripe_settings import StripeSettings
from memory.db import open_database
from memory.mcp_trust import McpTrustStore
from tests.connectors.conftest import connected_hub

DEPS = Deps(records=None, currency="usd")
POSTS = PublishSettings(webhook_url="http://127.0.0.1:9/hook", webhook_secret="whsec-registry-test")


def kinds() -> list[ActionKind[Any]]:
    return [
        *publish.connector(POSTS, DEPS),
        *email.connector(SMTPSettings(), DEPS),
        *stripe_invoices.connector(StripeSettings(), DEPS),
    ]


def offered(registry: Registry) -> list[str]:
    return [schema["function"]["name"] for schema in registry.tool_schemas()]


def test_every_kind_by_name_and_only_configured_ones_offered_to_the_model() -> None:
    registry = Registry(kinds())
    assert registry.names() == ["publish.post", "email.send", "invoice.send", "invoice.void"]
    assert registry.kind("invoice.void").name == "invoice.void"
    # Email and Stripe are not configured: their tools are known (for settings and skills), not offered.
    assert offered(registry) == ["publish_post"]
    assert registry.tool_names() == ["publish_post", "send_email", "send_invoice"]
    assert registry.for_tool("send_invoice") is registry.kind("invoice.send") and registry.for_tool("nope") is None
    (schema,) = registry.tool_schemas()
    assert "title" not in schema["function"]["parameters"] and schema["function"]["parameters"]["properties"]
    assert registry.tool_schemas()[0] is schema  # built once: token estimates are kept by identity
    assert [k.name for k in registry.commands()] == ["publish.post", "email.send", "invoice.send"]
    assert registry.secrets() == ["whsec-registry-test"]


def test_an_unknown_kind_and_a_kind_declared_twice_are_refused() -> None:
    registry = Registry(kinds())
    with pytest.raises(ActionError, match=r"^No connector handles fax.send.$"):
        registry.kind("fax.send")
    with pytest.raises(ActionError, match="No connector handles fax.send"):
        registry.parse("fax.send", {"kind": "fax.send"})
    with pytest.raises(ValidationError):  # a stored payload that is not the kind's action
        registry.parse("publish.post", {"kind": "publish.post", "destination": "default"})
    with pytest.raises(ValueError, match="action kind publish.post is declared twice"):
        Registry([*kinds(), *publish.connector(POSTS, DEPS)])


async def test_a_familys_tools_are_offered_as_they_change_and_its_cards_resolve_when_unlisted(tmp_path: Path) -> None:
    async with open_database(tmp_path) as db:
        trust = McpTrustStore(db)
        await trust.setup()
        family = McpFamily(await connected_hub("calendar", tmp_path / "server"), trust)
        await family.load()
        registry = Registry(kinds(), [family])
        try:
            assert offered(registry) == ["publish_post", "mcp_cal__list_events", "mcp_cal__create_event"]
            assert registry.for_tool("mcp_cal__create_event") is not None and registry.read_tools() == []
            # The operator trusts list_events: it leaves the card tools and becomes a read, at the next call.
            listed = family.tool_for_trust("cal.list_events")
            await family.trust("cal.list_events", listed.fingerprint, "telegram:1001")
            assert offered(registry) == ["publish_post", "mcp_cal__create_event"]
            assert [r.name for r in registry.read_tools()] == ["mcp_cal__list_events"]
            # A stored card of a tool its server no longer lists still has its kind (to show, resolve, retry).
            assert registry.kind("mcp.cal.archived_tool").name == "mcp.cal.archived_tool"
            with pytest.raises(ActionError, match="No connector handles mcp.other.tool"):
                registry.kind("mcp.other.tool")
        finally:
            await registry.close()
        # The server is gone: its tools are no longer offered (the cached list moved with the family's version).
        assert family.hub.tools() == [] and offered(registry) == ["publish_post"] and registry.read_tools() == []
