"""One host in full: every step with command, exit code, duration and output; health
history; the whole log ring with search. ``R`` retries the host, ``S`` skips it."""

from __future__ import annotations

from rich.style import Style
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Input, Static

from console.core.commands import Command
from console.core.state import HostView, StepRecord
from console.core.text import printable
from screens.changes import Changes
from screens.context import ConsoleContext
from screens.format import (
    HOST_STATE_STYLE,
    format_duration,
    format_rate,
    health_strip,
    sparkline,
)
from screens.widgets.palette_styles import theme_styles
from screens.widgets.stream_log import StreamLog

_STATUS_VAR = {
    "ok": "host-healthy",
    "running": "host-running",
    "failed": "host-failed",
    "timeout": "host-failed",
    "error": "host-failed",
    "cancelled": "host-frozen",
}


class HostDetailScreen(Screen[None]):
    BINDINGS = [
        Binding(
            "R",
            "retry",
            "Retry",
            id="retry-host",
            tooltip="Retry this host (re-runs its deploy in a later batch)",
        ),
        Binding(
            "S",
            "skip",
            "Skip",
            id="skip-host",
            tooltip="Skip this host: it counts as skipped, not failed",
        ),
        Binding(
            "slash",
            "search",
            "Search",
            id="search-log",
            key_display="/",
            tooltip="Show only log lines containing the text",
        ),
        Binding("escape", "back", "Back", id="back", tooltip="Back to the dashboard"),
    ]

    def __init__(self, ctx: ConsoleContext, host: str) -> None:
        super().__init__(id="host-detail")
        self.ctx = ctx
        self.host = host
        self.query_text = ""
        self._shown_step = -1
        self._steps_sig: tuple[object, ...] = ()

    def compose(self) -> ComposeResult:
        yield Static(id="detail-header")
        with Horizontal(id="detail-top"):
            yield DataTable(id="steps", cursor_type="row", zebra_stripes=False)
            yield StreamLog(id="step-output", max_lines=500)
        yield Static(id="detail-health")
        yield Input(placeholder="search the log (Enter: keep, Esc: clear)", id="search")
        pattern = None
        spec = self.ctx.spec
        if spec is not None and spec.logs is not None:
            pattern = spec.logs.error_pattern
        yield StreamLog(id="host-log", error_pattern=pattern, max_lines=2000)
        yield Footer(compact=True, show_command_palette=False)

    @property
    def hv(self) -> HostView | None:
        return self.ctx.view.hosts.get(self.host)

    def on_mount(self) -> None:
        steps = self.query_one("#steps", DataTable)
        for label, key, width in (
            ("Step", "step", 12),
            ("Status", "status", 9),
            ("Exit", "exit", 4),
            ("Took", "took", 6),
            ("Command", "command", 40),
        ):
            steps.add_column(label, key=key, width=width)
        steps.border_title = "Steps"
        self.query_one("#step-output", StreamLog).border_title = "Output"
        self.query_one("#search", Input).display = False
        st = theme_styles(self.app)
        for log in self.query(StreamLog):
            log.set_line_styles(st["log-error"], st["log-host"])
        self.redraw()
        steps.focus()

    def redraw(self) -> None:
        self._header()
        self._steps(force=True)
        self._health()
        self._load_log()

    def apply(self, changes: Changes) -> None:
        if self.host not in changes.hosts and not changes.shift:
            return
        self._header()
        self._steps()
        self._health()
        mine = [line for host, line in changes.log_lines if host == self.host]
        q = self.query_text.lower()
        if q:
            mine = [line for line in mine if q in line.lower()]
        if mine:
            self.query_one("#host-log", StreamLog).write_lines(mine)

    # -- rendering ----------------------------------------------------------------------

    def _header(self) -> None:
        h = self.hv
        st = theme_styles(self.app)
        t = Text(no_wrap=True, overflow="ellipsis")
        if h is None:
            t.append(printable(f"{self.host}: not in this rollout"))
            self.query_one("#detail-header", Static).update(t)
            return
        symbol, word, var = HOST_STATE_STYLE[h.state]
        # Text, never markup; every text from outside through the one sanitiser
        t.append(printable(h.name), Style(bold=True))
        t.append(f"  {symbol} {word}", st[var] + Style(bold=True))
        batch = f"batch {h.batch + 1}" if h.batch is not None else "no batch"
        groups = ",".join(h.groups) or "-"
        t.append(printable(f"  {batch}  groups {groups}  {h.address}"), st["muted"])
        t.append("\n" + printable(f"version {h.previous_version or '?'} → {h.version or '?'}"))
        t.append(printable(f"  (target {self.ctx.view.version or '?'})"), st["muted"])
        if h.detail:
            t.append(
                "\n" + printable(h.detail), st["host-failed"] if var == "host-failed" else Style()
            )
        self.query_one("#detail-header", Static).update(t)

    def _steps(self, force: bool = False) -> None:
        h = self.hv
        table = self.query_one("#steps", DataTable)
        recs = h.steps if h is not None else []
        sig = tuple((r.name, r.status, r.exit_code, r.duration, len(r.output)) for r in recs)
        if sig == self._steps_sig and not force:
            return
        self._steps_sig = sig
        st = theme_styles(self.app)
        cursor = table.cursor_row
        table.clear()
        for i, r in enumerate(recs):
            name = f"↺ {r.name}" if r.rollback else r.name
            table.add_row(
                Text(printable(name)),  # a str cell would be read as Rich markup
                Text(r.status, style=st[_STATUS_VAR.get(r.status, "muted")]),
                "-" if r.exit_code is None else str(r.exit_code),
                format_duration(r.duration),
                Text(printable(r.command), no_wrap=True, overflow="ellipsis"),
                key=str(i),
            )
        if recs:
            row = min(cursor, len(recs) - 1) if self._shown_step >= 0 else len(recs) - 1
            table.move_cursor(row=row, animate=False)
            self._show_output(row, force=True)

    def _show_output(self, index: int, force: bool = False) -> None:
        h = self.hv
        if h is None or not (0 <= index < len(h.steps)):
            return
        if index == self._shown_step and not force:
            return
        self._shown_step = index
        rec: StepRecord = h.steps[index]
        out = self.query_one("#step-output", StreamLog)
        out.border_title = Text(printable(f"Output · {rec.name}"))  # a str is markup
        # a multi-line command reads as its lines (StreamLog makes each printable)
        out.replace([*(f"$ {c}" for c in rec.command.splitlines() or [""]), *rec.output])

    def _health(self) -> None:
        h = self.hv
        if h is None:
            return
        st = theme_styles(self.app)
        t = Text(no_wrap=True, overflow="ellipsis")
        status = h.health_status or ("not probed yet" if h.health_ok is None else "")
        t.append("health ", Style(bold=True))
        t.append(
            status,
            st["host-healthy" if h.health_ok else "host-failed"]
            if h.health_ok is not None
            else st["muted"],
        )
        t.append(f"  {health_strip(h.health_history, 30)}", st["muted"])
        if h.health_detail:
            t.append(printable(f"  {h.health_detail}"), st["muted"])
        if h.traffic or h.pool or h.weight is not None:
            t.append_text(self._traffic(h, st))
        t.append("\nerror rate ", Style(bold=True))
        t.append(
            f"{format_rate(h.error_rate, h.error_rate_unit)} {sparkline(h.error_rate_history, 20)}"
        )
        load = "-" if h.load1 is None else f"{h.load1:.2f}"
        mem = "-" if h.mem_used_pct is None else f"{h.mem_used_pct:.0f}%"
        disk = "-" if h.disk_used_pct is None else f"{h.disk_used_pct:.0f}%"
        t.append(f"   load {load}  mem {mem}  disk {disk}", st["muted"])
        self.query_one("#detail-health", Static).update(t)

    def _traffic(self, h: HostView, st: dict[str, Style]) -> Text:
        """``traffic ready  weight 19  pool blue (LIVE)``: its server in the load
        balancer and, in blue-green, its pool and whether that pool has the traffic."""
        t = Text("\ntraffic ", Style(bold=True))
        kept = " (kept drained: the host failed)" if h.traffic_kept else ""
        t.append(
            printable(h.traffic or "not read yet") + kept,
            st["host-failed" if h.traffic_kept else "muted"],
        )
        if h.weight is not None:
            t.append(f"  weight {h.weight}", st["muted"])
        if h.pool:
            view = self.ctx.view
            live = h.pool == view.live_pool
            t.append("  pool ", st["muted"])
            t.append(printable(h.pool))
            if view.live_pool:
                t.append(" (LIVE)" if live else " (idle)", st["host-healthy" if live else "muted"])
        return t

    def _load_log(self) -> None:
        h = self.hv
        lines = list(h.log) if h is not None else []
        q = self.query_text.lower()
        if q:
            lines = [line for line in lines if q in line.lower()]
        log = self.query_one("#host-log", StreamLog)
        log.replace(lines)
        title = f"Log · {self.host}"
        if q:
            title += f" · search: {self.query_text} ({len(lines)} lines)"
        log.border_title = Text(printable(title))  # a str border title is markup

    # -- events and actions -------------------------------------------------------------

    @on(DataTable.RowHighlighted, "#steps")
    def _step_highlighted(self, event: DataTable.RowHighlighted) -> None:
        self._show_output(event.cursor_row)

    def action_retry(self) -> None:
        self.ctx.send(Command("retry", reason="console", args={"host": self.host}))

    def action_skip(self) -> None:
        self.ctx.send(Command("skip", reason="console", args={"host": self.host}))

    def action_search(self) -> None:
        box = self.query_one("#search", Input)
        box.display = True
        box.value = self.query_text
        box.focus()

    @on(Input.Changed, "#search")
    def _search_changed(self, event: Input.Changed) -> None:
        self.query_text = event.value
        self._load_log()

    @on(Input.Submitted, "#search")
    def _search_done(self) -> None:
        self.query_one("#search", Input).display = bool(self.query_text)
        self.query_one("#steps", DataTable).focus()

    def action_back(self) -> None:
        box = self.query_one("#search", Input)
        if box.has_focus:
            box.value = ""
            box.display = False
            self.query_one("#steps", DataTable).focus()
            return
        self.dismiss()
