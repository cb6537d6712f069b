"""Realistic operator messages for benchmarks: business chat of varying length, every text unique.

A fixed seed gives the same messages on every run, so runs (and bots) are compared on equal input.
"""

from __future__ import annotations

import random

MIN_CHARS = 60
MAX_CHARS = 400

_PEOPLE = ["Ana", "Marco", "Priya", "Tom Becker", "Lena", "Jorge", "Sofia Rossi", "Kenji", "Amara", "Dave"]
_COMPANIES = ["Acme Robotics", "Bluefin Media", "Northwind", "Kestrel Labs", "Orbit Coffee", "Lumen Studio"]
_TOPICS = [
    "the proposal",
    "the December issue",
    "the sponsorship deck",
    "the Q3 invoice",
    "the onboarding call",
    "the website redesign",
    "the podcast episode",
    "the renewal",
    "the workshop in Lisbon",
    "the newsletter",
]
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "next week", "the 14th", "end of month"]
_OPENERS = [
    "Quick one: {person} from {company} asked about {topic}.",
    "Can you remind me what we agreed with {company} about {topic}?",
    "{person} says {company} is happy with {topic} but wants a call on {day}.",
    "Note for later: {company} pays on net {terms} terms, not net 30.",
    "I just got off the phone with {person} at {company}.",
    "What is still open with {company}?",
    "Please draft a short reply to {person} about {topic}.",
    "Heads up, {topic} slipped to {day}.",
    "Did {company} ever pay the {amount} EUR for {topic}?",
    "Remind me on {day} to chase {person} about {topic}.",
]
_DETAILS = [
    "They want the price to stay at {amount} EUR and the delivery by {day}.",
    "{person} mentioned that their budget for {topic} is about {amount} EUR this quarter.",
    "The last version went out on {day}, and nobody from {company} has answered yet.",
    "I think we should offer a discount of {pct}% if they sign before {day}.",
    "Keep it friendly but firm; this is the second time the date moved.",
    "Their new contact for billing is {person}, and invoices should mention PO {po}.",
    "Also, the call notes say they liked the second option better than the first.",
    "If they push back, we can split {topic} into two phases and bill {amount} EUR now.",
    "I promised to send the numbers by {day}, so that has priority over everything else.",
    "{person} will be out of office until {day}, so copy someone else from {company}.",
    "Let's keep {topic} on the list for the digest until it is closed.",
    "They asked whether we can do {topic} in Spanish as well, for roughly {amount} EUR more.",
]
_CLOSERS = ["Thanks!", "What do you think?", "Does that make sense?", "Let me know.", "No rush.", ""]


def _fill(template: str, rng: random.Random) -> str:
    return template.format(
        person=rng.choice(_PEOPLE),
        company=rng.choice(_COMPANIES),
        topic=rng.choice(_TOPICS),
        day=rng.choice(_DAYS),
        terms=rng.choice([15, 30, 45, 60]),
        amount=rng.choice([450, 900, 1200, 2500, 3800, 7500, 12000]),
        pct=rng.choice([5, 10, 15]),
        po=rng.randint(10000, 99999),
    )


def _one(rng: random.Random, target: int) -> str:
    parts = [_fill(rng.choice(_OPENERS), rng)]
    while len(" ".join(parts)) < target:
        detail = _fill(rng.choice(_DETAILS), rng)
        if len(" ".join([*parts, detail])) > MAX_CHARS:
            break
        parts.append(detail)
    closer = rng.choice(_CLOSERS)
    if closer and len(" ".join([*parts, closer])) <= MAX_CHARS:
        parts.append(closer)
    return " ".join(parts)


def messages(n: int, seed: int = 7) -> list[str]:
    """``n`` distinct messages of ``MIN_CHARS``-``MAX_CHARS`` characters, most of them short, some long."""
    rng = random.Random(seed)
    seen: set[str] = set()
    out: list[str] = []
    while len(out) < n:
        # Chat is mostly short: a skewed target length between MIN_CHARS and MAX_CHARS.
        target = int(MIN_CHARS + (MAX_CHARS - MIN_CHARS) * rng.random() ** 2)
        text = _one(rng, target)
        if len(text) < MIN_CHARS or text in seen:
            continue
        seen.add(text)
        out.append(text)
    return out
