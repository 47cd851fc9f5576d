"""The host table: one line per host, rendered from a per-row strip cache.

Why not ``DataTable``: any ``update_cell`` bumps a table-wide counter that keys its
render caches, so at 1,000 hosts changing every frame every visible cell was
re-rendered through Rich on every frame (a ~100 ms frame on this machine, and keys
queued behind it). Here a row is a single line built straight from segments and
cached per host; a frame re-builds only the rows whose cells changed, and the
compositor redraws only visible lines that were invalidated.

Rows are keyed by host name (stable across sorts and filters); the order is
re-computed only when something it depends on changed, and the cursor stays on the
same host.
"""

from __future__ import annotations

from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from console.core.state import HostView, RolloutView
from console.core.text import shorten
from screens.rows import (
    COLUMNS,
    DROP_ORDER,
    SORT_COLUMNS,
    SORT_MODES,
    SQUEEZE_ORDER,
    Cell,
    ColumnSpec,
    SortKey,
    host_cells,
    matches,
)
from screens.rows import sort_inputs as _sort_inputs
from screens.rows import sort_key as _sort_key
from screens.widgets.palette_styles import theme_styles

WIDE_AT = 110  # table width from which group and vitals columns are shown
GAP = 2  # spaces between columns
MIN_LOG_WIDTH = 12
RATE_WIDTH = 5  # the error rate's figure in its cell, before the sparkline
SPARK_WIDTH = 5  # the sparkline after it, in an unsqueezed column


GROUP_WIDE_AT = 150  # table width from which the group column gets room to be read
GROUP_WIDE = 18  # `eu-west,web,eu` says more than `eu-wes…`


def _base_width(column: ColumnSpec, table_width: int) -> int:
    if column.key == "group" and table_width >= GROUP_WIDE_AT:
        return GROUP_WIDE
    return column.width


def _row_width(cols: list[ColumnSpec], widths: dict[str, int]) -> int:
    """Cells used by a row: a leading space, the columns and the gaps between them."""
    return 1 + sum(widths[c.key] for c in cols) + GAP * max(0, len(cols) - 1)


def _squeeze(cols: list[ColumnSpec], widths: dict[str, int], width: int) -> list[ColumnSpec]:
    """Fit the columns into ``width`` (``widths`` is updated in place): squeeze, then
    drop; the columns kept. A table that still does not fit is cropped at the right."""
    base = dict(widths)
    for drop in (None, *DROP_ORDER):
        if drop is not None:
            cols = [c for c in cols if c.key != drop]
            widths.clear()
            widths.update({c.key: base[c.key] for c in cols})
        over = _row_width(cols, widths) - width
        specs = {c.key: c for c in cols}
        for key in SQUEEZE_ORDER:
            if over <= 0:
                break
            spec = specs.get(key)
            if spec is None or not spec.min_width:
                continue
            give = min(over, widths[key] - spec.min_width)
            if give > 0:
                widths[key] -= give
                over -= give
        if over <= 0:
            break
    return cols


def _fit(text: str, width: int) -> str:
    """``text`` in exactly ``width`` cells: cut by the one shortening rule, else padded."""
    return shorten(text, width).ljust(width)


class HostTable(ScrollView, can_focus=True):
    """Hosts in display order; driven by :meth:`sync`, never touched per event."""

    COMPONENT_CLASSES = {"host-table--header", "host-table--cursor"}
    DEFAULT_CSS = """
    HostTable { overflow-x: hidden; overflow-y: auto; }
    HostTable > .host-table--header { text-style: bold; }
    HostTable > .host-table--cursor { background: $block-cursor-background; }
    """
    BINDINGS = [
        Binding("up", "cursor_up", "Up", show=False, id="table-up", tooltip="Previous host"),
        Binding("down", "cursor_down", "Down", show=False, id="table-down", tooltip="Next host"),
        Binding("pageup", "page_up", "Page up", show=False, id="table-page-up",
                tooltip="A page of hosts up"),
        Binding("pagedown", "page_down", "Page down", show=False, id="table-page-down",
                tooltip="A page of hosts down"),
        Binding("home", "first", "First", show=False, id="table-first", tooltip="First host"),
        Binding("end", "last", "Last", show=False, id="table-last", tooltip="Last host"),
    ]  # fmt: skip

    class Highlighted(Message):
        """The cursor moved to ``host``."""

        def __init__(self, host: str) -> None:
            super().__init__()
            self.host = host

    class Selected(Message):
        """Enter or a click on ``host``."""

        def __init__(self, host: str) -> None:
            super().__init__()
            self.host = host

    class SortChanged(Message):
        """The operator sorted by clicking a column header."""

        def __init__(self, mode: str) -> None:
            super().__init__()
            self.mode = mode

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.sort_mode = "batch"
        self.failing_first = False
        self.filter_text = ""
        self.cursor = 0
        self._view: RolloutView | None = None
        self._ceiling: float | None = None
        self._columns: tuple[ColumnSpec, ...] = ()
        self._widths: tuple[int, ...] = ()
        self._col_index: tuple[int, ...] = ()
        self._log_width = 0
        self._spark_width = SPARK_WIDTH
        self._width = 0
        self._traffic = False  # the LB column shown (a load balancer moved a host)
        self._pools = False  # the Pool column shown (hosts in blue-green pools)
        self._scrolls = False  # laid out with room for the vertical scrollbar
        self._rows: list[str] = []  # host names, display order
        self._pos: dict[str, int] = {}
        self._cells: dict[str, tuple[Cell, ...]] = {}
        self._strips: dict[str, Strip] = {}
        self._sort_state: dict[str, SortKey] = {}
        self._order: dict[str, int] = {}
        self._styles: dict[str, Style] = {}

    # -- public API -------------------------------------------------------------------

    @property
    def row_count(self) -> int:
        return len(self._rows)

    @property
    def shown_hosts(self) -> list[str]:
        """Host names in display order."""
        return list(self._rows)

    def cursor_host(self) -> str | None:
        return self._rows[self.cursor] if 0 <= self.cursor < len(self._rows) else None

    def select_host(self, name: str) -> None:
        pos = self._pos.get(name)
        if pos is not None:
            self._move(pos)

    def set_sort(self, mode: str) -> None:
        if mode not in SORT_MODES:
            raise ValueError(mode)
        self.sort_mode = mode
        self._resort()

    def set_failing_first(self, on: bool) -> None:
        self.failing_first = on
        self._resort()

    def set_filter(self, text: str) -> None:
        self.filter_text = text.strip()
        view = self._view
        if view is None:
            return
        keep = self.cursor_host()
        self._rows = [n for n, h in view.hosts.items() if matches(h, self.filter_text)]
        self._resort(keep=keep)

    def set_threshold(self, ceiling: float | None) -> None:
        self._ceiling = ceiling

    def sync(self, view: RolloutView, hosts: set[str] | None, *, plan: bool = False) -> None:
        """Bring rows up to date: ``hosts`` are the dirty ones (None: all)."""
        first = self._view is None
        self._view = view
        if (
            first
            or plan
            or len(self._order) != len(view.hosts)
            or self._traffic != view.traffic
            or self._pools != view.has_pools
        ):
            self._order = {name: i for i, name in enumerate(view.hosts)}
            self.rebuild()
            return
        resort = False
        names = view.hosts.keys() if hosts is None else hosts
        filtering = bool(self.filter_text)
        for name in names:
            h = view.hosts.get(name)
            if h is None:
                continue
            shown = name in self._pos
            if filtering and shown != matches(h, self.filter_text):
                if shown:
                    self._rows.remove(name)
                else:
                    self._rows.append(name)
                self._cells.pop(name, None)
                self._strips.pop(name, None)
                resort = True
                continue
            if not shown:
                continue
            inputs = _sort_inputs(h, self.sort_mode)
            if self._sort_state.get(name) != inputs:
                self._sort_state[name] = inputs
                resort = True
            pos = self._pos[name]
            if not self._visible(pos):
                # off screen: forget the row; it is rebuilt if it scrolls into view
                self._cells.pop(name, None)
                self._strips.pop(name, None)
                continue
            cells = self._cells_for(h)
            if cells != self._cells.get(name):
                self._cells[name] = cells
                self._strips.pop(name, None)
                self.refresh_line(pos + 1)  # virtual line: the header is line 0
        if resort:
            self._resort()

    def rebuild(self) -> None:
        """Re-layout and re-render everything (theme, width or plan change)."""
        view = self._view
        if view is None:
            return
        keep = self.cursor_host()
        self._styles = theme_styles(self.app)
        self._layout(self.size.width)
        self._cells.clear()
        self._strips.clear()
        self._rows = [n for n, h in view.hosts.items() if matches(h, self.filter_text)]
        for name, h in view.hosts.items():
            self._sort_state[name] = _sort_inputs(h, self.sort_mode)
        self._resort(keep=keep)
        if keep is None:  # the first layout: the cursor on the first row as sorted
            self._move(0)

    # -- layout and rendering -------------------------------------------------------------

    def _layout(self, width: int) -> None:
        """Columns for this width: the last-log column takes what is left, and is
        dropped (the detail screen has it) rather than forcing a horizontal scroll;
        when even the rest does not fit, columns are squeezed to their minimum
        (``SQUEEZE_ORDER``) and only then dropped (``DROP_ORDER``)."""
        if width <= 0:
            width = max(40, self.app.size.width - 4)
        wide = width >= WIDE_AT
        view = self._view
        traffic = view is not None and view.traffic
        pools = view is not None and view.has_pools
        self._traffic = traffic
        self._pools = pools
        cols = [
            c
            for c in COLUMNS
            if (wide or not c.wide_only)
            and (traffic or not c.traffic_only)
            and (pools or not c.pool_only)
        ]
        fixed = sum(_base_width(c, width) + GAP for c in cols if c.key != "log") + 1
        log_width = width - fixed - 1
        if log_width < MIN_LOG_WIDTH:
            cols = [c for c in cols if c.key != "log"]
            log_width = 0
        widths = {c.key: log_width if c.key == "log" else _base_width(c, width) for c in cols}
        self._scrolls = self._will_scroll()
        if not log_width:
            # the scrollbar covers the right edge: squeeze what it would hide
            room = width - (self.styles.scrollbar_size_vertical if self._scrolls else 0)
            cols = _squeeze(cols, widths, room)
        self._columns = tuple(cols)
        self._log_width = log_width
        self._widths = tuple(widths[c.key] for c in cols)
        self._spark_width = max(1, min(SPARK_WIDTH, widths.get("err", 0) - RATE_WIDTH - 1))
        all_keys = [c.key for c in COLUMNS]
        self._col_index = tuple(all_keys.index(c.key) for c in cols)
        self._width = width

    def _cells_for(self, h: HostView) -> tuple[Cell, ...]:
        assert self._view is not None
        view = self._view
        return host_cells(
            h,
            view.version,
            self._ceiling,
            max(1, self._log_width),
            view.batch_index,
            live_pool=view.live_pool,
            spark_width=self._spark_width,
        )

    def _row_strip(self, name: str) -> Strip:
        strip = self._strips.get(name)
        if strip is not None:
            return strip
        cells = self._cells.get(name)
        if cells is None:
            assert self._view is not None
            cells = self._cells[name] = self._cells_for(self._view.hosts[name])
        base = self.rich_style
        styles = self._styles
        segs = [Segment(" ", base)]
        for i, width in zip(self._col_index, self._widths, strict=True):
            text, var = cells[i]
            style = base + styles[var] if var else base
            segs.append(Segment(_fit(text, width), style))
            segs.append(Segment(" " * GAP, base))
        strip = self._strips[name] = Strip(segs)
        return strip

    def _header_strip(self) -> Strip:
        style = self.rich_style + self.get_component_rich_style("host-table--header")
        sorted_col = {mode: col for col, mode in SORT_COLUMNS.items()}[self.sort_mode]
        segs = [Segment(" ", style)]
        for spec, width in zip(self._columns, self._widths, strict=True):
            label = spec.label + (" ▼" if spec.key == sorted_col else "")
            segs.append(Segment(_fit(label, width), style))
            segs.append(Segment(" " * GAP, style))
        return Strip(segs)

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        if y == 0:
            return self._header_strip().crop_extend(0, width, self.rich_style)
        pos = int(self.scroll_y) + y - 1
        if not (0 <= pos < len(self._rows)):
            return Strip.blank(width, self.rich_style)
        strip = self._row_strip(self._rows[pos])
        if pos == self.cursor:
            cursor = (
                self.get_component_rich_style("host-table--cursor")
                if self.has_focus
                else Style(underline=True)
            )
            strip = strip.apply_style(cursor)
        return strip.crop_extend(0, width, self.rich_style)

    def _will_scroll(self) -> bool:
        """More hosts than lines: the vertical scrollbar takes the right edge."""
        view = self._view
        return view is not None and len(view.hosts) + 1 > self.size.height

    def _visible(self, pos: int) -> bool:
        top = int(self.scroll_y)
        return top <= pos < top + max(1, self.size.height - 1)

    def _update_virtual_size(self) -> None:
        self.virtual_size = Size(self.size.width, len(self._rows) + 1)

    # -- order and cursor --------------------------------------------------------------

    def _resort(self, keep: str | None = None) -> None:
        view = self._view
        if view is None:
            return
        if keep is None:
            keep = self.cursor_host()
        key = _sort_key(self.sort_mode, self.failing_first, self._order)
        hosts = view.hosts
        self._rows.sort(key=lambda n: key(hosts[n]))
        self._pos = {n: i for i, n in enumerate(self._rows)}
        self._update_virtual_size()
        if keep is not None and keep in self._pos:
            self.cursor = self._pos[keep]
        else:
            self.cursor = min(self.cursor, max(0, len(self._rows) - 1))
        self._scroll_to_cursor()
        self.refresh()

    def _move(self, pos: int) -> None:
        if not self._rows:
            return
        pos = max(0, min(len(self._rows) - 1, pos))
        old = self.cursor
        self.cursor = pos
        self._scroll_to_cursor()
        self.refresh()
        if pos != old:
            self.post_message(self.Highlighted(self._rows[pos]))

    def _scroll_to_cursor(self) -> None:
        page = max(1, self.size.height - 1)
        top = int(self.scroll_y)
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False, immediate=True)
        elif self.cursor >= top + page:
            self.scroll_to(y=self.cursor - page + 1, animate=False, immediate=True)

    def action_cursor_up(self) -> None:
        self._move(self.cursor - 1)

    def action_cursor_down(self) -> None:
        self._move(self.cursor + 1)

    def action_page_up(self) -> None:
        self._move(self.cursor - max(1, self.size.height - 2))

    def action_page_down(self) -> None:
        self._move(self.cursor + max(1, self.size.height - 2))

    def action_first(self) -> None:
        self._move(0)

    def action_last(self) -> None:
        self._move(len(self._rows) - 1)

    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:  # on the border or a scrollbar
            return
        if offset.y == 0:  # the header: sort by the clicked column, when it is sortable
            x = 1
            for spec, width in zip(self._columns, self._widths, strict=True):
                if x <= offset.x < x + width + GAP and spec.key in SORT_COLUMNS:
                    self.set_sort(SORT_COLUMNS[spec.key])
                    self.post_message(self.SortChanged(self.sort_mode))
                x += width + GAP
            return
        pos = int(self.scroll_y) + offset.y - 1
        if 0 <= pos < len(self._rows):
            if pos == self.cursor and event.chain >= 2:
                self.post_message(self.Selected(self._rows[pos]))
            self._move(pos)

    def on_resize(self, event: events.Resize) -> None:
        if self._view is not None and (
            event.size.width != self._width or self._will_scroll() != self._scrolls
        ):
            self.rebuild()
        else:
            self._update_virtual_size()

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._strips.clear()
