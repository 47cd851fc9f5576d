"""Benchmark the health/vitals/logs/metrics monitors at fleet scale (prints figures).

    python bench/health.py [--hosts 1000] [--seconds 20] [--canary 10] [--metrics]
                           [--no-chain]  (one command per poll, for comparison)
                           [--no-persist]  (chained polls on exec channels, no shell kept open)
                           [--default-gc]  (CPython's collector thresholds, not rolldeck's)

1. Starts ``rolldeck sim-fleet`` (scenario ``bad-canary``: the new version fails 15% of
   requests) in a child process, so only the monitors' cost is measured here.
2. Connects to every host with the engine's SSH transport and runs one
   :class:`~console.signals.monitor.HostMonitor` per host, as a rollout does: health every 2 s
   (the watch enabled on every host), vitals every 5 s, logs followed, and with
   ``--metrics`` the Prometheus page every 5 s too (the error rate is then errors per
   request; without it, error log lines per host-minute). Events go through an
   :class:`~console.core.bus.EventBus` drained every 100 ms (a console's frame); the
   analyzer is sampled and evaluated every second, as the engine does.
3. Steady state: prints this process's CPU (psutil: user + system time over wall time,
   in cores), the event and log-line rates, the event loop's lag, and the fleet's and
   the machine's load, since a starved process does less work than it was asked to.
4. Deploys the new version to ``--canary`` hosts (install, activate, restart over
   SSH), polls their health every 100 ms to learn when the new version started
   serving (from then on the cohort's true error rate is 15%, over the threshold),
   and prints the time from there to the analyzer's alert, and the alert itself.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import logging
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from console import gc_policy
from console.core.bus import EventBus
from console.core.events import Alert, LogLines
from console.signals.health import ErrorRateAnalyzer
from console.signals.monitor import HostMonitor
from console.simfleet import start_fleet_process
from console.spec import RolloutSpec, load_spec
from console.transport.base import Connection, TransportOptions
from console.transport.ssh import SSHTransport
from inventory.loader import load_inventory


class CountingAnalyzer(ErrorRateAnalyzer):
    """Counts metrics scrapes fed in (the analyzer's only input from them)."""

    scrapes = 0

    def observe_counters(self, *args: Any, **kwargs: Any) -> None:
        self.scrapes += 1
        super().observe_counters(*args, **kwargs)


def cpu_seconds(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return t.user + t.system


def bench_spec(path: Path, args: argparse.Namespace) -> RolloutSpec:
    """The fleet's generated spec with the issue's intervals (or the ones asked)."""
    spec = load_spec(path)
    assert spec.health and spec.vitals and spec.metrics and spec.logs and spec.error_rate
    return dataclasses.replace(
        spec,
        health=dataclasses.replace(spec.health, every=args.health_every, timeout=10.0),
        vitals=dataclasses.replace(spec.vitals, every=args.vitals_every),
        metrics=dataclasses.replace(spec.metrics, every=5.0) if args.metrics else None,
    )


async def deploy(conn: Connection, spec: RolloutSpec, analyzer: ErrorRateAnalyzer) -> float:
    """Move a host to the new version; returns when ``svc restart`` returned (monotonic):
    the new process is up and serves after its warm-up, so timing the alert from here
    overstates the detection time a little, never understates it. The host joins the
    new cohort at that moment."""
    for command in (f"svc install {spec.version}", f"svc activate {spec.version}", "svc restart"):
        result = await conn.run(command, timeout=120)
        assert result.ok, (command, result)
    analyzer.set_cohort(conn.host.name, "new")
    return time.monotonic()


async def run(fleet_dir: Path, fleet_pid: int, args: argparse.Namespace) -> None:
    spec = bench_spec(fleet_dir / "rollout.yaml", args)
    assert spec.error_rate is not None
    hosts = load_inventory(str(fleet_dir / "inventory.yaml")).hosts
    options = TransportOptions(
        ssh_config=[],
        connect_timeout=60,
        max_connections=len(hosts) + 10,
        max_handshakes=args.handshakes,
    )
    transport = SSHTransport(options)
    me = psutil.Process()
    fleet = psutil.Process(fleet_pid)
    try:
        t0 = time.perf_counter()
        conns: dict[str, Connection] = {}

        async def connect(name: str) -> None:
            conns[name] = await transport.connect(hosts[name])

        async with asyncio.TaskGroup() as tg:
            for name in hosts:
                tg.create_task(connect(name))
        print(f"connected to {len(conns)} hosts in {time.perf_counter() - t0:.1f} s")

        bus = EventBus()
        sub = bus.subscribe()
        analyzer = CountingAnalyzer(spec.error_rate, has_metrics=args.metrics)
        unhealthy: list[str] = []
        why_unhealthy: collections.Counter[str] = collections.Counter()

        def on_unhealthy(host: str, detail: str) -> None:
            unhealthy.append(host)
            why_unhealthy[detail] += 1

        monitors = {
            name: HostMonitor(
                name,
                conn,
                spec,
                bus.publish,
                analyzer,
                on_unhealthy,
                chain=False if args.no_chain else None,
                persist=not args.no_persist,
            )
            for name, conn in conns.items()
        }
        kinds: collections.Counter[str] = collections.Counter()
        warned: collections.Counter[str] = collections.Counter()
        log_lines = 0
        alerts: list[tuple[float, Alert]] = []
        alerted = asyncio.Event()

        async def drain() -> None:  # what a console does once per frame
            nonlocal log_lines
            while True:
                for event in sub.drain():
                    kinds[event.kind] += 1
                    if isinstance(event, LogLines):
                        log_lines += len(event.lines)
                    elif isinstance(event, Alert) and event.level == "warning":
                        warned[event.rule] += 1
                await asyncio.sleep(0.1)

        lag: collections.deque[float] = collections.deque(maxlen=10_000)

        async def ticker() -> None:  # how late a 50 ms timer fires: event-loop lag
            loop = asyncio.get_running_loop()
            while True:
                t = loop.time()
                await asyncio.sleep(0.05)
                lag.append(loop.time() - t - 0.05)

        async def evaluate() -> None:  # what the engine does about once a second
            while True:
                for sample in analyzer.samples():
                    bus.publish(sample)
                alert = analyzer.evaluate()
                if alert is not None and not alerts:
                    alerts.append((time.monotonic(), alert))
                    alerted.set()
                await asyncio.sleep(1.0)

        for name in conns:
            analyzer.set_cohort(name, "baseline")
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(m.run()) for m in monitors.values()]
            tasks.append(tg.create_task(drain()))
            tasks.append(tg.create_task(evaluate()))
            tasks.append(tg.create_task(ticker()))
            for m in monitors.values():
                m.watch_health(True)

            try:
                await asyncio.sleep(args.warmup)  # jittered polls spread out, streams attached
                cpu0, wall0, lines0 = cpu_seconds(me), time.monotonic(), log_lines
                fleet_cpu0 = cpu_seconds(fleet)
                scrapes0 = analyzer.scrapes
                lag.clear()
                kinds0 = dict(kinds)
                await asyncio.sleep(args.seconds)
                wall = time.monotonic() - wall0
                cores = (cpu_seconds(me) - cpu0) / wall
                fleet_cores = (cpu_seconds(fleet) - fleet_cpu0) / wall
                load1 = psutil.getloadavg()[0]
                print(
                    f"steady state over {wall:.0f} s, {len(conns)} hosts: this process uses "
                    f"{cores:.2f} cores ({100 * cores:.0f}% of one core)"
                )
                rates = {k: (v - kinds0.get(k, 0)) / wall for k, v in kinds.items()}
                print(
                    "  events/s: "
                    + ", ".join(f"{k} {v:,.0f}" for k, v in sorted(rates.items()) if v)
                    + f"; log lines/s {(log_lines - lines0) / wall:,.0f}"
                    + f"; dropped by the bus {sub.dropped}"
                )
                lags = sorted(lag) or [0.0]
                print(
                    f"  event-loop lag: median {1000 * lags[len(lags) // 2]:.0f} ms, max "
                    f"{1000 * lags[-1]:.0f} ms; the fleet process uses {fleet_cores:.2f} cores; "
                    f"machine load average {load1:.1f} on {psutil.cpu_count()} CPUs"
                )
                asked = len(conns) * (1 / args.health_every + 1 / args.vitals_every)
                asked += len(conns) / 5.0 if args.metrics else 0.0
                done = rates.get("health_sample", 0.0) + rates.get("vitals_sample", 0.0)
                done += (analyzer.scrapes - scrapes0) / wall
                share = min(1.0, done / asked) if asked else 1.0
                print(
                    f"  polls done: {done:,.0f}/s of {asked:,.0f}/s asked ({100 * share:.0f}%)"
                    + ("" if share > 0.95 else ": the fleet or this process is starved of CPU")
                )
                print(
                    f"  signal warnings: {dict(warned) or 'none'}; hosts unhealthy: "
                    f"{len(unhealthy)}; RSS {me.memory_info().rss / 1e6:.0f} MB"
                    + (f"; why: {dict(why_unhealthy.most_common(3))}" if unhealthy else "")
                )

                canary = list(conns)[: args.canary]
                results = await asyncio.gather(
                    *(deploy(conns[n], spec, analyzer) for n in canary), return_exceptions=True
                )
                served = [r for r in results if isinstance(r, float)]
                failed = [repr(r) for r in results if not isinstance(r, float)]
                if not served:
                    print(f"canary: no host could be deployed: {failed[:3]}")
                    return
                crossed = min(served)
                print(
                    f"canary: {len(served)} hosts restarted on {spec.version}; the first at "
                    f"+0.0 s, the last at +{max(served) - crossed:.1f} s"
                    + (f"; {len(failed)} failed to deploy: {failed[0]}" if failed else "")
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(alerted.wait(), args.alert_timeout)
                source = "metrics every 5 s" if args.metrics else "error log lines"
                if alerts:
                    at, alert = alerts[0]
                    print(
                        f"alert {at - crossed:.1f} s after the first canary restarted on the new "
                        f"version, whose error rate is over the threshold from its first request "
                        f"(evaluated every 1 s, {source}): {alert.rule}"
                    )
                    print(f"  {alert.message}")
                else:
                    print(f"no alert within {args.alert_timeout:.0f} s")
            finally:
                for t in tasks:
                    t.cancel()
    finally:
        await transport.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--hosts", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=20.0, help="steady-state window")
    parser.add_argument("--warmup", type=float, default=8.0)
    parser.add_argument("--canary", type=int, default=10, help="hosts in the first batch")
    parser.add_argument("--log-rate", type=float, default=5.0, help="lines per second per host")
    parser.add_argument("--handshakes", type=int, default=20, help="concurrent handshakes")
    parser.add_argument("--alert-timeout", type=float, default=30.0)
    parser.add_argument("--metrics", action="store_true", help="also scrape svc metrics every 5 s")
    parser.add_argument("--health-every", type=float, default=2.0)
    parser.add_argument("--vitals-every", type=float, default=5.0)
    parser.add_argument(
        "--default-gc",
        action="store_true",
        help="keep CPython's collector thresholds (rolldeck raises them: console/gc_policy.py)",
    )
    parser.add_argument(
        "--no-persist",
        action="store_true",
        help="chained polls each on an exec channel (the default keeps one shell per host open)",
    )
    parser.add_argument(
        "--no-chain",
        action="store_true",
        help="one command per poll (the monitor's default chains the polls due together)",
    )
    args = parser.parse_args()
    if not args.default_gc:
        gc_policy.tune()  # as `rolldeck` does for every command (console/cli.py)
    # Signal warnings are counted from the events; one log line each would flood.
    logging.getLogger("console").setLevel(logging.ERROR)

    # A SIGTERM (e.g. from `timeout`) must still stop the fleet child: run the finally.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        fleet = start_fleet_process(
            args.hosts, d, scenario="bad-canary", log_rate=args.log_rate, ready_timeout=180
        )
        try:
            print(f"sim-fleet: {args.hosts} hosts ready in {time.perf_counter() - t0:.1f} s")
            asyncio.run(run(Path(d), fleet.pid, args))
        finally:
            fleet.stop()


if __name__ == "__main__":
    main()
