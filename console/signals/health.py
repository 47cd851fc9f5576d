"""Health probes, health history, vitals parsing and the error-rate analyzer.

What the engine asks of a host after deploying to it, and how the new version is
judged against the old one:

* :func:`probe_health` runs the spec's health command once; any failure, timeout or
  lost connection is a failed probe with its reason, never an exception.
* :class:`HealthTracker` folds probe results into healthy / unhealthy / flapping.
* :func:`parse_vitals` reads load, memory and disk from /proc-format text, whether
  from a real host (:data:`VITALS_COMMAND`) or the simulated fleet's ``svc vitals``.
* :class:`ErrorRateAnalyzer` keeps a sliding window of requests and errors (or error
  log lines) per host, pools them per cohort (new version vs baseline, the hosts not
  yet moved) and decides whether the new version is worse (:meth:`evaluate`).

The probe itself (:func:`probe_health`, the :class:`~console.signals.probe.Probe`
seam) lives in :mod:`console.signals.probe` and is re-exported here; the per-host
loops that feed all this live in :mod:`console.signals.monitor`, which imports this
module (never the other way round). The statistics behind the canary analysis are
in :mod:`console.signals.stats`.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

from console.core.events import Alert, CanaryAnalysis, ErrorRateSample
from console.signals.probe import Probe, health_verdict, one_line, probe_error, probe_health
from console.signals.stats import canary_analysis, canary_rank_analysis, mann_whitney_u
from console.spec import ErrorRateSpec, HealthSpec

__all__ = [
    "VITALS_COMMAND",
    "ErrorRateAnalyzer",
    "HealthTracker",
    "Probe",
    "Vitals",
    "canary_analysis",
    "canary_rank_analysis",
    "health_verdict",
    "mann_whitney_u",
    "one_line",
    "parse_vitals",
    "probe_error",
    "probe_health",
]

log = logging.getLogger(__name__)

Clock = Callable[[], float]


class HealthTracker:
    """Pass/fail history of one host's health and its status.

    ``flapping`` when at least ``spec.flap_transitions`` pass/fail changes happened
    within the last ``spec.flap_window`` seconds; otherwise ``healthy`` or
    ``unhealthy`` by the latest probe. Pure: time comes from the caller (or ``clock``).
    """

    def __init__(self, spec: HealthSpec, clock: Clock = time.monotonic, history: int = 120):
        self.spec = spec
        self.clock = clock
        self.history: deque[tuple[float, bool]] = deque(maxlen=history)
        # Only the newest flap_transitions matter to the rule: bounded, whatever the rate.
        self._transitions: deque[float] = deque(maxlen=max(1, spec.flap_transitions))
        self.last: bool | None = None
        self.consecutive = 0  # consecutive results equal to ``last``
        self.status = ""

    def record(self, ok: bool, now: float | None = None) -> str:
        now = self.clock() if now is None else now
        if self.last is not None and ok != self.last:
            self._transitions.append(now)
            self.consecutive = 0
        self.last = ok
        self.consecutive += 1
        self.history.append((now, ok))
        self.status = "flapping" if self.is_flapping(now) else ("healthy" if ok else "unhealthy")
        return self.status

    def transitions(self, now: float | None = None) -> int:
        """Pass/fail changes within the flap window ending at ``now``, counted up to
        ``flap_transitions`` (all the rule needs; older ones are not kept)."""
        now = self.clock() if now is None else now
        cutoff = now - self.spec.flap_window
        return sum(1 for t in self._transitions if t > cutoff)

    def is_flapping(self, now: float | None = None) -> bool:
        return self.transitions(now) >= self.spec.flap_transitions

    @property
    def consecutive_ok(self) -> int:
        return self.consecutive if self.last else 0

    @property
    def consecutive_failed(self) -> int:
        return self.consecutive if self.last is False else 0


# --- vitals -------------------------------------------------------------------------

# One round trip for all three, C locale so df's header and numbers are predictable.
VITALS_COMMAND = (
    "cat /proc/loadavg;"
    " grep -E '^(MemTotal|MemFree|MemAvailable|Buffers|Cached):' /proc/meminfo;"
    " LC_ALL=C df -P /"
)

_LOADAVG_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s+(\d+(?:\.\d+)?)\s+(\d+(?:\.\d+)?)(?:\s|$)")
_MEMINFO_RE = re.compile(r"^\s*([A-Za-z_()0-9]+):\s+(\d+)(?:\s*kB)?\s*$")
_DF_RE = re.compile(r"(\d+)\s+(\d+)\s+(\d+)\s+(\d+)%\s+(\S.*)$")


@dataclass(frozen=True, slots=True)
class Vitals:
    load1: float | None = None
    mem_used_pct: float | None = None
    disk_used_pct: float | None = None

    @property
    def empty(self) -> bool:
        return self.load1 is None and self.mem_used_pct is None and self.disk_used_pct is None


def parse_vitals(lines: Iterable[str]) -> Vitals:
    """Load, memory and disk use from /proc/loadavg, /proc/meminfo and ``df -P`` lines,
    in any order, unknown lines ignored. Memory used is ``MemTotal - MemAvailable``
    (``MemFree + Buffers + Cached`` on kernels without MemAvailable); disk used is
    ``used / (used + available)``, as df's own percentage but not rounded up."""
    load1: float | None = None
    mem: dict[str, int] = {}
    disk: float | None = None
    for line in lines:
        if load1 is None and (m := _LOADAVG_RE.match(line)):
            load1 = float(m.group(1))
            continue
        if m := _MEMINFO_RE.match(line):
            mem[m.group(1)] = int(m.group(2))
            continue
        if disk is None and (m := _DF_RE.search(line)):
            used, avail = int(m.group(2)), int(m.group(3))
            disk = 100.0 * used / (used + avail) if used + avail else float(m.group(4))
    mem_pct: float | None = None
    total = mem.get("MemTotal")
    if total:
        available = mem.get("MemAvailable")
        if available is None and "MemFree" in mem:
            available = mem["MemFree"] + mem.get("Buffers", 0) + mem.get("Cached", 0)
        if available is not None:
            mem_pct = max(0.0, min(100.0, 100.0 * (total - available) / total))
    return Vitals(load1=load1, mem_used_pct=mem_pct, disk_used_pct=disk)


# --- error rate ---------------------------------------------------------------------

# A baseline with (almost) no errors would make any error of the new version an
# infinite multiple of it; below these floors the baseline counts as the floor.
BASELINE_FLOOR_RATIO = 0.001  # 0.1% of requests (metrics)
BASELINE_FLOOR_PER_MIN = 1.0  # 1 error line per host per minute (logs only)
NOISE_ALPHA = 0.001  # one-sided: the excess over a threshold must not be sampling noise
MIN_EXPOSURE = 5.0  # seconds: per-minute rates of a host seen for less are not extrapolated
MIN_NEW_EXPOSURE = 0.25  # logs only: of a window, in host-time, before the new cohort is judged


class _Window:
    """One host's counts over the sliding window, in one-second buckets.

    Running totals are kept with the buckets so reading them is O(1); eviction subtracts
    what leaves. Counts are whole numbers (floats only in type), so the sums are exact.
    """

    __slots__ = (
        "buckets",
        "cohort",
        "error_lines",
        "errors",
        "last_errors",
        "last_requests",
        "lines",
        "requests",
        "since",
    )

    def __init__(self, maxlen: int) -> None:
        self.cohort: str | None = None
        self.buckets: deque[list[float]] = deque(maxlen=maxlen)  # [second, req, err, ln, eln]
        self.requests = 0.0
        self.errors = 0.0
        self.lines = 0.0
        self.error_lines = 0.0
        self.since: float | None = None  # first observation since the last reset
        self.last_requests: float | None = None  # cumulative counters at the last scrape
        self.last_errors: float | None = None

    def clear(self) -> None:
        self.buckets.clear()
        self.requests = self.errors = self.lines = self.error_lines = 0.0
        self.since = None

    def add(self, now: float, req: float, err: float, lines: float, elines: float) -> None:
        if self.since is None:
            self.since = now
        second = math.floor(now)
        if self.buckets and self.buckets[-1][0] == second:
            b = self.buckets[-1]
        else:
            if len(self.buckets) == self.buckets.maxlen:
                self._drop_oldest()
            b = [second, 0.0, 0.0, 0.0, 0.0]
            self.buckets.append(b)
        b[1] += req
        b[2] += err
        b[3] += lines
        b[4] += elines
        self.requests += req
        self.errors += err
        self.lines += lines
        self.error_lines += elines

    def _drop_oldest(self) -> None:
        _, req, err, lines, elines = self.buckets.popleft()
        self.requests -= req
        self.errors -= err
        self.lines -= lines
        self.error_lines -= elines

    def evict(self, now: float, window: float) -> None:
        """Keep only buckets that start after ``now - window``: nothing older than the
        window is ever counted (its oldest second may leave a little early)."""
        cutoff = now - window
        while self.buckets and self.buckets[0][0] <= cutoff:
            self._drop_oldest()

    def exposure(self, now: float, window: float) -> float:
        """Seconds of this window the host was observed for."""
        if self.since is None:
            return 0.0
        return max(0.0, min(window, now - self.since))


@dataclass(frozen=True, slots=True)
class _Cohort:
    errors: float
    requests: float  # metrics mode
    exposure: float  # log mode: host-seconds observed
    hosts: int

    def rate(self, has_metrics: bool) -> float | None:
        if has_metrics:
            return self.errors / self.requests if self.requests > 0 else None
        return self.errors / (self.exposure / 60.0) if self.exposure > 0 else None


class ErrorRateAnalyzer:
    """Sliding-window error rates per host and per cohort, and the automated verdict.

    Two modes, fixed at construction:

    * ``has_metrics``: rate = errors / requests, from cumulative counters scraped off
      each host (:meth:`observe_counters`); unit ``ratio``.
    * logs only: rate = error log lines per host per minute (:meth:`observe_log`);
      unit ``per_min``. The ``max`` rule is a ratio of requests, so it needs metrics;
      in this mode only ``max_vs_baseline`` is evaluated.

    A host's cohort is ``'new'`` (runs the new version), ``'baseline'`` (still on the
    old one) or ``None`` (counted for itself only). Moving a host to another cohort
    clears its window: those counts belong to the version it ran before.

    :meth:`evaluate` judges the new cohort, pooled, against three guards, all of which
    must hold before an alert: at least ``min_requests`` requests (in log mode
    ``min_error_lines`` error lines and a quarter window of host-time, so a restart's
    burst of errors is not extrapolated) in the window; the rate above the threshold; and the
    excess beyond sampling noise (a one-sided z-test at ``noise_alpha`` of the new rate
    against the threshold, binomial per request or Poisson per host-minute, including
    the baseline's own noise for ``max_vs_baseline``), so a healthy fleet's random
    bursts do not roll it back while a real regression, with its many errors, fires
    within a scrape or two.

    ``max_vs_baseline`` compares with the baseline's rate, floored at
    :data:`BASELINE_FLOOR_RATIO` (:data:`BASELINE_FLOOR_PER_MIN` in log mode): against
    an error-free baseline a limit of 2.0 means "alert above 0.2% of requests". The
    baseline needs ``min_requests`` itself (in log mode: half a window of host-time);
    when the live baseline is too thin (the last batches leave few old hosts) the last
    sufficient baseline is used, marked ``baseline_live: False`` in the numbers.

    :meth:`evaluate` does not latch: it returns an alert every time it is called while
    the condition holds; the caller acts on the first.
    """

    def __init__(
        self,
        spec: ErrorRateSpec,
        *,
        has_metrics: bool,
        clock: Clock = time.monotonic,
        noise_alpha: float | None = NOISE_ALPHA,
    ) -> None:
        self.spec = spec
        self.has_metrics = has_metrics
        self.clock = clock
        self.window = float(spec.window)
        self.noise_alpha = noise_alpha
        self._z_min = NormalDist().inv_cdf(1.0 - noise_alpha) if noise_alpha else -math.inf
        self._maxlen = math.ceil(self.window) + 2
        self._hosts: dict[str, _Window] = {}
        self._last_baseline: _Cohort | None = None
        self.resets = 0  # counter resets seen (process restarts)

    @property
    def unit(self) -> str:
        return "ratio" if self.has_metrics else "per_min"

    def _host(self, host: str) -> _Window:
        w = self._hosts.get(host)
        if w is None:
            w = self._hosts[host] = _Window(self._maxlen)
        return w

    # -- input -------------------------------------------------------------------

    def set_cohort(self, host: str, cohort: str | None) -> None:
        if cohort not in ("new", "baseline", None):
            raise ValueError(f"cohort must be 'new', 'baseline' or None, not {cohort!r}")
        w = self._host(host)
        if w.cohort != cohort:
            w.cohort = cohort
            w.clear()

    def cohort(self, host: str) -> str | None:
        w = self._hosts.get(host)
        return w.cohort if w else None

    def forget(self, host: str) -> None:
        self._hosts.pop(host, None)

    def observe_counters(
        self,
        host: str,
        requests_total: float,
        errors_total: float,
        now: float | None = None,
    ) -> None:
        """Feed one scrape of cumulative counters. The first scrape of a host only sets
        its starting point. A counter that went down means the process restarted: both
        counters then count from their new values (as Prometheus' ``rate()`` does)."""
        now = self.clock() if now is None else now
        w = self._host(host)
        last_req, last_err = w.last_requests, w.last_errors
        w.last_requests, w.last_errors = requests_total, errors_total
        if last_req is None or last_err is None:
            if w.since is None:
                w.since = now
            return
        if requests_total < last_req or errors_total < last_err:
            self.resets += 1
            d_req, d_err = requests_total, errors_total
        else:
            d_req, d_err = requests_total - last_req, errors_total - last_err
        w.evict(now, self.window)
        w.add(now, max(0.0, d_req), max(0.0, d_err), 0.0, 0.0)

    def observe_log(
        self, host: str, lines: int, error_lines: int, now: float | None = None
    ) -> None:
        """Feed a batch of followed log lines (``0, 0`` marks the start of following)."""
        now = self.clock() if now is None else now
        w = self._host(host)
        w.evict(now, self.window)
        w.add(now, 0.0, 0.0, float(lines), float(error_lines))

    # -- output ------------------------------------------------------------------

    def _host_numbers(self, w: _Window, now: float) -> tuple[float, float, float]:
        """(errors, requests, exposure seconds) of one host's current window."""
        w.evict(now, self.window)
        if self.has_metrics:
            return w.errors, w.requests, w.exposure(now, self.window)
        return w.error_lines, w.lines, w.exposure(now, self.window)

    def _host_rate(self, errors: float, requests: float, exposure: float) -> float | None:
        if self.has_metrics:
            return errors / requests if requests > 0 else None
        if exposure <= 0:
            return None
        return errors / (max(exposure, MIN_EXPOSURE) / 60.0)

    def _cohort(self, name: str, now: float) -> _Cohort:
        errors = requests = exposure = 0.0
        hosts = 0
        for w in self._hosts.values():
            if w.cohort != name:
                continue
            e, r, x = self._host_numbers(w, now)
            errors += e
            requests += r
            exposure += x
            hosts += 1
        return _Cohort(errors=errors, requests=requests, exposure=exposure, hosts=hosts)

    def samples(self, now: float | None = None) -> list[ErrorRateSample]:
        """One sample per observed host, then ``cohort:new`` and ``cohort:baseline``."""
        now = self.clock() if now is None else now
        out: list[ErrorRateSample] = []
        unit = self.unit
        for host, w in self._hosts.items():
            if w.since is None:
                continue
            e, r, x = self._host_numbers(w, now)
            out.append(
                ErrorRateSample(
                    scope=host,
                    rate=self._host_rate(e, r, x),
                    errors=e,
                    requests=r if self.has_metrics else None,
                    window=self.window,
                    unit=unit,
                )
            )
        for name in ("new", "baseline"):
            c = self._cohort(name, now)
            out.append(
                ErrorRateSample(
                    scope=f"cohort:{name}",
                    rate=c.rate(self.has_metrics),
                    errors=c.errors,
                    requests=c.requests if self.has_metrics else None,
                    window=self.window,
                    unit=unit,
                )
            )
        return out

    def _baseline(self, now: float) -> tuple[_Cohort | None, bool]:
        """The baseline to compare with, and whether it is live (else last sufficient)."""
        live = self._cohort("baseline", now)
        if self.has_metrics:
            enough = live.requests >= self.spec.min_requests
        else:
            enough = live.exposure >= self.window / 2.0
        if enough:
            self._last_baseline = live
            return live, True
        return self._last_baseline, False

    def _unit_variance(self, rate: float) -> float:
        """Variance of one trial's count at ``rate``: binomial per request, Poisson per
        host-minute."""
        return rate * (1.0 - rate) if self.has_metrics else rate

    def _excess_z(
        self,
        new_rate: float,
        new_trials: float,
        threshold: float,
        baseline: tuple[float, float, float] | None = None,
    ) -> float:
        """Standard errors by which ``new_rate`` exceeds ``threshold``. With ``baseline``
        = (factor, baseline rate, baseline trials) the threshold is ``factor`` times a
        measured rate, and that measurement's own noise counts too: a thin baseline
        that happened to see few errors must not make the new version look bad."""
        variance = self._unit_variance(min(threshold, 1.0)) / new_trials
        if baseline is not None:
            factor, base_rate, base_trials = baseline
            variance += factor * factor * self._unit_variance(base_rate) / base_trials
        if variance <= 0:
            return math.inf if new_rate > threshold else -math.inf
        return (new_rate - threshold) / math.sqrt(variance)

    def evaluate(self, now: float | None = None) -> Alert | None:
        """An alert when the new cohort breaks ``max`` or ``max_vs_baseline``, else None."""
        now = self.clock() if now is None else now
        new = self._cohort("new", now)
        m = self.has_metrics
        if m and new.requests < self.spec.min_requests:
            return None
        if not m and (
            new.errors < self.spec.min_error_lines
            or new.exposure < MIN_NEW_EXPOSURE * self.window
            or new.exposure <= 0
        ):
            return None
        trials = new.requests if m else new.exposure / 60.0
        new_rate = new.errors / trials
        baseline, live = self._baseline(now)
        base_rate = baseline.rate(m) if baseline else None
        numbers: dict[str, Any] = {
            "new_rate": new_rate,
            "baseline_rate": base_rate,
            "requests": new.requests if m else None,
            "errors": new.errors,
            "window": self.window,
            "unit": self.unit,
            "new_hosts": new.hosts,
        }
        if baseline is not None:
            numbers.update(
                baseline_errors=baseline.errors,
                baseline_requests=baseline.requests if m else None,
                baseline_hosts=baseline.hosts,
                baseline_live=live,
            )
        if not m:
            numbers["host_minutes"] = trials

        limit = self.spec.max
        if m and limit is not None and new_rate > limit:
            z = self._excess_z(new_rate, trials, limit)
            if z >= self._z_min:
                numbers.update(threshold=limit, z=_finite(z))
                return Alert(
                    level="critical",
                    rule="error_rate.max",
                    message=(f"{self._describe(new)}, above the {_pct(limit)} maximum"),
                    numbers=numbers,
                )

        factor = self.spec.max_vs_baseline
        if factor is not None and baseline is not None and base_rate is not None:
            floor = BASELINE_FLOOR_RATIO if m else BASELINE_FLOOR_PER_MIN
            effective = max(base_rate, floor)
            threshold_rate = factor * effective
            if new_rate > threshold_rate and (not m or threshold_rate < 1.0):
                base_trials = baseline.requests if m else baseline.exposure / 60.0
                z = self._excess_z(
                    new_rate, trials, threshold_rate, (factor, effective, base_trials)
                )
                if z >= self._z_min:
                    numbers.update(
                        threshold=factor,
                        threshold_rate=threshold_rate,
                        baseline_floor=floor,
                        ratio=new_rate / effective,
                        z=_finite(z),
                    )
                    base_words = self._rate_words(base_rate, short=True)
                    if base_rate < floor:
                        base_words += f", counted as {self._rate_words(floor, short=True)}"
                    stale = ", last measured" if not live else ""
                    return Alert(
                        level="critical",
                        rule="error_rate.max_vs_baseline",
                        message=(
                            f"{self._describe(new)}, {new_rate / effective:.1f}x the "
                            f"baseline's {base_words} ({self._counts(baseline)}{stale}); "
                            f"the limit is {factor:g}x"
                        ),
                        numbers=numbers,
                    )
        return None

    def host_rates(self, cohort: str, now: float | None = None) -> list[float]:
        """Current rates of the cohort's hosts that have one (for rank tests)."""
        now = self.clock() if now is None else now
        rates = []
        for w in self._hosts.values():
            if w.cohort == cohort and w.since is not None:
                rate = self._host_rate(*self._host_numbers(w, now))
                if rate is not None:
                    rates.append(rate)
        return rates

    def canary(self, now: float | None = None, *, alpha: float = 0.05) -> CanaryAnalysis:
        """The statistical comparison shown to the operator (automated canary analysis):
        with metrics, a two-proportion z-test of the new cohort's pooled errors against
        the baseline's; with logs only, a Mann-Whitney U test of the new hosts' error
        lines per minute against the baseline hosts'. Informative, not a trigger: the
        automated decision is :meth:`evaluate`."""
        now = self.clock() if now is None else now
        if not self.has_metrics:
            return canary_rank_analysis(
                self.host_rates("new", now), self.host_rates("baseline", now), alpha=alpha
            )
        new = self._cohort("new", now)
        base, _ = self._baseline(now)
        if base is None:
            base = self._cohort("baseline", now)
        return canary_analysis(new.errors, new.requests, base.errors, base.requests, alpha=alpha)

    # -- words -------------------------------------------------------------------

    def _rate_words(self, rate: float, *, short: bool = False) -> str:
        if self.has_metrics:
            return _pct(rate)
        return f"{rate:.1f}" if short else f"{rate:.1f} error lines per host-minute"

    def _counts(self, c: _Cohort) -> str:
        if self.has_metrics:
            return f"{c.errors:,.0f} errors in {c.requests:,.0f} requests"
        return f"{c.errors:,.0f} in {c.exposure / 60.0:,.1f} host-minutes"

    def _describe(self, c: _Cohort) -> str:
        """``error rate of the new version is 15.0% (150 errors in 1,000 requests in the
        last 60s)``, or in log mode ``the new version logs 4.0 error lines per
        host-minute (8 in 2.0 host-minutes in the last 60s)``."""
        rate = self._rate_words(c.rate(self.has_metrics) or 0.0)
        counts = f"({self._counts(c)} in the last {self.window:g}s)"
        if self.has_metrics:
            return f"error rate of the new version is {rate} {counts}"
        return f"the new version logs {rate} {counts}"


def _pct(ratio: float) -> str:
    pct = ratio * 100.0
    return f"{pct:.2f}%" if pct < 1.0 else f"{pct:.1f}%"


def _finite(z: float) -> float | None:
    """JSON has no infinity: the journal gets None for an unbounded z."""
    return z if math.isfinite(z) else None
