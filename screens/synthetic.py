"""A synthetic, seeded event stream for exercising the console without an engine.

Used by the TUI tests (fixed states for snapshots), ``bench/tui_load.py`` (1,000 hosts
streaming thousands of log lines a second) and the visual check in tmux. It produces
the same typed events the engine publishes; it never pretends to deploy anything.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

from console.core import events as ev
from console.core.events import HostState, RolloutState

GROUPS = ("web", "api", "worker")
STEPS = ("drain", "install", "restart", "undrain")
STAGES = ("running", "gate", "paused", "rolling_back", "done")


class SyntheticRollout:
    """A rollout of ``hosts`` hosts in batches [1, 25%, rest], built event by event."""

    def __init__(
        self,
        hosts: int = 24,
        *,
        seed: int = 7,
        start: float = 1_750_000_000.0,
        service: str = "checkout-api",
        old: str = "2.4.0",
        new: str = "2.4.1",
        environment: str = "prod",
        operator: str = "alice",
    ) -> None:
        self.rng = random.Random(seed)
        self.t = start
        self.start = start
        self.service = service
        self.old = old
        self.new = new
        self.environment = environment
        self.operator = operator
        per = max(1, hosts // len(GROUPS))
        self.names: list[str] = []
        for i in range(hosts):
            group = GROUPS[min(i // per, len(GROUPS) - 1)]
            self.names.append(f"{group}-{i + 1:02d}")
        quarter = max(1, hosts // 4)
        self.batches: tuple[tuple[str, ...], ...] = (
            (self.names[0],),
            tuple(self.names[1 : 1 + quarter]),
            tuple(self.names[1 + quarter :]),
        )
        self._line_no = 0

    # -- building blocks ---------------------------------------------------------------

    def _tick(self, dt: float = 1.0) -> float:
        self.t += dt
        return self.t

    def started(self) -> list[ev.Event]:
        hosts = {
            name: {
                "name": name,
                "address": f"127.0.0.{i % 250 + 1}",
                "port": 22000 + i,
                "groups": [name.split("-")[0], "eu" if i % 2 else "us"],
            }
            for i, name in enumerate(self.names)
        }
        out: list[ev.Event] = [
            ev.RolloutStarted(
                ts=self.t,
                rollout_id="20250615-checkout-api-7f3a",
                service=self.service,
                version=self.new,
                operator=self.operator,
                spec_path="rollout.yaml",
                spec_hash="7f3a",
                spec_text="",
                inventory_path="inventory.yaml",
                batches=self.batches,
                settings={"environment": self.environment},
                hosts=hosts,
            ),
            ev.RolloutStateChanged(ts=self._tick(), state=RolloutState.PREFLIGHT),
        ]
        for name in self.names:
            out.append(ev.PreflightResult(ts=self.t, host=name, reachable=True, version=self.old))
            out.append(ev.VersionRead(ts=self.t, host=name, version=self.old, role="previous"))
        out.append(ev.RolloutStateChanged(ts=self._tick(), state=RolloutState.RUNNING))
        return out

    def deploy(
        self, host: str, *, fail_at: str | None = None, stop_at: str | None = None
    ) -> list[ev.Event]:
        """Steps of one host; ``fail_at`` fails that step, ``stop_at`` leaves it running."""
        out: list[ev.Event] = [
            ev.HostStateChanged(
                ts=self._tick(0.2), host=host, state=HostState.RUNNING, step=STEPS[0]
            )
        ]
        for step in STEPS:
            cmd = {
                "drain": f"svc drain {host}",
                "install": f"svc install {self.new}",
                "restart": "svc restart",
                "undrain": f"svc undrain {host}",
            }[step]
            out.append(ev.StepStarted(ts=self._tick(0.1), host=host, step=step, command=cmd))
            out.append(
                ev.HostStateChanged(ts=self.t, host=host, state=HostState.RUNNING, step=step)
            )
            if step == stop_at:
                out.append(
                    ev.StepOutput(
                        ts=self._tick(0.3), host=host, step=step, lines=(f"fetching {self.new}…",)
                    )
                )
                return out
            took = round(self.rng.uniform(0.4, 6.0), 1)
            if step == fail_at:
                tail = (f"installing {self.new}", "error: checksum mismatch for release tarball")
                out.append(
                    ev.StepFinished(
                        ts=self._tick(took),
                        host=host,
                        step=step,
                        status="failed",
                        exit_code=1,
                        duration=took,
                        output_tail=tail,
                    )
                )
                out.append(
                    ev.HostStateChanged(
                        ts=self.t,
                        host=host,
                        state=HostState.FAILED,
                        step=step,
                        detail=f"exit 1 in {step}: checksum mismatch",
                    )
                )
                return out
            tail = (
                (f"{step}: ok",)
                if step != "install"
                else (f"unpacked {self.new}", f"installed {self.new}")
            )
            out.append(
                ev.StepFinished(
                    ts=self._tick(took),
                    host=host,
                    step=step,
                    status="ok",
                    exit_code=0,
                    duration=took,
                    output_tail=tail,
                )
            )
        out.append(
            ev.HostStateChanged(ts=self.t, host=host, state=HostState.VERIFYING, step="health")
        )
        out.append(ev.VersionRead(ts=self.t, host=host, version=self.new, role="new"))
        for k in range(1, 4):
            out.append(
                ev.HealthSample(
                    ts=self._tick(2.0),
                    host=host,
                    ok=True,
                    detail="200 OK",
                    consecutive=k,
                    status="healthy" if k == 3 else "",
                )
            )
        out.append(
            ev.HostStateChanged(ts=self.t, host=host, state=HostState.HEALTHY, step="health")
        )
        return out

    def signals(self, hosts: list[str], samples: int = 8, bad: float = 0.004) -> list[ev.Event]:
        """Vitals, per-host error rates, a few log lines each, cohort rates."""
        out: list[ev.Event] = []
        rng = self.rng
        new_hosts = set(hosts)
        for _ in range(samples):
            ts = self._tick(5.0)
            for name in self.names:
                on_new = name in new_hosts
                rate = max(0.0, rng.gauss(bad if on_new else 0.003, 0.002))
                out.append(
                    ev.ErrorRateSample(
                        ts=ts, scope=name, rate=rate, errors=rate * 500, requests=500, window=60
                    )
                )
            out.append(
                ev.ErrorRateSample(
                    ts=ts,
                    scope="cohort:new",
                    rate=max(0.0, rng.gauss(bad, 0.001)),
                    errors=1,
                    requests=1000,
                    window=60,
                )
            )
            out.append(
                ev.ErrorRateSample(
                    ts=ts,
                    scope="cohort:baseline",
                    rate=max(0.0, rng.gauss(0.003, 0.0007)),
                    errors=1,
                    requests=1000,
                    window=60,
                )
            )
        for i, name in enumerate(self.names):
            out.append(
                ev.VitalsSample(
                    ts=self.t,
                    host=name,
                    load1=round(0.2 + (i % 7) * 0.31, 2),
                    mem_used_pct=40 + (i * 7) % 45,
                    disk_used_pct=55.0,
                )
            )
            out.append(self.log_lines(name, 3))
        return out

    def log_lines(self, host: str, n: int, error_every: int = 9) -> ev.LogLines:
        lines = []
        errors = 0
        for _ in range(n):
            self._line_no += 1
            k = self._line_no
            if k % error_every == 0:
                lines.append(f"ERROR upstream timeout after 3000ms path=/api/cart req={k:06d}")
                errors += 1
            else:
                lines.append(f"INFO GET /api/cart 200 {12 + k % 40}ms req={k:06d}")
        return ev.LogLines(ts=self.t, host=host, lines=tuple(lines), errors=errors)

    # -- whole states ----------------------------------------------------------------

    def scenario(self, stage: str) -> list[ev.Event]:
        """A fixed history ending in ``stage``: one of :data:`STAGES`."""
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; one of {STAGES}")
        out = self.started()
        canary = self.batches[0]
        out.append(ev.BatchStarted(ts=self._tick(), index=0, total=len(self.batches), hosts=canary))
        for host in canary:
            out.extend(self.deploy(host))
        out.append(ev.BatchFinished(ts=self._tick(), index=0, succeeded=canary, failed=()))
        out.append(ev.GateWaiting(ts=self._tick(), after_batch=0, gate="manual"))
        out.append(
            ev.RolloutStateChanged(ts=self.t, state=RolloutState.WAITING, reason="manual gate")
        )
        out.extend(self.signals(list(canary)))
        if stage == "gate":
            return out
        out.append(
            ev.OperatorCommand(ts=self._tick(30), command="continue", operator=self.operator)
        )
        out.append(ev.GatePassed(ts=self.t, after_batch=0, by=f"operator:{self.operator}"))
        out.append(ev.RolloutStateChanged(ts=self.t, state=RolloutState.RUNNING))
        second = self.batches[1]
        out.append(ev.BatchStarted(ts=self._tick(), index=1, total=len(self.batches), hosts=second))
        moved = list(canary)
        for i, host in enumerate(second):
            if i == 2:
                out.extend(self.deploy(host, fail_at="install"))
            elif i >= len(second) - 2:
                out.extend(self.deploy(host, stop_at="install" if i % 2 else "restart"))
            else:
                out.extend(self.deploy(host))
            moved.append(host)
        bad = 0.031 if stage == "rolling_back" else 0.006
        out.extend(self.signals(moved, bad=bad))
        if stage == "running":
            return out
        if stage == "paused":
            out.append(
                ev.OperatorCommand(
                    ts=self._tick(),
                    command="pause",
                    operator=self.operator,
                    reason="checking web-04",
                )
            )
            out.append(
                ev.RolloutStateChanged(
                    ts=self.t, state=RolloutState.PAUSED, reason=f"operator {self.operator}"
                )
            )
            return out
        if stage == "rolling_back":
            out.append(
                ev.Alert(
                    ts=self._tick(),
                    level="critical",
                    rule="error_rate.max",
                    message="new version 3.1% > max 2.0% over 60s",
                    numbers={"new": 0.031, "max": 0.02},
                    action="rollback",
                )
            )
            out.append(
                ev.RolloutStateChanged(
                    ts=self.t, state=RolloutState.ROLLING_BACK, reason="error_rate.max"
                )
            )
            changed = [h for h in moved if h not in second[-2:]]
            out.append(
                ev.BatchStarted(
                    ts=self._tick(), index=0, total=2, hosts=tuple(changed[:4]), rollback=True
                )
            )
            for j, host in enumerate(changed[:4]):
                out.append(
                    ev.StepStarted(
                        ts=self._tick(0.2),
                        host=host,
                        step="activate",
                        command=f"svc activate {self.old}",
                        rollback=True,
                    )
                )
                if j < 2:
                    out.append(
                        ev.StepFinished(
                            ts=self._tick(1.0),
                            host=host,
                            step="activate",
                            status="ok",
                            exit_code=0,
                            duration=1.0,
                            rollback=True,
                        )
                    )
                    out.append(
                        ev.HostStateChanged(
                            ts=self.t, host=host, state=HostState.ROLLED_BACK, step="activate"
                        )
                    )
                    out.append(
                        ev.VersionRead(ts=self.t, host=host, version=self.old, role="current")
                    )
                else:
                    out.append(
                        ev.HostStateChanged(
                            ts=self.t, host=host, state=HostState.ROLLING_BACK, step="activate"
                        )
                    )
            return out
        # done
        for host in second[-2:]:
            out.extend(self.deploy(host))
        out.append(ev.BatchFinished(ts=self._tick(), index=1, succeeded=second, failed=()))
        last = self.batches[2]
        out.append(ev.BatchStarted(ts=self._tick(), index=2, total=len(self.batches), hosts=last))
        for host in last:
            out.extend(self.deploy(host))
        out.append(ev.BatchFinished(ts=self._tick(), index=2, succeeded=last, failed=()))
        out.append(ev.RolloutFinished(ts=self._tick(), outcome=ev.Outcome.SUCCEEDED, exit_code=0))
        return out


class LoadStream:
    """An endless stream for load tests: ``lines_per_s`` log lines in total across the
    fleet, vitals and error rates every ``signal_every`` seconds per host, and hosts
    moving through the batches as they would in a rollout."""

    def __init__(
        self,
        rollout: SyntheticRollout,
        *,
        lines_per_s: float = 5000.0,
        lines_per_event: int = 5,
        signal_every: float = 5.0,
        transitions_per_s: float = 20.0,
    ) -> None:
        self.r = rollout
        self.lines_per_s = lines_per_s
        self.lines_per_event = lines_per_event
        self.signal_every = signal_every
        self.transitions_per_s = transitions_per_s
        self._carry_lines = 0.0
        self._carry_signals = 0.0
        self._carry_moves = 0.0
        self._next_host = 0
        self._signal_host = 0
        self._pending: Iterator[ev.Event] = iter(())

    def step(self, dt: float) -> list[ev.Event]:
        """The events of the next ``dt`` seconds."""
        r = self.r
        out: list[ev.Event] = []
        n = len(r.names)
        self._carry_moves += dt * self.transitions_per_s
        while self._carry_moves >= 1:
            self._carry_moves -= 1
            nxt = next(self._pending, None)
            if nxt is None and self._next_host < n:
                host = r.names[self._next_host]
                self._next_host += 1
                self._pending = iter(
                    r.deploy(host, fail_at="install" if self._next_host % 97 == 0 else None)
                )
                nxt = next(self._pending, None)
            if nxt is not None:
                out.append(nxt)
        self._carry_signals += dt * n / self.signal_every
        while self._carry_signals >= 1:
            self._carry_signals -= 1
            host = r.names[self._signal_host % n]
            self._signal_host += 1
            rate = max(0.0, r.rng.gauss(0.005, 0.002))
            out.append(
                ev.VitalsSample(
                    ts=r.t,
                    host=host,
                    load1=round(r.rng.uniform(0.1, 3), 2),
                    mem_used_pct=round(r.rng.uniform(30, 90), 1),
                )
            )
            out.append(
                ev.ErrorRateSample(
                    ts=r.t, scope=host, rate=rate, errors=rate * 100, requests=100, window=60
                )
            )
            if self._signal_host % n == 0:
                out.append(
                    ev.ErrorRateSample(
                        ts=r.t, scope="cohort:new", rate=rate, errors=1, requests=1000, window=60
                    )
                )
                out.append(
                    ev.ErrorRateSample(
                        ts=r.t,
                        scope="cohort:baseline",
                        rate=0.004,
                        errors=1,
                        requests=1000,
                        window=60,
                    )
                )
        self._carry_lines += dt * self.lines_per_s
        while self._carry_lines >= self.lines_per_event:
            self._carry_lines -= self.lines_per_event
            host = r.names[r.rng.randrange(n)]
            out.append(r.log_lines(host, self.lines_per_event))
        r.t += dt
        return out
