"""The headless runner: drive an Engine without the Textual console (CI, scripts).

Three renderings of the same event stream: ``json`` (one ``console.core.events.to_json``
object per line, every event), ``plain`` (one line per notable event, for logs and
pipes) and ``rich`` (a live table per batch on a terminal, redrawn a few times a
second from a :class:`~console.core.state.RolloutView`, never once per event).

Policy that only makes sense without an operator at a keyboard lives here, not in the
engine: a manual gate is passed only with ``--yes`` (journaled as the operator's
``continue``), else the rollout pauses there and the process exits 6; SIGINT pauses,
a second SIGINT aborts; SIGHUP (the terminal went away) pauses.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from typing import IO, TYPE_CHECKING, Literal

from console.core import events as ev
from console.core.describe import HOST_GLYPHS, HOST_WORDS, OUTCOME_WORDS, ROLLOUT_WORDS, is_chatty
from console.core.describe import describe as describe_event
from console.core.events import Event, HostState, Outcome
from console.core.state import RolloutView
from console.core.text import printable
from console.hangup import TERMINAL_LOST, TerminalLoss, terminal_fds

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.live import Live

    from console.engine import Engine

Mode = Literal["rich", "plain", "json"]
REFRESH_PER_SECOND = 4
ROWS_SHOWN = 30  # hosts listed in the rich table (failing ones first)

# Colours are this front end's own; glyphs and words come from console.core.describe.
STYLES = {
    HostState.HEALTHY: "green",
    HostState.FAILED: "bold red",
    HostState.ROLLBACK_FAILED: "bold red",
    HostState.RUNNING: "cyan",
    HostState.VERIFYING: "cyan",
    HostState.ROLLING_BACK: "yellow",
    HostState.ROLLED_BACK: "yellow",
    HostState.FROZEN: "blue",
    HostState.INTERRUPTED: "magenta",
}


def choose_mode(json_output: bool, stream: IO[str]) -> Mode:
    if json_output:
        return "json"
    return "rich" if stream.isatty() else "plain"


async def run_headless(
    engine: Engine,
    *,
    mode: Mode = "plain",
    yes: bool = False,
    out: IO[str] | None = None,
    err: IO[str] | None = None,
    handle_signals: bool = True,
) -> Outcome:
    """Run ``engine`` to its end while rendering its events; returns the outcome."""
    out = out or sys.stdout
    err = err or sys.stderr
    loss = TerminalLoss(
        terminal_fds(), lambda: engine.pause(reason=TERMINAL_LOST), asyncio.get_running_loop()
    )
    if handle_signals:  # the terminal may hang up under any write: see console.hangup
        out, err = loss.guard(out), loss.guard(err)
    view, sub = engine.attach()
    printer = _Printer(mode, out)
    printer.header()
    gates = _GatePolicy(engine, yes, err if mode == "json" else out)

    async def consume() -> None:
        async for batch in sub.batches():
            for event in batch:
                view.apply(event)
                printer.event(event)
                gates.event(event)

    def note(message: str) -> None:
        printer.note(message, err)

    with printer.live(view), _signals(engine, note, loss, enabled=handle_signals):
        async with asyncio.TaskGroup() as tg:
            consumer = tg.create_task(consume())
            outcome = await engine.run()
            await consumer
    printer.summary(view)
    return outcome


class _GatePolicy:
    def __init__(self, engine: Engine, yes: bool, notes: IO[str]) -> None:
        self.engine, self.yes, self.notes = engine, yes, notes

    def event(self, event: Event) -> None:
        if not isinstance(event, ev.GateWaiting) or event.gate != "manual":
            return
        if self.yes:
            self.engine.continue_(reason="--yes (headless)")
        else:
            print(
                f"manual gate after batch {event.after_batch + 1}: pausing "
                "(pass --yes to pass manual gates headless)",
                file=self.notes,
            )
            self.engine.pause(reason="manual gate reached headless without --yes")


@contextlib.contextmanager
def _signals(
    engine: Engine, note: Callable[[str], None], loss: TerminalLoss, *, enabled: bool
) -> Iterator[None]:
    if not enabled:
        yield
        return
    loop = asyncio.get_running_loop()
    count = {"int": 0}

    def on_int() -> None:
        count["int"] += 1
        if count["int"] == 1:
            note(
                "SIGINT: pausing; moving hosts finish their steps and health gating "
                "(press Ctrl-C again to abort)"
            )
            engine.pause(reason="SIGINT (Ctrl-C)")
        else:
            note("SIGINT again: aborting; in-flight commands are stopped")
            engine.abort(reason="second SIGINT (Ctrl-C)")

    def on_hup() -> None:
        loss.lost()  # a hung-up terminal fails every write (EIO): see console.hangup

    installed = []
    for sig, fn in ((signal.SIGINT, on_int), (signal.SIGHUP, on_hup)):
        try:
            loop.add_signal_handler(sig, fn)
            installed.append(sig)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
            pass
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


class _Printer:
    def __init__(self, mode: Mode, out: IO[str]) -> None:
        self.mode = mode
        self.out = out
        self._live: Live | None = None

    # -- per event ------------------------------------------------------------------

    def header(self) -> None:
        """JSON mode: the stream's first line says its format (``docs/events.md``)."""
        if self.mode == "json":
            self.out.write(json.dumps(ev.stream_header(), separators=(",", ":")) + "\n")
            self.out.flush()

    def event(self, event: Event) -> None:
        if self.mode == "json":
            self.out.write(json.dumps(ev.to_json(event), separators=(",", ":"), default=str) + "\n")
            self.out.flush()
            return
        if self.mode == "plain":
            line = plain_line(event)
            if line is not None:
                self.out.write(line + "\n")
                self.out.flush()
        elif self._live is not None and _notable(event):
            self._live.console.print(describe_event(event).text(), markup=False, highlight=False)

    def note(self, message: str, err: IO[str]) -> None:
        """A message for the operator: above the live table, else on stderr."""
        if self._live is not None:
            self._live.console.print(message, markup=False, highlight=False)
        else:
            print(message, file=err, flush=True)

    # -- rich live table ------------------------------------------------------------

    @contextlib.contextmanager
    def live(self, view: RolloutView) -> Iterator[None]:
        if self.mode != "rich":
            yield
            return
        from rich.console import Console
        from rich.live import Live

        console = Console(file=self.out)

        class _Render:
            def __rich__(self) -> RenderableType:
                return render_view(view)

        with Live(_Render(), console=console, refresh_per_second=REFRESH_PER_SECOND) as live:
            self._live = live
            try:
                yield
            finally:
                self._live = None

    def summary(self, view: RolloutView) -> None:
        if self.mode == "json":
            return
        text = _counts(view)
        outcome = OUTCOME_WORDS[view.outcome] if view.outcome else "unknown"
        self.out.write(f"rollout {printable(view.rollout_id)}: {outcome} ({text})\n")
        if view.state_reason and self.mode == "rich":
            self.out.write(f"  {printable(view.state_reason)}\n")
        self.out.flush()


def _notable(event: Event) -> bool:
    return isinstance(
        event,
        ev.Alert | ev.OperatorCommand | ev.GateWaiting | ev.RolloutFinished | ev.Notice,
    ) or (isinstance(event, ev.HostStateChanged) and event.state in _BAD)


_BAD = frozenset(
    {HostState.FAILED, HostState.ROLLBACK_FAILED, HostState.INTERRUPTED, HostState.FROZEN}
)


def describe(event: Event) -> str | None:
    """The words of a notable event (console.core.describe's), or None for a chatty one
    (decided before any words are built: plain mode sees every event)."""
    return None if is_chatty(event) else describe_event(event).text()


def plain_line(event: Event) -> str | None:
    """One plain output line: the local clock time, then the event's words. The same
    for ``run --headless`` and ``attach --headless``.

    Every event is one line (a detail or log line cut by the describer), but the one
    that ends the rollout: its reason is shown whole, wrapped (see :func:`wrap_final`),
    as it may end with the command to run next."""
    words = describe(event)
    if words is None:
        return None
    line = f"{time.strftime('%H:%M:%S', time.localtime(event.ts))} {words}"
    return wrap_final(line) if isinstance(event, ev.RolloutFinished) else line


PLAIN_WIDTH = 100  # columns of the final reason's wrapped lines in plain mode
_CONTINUED = " " * len("HH:MM:SS ")
_COMMAND = re.compile(r"`[^`]*`|\brolldeck [a-z-]+ [^;:,()]*")
_KEEP = "\x00"  # a space inside a command, while wrapping (printable text has no NUL)


def wrap_final(line: str, width: int = PLAIN_WIDTH) -> str:
    """``line`` wrapped at ``width`` columns, nothing cut: each ``; ``-separated clause
    (a refusal's hint, the command to run) starts a line of its own, indented under
    the words; a word longer than the width (a path) is never broken, and neither is a
    command (``rolldeck resume ID --break-lock ...``, or one in backquotes): it stays on
    one line, to be copied whole."""
    if len(line) <= width:
        return line
    clauses = line.split("; ")
    out: list[str] = []
    for n, clause in enumerate(clauses):
        clause = _COMMAND.sub(lambda m: m.group().replace(" ", _KEEP), clause)
        out += textwrap.wrap(
            clause + (";" if n < len(clauses) - 1 else ""),
            width,
            initial_indent="" if n == 0 else _CONTINUED,
            subsequent_indent=_CONTINUED,
            break_long_words=False,
            break_on_hyphens=False,
        )
    return "\n".join(out).replace(_KEEP, " ")


def _counts(view: RolloutView) -> str:
    """``3 healthy, 1 rolled back``: the host counts, in the describer's words."""
    counts = view.counts()
    return ", ".join(f"{n} {HOST_WORDS[HostState(k)]}" for k, n in counts.items() if n)


def render_view(view: RolloutView) -> RenderableType:
    """The rich live picture: a header and the hosts that matter most right now."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    batch = (
        f"batch {view.batch_index + 1}/{len(view.batches)}" if view.batch_index is not None else ""
    )
    # Every string from outside goes in as Text (never parsed as Rich markup) and
    # through printable (no terminal escapes).
    head = Text.assemble(
        (printable(f"{view.service} {view.version}"), "bold"),
        f"  {ROLLOUT_WORDS[view.state].upper()}  {batch}  ",
        _counts(view),
    )
    table = Table(expand=False, show_edge=False, pad_edge=False)
    for col in ("", "host", "batch", "version", "state", "step", "detail"):
        table.add_column(col, no_wrap=True, overflow="ellipsis", max_width=60)
    current = view.batch_index
    hosts = sorted(
        view.hosts.values(),
        key=lambda h: (
            h.state not in _BAD,
            h.batch != current,
            h.state == HostState.PENDING,
            h.batch if h.batch is not None else 1 << 30,
        ),
    )
    for h in hosts[:ROWS_SHOWN]:
        style = STYLES.get(h.state, "")
        table.add_row(
            HOST_GLYPHS[h.state],
            Text(printable(h.name)),
            str(h.batch + 1) if h.batch is not None else "",
            Text(printable(h.version or "")),
            Text(HOST_WORDS[h.state], style=style),
            Text(printable(h.step or "")),
            Text(printable(" ".join(h.detail.split()))),
        )
    more = len(hosts) - ROWS_SHOWN
    parts: list[RenderableType] = [head, table]
    if more > 0:
        parts.append(Text(f"... and {more} more hosts", style="dim"))
    return Group(*parts)
