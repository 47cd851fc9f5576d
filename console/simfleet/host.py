"""One simulated host: its service's releases, process, traffic, health, logs, vitals.

Pure state and arithmetic, no SSH and no sleeping: the command layer
(:mod:`console.simfleet.commands`) does the waiting; everything here is a function of
the host's state and the current monotonic time, so it is cheap for 1,000 hosts.

Traffic is simulated lazily: counters advance by ``request_rate x elapsed`` when
someone looks (metrics, logs), never on a timer. Behind a load balancer
(``real_traffic``) nothing is simulated: the counters and the request log lines are
the real HTTP requests the host answered (:meth:`SimHost.answer`, then
:meth:`SimHost.served`), so a host HAProxy sends nothing reports nothing.

Randomness comes from per-host generators seeded with ``f"{seed}:{host}"`` (one
stream per purpose, so reading logs never shifts install timings): the same seed
gives the same behaviour.
"""

from __future__ import annotations

import math
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from console.simfleet.scenario import Behaviour, Scenario, Trigger

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
LATENCY_SIGMA = 0.5  # log-normal spread of request latency around its median
LOG_HISTORY = 200  # lines `svc logs` can show
MAX_LATENCY = 5.0  # seconds: a real request's simulated latency is capped here
MEM_TOTAL_KB = 8_142_296
DISK_TOTAL_KB = 51_474_912
RELEASE_KB = 262_144

LineSink = Callable[[str], None]
TriggerHook = Callable[["SimHost", str, Trigger], None]

_PATHS = (
    ("GET", "/api/cart"),
    ("GET", "/api/products"),
    ("GET", "/api/products/{id}"),
    ("POST", "/api/cart/items"),
    ("POST", "/api/checkout"),
    ("GET", "/healthz"),
)
_ERRORS = (
    "upstream timed out (payments:443)",
    "database connection pool exhausted",
    "unhandled exception in CheckoutHandler.submit: KeyError 'currency'",
    "circuit breaker open: inventory-service",
)
_APP_LINES = (
    "cache refreshed: 1,204 products",
    "connection pool: 12 active, 4 idle",
    "gc pause 8ms",
    "config reloaded",
)


@dataclass(frozen=True, slots=True)
class Answer:
    """One ``GET /``: status, body, the version that answered ("" if none did), and
    how long the request takes."""

    status: int
    body: str
    version: str
    latency: float


@dataclass(frozen=True, slots=True)
class HostState:
    """A snapshot for tests, drills and scorecards."""

    name: str
    port: int
    active: str
    running: str
    installed: tuple[str, ...]
    drained: bool
    restarts: int
    reachable: bool
    disk_full: bool


def _latency_cdf(x: float, median: float) -> float:
    return 0.5 * (1.0 + math.erf(math.log(x / median) / (LATENCY_SIGMA * math.sqrt(2.0))))


def _timestamp(wall: float) -> str:
    return (
        time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(wall)) + f".{int(wall * 1000) % 1000:03d}Z"
    )


class SimHost:
    """The simulated service on one host. State survives simulated restarts."""

    def __init__(
        self,
        name: str,
        scenario: Scenario,
        *,
        seed: int | str = 0,
        time_scale: float | None = None,
        log_rate: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.scenario = scenario
        self.service = scenario.service
        self.clock = clock
        self.port = 0
        self.rng = random.Random(f"{seed}:{name}")  # install/restart durations
        self.log_rng = random.Random(f"{seed}:{name}:logs")
        self.vitals_rng = random.Random(f"{seed}:{name}:vitals")
        self.rules = scenario.rules_for(name)
        self.slow = math.prod(r.slow for r in self.rules if r.slow) or 1.0
        self.time_scale = scenario.time_scale if time_scale is None else time_scale
        self.log_rate = scenario.log_rate if log_rate is None else log_rate
        self.installed: list[str] = [scenario.initial_version]
        self.active = scenario.initial_version
        self.running = scenario.initial_version
        self.drained = False
        self.restarts = 0
        self.reachable = True
        self.disk_full = any(r.disk_full and r.disk_full.at_start for r in self.rules)
        self.installing = 0
        self.real_traffic = False  # behind the fleet's HAProxy: count real requests only
        self.request_rng = random.Random(f"{seed}:{name}:requests")
        self._request_lines: deque[str] = deque(maxlen=LOG_HISTORY)
        self.on_trigger: TriggerHook | None = None
        self._fired: set[tuple[int, str]] = set()
        self._behaviour: dict[str, Behaviour] = {}
        self._flap_phase = self.rng.random()
        # The flap window of the last probe, if it passed; -1 once the process restarted
        # after a passing probe (it was down since: a failure that probe never saw).
        self._passed_in: int | None = None
        now = clock()
        self.pid = self.rng.randrange(1000, 60000)
        self.boot_wall = time.time() - self.rng.uniform(3600, 30 * 86400)
        self._start(now, now)
        self.log_history: deque[str] = deque(maxlen=LOG_HISTORY)
        self.followers: set[LineSink] = set()
        self._last_log = now
        self._log_carry = 0.0

    # --- the simulated process -------------------------------------------------------

    def _start(self, now: float, ready_at: float) -> None:
        """The process (re)starts at ``now``, serving from ``ready_at``: counters reset."""
        self.started = now
        self.started_wall = time.time() + (now - self.clock())
        self.ready_at = ready_at
        self._last_advance = ready_at
        if self._passed_in is not None:
            self._passed_in = -1  # a restart since the last passing probe
        self.ok_total = 0.0
        self.err_total = 0.0
        self.latency_sum = 0.0
        self.buckets = [0.0] * len(LATENCY_BUCKETS)

    def behaviour(self, version: str | None = None) -> Behaviour:
        version = version or self.running
        b = self._behaviour.get(version)
        if b is None:
            b = self._behaviour[version] = self.scenario.behaviour(self.name, version)
        return b

    def scaled(self, seconds: float) -> float:
        """A scenario duration on this host: time_scale, then the slow factor."""
        return seconds * self.time_scale * self.slow

    def install_time(self, version: str) -> float:
        lo, hi = self.behaviour(version).install_duration or (1.0, 3.0)
        return self.scaled(self.rng.uniform(lo, hi))

    def restart(self) -> float:
        """Begin a restart now; returns how long the process is down. The state change
        is a function of time, so a cancelled ``svc restart`` still restarts."""
        lo, hi = self.behaviour(self.active).restart_duration or (0.2, 0.6)
        down = self.scaled(self.rng.uniform(lo, hi))
        now = self.clock()
        self.emit([self.log_line(time.time(), "INFO ", "received SIGTERM, shutting down")])
        self.running = self.active
        self.restarts += 1
        self.pid = self.rng.randrange(1000, 60000)
        warmup = self.scaled(self.behaviour().warmup or 0.0)
        self._start(now + down, now + down + warmup)
        return down

    def state(self) -> HostState:
        return HostState(
            name=self.name,
            port=self.port,
            active=self.active,
            running=self.running,
            installed=tuple(self.installed),
            drained=self.drained,
            restarts=self.restarts,
            reachable=self.reachable,
            disk_full=self.disk_full,
        )

    def process_up(self, now: float) -> bool:
        return now >= self.started

    def serving(self, now: float) -> bool:
        return now >= self.ready_at

    # --- faults ----------------------------------------------------------------------

    def fire(self, command: str, version: str | None = None) -> None:
        """Tell the fleet about triggers set off by ``svc COMMAND [VERSION]`` (once each)."""
        if self.on_trigger is None:
            return
        for i, rule in enumerate(self.rules):
            for kind, trigger in (("unreachable", rule.unreachable), ("disk_full", rule.disk_full)):
                if trigger is None or trigger.on != command or (i, kind) in self._fired:
                    continue
                if trigger.version is not None and not self.scenario.version_matches(
                    trigger.version, version or ""
                ):
                    continue
                self._fired.add((i, kind))
                self.on_trigger(self, kind, trigger)

    # --- health ----------------------------------------------------------------------

    def health(self, *, probe: bool = False) -> tuple[bool, str]:
        """The health endpoint's answer now. ``probe`` marks a probe (``svc health``),
        not a look (``svc status``): a flapping host's probe also fails when a failing
        stretch (or a restart) went by unseen since the previous probe passed, as a
        check that reports "failed since the last scrape" does. Without that, probes
        whose spacing drifts under load could step over every failing stretch and see
        passes only. Passes in a row then fall in one period, so a gate probing every
        ``every`` never sees ``healthy_after`` of them when the period is under
        ``(healthy_after - 1) * every`` (the built-in scenario: 3 s against 2 x 2 s).
        The memory is the host's, not each prober's: the engine probes a host from one
        place at a time (its gate, then its watch), as the scenarios assume."""
        ok, detail, window = self._health(self.clock(), probe)
        if probe:
            self._passed_in = window if ok else None
        return ok, detail

    def _health(self, now: float, probe: bool) -> tuple[bool, str, int | None]:
        """The answer, and the flap window it fell in (None when not flapping)."""
        if not self.process_up(now):
            return False, f"fail: connection refused: {self.service} is not running", None
        if not self.serving(now):
            return False, "fail: 503 Service Unavailable: warming up", None
        b = self.behaviour()
        if b.health == "failing":
            detail = "fail: 500 Internal Server Error: /healthz: dependency check failed"
            return False, detail, None
        window = None
        if b.flapping:
            # Windows of one period, passing (even) and failing (odd) in turn.
            window = int((now - self.started) / self.scaled(b.flapping) + self._flap_phase)
            unseen = probe and self._passed_in is not None and self._passed_in != window
            if window % 2 == 1 or unseen:
                return False, "fail: 503 Service Unavailable: /healthz timed out after 2s", window
        up = int(now - self.started)
        drained = ", drained" if self.drained else ""
        return True, f"ok: {self.service} {self.running} up {up}s{drained}", window

    # --- application requests (behind the load balancer) --------------------------

    def answer(self) -> Answer:
        """What ``GET /`` gets now: 503 while the process is down or warming up, else
        200, or 500 with the running version's ``error_rate`` (seeded). The caller
        waits ``latency`` before answering, then calls :meth:`served`."""
        now = self.clock()
        if not self.process_up(now):
            return Answer(503, f"{self.name}: {self.service} is not running\n", "", 0.0)
        if not self.serving(now):
            return Answer(503, f"{self.name}: {self.service} is starting\n", "", 0.0)
        b = self.behaviour()
        r = self.request_rng
        median = (b.latency or 0.04) * self.slow
        latency = min(MAX_LATENCY, median * math.exp(r.gauss(0.0, LATENCY_SIGMA)))
        version = self.running
        if r.random() < (b.error_rate or 0.0):
            error = r.choice(_ERRORS)
            return Answer(500, f"{self.name} {version} error: {error}\n", version, latency)
        return Answer(200, f"{self.name} {version}\n", version, latency)

    def served(self, answer: Answer) -> None:
        """Count an answered request (only behind the load balancer: otherwise the
        counters are the simulated traffic's) and log it."""
        if not self.real_traffic or not answer.version or not self.process_up(self.clock()):
            return
        failed = answer.status >= 500
        if failed:
            self.err_total += 1
        else:
            self.ok_total += 1
        for i, le in enumerate(LATENCY_BUCKETS):
            if answer.latency <= le:
                self.buckets[i] += 1
        self.latency_sum += answer.latency
        ms = max(1, round(answer.latency * 1000))
        if failed:
            line = f"GET / {answer.status} {ms}ms: {answer.body.split(': ', 1)[-1].strip()}"
            self._request_lines.append(self.log_line(time.time(), "ERROR", line))
        else:
            self._request_lines.append(self.log_line(time.time(), "INFO ", f"GET / 200 {ms}ms"))

    # --- metrics ---------------------------------------------------------------------

    def advance(self, now: float) -> None:
        """Account the requests served since the last look (simulated traffic only)."""
        dt = now - self._last_advance
        if dt <= 0:
            return
        self._last_advance = now
        if self.drained or self.real_traffic:
            return
        b = self.behaviour()
        n = self.scenario.request_rate * dt / self.time_scale  # scaled time runs faster
        err = n * (b.error_rate or 0.0)
        self.err_total += err
        self.ok_total += n - err
        median = (b.latency or 0.04) * self.slow
        for i, le in enumerate(LATENCY_BUCKETS):
            self.buckets[i] += n * _latency_cdf(le, median)
        self.latency_sum += n * median * math.exp(LATENCY_SIGMA**2 / 2.0)

    def metrics_text(self) -> str | None:
        """Prometheus text exposition, or None when the process is down."""
        now = self.clock()
        if not self.process_up(now):
            return None
        self.advance(now)
        ok, err = math.floor(self.ok_total), math.floor(self.err_total)
        count = ok + err
        lines = [
            "# HELP http_requests_total Total HTTP requests handled, by status code.",
            "# TYPE http_requests_total counter",
            f'http_requests_total{{code="200"}} {ok}',
            f'http_requests_total{{code="500"}} {err}',
            "# HELP http_request_duration_seconds HTTP request latency.",
            "# TYPE http_request_duration_seconds histogram",
        ]
        for le, value in zip(LATENCY_BUCKETS, self.buckets, strict=True):
            lines.append(
                f'http_request_duration_seconds_bucket{{le="{le}"}} {min(count, math.floor(value))}'
            )
        lines += [
            f'http_request_duration_seconds_bucket{{le="+Inf"}} {count}',
            f"http_request_duration_seconds_sum {self.latency_sum:.3f}",
            f"http_request_duration_seconds_count {count}",
            "# HELP process_start_time_seconds Start time of the process since the epoch.",
            "# TYPE process_start_time_seconds gauge",
            f"process_start_time_seconds {self.started_wall:.3f}",
            "# HELP app_info The running release.",
            "# TYPE app_info gauge",
            f'app_info{{service="{self.service}",version="{self.running}"}} 1',
        ]
        return "\n".join(lines) + "\n"

    # --- vitals ----------------------------------------------------------------------

    def loadavg(self) -> str:
        r = self.vitals_rng
        base = 0.25 + 0.9 * self.installing + 0.4 * (self.slow - 1.0)
        loads = [max(0.0, base * f + r.uniform(-0.05, 0.08)) for f in (1.0, 0.85, 0.7)]
        procs = 110 + r.randrange(30)
        load = " ".join(f"{x:.2f}" for x in loads)
        return f"{load} {1 + self.installing}/{procs} {self.pid}\n"

    def meminfo(self) -> str:
        used = 2_400_000 + 350_000 * self.installing + self.vitals_rng.randrange(0, 120_000)
        free = (MEM_TOTAL_KB - used) // 3
        return (
            f"MemTotal:       {MEM_TOTAL_KB:>8} kB\n"
            f"MemFree:        {free:>8} kB\n"
            f"MemAvailable:   {MEM_TOTAL_KB - used:>8} kB\n"
        )

    def df(self) -> str:
        used = DISK_TOTAL_KB if self.disk_full else 18_874_368 + RELEASE_KB * len(self.installed)
        avail = DISK_TOTAL_KB - used
        pct = math.ceil(100 * used / DISK_TOTAL_KB)
        return (
            "Filesystem     1K-blocks     Used Available Use% Mounted on\n"
            f"/dev/vda1      {DISK_TOTAL_KB:>9} {used:>8} {avail:>9} {pct:>3}% /\n"
        )

    def vitals_text(self) -> str:
        """Load, memory and disk, in the formats of /proc/loadavg, /proc/meminfo, df."""
        return self.loadavg() + self.meminfo() + self.df()

    # --- logs ------------------------------------------------------------------------

    def log_line(self, wall: float, level: str, message: str) -> str:
        return f"{_timestamp(wall)} {level} {self.service}[{self.pid}]: {message}\n"

    def _traffic_line(self, wall: float, serving: bool) -> str | None:
        r = self.log_rng
        if not serving or self.drained:
            if r.random() < 0.1:
                return self.log_line(
                    wall, "INFO ", "idle: no traffic (drained)" if self.drained else "starting"
                )
            return None
        if r.random() < 0.05:
            return self.log_line(wall, "INFO ", r.choice(_APP_LINES))
        b = self.behaviour()
        method, path = r.choice(_PATHS)
        path = path.replace("{id}", str(r.randrange(1, 5000)))
        ms = max(
            1, int(1000 * (b.latency or 0.04) * self.slow * math.exp(r.gauss(0.0, LATENCY_SIGMA)))
        )
        if r.random() < (b.error_rate or 0.0):
            error = r.choice(_ERRORS)
            return self.log_line(wall, "ERROR", f"{method} {path} 500 {ms}ms: {error}")
        return self.log_line(wall, "INFO ", f"{method} {path} 200 {ms}ms")

    def generate_logs(self) -> list[str]:
        """The log lines written since the last call (at most LOG_HISTORY), spread
        over the elapsed time. Not yet recorded: pass them to :meth:`emit`."""
        now = self.clock()
        elapsed = now - self._last_log
        if elapsed <= 0:
            return []
        self._last_log = now
        self._log_carry += elapsed * self.log_rate
        count = int(self._log_carry)
        self._log_carry -= count
        count = min(count, LOG_HISTORY)
        if self.real_traffic:  # the requests it really answered, none invented
            lines = list(self._request_lines)
            self._request_lines.clear()
            return lines
        wall_now = time.time()
        serving = self.serving(now) and self.process_up(now)
        lines = []
        for i in range(count):
            line = self._traffic_line(wall_now - elapsed * (count - 1 - i) / max(count, 1), serving)
            if line is not None:
                lines.append(line)
        return lines

    def emit(self, lines: list[str]) -> None:
        """Record lines and hand them to every follower at once (like journald)."""
        if not lines:
            return
        self.log_history.extend(lines)
        text = "".join(lines)
        for sink in tuple(self.followers):
            sink(text)

    def recent_logs(self, n: int) -> list[str]:
        self.emit(self.generate_logs())
        if n <= 0:
            return []
        return list(self.log_history)[-n:]
