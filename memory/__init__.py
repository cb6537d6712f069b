"""Durable state: SQLite event log and records, semantic memory.

The semantic-memory API is loaded on first use, so importing ``memory.db`` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from memory.semantic.api import (
        Hit,
        InvalidNote,
        MaintenanceStats,
        Memory,
        MemoryUnavailable,
        Note,
        Summarizer,
        open_memory,
    )

__all__ = ["Hit", "InvalidNote", "MaintenanceStats", "Memory", "MemoryUnavailable", "Note", "Summarizer", "open_memory"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from memory.semantic import api

        return getattr(api, name)
    raise AttributeError(f"module 'memory' has no attribute {name!r}")
