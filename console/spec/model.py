"""Rollout spec, the model: the dataclasses every other module reads (engine, plan,
health, simfleet, screens), and the rules that only read them.

This module imports nothing of rolldeck but :mod:`console.core`, so anything may
import it without pulling in the loader (:mod:`console.spec.load`) and its
dependencies: the template checker imports it, and the loader imports the template
checker.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Literal

from console.core.secrets import MASK, mask_url, mask_vars
from console.spec.balancer import LoadBalancerSpec

OnFailure = Literal["pause", "rollback", "abort"]
Order = Literal["inventory", "sorted", "reverse_sorted", "shuffle"]
ON_FAILURE: tuple[OnFailure, ...] = ("pause", "rollback", "abort")
# The batch orders (the planner's rule 1 says what each means).
ORDERS: tuple[Order, ...] = ("inventory", "sorted", "reverse_sorted", "shuffle")
Strategy = Literal["rolling", "canary", "blue-green"]
STRATEGIES: tuple[Strategy, ...] = ("rolling", "canary", "blue-green")
STEP_TIMEOUT = 300.0
PERCENT = re.compile(r"\s*(\d+(?:\.\d+)?)\s*%\s*")


@dataclass(frozen=True, slots=True)
class Step:
    """A templated shell command. ``raw`` opts out of shell-quoting substituted values;
    ``once`` marks a step that must never run twice on a host (resume re-checks, never
    re-runs it)."""

    name: str
    run: str
    timeout: float = STEP_TIMEOUT
    raw: bool = False
    once: bool = False
    line: int | None = None
    # become (console/become.py): None follows the host and the rollout; a step's own
    # ``become: false`` opts it out, ``become_user`` names whom it runs as.
    become: bool | None = None
    become_user: str | None = None


LEASE_PATH = "~/.rolldeck/leases"  # on each host, under the login user's home
LEASE_STALE_AFTER = 60.0  # seconds without a heartbeat before a lease is stale


@dataclass(frozen=True, slots=True)
class LeaseSpec:
    """Where the remote leases live on a host and when one is stale (``lease:``).

    ``path`` is a directory template (``{vars.root}/leases``; ``~/`` is the login
    user's home); the heartbeat is rewritten every ``stale_after / 6`` seconds."""

    path: str = LEASE_PATH
    stale_after: float = LEASE_STALE_AFTER

    @property
    def every(self) -> float:
        return max(1.0, self.stale_after / 6)


# A spec's default health.watch_every: max(health.every, this). A watched fleet is
# mostly idle; probing it at the gating pace competes with the deploy for the CPU.
WATCH_EVERY_FLOOR = 1.0


@dataclass(frozen=True, slots=True)
class HealthSpec:
    run: str
    every: float = 2.0
    healthy_after: int = 3
    deadline: float = 60.0
    timeout: float = 10.0
    flap_window: float = 60.0  # flapping: >= flap_transitions pass/fail changes in this window
    flap_transitions: int = 4
    # The post-deploy watch's pace (gating keeps ``every``); None: ``every``. A spec
    # file without the key is watched every max(every, WATCH_EVERY_FLOOR) (the loader).
    watch_every: float | None = None

    @property
    def watch_interval(self) -> float:
        """Seconds between post-deploy watch probes: ``watch_every``, else ``every``."""
        return self.every if self.watch_every is None else self.watch_every


@dataclass(frozen=True, slots=True)
class LogsSpec:
    run: str
    error_pattern: str | None = None


@dataclass(frozen=True, slots=True)
class MetricsSpec:
    """Prometheus text exposition; ``requests``/``errors`` are series selectors such as
    ``http_requests_total`` or ``http_requests_total{code=~"5.."}``."""

    run: str
    requests: str
    errors: str
    every: float = 5.0
    timeout: float = 10.0


@dataclass(frozen=True, slots=True)
class VitalsSpec:
    """``run`` None means: read /proc/loadavg, /proc/meminfo and df over the connection."""

    run: str | None = None
    every: float = 5.0
    timeout: float = 10.0


@dataclass(frozen=True, slots=True)
class ErrorRateSpec:
    window: float = 60.0
    max: float | None = None  # ratio 0..1 (spec writes "2%")
    max_vs_baseline: float | None = None
    min_requests: int = 100  # below this many requests in the window, no verdict
    min_error_lines: int = 5  # log-line mode: minimum errors before a verdict


PROVIDERS = ("prometheus", "ssh")  # where an analysis metric's numbers come from
COMPARES = ("threshold", "mann-whitney")  # how the new cohort is held against the baseline
ANALYSIS_FLOOR = 0.001  # a baseline under this counts as this (no infinite multiples)


@dataclass(frozen=True, slots=True)
class PrometheusSpec:
    """The Prometheus server an analysis asks (``analysis.prometheus``). Credentials
    are templates (``'{vars.prom_token}'``) rendered once with the spec's vars and
    masked like every secret."""

    url: str
    bearer_token: str | None = None
    basic_auth: tuple[str, str] | None = None  # (user, password template)
    timeout: float = 5.0  # per query; a slower answer is no data


@dataclass(frozen=True, slots=True)
class AnalysisMetric:
    """One judged metric (``analysis.metrics[i]``): a ``prometheus`` query rendered per
    cohort (``{instances}``, ``{window}``), or ``ssh``: the error rate rolldeck scrapes
    itself (the ``error_rate`` rules). ``max`` bounds the new cohort's value;
    ``max_vs_baseline`` its multiple of the baseline cohort's, a baseline under
    ``floor`` counting as ``floor``."""

    name: str
    provider: Literal["prometheus", "ssh"] = "prometheus"
    query: str | None = None
    max: float | None = None
    max_vs_baseline: float | None = None
    compare: Literal["threshold", "mann-whitney"] = "threshold"
    floor: float = ANALYSIS_FLOOR
    unit: Literal["", "ratio", "seconds"] = ""  # how max was written: 5% or 300ms
    line: int | None = None


@dataclass(frozen=True, slots=True)
class AnalysisSpec:
    """``analysis:``: metrics judged every ``interval`` over ``window``; a metric
    without a verdict (Prometheus down, slow, an empty answer) is never a pass:
    ``on_no_data`` acts (the ``on_failure`` vocabulary)."""

    interval: float = 10.0
    window: float = 60.0
    prometheus: PrometheusSpec | None = None
    metrics: tuple[AnalysisMetric, ...] = ()
    on_no_data: OnFailure = "pause"

    @property
    def prometheus_metrics(self) -> tuple[AnalysisMetric, ...]:
        return tuple(m for m in self.metrics if m.provider == "prometheus")


# The events a ``notify:`` hook can be sent (console/notify/names.py maps the engine's
# events onto them); ``finished`` is sent for every ending, with outcome and exit code.
NOTIFY_EVENTS = (
    "started",
    "batch_started",
    "batch_finished",
    "gate_waiting",
    "gate_passed",
    "gate_answer",
    "alert",
    "host_failed",
    "paused",
    "resumed",
    "rolling_back",
    "succeeded",
    "failed",
    "rolled_back",
    "aborted",
    "finished",
)
NOTIFY_TIMEOUT = 5.0
NOTIFY_RETRIES = 2


@dataclass(frozen=True, slots=True)
class HookSpec:
    """One ``notify:`` entry: a local command (``run``: the event as JSON on stdin,
    ``ROLLDECK_*`` environment) or a ``webhook`` URL (POSTed JSON; ``format: slack``
    posts ``{"text": ...}``). ``timeout`` bounds each attempt; ``retries`` more
    attempts follow a failed one, with backoff. Best effort: never in the rollout's way."""

    on: tuple[str, ...]
    run: str | None = None
    webhook: str | None = None
    format: Literal["json", "slack"] = "json"
    timeout: float = NOTIFY_TIMEOUT
    retries: int = NOTIFY_RETRIES
    line: int | None = None


_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def webhook_url(hook: HookSpec, environ: Mapping[str, str]) -> str:
    """The hook's URL with each ``${NAME}`` taken from the environment (the token kept
    out of the spec file); KeyError names a variable that is not set."""
    assert hook.webhook is not None
    return _ENV_REF.sub(lambda m: environ[m.group(1)], hook.webhook)


@dataclass(frozen=True, slots=True)
class RequireSpec:
    """``requires: [{environment: staging, outcome: succeeded, same_version: true,
    within: 7d}]``: a rollout of this service that must be in the state directory's
    history before this one starts (promotion from staging)."""

    environment: str
    outcome: str = "succeeded"
    same_version: bool = True
    within: float | None = None  # seconds before now; None: any time
    line: int | None = None


@dataclass(frozen=True, slots=True)
class GateSpec:
    """Between batches. ``kind``: 'auto' | 'manual' | 'bake' | 'command'. A manual or
    command gate may carry a timeout with ``on_timeout`` ('abort' | 'pause' |
    'rollback' | 'continue'); it never continues by itself unless ``on_timeout`` says
    'continue'. A command gate runs ``run`` (locally) every ``every`` seconds: exit 0
    is go, 1 not yet, anything else no (``on_failure`` fires with its output)."""

    kind: Literal["auto", "manual", "bake", "command", "approval"] = "auto"
    bake: float = 0.0
    timeout: float | None = None
    on_timeout: str = "abort"
    run: str | None = None
    every: float = 30.0
    # An approval gate: approvals from this many Unix users other than the one running
    # the rollout; ``before: final`` asks only before the last batch (others are auto).
    approvers: int = 1
    before: Literal["every", "final"] = "every"


@dataclass(frozen=True, slots=True)
class RollbackSpec:
    steps: tuple[Step, ...] = ()
    batches: tuple[int | str, ...] | None = None  # None: same sizes as the rollout's


@dataclass(frozen=True, slots=True)
class Budget:
    """``max_failures`` as written: a count, or a percentage of targeted hosts."""

    count: int | None = None
    percent: float | None = None

    def allowed(self, targeted: int) -> int:
        """Failed hosts tolerated; *more* than this fires on_failure."""
        if self.count is not None:
            return self.count
        return math.floor(targeted * (self.percent or 0.0) / 100.0)


@dataclass(frozen=True, slots=True)
class RolloutSpec:
    path: str
    text: str
    service: str
    version: str
    inventory: str | None  # path, resolved relative to the spec file
    targets: str = "all"
    batches: tuple[int | str, ...] = (1, "100%")  # ints or "N%" strings
    max_parallel: int = 20
    max_failures: Budget = field(default_factory=lambda: Budget(count=0))
    on_failure: OnFailure = "pause"
    between_batches: GateSpec = field(default_factory=GateSpec)
    current_version: str | None = None  # command printing the running version
    # The release layout: <release_dir>/current links to <release_dir>/releases/<version>;
    # when set, current_version is derived from it (release_version_command).
    release_dir: str | None = None
    preflight: tuple[Step, ...] = ()
    steps: tuple[Step, ...] = ()
    health: HealthSpec | None = None
    logs: LogsSpec | None = None
    metrics: MetricsSpec | None = None
    # Vitals are polled unless the spec says ``vitals: false`` (None): the dashboard
    # shows them. What is polled, and how often: console.signals.polls.planned_polls.
    vitals: VitalsSpec | None = field(default_factory=VitalsSpec)
    # The spec has a ``vitals`` key: polled always. Without it the default vitals are
    # polled only while a console shows them (never headless): signals.polls.vitals_of.
    vitals_given: bool = False
    error_rate: ErrorRateSpec | None = None
    notify: tuple[HookSpec, ...] = ()  # console/notify/: best effort, after the journal
    metrics_out: str | None = None  # a directory: the rollout's Prometheus text file
    requires: tuple[RequireSpec, ...] = ()  # console/store/promotion.py checks them
    # ``analysis:`` (an ``ssh`` metric there also sets ``error_rate``, its short form)
    analysis: AnalysisSpec | None = None
    rollback: RollbackSpec = field(default_factory=RollbackSpec)
    order: Order = "inventory"
    seed: int | None = None
    environment: str | None = None
    secrets: tuple[str, ...] = ()  # var names whose values are redacted everywhere
    vars: dict[str, Any] = field(default_factory=dict)
    # The host holding the service's fleet-wide lock (None: the plan's first host).
    lock_host: str | None = None
    lease: LeaseSpec = field(default_factory=LeaseSpec)
    # ``load_balancer:`` (console/spec/balancer.py): hosts drained through HAProxy
    load_balancer: LoadBalancerSpec | None = None
    # How the rollout moves (console/engine/strategies.py): rolling (batch after batch),
    # canary (with ``traffic``: the first batch gets those shares of the backend by
    # HAProxy weights, judged between steps), blue-green (``blue``/``green`` groups:
    # deploy the idle pool, switch the backend's traffic to it, switch back to roll back).
    strategy: Strategy = "rolling"
    traffic: tuple[float, ...] = ()  # canary: percent of the backend, rising, ending at 100
    blue: str | None = None  # blue-green: inventory group of each pool
    green: str | None = None
    # become (console/become.py): run remote commands through sudo as become_user
    # (None: the host's ansible_become_user, else root); become_password is a template
    # ('{vars.become_pass}') rendered per host, never written on a command line.
    become: bool = False
    become_user: str | None = None
    become_method: str = "sudo"
    become_password: str | None = None
    # field path ("steps[2].timeout", "targets") -> 1-based line, for later errors
    lines: dict[str, int] = field(default_factory=dict, compare=False, repr=False)


def percent_of(size: str, total: int) -> int:
    """``"10%"`` of ``total`` hosts, rounded up, at least 1 (exact: no float error)."""
    match = PERCENT.fullmatch(size)
    if match is None:
        raise ValueError(f"not a percentage: {size!r}")
    exact = Fraction(match.group(1)) * total / 100
    return max(1, math.ceil(exact))


def commands(spec: RolloutSpec) -> list[tuple[str, Step]]:
    """(field path, step) for every command a rollout may run, in running order."""
    out: list[tuple[str, Step]] = []
    if spec.current_version:
        out.append(("current_version", Step("current_version", spec.current_version)))
    out += [(f"preflight[{i}]", s) for i, s in enumerate(spec.preflight)]
    out += [(f"steps[{i}]", s) for i, s in enumerate(spec.steps)]
    for name, part in (("health", spec.health), ("logs", spec.logs), ("metrics", spec.metrics)):
        if part is not None:
            out.append((name, Step(name, part.run)))
    if spec.vitals is not None and spec.vitals.run:
        out.append(("vitals", Step("vitals", spec.vitals.run)))
    out += [(f"rollback.steps[{i}]", s) for i, s in enumerate(spec.rollback.steps)]
    return out


def release_version_command(release_dir: str) -> str:
    """The command that prints the version of the release layout's ``current`` link
    (``releases/2.4.0`` or an absolute target: the last path element); it fails,
    failing the host, when there is no ``current`` link yet."""
    return f'rolldeck_t=$(readlink -- {release_dir}/current) && basename -- "$rolldeck_t"'


def settings(spec: RolloutSpec) -> dict[str, Any]:
    """The resolved settings as JSON-ready data; secret vars are masked."""
    data = dataclasses.asdict(spec)
    for key in ("path", "text", "lines"):
        data.pop(key, None)
    for group in (data["preflight"], data["steps"], data["rollback"]["steps"]):
        for step in group:
            step.pop("line", None)
            for key in ("become", "become_user"):  # unset: the rollout's and host's
                if step.get(key) is None:
                    step.pop(key, None)
    data["batches"] = list(spec.batches)
    data["max_failures"] = _budget_text(spec.max_failures)
    data["vars"] = mask_vars(spec.vars, spec.secrets)
    for hook in data.get("notify") or ():  # a webhook URL's path is its token
        if hook.get("webhook"):
            hook["webhook"] = mask_url(hook["webhook"])
        hook.pop("line", None)
    prom = (data.get("analysis") or {}).get("prometheus")
    if prom:  # credentials as written may be literal: never shown
        if prom.get("bearer_token"):
            prom["bearer_token"] = MASK
        if prom.get("basic_auth"):
            prom["basic_auth"] = [prom["basic_auth"][0], MASK]
    return data


def _budget_text(budget: Budget) -> str | int:
    if budget.count is not None:
        return budget.count
    return f"{budget.percent or 0:g}%"
