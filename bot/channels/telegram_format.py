"""How a message fits Telegram: lengths in UTF-16 units, splitting and truncating text, the inline keyboard."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

from telegram import InlineKeyboardButton, InlineKeyboardMarkup

from bot.messages import Button

MAX_TEXT_UNITS = 4096
"""Telegram's message length limit, counted in UTF-16 code units."""
MAX_CALLBACK_BYTES = 64
TRUNCATION_MARK = "…"
_GLUE = frozenset("\u200d\ufe0e\ufe0f")  # ZWJ and variation selectors bind to their neighbours


def utf16_len(text: str) -> int:
    """Length of ``text`` as Telegram counts it (UTF-16 code units; astral characters count 2)."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def _fit(text: str, limit: int) -> int:
    """Number of leading code points of ``text`` that fit into ``limit`` UTF-16 units."""
    units = 0
    for index, char in enumerate(text):
        units += 2 if ord(char) > 0xFFFF else 1
        if units > limit:
            return index
    return len(text)


def split_text(text: str, limit: int = MAX_TEXT_UNITS) -> list[str]:
    """Split ``text`` into parts of at most ``limit`` UTF-16 units that join back to ``text``.

    Prefers the last newline, then the last space; cuts hard only when neither is in the back
    half of the window. Python strings hold code points, so a surrogate pair is never cut.
    """
    parts: list[str] = []
    rest = text
    while utf16_len(rest) > limit:
        cut = _fit(rest, limit)
        window = rest[:cut]
        # A separator early in the window would leave a tiny part, so only the back half counts.
        at = window.rfind("\n") + 1
        if at <= cut // 2:
            at = window.rfind(" ") + 1
        if at <= cut // 2:
            at = cut
            while at > cut // 2 and (rest[at] in _GLUE or rest[at - 1] == "\u200d" or unicodedata.combining(rest[at])):
                at -= 1
        parts.append(rest[:at])
        rest = rest[at:]
    if rest or not parts:
        parts.append(rest)
    return parts


def truncate_text(text: str, limit: int = MAX_TEXT_UNITS) -> str:
    """``text`` cut to ``limit`` UTF-16 units, ending in "…" when anything was dropped."""
    if utf16_len(text) <= limit:
        return text
    return text[: _fit(text, limit - utf16_len(TRUNCATION_MARK))] + TRUNCATION_MARK


def keyboard(buttons: Sequence[Button]) -> InlineKeyboardMarkup | None:
    """One inline button per row; raises ValueError for callback data over 64 bytes."""
    if not buttons:
        return None
    for button in buttons:
        if len(button.data.encode()) > MAX_CALLBACK_BYTES:
            raise ValueError(f"button {button.label!r}: callback data exceeds {MAX_CALLBACK_BYTES} bytes")
    return InlineKeyboardMarkup([[InlineKeyboardButton(b.label, callback_data=b.data)] for b in buttons])
