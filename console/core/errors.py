"""Errors that carry where bad input came from.

Every loader (inventory, spec, scenario) raises :class:`InputError` for anything a
user wrote wrong. The CLI turns it into one line, ``file:line: field: message``, and
exit code 2; a traceback for bad input is a bug.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

EXIT_OK = 0
EXIT_BAD_INPUT = 2
EXIT_FAILED = 3
EXIT_ROLLED_BACK = 4
EXIT_ABORTED = 5
EXIT_PAUSED = 6


class RolldeckError(Exception):
    """Base of rolldeck's own errors."""


class InputError(RolldeckError):
    """Bad user input: names the file, the 1-based line (when known) and the field."""

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.file = file
        self.line = line
        self.field = field

    def __str__(self) -> str:
        where = ""
        if self.file:
            where = self.file
            if self.line is not None:
                where += f":{self.line}"
            where += ": "
        field = f"{self.field}: " if self.field else ""
        return f"{where}{field}{self.message}"


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` when a close match exists, else ``""``."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""
