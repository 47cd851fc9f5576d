"""What a rollout polls on each host, and how often: the one source of truth.

:class:`~console.signals.monitor.HostMonitor` starts its loops from the same answers
(:func:`vitals_of`, ``spec.metrics``, ``spec.logs``, ``spec.health``) and ``rolldeck
check`` prints :func:`planned_polls` per host, so what check shows is what runs.

The rules:

- **vitals**: no ``vitals`` key means the default
  (``console.signals.health.VITALS_COMMAND`` every 5 s, the dashboard's load, memory
  and disk columns), polled from preflight on *only while a console shows them* (the
  TUI of ``run``, ``resume``, ``demo``); a headless or ``--json`` run never polls
  them (nobody looks: an exec per host every 5 s for nothing). ``vitals: true`` (the
  default command), a command or ``{run, every, timeout}`` is polled in every mode;
  ``vitals: false``: never.
- **metrics**: polled from preflight on only when the spec has ``metrics``
  (``metrics: false`` or no key: never).
- **logs**: one followed stream per host from preflight on only when the spec has
  ``logs`` (``logs: false`` or no key: none).
- **which hosts**: every targeted host, except when Prometheus is the source of
  judgement (:func:`sampled_monitors`: ``analysis:`` has ``prometheus`` metrics and
  nothing judged over SSH, no ``error_rate:`` or ``ssh`` metric). Then the polls run
  on the hosts in flight (from the moment a host's batch starts it, so its health
  gating runs in its monitor's shell), the new cohort (health watch from healthy),
  and a stable sample of at most :data:`MONITOR_SAMPLE` of the rest
  (:func:`monitor_sample`, the same hosts on every run and resume): the console's
  cost grows with the batch, not with the fleet. An unsampled host's vitals and
  logs are absent (never "failing") until its batch starts it.
- **health**: only when the spec has ``health``: gating (every ``every`` while a host
  deploys or rolls back, until ``healthy_after`` passes or the ``deadline``), then the
  post-deploy watch (every ``watch_every``, default ``max(every, 1s)``, from healthy
  until the rollout ends: a failure after deploy is seen within about that long).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from console.spec import RolloutSpec, VitalsSpec, format_duration
from inventory.model import Host

FROM_PREFLIGHT = "from preflight until the rollout ends"
ONLY_WITH_CONSOLE = (
    FROM_PREFLIGHT + ", only while a console shows them (no vitals key: never headless)"
)
# Baseline hosts monitored beside the hosts in flight and the new cohort when
# Prometheus judges (sampled_monitors): enough to see the fleet's vitals and logs and
# to notice a baseline-wide problem, few enough that 1,000 hosts cost what 50 do.
MONITOR_SAMPLE = 50
# The monitor runs console.signals.health.VITALS_COMMAND for this; not imported here:
# `rolldeck check` reads this module and must not pay for the transport and asyncssh.
DEFAULT_VITALS = "(default) /proc/loadavg, /proc/meminfo, df -P /"


@dataclass(frozen=True, slots=True)
class Poll:
    """One kind of remote command a host runs repeatedly (or one followed stream)."""

    signal: str  # vitals, metrics, logs, health gating, health watch
    command: str
    every: float | None  # seconds between starts; None: one long-running stream
    timeout: float | None
    when: str

    def describe(self) -> str:
        """``every 5s, timeout 10s, from preflight until the rollout ends``."""
        how = "followed" if self.every is None else f"every {format_duration(self.every)}"
        if self.timeout is not None:
            how += f", timeout {format_duration(self.timeout)}"
        return f"{how}, {self.when}"


@dataclass(frozen=True, slots=True)
class PollGroup:
    """Hosts whose polls are identical (same commands once rendered, same pace)."""

    hosts: tuple[str, ...]
    polls: tuple[Poll, ...]
    off: tuple[str, ...]  # signals the spec leaves off, with why
    shared_shell: bool  # polls due together run as one command in a kept-open shell


def vitals_of(
    spec: RolloutSpec, *, enabled: bool = True, console: bool = True
) -> VitalsSpec | None:
    """The vitals a monitor polls: the spec's; None when the spec says ``vitals:
    false``, when the caller turns them off, or when the spec has no ``vitals`` key
    (the default vitals) and no ``console`` shows them."""
    if not enabled or spec.vitals is None:
        return None
    if not spec.vitals_given and not console:
        return None
    return spec.vitals


def planned_polls(
    spec: RolloutSpec,
    render: Callable[[str], str] = str,
    *,
    vitals: bool = True,
    console: bool = True,
) -> tuple[Poll, ...]:
    """Every poll of ``spec`` on one host, its commands passed through ``render`` (a
    host's template rendering; identity by default). Ordered as a host meets them.
    ``console``: whether a console shows the rollout (the default vitals need one);
    True lists them with when they run."""
    out: list[Poll] = []
    vs = vitals_of(spec, enabled=vitals, console=console)
    if vs is not None:
        command = render(vs.run) if vs.run else DEFAULT_VITALS
        when = FROM_PREFLIGHT if spec.vitals_given else ONLY_WITH_CONSOLE
        out.append(Poll("vitals", command, vs.every, vs.timeout, when))
    if spec.metrics is not None:
        ms = spec.metrics
        out.append(Poll("metrics", render(ms.run), ms.every, ms.timeout, FROM_PREFLIGHT))
    if spec.logs is not None:
        out.append(Poll("logs", render(spec.logs.run), None, None, FROM_PREFLIGHT))
    if spec.health is not None:
        hs = spec.health
        command = render(hs.run)
        gating = (
            f"while deploying or rolling back, until {hs.healthy_after} passes "
            f"(deadline {format_duration(hs.deadline)})"
        )
        out.append(Poll("health gating", command, hs.every, hs.timeout, gating))
        watch = "from healthy until the rollout ends (post-deploy watch)"
        out.append(Poll("health watch", command, hs.watch_interval, hs.timeout, watch))
    return tuple(out)


def switched_off(spec: RolloutSpec) -> tuple[str, ...]:
    """The signals ``spec`` does not poll, each with why (for ``rolldeck check``)."""
    off = []
    if spec.vitals is None:
        off.append("vitals (vitals: false)")
    if spec.metrics is None:
        off.append("metrics (no metrics key, or metrics: false)")
    if spec.logs is None:
        off.append("logs (no logs key, or logs: false)")
    if spec.health is None:
        off.append("health (no health: a host counts as healthy once its steps pass)")
    return tuple(off)


def polls_by_host(
    spec: RolloutSpec,
    hosts: Sequence[Host],
    render_for: Callable[[Host], Callable[[str], str]],
) -> list[PollGroup]:
    """:func:`planned_polls` for every host, hosts with identical polls grouped (in
    the order their first host comes). ``render_for(host)`` renders (and masks) a
    command for that host."""
    groups: dict[tuple[tuple[Poll, ...], bool], list[str]] = {}
    for host in hosts:
        polls = planned_polls(spec, render_for(host))
        key = (polls, _shared_shell(host))
        groups.setdefault(key, []).append(host.name)
    off = switched_off(spec)
    return [
        PollGroup(tuple(names), polls, off, shared) for (polls, shared), names in groups.items()
    ]


def _shared_shell(host: Host) -> bool:
    """Whether the host's polls may share one kept-open shell (``rolldeck_shell:
    none`` says the host has no shell: one command per poll)."""
    return str(host.vars.get("rolldeck_shell", "sh")).strip().lower() != "none"


def sampled_monitors(spec: RolloutSpec) -> bool:
    """Whether per-host monitors run on a sample of the baseline only: Prometheus
    judges the new version (``analysis:`` with ``prometheus`` metrics) and nothing
    judged needs every baseline host's scrape (no ``error_rate:``, which an ``ssh``
    metric sets too)."""
    analysis = spec.analysis
    return analysis is not None and bool(analysis.prometheus_metrics) and spec.error_rate is None


def monitor_sample(names: Iterable[str], size: int = MONITOR_SAMPLE) -> frozenset[str]:
    """A stable sample of ``size`` host names: the same for the same fleet on every
    run and resume (ordered by a hash of the name, so spread across the batches, not
    the first or last ``size`` of the plan)."""
    ranked = sorted(set(names), key=lambda n: (hashlib.sha256(n.encode()).digest(), n))
    return frozenset(ranked[: max(0, size)])


def sampling_note(spec: RolloutSpec, hosts: int) -> str | None:
    """What ``rolldeck check`` says about which hosts are polled; None: every host."""
    if not sampled_monitors(spec):
        return None
    sample = min(MONITOR_SAMPLE, hosts)
    return (
        "sampled (Prometheus judges, nothing over SSH needs every host): the polls below "
        "run on the hosts in flight, the new cohort and a stable sample of "
        f"{sample} of the {hosts} targeted hosts; the others' vitals and logs are not "
        "polled until their batch starts them"
    )
