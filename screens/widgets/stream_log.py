"""Bounded, follow-mode log views built on Textual's ``Log``.

``Log`` keeps plain strings and renders only visible lines, so it takes thousands of
lines a second when fed once per frame with ``write_lines``; it also only scrolls to
the end if the view was already at the end, which is exactly "follow until the user
scrolls up" (``RichLog`` would jump back down: textual#6311). Colour comes from a
highlighter: error lines (the spec's ``error_pattern``) in the error colour, the host
prefix dimmed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Self

from rich.highlighter import Highlighter
from rich.style import Style
from rich.text import Text
from textual import events
from textual.geometry import Size
from textual.widgets import Log

from console.core.text import printable

DEFAULT_ERROR_PATTERN = r"\b(ERROR|CRITICAL|FATAL|Traceback)\b"
HOST_SEPARATOR = " │ "


class ErrorLineHighlighter(Highlighter):
    """Whole line in ``error`` style when it matches; ``host │`` prefix in ``prefix``."""

    def __init__(self, pattern: str | None = None) -> None:
        self.pattern = re.compile(pattern or DEFAULT_ERROR_PATTERN)
        self.error = Style(bold=True)
        self.prefix = Style(dim=True)

    def highlight(self, text: Text) -> None:
        plain = text.plain
        cut = plain.find(HOST_SEPARATOR)
        if 0 < cut < 40:
            text.stylize(self.prefix, 0, cut + len(HOST_SEPARATOR))
        if self.pattern.search(plain):
            start = cut + len(HOST_SEPARATOR) if 0 < cut < 40 else 0
            text.stylize(self.error, start)


class StreamLog(Log):
    """A ``Log`` with an error highlighter, a line cap and a follow flag."""

    def __init__(
        self,
        *,
        max_lines: int = 2000,
        error_pattern: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(highlight=True, max_lines=max_lines, id=id, classes=classes)
        self.highlighter = ErrorLineHighlighter(error_pattern)
        self._pinned = True  # at the end: stays at the end when resized
        self._last_size = Size(0, 0)

    # Every line shown here is from outside (a host's logs, names, an event's words):
    # the one sanitiser shows control characters and escapes instead of sending them
    # (Textual's Log replaces only U+0000-U+0014: ESC, C1 and bidi would pass).

    def write_lines(self, lines: Iterable[str], scroll_end: bool | None = None) -> Self:
        return super().write_lines([printable(line) for line in lines], scroll_end)

    def write(self, data: str, scroll_end: bool | None = None) -> Self:
        return super().write(printable(data, multiline=True), scroll_end)

    def watch_scroll_y(self, old_value: float, new_value: float) -> None:
        super().watch_scroll_y(old_value, new_value)
        self._pinned = new_value >= self.max_scroll_y

    def on_resize(self, event: events.Resize) -> None:
        # only a change of the widget's own size (not of its content) re-pins the end
        if event.size != self._last_size and self._pinned:
            self.call_after_refresh(self._to_end)
        self._last_size = event.size

    def _to_end(self) -> None:
        if self._pinned:  # still: the user may have scrolled since this was queued
            self.scroll_end(animate=False, immediate=True, x_axis=False)

    @property
    def following(self) -> bool:
        """True while new lines scroll into view (the user has not scrolled up)."""
        return self.is_vertical_scroll_end or self.max_scroll_y == 0

    def set_line_styles(self, error: Style, prefix: Style) -> None:
        hl = self.highlighter
        assert isinstance(hl, ErrorLineHighlighter)
        hl.error = error + Style(bold=True)
        hl.prefix = prefix
        self.notify_style_update()  # drops the rendered-line cache
        self.refresh()

    def replace(self, lines: Iterable[str]) -> None:
        """Show exactly ``lines`` (switching source), following from the end."""
        self.clear()
        self.write_lines(list(lines)[-(self.max_lines or 2000) :], scroll_end=True)
        # before the first layout the widget has no height to scroll by: again after it
        self._pinned = True
        self.call_after_refresh(self._to_end)

    def follow(self) -> None:
        self._pinned = True
        self._to_end()
