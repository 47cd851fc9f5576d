"""TUI under load: key-press latency while 1,000 hosts stream 5,000 log lines a second.

Drives the real console app headless (Textual's ``run_test``) with events published
on an :class:`~console.core.bus.EventBus` by a feeder task on the same event loop, as the
engine would. By default the stream is synthetic (``tests.fixtures.synthetic.LoadStream``);
``--fleet`` runs the real engine against the embedded simulated fleet when both exist.

Key latency is measured from the moment a key event is handed to the app's driver to
the end of the action it triggers (e.g. re-sorting 1,000 rows for ``f``). Prints
p50/p95/p99, frames a second (ticks that redrew something), CPU and peak RSS.

    python bench/tui_load.py [--hosts 1000] [--lines 5000] [--seconds 20] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import pstats
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psutil
from textual import events

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from console import gc_policy
from console.app import RolldeckApp
from console.core.bus import EventBus
from console.core.commands import Command
from console.core.state import fold
from tests.fixtures.synthetic import LoadStream, SyntheticRollout

KEYS = ("f", "s", "l", "down", "f", "s", "l", "up", "s", "s")
ACTIONS = {
    "f": "failing_first",
    "s": "cycle_sort",
    "l": "toggle_log",
    "down": None,
    "up": None,
}


Feeder = Callable[[float], int] | None  # publishes dt seconds of events; returns how many


class NullController:
    """Accepts commands and ignores them (the bench measures the console only)."""

    def execute(self, command: Command) -> None:
        pass

    def open_connections(self) -> int:
        return 0


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    k = min(len(values) - 1, max(0, round(p / 100 * (len(values) - 1))))
    return values[k]


def synthetic_app(args: argparse.Namespace) -> tuple[RolldeckApp, Feeder]:
    bus = EventBus()
    rollout = SyntheticRollout(args.hosts, seed=1, start=time.time() - 60)
    stream = LoadStream(rollout, lines_per_s=args.lines)
    app = RolldeckApp(
        bus.subscribe(),
        NullController(),
        initial_view=fold(rollout.started()),
        theme="rolldeck-dark",
        remember_theme=False,
        freeze_gc=True,  # as run_console does
    )

    def feed(dt: float) -> int:
        events = stream.step(dt)
        for e in events:
            bus.publish(e)
        return len(events)

    return app, feed


@contextlib.contextmanager
def sim_fleet(args: argparse.Namespace) -> Iterator[Path]:
    """``rolldeck sim-fleet`` in a child process (as ``rolldeck demo`` runs it)."""
    with tempfile.TemporaryDirectory(prefix="tui-load-") as tmp:
        cmd = [
            sys.executable, "-m", "console", "sim-fleet",
            "--hosts", str(args.hosts), "--dir", tmp,
            "--log-rate", str(args.lines / args.hosts), "--time-scale", str(args.time_scale),
        ]  # fmt: skip
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if "ready" not in line:
                raise SystemExit(f"sim-fleet did not start: {line!r}")
            print(line.strip(), file=sys.stderr)
            yield Path(tmp)
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def fleet_app(directory: Path, hosts: int, threaded: bool) -> tuple[RolldeckApp, None]:
    """The real engine, over SSH, on the simulated fleet; the console runs it."""
    from console.app import make_console
    from console.runtime.session import build_engine, load_rollout
    from console.transport import TransportOptions

    rollout = load_rollout(str(directory / "rollout.yaml"))  # names the fleet's inventory
    options = TransportOptions(ssh_config=[], max_connections=hosts + 8)
    engine = build_engine(rollout, operator="bench", journal=None, options=options)
    app = make_console(
        engine, threaded=threaded, theme="rolldeck-dark", remember_theme=False, freeze_gc=True
    )
    return app, None


async def run(args: argparse.Namespace, directory: Path | None = None) -> dict[str, Any]:
    if directory is None:
        app, feed = synthetic_app(args)
    else:
        app, feed = fleet_app(directory, args.hosts, threaded=not args.in_loop)
    sub = app.subscription
    latencies: list[float] = []
    cpu_latencies: list[float] = []  # main-thread CPU time between key and action end
    published = 0
    proc = psutil.Process()

    async with app.run_test(size=(args.width, args.height)) as pilot:
        await pilot.pause(0.5)
        dash = app.screen
        table = dash.query_one("#hosts")
        pending: dict[str, tuple[float, float]] = {}

        def record(key: str) -> None:
            t = pending.pop(key, None)
            if t is not None:
                latencies.append(time.perf_counter() - t[0])
                cpu_latencies.append(time.thread_time() - t[1])

        def instrument(target: Any, name: str, key: str) -> None:
            original: Callable[[], Any] = getattr(target, f"action_{name}")

            def wrapped() -> Any:
                result = original()
                record(key)
                return result

            setattr(target, f"action_{name}", wrapped)

        for key, action in ACTIONS.items():
            if action is not None:
                instrument(dash, action, key)
        original_cursor = table.action_cursor_down, table.action_cursor_up

        def cursor(key: str, fn: Callable[[], None]) -> Callable[[], None]:
            def wrapped() -> None:
                fn()
                record(key)

            return wrapped

        table.action_cursor_down = cursor("down", original_cursor[0])
        table.action_cursor_up = cursor("up", original_cursor[1])

        async def pump(stop: asyncio.Event) -> None:
            nonlocal published
            last = time.perf_counter()
            while feed is not None and not stop.is_set():
                await asyncio.sleep(0.02)
                now = time.perf_counter()
                published += feed(now - last)  # wall-clock paced, even when starved
                last = now

        stop = asyncio.Event()
        feeder = asyncio.create_task(pump(stop))
        if directory is not None:  # wait for preflight over SSH, then for the logs
            async with asyncio.timeout(args.warmup):
                preflight = ("preflight",)
                while app.view.state.value in preflight or not app.events_applied:  # noqa: ASYNC110
                    await asyncio.sleep(0.2)  # polling the app's own view
        await asyncio.sleep(args.settle)  # let the backlog settle
        frames0 = app.frames
        applied0 = app.events_applied
        cpu0 = proc.cpu_times()
        t_start = time.perf_counter()
        profiler = cProfile.Profile(time.thread_time) if args.profile else None
        if profiler:
            profiler.enable()
        i = 0
        while time.perf_counter() - t_start < args.seconds:
            key = KEYS[i % len(KEYS)]
            i += 1
            pending[key] = (time.perf_counter(), time.thread_time())
            assert app._driver is not None
            app._driver.send_message(events.Key(key, key if len(key) == 1 else None))
            await asyncio.sleep(args.key_interval)
        if profiler:
            profiler.disable()
        wall = time.perf_counter() - t_start
        cpu1 = proc.cpu_times()
        frames = app.frames - frames0
        applied = app.events_applied - applied0
        stop.set()
        await feeder
        for _ in range(100):  # let the last keys land before the app shuts down
            if not pending:
                break
            await asyncio.sleep(0.1)
        dropped = sub.dropped
    cpu = (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / wall
    if profiler:
        pstats.Stats(profiler).sort_stats(args.sort).print_stats(35)
    return {
        "hosts": args.hosts,
        "lines_per_s_target": args.lines,
        "seconds": round(wall, 1),
        "keys": len(latencies),
        "keys_lost": i - len(latencies),
        "p50_ms": percentile(latencies, 50) * 1000,
        "p95_ms": percentile(latencies, 95) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "max_ms": max(latencies, default=float("nan")) * 1000,
        "cpu_p50_ms": percentile(cpu_latencies, 50) * 1000,
        "cpu_p95_ms": percentile(cpu_latencies, 95) * 1000,
        "cpu_p99_ms": percentile(cpu_latencies, 99) * 1000,
        "load_avg": psutil.getloadavg()[0],
        "mean_ms": (statistics.fmean(latencies) * 1000) if latencies else float("nan"),
        "fps": frames / wall,
        "events_per_s": applied / wall,
        "events_published": published if feed is not None else app.events_applied,
        "events_dropped": dropped,
        "cpu_cores": cpu,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hosts", type=int, default=1000)
    ap.add_argument("--lines", type=float, default=5000.0, help="log lines a second, total")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--key-interval", type=float, default=0.2)
    ap.add_argument("--width", type=int, default=160)
    ap.add_argument("--height", type=int, default=50)
    ap.add_argument("--fleet", action="store_true", help="real engine on a simulated fleet")
    ap.add_argument("--in-loop", action="store_true", help="fleet: engine on the UI's loop")
    ap.add_argument("--time-scale", type=float, default=1.0, help="fleet: simulated time x")
    ap.add_argument("--warmup", type=float, default=300.0, help="fleet: preflight timeout (s)")
    ap.add_argument("--settle", type=float, default=1.0, help="seconds before measuring")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--sort", default="cumulative", help="profile sort order")
    ap.add_argument("--default-gc", action="store_true", help="CPython's GC thresholds")
    args = ap.parse_args(argv)
    if not args.default_gc:
        gc_policy.tune()  # as `rolldeck` does for every command (console/cli.py)
    if args.fleet:
        with sim_fleet(args) as directory:
            r = asyncio.run(run(args, directory))
    else:
        r = asyncio.run(run(args))
    source = "synthetic stream"
    if args.fleet:
        where = "UI loop" if args.in_loop else "its own thread"
        source = f"engine on {where}, simulated fleet over SSH"
    print(
        f"tui_load ({source}): {r['hosts']} hosts, "
        f"{r['lines_per_s_target']:.0f} log lines/s target, "
        f"{r['seconds']} s, {r['keys']} keys ({r['keys_lost']} unmeasured)"
    )
    print(
        f"key latency ms: p50 {r['p50_ms']:.1f}  p95 {r['p95_ms']:.1f}  "
        f"p99 {r['p99_ms']:.1f}  max {r['max_ms']:.1f}"
    )
    print(
        f"key latency in main-thread CPU ms (what it would be with a core to itself): "
        f"p50 {r['cpu_p50_ms']:.1f}  p95 {r['cpu_p95_ms']:.1f}  p99 {r['cpu_p99_ms']:.1f}"
    )
    print(
        f"frames/s {r['fps']:.1f}  events applied/s {r['events_per_s']:.0f}  "
        f"dropped {r['events_dropped']}  cpu {r['cpu_cores']:.2f} cores  "
        f"peak rss {r['peak_rss_mb']:.0f} MB"
    )
    print(f"machine load average (1 min): {r['load_avg']:.1f} on {psutil.cpu_count()} cores")
    ok = r["p95_ms"] < 100 and r["cpu_cores"] < 1.0 and r["peak_rss_mb"] < 400
    print("targets (p95 < 100 ms, < 1 core, < 400 MB):", "met" if ok else "NOT met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
