"""``rolldeck ps`` shows stale locks: a crashed rollout (``kill -9``) is listed with
who held it, since when, and the exact commands that take it over; a second
operator's refusal names the stale fleet lease the same way ("stale since", the
command). A lock planted with terminal escapes is printed escaped."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

from console.store.lock import LockInfo, lock_path
from tests.fixtures.sshd import SSHDServer, make_fleet
from tests.test_fleet_lease_sshd import (
    checkout,
    journal_events,
    lease_dir,
    marks,
    rolldeck,
    start,
)
from tests.waiting import wait_until_sync

CLI = [sys.executable, "-m", "console"]


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def ps(state: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, "ps", "--state-dir", str(state), *extra],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_ps_shows_a_dead_holders_lock_as_stale_with_the_commands(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    path = lock_path(state, "shop", str(tmp_path / "inv.yaml"))
    info = LockInfo(
        pid=dead_pid(),
        user="bob",
        host=socket.gethostname(),
        started=time.time() - 3600,
        rollout_id="shop-2024",
        service="shop",
        inventory=str(tmp_path / "inv.yaml"),
        message="fix \x1b]0;owned\x07 now",
        heartbeat=time.time() - 3000,
        operator="bob",
    )
    path.write_text(json.dumps(asdict(info)))
    path.chmod(0o600)
    done = ps(state)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "no rollouts running" in out
    assert "stale locks (1)" in out and "rollout shop-2024" in out and "bob" in out, out
    assert "stale since" in out
    since = time.strftime("%Y-%m-%d %H:%M", time.gmtime(info.heartbeat))
    assert since in out
    assert f"--state-dir {state} --break-lock --reason TEXT" in out
    assert "resume" not in out.split("take it over")[0].split("stale since")[1]  # no journal
    assert "\x1b" not in out and "\\x1b]0;owned\\x07" in out  # escaped, not obeyed
    (row,) = [json.loads(line) for line in ps(state, "--json").stdout.splitlines()]
    assert row["stale"] is True and row["rollout_id"] == "shop-2024"
    assert row["break"].endswith("--break-lock --reason TEXT") and row["resume"] == ""
    assert path.exists()  # ps only looks


def test_a_live_lock_is_not_stale(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    path = lock_path(state, "shop", "")
    info = LockInfo(
        pid=os.getpid(),  # this test: alive
        user="bob",
        host=socket.gethostname(),
        started=time.time(),
        rollout_id="shop-live",
        service="shop",
        inventory="",
        heartbeat=time.time(),
    )
    path.write_text(json.dumps(asdict(info)))
    path.chmod(0o600)
    done = ps(state)
    assert "stale" not in done.stdout, done.stdout


def test_kill_9_rollout_is_shown_stale_and_its_fleet_lease_refusal_says_how(
    sshd_server: SSHDServer, tmp_path: Path
) -> None:
    fleet = make_fleet(sshd_server, tmp_path, 2)
    roots = {h.name: Path(h.vars["root"]) for h in fleet.hosts}
    service = f"lease-{os.getpid()}-ps"
    first = checkout(tmp_path, fleet.hosts, "alice", service=service, mark="A", pause=30)
    second = checkout(tmp_path, fleet.hosts, "bob", service=service, mark="B", pause=0)
    state_a = tmp_path / "state-a"
    holder = start(
        "run", str(first), "--headless", "--yes", "--operator", "alice",
        "--state-dir", str(state_a),
    )  # fmt: skip
    try:
        wait_until_sync(lambda: "A" in marks(roots["web-01"]), timeout=60, what="alice's step")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert (lease_dir(sshd_server) / service).is_dir()  # the fleet lock is left behind

    shown = ps(state_a)
    out = shown.stdout
    assert shown.returncode == 0, shown.stderr
    assert "no rollouts running" in out and "stale locks (1)" in out, out
    (row,) = [json.loads(line) for line in ps(state_a, "--json").stdout.splitlines()]
    rid = row["rollout_id"]
    assert row["stale"] and row["outcome"] == "interrupted" and row["operator"] == "alice"
    assert row["resume"] == f"rolldeck resume {rid} --state-dir {state_a}"
    assert row["break"] == (
        f"rolldeck run {first} --state-dir {state_a} --break-lock --reason TEXT"
    )
    assert row["resume"] in out and row["break"] in out and "stale since" in out

    bob = ["--headless", "--yes", "--operator", "bob", "--state-dir", str(tmp_path / "state-b")]
    refused = rolldeck("run", str(second), *bob)
    said = refused.stdout + refused.stderr
    assert refused.returncode == 3, said
    assert "stale since" in said, said
    # the full refusal, as journaled (a one-line view may cut its end)
    (reason,) = [
        e["reason"]
        for e in journal_events(tmp_path / "state-b")
        if e.get("kind") == "rollout_finished"
    ]
    assert f"takes it over: rolldeck run {second} --break-lock --reason TEXT" in reason
    assert f"rollout {rid}" in reason and "operator alice" in reason, reason
    assert all("B" not in marks(r) for r in roots.values())
