"""Text rules shared by every front end and the engine: one way to shorten."""

from __future__ import annotations

ELLIPSIS = "…"


def shorten(text: str, limit: int, *, squash: bool = False) -> str:
    """``text`` cut to at most ``limit`` characters, ending in an ellipsis when cut.

    ``squash`` first folds every run of whitespace (newlines included) into one
    space: a detail shown on one line must not carry a command's line breaks.
    """
    if squash:
        text = " ".join(text.split())
    if len(text) <= limit:
        return text
    return text[: max(0, limit - 1)] + ELLIPSIS
