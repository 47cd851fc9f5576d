"""Lease records, staleness, and the remote lease script run by a real ``sh``.

The script is what every SSH host runs (console/engine/leases.py SCRIPT); here it runs
in a local ``sh`` on a temporary directory, the same bytes, so take / read / takeover /
beat / release and their answers are checked without a server. The simulated fleet's
``rolldeck-lease`` command must give the same answers.
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import socket
import subprocess
from pathlib import Path

import pytest

from console.engine.leases import (
    LeaseError,
    LeaseRecord,
    lease_mode,
    lease_name,
    remote_command,
)
from inventory.model import Host

OWNER = {
    "service": "shop",
    "rollout_id": "shop-1",
    "operator": "alice",
    "user": "root",
    "machine": "laptop-a",
    "pid": 4242,
    "started": 1700000000.0,
}


def held(now: int, beat: int, owner: dict[str, object] | None = OWNER) -> list[str]:
    return ["HELD", str(now), str(beat), json.dumps(owner) if owner else ""]


def test_parse_names_the_holder_and_its_age() -> None:
    rec = LeaseRecord.parse(held(1000, 990))
    assert (rec.operator, rec.machine, rec.rollout_id, rec.pid) == (
        "alice",
        "laptop-a",
        "shop-1",
        4242,
    )
    assert rec.age == 10.0 and not rec.torn
    text = rec.describe()
    for part in ("shop-1", "alice", "root@laptop-a", "pid 4242", "2023-11-14"):
        assert part in text


def test_staleness_by_heartbeat_and_by_dead_pid_here() -> None:
    fresh = LeaseRecord.parse(held(1000, 990))
    assert not fresh.stale(60, machine="elsewhere")
    assert LeaseRecord.parse(held(1000, 900)).stale(60, machine="elsewhere")
    # on the holder's own machine a dead pid is stale at once, a live one is not
    assert fresh.stale(60, machine="laptop-a", alive=lambda pid: False)
    assert not fresh.stale(60, machine="laptop-a", alive=lambda pid: True)


def test_torn_and_garbled_leases() -> None:
    torn = LeaseRecord.parse(held(1000, 995, None))
    assert torn.torn and "unfinished" in torn.describe()
    assert not torn.stale(60, machine="x")  # being taken right now
    assert LeaseRecord.parse(["HELD", "1000", "0", "{not json"]).stale(60, machine="x")
    with pytest.raises(LeaseError):
        LeaseRecord.parse(["WHAT"])
    with pytest.raises(LeaseError):
        LeaseRecord.parse(["HELD", "soon", "1"])


def test_names_modes_and_quoting() -> None:
    assert lease_name("shop") == "shop"
    assert lease_name("my shop/x", "web-01.example") == "my_shop_x@web-01_example"
    plain = Host(name="a", address="127.0.0.1")
    assert lease_mode(plain) == "shell"
    sim = Host(name="b", address="127.0.0.1", vars={"rolldeck_kill": "signal"})
    assert lease_mode(sim) == "command"
    assert lease_mode(Host(name="c", address="x", vars={"rolldeck_lease": "none"})) == "none"
    with pytest.raises(LeaseError, match="rolldeck_lease"):
        lease_mode(Host(name="d", address="x", vars={"rolldeck_lease": "maybe"}))
    hostile = "x'; touch /tmp/pwned; echo '"
    line = remote_command("command", "take", "/d", "n", "r", hostile, "h")
    assert shlex.split(line) == ["rolldeck-lease", "take", "/d", "n", "r", hostile, "h"]
    line = remote_command("shell", "read", "~/l", "n")
    assert shlex.split(line)[:2] == ["sh", "-c"] and shlex.split(line)[3:] == [
        "rolldeck-lease",
        "read",
        "~/l",
        "n",
    ]


def sh(home: Path, op: str, *args: str) -> list[str]:
    """Run the real script as a host's shell would (``$SHELL -c LINE``)."""
    line = remote_command("shell", op, "~/leases", *args)
    out = subprocess.run(
        ["sh", "-c", line],
        capture_output=True,
        text=True,
        env={**os.environ, "HOME": str(home)},
        timeout=30,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return [x for x in out.stdout.splitlines() if x.strip()]


def test_script_take_read_takeover_beat_release(tmp_path: Path) -> None:
    owner = json.dumps(OWNER)
    assert sh(tmp_path, "read", "shop@web") == ["FREE"]
    assert sh(tmp_path, "take", "shop@web", "shop-1", owner, "taken by alice") == ["TAKEN"]
    where = tmp_path / "leases"
    assert oct(where.stat().st_mode & 0o777) == "0o700"
    assert oct((where / "shop@web" / "owner").stat().st_mode & 0o777) == "0o600"
    # a second taker is refused, and told who holds it
    other = json.dumps({**OWNER, "rollout_id": "shop-2", "operator": "bob"})
    answer = sh(tmp_path, "take", "shop@web", "shop-2", other, "taken by bob")
    rec = LeaseRecord.parse(answer)
    assert rec.operator == "alice" and rec.rollout_id == "shop-1" and rec.age < 30
    assert LeaseRecord.parse(sh(tmp_path, "read", "shop@web")).rollout_id == "shop-1"
    # a heartbeat by the holder, a lost one for anyone else
    assert sh(tmp_path, "beat", "shop-1", "shop@web", "shop@db") == ["OK shop@web", "LOST shop@db"]
    assert sh(tmp_path, "beat", "shop-2", "shop@web") == ["LOST shop@web"]
    # takeover only of the expected holder
    assert sh(tmp_path, "takeover", "shop@web", "shop-9", "shop-2", other, "x")[0] == "HELD"
    assert sh(tmp_path, "takeover", "shop@web", "shop-1", "shop-2", other, "broken: why") == [
        "TAKEN"
    ]
    assert LeaseRecord.parse(sh(tmp_path, "read", "shop@web")).operator == "bob"
    # release only by the holder; history survives
    assert sh(tmp_path, "release", "shop@web", "shop-1", "no") == ["NOTOURS"]
    assert sh(tmp_path, "release", "shop@web", "shop-2", "released by bob") == ["RELEASED"]
    assert sh(tmp_path, "read", "shop@web") == ["FREE"]
    history = (where / "shop@web.history").read_text().splitlines()
    assert [h.split(" ", 1)[1] for h in history] == [
        "taken by alice",
        "broken: why",
        "released by bob",
    ]
    assert not list(where.glob("*.gone.*"))


def test_script_mkdir_race_has_one_winner(tmp_path: Path) -> None:
    """Ten takers at once: exactly one TAKEN, nine told who won."""
    lines = [
        remote_command("shell", "take", "~/leases", "shop", f"r{i}", json.dumps(OWNER), "t")
        for i in range(10)
    ]
    procs = [
        subprocess.Popen(
            ["sh", "-c", line],
            stdout=subprocess.PIPE,
            text=True,
            env={**os.environ, "HOME": str(tmp_path)},
        )
        for line in lines
    ]
    answers = [p.communicate(timeout=30)[0].split()[0] for p in procs]
    assert answers.count("TAKEN") == 1 and answers.count("HELD") == 9


def test_simulated_fleet_answers_like_the_script() -> None:
    from console.simfleet.commands import Context, execute, lease_history
    from console.simfleet.host import SimHost
    from console.simfleet.logs import LogPump
    from console.simfleet.scenario import builtin_names, load_scenario

    host = SimHost("web-01", load_scenario(builtin_names()[0]))
    out: list[str] = []

    async def eof() -> str | None:
        return None

    ctx = Context(host, LogPump(), out.append, out.append, eof, out.append)

    def run(op: str, *args: str) -> list[str]:
        out.clear()
        line = remote_command("command", op, "~/leases", *args)
        assert asyncio.run(execute(line, ctx)) == 0
        return [x for x in "".join(out).splitlines() if x.strip()]

    owner = json.dumps(OWNER)
    assert run("take", "shop", "shop-1", owner, "taken") == ["TAKEN"]
    assert LeaseRecord.parse(run("take", "shop", "shop-2", owner, "t")).rollout_id == "shop-1"
    assert run("beat", "shop-1", "shop") == ["OK shop"]
    assert run("takeover", "shop", "shop-1", "shop-2", owner, "broken")[0] == "TAKEN"
    assert run("release", "shop", "shop-1", "x") == ["NOTOURS"]
    assert run("release", "shop", "shop-2", "released") == ["RELEASED"]
    assert run("read", "shop") == ["FREE"]
    lines = lease_history(host)["~/leases/shop"]
    assert [x.split(" ", 1)[1] for x in lines] == ["taken", "broken", "released"]
    assert socket.gethostname()  # the machine a lease names


def test_script_trims_a_long_history(tmp_path: Path) -> None:
    """The history stays bounded: the line count is checked on one take in five (the
    shell's pid decides; `wc` costs a fork), and then cut to its last 250 lines."""
    where = tmp_path / "leases"
    where.mkdir(mode=0o700)
    history = where / "shop@web.history"
    history.write_text("".join(f"1 old line {i}\n" for i in range(600)))
    owner = json.dumps(OWNER)
    for attempt in range(80):  # consecutive pids: one in five ends in 0 or 5
        assert sh(tmp_path, "take", "shop@web", "shop-1", owner, f"taken {attempt}") == ["TAKEN"]
        assert sh(tmp_path, "release", "shop@web", "shop-1", "released") == ["RELEASED"]
        lines = history.read_text().splitlines()
        if len(lines) < 600:
            break
    assert 250 <= len(lines) <= 252, len(lines)
    assert lines[-1].endswith("released")  # the newest kept
    assert "old line 0" not in history.read_text()
