"""The console shows hostile remote text literally: no terminal escape reaches the
terminal and no Rich markup in a host name, a version, a command, its output, a log
line or an alert is interpreted (issue 18, point 1).

A Pilot test: hostile events are folded and published as an engine (or an attached
owner, which can send any name) would, and every line the dashboard and the host
detail screen render is read back, segments and styles."""

from __future__ import annotations

from typing import Any

from rich.style import Style
from textual.geometry import Region
from textual.pilot import Pilot
from textual.widget import Widget

from console.app import RolldeckApp
from console.core import events as ev
from console.core.bus import EventBus
from console.core.events import HostState, RolloutState
from console.core.state import fold
from screens.dashboard import DashboardScreen
from screens.host_detail import HostDetailScreen
from tests.test_tui_helpers import SIZE, SPEC, RecordingController, _private_config  # noqa: F401
from tests.waiting import frame_applied, settled

OSC = "\x1b]0;pwned\x07"
CLEAR = "\x1b[2J"
C1 = "\x9b31m"
BIDI = "\u202e"
MARKUP = "[bold red]x[/]"
LINK = "[link=http://evil]y[/link]"
RAW = ("\x1b", "\x07", "\x9b", "\x00", "\r", BIDI)

HOST = f"web{OSC}{BIDI}[b]01[/b]"
OTHER = f"api{LINK}"
LINE = f"log {OSC} {CLEAR} {C1} \x00 x\rforged {BIDI}evil {MARKUP} {LINK}"
T0 = 1_750_000_000.0


def hostile_history() -> list[ev.Event]:
    hosts = {
        name: {"name": name, "address": f"10.0.0.{i}{CLEAR}", "groups": [f"g{MARKUP}"]}
        for i, name in enumerate((HOST, OTHER), start=1)
    }
    return [
        ev.RolloutStarted(
            ts=T0,
            rollout_id="r1",
            service=f"svc{OSC}",
            version=f"2.0{CLEAR}{MARKUP}",
            operator="alice",
            spec_path="rollout.yaml",
            spec_hash="x",
            spec_text="",
            inventory_path="inventory.yaml",
            batches=((HOST, OTHER),),
            settings={"environment": f"prod{LINK}"},
            hosts=hosts,
        ),
        ev.RolloutStateChanged(ts=T0 + 1, state=RolloutState.RUNNING),
        ev.VersionRead(ts=T0 + 1, host=HOST, version=f"1.0{OSC}", role="previous"),
        ev.BatchStarted(ts=T0 + 2, index=0, total=1, hosts=(HOST, OTHER)),
        ev.HostStateChanged(ts=T0 + 2, host=HOST, state=HostState.RUNNING, step=f"i{MARKUP}"),
        ev.StepStarted(ts=T0 + 2, host=HOST, step=f"install{LINK}", command=f"echo {LINE}"),
        ev.StepFinished(
            ts=T0 + 3,
            host=HOST,
            step=f"install{LINK}",
            status="failed",
            exit_code=1,
            duration=1.0,
            output_tail=(LINE, f"second {OSC}"),
        ),
        ev.HostStateChanged(ts=T0 + 3, host=HOST, state=HostState.FAILED, detail=LINE),
        ev.HostStateChanged(ts=T0 + 3, host=OTHER, state=HostState.RUNNING, step="x"),
        ev.Alert(ts=T0 + 4, level="critical", rule=f"rule{MARKUP}", message=LINE, host=HOST),
    ]


def rendered(widget: Widget) -> tuple[str, list[Style]]:
    """Every line ``widget`` renders now (borders and titles too): text and styles."""
    width, height = widget.outer_size
    strips = widget.render_lines(Region(0, 0, width, height))
    text = "\n".join("".join(seg.text for seg in strip) for strip in strips)
    styles = [seg.style for strip in strips for seg in strip if seg.style is not None]
    return text, styles


def screen_text(app: RolldeckApp) -> tuple[str, list[Style]]:
    texts, styles = [], []
    for widget in app.screen.query("*"):
        if widget.display and widget.outer_size.area:
            text, style = rendered(widget)
            texts.append(text)
            styles += style
    return "\n".join(texts), styles


def assert_safe(text: str, styles: list[Style]) -> None:
    for char in RAW:
        assert char not in text, f"raw {char!r} rendered"
    assert not [s for s in styles if s.link], "markup from remote text made a link"


async def test_hostile_text_is_shown_literally(tmp_path: Any) -> None:
    bus = EventBus()
    app = RolldeckApp(
        bus.subscribe(),
        RecordingController(bus),
        spec=SPEC,
        initial_view=fold(hostile_history()),
        clock=lambda: T0 + 10,
        remember_theme=False,
        process_stats=lambda: (1.0, 1.0),
    )
    async with app.run_test(size=SIZE) as pilot:
        p: Pilot[Any] = pilot
        await settled(p, DashboardScreen)
        bus.publish(ev.LogLines(ts=T0 + 5, host=HOST, lines=(LINE, f"tail {MARKUP}"), errors=0))
        bus.publish(ev.Alert(ts=T0 + 6, level="warning", rule="error_rate.max", message=f"x {OSC}"))
        await frame_applied(p)
        await settled(p, DashboardScreen)
        text, styles = screen_text(app)
        assert_safe(text, styles)
        # shown, visibly and literally
        assert "\\x1b]0;pwned\\x07" in text  # the OSC, in the log panel or the timeline
        assert MARKUP in text  # markup as text, not bold red
        assert "[link=http://evil]" in text
        assert "svc\\x1b]0;pwned" in text  # the header's service

        await p.press("enter")  # the detail of the host under the cursor
        await settled(p, HostDetailScreen)
        detail = app.screen
        assert isinstance(detail, HostDetailScreen)
        assert detail.host == HOST  # failing first: the failed host is under the cursor
        text, styles = screen_text(app)
        assert_safe(text, styles)
        assert "[b]01[/b]" in text  # the name in the header, as written
        assert "install[link=http://evil]y[/link]" in text  # the step, in the table
        assert "\\x1b[2J" in text  # the output panel or the detail line
