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
