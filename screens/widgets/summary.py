"""The one-line widgets at the top and bottom: rollout header, fleet progress, status."""

from __future__ import annotations

from rich.style import Style
from rich.text import Text
from textual.widgets import Static

from console.core.state import RolloutView
from console.core.text import printable
from screens.format import (
    batch_position,
    bucket_counts,
    estimate_left,
    format_duration,
    old_versions,
    state_label,
)
from screens.traffic import traffic_summary
from screens.widgets.palette_styles import theme_styles


class RolloutHeader(Static):
    """service  old -> new  env  batch k/n  STATE  elapsed  ~left."""

    def show(self, view: RolloutView, now: float, *, read_only: bool, note: str = "") -> None:
        st = theme_styles(self.app)
        t = Text(no_wrap=True, overflow="ellipsis")
        # service, versions and environment come from the spec and the hosts
        t.append(printable(view.service or "rolldeck"), Style(bold=True))
        t.append(printable(f"  {old_versions(view)} → {view.version or '?'}"))
        if view.environment:
            t.append(printable(f"  [{view.environment}]"), st["accent"])
        t.append(f"  {batch_position(view)}  ")
        word, var = state_label(view)
        t.append(f" {word} ", st[var] + Style(bold=True, reverse=True))
        if view.gate is not None and view.gate.until is not None and view.outcome is None:
            t.append(f" gate {format_duration(view.gate.until - now)}", st["batch-active"])
        answer = view.gate_answer
        if answer is not None and view.gate is not None and view.outcome is None:
            said = {"go": "go", "not_yet": "not yet", "no": "NO"}.get(answer.answer, answer.answer)
            t.append(printable(f"  asked: {said} (poll {answer.poll})"), st["muted"])
        if view.started is not None:
            end = view.finished if view.finished is not None else now
            t.append(f"  ⏱ {format_duration(end - view.started)}", st["muted"])
        left = estimate_left(view, now)
        if left is not None:
            t.append(f"  ~{format_duration(left)} left", st["muted"])
        if read_only:
            t.append("  READ-ONLY", st["batch-active"] + Style(bold=True))
        if note:
            t.append(printable(f"  {note}"), st["batch-active"] + Style(bold=True))
        self.update(t, layout=False)  # fixed size: no relayout per frame


class FleetProgress(Static):
    """A stacked bar of host states, with the counts in words beside it."""

    _view: RolloutView | None = None

    def on_resize(self) -> None:
        # the bar is drawn for the width it has: redraw when that changes (the first
        # frame may come before the layout has settled, and the clock may be fixed)
        if self._view is not None:
            self.show(self._view)

    def show(self, view: RolloutView) -> None:
        self._view = view
        st = theme_styles(self.app)
        buckets = bucket_counts(view)
        total = sum(n for _, n, _ in buckets) or 1
        done = total - buckets[0][1] - buckets[1][1]
        label = Text(no_wrap=True)
        label.append(f" {done}/{total} done ", Style(bold=True))
        for name, n, var in buckets:
            if n or name in ("pending", "healthy", "failed"):
                label.append(f" {n} {name}", st[var])
        width = max(10, self.size.width - label.cell_len - 1)
        bar = Text(no_wrap=True)
        used = 0
        # draw finished buckets first so the bar grows from the left
        order = (2, 3, 4, 5, 1, 0)
        for i in order:
            _, n, var = buckets[i]
            cells = round(n / total * width)
            cells = min(cells, width - used)
            char = "░" if i == 0 else ("▒" if i == 1 else "█")
            bar.append(char * cells, st[var])
            used += cells
        if used < width:
            bar.append("░" * (width - used), st["host-pending"])
        bar.append(label)
        self.update(bar, layout=False)  # fixed size: no relayout per frame


class TrafficLine(Static):
    """Where the backend's traffic goes as a whole (blue-green pools, a weighted
    canary's share): shown from the first whole-backend move on."""

    def show(self, view: RolloutView) -> None:
        segments = traffic_summary(view)
        if not segments:
            if self.display:
                self.display = False
            return
        st = theme_styles(self.app)
        t = Text(no_wrap=True, overflow="ellipsis")
        for text, var in segments:
            t.append(text, st[var] if var else Style())
        if not self.display:
            self.display = True  # one relayout, when the line first appears
        self.update(t, layout=False)


class StatusLine(Static):
    """The console's own cost, so an operator can tell when it is the bottleneck."""

    def show(
        self,
        *,
        cpu: float,
        ui_cpu: float,
        rss_mb: float,
        connections: int | None,
        events_per_s: float,
        dropped: int,
        read_only: bool,
        hint: str = "",
    ) -> None:
        st = theme_styles(self.app)
        t = Text(no_wrap=True, overflow="ellipsis")
        t.append(f" console cpu {cpu:3.0f}% (ui {ui_cpu:3.0f}%)  mem {rss_mb:4.0f} MB", st["muted"])
        conns = "-" if connections is None else str(connections)
        t.append(f"  ssh {conns} open", st["muted"])
        t.append(f"  {events_per_s:6.0f} ev/s", st["muted"])
        if dropped:
            t.append(f"  dropped {dropped}", st["batch-active"])
        if read_only:
            t.append("  read-only: control keys disabled", st["batch-active"])
        if hint:
            t.append(f"  {hint}", st["accent"])
        self.update(t, layout=False)  # fixed size: no relayout per frame
