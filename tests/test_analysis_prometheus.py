"""Canary analysis against a real Prometheus scraping the simulated fleet over HTTP.

One Prometheus for the module (tests/fixtures/prometheus.py); each test points it at
its own fleets. The rollouts are real ``rolldeck run --headless --json`` processes
whose spec judges through the prometheus provider (error ratio and p95 latency,
``console.simfleet.layout.analysis_yaml``): a bad and a slow canary are rolled back
before batch 2 (exit 4) with the alert naming the metric and its numbers, a healthy
fleet raises no alert, and a Prometheus that is down is no data, never a pass.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from console.core.errors import EXIT_OK, EXIT_PAUSED, EXIT_ROLLED_BACK
from console.signals.analysis import PrometheusAnalysis, instance_label
from console.signals.prometheus import PrometheusClient, PrometheusError
from console.simfleet import SimFleet
from console.simfleet.layout import rollout_yaml
from console.simfleet.prometheus import PrometheusServer
from console.spec import parse_spec
from inventory import load_inventory
from tests.fixtures.prometheus import instant, prometheus, scraped  # noqa: F401
from tests.fixtures.simfleet import FleetFactory
from tests.fixtures.sshd import free_port
from tests.waiting import wait_until

FAST = 0.05


def targets(*fleets: SimFleet) -> list[str]:
    return [f"127.0.0.1:{port}" for f in fleets for port in f.metrics_ports.values()]


async def until_scraped(server: PrometheusServer, fleets: list[SimFleet]) -> None:
    wanted = targets(*fleets)
    server.set_targets(wanted)
    await wait_until(
        lambda: asyncio.to_thread(scraped, server, wanted),
        what="Prometheus to scrape every host twice",
        interval=0.2,
    )


def prometheus_spec(fleet: SimFleet, url: str) -> Path:
    """The fleet's rollout, judged through Prometheus (written beside its inventory)."""
    text = rollout_yaml(fleet.scenario, fleet.n, fleet.time_scale, "test", prometheus_url=url)
    path = fleet.directory / "rollout-prometheus.yaml"
    path.write_text(text, encoding="utf-8")
    return path


async def run(spec: Path, state_dir: Path) -> tuple[int, list[dict[str, Any]]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "console",
        "run",
        str(spec),
        "--headless",
        "--json",
        "--state-dir",
        str(state_dir),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    assert proc.returncode is not None
    assert b"Traceback" not in err, err.decode()
    events = [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]
    return proc.returncode, events


def of(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e for e in events if e.get("kind") == kind]


async def test_provider_queries_and_cohort_regexes_on_scraped_data(
    prometheus: PrometheusServer,  # noqa: F811
    sim_fleet_factory: FleetFactory,
) -> None:
    fleet = await sim_fleet_factory(n=6, scenario="healthy", time_scale=FAST)
    await until_scraped(prometheus, [fleet])
    inventory = load_inventory(str(fleet.inventory_path))
    labels = {h.name: instance_label(h) for h in inventory.hosts.values()}
    assert labels["web-01"] == f"127.0.0.1:{fleet.metrics_ports['web-01']}"

    text = rollout_yaml(fleet.scenario, 6, FAST, "t", prometheus_url=prometheus.url)
    per_host = (
        "histogram_quantile(0.95, sum by (le, instance) (rate("
        'http_request_duration_seconds_bucket{instance=~"{instances}"}[{window}])))'
    )
    text = text.replace(
        "  on_no_data:",
        f"    - {{name: p95-ranked, query: '{per_host}', max_vs_baseline: 1.5x,"
        " compare: mann-whitney, floor: 1ms}\n  on_no_data:",
    )
    spec = parse_spec(text)
    assert spec.analysis is not None
    client = PrometheusClient(prometheus.url, timeout=5)
    analysis = PrometheusAnalysis(spec.analysis, client, {k: v for k, v in labels.items() if v}, {})
    # The cohort regex selects exactly the cohort's instances, no more (the regex is
    # anchored: port 1234 must not match 12345) and no fewer.
    metric = spec.analysis.metrics[0]
    count = metric.__class__(
        name="count", query='count(up{instance=~"{instances}"} == 1)', max_vs_baseline=2
    )
    new, base = ["web-01"], ["api-01", "worker-01", "web-02"]
    assert (await client.query(analysis.query_for(count, new)))[0].value == 1
    assert (await client.query(analysis.query_for(count, base)))[0].value == 3

    judgements = await analysis.judge(new, base)
    by = {j.metric: j for j in judgements}
    ratio, p95 = by["error-ratio"], by["p95-latency"]
    assert ratio.verdict == "pass" and p95.verdict == "pass", (ratio.reason, p95.reason)
    assert 0.0 <= ratio.numbers["new_value"] < 0.02  # 0.5% served, counted in whole errors
    assert 0.003 < ratio.numbers["baseline_value"] < 0.01
    # p95 of a log-normal around 40 ms (sigma 0.5) is ~91 ms, interpolated in its bucket
    assert 0.05 < p95.numbers["baseline_value"] < 0.1
    assert 0.5 < p95.numbers["ratio"] < 1.5
    assert p95.numbers["new_hosts"] == 1 and p95.numbers["baseline_hosts"] == 3
    assert "127\\\\.0\\\\.0\\\\.1" in ratio.numbers["query"]  # escaped inside "..."

    # mann-whitney: one series per instance, ranked; a healthy fleet is no evidence
    three, other = ["web-01", "api-01", "worker-01"], ["web-02", "api-02", "worker-02"]
    ranked = {j.metric: j for j in await analysis.judge(three, other)}["p95-ranked"]
    assert ranked.verdict == "pass", ranked.reason
    assert ranked.numbers["new_samples"] == 3 and ranked.numbers["baseline_samples"] == 3
    assert ranked.numbers["p_value"] is not None

    try:
        await client.query("sum(rate(up[1m])")
    except PrometheusError as exc:
        assert "bad_data" in str(exc) or "HTTP 400" in str(exc), str(exc)
    else:
        raise AssertionError("a malformed query was accepted")


async def test_bad_slow_and_healthy_canaries_and_prometheus_down(
    prometheus: PrometheusServer,  # noqa: F811
    sim_fleet_factory: FleetFactory,
    tmp_path: Path,
) -> None:
    """Four rollouts at once (they mostly wait on scrapes and windows): bad-canary
    (errors 15%) and slow-canary (latency 3x, errors unchanged) are rolled back before
    batch 2, the alert naming the metric and its numbers; healthy passes every gate;
    and with nothing listening at the analysis's URL the first gate cannot judge the
    canary, so on_no_data (pause) stops the rollout there, with the reason."""
    names = ("bad-canary", "slow-canary", "healthy")
    fleets = {
        name: await sim_fleet_factory(n=6, scenario=name, time_scale=FAST, seed=3) for name in names
    }
    lost = await sim_fleet_factory(n=3, scenario="healthy", time_scale=FAST)
    await until_scraped(prometheus, list(fleets.values()))
    down_url = f"http://127.0.0.1:{free_port()}"
    results = await asyncio.gather(
        *(
            run(prometheus_spec(fleet, prometheus.url), tmp_path / f"state-{name}")
            for name, fleet in fleets.items()
        ),
        run(prometheus_spec(lost, down_url), tmp_path / "state-down"),
    )
    by = dict(zip((*names, "down"), results, strict=True))

    # While the window fills, a bad canary's ratio may cross 3x the baseline before 5%;
    # its new version is also 2.25x slower (90ms against 40ms): judged from its first
    # scrape on (in health gating), its p95 may fail a tick before its first 5xx counts.
    for name, rules in (
        (
            "bad-canary",
            (
                "error-ratio.max",
                "error-ratio.max_vs_baseline",
                "p95-latency.max_vs_baseline",
            ),
        ),
        ("slow-canary", ("p95-latency.max_vs_baseline",)),
    ):
        code, events = by[name]
        alerts = of(events, "alert")
        assert code == EXIT_ROLLED_BACK, (name, alerts)
        first = alerts[0]
        assert first["rule"] in [f"analysis.{r}" for r in rules], first
        metric = first["rule"].split(".")[1]
        assert first["action"] == "rollback"
        numbers = first["numbers"]
        assert numbers["metric"] == metric and numbers["new_hosts"] == 1
        assert numbers["new_value"] is not None and numbers["baseline_hosts"] == 5
        assert "instance=~" in numbers["query"] and numbers["rule"].startswith("new cohort")
        assert metric in first["message"], first["message"]
        # Rolled back before batch 2: only the canary ever ran a deploy step.
        deployed = {e["host"] for e in of(events, "step_started") if not e.get("rollback")}
        assert deployed == {"web-01"}, (name, deployed)
        if name == "slow-canary":
            assert numbers["ratio"] > 1.5 and numbers["baseline_value"] < 0.1
            assert not [a for a in alerts if a["rule"].startswith("error_rate")]

    code, events = by["healthy"]
    assert code == EXIT_OK, of(events, "alert")
    assert not [a for a in of(events, "alert") if a["rule"].startswith("analysis.")]
    passed = [n for n in of(events, "notice") if "analysis passed after batch" in n["message"]]
    gates = of(events, "gate_passed")
    assert len(gates) >= 2 and len(passed) == len(gates), (passed, gates)  # one per gate
    assert "error-ratio" in passed[0]["message"] and "p95-latency" in passed[0]["message"]

    code, events = by["down"]
    assert code == EXIT_PAUSED
    alerts = [a for a in of(events, "alert") if a["rule"].startswith("analysis.")]
    assert alerts and alerts[0]["rule"].endswith(".no_data"), alerts
    assert "cannot reach" in alerts[0]["message"] and alerts[0]["action"] == "pause"
    deployed = {e["host"] for e in of(events, "step_started")}
    assert deployed == {"web-01"}  # batch 2 never started
