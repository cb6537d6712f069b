"""Prompt templates as text files, loaded by name."""

from __future__ import annotations

from functools import cache
from importlib import resources


@cache
def load_prompt(name: str) -> str:
    """The text of ``prompts/<name>.txt``. Raises FileNotFoundError for an unknown name."""
    if not name.replace("_", "").isalnum():
        raise ValueError(f"bad prompt name: {name!r}")
    return resources.files(__package__).joinpath(f"{name}.txt").read_text(encoding="utf-8")
