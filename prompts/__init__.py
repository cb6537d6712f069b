"""Prompt templates as text files, loaded by name."""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path


@cache
def load_prompt(name: str) -> str:
    """The text of ``prompts/<name>.txt``. Raises FileNotFoundError for an unknown name."""
    if not name.replace("_", "").isalnum():
        raise ValueError(f"bad prompt name: {name!r}")
    found = resources.files(__package__).joinpath(f"{name}.txt")
    if not found.is_file():
        # A folder added to this package's path (a skill's prompt kept beside it) is looked in too.
        extra = (Path(root) / f"{name}.txt" for root in __path__[1:])
        found = next((path for path in extra if path.is_file()), found)
    return found.read_text(encoding="utf-8")
