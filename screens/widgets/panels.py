"""Side panels: the analysis (each metric new vs baseline, and the error-rate chart)
and the event timeline."""

from __future__ import annotations

import textwrap
from collections import deque
from collections.abc import Iterable

from rich.style import Style
from rich.text import Text
from textual import events
from textual.widgets import Static

from console.core import events as ev
from console.core.describe import GLYPHS, format_metric
from console.core.state import RolloutView
from screens.chart import BASE_GLYPH, NEW_GLYPH, THRESHOLD_GLYPH, plot
from screens.describe import describe
from screens.format import clock_time, format_rate
from screens.widgets.palette_styles import theme_styles
from screens.widgets.stream_log import StreamLog


class ErrorRatePanel(Static):
    """The analysis panel: each ``analysis:`` metric's last judgement (new cohort vs
    baseline, its bounds, the verdict) on top, then the new version vs baseline error
    rate over time, with the configured maximum, in the rows left."""

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.threshold: float | None = None
        self.vs_baseline: float | None = None
        self._view: RolloutView | None = None

    def show(self, view: RolloutView) -> None:
        self._view = view
        self.refresh_chart()

    def on_resize(self) -> None:
        self.refresh_chart()

    def refresh_chart(self) -> None:
        view = self._view
        if view is None:
            return
        st = theme_styles(self.app)
        new = view.cohort_rates.get("cohort:new", ())
        base = view.cohort_rates.get("cohort:baseline", ())
        t = Text(no_wrap=True, overflow="crop")
        metrics = list(view.analysis.values())
        for sample in metrics:
            t.append_text(_metric_line(sample, st))
            t.append("\n")
        if metrics and not (new or base):  # judged by Prometheus only: no chart to draw
            t.rstrip()
            self.update(t, layout=False)
            return
        unit = view.error_rate_unit
        threshold = self.threshold if unit == "ratio" else None
        axis = 6
        width = max(4, self.content_size.width - axis)
        height = max(2, self.content_size.height - 1 - len(metrics))
        grid, top = plot(new, base, threshold, width, height)
        for i, row in enumerate(grid):
            label = format_rate(top, unit) if i == 0 else ("0" if i == len(grid) - 1 else "")
            t.append(f"{label:>5}┤", st["muted"])
            for char, var in row:
                t.append(char, st[var] if var else Style())
            t.append("\n")
        legend = Text(no_wrap=True, overflow="ellipsis")
        legend.append(
            f"{NEW_GLYPH} new {format_rate(new[-1] if new else None, unit)}", st["series-new"]
        )
        legend.append(
            f"  {BASE_GLYPH} base {format_rate(base[-1] if base else None, unit)}",
            st["series-baseline"],
        )
        if threshold is not None:
            legend.append(f"  {THRESHOLD_GLYPH} max {format_rate(threshold)}", st["threshold"])
        if self.vs_baseline is not None:
            legend.append(f"  ≤{self.vs_baseline:g}x base", st["muted"])
        t.append(legend)
        self.update(t, layout=False)  # fixed size: no relayout per frame


_VERDICT = {"pass": ("✔", "success"), "fail": ("✖", "error"), "no_data": ("?", "warning")}


def _metric_line(sample: ev.AnalysisSample, st: dict[str, Style]) -> Text:
    """``error-ratio  new 0.50% (1)  base 0.50% (11)  ≤5.0% ≤3x ✔``."""
    glyph, var = _VERDICT.get(sample.verdict, ("?", "warning"))
    line = Text(no_wrap=True, overflow="ellipsis")
    line.append(f"{glyph} ", st[var])
    line.append(f"{sample.metric[:14]:<14} ")
    line.append(
        f"new {format_metric(sample.new_value, sample.unit)} ({sample.new_hosts})",
        st["series-new"],
    )
    line.append(
        f"  base {format_metric(sample.baseline_value, sample.unit)} ({sample.baseline_hosts})",
        st["series-baseline"],
    )
    limits = []
    if sample.max is not None:
        limits.append(f"≤{format_metric(sample.max, sample.unit)}")
    if sample.max_vs_baseline is not None:
        limits.append(f"≤{sample.max_vs_baseline:g}x")
    if limits:
        line.append("  " + " ".join(limits), st["threshold"])
    return line


# Lines in the error colour: a failure's glyph (host, rollback, preflight, outcome) or
# a refused command.
_CRITICAL = f"[{GLYPHS['failed']}{GLYPHS['rollback failed']}]|REFUSED"


class Timeline(StreamLog):
    """Batch started, host failed, threshold crossed, operator paused... newest last.

    Entries wrap under their text (a narrow terminal would cut "batch 1 done: 1 ok,
    0 fai"); the raw entries are kept so that a resize wraps them anew.
    """

    PER_FRAME = 60  # a burst (1,000 hosts failing at once) is summarised, not replayed
    KEEP = 1000
    INDENT = " " * 11  # under the text: past "HH:MM:SS ▶ "

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(max_lines=self.KEEP, id=id, error_pattern=_CRITICAL)
        self._entries: deque[str] = deque(maxlen=self.KEEP)
        self._wrap_at = 0  # 0: not laid out yet, nothing wrapped

    def add(self, events: Iterable[ev.Event]) -> None:
        items = list(events)
        lines: list[str] = []
        skipped = len(items) - self.PER_FRAME
        if skipped > 0:
            items = items[-self.PER_FRAME :]
            lines.append(f"{clock_time(items[0].ts)} … {skipped} more events (see journal)")
        lines.extend(_entry(e) for e in items)
        if lines:
            self._entries.extend(lines)
            self.write_lines(self._wrapped(lines))

    def load(self, view: RolloutView, keep: int = 300) -> None:
        from screens.changes import in_timeline

        events = [e for e in view.timeline if in_timeline(e)][-keep:]
        lines = [_entry(e) for e in events]
        self._entries = deque(lines, maxlen=self.KEEP)
        self.clear()
        self.write_lines(self._wrapped(lines), scroll_end=True)

    def on_resize(self, event: events.Resize) -> None:
        # (StreamLog's own on_resize runs too: Textual calls each class's handler)
        width = self.scrollable_content_region.width
        if width != self._wrap_at:
            self._wrap_at = width
            self.clear()
            self.write_lines(self._wrapped(list(self._entries)), scroll_end=True)

    def _wrapped(self, lines: list[str]) -> list[str]:
        width = self._wrap_at
        if width < 24:
            return lines
        out: list[str] = []
        for line in lines:
            if len(line) <= width:
                out.append(line)
            else:
                out.extend(
                    textwrap.wrap(
                        line, width, subsequent_indent=self.INDENT, break_on_hyphens=False
                    )
                    or [line]
                )
        return out


def _entry(event: ev.Event) -> str:
    """A timeline line: the time, the event's symbol and its sentence."""
    symbol, text, _var = describe(event)
    return f"{clock_time(event.ts)} {symbol} {text}"
