"""The fault test of issue 7: kill the console (``kill -9``) at seeded random points
of seeded rollouts, resume each headless with ``--yes`` (sometimes killing the resume
too), and check, on the host side, that

* every host ends on the target version (a host flagged because its ``once`` step
  was in flight when the console died is counted apart: that is the specified
  behaviour, and it must still have run that step at most once),
* no host ran a ``once`` step twice,
* no host was skipped.

Against the embedded simulated fleet (``restart`` is the ``once`` step, counted by
the simulated host's own restart counter) and the real OpenSSH sshd fleet (the
``record`` step appends a line to ``once.log`` in the host's deploy root).

``bench/resume_faults.py`` runs the same with more runs and prints the same figures.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from console.core import events as ev
from console.core.events import HostState
from console.simfleet import SimFleet
from console.store.journal import list_journals, read_journal

pytestmark = pytest.mark.slow

CLI = [sys.executable, "-m", "console"]
TARGET_SIM = "2.4.1"
MAX_RESUMES = 6


@dataclass
class Figures:
    runs: int = 0
    kills: int = 0
    resumes: int = 0
    hosts_checked: int = 0
    flagged: int = 0
    mismatches: list[str] = field(default_factory=list)

    def add(self, other: Figures) -> None:
        self.runs += other.runs
        self.kills += other.kills
        self.resumes += other.resumes
        self.hosts_checked += other.hosts_checked
        self.flagged += other.flagged
        self.mismatches.extend(other.mismatches)

    def line(self, label: str) -> str:
        return (
            f"{label}: runs {self.runs}, kills {self.kills}, resumes {self.resumes}, "
            f"hosts checked {self.hosts_checked}, flagged for the operator {self.flagged}, "
            f"mismatches: {len(self.mismatches)}"
        )


def journal_lines(state: Path) -> int:
    paths = list_journals(state)
    if not paths:
        return 0
    try:
        return paths[0].read_bytes().count(b"\n")
    except OSError:
        return 0


async def run_until(
    argv: list[str], state: Path, kill_at: int | None, timeout: float
) -> int | None:
    """Run the CLI; with ``kill_at``, ``kill -9`` it once its journal has that many more
    lines. The exit code, or None when it was killed."""
    base = journal_lines(state)
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        *argv,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        async with asyncio.timeout(timeout):
            if kill_at is not None:
                while proc.returncode is None and journal_lines(state) < base + kill_at:  # noqa: ASYNC110 - polling a file another process writes
                    await asyncio.sleep(0.005)
                if proc.returncode is None:
                    proc.send_signal(signal.SIGKILL)
                    await proc.wait()
                    return None
            return await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def ended_with(state: Path) -> int | None:
    """The exit code a killed run's journal already recorded (it can be killed after
    its RolloutFinished hit the disk), or None: not over, resume it."""
    (path,) = list_journals(state)
    finished = [e for e in read_journal(path) if isinstance(e, ev.RolloutFinished)]
    if finished and finished[-1].outcome != ev.Outcome.PAUSED:
        return finished[-1].exit_code
    return None


def final_host_states(state: Path) -> dict[str, tuple[HostState, str]]:
    (path,) = list_journals(state)
    out: dict[str, tuple[HostState, str]] = {}
    for e in read_journal(path):
        if isinstance(e, ev.HostStateChanged):
            out[e.host] = (e.state, e.detail)
    return out


async def fault_run(
    seed: int,
    state: Path,
    spec: Path,
    extra: list[str],
    *,
    max_lines: int,
    timeout: float = 60.0,
) -> tuple[Figures, dict[str, tuple[HostState, str]]]:
    """One seeded rollout: run, kill at a seeded point, resume (perhaps killed again)
    until it ends. Returns the figures so far and every host's last journaled state."""
    rng = random.Random(seed)
    f = Figures(runs=1)
    code = await run_until(
        ["run", str(spec), "--headless", "--yes", "--state-dir", str(state), *extra],
        state,
        rng.randint(3, max_lines),
        timeout,
    )
    if code is None:
        f.kills += 1
        code = ended_with(state)
    for _ in range(MAX_RESUMES):
        if code is not None and code != 6:
            break
        again = rng.random() < 0.3  # kill the resume too, now and then
        code = await run_until(
            ["resume", "--headless", "--yes", "--state-dir", str(state)],
            state,
            rng.randint(5, max_lines) if again else None,
            timeout,
        )
        f.resumes += 1
        if code is None:
            f.kills += 1
            code = ended_with(state)
    if code != 0:
        f.mismatches.append(f"seed {seed}: the rollout ended with exit {code}")
    return f, final_host_states(state)


def judge(
    seed: int,
    f: Figures,
    last: dict[str, tuple[HostState, str]],
    hosts: list[str],
    version_of: Callable[[str], str],
    once_count: Callable[[str], int],
    target: str,
) -> None:
    for name in hosts:
        f.hosts_checked += 1
        state, detail = last.get(name, (HostState.PENDING, ""))
        runs = once_count(name)
        if runs > 1:
            f.mismatches.append(f"seed {seed}: {name} ran its once step {runs} times")
        if state == HostState.FAILED and "once step" in detail:
            f.flagged += 1
            continue
        if state == HostState.SKIPPED:
            f.mismatches.append(f"seed {seed}: {name} was skipped")
        if version_of(name) != target:
            f.mismatches.append(f"seed {seed}: {name} is on {version_of(name)}, not {target}")
        if runs != 1:
            f.mismatches.append(f"seed {seed}: {name} ran its once step {runs} times")


# -- the simulated fleet ---------------------------------------------------------------


def once_spec(fleet: SimFleet) -> Path:
    """The fleet's spec with ``restart`` marked ``once: true`` (the rollback's restart
    keeps its own, unmarked), next to the fleet's inventory and keys."""
    text = fleet.spec_path.read_text()
    old = "{name: restart, run: svc restart,"
    marked = text.replace(old, "{name: restart, run: svc restart, once: true,", 1)
    # A flagged host counts against the budget: leave room for them all, so the rest
    # of the fleet is still deployed (with max_failures 0 a flag pauses the rollout).
    marked = marked.replace("max_failures: 0\n", "max_failures: 100%\n", 1)
    assert marked.count("once: true") == 1 and "max_failures: 100%" in marked
    # Two batches, no bake between them: the runtime goes to the kills, not the waits.
    lines = [
        "batches: [1, 100%]" if line.startswith("batches:") else line
        for line in marked.splitlines()
    ]
    lines = ["between_batches: auto" if ln.startswith("between_batches:") else ln for ln in lines]
    marked = "\n".join(lines) + "\n"
    path = fleet.spec_path.with_name("rollout-once.yaml")
    path.write_text(marked)
    return path


async def sim_runs(
    seeds: range, make_fleet: Callable[..., Awaitable[SimFleet]], base: Path, hosts: int = 4
) -> Figures:
    total = Figures()
    for seed in seeds:
        where = base / f"sim-{seed}"
        where.mkdir(parents=True)
        fleet = await make_fleet(n=hosts, seed=seed, time_scale=0.02, directory=where / "fleet")
        spec = once_spec(fleet)
        f, last = await fault_run(seed, where / "state", spec, [], max_lines=50)
        judge(
            seed,
            f,
            last,
            list(fleet.hosts),
            lambda n: fleet.host_state(n).active,  # noqa: B023 - used before the loop moves on
            lambda n: fleet.host_state(n).restarts,  # noqa: B023
            TARGET_SIM,
        )
        total.add(f)
    return total


# -- the real sshd fleet ---------------------------------------------------------------

SSHD_SPEC = """\
service: ledger
version: "2.0"
inventory: inventory.yaml
batches: [1, 50%, 100%]
max_parallel: 4
max_failures: 100%
on_failure: pause
between_batches: auto
current_version: basename "$(readlink {vars.root}/current)"
steps:
  - name: install
    run: >-
      mkdir -p {vars.root}/releases/{version} &&
      printf '%s\\n' {version} > {vars.root}/releases/{version}/VERSION && sleep 0.1
    timeout: 10s
  - {name: record, run: "echo {host} >> {vars.root}/once.log", once: true, timeout: 10s}
  - name: activate
    run: ln -sfn releases/{version} {vars.root}/current && sleep 0.05
    timeout: 10s
health:
  run: test -f {vars.root}/current/VERSION
  every: 0.05s
  healthy_after: 2
  deadline: 5s
rollback:
  steps:
    - {name: restore, run: "ln -sfn releases/{previous_version} {vars.root}/current"}
"""


def write_sshd_files(fleet: object, where: Path) -> Path:
    hosts = fleet.hosts  # type: ignore[attr-defined]
    h = hosts[0]
    lines = [
        f"defaults: {{user: {h.user}, port: {h.port}, key: {h.key}, known_hosts: {h.known_hosts}}}",
        "hosts:",
    ]
    for host in hosts:
        root = Path(host.vars["root"])
        (root / "releases" / "1.0").mkdir(parents=True, exist_ok=True)
        (root / "releases" / "1.0" / "VERSION").write_text("1.0\n")
        (root / "current").symlink_to("releases/1.0")
        lines.append(f"  {host.name}: {{address: 127.0.0.1, vars: {{root: {root}}}}}")
    (where / "inventory.yaml").write_text("\n".join(lines) + "\n")
    spec = where / "rollout.yaml"
    spec.write_text(SSHD_SPEC)
    return spec


async def sshd_runs(seeds: range, make_fleet: Callable[..., object], base: Path) -> Figures:
    total = Figures()
    for seed in seeds:
        where = base / f"sshd-{seed}"
        where.mkdir(parents=True)
        fleet = make_fleet(4, where)
        spec = write_sshd_files(fleet, where)
        f, last = await fault_run(seed, where / "state", spec, [], max_lines=45)
        roots = {h.name: Path(h.vars["root"]) for h in fleet.hosts}  # type: ignore[attr-defined]

        def version(name: str, roots: dict[str, Path] = roots) -> str:
            return os.readlink(roots[name] / "current").removeprefix("releases/")

        def once(name: str, roots: dict[str, Path] = roots) -> int:
            log = roots[name] / "once.log"
            return len(log.read_text().splitlines()) if log.exists() else 0

        judge(seed, f, last, list(roots), version, once, "2.0")
        total.add(f)
    return total


# -- the tests -------------------------------------------------------------------------


# Seeded kill points in the suite; ROLLDECK_FAULT_RUNS=20 (or more) for a longer drill.
SIM_RUNS = int(os.environ.get("ROLLDECK_FAULT_RUNS", "8"))


async def test_kill_and_resume_sim_fleet(sim_fleet_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    figures = await sim_runs(range(SIM_RUNS), sim_fleet_factory, tmp_path, hosts=3)
    print("\n" + figures.line("resume faults, simulated fleet"))
    for m in figures.mismatches:
        print("  " + m)
    assert figures.runs == SIM_RUNS
    assert figures.kills >= SIM_RUNS // 2  # the seeded points mostly land inside the rollout
    assert figures.hosts_checked == 3 * SIM_RUNS
    assert figures.mismatches == []


async def test_kill_and_resume_sshd_fleet(sshd_server, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from tests.fixtures.sshd import make_fleet

    def build(count: int, where: Path) -> object:
        return make_fleet(sshd_server, where, count)

    figures = await sshd_runs(range(100, 103), build, tmp_path)
    print("\n" + figures.line("resume faults, OpenSSH sshd fleet"))
    for m in figures.mismatches:
        print("  " + m)
    assert figures.runs == 3 and figures.hosts_checked == 12
    assert figures.mismatches == []
