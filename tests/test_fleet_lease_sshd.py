"""The lock held on the fleet, against a real OpenSSH fleet (issue 11, second half).

Two ``rolldeck run`` of one service from two state directories and two inventory
paths (two checkouts: the local lock cannot see the other): the second is refused
before it touches any host, naming the first's operator, machine and rollout; once
the first ends, the second runs. A ``kill -9`` of the holder leaves stale leases that
are reported as such; ``--break-lock --reason`` takes them over, journaled on the host
(the lease's history) and locally (the journal).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from tests.fixtures.sshd import SSHDServer, make_fleet
from tests.waiting import wait_until_sync

CLI = [sys.executable, "-m", "console"]

SPEC = """\
service: {service}
version: "{version}"
inventory: inventory.yaml
batches: [1, 100%]
max_parallel: 1
between_batches: auto
vars: {{mark: {mark}}}
steps:
  - name: mark
    run: "echo {{vars.mark}} >> {{vars.root}}/marks.log && sleep {pause}"
    timeout: 60s
"""


def checkout(base: Path, hosts: list, name: str, *, service: str, mark: str, pause: float) -> Path:  # type: ignore[type-arg]
    """A spec and its own copy of the inventory in ``base/name`` (one checkout)."""
    where = base / name
    where.mkdir()
    h = hosts[0]
    lines = [
        f"defaults: {{user: {h.user}, port: {h.port}, key: {h.key}, known_hosts: {h.known_hosts}}}",
        "hosts:",
    ]
    lines += [
        f"  {x.name}: {{address: 127.0.0.1, vars: {{root: {x.vars['root']}}}}}" for x in hosts
    ]
    (where / "inventory.yaml").write_text("\n".join(lines) + "\n")
    spec = where / "rollout.yaml"
    spec.write_text(SPEC.format(service=service, version="2.0", mark=mark, pause=pause))
    return spec


def marks(root: Path) -> list[str]:
    log = root / "marks.log"
    return log.read_text().split() if log.exists() else []


def rolldeck(*argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *argv], capture_output=True, text=True, timeout=timeout, check=False
    )


def start(*argv: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*CLI, *argv], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def journal_events(state: Path) -> list[dict]:  # type: ignore[type-arg]
    out = []
    for path in sorted(state.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue
    return out


def lease_dir(server: SSHDServer) -> Path:
    """The default lease path, ~/.rolldeck/leases, of the fleet's login HOME."""
    return server.workdir / "home" / ".rolldeck" / "leases"


def test_second_console_is_refused_then_runs(sshd_server: SSHDServer, tmp_path: Path) -> None:
    fleet = make_fleet(sshd_server, tmp_path, 3)
    roots = {h.name: Path(h.vars["root"]) for h in fleet.hosts}
    service = f"lease-{os.getpid()}-a"
    first = checkout(tmp_path, fleet.hosts, "alice", service=service, mark="A", pause=1.5)
    second = checkout(tmp_path, fleet.hosts, "bob", service=service, mark="B", pause=0)
    holder = start(
        "run", str(first), "--headless", "--yes", "--operator", "alice",
        "--state-dir", str(tmp_path / "state-a"),
    )  # fmt: skip
    try:
        wait_until_sync(lambda: "A" in marks(roots["web-01"]), timeout=60, what="alice's step")
        refused = rolldeck(
            "run", str(second), "--headless", "--yes", "--operator", "bob",
            "--state-dir", str(tmp_path / "state-b"),
        )  # fmt: skip
        out = refused.stdout + refused.stderr
        assert refused.returncode == 3, out
        assert holder.poll() is None, "alice's rollout ended before bob's was refused"
        rid = next(
            e for e in journal_events(tmp_path / "state-a") if e.get("kind") == "rollout_started"
        )
        for name in ("alice", socket.gethostname(), rid["rollout_id"], "locked on the fleet"):
            assert name in out, f"{name!r} not in:\n{out}"
        assert all("B" not in marks(r) for r in roots.values())  # no host touched
        assert holder.wait(timeout=120) == 0, holder.stdout.read() if holder.stdout else ""
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    assert all(marks(r) == ["A"] for r in roots.values())
    # leases and the fleet lock are gone; the history says who held them
    leases = lease_dir(sshd_server)
    assert not (leases / service).exists()
    assert not (leases / f"{service}@web-02").exists()
    history = (leases / f"{service}@web-02.history").read_text()
    assert "taken by" in history and "released by" in history and "alice" in history
    done = rolldeck(
        "run", str(second), "--headless", "--yes", "--operator", "bob",
        "--state-dir", str(tmp_path / "state-b"),
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert all(marks(r) == ["A", "B"] for r in roots.values())


def test_one_state_dir_two_inventory_paths(sshd_server: SSHDServer, tmp_path: Path) -> None:
    """The local lock is keyed by the inventory's path: only the fleet lock sees this."""
    fleet = make_fleet(sshd_server, tmp_path, 2)
    roots = {h.name: Path(h.vars["root"]) for h in fleet.hosts}
    service = f"lease-{os.getpid()}-b"
    first = checkout(tmp_path, fleet.hosts, "one", service=service, mark="A", pause=1.5)
    second = checkout(tmp_path, fleet.hosts, "two", service=service, mark="B", pause=0)
    state = str(tmp_path / "state")
    holder = start(
        "run", str(first), "--headless", "--yes", "--operator", "carol", "--state-dir", state
    )
    try:
        wait_until_sync(lambda: "A" in marks(roots["web-01"]), timeout=60, what="carol's step")
        refused = rolldeck("run", str(second), "--headless", "--yes", "--state-dir", state)
        out = refused.stdout + refused.stderr
        assert refused.returncode == 3 and "carol" in out, out
        assert holder.poll() is None
        assert all("B" not in marks(r) for r in roots.values())
        assert holder.wait(timeout=120) == 0
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
    assert rolldeck("run", str(second), "--headless", "--yes", "--state-dir", state).returncode == 0
    assert all(marks(r) == ["A", "B"] for r in roots.values())


def test_kill_9_leaves_stale_leases_that_break_lock_takes_over(
    sshd_server: SSHDServer, tmp_path: Path
) -> None:
    fleet = make_fleet(sshd_server, tmp_path, 2)
    roots = {h.name: Path(h.vars["root"]) for h in fleet.hosts}
    service = f"lease-{os.getpid()}-c"
    first = checkout(tmp_path, fleet.hosts, "alice", service=service, mark="A", pause=30)
    second = checkout(tmp_path, fleet.hosts, "bob", service=service, mark="B", pause=0)
    holder = start(
        "run", str(first), "--headless", "--yes", "--operator", "alice",
        "--state-dir", str(tmp_path / "state-a"),
    )  # fmt: skip
    try:
        wait_until_sync(lambda: "A" in marks(roots["web-01"]), timeout=60, what="alice's step")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    leases = lease_dir(sshd_server)
    assert (leases / service).is_dir() and (leases / f"{service}@web-01").is_dir()
    bob = ["--headless", "--yes", "--operator", "bob", "--state-dir", str(tmp_path / "state-b")]
    refused = rolldeck("run", str(second), *bob)
    out = refused.stdout + refused.stderr
    assert refused.returncode == 3, out
    assert "stale" in out and "--break-lock --reason" in out and "alice" in out, out
    assert all("B" not in marks(r) for r in roots.values())
    took = rolldeck("run", str(second), *bob, "--break-lock", "--reason", "alice's laptop died")
    assert took.returncode == 0, took.stdout + took.stderr
    assert all(marks(r)[-1] == "B" for r in roots.values())
    # journaled on the host (the lease's history) and locally (a notice in the journal)
    for name in (service, f"{service}@web-01"):
        history = (leases / f"{name}.history").read_text()
        assert "broken by" in history and "alice's laptop died" in history, history
        assert "operator alice" in history  # what was broken
    notices = [
        e["message"]
        for e in journal_events(tmp_path / "state-b")
        if e.get("kind") == "notice" and "broke the stale" in e.get("message", "")
    ]
    assert notices and all("alice's laptop died" in n for n in notices), notices
    assert not (leases / service).exists()  # released at the end
