"""Canary analysis at fleet scale: Prometheus + sampled monitors vs SSH scraping (prints figures).

    python bench/analysis_scale.py [--hosts 1000] [--seconds 20] [--warmup 8]
                                   [--scrape-interval 1] [--only prometheus|ssh]

One run, one fleet, both ways of judging, so the figures compare under the same load:

1. Starts ``rolldeck sim-fleet`` (scenario ``bad-canary``: the new version fails 15% of
   requests; each host also serves its Prometheus page over HTTP) in a child process,
   and a real Prometheus (on PATH) scraping every host's page every
   ``--scrape-interval`` seconds, in another.
2. For each mode, rolls the fleet with the real :class:`~console.engine.Engine` in this
   process (the console's engine, SSH transport, events drained every 100 ms as a
   console's frame does), with the spec ``rolldeck drill`` generates for the fleet:

   - ``prometheus``: ``analysis:`` (error ratio and p95 latency, new cohort vs
     baseline, through the Prometheus) and no SSH metrics scrape: the monitors are
     sampled (hosts in flight, the new cohort, 50 of the rest).
   - ``ssh``: ``error_rate:`` over ``metrics:`` scraped over SSH from every host, as
     today: a monitor on every host.

   The rollout starts paused: after preflight (connections, version reads) and
   ``--warmup`` seconds, this process's CPU (user + system, psutil) is measured over
   ``--seconds`` of steady watching. Then it resumes: the canary (batch 1, one host)
   deploys; the time from when it serves the new version (the later of its last
   step, ``undrain``, and the first answer of its HTTP page, polled every 50 ms,
   with the new version's ``app_info`` and a request counted: the restarted process
   is warmed up and serving) to the critical alert is the alert latency. The rollout then rolls back
   (``on_failure: rollback``), so the next mode starts from the same fleet.
3. Prints, per mode: monitors running, steady CPU in cores, the whole rollout's CPU,
   the alert latency against "scrape interval + one analysis interval", the alert,
   and the fleet's, Prometheus's and the machine's load (a shared machine: compare
   the two modes of one run, never figures of different runs).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import re
import signal
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from console import gc_policy
from console.core import events as ev
from console.core.events import HostState, Outcome
from console.plan import make_plan
from console.runtime.rollout import Rollout
from console.runtime.session import build_engine
from console.simfleet import start_fleet_process
from console.simfleet.layout import ANALYSIS_INTERVAL, rollout_yaml
from console.simfleet.prometheus import PrometheusServer, fleet_targets, wait_scraped
from console.simfleet.scenario import load_scenario
from console.spec import load_spec
from console.transport import TransportOptions
from inventory import load_inventory, select

SCENARIO = "bad-canary"


def cpu_seconds(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


@dataclass
class Figures:
    mode: str
    monitors_steady: int = 0
    monitors_max: int = 0
    steady_cores: float = 0.0
    steady_wall: float = 0.0
    rollout_cpu: float = 0.0
    rollout_wall: float = 0.0
    fleet_cores: float = 0.0
    prometheus_cores: float = 0.0
    load: tuple[float, float, float] = (0.0, 0.0, 0.0)
    latency: float | None = None
    gating: float | None = None  # serving to healthy: the canary's health gating
    alert: str = ""
    outcome: str = ""
    notes: list[str] = field(default_factory=list)


def page_serving(port: int, version: str) -> bool:
    """Whether the host's metrics page says it runs ``version`` and has served a
    request (a restarted process answers its page at once, but counts requests only
    once warmed up: the scenario's ``warmup``, 1 s by default)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as answer:
            text = answer.read().decode()
    except OSError:
        return False
    running = re.search(r'app_info\{[^}]*version="([^"]*)"', text)
    served = re.findall(r"^http_requests_total\{[^}]*\} (\d+)", text, re.MULTILINE)
    return bool(running and running.group(1) == version and sum(map(int, served)) > 0)


async def first_served(port: int, version: str) -> float:
    """When the page first shows a request served by ``version`` (monotonic)."""
    while True:  # an HTTP page to poll: nothing here to wait on
        if await asyncio.to_thread(page_serving, port, version):
            return time.monotonic()
        await asyncio.sleep(0.05)


async def roll(
    mode: str,
    fleet_dir: Path,
    prom: PrometheusServer,
    others: dict[str, psutil.Process],
    args: argparse.Namespace,
) -> Figures:
    scenario = load_scenario(args.scenario_path)
    url = prom.url if mode == "prometheus" else None
    text = rollout_yaml(
        scenario, args.hosts, scenario.time_scale, f"bench {mode}", prometheus_url=url
    )
    path = fleet_dir / f"rollout-{mode}.yaml"
    path.write_text(text, encoding="utf-8")
    spec = load_spec(path)
    inv = load_inventory(str(fleet_dir / "inventory.yaml"))
    hosts = select(inv, spec.targets)
    plan = make_plan([h.name for h in hosts], spec.batches, order=spec.order, seed=spec.seed)
    options = TransportOptions(ssh_config=[], connect_timeout=60, max_connections=len(hosts) + 10)
    # as a console would run it (watched: the default vitals polled), through the session
    engine = build_engine(
        Rollout(spec, hosts, plan), operator="bench", journal=None, options=options
    )
    canary = plan.batches[0][0]
    figures = Figures(mode)
    me = psutil.Process()
    undrained: list[float] = []  # the canary's last step finished
    healthy: list[float] = []  # the canary passed health gating
    ticks: list[tuple[float, ev.AnalysisSample]] = []  # the judge's error-ratio samples
    alerts: list[tuple[float, ev.Alert]] = []
    sub = engine.bus.subscribe()
    watching = asyncio.Event()  # preflight done, the monitors run

    async def drain() -> None:  # what a console does once per frame
        while True:
            now = time.monotonic()
            for event in sub.drain():
                if isinstance(event, ev.StepFinished) and event.host == canary:
                    if event.step == spec.steps[-1].name and not undrained:
                        undrained.append(now)
                elif (
                    isinstance(event, ev.HostStateChanged)
                    and event.host == canary
                    and event.state == HostState.HEALTHY
                    and not healthy
                ):
                    healthy.append(now)
                elif isinstance(event, ev.AnalysisSample) and event.metric == "error-ratio":
                    ticks.append((now, event))
                elif isinstance(event, ev.Alert) and event.level == "critical" and not alerts:
                    alerts.append((now, event))
            figures.monitors_max = max(figures.monitors_max, len(engine.monitored))
            if engine.monitored:
                watching.set()
            await asyncio.sleep(0.1)

    engine.pause("bench: steady state first")
    async with asyncio.TaskGroup() as tg:
        drainer = tg.create_task(drain())
        runner = tg.create_task(engine.run())
        t0 = time.monotonic()
        await watching.wait()  # an engine error ends the task group instead
        print(f"  {mode}: preflight done in {time.monotonic() - t0:.0f} s", flush=True)
        await asyncio.sleep(args.warmup)
        figures.monitors_steady = len(engine.monitored)
        cpu0, wall0 = cpu_seconds(me), time.monotonic()
        other0 = {k: cpu_seconds(p) for k, p in others.items()}
        await asyncio.sleep(args.seconds)
        wall = time.monotonic() - wall0
        figures.steady_wall = wall
        figures.steady_cores = (cpu_seconds(me) - cpu0) / wall
        figures.fleet_cores = (cpu_seconds(others["fleet"]) - other0["fleet"]) / wall
        figures.prometheus_cores = (cpu_seconds(others["prometheus"]) - other0["prometheus"]) / wall
        figures.load = psutil.getloadavg()
        cpu0, wall0 = cpu_seconds(me), time.monotonic()
        port = int(str(engine.recs[canary].host.vars["metrics_port"]))
        served = tg.create_task(first_served(port, spec.version))
        engine.resume("bench: roll the canary")
        try:
            async with asyncio.timeout(args.rollout_timeout):
                outcome = await asyncio.shield(runner)
        except TimeoutError:
            engine.abort("bench: rollout timed out")
            outcome = await runner
            figures.notes.append(f"rollout timed out after {args.rollout_timeout:.0f} s")
        figures.rollout_cpu = cpu_seconds(me) - cpu0
        figures.rollout_wall = time.monotonic() - wall0
        figures.outcome = outcome.value if isinstance(outcome, Outcome) else str(outcome)
        await asyncio.sleep(0.2)  # the drain's last frame
        drainer.cancel()
        serving: list[float] = []
        if served.done() and undrained:
            serving = [max(served.result(), undrained[0])]
            figures.notes.append(
                f"first request of the new version {served.result() - undrained[0]:+.1f} s "
                "after undrain (its warm-up)"
            )
        served.cancel()
    if serving and alerts:
        figures.latency = alerts[0][0] - serving[0]
    if serving and healthy:
        figures.gating = healthy[0] - serving[0]
    if serving and ticks:  # what the judge saw from the canary's first seconds on
        shown = [
            f"{at - serving[0]:+.1f}s {t.verdict} new={t.new_hosts}"
            + ("" if t.new_value is None else f" {100 * t.new_value:.1f}%")
            for at, t in ticks
            if at >= serving[0] - 1.0
        ][:8]
        figures.notes.append("error-ratio judged at " + ", ".join(shown))
    if alerts:
        figures.alert = f"{alerts[0][1].rule}: {alerts[0][1].message}"
    elif not serving:
        figures.notes.append("the canary never finished its steps")
    return figures


def report(figures: list[Figures], args: argparse.Namespace) -> None:
    bound = args.scrape_interval + ANALYSIS_INTERVAL
    print()
    for f in figures:
        lat = "no alert" if f.latency is None else f"{f.latency:.1f} s"
        print(f"{f.mode}:")
        print(f"  monitors: {f.monitors_steady} while watching, at most {f.monitors_max}")
        print(
            f"  console CPU, steady ({f.steady_wall:.0f} s): {f.steady_cores:.3f} cores; "
            f"whole rollout (canary, alert, rollback): {f.rollout_cpu:.1f} s CPU over "
            f"{f.rollout_wall:.0f} s"
        )
        print(
            f"  meanwhile: fleet {f.fleet_cores:.2f} cores, Prometheus {f.prometheus_cores:.2f} "
            f"cores, load average {f.load[0]:.2f} {f.load[1]:.2f} {f.load[2]:.2f} "
            f"on {psutil.cpu_count()} CPUs"
        )
        print(f"  alert latency after the canary serves {SCENARIO}'s new version: {lat}")
        if f.gating is not None:
            print(f"    (its health gating passed {f.gating:.1f} s after it served)")
        if f.mode == "prometheus":
            print(
                f"    (scrape interval {args.scrape_interval:g} s + analysis interval "
                f"{ANALYSIS_INTERVAL:g} s = {bound:g} s)"
            )
        print(f"  alert: {f.alert or '-'}")
        print(f"  outcome: {f.outcome}" + "".join(f"; {n}" for n in f.notes))
    by = {f.mode: f for f in figures}
    if "prometheus" in by and "ssh" in by and by["ssh"].steady_cores > 0:
        ratio = by["prometheus"].steady_cores / by["ssh"].steady_cores
        print(f"\nsteady console CPU, prometheus / ssh: {ratio:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=20.0, help="steady-state window")
    parser.add_argument("--warmup", type=float, default=8.0)
    parser.add_argument("--scrape-interval", type=float, default=1.0)
    parser.add_argument("--rollout-timeout", type=float, default=300.0)
    parser.add_argument("--only", choices=("prometheus", "ssh"), help="one mode only")
    parser.add_argument(
        "--request-rate",
        type=float,
        help="simulated requests per second per host (default: the scenario's, 20)",
    )
    args = parser.parse_args()
    gc_policy.tune()  # as `rolldeck` does for every command (console/cli.py)
    logging.getLogger("console").setLevel(logging.ERROR)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    modes = [args.only] if args.only else ["prometheus", "ssh"]
    with tempfile.TemporaryDirectory() as d, contextlib.ExitStack() as stack:
        args.scenario_path = SCENARIO
        if args.request_rate is not None:  # bad-canary with another request rate
            from importlib import resources

            text = resources.files("console.simfleet").joinpath("scenarios", f"{SCENARIO}.yaml")
            path = Path(d) / "scenario.yaml"
            path.write_text(
                text.read_text(encoding="utf-8") + f"request_rate: {args.request_rate:g}\n",
                encoding="utf-8",
            )
            args.scenario_path = str(path)
        t0 = time.perf_counter()
        fleet = start_fleet_process(
            args.hosts, Path(d) / "fleet", scenario=args.scenario_path, ready_timeout=300
        )
        stack.callback(fleet.stop)
        print(f"sim-fleet: {args.hosts} hosts ready in {time.perf_counter() - t0:.1f} s")
        targets = fleet_targets(fleet.directory)
        prom = PrometheusServer(
            Path(d) / "prometheus", targets, scrape_interval=args.scrape_interval
        )
        prom.start()
        stack.callback(prom.stop)
        if not wait_scraped(prom, len(targets), timeout=120):
            sys.exit(f"Prometheus did not scrape the {len(targets)} pages")
        print(
            f"Prometheus {prom.url} scrapes {len(targets)} pages every {args.scrape_interval:g} s"
        )
        assert prom.proc is not None
        others: dict[str, Any] = {
            "fleet": psutil.Process(fleet.pid),
            "prometheus": psutil.Process(prom.proc.pid),
        }
        figures = [asyncio.run(roll(m, fleet.directory, prom, others, args)) for m in modes]
        report(figures, args)


if __name__ == "__main__":
    main()
