"""The fleet's shape and the files a rollout needs: inventory.yaml and rollout.yaml.

Hosts are named by role and interleaved (web-01, api-01, worker-01, web-02, ...) so
every batch of a rollout spans roles; each triple sits in one zone, zones rotate
through eu-west, eu-central, us-east, us-west, and the regions ``eu`` and ``us`` have
the zones as children. Scenario host rules name hosts this way (``api-02`` is the
fifth host: in the second batch of ``[1, 25%, 50%, 100%]`` on 24 hosts).

The rollout spec's timings follow the fleet's ``time_scale`` so a fast test fleet
gets a fast, still consistent, rollout; timeouts keep a floor of a few real seconds,
and metrics/vitals polling slows down with the fleet's size.

A ``load_balancer`` fleet adds the host ``lb-01`` (group ``lb``, never a target), the
pools' groups (the first half of the hosts in the first pool), and the spec's
``load_balancer:`` section; its steps leave draining to HAProxy (no ``svc drain``), and
its error-rate window is long enough to hold WINDOW_REQUESTS real requests of the new
version at the share it is first judged on (:func:`new_share`): real requests come at
the load generator's pace, not the scaled clock's.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from console.simfleet.load import MAX_RATE
from console.simfleet.scenario import Scenario, parse_duration

ROLES = ("web", "api", "worker")
ZONES = ("eu-west", "eu-central", "us-east", "us-west")
REGIONS = {"eu": ("eu-west", "eu-central"), "us": ("us-east", "us-west")}
INVENTORY_FILE = "inventory.yaml"
SPEC_FILE = "rollout.yaml"
FLEET_FILE = "fleet.json"
POLLS_PER_SECOND = 100  # metrics and vitals polls per second, each, across the fleet
LB_HOST = "lb-01"  # the load balancer's inventory host (group LB_GROUP)
LB_GROUP = "lb"
LB_BACKEND = "app"
LB_SOCKET = "/run/haproxy/admin.sock"  # in a spec written without a running fleet
WINDOW_REQUESTS = 300  # new-version requests an error-rate window holds, behind HAProxy


@dataclass(frozen=True, slots=True)
class BalancerLayout:
    """Where rolldeck finds the fleet's HAProxy: through ``host``'s SSH connection,
    the admin socket ``socket``, backend ``backend``; ``pools`` (live first) or None."""

    socket: str = LB_SOCKET
    pools: tuple[str, str] | None = None
    host: str = LB_HOST
    backend: str = LB_BACKEND


def pool_members(slots: list[Slot], pools: tuple[str, str]) -> dict[str, list[str]]:
    """The two pools' hosts: the first half of the fleet (rounded up), then the rest."""
    half = (len(slots) + 1) // 2
    return {pools[0]: [s.name for s in slots[:half]], pools[1]: [s.name for s in slots[half:]]}


def load_rate(scenario: Scenario, n: int) -> float:
    """Requests per second through the load balancer: what the hosts would serve
    together without one (``request_rate x n``), in real seconds, capped."""
    return min(scenario.request_rate * n, MAX_RATE)


def new_share(scenario: Scenario, n: int) -> float:
    """The share of the backend's requests the new version gets when it is first
    judged: all of them after a blue-green switch, a canary's first traffic step, else
    the first batch's part of the hosts."""
    o = scenario.rollout
    lb = scenario.load_balancer
    if o.get("strategy", "blue-green" if lb and lb.pools else "rolling") == "blue-green":
        return 1.0
    shares = o.get("traffic")
    if o.get("strategy") == "canary" and isinstance(shares, list) and shares:
        try:
            return max(0.01, float(str(shares[0]).strip().rstrip("%")) / 100.0)
        except ValueError:
            pass  # the spec loader names the bad share
    first = (o.get("batches") or [1])[0]
    text = str(first).strip()
    try:
        hosts = n * float(text[:-1]) / 100.0 if text.endswith("%") else float(text)
    except ValueError:
        hosts = 1.0
    return min(1.0, max(1.0, hosts) / max(1, n))


def balancer_layout(data: dict[str, Any]) -> BalancerLayout | None:
    """The ``balancer`` entry of fleet.json (None: the fleet has no load balancer)."""
    b = data.get("balancer")
    if not isinstance(b, dict):
        return None
    pools = b.get("pools")
    return BalancerLayout(
        socket=str(b["socket"]),
        pools=(str(pools[0]), str(pools[1])) if pools else None,
        host=str(b.get("host", LB_HOST)),
        backend=str(b.get("backend", LB_BACKEND)),
    )


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
    balancer: BalancerLayout | None = None,
    lb_port: int | None = None,
) -> str:
    """Native inventory: defaults, groups (roles, zones, regions), hosts with vars
    (``metrics_port``: the host's Prometheus page over HTTP, for a scraper); with a
    ``balancer``, the pools' groups and the load balancer host on ``lb_port``."""
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
    if balancer is not None:
        if balancer.pools is not None:
            for pool, members in pool_members(slots, balancer.pools).items():
                lines.append(f"  {pool}: {{hosts: {_flow(members)}}}")
        lines.append(f"  {LB_GROUP}: {{hosts: [{balancer.host}]}}")
    lines.append("hosts:")
    for s in slots:
        page = (metrics_ports or {}).get(s.name)
        extra = f", metrics_port: {page}" if page else ""
        lines.append(
            f"  {s.name}: {{address: {address}, port: {ports[s.name]}, "
            f"vars: {{rolldeck_kill: signal, role: {s.role}, zone: {s.zone}{extra}}}}}"
        )
    if balancer is not None and lb_port is not None:
        lines.append(
            f"  {balancer.host}: {{address: {address}, port: {lb_port}, "
            f"vars: {{rolldeck_kill: signal, role: {LB_GROUP}}}}}"
        )
    return "\n".join(lines) + "\n"


def _seconds(value: float) -> str:
    """A duration the spec loader reads: whole seconds as ``5s``, else ``250ms``."""
    ms = max(1, round(value * 1000))
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def _yaml_value(value: Any) -> str:
    return json.dumps(value) if not isinstance(value, str) else value


def scaled_gate(value: Any, time_scale: float) -> Any:
    """A scenario's ``between_batches`` with its durations (a plain one, or a gate's
    ``bake`` and ``timeout``) multiplied by ``time_scale``; anything else as written."""

    def scale(v: Any) -> Any:
        try:
            return _seconds(parse_duration(v) * time_scale)
        except ValueError:
            return v  # not a duration (auto, manual, a command): the loader judges it

    if isinstance(value, dict):
        return {k: scale(v) if k in ("bake", "timeout") else v for k, v in value.items()}
    return scale(value)


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
    balancer: BalancerLayout | None = None,
) -> str:
    """A ready rollout spec whose steps drive the simulated ``svc``. With
    ``prometheus_url`` the new version is judged through that Prometheus (error ratio
    and p95 latency, :func:`analysis_yaml`) instead of scraping metrics over SSH. A
    ``load_balancer`` scenario's spec names ``balancer`` (the running fleet's; without
    one, a placeholder socket path) and leaves draining to it."""

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
    rate = load_rate(scenario, n)
    if scenario.load_balancer is not None and rate > 0:
        # Real requests, in real seconds: a window holds WINDOW_REQUESTS of the new
        # version's when it is first judged, so a 15% error rate stands out of the noise
        # (and the analyzer's 100 requests are there) whatever the time_scale.
        window = max(window, WINDOW_REQUESTS / (rate * new_share(scenario, n)))
    o = scenario.rollout
    batches = o.get("batches", [1, "25%", "50%", "100%"])
    gate = scaled_gate(o["between_batches"], time_scale) if "between_batches" in o else t(5)
    settings = {
        "batches": "[" + ", ".join(str(b) for b in batches) + "]",
        "max_parallel": _yaml_value(o.get("max_parallel", min(25, max(1, n)))),
        "max_failures": _yaml_value(o.get("max_failures", 0)),
        "on_failure": _yaml_value(o.get("on_failure", "pause")),
        "between_batches": _yaml_value(gate),
    }
    lb = scenario.load_balancer
    if lb is not None and balancer is None:
        balancer = BalancerLayout(pools=lb.pools)
    targets, traffic, drain = "all", "", True
    if lb is not None:
        assert balancer is not None  # the fleet's, or the default above
        drain = False  # HAProxy drains (rolling) or holds the idle pool (blue-green)
        traffic = (
            f"load_balancer:\n  host: {balancer.host}\n  socket: {balancer.socket}\n"
            f"  backend: {balancer.backend}\n"
            f"  drain: {{wait_sessions: 0, timeout: {limit(30, 10)}}}\n"
        )
        keys: dict[str, Any] = {}
        if balancer.pools is not None:
            keys = {"strategy": "blue-green", "blue": balancer.pools[0]}
            keys["green"] = balancer.pools[1]
        keys.update({k: o[k] for k in ("strategy", "blue", "green", "traffic") if k in o})
        if keys.get("strategy") == "blue-green":
            targets = f"'{keys['blue']}:{keys['green']}'"
        else:
            targets = f"'all:!{LB_GROUP}'"
        traffic += "".join(f"{k}: {_yaml_value(v)}\n" for k, v in keys.items())
    if "notify" in o:
        traffic += f"notify: {_yaml_value(o['notify'])}\n"
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
    drain_step = undrain_step = ""
    if drain:
        drain_step = f"  - {{name: drain, run: svc drain, timeout: {limit(30, 10)}}}\n"
        undrain_step = f"  - {{name: undrain, run: svc undrain, timeout: {limit(30, 10)}}}\n"
    return f"""# {header}
service: {scenario.service}
version: {scenario.target_version}
inventory: {INVENTORY_FILE}
targets: {targets}
batches: {settings["batches"]}
max_parallel: {settings["max_parallel"]}
max_failures: {settings["max_failures"]}
on_failure: {settings["on_failure"]}
between_batches: {settings["between_batches"]}
{traffic}current_version: svc version
steps:
{drain_step}  - {{name: install, run: "svc install {{version}}", timeout: {limit(60, 5)}}}
  - {{name: activate, run: "svc activate {{version}}", timeout: {limit(30, 10)}}}
  - {{name: restart, run: svc restart, timeout: {limit(30, 10)}}}
{undrain_step}health:
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
