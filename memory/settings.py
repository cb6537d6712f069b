"""Settings owned by the memory layer."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class EmbeddingsSettings(BaseModel):
    """Which embedder semantic memory uses."""

    provider: Literal["local", "openai"] = "local"
    model: str = "text-embedding-3-small"


class SqliteSettings(BaseModel):
    """Tuning for the SQLite files."""

    busy_timeout_ms: int = Field(default=5000, ge=0)


class MemorySettings(BaseModel):
    """Semantic memory switches."""

    semantic: bool = True
    scope: str = Field(default="default", min_length=1, max_length=100)
    ingest_batch: int = Field(default=32, ge=1)
    ingest_interval_s: float = Field(default=0.5, gt=0)
