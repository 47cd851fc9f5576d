"""Text rules shared by every front end and the engine: one way to shorten, and one
way to make text from outside safe for a terminal.

:func:`printable` is the one sanitiser. Host names, vars, versions, a command's
output, file contents quoted in errors: anything a remote host or an input file
wrote passes through it before it reaches a terminal, so a host cannot change the
operator's window title (OSC ``ESC ] 0 ;``), clear the screen (``ESC [ 2 J``), colour
or hide text, forge a line with a bare carriage return, or reorder what is shown with
a bidi override (U+202E). Each such character is shown visibly as its escape
(``\\x1b``, ``\\x07``, ``\\x9b``, ``\\u202e``), so the operator sees that something
odd was sent, and the escapes keep their place in the text.
"""

from __future__ import annotations

import re

ELLIPSIS = "…"

# Everything a terminal may act on, or that changes how the text around it reads:
# C0 controls but tab and newline (handled below), DEL, the C1 controls (U+0080 to
# U+009F: U+009B is a one-character CSI on many terminals), the bidi marks, embeddings,
# overrides and isolates, invisible format characters (zero widths, word joiner, BOM,
# interlinear annotation), the line and paragraph separators, and lone surrogates
# (bytes that were not UTF-8, decoded with ``surrogateescape``; printing one raw
# would raise UnicodeEncodeError).
_UNSAFE = re.compile(
    "[\\x00-\\x08\\x0b-\\x1f\\x7f-\\x9f\\u061c\\u180e\\u200b-\\u200f\\u2028-\\u202e"
    "\\u2060-\\u2064\\u2066-\\u206f\\ufeff\\ufff9-\\ufffb\\ud800-\\udfff]"
)
_CRLF = re.compile("\\r+\\n")
TAB_SIZE = 8


def _visible(match: re.Match[str]) -> str:
    char = match.group()
    if char == "\r":
        return "\\r"
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}"


def printable(text: str, *, multiline: bool = False) -> str:
    """``text`` with every control character, escape sequence introducer and bidi or
    invisible format character shown as its escape (``\\x1b``), safe to write to a
    terminal. Tabs become spaces (to the next multiple of 8 columns).

    ``multiline``: the text is several lines by design (a command's output, a log
    tail): newlines are kept and ``\\r\\n`` reads as a newline; a bare ``\\r``, which
    would let a line overwrite the one before it, is still shown as ``\\r``. Without
    it, a newline is shown as ``\\n`` too: a one-line field keeps to one line.

    Text with nothing to escape is returned as is (one regex scan).
    """
    if multiline:
        if "\r" in text:
            text = _CRLF.sub("\n", text)
    elif "\n" in text:
        text = text.replace("\n", "\\n")
    if _UNSAFE.search(text) is not None:
        text = _UNSAFE.sub(_visible, text)
    if "\t" in text:
        text = text.expandtabs(TAB_SIZE)
    return text


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
