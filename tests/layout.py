"""Where the project is: its root and its five top-level packages (the layers of ARCHITECTURE.md)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("bot", "graph", "memory", "connectors", "prompts")
