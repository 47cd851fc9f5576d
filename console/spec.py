"""Rollout spec: the model (this file's dataclasses) and its loader/validator.

The dataclasses are the contract every other module reads (engine, health, simfleet,
screens); the loader turns YAML into them with file:line:field errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

OnFailure = Literal["pause", "rollback", "abort"]


@dataclass(frozen=True, slots=True)
class Step:
    """A templated shell command. ``raw`` opts out of shell-quoting substituted values;
    ``once`` marks a step that must never run twice on a host (resume re-checks, never
    re-runs it)."""

    name: str
    run: str
    timeout: float = 300.0
    raw: bool = False
    once: bool = False
    line: int | None = None


@dataclass(frozen=True, slots=True)
class HealthSpec:
    run: str
    every: float = 2.0
    healthy_after: int = 3
    deadline: float = 60.0
    timeout: float = 10.0
    flap_window: float = 60.0  # flapping: >= flap_transitions pass/fail changes in this window
    flap_transitions: int = 4


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


@dataclass(frozen=True, slots=True)
class GateSpec:
    """Between batches. ``kind``: 'auto' | 'manual' | 'bake'. A manual gate may carry a
    timeout with ``on_timeout`` ('abort' | 'pause' | 'rollback' | 'continue'); it never
    continues by itself unless ``on_timeout`` says 'continue'."""

    kind: Literal["auto", "manual", "bake"] = "auto"
    bake: float = 0.0
    timeout: float | None = None
    on_timeout: str = "abort"


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
        import math

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
    preflight: tuple[Step, ...] = ()
    steps: tuple[Step, ...] = ()
    health: HealthSpec | None = None
    logs: LogsSpec | None = None
    metrics: MetricsSpec | None = None
    vitals: VitalsSpec | None = None
    error_rate: ErrorRateSpec | None = None
    rollback: RollbackSpec = field(default_factory=RollbackSpec)
    order: Literal["inventory", "sorted", "reverse_sorted", "shuffle"] = "inventory"
    seed: int | None = None
    environment: str | None = None
    secrets: tuple[str, ...] = ()  # var names whose values are redacted everywhere
    vars: dict[str, Any] = field(default_factory=dict)
