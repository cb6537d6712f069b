"""The unigram tokenizer on a tiny vocabulary: most probable pieces, normalisation, unknown characters."""

from __future__ import annotations

import numpy as np

from memory.semantic.e5_tokenizer import UnigramTokenizer

PIECES = ["<unk>", "\u2581a", "b", "\u2581ab", "c", "\u2581"]
SCORES = np.array([0.0, -1.0, -1.0, -1.5, -2.0, -3.0], dtype=np.float32)


def tokenizer() -> UnigramTokenizer:
    return UnigramTokenizer(PIECES, SCORES, unk=0, normalisation={ord("\u00c1"): "a"})


def test_each_word_takes_its_most_probable_pieces() -> None:
    tok = tokenizer()
    assert tok.encode("ab") == [3]  # "▁ab" (-1.5) beats "▁a" + "b" (-2.0)
    assert tok.encode("ab   c") == [3, 5, 4]  # spaces collapse; "▁c" is no piece: "▁" + "c"
    assert tok.encode("ab") == tok.encode(" ab") == [3]  # cached words and a leading space change nothing


def test_input_is_normalised_codepoint_by_codepoint() -> None:
    assert tokenizer().encode("\u00c1b") == [3]


def test_an_unknown_character_becomes_one_unk_and_loses_nothing_else() -> None:
    assert tokenizer().encode("azb") == [1, 0, 2]
    assert tokenizer().encode("zz") == [5, 0, 0]
