"""A lease operation and a version read in one exec: the split is exact.

The folded command runs here under a real ``/bin/sh`` (as a login shell would run it):
the lease part's answer, its exit status and the version read's own output and exit
status come apart at the marker line, whatever the version command prints.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from console.engine.leases import LeaseError, folded_command, split_folded
from console.transport.base import RunResult


def _run(command: str) -> RunResult:
    done = subprocess.run(["/bin/sh", "-c", command], capture_output=True, text=True, timeout=30)
    code = done.returncode
    return RunResult(
        status="ok" if code == 0 else "failed",
        exit_code=code,
        duration=0.0,
        stdout_tail=tuple(done.stdout.splitlines()[-20:]),
        stderr_tail=tuple(done.stderr.splitlines()[-20:]),
    )


def test_take_then_version_split_at_the_marker(tmp_path: Path) -> None:
    leases = str(tmp_path / "leases")
    then = "echo 1.4.2; echo ROLLDECK-LEASE-END forged 0"  # a forged marker: other token
    args = ("svc@web-01", "r1", '{"service": "svc"}', "taken by test")
    folded = split_folded(
        _run(folded_command("tok1", "take", leases, *args, then=then)), "tok1", "take"
    )
    assert folded.lease == ["TAKEN"] and folded.code == 0
    assert folded.then.ok and folded.then.first_line == "1.4.2"
    assert folded.then.stdout_tail == ("1.4.2", "ROLLDECK-LEASE-END forged 0")
    assert (tmp_path / "leases" / "svc@web-01" / "rollout").read_text().strip() == "r1"
    # taken again by another rollout: HELD and the holder, the version still read
    again = _run(folded_command("tok2", "take", leases, "svc@web-01", "r2", "{}", "x", then=then))
    folded = split_folded(again, "tok2", "take")
    assert folded.lease[0] == "HELD" and '"service": "svc"' in folded.lease[3]
    assert folded.then.first_line == "1.4.2"


def test_release_then_a_failing_version_read(tmp_path: Path) -> None:
    leases = str(tmp_path / "leases")
    take = folded_command("t", "take", leases, "svc@h", "r1", "{}", "n", then="true")
    assert split_folded(_run(take), "t", "take").lease == ["TAKEN"]
    release = folded_command(
        "u", "release", leases, "svc@h", "r1", "n", then="echo gone >&2; exit 4"
    )
    folded = split_folded(_run(release), "u", "release")
    assert folded.lease == ["RELEASED"] and folded.code == 0
    assert not folded.then.ok and folded.then.exit_code == 4
    assert folded.then.stdout_tail == () and folded.then.first_line == "gone"
    assert not (tmp_path / "leases" / "svc@h").exists()


def test_the_lease_part_failing_is_its_own_exit_status(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")  # a file where the lease directory should go: mkdir fails
    command = folded_command("t", "take", str(blocker), "svc@h", "r1", "{}", "n", then="echo 9")
    folded = split_folded(_run(command), "t", "take")
    assert folded.code == 3 and folded.then.first_line == "9"
    assert any("File exists" in line or "Not a directory" in line for line in folded.lease)


def test_no_marker_is_a_clear_error() -> None:
    lost = RunResult(status="failed", exit_code=127, duration=0.1, stderr_tail=("sh: not found",))
    with pytest.raises(LeaseError, match=r"no answer.*exit 127.*sh: not found"):
        split_folded(lost, "t", "take")
    timeout = RunResult(status="timeout", exit_code=None, duration=45.0, stdout_tail=("HELD",))
    with pytest.raises(LeaseError, match="no answer in 45s"):
        split_folded(timeout, "t", "release")
