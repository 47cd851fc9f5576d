"""``rolldeck run --headless`` and ``rolldeck resume`` against a fleet with a frozen
host (one real sshd per host): the process reports the host in bound and exits with
the right code; ``--connect-timeout`` beats ``ConnectTimeout`` in ~/.ssh/config,
which beats the default."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fixtures.wedge import WedgeFleet

pytestmark = pytest.mark.sshd
FleetMaker = Callable[..., WedgeFleet]
CLI = [sys.executable, "-m", "console"]
MARGIN = 8.0  # process start-up and a busy machine; a hang would be minutes

SPEC = """\
service: wedge-cli
version: "2.0"
batches: [1, 1, 100%]
max_failures: 0
on_failure: pause
steps:
  - name: install
    run: >-
      if test -e {vars.root}/FAIL; then exit 1; fi;
      mkdir -p {vars.root}/releases/{version} &&
      printf '%s\\n' {version} > {vars.root}/releases/{version}/VERSION &&
      ln -sfn releases/{version} {vars.root}/current
    timeout: 3s
current_version: cat {vars.root}/current/VERSION
health:
  run: test -f {vars.root}/current/VERSION
  every: 0.1s
  timeout: 2s
  healthy_after: 1
  deadline: 4s
"""


def write_files(fleet: WedgeFleet, base: Path) -> tuple[Path, Path]:
    lines = [
        "defaults:",
        f"  key: {fleet.options.client_keys[0]}",  # type: ignore[index]
        f"  known_hosts: {fleet.options.known_hosts}",
        "hosts:",
    ]
    for host in fleet.hosts:
        root = fleet.root(host.name)
        (root / "releases" / "1.0").mkdir(parents=True, exist_ok=True)
        (root / "releases" / "1.0" / "VERSION").write_text("1.0\n")
        (root / "current").symlink_to("releases/1.0")
        lines.append(
            f"  {host.name}: {{address: 127.0.0.1, port: {host.port}, vars: {{root: {root}}}}}"
        )
    inventory = base / "inventory.yaml"
    inventory.write_text("\n".join(lines) + "\n")
    spec = base / "spec.yaml"
    spec.write_text(SPEC)
    return spec, inventory


def env_with_home(home: Path, ssh_config: str | None = None) -> dict[str, str]:
    home.mkdir(parents=True, exist_ok=True)
    if ssh_config is not None:
        (home / ".ssh").mkdir(mode=0o700, exist_ok=True)
        (home / ".ssh" / "config").write_text(ssh_config)
    return {**os.environ, "HOME": str(home), "ROLLDECK_DEBUG_DEADLINES": "1"}


async def rolldeck(*argv: str, env: dict[str, str]) -> tuple[int, str, float]:
    started = time.monotonic()
    proc = await asyncio.create_subprocess_exec(
        *CLI,
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
    )
    async with asyncio.timeout(120):
        out, _ = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace"), time.monotonic() - started


@pytest.mark.parametrize(
    ("flag", "config", "bound"),
    [
        (["--connect-timeout", "1.5s"], "Host *\n  ConnectTimeout 9\n", 1.5),  # flag wins
        ([], "Host *\n  ConnectTimeout 2\n", 2.0),  # then ~/.ssh/config
    ],
)
async def test_run_headless_with_a_frozen_host_exits_in_bound(
    wedge_fleet: FleetMaker, tmp_path: Path, flag: list[str], config: str, bound: float
) -> None:
    fleet = wedge_fleet(3)
    spec, inventory = write_files(fleet, tmp_path)
    fleet.freeze("h2")
    code, out, took = await rolldeck(
        "run",
        str(spec),
        "--inventory",
        str(inventory),
        "--targets",
        "all",
        "--headless",
        "--state-dir",
        str(tmp_path / "state"),
        *flag,
        env=env_with_home(tmp_path / "home", config),
    )
    assert code == 3, out  # preflight refused the start
    assert f"no answer from h2 for {bound:g} s while connecting" in out, out
    assert "overdue wait" not in out, out
    assert took < bound + MARGIN, (took, out)
    print(f"\nwedge: headless run, frozen host: exit {code} after {took:.2f} s (bound {bound:g})")


async def test_resume_reconnect_to_a_frozen_host_is_bounded(
    wedge_fleet: FleetMaker, tmp_path: Path
) -> None:
    fleet = wedge_fleet(3)
    spec, inventory = write_files(fleet, tmp_path)
    (fleet.root("h2") / "FAIL").touch()
    env = env_with_home(tmp_path / "home")
    state = str(tmp_path / "state")
    code, out, _ = await rolldeck(
        "run",
        str(spec),
        "--inventory",
        str(inventory),
        "--targets",
        "all",
        "--headless",
        "--state-dir",
        state,
        "--connect-timeout",
        "2",
        env=env,
    )
    assert code == 6, out  # h2 failed, on_failure: pause
    (fleet.root("h2") / "FAIL").unlink()
    fleet.freeze("h1")  # deployed in batch 1; resume re-reads it over SSH
    code, out, took = await rolldeck(
        "resume",
        "--service",
        "wedge-cli",
        "--headless",
        "--yes",
        "--state-dir",
        state,
        "--connect-timeout",
        "2",
        env=env,
    )
    assert "no answer from h1 for 2 s while connecting" in out, out
    assert code in (3, 6), out  # refused or left paused: never hung, never went on
    assert "overdue wait" not in out, out
    assert took < 2 * 2.0 + MARGIN, (took, out)  # the look, then preflight
    print(f"\nwedge: resume, frozen host: exit {code} after {took:.2f} s (bound 2 s per look)")
