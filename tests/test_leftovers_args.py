"""Small leftovers of issues 11, 12 and 18, each against the real code path:

* the final reason of a rollout is shown whole in plain mode (wrapped, not cut),
  while per-event details stay one cut line;
* a rendered command over the size limit is refused by ``check`` (file:line:field)
  and by ``run`` before any step runs;
* ``--scenario`` naming something that exists but is no scenario file says so;
* ``run``, ``resume`` and ``rollback`` share their engine options, and ``rollback``
  has ``--connect-timeout`` and the local limits check;
* ``resume`` and ``rollback`` name themselves in a stale lease's refusal.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from console.core import events as ev
from console.core.describe import DETAIL_SHOWN
from console.core.errors import InputError
from console.core.events import Outcome, RolloutState
from console.headless import PLAIN_WIDTH, plain_line
from console.lock_options import lease_options
from console.runtime.limits import descriptors_needed
from console.simfleet.scenario import load_scenario
from console.spec import load_spec
from console.subcommands import resume, rollback, run
from console.templating import (
    MAX_COMMAND_BYTES,
    TemplateError,
    build_context,
    check_command_sizes,
    render,
)
from inventory.model import Host
from tests.waiting import wait_until_sync

HINT = (
    "the rollout stays paused: resume once they are back, or with --allow-unreachable to "
    "go ahead without them (they count against the failure budget)"
)


def rolldeck(
    *args: str, cwd: Path, env: dict[str, str] | None = None, **kw: object
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # type: ignore[call-overload,no-any-return]
        [sys.executable, "-m", "console", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
        env={**os.environ, **(env or {})},
        **kw,
    )


# -- the final reason, whole ----------------------------------------------------------


def test_final_reason_is_wrapped_whole_and_event_details_stay_cut() -> None:
    hosts = "; ".join(
        f"web-{i:02d}: unreachable: connection refused by 10.0.0.{i}:22" for i in range(5)
    )
    reason = f"preflight refused the start: 5 of 5 hosts failed: {hosts}; {HINT}"
    assert len(reason) > 2 * DETAIL_SHOWN
    line = plain_line(ev.RolloutFinished(outcome=Outcome.FAILED, exit_code=3, reason=reason))
    assert line is not None
    rows = line.split("\n")
    assert len(rows) > 3
    assert all(len(r) <= PLAIN_WIDTH for r in rows), rows
    assert " ".join(" ".join(rows).split()).endswith(HINT)  # every word, in order
    assert "--allow-unreachable" in line and "…" not in line
    assert rows[-1].startswith(" " * 9)  # continuation lines sit under the words
    # a state change (a log line) keeps to one line, cut
    said = plain_line(ev.RolloutStateChanged(state=RolloutState.PAUSED, reason=reason))
    assert said is not None and "\n" not in said and said.endswith("…")


def test_a_long_word_is_never_broken() -> None:
    path = "/srv/" + "x" * 150 + "/current"
    reason = f"cannot read {path}; run rolldeck rollback svc-1 --break-lock --reason TEXT"
    line = plain_line(ev.RolloutFinished(outcome=Outcome.FAILED, exit_code=3, reason=reason))
    assert line is not None and f"{path};" in line.split()
    command = "rolldeck rollback svc-1 --break-lock --reason TEXT"
    assert any(command in row for row in line.split("\n")), line  # one line, to be copied
    long = "rolldeck resume " + "svc-20261203T003837Z-c2a5 " * 3 + "--break-lock --reason TEXT"
    said = plain_line(ev.RolloutFinished(outcome=Outcome.PAUSED, exit_code=6, reason=f"x; {long}"))
    assert said is not None and any(long in row for row in said.split("\n")), said


# -- the rendered command limit -------------------------------------------------------

SPEC = """\
service: svc
version: "2.0"
inventory: inventory.yaml
batches: [100%]
max_failures: 5
steps:
  - name: install
    run: "echo {vars.big} > /dev/null"
"""


def write_big(d: Path, big: str, small: str = "ok") -> None:
    (d / "spec.yaml").write_text(SPEC)
    (d / "inventory.yaml").write_text(
        "hosts:\n"
        f"  web-01: {{address: 127.0.0.1, vars: {{rolldeck_connection: local, big: {small}}}}}\n"
        f"  web-02: {{address: 127.0.0.1, vars: {{rolldeck_connection: local, big: {big}}}}}\n"
    )


def test_render_refuses_over_the_limit_counting_bytes() -> None:
    under = "é" * ((MAX_COMMAND_BYTES - 100) // 2)  # two bytes a character in UTF-8
    assert len(render("echo {vars.v}", {"vars": {"v": under}}).encode()) < MAX_COMMAND_BYTES
    over = "é" * (MAX_COMMAND_BYTES // 2 + 10)  # under the limit in characters, over in bytes
    assert len(over) < MAX_COMMAND_BYTES
    with pytest.raises(TemplateError) as refused:
        render("echo {vars.v}", {"vars": {"v": over}, "host": "web-02"})
    assert refused.value.field == "vars.v"
    assert "over the 100 KiB limit" in str(refused.value) and "web-02" in str(refused.value)


def test_check_names_file_line_field_and_the_hosts(tmp_path: Path) -> None:
    write_big(tmp_path, "x" * 200_000)
    spec = load_spec(str(tmp_path / "spec.yaml"))
    hosts = [
        Host(name="web-01", address="a", vars={"big": "ok"}),
        Host(name="web-02", address="b", vars={"big": "x" * 200_000}),
        Host(name="web-03", address="c", vars={"big": "y" * 200_000}),
    ]
    with pytest.raises(InputError) as refused:
        check_command_sizes(spec, hosts)
    err = refused.value
    assert err.file == spec.path and err.line == 8 and err.field == "steps[0]", str(err)
    assert "web-02" in err.message and "1 more" in err.message and "{vars.big}" in err.message
    check_command_sizes(spec, hosts[:1])  # within the limit: no error
    context = build_context(spec, hosts[0], None)
    assert render(spec.steps[0].run, context) == "echo ok > /dev/null"


def test_check_and_run_refuse_an_oversized_command(tmp_path: Path) -> None:
    write_big(tmp_path, "x" * 200_000, small="y" * 200_000)
    checked = rolldeck("check", "spec.yaml", cwd=tmp_path)
    assert checked.returncode == 2, checked.stdout + checked.stderr
    assert "100 KiB" in checked.stderr and len(checked.stderr) < 1000  # not the value
    ran = rolldeck("run", "spec.yaml", "--headless", "--yes", "--state-dir", "st", cwd=tmp_path)
    out = ran.stdout + ran.stderr
    assert ran.returncode in (2, 3), out  # refused before any step ran
    assert "100 KiB limit" in out and "step install" not in out, out
    assert len(out) < 20_000  # the value itself is never printed


# -- --scenario that exists but is no scenario file ------------------------------------


def test_scenario_device_directory_and_missing(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="larger than") as big:
        load_scenario("/dev/zero")
    assert big.value.file == "/dev/zero"
    with pytest.raises(InputError, match="is a directory"):
        load_scenario(str(tmp_path))
    with pytest.raises(InputError, match="no such scenario"):
        load_scenario(str(tmp_path / "nothing.yaml"))
    for argv in (
        ("sim-fleet", "--dir", str(tmp_path / "fleet"), "--scenario", "/dev/zero"),
        ("drill", "/dev/zero", "--headless"),
    ):
        done = rolldeck(*argv, cwd=tmp_path)
        assert done.returncode == 2, done.stderr
        assert "larger than" in done.stderr and "no such scenario" not in done.stderr
        assert done.stderr.count("\n") == 1, done.stderr


# -- one set of engine options ----------------------------------------------------------

SHARED = (
    "--state-dir",
    "--operator",
    "--break-lock",
    "--lock-message",
    "--lock-wait",
    "--reason",
    "--accept-new-host-keys",
    "--allow-unreachable",
    "--connect-timeout",
)


def options_of(module: object) -> dict[str, argparse.Action]:
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)  # type: ignore[attr-defined]
    return {s: a for a in parser._actions for s in a.option_strings}


def test_run_resume_rollback_share_their_engine_options() -> None:
    per = {m.NAME: options_of(m) for m in (run, resume, rollback)}
    for flag in SHARED:
        kinds = {name: type(opts[flag]).__name__ for name, opts in per.items() if flag in opts}
        assert set(kinds) == {"run", "resume", "rollback"}, (flag, kinds)
        assert len(set(kinds.values())) == 1, (flag, kinds)


def test_lease_options_carry_the_command() -> None:
    args = argparse.Namespace(break_lock=True, reason="laptop died")
    opts = lease_options(args, "bob", command="rolldeck resume svc-1")
    assert (opts.operator, opts.break_lock, opts.reason) == ("bob", True, "laptop died")
    assert opts.command == "rolldeck resume svc-1"
    assert lease_options(args, "bob").command == ""  # run: the leases say `rolldeck run SPEC`


# -- resume and rollback, end to end on the local transport ------------------------------

STEP_SPEC = """\
service: {service}
version: "2.0"
inventory: inventory.yaml
batches: [100%]
max_failures: 0
on_failure: pause
between_batches: auto
current_version: "echo 1.0"
steps:
  - name: deploy
    run: "{run}"
    timeout: 60s
rollback:
  steps:
    - name: back
      run: "true"
"""


@pytest.fixture
def paused(tmp_path: Path) -> tuple[Path, str, dict[str, str]]:
    """Bob's rollout of a service, stopped paused (its deploy step failed)."""
    env = {"HOME": str(tmp_path / "home")}  # the leases of local hosts live in ~/.rolldeck
    (tmp_path / "home").mkdir()
    inventory = "hosts:\n" + "".join(
        f"  h{i}: {{address: 127.0.0.1, vars: {{rolldeck_connection: local}}}}\n" for i in (1, 2)
    )
    service = f"left-{os.getpid()}"
    for who, step in (("bob", "exit 1"), ("alice", f"touch {tmp_path}/alice/started; sleep 60")):
        (tmp_path / who).mkdir()
        (tmp_path / who / "inventory.yaml").write_text(inventory)
        (tmp_path / who / "spec.yaml").write_text(STEP_SPEC.format(service=service, run=step))
    bob = tmp_path / "bob"
    done = rolldeck("run", "spec.yaml", "--headless", "--state-dir", "st", cwd=bob, env=env)
    assert done.returncode == 6, done.stdout + done.stderr
    rows = rolldeck("history", "--json", "--state-dir", "st", cwd=bob, env=env).stdout
    return tmp_path, json.loads(rows.splitlines()[0])["rollout_id"], env


def test_rollback_has_connect_timeout_and_the_local_limits_check(
    paused: tuple[Path, str, dict[str, str]],
) -> None:
    base, rid, env = paused
    bob = base / "bob"
    bad = rolldeck(
        "rollback", rid, "--connect-timeout", "soon", "--state-dir", "st", cwd=bob, env=env
    )
    assert bad.returncode == 2 and "--connect-timeout" in bad.stderr, bad.stderr
    hosts = [
        Host(name=f"h{i}", address="127.0.0.1", vars={"rolldeck_connection": "local"})
        for i in (1, 2)
    ]
    need = descriptors_needed(hosts)

    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (need - 1, need - 1))

    refused = rolldeck(
        "rollback", rid, "--headless", "--yes", "--state-dir", "st",
        cwd=bob, env=env, preexec_fn=low_limit,
    )  # fmt: skip
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "RLIMIT_NOFILE" in refused.stderr and f"ulimit -n {need}" in refused.stderr
    assert "rolled back" not in refused.stdout  # refused before any host
    ok = rolldeck(
        "rollback", rid, "--headless", "--yes", "--connect-timeout", "20s", "--state-dir", "st",
        cwd=bob, env=env,
    )  # fmt: skip
    assert ok.returncode == 4, ok.stdout + ok.stderr  # rolled back


def test_stale_lease_refusals_name_resume_and_rollback(
    paused: tuple[Path, str, dict[str, str]],
) -> None:
    """Alice's rollout of the same service is killed -9 mid-step: its leases stay,
    stale. Bob's resume and rollback are refused, each naming its own command."""
    base, rid, env = paused
    alice = base / "alice"
    holder = subprocess.Popen(
        [sys.executable, "-m", "console", "run", "spec.yaml", "--headless", "--yes",
         "--operator", "alice", "--state-dir", "st"],
        cwd=alice, env={**os.environ, **env},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_until_sync(lambda: (alice / "started").exists(), timeout=60, what="alice's step")
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    bob = base / "bob"
    for command, extra in (("resume", ()), ("rollback", ("--yes",))):
        refused = rolldeck(
            command, rid, "--headless", *extra, "--state-dir", "st", cwd=bob, env=env
        )
        out = refused.stdout + refused.stderr
        assert refused.returncode != 0, out
        said = f"rolldeck {command} {rid} --break-lock --reason TEXT"
        assert any(said in row for row in out.splitlines()), out  # whole, on one line
        assert "rolldeck run" not in out, out
