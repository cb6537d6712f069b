"""The Timeline page and its export built directly (tests/bot/web/console_parts.py): filters narrow the event log,
a decision reads as who decided which card with its digest, a bad or hostile filter value changes nothing, and
the export is exactly the filtered view as JSON Lines."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.bot.web.console_parts import Web, console_parts
from tests.fakes.openai_api import FakeOpenAI
from tests.graph.parts import OPERATOR


@pytest.fixture
async def console(tmp_path: Path, fake_llm: FakeOpenAI) -> AsyncIterator[Web]:
    async with console_parts(tmp_path, fake_llm) as built:
        db = built.chat.parts.stores.db
        await db.append_event("message.in", OPERATOR, {"text": "<img src=x onerror=alert(1)> hello"})
        await db.append_event("note.kept", OPERATOR, {"text": "the second"})
        yield built


async def test_a_decision_reads_as_who_decided_which_card_with_its_digest(console: Web) -> None:
    row = await console.chat.email_card("Proposal ready")
    await console.chat.ui.on_press(console.chat.inbound("", kind="callback", callback_data=f"ap:{row.id}:{row.nonce}"))
    page = await (await console.get("/timeline", kind="approval.decided")).text()
    assert "<strong>Approved</strong> by telegram:1001: email to ana@example.org: &#34;Proposal ready&#34;" in page
    assert f'<code class="digest">{row.digest}</code>' in page
    assert "message.in" not in page.split("<tbody>", 1)[-1]  # the kind filter held


async def test_outside_text_in_an_event_is_shown_escaped(console: Web) -> None:
    page = await (await console.get("/timeline")).text()
    assert "<img src=x" not in page and "&lt;img src=x onerror=alert(1)&gt; hello" in page


@pytest.mark.parametrize("kind", ["x' OR '1'='1", "message.in'; DROP TABLE events; --"])
async def test_a_filter_value_with_sql_is_only_a_value(console: Web, kind: str) -> None:
    answer = await console.get("/timeline", kind=kind)
    assert answer.status == 200 and "the second" not in await answer.text()
    assert len(await console.chat.parts.stores.db.events("note.kept")) == 1  # the log is whole


async def test_the_export_is_the_filtered_view_line_for_line_and_is_recorded(console: Web) -> None:
    answer = await console.get("/timeline/export", kind="note.kept")
    lines = [json.loads(line) for line in (await answer.text()).splitlines()]
    assert answer.status == 200 and answer.headers["Content-Type"].startswith("application/jsonl")
    assert [(line["kind"], line["payload"]) for line in lines] == [("note.kept", {"text": "the second"})]
    assert [e["events"] for e in await console.events("web.export")] == [1]


async def test_a_bad_filter_is_named_on_the_page_and_refuses_the_export(console: Web) -> None:
    page = await console.get("/timeline", date="yesterday-ish", kind="note.kept")
    export = await console.get("/timeline/export", date="yesterday-ish")
    assert page.status == 200 and "Not applied:" in await page.text() and "the second" in await page.text()
    assert export.status == 400 and "Nothing was exported." in await export.text()
    assert await console.events("web.export") == []
