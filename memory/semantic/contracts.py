"""What the rest of the product needs from semantic memory without loading it: its failures and the
embedding protocols.

Importing this module loads neither NumPy, PyArrow nor LanceDB, so a ``coo`` with semantic memory off
(and every command that does not open the store) never pays for them.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from memory.errors import InternalError

if TYPE_CHECKING:
    import numpy as np


class MemoryUnavailable(InternalError, RuntimeError):
    """Semantic memory cannot be read or written now (storage missing, corrupt or failing).

    Callers degrade (e.g. to keyword search in SQLite); ``Memory.maintain()`` rebuilds what is broken.
    """


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


class EmbeddingRefused(InternalError, RuntimeError):
    """A paid embedding call was not made: its meter refused it (a budget cap). Nothing was billed."""


@dataclass
class EmbeddingUsage:
    """What one metered embedding call used, as the endpoint reported it (None: it did not say)."""

    tokens: int | None = None


class EmbeddingMeter(Protocol):
    """Prices and caps paid embedding calls (I5); the bot passes one backed by its budget."""

    def call(self, model: str, texts: Sequence[str]) -> AbstractAsyncContextManager[EmbeddingUsage]:
        """Around one request: reserves its estimated cost on entry (raises :class:`EmbeddingRefused`
        when a cap refuses it), settles with the reported usage on exit, or bills the estimate when the
        request failed after it may have been processed."""
        ...
