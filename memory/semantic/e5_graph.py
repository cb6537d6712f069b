"""The multilingual-e5-small encoder as an ONNX graph, built from a packed model's weights.

Each Q4_0 weight matrix is dequantized and quantized again to int8 per output channel, for ONNX
Runtime's ``DynamicQuantizeMatMul``. The result depends on nothing but the model's shapes and layer
tensors (:class:`GraphSource`), this module's and :mod:`memory.semantic.e5_model`'s code, and the
``onnx`` and NumPy versions that write it: :func:`graph_identity` digests exactly that, so a stored
copy of the graph is found again under it (:mod:`memory.semantic.e5_cache`).
"""

from __future__ import annotations

import hashlib
import struct
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from memory.semantic import e5_model
from memory.semantic.e5_model import PackedModel, dequantize

if TYPE_CHECKING:
    import onnx

_LAYER_TENSORS = tuple(f"{part}.{kind}" for part in ("q", "k", "v", "ao", "aln", "fi", "fo", "oln") for kind in "wb")


def _code_digest() -> str | None:
    """The source of the modules that compute the graph's bytes, or None where it cannot be read."""
    digest = hashlib.sha256()
    try:
        for module_file in (__file__, e5_model.__file__):
            digest.update(Path(str(module_file)).read_bytes())
    except OSError:
        return None
    return digest.hexdigest()


# Read at import, so it describes the code this process runs, not a later edit of the files.
_CODE_DIGEST = _code_digest()


class GraphSource:
    """What the encoder graph is built from: the model's shapes and the tensors in ``names``, nothing else.

    The builder reads tensors only through here, and only the listed ones: so :meth:`digest` covers all
    the graph depends on, and a builder changed to read another tensor fails at once instead of
    outgrowing the digest. The token table (54 of the file's 72 MB) is not among them: it is read per
    text, outside the graph.
    """

    def __init__(self, model: PackedModel) -> None:
        self.hidden, self.layers, self.heads, self.ffn, self.eps = (
            model.hidden,
            model.layers,
            model.heads,
            model.ffn,
            model.eps,
        )
        self.names = ("emb.ln.w", "emb.ln.b", *(f"l{i}.{t}" for i in range(model.layers) for t in _LAYER_TENSORS))
        self._listed = frozenset(self.names)
        self._model = model

    def f32(self, name: str) -> np.ndarray:
        """A float32 tensor, copied out of the file."""
        return self._model.f32(self._checked(name))

    def q4_blocks(self, name: str, rows: int) -> np.ndarray:
        """A Q4_0 matrix's raw blocks (see :meth:`PackedModel.q4_blocks`)."""
        return self._model.q4_blocks(self._checked(name), rows)

    def digest(self) -> str:
        """SHA-256 over the shapes and every listed tensor's name, dtype, size and bytes (~13 MB)."""
        digest = hashlib.sha256(struct.pack("<4if", self.hidden, self.layers, self.heads, self.ffn, self.eps))
        for name in self.names:
            dtype, count, data = self._model.raw(name)
            encoded = name.encode()
            digest.update(struct.pack("<H", len(encoded)) + encoded + struct.pack("<BQ", dtype, count))
            digest.update(data.data)
        return digest.hexdigest()

    def _checked(self, name: str) -> str:
        if name not in self._listed:
            raise KeyError(f"tensor {name!r} is not among the graph's inputs (GraphSource.names)")
        return name


def graph_identity(source: GraphSource) -> str | None:
    """Everything the serialized graph's bytes depend on, digested; None if this code's source is unreadable.

    The ``onnx`` version is read from its metadata, not by importing it (~0.6 s of CPU, for ml_dtypes).
    """
    if _CODE_DIGEST is None:
        return None
    parts = (_CODE_DIGEST, source.digest(), f"onnx {version('onnx')}", f"numpy {np.__version__}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


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


def _encoder_layer(g: _GraphBuilder, m: GraphSource, x: str, layer: int) -> str:
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


def _skip_norm(g: _GraphBuilder, m: GraphSource, x: str, skip: str, name: str) -> str:
    gamma, beta = g.const(f"{name}.w", m.f32(f"{name}.w")), g.const(f"{name}.b", m.f32(f"{name}.b"))
    return str(g.op("SkipLayerNormalization", [x, skip, gamma, beta], domain="com.microsoft", epsilon=m.eps))


def build_encoder_graph(m: GraphSource) -> onnx.ModelProto:
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
