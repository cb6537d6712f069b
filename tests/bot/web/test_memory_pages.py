"""The Memory page built directly (tests/bot/web/console_parts.py): records with every version and what changed,
remembered notes escaped, and Forget, which runs the chat's ``/forget`` as the signed-in operator and only for a
plain note reference."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.web.memory_pages import FORGET_OFF
from memory.notes import StoredNote
from tests.bot.web.console_parts import Web, console_parts
from tests.fakes.openai_api import FakeOpenAI
from tests.graph.parts import OPERATOR

NOTE = StoredNote(
    "n-1", "business", "chat", "<script>x()</script> Ana prefers mornings", datetime(2026, 3, 1, tzinfo=UTC)
)


async def remembered(console: Web) -> None:
    await console.chat.parts.stores.notes.add(NOTE)


@pytest.fixture
async def console(tmp_path: Path, fake_llm: FakeOpenAI) -> AsyncIterator[Web]:
    async with console_parts(tmp_path, fake_llm, forget=True) as built:
        await remembered(built)
        yield built


async def test_a_record_shows_every_version_and_what_changed(console: Web) -> None:
    records = console.chat.parts.stores.records
    ana = await records.upsert("contact", {"name": "Ana Silva", "emails": ["ana@lumen.example"]}, OPERATOR)
    await records.upsert("contact", {"company": "Lumen"}, OPERATOR, record_id=ana.id)
    overview = await (await console.get("/memory")).text()
    history = await console.get(f"/memory/contact/{ana.id}")
    text = await history.text()
    assert "Ana Silva (Lumen)" in overview and "&lt;script&gt;x()&lt;/script&gt; Ana prefers mornings" in overview
    assert history.status == 200 and text.count("<li>company: <del>(none)</del> → <ins>Lumen</ins></li>") == 1


@pytest.mark.parametrize("path", ["/memory/contact/nosuch", "/memory/secrets/anything"])
async def test_an_unknown_record_or_kind_is_not_found(console: Web, path: str) -> None:
    assert (await console.get(path)).status == 404


async def test_forget_asks_once_then_runs_the_chat_command(console: Web) -> None:
    asked = await console.get("/memory/forget", ref="n-1")
    done = await console.post("/memory/forget", ref="n-1")
    assert asked.status == 200 and "&lt;script&gt;x()" in await asked.text()
    assert (done.status, done.headers["Location"]) == (303, "/memory")
    assert console.forgotten == ["n-1"] and console.services.channel.take(OPERATOR) == ["Forgot n-1."]


@pytest.mark.parametrize("ref", ["", "n-1 n-2", "n-1\nDROP", "x" * 65])
async def test_forget_of_anything_but_one_plain_reference_runs_nothing(console: Web, ref: str) -> None:
    answer = await console.post("/memory/forget", ref=ref)
    assert answer.status == 400 and "Choose a note to forget; nothing was changed." in await answer.text()
    assert console.forgotten == []


async def test_an_unknown_note_has_no_confirmation(console: Web) -> None:
    answer = await console.get("/memory/forget", ref="n-404")
    assert answer.status == 404 and "There is no remembered note n-404" in await answer.text()


async def test_without_semantic_memory_forget_is_refused(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    async with console_parts(tmp_path, fake_llm) as console:
        await remembered(console)
        answer = await console.post("/memory/forget", ref="n-1")
        assert answer.status == 409 and FORGET_OFF in await answer.text()
        assert [n.ref for n in await console.chat.parts.stores.notes.all()] == ["n-1"]
