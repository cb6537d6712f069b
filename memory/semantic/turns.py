"""How a note becomes what is indexed: its speaker, whether it is noise, its context and its chunks.

A note is kept exactly as given (``Hit.text``); what is searched is derived from it:

- a note written as ``[8 May 2023] Caroline: text`` (or ``Caroline: text``) names its speaker;
- noise is stored but never indexed: commands (``/approve 12``: a ``/word`` first) and notes with no
  content word (``ok``, ``1``, ``approve``, ``thanks!``, an emoji); a note that merely starts with a
  slash (``/srv/backups holds the invoices``) is content, and a note the operator asked to remember
  (source ``remember:...``) is never noise;
- the indexed text of a turn that replies to another speaker carries the turn it answers, because a
  reply ("Seven years now!") often only makes sense with it (only its head is embedded: see
  ``memory.semantic.api``);
- a turn that ends with a question (``asks``) is scored lower by recall: it asks rather than tells;
- a long note is cut into chunks of at most ``CHUNK_CHARS`` characters, each indexed on its own,
  so no single embedding call takes a huge input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

# Embedding cost grows faster than length (bundled e5 on 2 busy cores: ~0.1 s for 500 characters,
# ~0.9 s for 1,500), so long notes go in short chunks, and only the first ``MAX_CHUNKS`` - 1 get
# their own; the last holds the rest (all of it full-text indexed, its head embedded).
CHUNK_CHARS = 600
MAX_CHUNKS = 16
# How much of the previous turn rides along as context, and how soon after it a reply comes.
CONTEXT_CHARS = 300
REPLY_GAP = timedelta(minutes=30)

_DATED_SPEAKER = re.compile(
    r"^\s*\[(?P<date>[^\]\n]{1,40})\]\s*(?:(?P<speaker>[^\W\d][\w .'-]{0,39}?):\s+)?(?P<body>.*)$", re.S
)
_SPEAKER = re.compile(r"^\s*(?P<speaker>[A-Z][\w'-]{0,19}(?: [A-Z][\w'-]{0,19}){0,2}):\s+(?P<body>.*)$", re.S)
_WORD = re.compile(r"\w+")
# A command: "/word" (Telegram may add "@botname") as the first token, arguments or not.
_COMMAND = re.compile(r"^/\w+(?:@\w+)?(?:\s|$)")
# Notes the operator asked to keep: kept on purpose, so never taken for noise, however short.
REMEMBERED = "remember"
# Words that answer or acknowledge without saying anything worth finding later.
ACKNOWLEDGEMENTS = frozenset(
    "ok okay k kk yes y yeah yep yup no n nope sure fine done approve approved reject rejected edit cancel "
    "thanks thank thx ty cheers hi hello hey bye lol haha cool great nice good perfect right agreed".split()
)


@dataclass(frozen=True)
class Parsed:
    """A note's text split into its parts; ``speaker`` is "" when the note names none."""

    speaker: str
    body: str

    @property
    def line(self) -> str:
        """The turn as an episode's line: ``Speaker: text`` (just the text when no speaker is named)."""
        return f"{self.speaker}: {self.body}" if self.speaker else self.body


def parse(text: str) -> Parsed:
    """Find the speaker in ``[date] Speaker: body`` or ``Speaker: body``; otherwise the whole text is the body."""
    match = _DATED_SPEAKER.match(text)
    if match:
        return Parsed((match.group("speaker") or "").strip(), match.group("body").strip())
    match = _SPEAKER.match(text)
    if match:
        return Parsed(match.group("speaker"), match.group("body").strip())
    return Parsed("", text.strip())


def is_noise(body: str, source: str = "") -> bool:
    """A command, or nothing but acknowledgements, numbers, punctuation and emoji; never a note from
    ``source`` ``remember:...`` (the operator asked to keep it)."""
    if source.split(":", 1)[0] == REMEMBERED:
        return False
    if _COMMAND.match(body):
        return True
    words = [w.lower() for w in _WORD.findall(body)]
    return not any(w not in ACKNOWLEDGEMENTS and not w.isdigit() for w in words)


def asks(body: str) -> bool:
    """Whether a turn ends with a question: it asks for something rather than tells it."""
    return body.rstrip().endswith("?")


def is_reply(turn: Parsed, previous: Parsed, gap: timedelta) -> bool:
    """Whether ``turn`` answers ``previous``: another named speaker, soon after.

    Someone's consecutive notes to themselves (the operator's messages) change topic freely, so a
    previous note is context only in a dialogue.
    """
    return bool(turn.speaker and previous.speaker) and turn.speaker != previous.speaker and gap <= REPLY_GAP


def context_line(previous: Parsed | None) -> str:
    """The previous turn as a short line, or "" at the start of an episode."""
    if previous is None:
        return ""
    body = previous.body if len(previous.body) <= CONTEXT_CHARS else previous.body[:CONTEXT_CHARS] + "…"
    return f"{previous.speaker}: {body}" if previous.speaker else body


_AFTER = "\n(after: "


def indexed_text(text: str, context: str) -> str:
    """What is full-text indexed for a turn: the turn, then the turn it follows."""
    return f"{text}{_AFTER}{context})" if context else text


def split_indexed(body: str) -> tuple[str, str]:
    """The turn and its context back from an indexed text (``indexed_text``'s inverse)."""
    text, sep, context = body.rpartition(_AFTER)
    if not sep or not context.endswith(")"):
        return body, ""
    return text, context[:-1]


def undated(text: str) -> str:
    """A note's text without its leading ``[date]``: the date is matched by full text and by time
    windows, and embedding it only costs tokens."""
    match = _DATED_SPEAKER.match(text)
    if not match:
        return text
    return text[match.start("speaker") if match.group("speaker") else match.start("body") :]


def chunks(text: str, size: int = CHUNK_CHARS, most: int = MAX_CHUNKS) -> list[str]:
    """Cut ``text`` into pieces of at most ``size`` characters, at whitespace where possible.

    At most ``most`` pieces: the last one holds whatever remains, however long.
    """
    if len(text) <= size:
        return [text]
    pieces: list[str] = []
    start = 0
    while start < len(text):
        if len(pieces) == most - 1:
            pieces.append(text[start:])
            break
        end = min(len(text), start + size)
        if end < len(text):
            cut = text.rfind(" ", start + size // 2, end)
            end = cut if cut > start else end
        pieces.append(text[start:end])
        start = end
    return pieces
