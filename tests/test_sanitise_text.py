"""The one sanitiser, console.core.text.printable: what it shows and what it keeps."""

from __future__ import annotations

import pytest

from console.core.text import printable

CORPUS = [
    ("\x1b]0;pwned\x07", "\\x1b]0;pwned\\x07"),  # OSC title change
    ("\x1b[2J", "\\x1b[2J"),  # clear screen
    ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),  # colours
    ("a\x9b31mb", "a\\x9b31mb"),  # C1 CSI
    ("ok\rFORGED", "ok\\rFORGED"),  # bare CR: line forging
    ("nul\x00", "nul\\x00"),
    ("del\x7f", "del\\x7f"),
    ("\u202eevil", "\\u202eevil"),  # bidi override
    ("\u2066iso\u2069", "\\u2066iso\\u2069"),  # bidi isolates
    ("zero\u200bwidth\ufeff", "zero\\u200bwidth\\ufeff"),
    ("line\u2028sep", "line\\u2028sep"),
    ("bad \udcff byte", "bad \\xff byte"),  # surrogateescape'd byte: would not encode
    ("[bold red]x[/] [link=http://evil]y[/link]", "[bold red]x[/] [link=http://evil]y[/link]"),
]


@pytest.mark.parametrize(("raw", "shown"), CORPUS)
def test_corpus(raw: str, shown: str) -> None:
    assert printable(raw) == shown
    assert printable(shown) == shown  # idempotent: escapes are plain text
    assert printable(raw).isprintable()


def test_untouched_text_is_the_same_object() -> None:
    text = "web-01 healthy: 2.4.1 → 2.4.2, é日本 ✔"
    assert printable(text) is text


def test_newlines_and_tabs() -> None:
    assert printable("a\nb") == "a\\nb"  # a one-line field stays on one line
    assert printable("a\r\nb\nc\r", multiline=True) == "a\nb\nc\\r"
    assert printable("a\tb") == "a       b"
    assert printable("x\n\ty", multiline=True) == "x\n        y"
    assert printable("one\x1b[2Ktwo\n", multiline=True) == "one\\x1b[2Ktwo\n"
