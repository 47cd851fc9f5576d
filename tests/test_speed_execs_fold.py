"""A lease operation and a version read in one exec: the split is exact.

The folded command runs here under a real ``/bin/sh``, both ways it reaches a host: as
a login shell runs an exec (``sh -c LINE``), and as the connection's kept shell runs it
(its eval loop, fed the line as :mod:`console.transport.ssh_shell` writes it, the
script inline with no ``sh`` of its own). The lease part's answer, its exit status and
the version read's own output and exit status come apart at the marker line, whatever
the version command prints.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from console.engine.leases import (
    PRELUDE,
    LeaseError,
    folded_call,
    folded_command,
    folded_in_sh,
    split_folded,
)
from console.transport.base import RunResult
from console.transport.ssh_shell import (
    EVAL_LOOP,
    end_line,
    prelude_line,
    script_line,
    shell_command,
)

END = "\x1eend-of-test "


def _result(code: int, stdout: str, stderr: str) -> RunResult:
    return RunResult(
        status="ok" if code == 0 else "failed",
        exit_code=code,
        duration=0.0,
        stdout_tail=tuple(stdout.splitlines()[-20:]),
        stderr_tail=tuple(stderr.splitlines()[-20:]),
    )


def _exec(command: str) -> RunResult:
    done = subprocess.run(["/bin/sh", "-c", command], capture_output=True, text=True, timeout=30)
    return _result(done.returncode, done.stdout, done.stderr)


def _kept_shell(command: str, start: str = EVAL_LOOP, first: str = "") -> RunResult:
    line = script_line(command, "pgroup")
    assert line is not None
    script = first + line + "\n" + end_line("pgroup", END)
    done = subprocess.run(
        ["/bin/sh", "-c", start], input=script, capture_output=True, text=True, timeout=30
    )
    out, _, status = done.stdout.rpartition("\n" + END)
    err = done.stderr.rpartition("\n" + END)[0]
    return _result(int(status.strip()), out, err)


@pytest.fixture(params=["exec", "kept-shell", "kept-shell-prelude"])
def fold(request: pytest.FixtureRequest) -> Callable[..., RunResult]:
    """Run a folded lease operation the way it reaches a host: on an exec of its own
    (``folded_command``), in the kept shell (``folded_in_sh``), or in a kept shell
    started as the transport starts it with the lease function in its prelude
    (``folded_call``; the start command run by a POSIX login shell)."""

    def run(token: str, op: str, directory: str, *args: str, then: str) -> RunResult:
        if request.param == "exec":
            return _exec(folded_command(token, op, directory, *args, then=then))
        if request.param == "kept-shell":
            return _kept_shell(folded_in_sh(token, op, directory, *args, then=then))
        call = folded_call(token, op, directory, *args, then=then)
        assert "\n" not in call  # one short line: no script carried
        start = shell_command("pgroup", prelude=True)
        return _kept_shell(call, start=start, first=prelude_line(PRELUDE))

    return run


def test_take_then_version_split_at_the_marker(
    tmp_path: Path, fold: Callable[..., RunResult]
) -> None:
    leases = str(tmp_path / "leases")
    then = "echo 1.4.2; echo ROLLDECK-LEASE-END forged 0"  # a forged marker: other token
    args = ("svc@web-01", "r1", '{"service": "svc"}', "taken by test")
    folded = split_folded(fold("tok1", "take", leases, *args, then=then), "tok1", "take")
    assert folded.lease == ["TAKEN"] and folded.code == 0
    assert folded.then.ok and folded.then.first_line == "1.4.2"
    assert folded.then.stdout_tail == ("1.4.2", "ROLLDECK-LEASE-END forged 0")
    assert (tmp_path / "leases" / "svc@web-01" / "rollout").read_text().strip() == "r1"
    # taken again by another rollout: HELD and the holder, the version still read
    again = fold("tok2", "take", leases, "svc@web-01", "r2", "{}", "x", then=then)
    folded = split_folded(again, "tok2", "take")
    assert folded.lease[0] == "HELD" and '"service": "svc"' in folded.lease[3]
    assert folded.then.first_line == "1.4.2"


def test_release_then_a_failing_version_read(
    tmp_path: Path, fold: Callable[..., RunResult]
) -> None:
    leases = str(tmp_path / "leases")
    take = fold("t", "take", leases, "svc@h", "r1", "{}", "n", then="true")
    assert split_folded(take, "t", "take").lease == ["TAKEN"]
    release = fold("u", "release", leases, "svc@h", "r1", "n", then="echo gone >&2; exit 4")
    folded = split_folded(release, "u", "release")
    assert folded.lease == ["RELEASED"] and folded.code == 0
    assert not folded.then.ok and folded.then.exit_code == 4
    assert folded.then.stdout_tail == () and folded.then.first_line == "gone"
    assert not (tmp_path / "leases" / "svc@h").exists()


def test_the_lease_part_failing_is_its_own_exit_status(
    tmp_path: Path, fold: Callable[..., RunResult]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")  # a file where the lease directory should go: mkdir fails
    result = fold("t", "take", str(blocker), "svc@h", "r1", "{}", "n", then="echo 9")
    folded = split_folded(result, "t", "take")
    assert folded.code == 3 and folded.then.first_line == "9"
    assert any("File exists" in line or "Not a directory" in line for line in folded.lease)


def test_no_marker_is_a_clear_error() -> None:
    lost = RunResult(status="failed", exit_code=127, duration=0.1, stderr_tail=("sh: not found",))
    with pytest.raises(LeaseError, match=r"no answer.*exit 127.*sh: not found"):
        split_folded(lost, "t", "take")
    timeout = RunResult(status="timeout", exit_code=None, duration=45.0, stdout_tail=("HELD",))
    with pytest.raises(LeaseError, match="no answer in 45s"):
        split_folded(timeout, "t", "release")


def test_a_folded_take_starts_no_date_and_keeps_the_hosts_clock(
    tmp_path: Path, fold: Callable[..., RunResult]
) -> None:
    """The folded take writes an empty ``beat`` (its mtime is the take, on the host's
    clock) and stamps the history line with the console's time; a reader still gets
    the lease's age from the host's clock."""
    import json
    import time

    from console.engine.leases import LeaseRecord, remote_command

    leases = str(tmp_path / "leases")
    before = int(time.time())
    owner = json.dumps({"service": "svc", "rollout_id": "r1", "operator": "alice"})
    taken = fold("t", "take", leases, "svc@h", "r1", owner, "taken by alice", then="true")
    assert split_folded(taken, "t", "take").lease == ["TAKEN"]
    lease = tmp_path / "leases" / "svc@h"
    assert (lease / "beat").read_text() == ""
    stamp, text = (tmp_path / "leases" / "svc@h.history").read_text().strip().split(" ", 1)
    assert text == "taken by alice" and before <= int(stamp) <= int(time.time())
    read = _exec(remote_command("shell", "read", leases, "svc@h"))
    record = LeaseRecord.parse(list(read.stdout_tail))
    assert record.operator == "alice" and record.age < 30


@pytest.mark.parametrize("login", ["sh", "bash", "zsh", "fish", "tcsh"])
def test_the_kept_shell_starts_with_its_prelude_under_any_login_shell(
    tmp_path: Path, login: str
) -> None:
    """sshd hands the start command to the user's login shell: it is short and on one
    line (csh limits a word's length, takes no line break in quotes; fish rewrites
    backslashes in quotes), and the prelude comes on stdin, never through the login
    shell; the lease function then runs by name."""
    path = shutil.which(login)
    if path is None:
        pytest.skip(f"no {login} on this machine")
    leases = str(tmp_path / "leases")
    start = shell_command("pgroup", prelude=True)
    assert "\n" not in start and len(start) < 300
    take = folded_call("t1", "take", leases, "svc@h", "r1", "{}", "taken", then="echo 1.0")
    release = folded_call("t2", "release", leases, "svc@h", "r1", "gone", then="echo 2.0")
    script = prelude_line(PRELUDE) + take + "\n" + end_line("pgroup", END)
    script += release + "\n" + end_line("pgroup", END)
    done = subprocess.run(
        [path, "-c", start], input=script, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    first, second, _ = done.stdout.split("\n" + END)
    taken = split_folded(_result(0, first, ""), "t1", "take")
    assert taken.lease == ["TAKEN"] and taken.then.first_line == "1.0"
    released = split_folded(_result(0, second.split("\n", 1)[1], ""), "t2", "release")
    assert released.lease == ["RELEASED"] and released.then.first_line == "2.0"
    history = (tmp_path / "leases" / "svc@h.history").read_text()
    assert "taken" in history and "gone" in history


@pytest.mark.parametrize("shell", ["/bin/sh", "bash"])
def test_a_prelude_that_does_not_parse_leaves_the_shell_running(shell: str) -> None:
    """``command eval``: a broken prelude fails alone (dash exits on a plain ``eval``
    of bad syntax), and a backslash, a ``%`` or a ``\\c`` in it come through exact."""
    path = shutil.which(shell)
    if path is None:
        pytest.skip(f"no {shell} on this machine")
    start = shell_command("pgroup", prelude=True)
    broken = prelude_line("f() { if then; }\n")
    script = broken + "echo still here\n" + end_line("pgroup", END)
    done = subprocess.run([path, "-c", start], input=script, capture_output=True, text=True)
    assert done.stdout.startswith("still here\n"), (done.stdout, done.stderr)
    odd = "g() {\n  printf '%s\\n' 'a\\tb \\c 100%'\n}\n"
    script = prelude_line(odd) + "g\n" + end_line("pgroup", END)
    done = subprocess.run([path, "-c", start], input=script, capture_output=True, text=True)
    assert done.stdout.startswith("a\\tb \\c 100%\n"), (done.stdout, done.stderr)
