"""The prompt's recall: lexical matches at once, semantic recall prepared in the background, never waited for."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from bot.runtime import open_runtime
from graph.conversation.recall import Horizon, Recalled, SessionRecall, interleave, lexical_recall, semantic_recall
from memory.db import open_database
from memory.semantic.api import Hit
from tests.conftest import QuietGate, RecordingChannel, llm_settings, make_settings, operator_message
from tests.fakes.openai_api import FakeOpenAI


class GatedMemory:
    """A semantic memory whose recall waits until the test opens the gate (a real object, not a mock)."""

    def __init__(self, hits: list[Hit]) -> None:
        self.gate = asyncio.Event()
        self.queries: list[str] = []
        self._hits = hits

    async def recall(self, query: str, k: int = 10, scope: str = "default") -> list[Hit]:
        self.queries.append(query)
        await self.gate.wait()
        return self._hits


def hit(text: str, ref: str) -> Hit:
    at = datetime(2026, 1, 5, tzinfo=UTC)
    return Hit(id=ref, ref=ref, text=text, score=1.0, at=at, source="chat:rec", scope="default")


async def test_a_prompt_never_waits_for_the_semantic_recall_and_uses_it_once_ready(tmp_path: Path) -> None:
    memory = GatedMemory([hit("Orbit Coffee pays on net 45 terms.", "msg-1")])
    async with open_database(tmp_path) as db:
        recall = SessionRecall(db, memory)  # type: ignore[arg-type]
        recall.prepare("s", "when do the espresso people pay?")
        before = await recall.for_prompt("s", "and their delivery?")  # answered while the recall is held
        memory.gate.set()
        await recall.settled("s")
        after = await recall.for_prompt("s", "and their delivery?")
        other = await recall.for_prompt("t", "and their delivery?")
        await recall.aclose()
    assert memory.queries == ["when do the espresso people pay?"]
    assert before == []
    assert [r.line for r in after] == ["[2026-01-05 chat:rec] Orbit Coffee pays on net 45 terms."]
    assert other == []  # prepared recall belongs to its conversation


async def test_only_the_newest_waiting_text_is_recalled_next(tmp_path: Path) -> None:
    # Bounded background work: per conversation one recall runs, and only the newest text waits.
    memory = GatedMemory([])
    async with open_database(tmp_path) as db:
        recall = SessionRecall(db, memory)  # type: ignore[arg-type]
        recall.prepare("s", "first")
        await asyncio.sleep(0)  # "first" is being recalled (held at the gate)
        for text in ("second", "third"):
            recall.prepare("s", text)
        memory.gate.set()
        await recall.settled("s")
        await recall.aclose()
    assert memory.queries == ["first", "third"]  # "second" was superseded before its turn


async def test_lexical_recall_finds_shared_words_and_leaves_out_forgotten_messages(tmp_path: Path) -> None:
    async with open_database(tmp_path) as db:
        kept = await db.append_event("message.in", "op", {"text": "Acme pays invoice INV-7 late."}, session="rec:1")
        gone = await db.append_event("message.in", "op", {"text": "Acme prefers calls."}, session="rec:1")
        await db.append_event("message.out", "coo", {"text": "Acme noted."}, session="rec:1")
        await db.append_event("memory.forgotten", "op", {"ref": f"msg-{gone}"}, session="rec:1")
        found = await lexical_recall(db, "What about Acme?", exclude="What about Acme?")
    assert [r.ref for r in found] == [f"msg-{kept}"]  # neither the forgotten one nor the bot's own words
    assert found[0].line.endswith("chat:rec] Acme pays invoice INV-7 late.")


def test_interleave_takes_turns_without_repeating_a_memory() -> None:
    a = [Recalled("a1", "1"), Recalled("a2", "2"), Recalled("a3", "3")]
    b = [Recalled("b2", "2"), Recalled("b4", "4")]
    assert [r.ref for r in interleave(a, b, limit=3)] == ["1", "2", "4"]


async def test_a_paraphrase_reaches_the_prompt_from_the_next_message_on(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    memory = {"semantic": True, "ingest_interval_s": 0.05}
    settings = make_settings(tmp_path, llm=llm_settings(fake_llm), memory=memory)
    fact = "Orbit Coffee pays on net 45 terms."
    async with open_runtime(settings, console=False) as rt:
        rt.dispatcher.attach(RecordingChannel("rec"))
        await rt.dispatcher.handle(operator_message(fact))
        assert rt.ingestor is not None
        await rt.ingestor.wait_idle()
        await rt.dispatcher.handle(operator_message("when do the espresso people settle up?"))
        await rt.coordinator.recall.settled("rec:1001")
        await rt.dispatcher.handle(operator_message("ok, and is that usual?"))
    first, second = (recalled(r["messages"]) for r in fake_llm.chat_requests[1:])
    assert fact not in first  # no shared word: not recalled at once
    assert fact in second  # recalled by meaning for the conversation's next message


def recalled(prompt: list[dict[str, str]]) -> str:
    """The prompt's recalled-memories section ("" when it has none)."""
    data = prompt[1]["content"] if prompt[1]["content"].startswith("Context gathered by the system") else ""
    _, found, rest = data.partition('<data source="recalled from memory')
    return rest.split("</data>")[0] if found else ""


async def test_conversations_take_turns_for_one_recall_at_a_time(tmp_path: Path) -> None:
    memory = GatedMemory([])
    async with open_database(tmp_path) as db:
        recall = SessionRecall(db, memory)  # type: ignore[arg-type]
        for session in ("a", "b", "c"):
            recall.prepare(session, f"text of {session}")
        for _ in range(5):
            await asyncio.sleep(0)
        running = list(memory.queries)
        memory.gate.set()
        for session in ("a", "b", "c"):
            await recall.settled(session)
        await recall.aclose()
    assert running == ["text of a"]  # the others waited without taking a worker thread
    assert sorted(memory.queries) == ["text of a", "text of b", "text of c"]


async def test_a_rare_word_reaches_far_back_past_many_messages_with_common_ones(tmp_path: Path) -> None:
    async with open_database(tmp_path) as db:
        fact = "Kestrel Labs signed the renewal for the café in Zürich."
        old = await db.append_event("message.in", "op", {"text": fact}, session="rec:1")
        for i in range(400):  # newer chatter sharing the fact's common words
            await db.append_event("message.in", "op", {"text": f"the renewal call {i} is signed"}, session="rec:1")
        found = await lexical_recall(db, "who signed the renewal for the zurich cafe?")
    assert found[0].ref == f"msg-{old}"  # found by its rarest words (accents as the index stores them)
    assert len(found) <= 6


async def test_the_message_a_recall_is_for_is_left_out_and_lines_show_what_was_said() -> None:
    memory = GatedMemory(
        [
            hit("[8 May 2026] operator: Orbit Coffee pays on net 45 terms.", "msg-1"),
            hit("[9 May 2026] operator: Orbit Coffee moved to Leeds.", "msg-2"),
        ]
    )
    memory.gate.set()
    found = await semantic_recall(
        memory, "Orbit Coffee pays on net 45 terms.", "default", exclude="Orbit Coffee pays on net 45 terms."
    )  # type: ignore[arg-type]
    assert [(r.ref, r.line) for r in found] == [("msg-2", "[2026-01-05 chat:rec] Orbit Coffee moved to Leeds.")]


async def test_a_recall_waits_until_no_turn_is_in_flight(tmp_path: Path) -> None:
    memory = GatedMemory([hit("Orbit Coffee pays on net 45 terms.", "msg-1")])
    memory.gate.set()
    gate = QuietGate()
    async with open_database(tmp_path) as db:
        recall = SessionRecall(db, memory, yield_to=gate)  # type: ignore[arg-type]
        recall.prepare("s", "when do the espresso people pay?")
        await asyncio.wait_for(gate.asked.wait(), 10)
        assert memory.queries == []  # the bot is answering someone: no embedding yet
        gate.open()
        await recall.settled("s")
        ready = await recall.for_prompt("s", "and their delivery?")
        await recall.aclose()
    assert memory.queries == ["when do the espresso people pay?"] and [r.ref for r in ready] == ["msg-1"]


def _prompt_for(fake: FakeOpenAI, text: str) -> str:
    """The recalled part of the prompt that answered ``text``."""
    return next(recalled(r["messages"]) for r in fake.chat_requests if r["messages"][-1]["content"] == text)


async def test_a_burst_recalls_nothing_from_the_future_in_any_chat(tmp_path: Path, fake_llm: FakeOpenAI) -> None:
    """Two chats each send two messages at once: the first message of each is answered without the
    later ones in its recalled memories (they were stored before it was answered, but said after it)."""
    earlier = "Zanzibar cloves arrive on Friday."
    burst = [
        ("1001", "When do the Zanzibar cloves arrive?"),
        ("2002", "Zanzibar cloves are late again?"),
        ("1001", "Zanzibar cloves: cancel the second crate."),
        ("2002", "Zanzibar cloves: call the shipper."),
    ]
    settings = make_settings(tmp_path, llm=llm_settings(fake_llm))
    async with open_runtime(settings, console=False) as rt:
        rt.dispatcher.attach(RecordingChannel("rec"))
        await rt.dispatcher.handle(operator_message(earlier))
        messages = [replace(operator_message(text), chat_id=chat) for chat, text in burst]
        tasks = await rt.dispatcher.accept_many(messages)  # one commit, as a platform's batch is stored
        await asyncio.gather(*(t for t in tasks if t is not None))
    first_a, first_b, second_a, second_b = (_prompt_for(fake_llm, text) for _, text in burst)
    assert earlier in first_a and earlier in first_b  # the past is recalled
    assert not any(text in first_a for _, text in burst[1:])  # nothing said after the message answered
    assert not any(text in first_b for _, text in burst[2:])
    assert burst[0][1] in first_b  # said before it in another chat of the same operator: a memory
    assert burst[0][1] in second_a and burst[1][1] in second_b


async def test_a_prepared_recall_keeps_only_what_was_said_before_the_message_answered(tmp_path: Path) -> None:
    """The prepared recall may be computed after newer messages were stored: the horizon applies to it too,
    by log position for messages and by time for other notes."""
    noon = datetime(2026, 1, 5, 12, tzinfo=UTC)
    noted = {"score": 1.0, "source": "remember:rec", "scope": "default"}
    note_before = Hit(id="n1", ref="note-1", text="Net 45.", at=noon.replace(hour=11), **noted)  # type: ignore[arg-type]
    note_after = Hit(id="n2", ref="note-2", text="Net 60.", at=noon.replace(hour=13), **noted)  # type: ignore[arg-type]
    memory = GatedMemory([hit("Orbit pays late.", "msg-4"), hit("Orbit moved.", "msg-9"), note_before, note_after])
    memory.gate.set()
    async with open_database(tmp_path) as db:
        recall = SessionRecall(db, memory)  # type: ignore[arg-type]
        recall.prepare("s", "tell me about Orbit")
        await recall.settled("s")
        everything = await recall.for_prompt("s", "and their terms?")
        bounded = await recall.for_prompt("s", "and their terms?", Horizon(7, noon))
        await recall.aclose()
    assert {r.ref for r in everything} == {"msg-4", "msg-9", "note-1", "note-2"}
    assert {r.ref for r in bounded} == {"msg-4", "note-1"}


def test_a_horizon_survives_the_turns_checkpoint() -> None:
    horizon = Horizon(42, datetime(2026, 1, 5, 12, tzinfo=UTC))
    assert Horizon.from_state(horizon.to_state()) == horizon
    assert Horizon.from_state(None) is None  # a turn checkpointed before horizons recalls as before
