"""What ``coo onboard`` reads and writes: answers from a text stream (a terminal, or a test's string) and
the config file, written so that python-dotenv reads every value back exactly."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Literal, TextIO

from memory.errors import InternalError

Decision = Literal["retry", "save", "skip"]


class OnboardingStopped(InternalError):
    """The input ended (or the user stopped) before the config file was written."""


class Prompter:
    """Questions on ``output``, answers from ``input``; secrets through ``secret_reader`` (no echo)."""

    def __init__(self, input: TextIO, output: TextIO, secret_reader: Callable[[str], str] | None = None) -> None:
        self._input = input
        self._output = output
        self._secret_reader = secret_reader

    def say(self, text: str) -> None:
        """Print a line."""
        self._output.write(text + "\n")
        self._output.flush()

    def _line(self) -> str:
        line = self._input.readline()
        if not line:
            raise OnboardingStopped("the input ended")
        return line.strip()

    def ask(self, question: str, default: str = "", *, clearable: bool = False) -> str:
        """One answer; Enter gives ``default``. With ``clearable``, ``-`` gives "" (an optional answer
        that has a default)."""
        shown = f" [{default}{'; - for none' if clearable else ''}]" if default else ""
        while True:
            self._output.write(f"{question}{shown}: ")
            self._output.flush()
            answer = self._line() or default
            if clearable and answer == "-":
                return ""
            if self._storable(answer):
                return answer

    def ask_secret(self, question: str, keep: str = "") -> str:
        """A secret: read without echo on a terminal, never written back. Enter gives ``keep`` (the one
        typed before a retry), which is never shown either."""
        if keep:
            question += " (Enter keeps the one you typed)"
        while True:
            if self._secret_reader is not None:
                answer = self._secret_reader(f"{question}: ").strip()
            else:
                self._output.write(f"{question}: ")
                self._output.flush()
                answer = self._line()
                self._output.write("\n")
            answer = answer or keep
            if self._storable(answer):
                return answer

    def _storable(self, answer: str) -> bool:
        try:
            quote(answer)
        except ValueError as exc:
            self.say(f"  {exc}.")
            return False
        return True

    def yes(self, question: str, default: bool = True) -> bool:
        """A yes/no question."""
        while True:
            answer = self.ask(question + (" (Y/n)" if default else " (y/N)")).lower()
            if not answer:
                return default
            if answer in ("y", "yes", "n", "no"):
                return answer.startswith("y")
            self.say("Please answer y or n.")

    def after_failure(self, can_save: bool = True) -> Decision:
        """After a failed check: try again (the answers kept), save it unchecked, or skip the step."""
        question = "  try again (r), save it anyway (s) or skip (n)?" if can_save else "  try again (r) or skip (n)?"
        while True:
            answer = self.ask(question, "r").lower()
            if answer in ("r", "retry", "y", "yes"):
                return "retry"
            if can_save and answer in ("s", "save"):
                return "save"
            if answer in ("n", "no", "skip"):
                return "skip"
            self.say("  Please answer r, s or n." if can_save else "  Please answer r or n.")

    def choose(self, question: str, count: int, default: int) -> int:
        """A number from 1 to ``count``."""
        while True:
            answer = self.ask(question, str(default))
            if answer.isdigit() and 1 <= int(answer) <= count:
                return int(answer)
            self.say(f"Please type a number from 1 to {count}.")


# -- the file ------------------------------------------------------------------------------------
def quote(value: str) -> str:
    """``value`` as a .env value that python-dotenv reads back exactly.

    Single quotes when possible. python-dotenv still reads ``\\`` and ``\'`` as escapes inside them,
    so a value with a backslash or a quote goes in double quotes, escaped. It expands ``${NAME}`` in
    every kind of quoting and has no escape for it, so such a value is refused rather than changed.
    """
    if "\n" in value or "\r" in value:
        raise ValueError("a value cannot hold a line break")
    if "${" in value:
        raise ValueError("a value holding ${ would be changed when read back; set it in the environment instead")
    if "'" not in value and "\\" not in value:
        return f"'{value}'"
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write_env_file(path: Path, values: Mapping[str, str]) -> None:
    """Write ``values`` atomically to ``path`` with mode 0600 (its folder 0700 when created)."""
    lines = [
        "# solo-coo configuration, written by `coo onboard`. Environment variables override these values.",
        *(f"{name}={quote(value)}" for name, value in sorted(values.items())),
    ]
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")
        os.chmod(temp, 0o600)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def read_env_file(path: Path) -> dict[str, str]:
    """The COO_ values a config file holds (empty when there is none)."""
    if not path.is_file():
        return {}
    from dotenv import dotenv_values

    return {k: v for k, v in dotenv_values(path).items() if k.startswith("COO_") and v is not None}
