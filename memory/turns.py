"""How a note becomes what is indexed: its speaker, whether it is noise, its context and its chunks.

A note is kept exactly as given (``Hit.text``); what is searched is derived from it:

- a note written as ``[8 May 2023] Caroline: text`` (or ``Caroline: text``) names its speaker;
- noise is stored but never indexed: bare commands (``/approve 12``) and notes with no content word
  (``ok``, ``1``, ``approve``, ``thanks!``, an emoji);
- the indexed text of a turn that replies to another speaker carries the turn it answers, because a
  reply ("Seven years now!") often only makes sense with it;
- a long note is cut into chunks of at most ``CHUNK_CHARS`` characters, each indexed on its own,
  so no single embedding call takes a huge input.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta

# One e5 window is 512 tokens (~2,000 characters of English); a chunk stays within one window.
CHUNK_CHARS = 1_500
# How much of the previous turn rides along as context, and how soon after it a reply comes.
CONTEXT_CHARS = 400
REPLY_GAP = timedelta(minutes=30)

_DATED_SPEAKER = re.compile(
    r"^\s*\[(?P<date>[^\]\n]{1,40})\]\s*(?:(?P<speaker>[^\W\d][\w .'-]{0,39}?):\s+)?(?P<body>.*)$", re.S
)
_SPEAKER = re.compile(r"^\s*(?P<speaker>[A-Z][\w'-]{0,19}(?: [A-Z][\w'-]{0,19}){0,2}):\s+(?P<body>.*)$", re.S)
_WORD = re.compile(r"\w+")
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


def parse(text: str) -> Parsed:
    """Find the speaker in ``[date] Speaker: body`` or ``Speaker: body``; otherwise the whole text is the body."""
    match = _DATED_SPEAKER.match(text)
    if match:
        return Parsed((match.group("speaker") or "").strip(), match.group("body").strip())
    match = _SPEAKER.match(text)
    if match:
        return Parsed(match.group("speaker"), match.group("body").strip())
    return Parsed("", text.strip())


def is_noise(body: str) -> bool:
    """A bare command, or nothing but acknowledgements, numbers, punctuation and emoji."""
    if body.startswith("/"):
        return True
    words = [w.lower() for w in _WORD.findall(body)]
    return not any(w not in ACKNOWLEDGEMENTS and not w.isdigit() for w in words)


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


def indexed_text(text: str, context: str) -> str:
    """What is embedded and full-text indexed for a turn: the turn, then the turn it follows."""
    return f"{text}\n(after: {context})" if context else text


def chunks(text: str, size: int = CHUNK_CHARS) -> list[str]:
    """Cut ``text`` into pieces of at most ``size`` characters, at whitespace where possible."""
    if len(text) <= size:
        return [text]
    pieces = []
    start = 0
    while start < len(text):
        end = min(len(text), start + size)
        if end < len(text):
            cut = text.rfind(" ", start + size // 2, end)
            end = cut if cut > start else end
        pieces.append(text[start:end])
        start = end
    return pieces
