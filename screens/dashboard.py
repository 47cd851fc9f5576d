"""The dashboard: the whole rollout at a glance, redrawn once per frame from the view."""

from __future__ import annotations

from collections import deque

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Footer, Input

from console.core.text import printable
from screens.changes import Changes
from screens.context import ConsoleContext
from screens.format import FAILING_STATES
from screens.messages import LogSourceChanged, OpenHostDetail
from screens.rows import SORT_MODES
from screens.widgets.host_table import HostTable
from screens.widgets.palette_styles import theme_styles
from screens.widgets.panels import ErrorRatePanel, Timeline
from screens.widgets.stream_log import HOST_SEPARATOR, StreamLog
from screens.widgets.summary import FleetProgress, RolloutHeader, StatusLine, TrafficLine

ALL_HOSTS_LINES = 2000


class DashboardScreen(Screen[None]):
    """Header, progress, host table, error rate, timeline, log, status line."""

    BINDINGS = [
        Binding("enter", "host_detail", "Detail", id="host-detail", show=False,
                tooltip="Open the selected host: steps, output, health, full log"),
        Binding("l", "toggle_log", "Log", id="log-source",
                tooltip="Log panel: the selected host, or all hosts interleaved"),
        Binding("slash", "filter", "Filter", id="filter", key_display="/",
                tooltip="Filter hosts by name, group, pool, state, version, step or b<N>"),
        Binding("f", "failing_first", "Failing", id="failing-first",
                tooltip="Put failed hosts at the top of the table"),
        Binding("s", "cycle_sort", "Sort", id="sort", show=False,
                tooltip="Sort by batch, name, state, error rate or (blue-green) pool"),
        Binding("g", "follow_log", "Follow log", id="follow-log", show=False,
                tooltip="Scroll the log to the end and follow new lines"),
        Binding("escape", "clear_filter", "Clear filter", id="clear-filter", show=False,
                tooltip="Clear the host filter"),
    ]  # fmt: skip

    def __init__(self, ctx: ConsoleContext) -> None:
        super().__init__(id="dashboard")
        self.ctx = ctx
        self.log_host: str | None = None  # None: all hosts
        self._all_lines: deque[str] = deque(maxlen=ALL_HOSTS_LINES)
        self._prefix_width = 8
        self._following = True
        self.note = ""  # shown in the header (e.g. "pausing to quit")
        self.ready = False  # widgets composed and mounted: frame updates may start

    def compose(self) -> ComposeResult:
        yield RolloutHeader(id="header")
        yield FleetProgress(id="progress")
        yield TrafficLine(id="traffic")
        yield Input(
            placeholder="filter: name, group, pool, state, version, step, b<N>", id="filter"
        )
        yield HostTable(id="hosts")
        with Horizontal(id="panels"):
            yield ErrorRatePanel(id="rates")
            yield Timeline(id="timeline")
        pattern = None
        spec = self.ctx.spec
        if spec is not None and spec.logs is not None:
            pattern = spec.logs.error_pattern
        yield StreamLog(id="log", error_pattern=pattern, max_lines=ALL_HOSTS_LINES)
        yield StatusLine(id="status")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        spec = self.ctx.spec
        rates = self.query_one(ErrorRatePanel)
        table = self.query_one(HostTable)
        if spec is not None and spec.error_rate is not None:
            rates.threshold = spec.error_rate.max
            rates.vs_baseline = spec.error_rate.max_vs_baseline
            table.set_threshold(spec.error_rate.max)
        self.query_one("#filter", Input).display = False
        self.query_one(TrafficLine).display = False
        judged = spec is not None and spec.analysis is not None
        what = "Analysis" if judged else "Error rate"
        rates.border_title = f"{what}: new vs baseline"
        self.query_one(Timeline).border_title = "Timeline"
        self._apply_styles()
        self.app.theme_changed_signal.subscribe(self, lambda _t: self._on_theme())
        self.redraw_all()
        table.focus()
        self.ready = True

    def on_unmount(self) -> None:
        self.ready = False

    # -- frame updates (called by the app's tick) ------------------------------------

    @property
    def table(self) -> HostTable:
        return self.query_one(HostTable)

    def redraw_all(self) -> None:
        view = self.ctx.view
        self._prefix_width = min(16, max((len(n) for n in view.hosts), default=8))
        self.table.sync(view, None, plan=True)
        self.query_one(ErrorRatePanel).show(view)
        self.query_one(Timeline).load(view)
        self._all_lines.clear()
        self._load_log()
        self.redraw_header()
        self._titles()

    def apply(self, changes: Changes) -> None:
        view = self.ctx.view
        if changes.plan:
            self._prefix_width = min(16, max((len(n) for n in view.hosts), default=8))
        if changes.shift:  # the pools or the live pool: every host's row
            self.table.sync(view, None, plan=changes.plan)
        elif changes.hosts or changes.plan:
            self.table.sync(view, changes.hosts, plan=changes.plan)
        if changes.traffic:
            self.query_one(TrafficLine).show(view)
        if changes.rates:
            self.query_one(ErrorRatePanel).show(view)
        if changes.timeline:
            self.query_one(Timeline).add(changes.timeline)
        if changes.log_lines:
            self._write_log(changes.log_lines)
        if changes.header:
            self.query_one(FleetProgress).show(view)
        self._titles()

    def redraw_header(self) -> None:
        self.query_one(RolloutHeader).show(
            self.ctx.view, self.ctx.clock(), read_only=self.ctx.read_only, note=self.note
        )
        self.query_one(FleetProgress).show(self.ctx.view)
        self.query_one(TrafficLine).show(self.ctx.view)

    def status(self, **figures: object) -> None:
        self.query_one(StatusLine).show(read_only=self.ctx.read_only, **figures)  # type: ignore[arg-type]

    # -- log panel --------------------------------------------------------------------

    def _write_log(self, lines: list[tuple[str, str]]) -> None:
        w = self._prefix_width
        formatted = [f"{host[:w]:<{w}}{HOST_SEPARATOR}{line}" for host, line in lines]
        self._all_lines.extend(formatted)
        log = self.query_one("#log", StreamLog)
        if self.log_host is None:
            log.write_lines(formatted[-ALL_HOSTS_LINES:])
        else:
            mine = [line for host, line in lines if host == self.log_host]
            if mine:
                log.write_lines(mine)

    def _load_log(self) -> None:
        log = self.query_one("#log", StreamLog)
        if self.log_host is None:
            log.replace(self._all_lines)
        else:
            h = self.ctx.view.hosts.get(self.log_host)
            log.replace(h.log if h is not None else ())

    def set_log_host(self, host: str | None) -> None:
        if host == self.log_host:
            return
        self.log_host = host
        self._load_log()
        self._titles()
        self.post_message(LogSourceChanged(host))

    def _titles(self) -> None:
        log = self.query_one("#log", StreamLog)
        following = log.following
        source = "all hosts" if self.log_host is None else self.log_host
        mode = "following" if following else "scrolled back · g to follow"
        log.border_title = Text(printable(f"Log · {source} · {mode}"))  # a str is markup
        table = self.table
        bits = [f"Hosts {table.row_count}/{len(self.ctx.view.hosts)}", f"sort: {table.sort_mode}"]
        if table.failing_first:
            bits.append("failing first")
        if table.filter_text:
            bits.append(f"filter: {table.filter_text}")
        table.border_title = Text(printable(" · ".join(bits)))

    def _apply_styles(self) -> None:
        st = theme_styles(self.app)
        self.query_one("#log", StreamLog).set_line_styles(st["log-error"], st["log-host"])
        self.query_one(Timeline).set_line_styles(st["host-failed"], st["muted"])

    def _on_theme(self) -> None:
        if not self.ready:
            return
        self._apply_styles()
        self.table.rebuild()
        self.query_one(ErrorRatePanel).refresh_chart()
        self.redraw_header()

    # -- actions ----------------------------------------------------------------------

    def action_host_detail(self) -> None:
        host = self.table.cursor_host()
        if host is not None:
            self.post_message(OpenHostDetail(host))

    def on_host_table_selected(self, event: HostTable.Selected) -> None:
        event.stop()
        self.post_message(OpenHostDetail(event.host))

    def on_host_table_highlighted(self, event: HostTable.Highlighted) -> None:
        if self.log_host is not None:
            self.set_log_host(event.host)

    def on_host_table_sort_changed(self, event: HostTable.SortChanged) -> None:
        self._titles()

    def action_toggle_log(self) -> None:
        if self.log_host is None:
            self.set_log_host(self.table.cursor_host())
        else:
            self.set_log_host(None)

    def action_follow_log(self) -> None:
        self.query_one("#log", StreamLog).follow()
        self._titles()

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.display = True
        box.value = self.table.filter_text
        box.focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.table.set_filter(event.value)
        self._titles()

    @on(Input.Submitted, "#filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        box = self.query_one("#filter", Input)
        box.display = bool(self.table.filter_text)
        self.table.focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.value = ""
        box.display = False
        self.table.set_filter("")
        self.table.focus()
        self._titles()

    def action_failing_first(self) -> None:
        table = self.table
        table.set_failing_first(not table.failing_first)
        if table.failing_first:
            failing = [
                n for n in table.shown_hosts if self.ctx.view.hosts[n].state in FAILING_STATES
            ]
            if failing:
                table.select_host(failing[0])
        self._titles()

    def action_cycle_sort(self) -> None:
        table = self.table
        view = self.ctx.view
        pools = view.has_pools  # no pools: no pool order to offer
        modes = [m for m in SORT_MODES if pools or m != "pool"]
        at = modes.index(table.sort_mode) if table.sort_mode in modes else -1
        table.set_sort(modes[(at + 1) % len(modes)])
        self._titles()
