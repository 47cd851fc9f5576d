"""Typed, immutable events out of the engine, and their JSON form.

The engine speaks to the world only through these. Every event with ``durable = True``
is appended to the journal (and fsync'd in group commits) *before* any consumer sees
it; ephemeral events (raw log lines, live output chunks) are streamed but not
journaled, since their facts are summarised by durable ones (``StepFinished`` keeps the
output tail, ``ErrorRateSample`` the counts).

Every event serialises to one JSON object with a ``kind`` key, so the journal, the
``--json`` headless stream and an attached console all read the same format
(:func:`to_json` / :func:`from_json`).
"""

from __future__ import annotations

import dataclasses
import enum
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

from console import __version__  # the package root (a version string): no layer crossed


class HostState(enum.StrEnum):
    """Where one host is. ``healthy`` is the success end state of a deploy."""

    PENDING = "pending"  # planned, not started
    PREFLIGHT = "preflight"  # being checked before anything changes
    RUNNING = "running"  # running deploy steps
    VERIFYING = "verifying"  # steps done, health gating in progress
    HEALTHY = "healthy"  # deployed and passed health gating
    FAILED = "failed"  # a step failed, timed out, host unreachable, or health failed
    SKIPPED = "skipped"  # skipped by the operator (or unreachable with allow)
    FROZEN = "frozen"  # stopped between steps by freeze()
    INTERRUPTED = "interrupted"  # a step was cancelled by abort(); left as it was
    ROLLING_BACK = "rolling_back"  # running rollback steps
    ROLLED_BACK = "rolled_back"  # back on its previous version, health-gated
    ROLLBACK_FAILED = "rollback_failed"


class RolloutState(enum.StrEnum):
    """The whole rollout, as the header shows it."""

    PREFLIGHT = "preflight"
    RUNNING = "running"
    PAUSED = "paused"
    FROZEN = "frozen"
    WAITING = "waiting"  # at a manual gate or baking between batches
    ROLLING_BACK = "rolling_back"
    ABORTED = "aborted"
    DONE = "done"


class Outcome(enum.StrEnum):
    """How a rollout ended; maps onto the CLI's exit codes."""

    SUCCEEDED = "succeeded"  # exit 0
    FAILED = "failed"  # exit 3: on_failure abort, or preflight refused the start
    ROLLED_BACK = "rolled_back"  # exit 4
    ABORTED = "aborted"  # exit 5: aborted by the operator
    PAUSED = "paused"  # exit 6: stopped paused, resumable later


OUTCOME_EXIT_CODES = {
    Outcome.SUCCEEDED: 0,
    Outcome.FAILED: 3,
    Outcome.ROLLED_BACK: 4,
    Outcome.ABORTED: 5,
    Outcome.PAUSED: 6,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base of every engine event. ``ts`` is wall-clock seconds (time.time())."""

    kind: ClassVar[str] = "event"
    durable: ClassVar[bool] = True
    ts: float = field(default_factory=time.time)


# --- rollout lifecycle ---------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class RolloutStarted(Event):
    """The rollout began: what, which version, who, the spec and the planned batches."""

    kind: ClassVar[str] = "rollout_started"
    rollout_id: str
    service: str
    version: str
    operator: str
    spec_path: str
    spec_hash: str
    spec_text: str
    inventory_path: str
    batches: tuple[tuple[str, ...], ...]
    settings: dict[str, Any] = field(default_factory=dict)
    hosts: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> Host.to_json()


@dataclass(frozen=True, slots=True, kw_only=True)
class RolloutStateChanged(Event):
    """The whole rollout's state changed (the header's state), and why."""

    kind: ClassVar[str] = "rollout_state"
    state: RolloutState
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class RolloutFinished(Event):
    """The rollout ended: its outcome, the process's exit code and the host counts."""

    kind: ClassVar[str] = "rollout_finished"
    outcome: Outcome
    exit_code: int
    reason: str = ""
    counts: dict[str, int] = field(default_factory=dict)  # HostState value -> count


@dataclass(frozen=True, slots=True, kw_only=True)
class PreflightResult(Event):
    """One host's preflight: reachable, its version, and each check's result."""

    kind: ClassVar[str] = "preflight_result"
    host: str
    reachable: bool
    version: str | None = None
    ok: bool = True
    error: str = ""
    checks: tuple[tuple[str, bool, str], ...] = ()  # (name, passed, detail)


@dataclass(frozen=True, slots=True, kw_only=True)
class PlanChanged(Event):
    """Batches not yet started were re-planned (set_batch_size, skip, retry)."""

    kind: ClassVar[str] = "plan_changed"
    batches: tuple[tuple[str, ...], ...]
    reason: str = ""


# --- batches and gates ----------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchStarted(Event):
    """A batch (0-based ``index`` of ``total``) began deploying (or rolling back)."""

    kind: ClassVar[str] = "batch_started"
    index: int  # 0-based
    total: int
    hosts: tuple[str, ...]
    rollback: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class BatchFinished(Event):
    """A batch ended: which hosts succeeded and which failed."""

    kind: ClassVar[str] = "batch_finished"
    index: int
    succeeded: tuple[str, ...]
    failed: tuple[str, ...]
    rollback: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class GateWaiting(Event):
    """Between batches: ``gate`` is 'manual' or 'bake'; ``until`` is wall-clock or None."""

    kind: ClassVar[str] = "gate_waiting"
    after_batch: int
    gate: str
    until: float | None = None
    on_timeout: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class GatePassed(Event):
    """The gate after a batch opened, and by whom or what."""

    kind: ClassVar[str] = "gate_passed"
    after_batch: int
    by: str  # 'auto', 'bake', 'operator:<name>', 'timeout'


# --- hosts ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class HostStateChanged(Event):
    """One host moved to a new state (with the step and why)."""

    kind: ClassVar[str] = "host_state"
    host: str
    state: HostState
    step: str | None = None  # the step running, or the last one reached
    detail: str = ""  # why: "exit 1 in install", "unreachable: ...", "frozen after drain"


@dataclass(frozen=True, slots=True, kw_only=True)
class VersionRead(Event):
    """A host's version as read over SSH; ``role`` is 'previous' (before any change),
    'current' (re-read, e.g. on resume) or 'new' (after deploy)."""

    kind: ClassVar[str] = "version_read"
    host: str
    version: str | None
    role: str = "previous"


@dataclass(frozen=True, slots=True, kw_only=True)
class StepStarted(Event):
    """A step began on a host; ``command`` is rendered, secrets masked."""

    kind: ClassVar[str] = "step_started"
    host: str
    step: str
    command: str  # rendered, secrets redacted
    rollback: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class StepOutput(Event):
    """Live output lines of a running step (ephemeral: the tail is in StepFinished)."""

    kind: ClassVar[str] = "step_output"
    durable: ClassVar[bool] = False
    host: str
    step: str
    lines: tuple[str, ...]
    stream: str = "stdout"


@dataclass(frozen=True, slots=True, kw_only=True)
class StepFinished(Event):
    """``status``: 'ok', 'failed' (non-zero exit), 'timeout', 'cancelled', 'error'."""

    kind: ClassVar[str] = "step_finished"
    host: str
    step: str
    status: str
    exit_code: int | None
    duration: float
    output_tail: tuple[str, ...] = ()
    rollback: bool = False


# --- signals --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class HealthSample(Event):
    """One health probe of a host (while gating, or the post-deploy watch)."""

    kind: ClassVar[str] = "health_sample"
    host: str
    ok: bool
    detail: str = ""
    consecutive: int = 0  # consecutive passes (ok) or failures (not ok)
    status: str = ""  # 'healthy' | 'unhealthy' | 'flapping' | '' while gating
    # False for a watch probe that only repeats the last result: streamed, not journaled
    # (1,000 healthy hosts probed every 2 s would otherwise write 500 lines a second).
    changed: bool = True

    @property
    def durable(self) -> bool:  # type: ignore[override]
        return self.changed


@dataclass(frozen=True, slots=True, kw_only=True)
class VitalsSample(Event):
    """A host's load and memory and disk use (ephemeral)."""

    kind: ClassVar[str] = "vitals_sample"
    durable: ClassVar[bool] = False
    host: str
    load1: float | None = None
    mem_used_pct: float | None = None
    disk_used_pct: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class LogLines(Event):
    """Followed log lines of a host (ephemeral); ``errors`` counts matches of error_pattern."""

    kind: ClassVar[str] = "log_lines"
    durable: ClassVar[bool] = False
    host: str
    lines: tuple[str, ...]
    errors: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorRateSample(Event):
    """Error rate over the sliding window, for a host or a cohort ('new' | 'baseline')."""

    kind: ClassVar[str] = "error_rate"
    durable: ClassVar[bool] = False
    scope: str  # a host name, or 'cohort:new' / 'cohort:baseline'
    rate: float | None  # errors / requests (0..1), or error lines per minute
    errors: float
    requests: float | None
    window: float
    unit: str = "ratio"  # 'ratio' | 'per_min'


@dataclass(frozen=True, slots=True, kw_only=True)
class AnalysisSample(Event):
    """One analysis metric judged once (``analysis:``): the new cohort's value against
    the baseline's and the rule; streamed, a failure or no data is also an ``Alert``."""

    kind: ClassVar[str] = "analysis"
    durable: ClassVar[bool] = False
    metric: str
    verdict: str  # 'pass' | 'fail' | 'no_data'
    new_value: float | None
    baseline_value: float | None
    new_hosts: int
    baseline_hosts: int
    rule: str  # the rule in words
    unit: str = ""  # '' | 'ratio' | 'seconds'
    reason: str = ""
    max: float | None = None  # the metric's bounds, for a panel's threshold column
    max_vs_baseline: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class Alert(Event):
    """A rule fired (or a notable condition); ``numbers`` holds the figures behind it."""

    kind: ClassVar[str] = "alert"
    level: str  # 'info' | 'warning' | 'critical'
    rule: str  # 'max_failures', 'error_rate.max', 'error_rate.max_vs_baseline', ...
    message: str
    host: str | None = None
    numbers: dict[str, Any] = field(default_factory=dict)
    action: str | None = None  # what fired in response: 'pause' | 'rollback' | 'abort'


@dataclass(frozen=True, slots=True, kw_only=True)
class CanaryAnalysis(Event):
    """The statistical verdict on the new version's error rate vs the baseline's."""

    kind: ClassVar[str] = "canary_analysis"
    verdict: str  # 'pass' | 'marginal' | 'fail'
    test: str
    p_value: float | None
    numbers: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class OperatorCommand(Event):
    """An operator (or the engine's policy) issued a command; journaled with who and why."""

    kind: ClassVar[str] = "operator_command"
    command: str  # pause | freeze | resume | abort | rollback | continue | skip | retry | ...
    operator: str  # the label the operator gave (--operator): asserted, not checked
    reason: str = ""
    args: dict[str, Any] = field(default_factory=dict)
    accepted: bool = True
    detail: str = ""  # why it was refused, or what it did
    # The Unix user who issued it, from the kernel (the owner's euid, or the attach
    # socket's SO_PEERCRED); "" in journals written before it was recorded.
    user: str = ""
    uid: int | None = None  # the same user's uid (None in older journals)


@dataclass(frozen=True, slots=True, kw_only=True)
class TrafficChanged(Event):
    """A host's server in the load balancer was set to a state, or found there
    (``load_balancer:``; console/engine/traffic.py): drained before its steps, ready
    once healthy, kept drained when the host failed."""

    kind: ClassVar[str] = "traffic"
    host: str
    backend: str  # the HAProxy backend
    server: str  # the host's server name in that backend
    admin: str  # ready | drain | maint: the server's administrative state in HAProxy now
    sessions: int | None = None  # the server's current sessions, when read
    detail: str = ""  # why, or what was waited for
    failed: bool = False  # the host failed or was stopped mid-change: kept out of traffic
    weight: int | None = None  # the server's weight in HAProxy now, when read


@dataclass(frozen=True, slots=True, kw_only=True)
class TrafficShifted(Event):
    """The backend's traffic moved as a whole (console/engine/weighted_canary.py,
    console/engine/blue_green.py). Journaled with ``phase`` 'start' before the first
    server is set and 'done' once every server is set and read back, so a resumed
    rollout knows a move that was cut in half and finishes or undoes it from HAProxy's
    word. ``move``: 'pools' (blue-green: which pool HAProxy has live, read at start),
    'weights' (canary: ``share`` percent of the backend's traffic to the canary hosts),
    'restore' (every server back to ``original``), 'switch' (blue-green: traffic from
    ``idle`` to ``live``... named after the move: ``live`` is the pool live after it),
    'switch_back' (the rollback of a switch)."""

    kind: ClassVar[str] = "traffic_shift"
    move: str  # pools | weights | restore | switch | switch_back
    phase: str = "done"  # start | done
    backend: str
    step: int | None = None  # canary: the index in ``traffic:``
    share: float | None = None  # canary: the share asked for, in percent
    achieved: float | None = None  # canary: the share the integer weights give
    weights: dict[str, int] = field(default_factory=dict)  # server -> weight set
    original: dict[str, int] = field(default_factory=dict)  # server -> weight before any move
    live: str = ""  # blue-green: the pool carrying the traffic after this move
    idle: str = ""  # blue-green: the pool without traffic after this move
    pools: dict[str, list[str]] = field(default_factory=dict)  # 'pools': pool -> its hosts
    servers: dict[str, str] = field(default_factory=dict)  # 'pools': host -> its server
    detail: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Notice(Event):
    """Free-form information for the timeline (lock broken, host key accepted, ...)."""

    kind: ClassVar[str] = "notice"
    message: str
    host: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class GateAnswer(Event):
    """A gate that asks (``gate: command``) got an answer: ``answer`` is 'go' (exit 0),
    'not_yet' (exit 1: asked again at ``next_at``, wall clock) or 'no' (anything else,
    a timeout or a command that could not run); ``output`` is its output's tail."""

    kind: ClassVar[str] = "gate_answer"
    after_batch: int
    gate: str
    answer: str
    exit_code: int | None = None
    output: str = ""
    poll: int = 1
    next_at: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class NotifyDelivery(Event):
    """A ``notify:`` hook was given one event (console/notify/): delivered, failed
    after its retries, or dropped (the hook fell behind). Journaled after the fact;
    it never changes the rollout. ``hook`` names the target, a URL's token masked."""

    kind: ClassVar[str] = "notify_delivery"
    hook: str
    event: str
    ok: bool
    attempts: int = 0
    status: str = ""  # 'HTTP 200', 'exit 0', 'HTTP 500', 'timeout', 'error', 'dropped'
    detail: str = ""
    dropped: int = 0  # notifications dropped before this one (a full queue)


@dataclass(frozen=True, slots=True, kw_only=True)
class DrillScorecard(Event):
    """How a rehearsal drill went (``rolldeck drill``), appended to the rollout's
    journal once the run is over. Times are seconds; None where the thing never
    happened. ``fault_at`` is when the scenario's fault could first show: the bad
    version going live on a bad host, or, where it never went live there, the start
    of that host's deploy."""

    kind: ClassVar[str] = "drill_scorecard"
    scenario: str
    seed: int
    policy: str  # 'auto' (the engine's thresholds act) | 'operator'
    outcome: Outcome
    exit_code: int
    target_version: str
    fault_at: float | None = None
    first_alert_at: float | None = None
    first_alert: str = ""  # "rule: message" of the first alert or host failure after the fault
    time_to_alert: float | None = None
    first_action_at: float | None = None
    first_action: str = ""  # "rollback by policy", "pause by alice"
    action_by_policy: bool = False
    time_to_act: float | None = None  # from the first alert to the first pause/rollback/abort
    bad_hosts: dict[str, str] = field(default_factory=dict)  # host -> the scenario's fault
    new_version_hosts: tuple[str, ...] = ()  # had the target version active at any time
    blast_radius: tuple[str, ...] = ()  # bad hosts that ran the bad version
    rollback: str = "not_requested"  # 'not_requested' | 'completed' | 'incomplete'
    not_rolled_back: tuple[str, ...] = ()
    final_versions: dict[str, str] = field(default_factory=dict)  # read back from the fleet
    unknown_version_hosts: tuple[str, ...] = ()  # active version neither target nor previous
    timed_out_steps: tuple[tuple[str, str], ...] = ()  # (host, step)
    alerts: int = 0  # critical alerts over the whole run


EVENT_TYPES: dict[str, type[Event]] = {
    cls.kind: cls
    for cls in (
        RolloutStarted,
        RolloutStateChanged,
        RolloutFinished,
        PreflightResult,
        PlanChanged,
        BatchStarted,
        BatchFinished,
        GateWaiting,
        GatePassed,
        HostStateChanged,
        VersionRead,
        StepStarted,
        StepOutput,
        StepFinished,
        HealthSample,
        VitalsSample,
        LogLines,
        ErrorRateSample,
        AnalysisSample,
        Alert,
        CanaryAnalysis,
        OperatorCommand,
        TrafficChanged,
        TrafficShifted,
        Notice,
        GateAnswer,
        NotifyDelivery,
        DrillScorecard,
    )
}


# The ``--json`` stream's contract: its first line is :func:`stream_header`; the
# number changes only when an existing field changes meaning or goes away (new kinds
# and new fields are additions a reader must ignore, as :func:`from_json` does).
STREAM_FORMAT = 1


def stream_header() -> dict[str, Any]:
    """The first line of every ``--json`` output (run, drill, attach, show, ...)."""
    return {"kind": "header", "format": STREAM_FORMAT, "rolldeck": __version__}


def to_json(event: Event) -> dict[str, Any]:
    """One JSON-ready dict with ``kind`` first."""
    out: dict[str, Any] = {"kind": event.kind}
    for f in dataclasses.fields(event):
        value = getattr(event, f.name)
        if isinstance(value, tuple):
            value = [list(v) if isinstance(v, tuple) else v for v in value]
        out[f.name] = value
    return out


def _tupled(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tupled(v) for v in value)
    return value


def from_json(data: dict[str, Any]) -> Event:
    """Inverse of :func:`to_json`; unknown keys are ignored (forward compatible)."""
    cls = EVENT_TYPES[data["kind"]]
    kwargs: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        if f.name == "state":
            value = RolloutState(value) if cls is RolloutStateChanged else HostState(value)
        elif f.name == "outcome":
            value = Outcome(value)
        elif isinstance(value, list):
            value = _tupled(value)
        kwargs[f.name] = value
    return cls(**kwargs)
