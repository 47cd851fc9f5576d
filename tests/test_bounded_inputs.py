"""Small inputs that would cost without bound are refused, as subprocesses: each bomb
ends in exit 2 with one ``file:line`` error, quickly and in bounded memory (issue 18,
point 5). The time bound is generous (a busy 2-core machine), never a benchmark; the
memory is rolldeck's own peak RSS (``wait4``, from a small launcher: ``LAUNCHER``)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from console.core.files import MAX_INPUT_BYTES

WALL = 10.0  # seconds; each refusal takes well under one on an idle machine
RSS_MB = 250  # the interpreter with rolldeck imported is ~45 MB; a bomb is GBs

GOOD_INVENTORY = "hosts:\n  h1: {address: 127.0.0.1}\n"
SPEC_HEAD = "service: s\nversion: '1'\ninventory: inventory.yaml\nsteps: [{name: a, run: 'true'}]\n"


# Linux counts a process's peak RSS from its fork: a child forked from a big process
# (a pytest worker of a few hundred MB) starts at that size, exec or not. So rolldeck
# is started by a small launcher (a fresh interpreter, a few MB), which forks it and
# reports the peak RSS wait4 gives for that grandchild alone, on the fd in argv[1].
LAUNCHER = """
import os, sys
fd = int(sys.argv[1])
pid = os.fork()
if pid == 0:
    os.close(fd)
    os.execv(sys.executable, [sys.executable, "-m", "console", *sys.argv[2:]])
_, status, usage = os.wait4(pid, 0)
os.write(fd, str(usage.ru_maxrss).encode())
os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
"""


def run_bounded(args: list[str], cwd: Path) -> tuple[int, str, float, float]:
    """(exit code, stderr, seconds, peak RSS in MB) of ``rolldeck ARGS``."""
    start = time.monotonic()
    peak_r, peak_w = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-S", "-c", LAUNCHER, str(peak_w), *args],
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        pass_fds=(peak_w,),
    )
    os.close(peak_w)
    assert proc.stderr is not None
    hung = threading.Timer(60, proc.kill)  # a hang fails below instead of blocking
    hung.start()
    try:
        err = proc.stderr.read()  # EOF when the child exits
        proc.wait()
        peak = os.read(peak_r, 64)
    finally:
        hung.cancel()
        proc.stderr.close()
        os.close(peak_r)
    took = time.monotonic() - start
    assert took < 60, f"rolldeck {args} hung: {err[-500:]!r}"
    assert peak, f"rolldeck {args}: no peak RSS reported: {err[-500:]!r}"
    return proc.returncode, err.decode(errors="replace"), took, int(peak) / 1024


def assert_refused(args: list[str], cwd: Path, *, file: str, fragment: str) -> str:
    code, err, took, rss = run_bounded(args, cwd)
    last = err.strip().splitlines()[-1] if err.strip() else ""
    assert code == 2, f"exit {code}: {err[-2000:]}"
    assert "Traceback" not in err, err[-2000:]
    assert last.startswith(f"rolldeck: {file}"), last
    assert fragment in last, last
    assert took < WALL, f"took {took:.1f}s"
    assert rss < RSS_MB, f"peak RSS {rss:.0f} MB"
    return last


def merge_nest(levels: int, indent: str = "  ") -> str:
    """Each mapping merges the one before twice: 2**levels keys to visit, ~30 B a level."""
    lines = [f"{indent}m0: &m0 {{a: 1, b: 2}}"]
    lines += [
        f"{indent}m{i}: &m{i} {{<<: [*m{i - 1}, *m{i - 1}], k{i}: 1}}" for i in range(1, levels + 1)
    ]
    return "\n".join(lines) + "\n"


def laughs(indent: str = "  ", prefix: str = "") -> str:
    """A billion laughs: nine levels of nine aliases (387,420,489 leaves)."""
    lines = [f"{indent}{prefix}- &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [f"{indent}{prefix}- &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, 9)]
    return "\n".join(lines) + "\n"


@pytest.fixture
def work(tmp_path: Path) -> Path:
    (tmp_path / "inventory.yaml").write_text(GOOD_INVENTORY)
    return tmp_path


def test_check_dev_zero(work: Path) -> None:
    assert_refused(["check", "/dev/zero"], work, file="/dev/zero", fragment="larger than 10 MiB")


def test_oversized_files_are_refused_by_size_before_reading(work: Path) -> None:
    big = work / "big.yaml"
    with open(big, "wb") as fh:  # sparse: nothing is written, the size is what counts
        fh.truncate(MAX_INPUT_BYTES + 1)
    assert_refused(["check", "big.yaml"], work, file="big.yaml", fragment="larger than")
    assert_refused(
        ["sim-fleet", "--dir", str(work / "fleet"), "--scenario", "big.yaml"],
        work,
        file="big.yaml",
        fragment="larger than",
    )
    assert not (work / "fleet" / "rollout.yaml").exists()


@pytest.mark.parametrize("levels", [16, 20, 22])
def test_nested_merge_keys_in_a_spec(work: Path, levels: int) -> None:
    (work / "spec.yaml").write_text(SPEC_HEAD + "vars:\n" + merge_nest(levels))
    assert len((work / "spec.yaml").read_bytes()) < 1200  # a small file
    assert_refused(["check", "spec.yaml"], work, file="spec.yaml:", fragment="alias expansion")


def test_alias_bomb_in_a_spec(work: Path) -> None:
    (work / "spec.yaml").write_text(SPEC_HEAD + "preflight:\n" + laughs())
    assert_refused(["check", "spec.yaml"], work, file="spec.yaml:", fragment="alias expansion")


def test_one_alias_inherited_by_3000_hosts(work: Path) -> None:
    """One 90,000-node value, aliased by 3,000 hosts: one budget for the whole file."""
    row = "[" + ", ".join(["1"] * 300) + "]"
    lines = ["hosts:", f"  h0: {{address: 127.0.0.1, vars: {{row: &r {row}, big: &big"]
    lines[-1] += " [" + ", ".join(["*r"] * 300) + "]}}"
    lines += [f"  h{i}: {{address: 127.0.0.1, vars: {{big: *big}}}}" for i in range(1, 3000)]
    inv = work / "hosts.yaml"
    inv.write_text("\n".join(lines) + "\n")
    assert inv.stat().st_size < 210_000
    for args in (["inventory", "hosts.yaml", "--json"], ["inventory", "hosts.yaml"]):
        assert_refused(args, work, file="hosts.yaml:", fragment="alias expansion")
    (work / "spec.yaml").write_text(SPEC_HEAD.replace("inventory.yaml", "hosts.yaml"))
    assert_refused(["check", "spec.yaml"], work, file="hosts.yaml:", fragment="alias expansion")


def test_alias_bomb_in_an_inventory_var(work: Path) -> None:
    inv = "hosts:\n  h1:\n    address: 127.0.0.1\n    vars:\n      lols:\n" + laughs("      ")
    (work / "hosts.yaml").write_text(inv)
    assert_refused(
        ["inventory", "hosts.yaml", "--json"], work, file="hosts.yaml:", fragment="alias expansion"
    )


@pytest.mark.parametrize("key", ["batches", "between_batches"])
def test_alias_bomb_in_a_scenario(work: Path, key: str) -> None:
    (work / "bomb.yaml").write_text(f"name: bomb\nrollout:\n  {key}:\n" + laughs("  "))
    fleet = work / "fleet"
    assert_refused(
        ["sim-fleet", "--dir", str(fleet), "--hosts", "2", "--scenario", "bomb.yaml"],
        work,
        file="bomb.yaml:",
        fragment="alias expansion",
    )
    assert not (fleet / "rollout.yaml").exists()
    assert_refused(
        ["drill", "--headless", "--hosts", "2", "--state-dir", str(work / "st"), "bomb.yaml"],
        work,
        file="bomb.yaml:",
        fragment="alias expansion",
    )


def test_deep_documents(work: Path) -> None:
    """50,000 levels: no RecursionError, one line (libyaml or the pure-Python composer)."""
    deep = "[" * 50_000 + "1" + "]" * 50_000
    (work / "deep.yaml").write_text(f"name: deep\nrollout:\n  batches: {deep}\n")
    assert_refused(
        ["sim-fleet", "--dir", str(work / "fleet"), "--scenario", "deep.yaml"],
        work,
        file="deep.yaml:3",
        fragment="nested too deeply",
    )
    (work / "spec.yaml").write_text(SPEC_HEAD + f"vars: {{x: {deep}}}\n")
    assert_refused(["check", "spec.yaml"], work, file="spec.yaml:", fragment="nested too deeply")
    (work / "hosts.yaml").write_text(f"hosts:\n  h1:\n    vars: {{x: {deep}}}\n")
    assert_refused(
        ["inventory", "hosts.yaml"], work, file="hosts.yaml:", fragment="nested too deeply"
    )
