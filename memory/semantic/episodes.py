"""Episodes: a stretch of conversation in one scope (a session, a day), summarized when it closes.

An episode closes when the next note of its scope comes ``EPISODE_GAP`` or more after its last one,
or once it holds ``EPISODE_MAX_TURNS`` turns. Its summary is indexed with links to its turns, so a
question about the episode as a whole finds its turns even when no single turn says it all.

Without a model the summary is extractive (``ExtractiveSummarizer``): the sentences that carry the
episode's most frequent content words (SumBasic), in their original order, with their speakers. A
model can be plugged in through the ``Summarizer`` protocol.
"""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import Sequence
from datetime import timedelta
from typing import Protocol, runtime_checkable

EPISODE_GAP = timedelta(hours=3)
EPISODE_MAX_TURNS = 200
SUMMARY_CHARS = 1_500
MIN_SENTENCE_WORDS = 3
ALSO_MENTIONED = "\nAlso mentioned: "

_SENTENCE = re.compile(r"[^.!?\n]+[.!?]*")
_WORD = re.compile(r"[^\W\d_]{3,}")
# Function words carry no topic; a short list is enough for choosing sentences.
_STOP = frozenset(
    """the and for are but not you your with this that have has had was were will would could should can
    just what when where which who how why all any been being did does doing from into its our out over
    she her him his they them their then there these those too very about after again also because
    before being both each few more most other same some such than through under until while yours
    yeah really thanks thank great good love like know think going get got make made much well way
    things thing something lot lots feel felt sounds sound glad awesome amazing totally""".split()
)


@runtime_checkable
class Summarizer(Protocol):
    """Writes an episode's summary: ``await summarizer(lines)`` -> text.

    ``lines`` are the episode's turns in order, each ``"Speaker: text"`` (or just the text). The
    summary should name who did what and keep concrete words (names, places, things); it is
    indexed for search, never shown as an instruction.
    """

    @property
    def name(self) -> str:
        """Identifies the summarizer (stored with each summary)."""
        ...

    async def __call__(self, lines: Sequence[str]) -> str:
        """The summary of ``lines``."""
        ...


class ExtractiveSummarizer:
    """SumBasic: repeatedly take the sentence whose content words are most frequent in the episode."""

    def __init__(self, max_chars: int = SUMMARY_CHARS) -> None:
        self._max_chars = max_chars

    @property
    def name(self) -> str:
        """Stored with each summary."""
        return "extractive/sumbasic"

    async def __call__(self, lines: Sequence[str]) -> str:
        """Pick sentences until ``max_chars`` (tens of ms of pure Python for a long episode: off the loop)."""
        return await asyncio.to_thread(summarize_extractively, list(lines), self._max_chars)


def _content_words(text: str) -> list[str]:
    return [w for w in (m.lower() for m in _WORD.findall(text)) if w not in _STOP]


def summarize_extractively(lines: Sequence[str], max_chars: int = SUMMARY_CHARS) -> str:
    """The SumBasic summary of ``lines`` in at most ``max_chars`` characters (original order kept)."""
    sentences: list[tuple[int, str, str, list[str]]] = []  # (line index, speaker, sentence, words)
    for index, line in enumerate(lines):
        speaker, _, body = line.partition(": ") if ": " in line[:42] else ("", "", line)
        for match in _SENTENCE.finditer(body):
            sentence = match.group().strip()
            words = _content_words(sentence)
            if len(words) >= MIN_SENTENCE_WORDS:  # "Hey Mel!", "Talk soon!" say nothing to keep
                sentences.append((index, speaker, sentence, words))
    counts = Counter(w for *_, words in sentences for w in set(words))
    total = sum(counts.values()) or 1
    weight = {w: c / total for w, c in counts.items()}
    chosen: list[int] = []
    used = 0
    remaining = set(range(len(sentences)))
    while remaining:
        best = max(
            remaining,
            key=lambda i: (sum(weight[w] for w in sentences[i][3]) / len(sentences[i][3]), -i),
        )
        remaining.discard(best)
        cost = len(sentences[best][2]) + len(sentences[best][1]) + 3
        if used + cost > max_chars:
            continue
        chosen.append(best)
        used += cost
        for w in sentences[best][3]:
            weight[w] = weight[w] ** 2  # said once is enough: favour new content next
    parts = []
    for i in sorted(chosen):
        _, speaker, sentence, _ = sentences[i]
        parts.append(f"{speaker}: {sentence}" if speaker else sentence)
    return " ".join(parts)


def searchable(summary: str, lines: Sequence[str], max_words: int = 300) -> str:
    """What is indexed for an episode: its summary, then the content words of its turns the summary left out.

    A summary is short; the words it drops still tell what the episode was about, so full-text
    search over an episode sees all of them (each once).
    """
    seen = set(_content_words(summary))
    extra: list[str] = []
    for line in lines:
        for word in _content_words(line):
            if word not in seen and len(extra) < max_words:
                seen.add(word)
                extra.append(word)
    return f"{summary}{ALSO_MENTIONED}{', '.join(extra)}" if extra else summary
