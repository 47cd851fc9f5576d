"""The Textual console's wiring: the app factory used by the CLI and the tests.

The only module of ``console/`` that imports Textual. The app owns one
:class:`~console.core.state.RolloutView` that it folds itself from a bus
:class:`~console.core.bus.Subscription`: a ``set_interval`` tick (10 a second) drains
whatever is pending, applies it, summarises what changed
(:func:`screens.changes.collect`) and lets the visible screens redraw only that.
Keys are therefore never queued behind per-event work, however fast the fleet
streams. Commands go out through a :class:`~console.core.commands.Controller` (the engine
in-process, or a socket client when attached).

Only wiring lives here: an in-process engine runs on its own thread
(:mod:`console.runtime.engine_thread`, the app's event source and controller) and is
built by :mod:`console.runtime.session`; neither knows about Textual.
"""

from __future__ import annotations

import asyncio
import gc
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import IO, Any, Protocol

import psutil
from textual.app import App
from textual.binding import Binding
from textual.dom import DOMNode
from textual.driver import Driver
from textual.drivers.linux_driver import LinuxDriver
from textual.screen import ModalScreen, Screen
from textual.worker import Worker, WorkerState

from console import config
from console.core.commands import Command, Controller
from console.core.errors import InputError, did_you_mean
from console.core.events import OUTCOME_EXIT_CODES, Event, Outcome, RolloutState
from console.core.state import MOVING_STATES, RolloutView
from console.core.text import printable
from console.hangup import TERMINAL_LOST, TerminalLoss, pause_on_hangup
from console.runtime.engine_thread import EngineThread, ThreadedEngine
from console.spec import RolloutSpec
from screens.changes import Changes, collect
from screens.confirm import ConfirmScreen, abort_text, quit_text, rollback_label, rollback_text
from screens.dashboard import DashboardScreen
from screens.help import HelpScreen, Section, key_text
from screens.host_detail import HostDetailScreen
from screens.messages import OpenHostDetail
from screens.palette import ConsoleCommands, PaletteAction
from screens.widgets.host_table import HostTable
from themes import (
    DEFAULT_THEME,
    SEMANTIC_VARIABLES,
    STYLESHEET,
    THEME_NAMES,
    THEMES,
    load_theme_choice,
    save_theme_choice,
)

LAYOUT = str(STYLESHEET.parent.parent / "screens" / "layout.tcss")
FRAME_SECONDS = 0.1
STATUS_SECONDS = 2.0
MAX_EVENTS_PER_FRAME = 20_000  # the bus holds at most this many ephemeral events anyway

CONTROL_ACTIONS = frozenset({"pause_resume", "continue_gate", "rollback", "abort", "retry", "skip"})
ProcessStats = Callable[[], tuple[float, float]]  # (cpu percent, rss MB)


class EventSource(Protocol):
    """What the app drains each frame: a bus Subscription (attached, or on the UI's
    loop) or an :class:`~console.runtime.engine_thread.EngineThread`. Read-only, so a
    source may compute them."""

    @property
    def dropped(self) -> int:
        """Events the source had to drop because the app fell behind."""
        ...

    @property
    def overflowed(self) -> bool:
        """The source gave up on this app: what it shows is stale."""
        ...

    def drain(self, max_items: int | None = None) -> list[Event]: ...


def bindings(owner: type[DOMNode]) -> list[Binding]:
    """A class's own ``BINDINGS`` as Binding objects (ours are all written as such):
    what the help screen and the command palette list."""
    return [b for b in owner.BINDINGS if isinstance(b, Binding)]


def binding_sections() -> list[Section]:
    """Every key of the console by screen: help, ``rolldeck config --keys`` and the
    keymap check read this one list."""
    return [
        ("Rollout (any screen)", bindings(RolldeckApp)),
        ("Dashboard", bindings(DashboardScreen)),
        ("Host table", bindings(HostTable)),
        ("Host detail", bindings(HostDetailScreen)),
        ("Confirm dialogs", bindings(ConfirmScreen)),
        ("Help", bindings(HelpScreen)),
    ]


def keymap_rows(keymap: Mapping[str, str]) -> list[tuple[str, str, str, str]]:
    """(section, binding id, keys as remapped, what it does) for every binding."""
    return [
        (title, b.id, key_text(b, keymap), b.tooltip or b.description or b.action)
        for title, group in binding_sections()
        for b in group
        if b.id
    ]


def console_settings(cfg: config.Config | None = None) -> dict[str, Any]:
    """``theme`` and ``keymap`` for :class:`RolldeckApp` from ``console.config`` (the
    environment, then config.toml), checked against the real themes and binding ids:
    a wrong one is an InputError naming the file and line (exit 2), before the screen
    is taken over."""
    cfg = cfg or config.load()
    out: dict[str, Any] = {}
    theme = cfg.values["theme"]
    if theme.value is not None:
        if theme.value not in THEME_NAMES:
            hint = did_you_mean(theme.value, THEME_NAMES)
            message = f"unknown theme {theme.value!r}{hint}: {', '.join(THEME_NAMES)}"
            if theme.file is None:
                raise InputError(message, field="ROLLDECK_THEME")
            raise InputError(message, file=theme.file, line=theme.line, field="theme")
        out["theme"] = theme.value
    keymap: dict[str, str] = cfg[config.KEYMAP]
    known = [b.id for _, group in binding_sections() for b in group if b.id]
    for bid in keymap:
        if bid not in known:
            raise cfg.keymap_error(bid, f"no console binding {bid!r}{did_you_mean(bid, known)}")
    if keymap:
        out["keymap"] = keymap
    return out


def _psutil_stats() -> ProcessStats:
    proc = psutil.Process()
    proc.cpu_percent(None)  # prime: the first call always returns 0.0

    def sample() -> tuple[float, float]:
        return proc.cpu_percent(None), proc.memory_info().rss / 1e6

    return sample


class RolldeckApp(App[int | None]):
    """The live console over one rollout."""

    TITLE = "rolldeck"
    CSS_PATH = [str(STYLESHEET), LAYOUT]
    COMMANDS = App.COMMANDS | {ConsoleCommands}
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (110, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (30, "-tall")]

    BINDINGS = [
        Binding("p", "pause_resume", "Pause", id="pause",
                tooltip="Pause: no new host starts, hosts in flight finish. Again: resume"),
        Binding("c", "continue_gate", "Continue", id="continue",
                tooltip="Pass the manual gate: start the next batch"),
        Binding("r", "rollback", "Rollback", id="rollback",
                tooltip="Roll the changed hosts back to their previous version (asks first)"),
        Binding("a", "abort", "Abort", id="abort",
                tooltip="Cancel in-flight commands, leave hosts as they are (asks first)"),
        Binding("t", "cycle_theme", "Theme", id="theme", show=False,
                tooltip="Cycle dark / light / high-contrast themes (remembered)"),
        Binding("question_mark", "help", "Help", id="help", key_display="?",
                tooltip="Every key and what it does"),
        Binding("q", "quit_console", "Quit", id="quit",
                tooltip="Quit; a running rollout is paused first (asks first)"),
    ]  # fmt: skip

    def __init__(
        self,
        subscription: EventSource,
        controller: Controller,
        *,
        spec: RolloutSpec | None = None,
        initial_view: RolloutView | None = None,
        read_only: bool = False,
        clock: Callable[[], float] = time.time,
        theme: str | None = None,
        runner: Callable[[], Awaitable[Outcome]] | None = None,
        pause_on_quit: bool = True,
        stop_when_paused: Callable[[], None] | None = None,
        process_stats: ProcessStats | None = None,
        remember_theme: bool = True,
        frame_seconds: float = FRAME_SECONDS,
        freeze_gc: bool = False,
        keymap: Mapping[str, str] | None = None,
    ) -> None:
        """``runner``: the engine's ``run`` coroutine function, run as a worker;
        ``stop_when_paused``: tells that engine to return once paused (used on quit);
        ``process_stats`` replaces the psutil sampler (fixed figures for snapshots);
        ``freeze_gc``: once the UI is up, move everything to the permanent GC generation
        (``gc.freeze``): full collections then skip Textual's large, long-lived object
        graph, which otherwise shows up as 50-100 ms pauses under load. Process-wide,
        so only for the CLI's one console per process, never for tests."""
        super().__init__()
        self.subscription = subscription
        self.controller = controller
        self.spec = spec
        self.view = initial_view if initial_view is not None else RolloutView()
        self.read_only = read_only
        self.clock = clock
        self.runner = runner
        self.pause_on_quit = pause_on_quit and not read_only
        self.stop_when_paused = stop_when_paused
        self.remember_theme = remember_theme
        self.frame_seconds = frame_seconds
        self.freeze_gc = freeze_gc
        self.engine_outcome: Outcome | None = None
        self.engine_error: BaseException | None = None
        self.quit_paused = False  # the console paused the rollout to quit
        self.frames = 0  # ticks that redrew something (for the benchmark)
        self.events_applied = 0
        self._stats = process_stats
        self._quit_pending = False
        self._last_header = 0.0
        self._last_status = (0.0, 0)
        self._last_ui = (0.0, 0.0)
        self._stats_live = process_stats is None  # fixed figures: no live UI share either
        self._keymap_overrides: dict[str, str] = {}
        self._dashboard: DashboardScreen | None = None
        self._theme_problem: str | None = None
        for t in THEMES:
            self.register_theme(t)
        chosen = theme
        if chosen is None and remember_theme:
            chosen, self._theme_problem = load_theme_choice(THEME_NAMES)
        if chosen is not None and chosen not in self.available_themes:
            self._theme_problem = f"unknown theme {chosen!r}; using {DEFAULT_THEME}"
            chosen = None
        self.theme = chosen or DEFAULT_THEME
        self._theme_ready = False
        if keymap:  # the user's keys (config.toml [keymap]): footer and help show them
            self.set_keymap(dict(keymap))

    # -- ConsoleContext ------------------------------------------------------------------

    def send(self, command: Command) -> bool:
        """Hand a command to the controller (never in read-only mode)."""
        if self.read_only:
            self.notify(f"read-only console: {command.name} is disabled", severity="warning")
            return False
        self.controller.execute(command)
        return True

    # -- lifecycle -------------------------------------------------------------------

    def get_theme_variable_defaults(self) -> dict[str, str]:
        """Our semantic variables for any theme that lacks them (Textual's own)."""
        return {k: THEMES[0].variables[k] for k in SEMANTIC_VARIABLES}

    def on_mount(self) -> None:
        self._dashboard = DashboardScreen(self)
        self.push_screen(self._dashboard)
        if self._stats is None:
            self._stats = _psutil_stats()
        self.set_interval(self.frame_seconds, self._tick)
        self.set_interval(STATUS_SECONDS, self._status)
        self.call_after_refresh(self._status)
        if self._theme_problem:
            self.notify(self._theme_problem, title="theme", severity="warning")
        if self.runner is not None:
            self.run_worker(self._run_engine(), name="engine", group="engine", exit_on_error=False)
        self._theme_ready = True

    def on_ready(self) -> None:
        if self.freeze_gc:
            gc.freeze()

    def watch_theme(self, theme: str) -> None:
        if getattr(self, "_theme_ready", False) and self.remember_theme:
            try:
                save_theme_choice(theme)
            except OSError as exc:
                self.notify(f"could not remember theme: {exc}", severity="warning")

    async def _run_engine(self) -> None:
        assert self.runner is not None
        self.engine_outcome = await self.runner()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.name != "engine":
            return
        if event.state == WorkerState.ERROR:
            self.engine_error = event.worker.error
            self.notify(f"engine stopped: {event.worker.error!r}", severity="error", timeout=30)
        if event.state in (WorkerState.SUCCESS, WorkerState.ERROR):
            self.refresh_bindings()

    def set_keymap(self, keymap: dict[str, str]) -> None:  # type: ignore[override]
        self._keymap_overrides = dict(keymap)
        super().set_keymap(keymap)

    def update_keymap(self, keymap: dict[str, str]) -> None:  # type: ignore[override]
        self._keymap_overrides.update(keymap)
        super().update_keymap(keymap)

    # -- the frame tick ------------------------------------------------------------------

    def _tick(self) -> None:
        events = self.subscription.drain(MAX_EVENTS_PER_FRAME)
        now = self.clock()
        changes = Changes()
        if events:
            apply = self.view.apply
            for e in events:
                apply(e)
            self.events_applied += len(events)
            changes = collect(events)
        dash = self._dashboard
        if dash is None or not dash.ready or not self.is_running:
            return  # not composed yet, or shutting down (widgets are being removed)
        redrew = False
        if changes:
            dash.apply(changes)
            screen = self.screen
            if isinstance(screen, HostDetailScreen):
                screen.apply(changes)
            redrew = True
        if changes.header or now - self._last_header >= 1.0:
            self._last_header = now
            dash.redraw_header()
            redrew = True
        if redrew:
            self.frames += 1
        if self._quit_pending:
            self._maybe_finish_quit()

    def _status(self) -> None:
        dash = self._dashboard
        if dash is None or not dash.ready or not self.is_running or self._stats is None:
            return
        cpu, rss = self._stats()
        now = self.clock()
        t0, n0 = self._last_status
        dt = now - t0
        rate = (self.events_applied - n0) / dt if t0 and dt > 0 else 0.0
        self._last_status = (now, self.events_applied)
        # the UI thread's own share: is the console, rather than the engine, the cost?
        wall, ui = time.perf_counter(), time.thread_time()
        w0, u0 = self._last_ui
        ui_cpu = (ui - u0) / (wall - w0) * 100 if w0 and wall > w0 else 0.0
        self._last_ui = (wall, ui)
        try:
            conns: int | None = self.controller.open_connections()
        except Exception:  # a detached controller may not know
            conns = None
        hint = ""
        if self._quit_pending:
            hint = "pausing to quit · q again quits now"
        if self.subscription.overflowed:
            hint = "EVENT STREAM OVERFLOWED: this view is stale; reattach to re-sync"
        dash.status(
            cpu=cpu,
            ui_cpu=ui_cpu if self._stats_live else 0.0,
            rss_mb=rss,
            connections=conns,
            events_per_s=rate,
            dropped=self.subscription.dropped,
            hint=hint,
        )

    # -- state helpers ----------------------------------------------------------------

    def rollout_active(self) -> bool:
        """The rollout can still change hosts (not finished, not parked)."""
        v = self.view
        if v.outcome is not None or self.engine_outcome is not None:
            return False
        if v.state in (RolloutState.DONE, RolloutState.ABORTED):
            return False
        return v.started is not None

    def _moving(self) -> int:
        return sum(1 for h in self.view.hosts.values() if h.state in MOVING_STATES)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in CONTROL_ACTIONS:
            if self.read_only:
                return None  # shown dimmed; the header and status line say read-only
            if isinstance(self.screen, ModalScreen):
                return False
        return not (action in ("help", "quit_console") and isinstance(self.screen, ModalScreen))

    # -- actions -------------------------------------------------------------------------

    def action_pause_resume(self) -> None:
        v = self.view
        if not self.rollout_active():
            self.notify("the rollout is not running", severity="warning")
            return
        if v.state in (RolloutState.PAUSED, RolloutState.FROZEN):
            if self.send(Command("resume", reason="console")):
                self.notify("resuming")
        elif self.send(Command("pause", reason="console")):
            self.notify("pausing: no new host starts; hosts in flight finish")

    def action_continue_gate(self) -> None:
        gate = self.view.gate
        if gate is None or gate.gate not in ("manual", "command", "approval"):
            self.notify("not waiting at a manual, command or approval gate", severity="warning")
            return
        # At an approval gate `c` approves: the owner decides whether it counts (it
        # never does from the Unix user running the rollout), and says so.
        if self.send(Command("continue", reason="console")):
            verb = "approving" if gate.gate == "approval" else "continuing"
            self.notify(f"{verb} after batch {gate.after_batch + 1}")

    def action_rollback(self) -> None:
        if not self.view.changed_hosts():
            self.notify("no host has been changed: nothing to roll back", severity="warning")
            return
        title, body = rollback_text(self.view)
        label, doing = rollback_label(self.view)  # blue-green: the switch back

        def done(ok: bool | None) -> None:
            if ok and self.send(Command("rollback", reason="console")):
                self.notify(doing)

        self.push_screen(ConfirmScreen(title, body, label), done)

    def action_abort(self) -> None:
        if not self.rollout_active():
            self.notify("the rollout is not running", severity="warning")
            return
        title, body = abort_text(self.view)

        def done(ok: bool | None) -> None:
            if ok and self.send(Command("abort", reason="console")):
                self.notify("aborting", severity="warning")

        self.push_screen(ConfirmScreen(title, body, "Abort rollout"), done)

    def action_cycle_theme(self) -> None:
        names = THEME_NAMES
        i = names.index(self.theme) if self.theme in names else -1
        self.theme = names[(i + 1) % len(names)]
        self.notify(f"theme: {self.theme}", timeout=2)

    def action_help(self) -> None:
        note = "READ-ONLY console: control keys are disabled." if self.read_only else ""
        self.push_screen(HelpScreen(self.help_sections(), self._keymap_overrides, note))

    def action_quit_console(self) -> None:
        if self._quit_pending:
            self.exit(None)
            return
        if not (self.pause_on_quit and self.rollout_active()):
            self.exit(None)
            return
        if self.view.state in (RolloutState.PAUSED, RolloutState.FROZEN) and not self._moving():
            self._pause_and_quit()  # already parked: nothing to ask
            return
        title, body = quit_text(self.view, self.view.rollout_id)

        def done(ok: bool | None) -> None:
            if ok:
                self._pause_and_quit()

        screen = ConfirmScreen(title, body, "Pause and quit", danger=False)
        screen.add_class("-gentle")
        self.push_screen(screen, done)

    def terminal_lost(self) -> None:
        """SIGHUP (console.hangup): an in-process rollout pauses and the console quits
        as on `q`, without asking; an attached console just goes (its rollout runs on)."""
        if self.runner is not None and not self.read_only and self.rollout_active():
            self._pause_and_quit(reason=TERMINAL_LOST)
        else:
            self.exit(None)

    def _pause_and_quit(self, reason: str = "console quit") -> None:
        """Pause (idempotent), have an in-process engine return once paused, and exit
        when that has settled; hosts in flight finish first."""
        if self.stop_when_paused is not None:
            self.stop_when_paused()
        self.controller.execute(Command("pause", reason=reason))
        self.quit_paused = True
        self._quit_pending = True
        if self._dashboard is not None:
            self._dashboard.note = "PAUSING TO QUIT"
        self._status()
        self._maybe_finish_quit()

    def _maybe_finish_quit(self) -> None:
        """Exit once the pause has settled: the in-process engine has returned, or
        (no engine here) the view shows the rollout paused with no host moving."""
        if self.engine_outcome is not None or self.engine_error is not None:
            self.exit(None)
            return
        if self.runner is not None and self.stop_when_paused is not None:
            return
        v = self.view
        if v.outcome is not None or (
            v.state in (RolloutState.PAUSED, RolloutState.FROZEN) and not self._moving()
        ):
            self.exit(None)

    def on_open_host_detail(self, message: OpenHostDetail) -> None:
        self.push_screen(HostDetailScreen(self, message.host))

    # -- help and palette -----------------------------------------------------------------

    def help_sections(self) -> list[Section]:
        return binding_sections()

    def palette_actions(self, screen: Screen[Any]) -> Iterable[PaletteAction]:
        def runner(target: Any, action: str) -> Callable[[], object]:
            return lambda: self.call_later(target.run_action, action)

        for b in bindings(type(self)):
            if self.read_only and b.action in CONTROL_ACTIONS:
                continue
            yield PaletteAction(b.description, b.tooltip, runner(self, b.action))
        if isinstance(screen, DashboardScreen | HostDetailScreen):
            for b in bindings(type(screen)):
                if self.read_only and b.action in CONTROL_ACTIONS:
                    continue
                yield PaletteAction(b.description, b.tooltip, runner(screen, b.action))


def exit_code(app: RolldeckApp) -> int:
    """The CLI exit code for how the console ended (see console.core.events.OUTCOME_EXIT_CODES)."""
    outcome = app.engine_outcome or app.view.outcome
    if outcome is not None:
        return OUTCOME_EXIT_CODES[outcome]
    if app.engine_error is not None:
        return OUTCOME_EXIT_CODES[Outcome.FAILED]
    return OUTCOME_EXIT_CODES[Outcome.PAUSED]


def make_console(
    engine: ThreadedEngine,
    *,
    threaded: bool = True,
    serve_dir: str | os.PathLike[str] | None = None,
    **kw: Any,
) -> RolldeckApp:
    """The console over an in-process engine. ``threaded``: the engine runs on its own
    thread (:class:`~console.runtime.engine_thread.EngineThread`); otherwise
    ``engine.run()`` is an async worker on the UI's loop (fine for a few dozen hosts).
    ``serve_dir``: also serve an attach socket there (threaded only)."""
    if threaded:
        bridge = EngineThread(engine, serve_dir=serve_dir)
        kw.setdefault("stop_when_paused", bridge.stop_when_paused)
        return RolldeckApp(
            bridge, bridge, spec=engine.spec, initial_view=bridge.view, runner=bridge.run, **kw
        )
    initial, sub = engine.attach()

    def stop_when_paused() -> None:
        engine.exit_when_paused = True

    kw.setdefault("stop_when_paused", stop_when_paused)
    return RolldeckApp(sub, engine, spec=engine.spec, initial_view=initial, runner=engine.run, **kw)


def hangup_safe(driver_class: type[Driver], loss: TerminalLoss) -> type[Driver]:
    """Textual's driver with its output made to survive a hang-up that beats SIGHUP:
    its writer thread would die on EIO and, 30 frames later, block the app for good."""
    if not issubclass(driver_class, LinuxDriver):
        return driver_class
    base: Any = driver_class

    class HangupSafeDriver(base):  # type: ignore[misc]
        _file: IO[str]  # LinuxDriver's output stream (sys.__stderr__)

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            loss.loop = asyncio.get_running_loop()
            self._file = loss.guard(self._file)

    return HangupSafeDriver


def run_console(
    engine: ThreadedEngine,
    *,
    serve_dir: str | os.PathLike[str] | None = None,
    resume_hint: bool = True,
    **kw: Any,
) -> int:
    """Run ``engine.run()`` inside the console and return the CLI exit code.

    Quitting while the rollout runs pauses it first (hosts in flight finish), then
    prints how to resume (unless ``resume_hint`` is off: a demo's fleet is gone by
    then). ``serve_dir``: serve an attach socket there too.
    """
    kw.setdefault("freeze_gc", True)
    for key, value in console_settings().items():  # config.toml / ROLLDECK_*
        kw.setdefault(key, value)
    app = make_console(engine, serve_dir=serve_dir, **kw)
    with pause_on_hangup(app.terminal_lost) as loss:
        app.driver_class = hangup_safe(app.driver_class, loss)
        app.run()
    code = exit_code(app)
    if code == OUTCOME_EXIT_CODES[Outcome.PAUSED] and resume_hint:
        rid = printable(app.view.rollout_id or "<id>")  # journaled text: no escapes
        print(f"rolldeck: rollout {rid} is paused. Resume it with: rolldeck resume {rid}")
    return code
