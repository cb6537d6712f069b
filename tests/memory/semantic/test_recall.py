"""Recall on conversations: context at ingestion, noise, episodes and summaries, speakers, time, floors, caps.

Real LanceDB files; the small hashing embedder where vectors do not matter, the bundled model where
they do.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

import memory.semantic.ranking
from memory import Note, open_memory
from memory.semantic.embedder import MAX_EMBED_CHARS, LocalEmbedder
from memory.semantic.indexing import EMBEDDED_CONTEXT_CHARS
from memory.semantic.query import MAX_QUERY_EMBED_CHARS, TimeWindow, speakers_named, time_window
from memory.semantic.store import SemanticStore
from memory.semantic.turns import CHUNK_CHARS, asks, chunks, is_noise, parse
from tests.memory.semantic.test_semantic import HashEmbedder

DAY1 = datetime(2023, 5, 8, 13, 56, tzinfo=UTC)
DAY2 = datetime(2023, 5, 25, 9, 0, tzinfo=UTC)
DAY3 = datetime(2023, 7, 3, 18, 0, tzinfo=UTC)


def turn(text: str, at: datetime, ref: str, scope: str = "conv") -> Note:
    return Note(text, at=at, ref=ref, scope=scope)


class RecordingEmbedder(HashEmbedder):
    """Records every text it is asked to embed."""

    def __init__(self) -> None:
        super().__init__()
        self.passages: list[str] = []
        self.queries: list[str] = []

    async def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        self.passages.extend(texts)
        return await super().embed_passages(texts)

    async def embed_query(self, text: str) -> np.ndarray:
        self.queries.append(text)
        return await super().embed_query(text)


class NamingSummarizer:
    """A stand-in for a model: a summary that says how many turns it read and what the first one said."""

    name = "test/naming"

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.calls: list[list[str]] = []

    async def __call__(self, lines: Sequence[str]) -> str:
        self.calls.append(list(lines))
        if self.fail:
            raise TimeoutError("model took too long")
        return f"Model summary of {len(lines)} turns, starting with: {lines[0]}"


def test_parse_noise_and_chunks() -> None:
    assert parse("[8 May 2023] Caroline: I went to a support group.") == parse("Caroline: I went to a support group.")
    assert parse("[8 May 2023] Caroline: hi").speaker == "Caroline"
    assert parse("[8 May 2023] just a dated note").speaker == ""
    assert parse("no speaker here: really").speaker == ""
    for noise in ["ok", "1", "approve", "/approve 12", "/recall Acme", "Thanks!", "👍", "ok ok 2", "  yes.  "]:
        assert is_noise(parse(noise).body), noise
    for content in ["Acme", "approve the Acme invoice", "Lisbon!", "[1 May 2023] Ana: 45 days net"]:
        assert not is_noise(parse(content).body), content
    long = ("word " * 1000).strip()
    pieces = chunks(long)
    assert all(len(p) <= CHUNK_CHARS for p in pieces) and " ".join(p.strip() for p in pieces).split() == long.split()


def test_speakers_and_time_windows() -> None:
    speakers = {"Caroline", "Melanie", "Jon Smith"}
    assert speakers_named("What did Caroline research?", speakers) == {"Caroline"}
    assert speakers_named("What did Mel and her kids paint?", speakers) == {"Melanie"}
    assert speakers_named("Where is Jon's shop?", speakers) == {"Jon Smith"}
    assert speakers_named("what did we agree?", speakers) == set()
    now = datetime(2024, 1, 10, tzinfo=UTC)
    july = time_window("What did Mel paint in July 2023?", now)
    assert july is not None and july.contains(datetime(2023, 7, 15, tzinfo=UTC))
    assert july.contains(datetime(2023, 8, 5, tzinfo=UTC))  # told a few days later
    assert not july.contains(datetime(2023, 5, 1, tzinfo=UTC))
    day = time_window("What painting did Melanie show on October 13, 2023?", now)
    assert day is not None and day.contains(datetime(2023, 10, 13, 20, tzinfo=UTC))
    assert not day.contains(datetime(2023, 11, 30, tzinfo=UTC))
    assert time_window("What did Caroline do in 2022?", now) == TimeWindow(
        datetime(2022, 1, 1, tzinfo=UTC), datetime(2022, 12, 31, 23, 59, tzinfo=UTC)
    )
    june = time_window("When did Melanie go camping in June?", now)
    assert june is not None and june.contains(datetime(2021, 6, 2, tzinfo=UTC))
    last_week = time_window("who called last week?", now)
    assert last_week is not None and last_week.contains(now - timedelta(days=5))
    assert not last_week.contains(now - timedelta(days=60))
    assert time_window("what may we do about Acme?", now) is None


async def test_noise_is_kept_and_counted_but_never_recalled(tmp_path: Path) -> None:
    async with open_memory(tmp_path, embedder=HashEmbedder()) as mem:
        ids = await mem.add_many(
            [
                Note("approve", ref="m1"),
                Note("1", ref="m2"),
                Note("/recall Acme", ref="m3"),
                Note("ok", ref="m4"),
                Note("Acme wants the retainer renewed at 4k a month.", ref="m5"),
            ]
        )
        assert len(set(ids)) == 5
        assert await mem.count() == 5
        hits = await mem.recall("Acme", k=10)
        assert [h.ref for h in hits] == ["m5"]
        assert await mem.recall("approve", k=10) == [] or "m1" not in [h.ref for h in await mem.recall("approve")]
        assert await mem.forget(ref="m4") == 1
        assert await mem.count() == 4


async def test_a_note_starting_with_a_path_or_remembered_on_purpose_is_recalled(tmp_path: Path) -> None:
    assert not is_noise(parse("/srv/backups holds the Acme invoices").body)
    assert not is_noise("ok", "remember:telegram")  # the operator asked to keep it: never noise
    assert is_noise("/start@coo_bot") and is_noise("ok", "chat:telegram")
    async with open_memory(tmp_path, embedder=HashEmbedder()) as mem:
        await mem.add(Note("/srv/backups holds the Acme invoices", source="remember:telegram", ref="n-1"))
        await mem.add(Note("/srv/archive holds the Globex contracts", source="chat", ref="m-2"))
        await mem.add(Note("yes", source="remember:telegram", ref="n-3"))
        assert await mem.count() == 3
        assert [h.ref for h in await mem.recall("Acme invoices", k=5)][:1] == ["n-1"]
        assert [h.ref for h in await mem.recall("Globex contracts", k=5)][:1] == ["m-2"]
        assert [h.ref for h in await mem.recall("yes", k=5)][:1] == ["n-3"]


async def test_context_rides_along_across_calls_and_restarts(tmp_path: Path) -> None:
    embedder = RecordingEmbedder()
    question = "[8 May 2023] Ana: Where should we hold the offsite this year?"
    answer = "[8 May 2023] Bo: Lisbon, in the old town."
    async with open_memory(tmp_path, embedder=embedder) as mem:
        await mem.add_many([turn(question, DAY1, "q")])
    async with open_memory(tmp_path, embedder=embedder) as mem:
        await mem.add_many([turn("ok", DAY1, "ack"), turn(answer, DAY1 + timedelta(minutes=1), "a")])
        await mem.add_many([turn("[25 May 2023] Bo: Booked the flights.", DAY2, "later")])
        hits = await mem.recall("offsite", k=5, scope="conv", mode="text")
        full = await mem.recall("where is the offsite", k=5, scope="conv")
    assert {h.ref for h in hits} == {"q", "a"}  # the answer is found by the question it answers
    assert [h.text for h in full if h.ref == "a"] == [answer]  # the stored text is the note as given
    # What is embedded: the turn without its date (matched by full text and time windows), then
    # the turn it answers.
    embedded = [t for t in embedder.passages if t.startswith("Bo: Lisbon")]
    assert embedded == ["Bo: Lisbon, in the old town.\n(after: Ana: Where should we hold the offsite this year?)"]
    # A new episode (17 days later) starts without the previous one's context.
    assert [t for t in embedder.passages if t.startswith("Bo: Booked")] == ["Bo: Booked the flights."]


async def test_closed_episodes_are_summarized_and_linked_to_their_turns(tmp_path: Path) -> None:
    session1 = [
        "[8 May 2023] Caroline: I went to an LGBTQ support group yesterday and it was so powerful.",
        "[8 May 2023] Melanie: Wow, what happened there that was so awesome?",
        "[8 May 2023] Caroline: The transgender stories were inspiring; the group gave me courage.",
        "[8 May 2023] Melanie: I painted a lake sunrise last year, painting helps me relax.",
    ]
    session2 = ["[25 May 2023] Melanie: I ran a charity race for mental health last Saturday."]
    async with open_memory(tmp_path, embedder=HashEmbedder()) as mem:
        await mem.add_many([turn(t, DAY1, f"D1:{i + 1}") for i, t in enumerate(session1)])
        assert await mem.episodes("conv") == []  # still open
        await mem.add_many([turn(session2[0], DAY2, "D2:1")])
        episodes = await mem.episodes("conv")
        hits = await mem.recall("What did the support group give Caroline?", k=10, scope="conv")
    assert len(episodes) == 1
    episode = episodes[0]
    assert (episode.start, episode.end, episode.turns, episode.summarizer) == (DAY1, DAY1, 4, "extractive/sumbasic")
    assert "Caroline: I went to an LGBTQ support group yesterday" in episode.summary
    assert {h.ref for h in hits} <= {"D1:1", "D1:2", "D1:3", "D1:4", "D2:1"}  # turns only, never a summary
    assert hits[0].ref in {"D1:1", "D1:3"}


async def test_a_model_summarizer_replaces_the_extractive_summary(tmp_path: Path) -> None:
    summarizer = NamingSummarizer()
    async with open_memory(tmp_path, embedder=HashEmbedder(), summarizer=summarizer) as mem:
        await mem.add_many([turn("[8 May 2023] Ana: The Acme retainer is renewed.", DAY1, "a")])
        await mem.add_many([turn("[25 May 2023] Bo: Invoice sent to Globex.", DAY2, "b")])
        await mem.refresh()
        episodes = await mem.episodes("conv")
    assert summarizer.calls == [["Ana: The Acme retainer is renewed."]]
    assert [(e.summarizer, e.summary) for e in episodes] == [
        ("test/naming", "Model summary of 1 turns, starting with: Ana: The Acme retainer is renewed.")
    ]


async def test_a_failing_summarizer_keeps_the_extractive_one(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with open_memory(tmp_path, embedder=HashEmbedder(), summarizer=NamingSummarizer(fail=True)) as mem:
        await mem.add_many([turn("[8 May 2023] Ana: The Acme retainer is renewed.", DAY1, "a")])
        with caplog.at_level(logging.ERROR, logger="memory.semantic.summaries"):
            await mem.add_many([turn("[25 May 2023] Bo: Invoice sent to Globex.", DAY2, "b")])
            await mem.refresh()
        episodes = await mem.episodes("conv")
    assert [e.summarizer for e in episodes] == ["extractive/sumbasic"]
    assert any("summarizer test/naming failed" in r.getMessage() for r in caplog.records)


async def test_the_named_speaker_and_the_named_period_come_first(tmp_path: Path) -> None:
    notes = [
        turn("[8 May 2023] Melanie: I went camping with the kids at the beach.", DAY1, "mel-camp"),
        turn(
            "[8 May 2023] Caroline: I went camping with friends at the beach.", DAY1 + timedelta(minutes=1), "car-camp"
        ),
        turn("[3 July 2023] Caroline: We went camping in the mountains this weekend.", DAY3, "car-july"),
    ]
    # The real model: the claim is about turns a model finds alike (a 16-bucket hash of words ranks
    # them by chance collisions).
    async with open_memory(tmp_path, embedder=LocalEmbedder()) as mem:
        await mem.add_many(notes)
        by_mel = await mem.recall("Where did Melanie go camping?", k=3, scope="conv")
        by_car = await mem.recall("Where did Caroline go camping?", k=3, scope="conv")
        in_july = await mem.recall("Where did Caroline go camping in July 2023?", k=3, scope="conv")
    assert by_mel[0].ref == "mel-camp"
    assert by_car[0].ref in {"car-camp", "car-july"}
    assert in_july[0].ref == "car-july"


def test_a_turn_that_ends_with_a_question_asks() -> None:
    assert asks("Wow, that's great! What did you paint? ")
    assert not asks("I painted a sunset. Why? It calms me.")
    assert not asks("")


async def test_the_answer_comes_before_the_turn_that_asked_for_it(tmp_path: Path) -> None:
    # The turn that asks shares the question's words and shape; the reply that tells is what recall wants.
    minute = timedelta(minutes=1)
    notes = [
        turn("[8 May 2023] Caroline: So what did you and the kids paint last weekend?", DAY1, "asked"),
        turn(
            "[8 May 2023] Melanie: The kids painted a sunset over the lake, all orange and pink.",
            DAY1 + minute,
            "told",
        ),
        turn("[25 May 2023] Melanie: The dentist moved my appointment to Thursday morning.", DAY2, "f1"),
        turn("[25 May 2023] Caroline: I finally fixed the leaking kitchen tap.", DAY2 + minute, "f2"),
        turn("[25 May 2023] Melanie: Work has been busy with the quarterly reports.", DAY2 + 2 * minute, "f3"),
    ]
    question = "What did the kids paint last weekend?"
    async with open_memory(tmp_path, embedder=LocalEmbedder()) as mem:
        await mem.add_many(notes)
        hits = await mem.recall(question, k=2, scope="conv")
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(memory.semantic.ranking, "QUESTION_PENALTY", 0.0)
            unpenalised = await mem.recall(question, k=2, scope="conv")
        text_only = await mem.recall(question, k=2, scope="conv", mode="text")
    assert [h.ref for h in unpenalised] == ["asked", "told"]  # what the penalty changes
    assert [h.ref for h in hits] == ["told", "asked"]
    assert hits[0].score > hits[1].score
    assert text_only[0].ref == "asked"  # the diagnostic modes score by their retriever alone


async def test_unrelated_notes_fall_below_the_floor(tmp_path: Path) -> None:
    async with open_memory(tmp_path, embedder=LocalEmbedder()) as mem:
        await mem.add_many(
            [
                Note("Acme agreed to pay the design invoice on net 45 terms.", ref="acme"),
                Note("The dentist appointment moved to Thursday morning.", ref="dentist"),
                Note("Bought a new kettle for the studio kitchen.", ref="kettle"),
            ]
        )
        hits = await mem.recall("When will Acme pay the invoice?", k=10)
    assert [h.ref for h in hits] == ["acme"]


async def test_the_question_already_remembered_does_not_raise_the_floor_over_its_answer(tmp_path: Path) -> None:
    # A chat's prepared recall runs for a message that ingestion may have stored already: that note
    # is the question itself (cosine ~1), and must not push the paraphrased answer under the floor.
    question = "when do the espresso people settle up?"
    async with open_memory(tmp_path, embedder=LocalEmbedder()) as mem:
        await mem.add_many(
            [
                Note("[3 May 2024] operator: Orbit Coffee pays on net 45 terms.", at=DAY1, ref="fact", source="chat:t"),
                Note(f"[4 May 2024] operator: {question}", at=DAY2, ref="question", source="chat:t"),
            ]
        )
        hits = await mem.recall(question, k=6)
    assert [h.ref for h in hits] == ["question", "fact"]


async def test_long_inputs_are_capped_and_chunked(tmp_path: Path) -> None:
    embedder = RecordingEmbedder()
    filler = "The weekly status call covered hiring and the roadmap. "
    long_note = (filler * 200) + "The password hint is zanzibarite."
    async with open_memory(tmp_path, embedder=embedder) as mem:
        await mem.add_many([Note(long_note, ref="long"), Note("Short note on the roadmap.", ref="short")])
        assert await mem.count() == 2
        hits = await mem.recall("zanzibarite " * 20_000, k=5)
    assert [h.ref for h in hits][0] == "long"
    assert [h.ref for h in hits].count("long") == 1 and hits[0].text == long_note
    assert max(len(t) for t in embedder.passages) <= MAX_EMBED_CHARS
    assert len([t for t in embedder.passages if "roadmap" in t]) > 2  # the long note went in chunks
    assert embedder.queries and max(len(q) for q in embedder.queries) <= MAX_QUERY_EMBED_CHARS


async def test_a_summary_lost_to_a_crash_is_written_by_maintain(tmp_path: Path) -> None:
    async with open_memory(tmp_path, embedder=HashEmbedder()) as mem:
        await mem.add_many([turn("[8 May 2023] Ana: The Acme retainer is renewed.", DAY1, "a")])
        await mem.add_many([turn("[25 May 2023] Bo: Invoice sent to Globex.", DAY2, "b")])
        (episode,) = await mem.episodes("conv")
    # A crash between storing the turns and writing the summary leaves exactly this on disk.
    store = await SemanticStore.open(tmp_path / "lancedb", 16, HashEmbedder().name)
    await store.delete_episode(episode.id)
    await store.close()
    async with open_memory(tmp_path, embedder=HashEmbedder()) as mem:
        assert await mem.episodes("conv") == []
        await mem.maintain()
        episodes = await mem.episodes("conv")
    assert [(e.id, e.turns, e.summary) for e in episodes] == [(episode.id, 1, "Ana: The Acme retainer is renewed.")]


def lance_bytes(root: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted((root / "lancedb").rglob("*")) if p.is_file())


async def test_a_note_forgotten_while_it_waits_to_be_written_is_not_written_after(tmp_path: Path) -> None:
    """A chat message queued for ingestion, then /forget-ten before the queue is flushed: the flush must
    not bring it back (the ingestor writes with add_many, under the same lock as forget)."""
    pin = turn("[8 May 2023] Ana: our bank PIN is 7391 zebra.", DAY1, "msg-7")
    async with open_memory(tmp_path, embedder=HashEmbedder()) as mem:
        assert await mem.forget(ref="msg-7", scope="conv") == 0  # nothing stored yet
        await mem.add_many([pin, turn("[8 May 2023] Ana: the bank opens at nine.", DAY1, "msg-8")])
        hits = await mem.recall("bank PIN zebra", k=5, scope="conv")
        count = await mem.count("conv")
    assert [h.ref for h in hits] == ["msg-8"] and count == 1


async def test_forget_also_scrubs_the_reply_context_and_the_summary(tmp_path: Path) -> None:
    session1 = [
        turn("[8 May 2023] Ana: The alarm code for the studio is 4815-zebra-quokka.", DAY1, "secret"),
        turn("[8 May 2023] Bo: Got it, I will open the studio on Monday.", DAY1, "reply"),
        turn("[8 May 2023] Ana: Great, the keys are under the plant pot.", DAY1, "keys"),
    ]
    async with open_memory(tmp_path, embedder=HashEmbedder()) as mem:
        await mem.add_many(session1)
        await mem.add_many([turn("[25 May 2023] Bo: The studio opened fine.", DAY2, "later")])
        assert "quokka" in (await mem.episodes("conv"))[0].summary
        assert "reply" in [h.ref for h in await mem.recall("quokka", k=5, scope="conv", mode="text")]
        assert await mem.forget(ref="secret", scope="conv") == 1
        assert await mem.recall("quokka zebra 4815", k=5, scope="conv", mode="text") == []
        episode = (await mem.episodes("conv"))[0]
        assert "quokka" not in episode.summary and episode.turns == 2
        assert [h.ref for h in await mem.recall("open the studio on Monday", k=1, scope="conv")] == ["reply"]
        await mem.add_many([turn("[25 May 2023] Ana: Thanks Bo.", DAY2, "thanks")])  # state reloads cleanly
        await mem.reindex()
    assert b"quokka" not in lance_bytes(tmp_path)


class GatedSummarizer:
    """A model that is slow the first time (it answers once ``gate`` is set) and fails after that."""

    name = "test/gated"

    def __init__(self) -> None:
        self.asked = asyncio.Event()
        self.gate = asyncio.Event()
        self.calls = 0

    async def __call__(self, lines: Sequence[str]) -> str:
        self.calls += 1
        if self.calls > 1:
            raise TimeoutError("budget exhausted")
        self.asked.set()
        await self.gate.wait()
        return "Summary: " + " ".join(lines)


async def test_a_model_summary_under_way_when_a_turn_is_forgotten_is_dropped(tmp_path: Path) -> None:
    model = GatedSummarizer()
    async with open_memory(tmp_path, embedder=HashEmbedder(), summarizer=model) as mem:
        await mem.add_many(
            [
                turn("[8 May 2023] Ana: The alarm code for the studio is 4815-zebra-quokka.", DAY1, "secret"),
                turn("[8 May 2023] Bo: Got it, I will open the studio on Monday.", DAY1, "reply"),
            ]
        )
        await mem.add_many([turn("[25 May 2023] Bo: The studio opened fine.", DAY2, "later")])  # closes it
        await asyncio.wait_for(model.asked.wait(), 30)  # the model reads the episode as it was
        assert await mem.forget(ref="secret", scope="conv") == 1
        assert "quokka" not in (await mem.episodes("conv"))[0].summary
        model.gate.set()  # the model answers about the forgotten turn
        await asyncio.wait_for(mem.refresh(), 30)
        [episode] = await mem.episodes("conv")
        by_text = await mem.recall("quokka zebra 4815", k=5, scope="conv", mode="text")
        assert model.calls == 2  # the re-summary after /forget was asked for too (and failed)
    assert "quokka" not in episode.summary and episode.summarizer == "extractive/sumbasic"
    assert by_text == []


async def test_a_reply_is_embedded_with_the_head_of_its_context_and_searched_with_all_of_it(tmp_path: Path) -> None:
    embedder = RecordingEmbedder()
    question = (
        "[8 May 2023] Ana: Before we book anything, I would like us to weigh the venues we saw last spring, "
        "the budget the board approved, the dates that suit the whole team and the travel time for everyone, "
        "and then settle where the offsite happens: Lisbon or Porto?"
    )
    async with open_memory(tmp_path, embedder=embedder) as mem:
        await mem.add_many([turn(question, DAY1, "q"), turn("[8 May 2023] Bo: Lisbon.", DAY1, "a")])
        by_text = await mem.recall("Porto offsite", k=5, scope="conv", mode="text")
    context = "Ana: " + parse(question).body
    [embedded] = [t for t in embedder.passages if t.startswith("Bo: Lisbon.")]
    head = embedded.removeprefix("Bo: Lisbon.\n(after: ").removesuffix(")")
    assert len(head) <= EMBEDDED_CONTEXT_CHARS and context.startswith(head) and len(head) > EMBEDDED_CONTEXT_CHARS // 2
    assert {h.ref for h in by_text} == {"q", "a"}  # the reply's whole context is full-text searched
