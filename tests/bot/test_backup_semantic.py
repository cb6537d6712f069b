"""``coo import`` rebuilding semantic memory from an export's lines (bot/backup_semantic.py): remembered
notes and the operator's chat messages, minus what was forgotten, re-embedded through the configured
endpoint (the fake OpenAI server) into a staging index; a note the index refuses costs no other."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from bot.backup_semantic import memories_of, rebuild_semantic
from memory.event_log import EventLine
from memory.notes import NoteLine
from tests.conftest import llm_settings, make_settings
from tests.fakes.openai_api import FakeOpenAI

AT = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def event(event_id: int, event_kind: str, **payload: Any) -> EventLine:
    at = AT + timedelta(minutes=event_id)
    return EventLine(
        id=event_id, at=at, actor="telegram:1001", session="telegram:1001", kind=event_kind, payload=payload
    )


def note(ref: str, text: str) -> NoteLine:
    return NoteLine(ref=ref, scope="default", source="remember:telegram", text=text, at=AT)


EVENTS = [
    event(1, "message.in", kind="message", text="Globex signed the maintenance contract"),
    event(2, "message.in", kind="command", text="/remember the studio closes in August"),
    event(3, "message.in", kind="message", text="my old phone number is 555 0100"),
    event(4, "memory.forgotten", ref="msg-3"),
    event(5, "message.in", kind="message", text="Initech wants a quote", redacted=True),
]
NOTES = [note("n-1", "Acme pays invoices net 45"), note("n-2", "the studio closes in August")]


def test_what_memory_held_is_notes_and_chat_minus_forgotten_and_redacted() -> None:
    memories = memories_of(EVENTS, [NOTES[0]], "default", "UTC")
    assert [m.ref for m in memories] == ["n-1", "msg-1"]  # oldest first
    assert "Globex signed the maintenance contract" in memories[1].text


async def test_the_index_is_rebuilt_through_the_configured_endpoint(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    settings = make_settings(tmp_path, llm=llm_settings(fake_llm), embeddings={"provider": "openai"})
    written = await rebuild_semantic(tmp_path / "staging", EVENTS, NOTES, settings)
    embedded = [t for r in fake_llm.requests if r["_path"] == "/v1/embeddings" for t in _inputs(r)]
    assert written == 3
    assert (tmp_path / "staging" / "lancedb").is_dir()
    assert any("Acme pays invoices net 45" in t for t in embedded)
    assert not any("555 0100" in t or "Initech" in t for t in embedded)


async def test_a_note_the_index_refuses_is_left_out_and_the_rest_written(
    tmp_path: Path, fake_llm: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(tmp_path, llm=llm_settings(fake_llm), embeddings={"provider": "openai"})
    refused = note("n-bad", "\x00\x00")  # nothing left once cleaned: the index takes no empty note
    written = await rebuild_semantic(tmp_path / "staging", [], [NOTES[0], refused, NOTES[1]], settings)
    assert written == 2
    assert any(r.getMessage().startswith("semantic memory refused n-bad") for r in caplog.records)


async def test_nothing_to_index_opens_nothing(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    settings = make_settings(tmp_path, llm=llm_settings(fake_llm), embeddings={"provider": "openai"})
    assert await rebuild_semantic(tmp_path / "staging", EVENTS[1:2], [], settings) == 0
    assert fake_llm.requests == [] and not (tmp_path / "staging").exists()


def _inputs(request: dict[str, Any]) -> list[str]:
    return request["input"] if isinstance(request["input"], list) else [request["input"]]
