"""The fleet's shape and the files a rollout needs: inventory.yaml and rollout.yaml.

Hosts are named by role and interleaved (web-01, api-01, worker-01, web-02, ...) so
every batch of a rollout spans roles; each triple sits in one zone, zones rotate
through eu-west, eu-central, us-east, us-west, and the regions ``eu`` and ``us`` have
the zones as children. Scenario host rules name hosts this way (``api-02`` is the
fifth host: in the second batch of ``[1, 25%, 50%, 100%]`` on 24 hosts).

The rollout spec's timings follow the fleet's ``time_scale`` so a fast test fleet
gets a fast, still consistent, rollout; timeouts keep a floor of a few real seconds,
and metrics/vitals polling slows down with the fleet's size.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from console.simfleet.scenario import Scenario

ROLES = ("web", "api", "worker")
ZONES = ("eu-west", "eu-central", "us-east", "us-west")
REGIONS = {"eu": ("eu-west", "eu-central"), "us": ("us-east", "us-west")}
INVENTORY_FILE = "inventory.yaml"
SPEC_FILE = "rollout.yaml"
FLEET_FILE = "fleet.json"
POLLS_PER_SECOND = 100  # metrics and vitals polls per second, each, across the fleet


@dataclass(frozen=True, slots=True)
class Slot:
    name: str
    role: str
    zone: str


def host_slots(n: int) -> list[Slot]:
    width = max(2, len(str(math.ceil(n / len(ROLES)))))
    return [
        Slot(
            name=f"{ROLES[i % len(ROLES)]}-{i // len(ROLES) + 1:0{width}d}",
            role=ROLES[i % len(ROLES)],
            zone=ZONES[(i // len(ROLES)) % len(ZONES)],
        )
        for i in range(n)
    ]


def _flow(items: list[str]) -> str:
    return "[" + ", ".join(items) + "]"


def inventory_yaml(
    slots: list[Slot],
    ports: dict[str, int],
    *,
    address: str,
    user: str,
    header: str,
    metrics_ports: dict[str, int] | None = None,
) -> str:
    """Native inventory: defaults, groups (roles, zones, regions), hosts with vars
    (``metrics_port``: the host's Prometheus page over HTTP, for a scraper)."""
    lines = [
        f"# {header}",
        f"defaults: {{user: {user}, key: ./id_ed25519, known_hosts: ./known_hosts}}",
        "groups:",
    ]
    for role in ROLES:
        members = [s.name for s in slots if s.role == role]
        if members:
            lines.append(f"  {role}: {{hosts: {_flow(members)}}}")
    for zone in ZONES:
        members = [s.name for s in slots if s.zone == zone]
        if members:
            lines.append(f"  {zone}: {{hosts: {_flow(members)}}}")
    for region, zones in REGIONS.items():
        children = [z for z in zones if any(s.zone == z for s in slots)]
        if children:
            lines.append(f"  {region}: {{children: {_flow(children)}}}")
    lines.append("hosts:")
    for s in slots:
        page = (metrics_ports or {}).get(s.name)
        extra = f", metrics_port: {page}" if page else ""
        lines.append(
            f"  {s.name}: {{address: {address}, port: {ports[s.name]}, "
            f"vars: {{rolldeck_kill: signal, role: {s.role}, zone: {s.zone}{extra}}}}}"
        )
    return "\n".join(lines) + "\n"


def _seconds(value: float) -> str:
    """A duration the spec loader reads: whole seconds as ``5s``, else ``250ms``."""
    ms = max(1, round(value * 1000))
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def _yaml_value(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else value


# How the spec judges through Prometheus (``prometheus_url``): the two metrics every
# drill needs, the error ratio and the p95 latency, each new cohort vs baseline.
ERROR_RATIO_QUERY = (
    'sum(rate(http_requests_total{code=~"5..", instance=~"{instances}"}[{window}]))'
    ' / sum(rate(http_requests_total{instance=~"{instances}"}[{window}]))'
)
P95_QUERY = (
    "histogram_quantile(0.95, sum by (le) (rate("
    'http_request_duration_seconds_bucket{instance=~"{instances}"}[{window}])))'
)
ANALYSIS_INTERVAL = 1.0  # real seconds: Prometheus's scrapes do not follow time_scale
ANALYSIS_WINDOW = 5.0


def analysis_yaml(prometheus_url: str) -> str:
    """The ``analysis:`` section judging the fleet through a Prometheus server."""
    return f"""analysis:
  interval: {_seconds(ANALYSIS_INTERVAL)}
  window: {_seconds(ANALYSIS_WINDOW)}
  prometheus:
    url: {prometheus_url}
    timeout: 5s
  metrics:
    - name: error-ratio
      query: '{ERROR_RATIO_QUERY}'
      max: 5%
      max_vs_baseline: 3x
    - name: p95-latency
      query: '{P95_QUERY}'
      max_vs_baseline: 1.5x
      floor: 1ms
  on_no_data: pause
"""


def rollout_yaml(
    scenario: Scenario,
    n: int,
    time_scale: float,
    header: str,
    *,
    prometheus_url: str | None = None,
) -> str:
    """A ready rollout spec whose steps drive the simulated ``svc``. With
    ``prometheus_url`` the new version is judged through that Prometheus (error ratio
    and p95 latency, :func:`analysis_yaml`) instead of scraping metrics over SSH."""

    def t(seconds: float) -> str:
        return _seconds(seconds * time_scale)

    def limit(seconds: float, floor: float) -> str:
        """A timeout: scaled, but never under ``floor`` real seconds, because a timeout
        guards against a loaded machine as much as against the simulated host."""
        return _seconds(max(seconds * time_scale, floor))

    # The engine polls metrics and vitals on every host: keep the whole fleet's polls
    # near POLLS_PER_SECOND, which one Python process serves with room to spare.
    poll = max(5 * time_scale, n / POLLS_PER_SECOND)
    window = max(30 * time_scale, 3 * poll)
    o = scenario.rollout
    batches = o.get("batches", [1, "25%", "50%", "100%"])
    settings = {
        "batches": "[" + ", ".join(str(b) for b in batches) + "]",
        "max_parallel": _yaml_value(o.get("max_parallel", min(25, max(1, n)))),
        "max_failures": _yaml_value(o.get("max_failures", 0)),
        "on_failure": _yaml_value(o.get("on_failure", "pause")),
        "between_batches": _yaml_value(o.get("between_batches", t(5))),
    }
    metrics = f"""metrics:
  run: svc metrics
  requests: http_requests_total
  errors: 'http_requests_total{{code=~"5.."}}'
  every: {_seconds(poll)}
  timeout: {limit(10, 10)}
"""
    judge = f"""error_rate:
  window: {_seconds(window)}
  max: 5%
  max_vs_baseline: 3.0
"""
    if prometheus_url is not None:
        metrics, judge = "", analysis_yaml(prometheus_url)
    return f"""# {header}
service: {scenario.service}
version: {scenario.target_version}
inventory: {INVENTORY_FILE}
targets: all
batches: {settings["batches"]}
max_parallel: {settings["max_parallel"]}
max_failures: {settings["max_failures"]}
on_failure: {settings["on_failure"]}
between_batches: {settings["between_batches"]}
current_version: svc version
steps:
  - {{name: drain, run: svc drain, timeout: {limit(30, 10)}}}
  - {{name: install, run: "svc install {{version}}", timeout: {limit(60, 5)}}}
  - {{name: activate, run: "svc activate {{version}}", timeout: {limit(30, 10)}}}
  - {{name: restart, run: svc restart, timeout: {limit(30, 10)}}}
  - {{name: undrain, run: svc undrain, timeout: {limit(30, 10)}}}
health:
  run: svc health
  every: {t(2)}
  healthy_after: 3
  deadline: {limit(60, 10)}
  timeout: {limit(10, 10)}
logs:
  run: svc logs --follow
  error_pattern: '\\b(ERROR|CRITICAL)\\b'
{metrics}vitals:
  run: svc vitals
  every: {_seconds(poll)}
  timeout: {limit(10, 10)}
{judge}rollback:
  steps:
    - {{name: activate, run: "svc activate {{previous_version}}", timeout: {limit(30, 10)}}}
    - {{name: restart, run: svc restart, timeout: {limit(30, 10)}}}
"""
