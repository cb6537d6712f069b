"""Episode summaries without a model: SumBasic sentence choice and what is indexed for an episode."""

from __future__ import annotations

from memory.semantic.episodes import (
    ALSO_MENTIONED,
    ExtractiveSummarizer,
    Summarizer,
    searchable,
    summarize_extractively,
)

LINES = [
    "Ana: The Acme retainer renewal is signed for another year.",
    "Bo: Great!",
    "Ana: Acme wants the retainer invoice sent before Friday.",
    "Bo: I booked the dentist for my daughter next week.",
]


def test_the_main_topic_comes_first_then_new_content_rather_than_the_topic_again() -> None:
    # Both Acme sentences carry the most frequent words; once one is taken, its words count for
    # less, so the next pick within the budget is the dentist, not the Acme topic a second time.
    assert summarize_extractively(LINES, max_chars=130) == (
        "Ana: The Acme retainer renewal is signed for another year. Bo: I booked the dentist for my daughter next week."
    )


def test_with_room_for_all_every_sentence_with_content_is_kept_in_its_order_with_its_speaker() -> None:
    assert summarize_extractively(LINES) == " ".join(line for line in LINES if line != "Bo: Great!")


def test_a_sentence_that_says_nothing_is_never_chosen() -> None:
    assert summarize_extractively(["Bo: Great!", "Ana: Hey Mel!", "Talk soon!"]) == ""
    assert summarize_extractively([]) == ""


def test_a_sentence_longer_than_the_budget_is_left_out_not_cut() -> None:
    long = "Ana: " + " ".join(f"word{i} retainer acme" for i in range(200)) + "."
    summary = summarize_extractively([long, LINES[2]], max_chars=200)
    assert summary == "Ana: Acme wants the retainer invoice sent before Friday."


def test_a_colon_far_into_the_line_is_not_taken_for_a_speaker() -> None:
    line = "The agenda for the quarterly planning offsite reads: budget review, hiring plans, pricing."
    assert summarize_extractively([line]) == line


def test_what_is_indexed_is_the_summary_then_the_words_it_left_out_each_once() -> None:
    summary = "Ana: Acme renewed the retainer."
    body = searchable(summary, LINES)
    assert body.startswith(summary + ALSO_MENTIONED)
    extra = body.split(ALSO_MENTIONED, 1)[1].split(", ")
    assert "dentist" in extra and "daughter" in extra and "invoice" in extra
    assert "acme" not in extra and "retainer" not in extra  # the summary has them already
    assert len(extra) == len(set(extra))
    assert searchable("Ana: Acme renewed the retainer.", ["Ana: Acme renewed the retainer."]) == summary


async def test_the_extractive_summarizer_is_a_summarizer_and_answers_off_the_loop() -> None:
    summarizer = ExtractiveSummarizer(max_chars=70)
    assert isinstance(summarizer, Summarizer) and summarizer.name == "extractive/sumbasic"
    assert await summarizer(LINES) == "Ana: The Acme retainer renewal is signed for another year."
