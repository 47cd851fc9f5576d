"""A directory inventory whose connection settings come only from group_vars/ and
host_vars/ deploys through them over a real OpenSSH sshd (``rolldeck run --headless``)."""

from __future__ import annotations

import getpass
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.fixtures.sshd import SSHDServer

pytestmark = pytest.mark.sshd

CLI = [sys.executable, "-m", "console"]

SPEC = """\
service: shop
version: "2.0"
inventory: inventory
batches: [1, 100%]
max_parallel: 4
steps:
  - name: install
    run: printf '%s %s\\n' {vars.tier} {host} > {vars.root}/deployed
    timeout: 20s
"""


def test_directory_inventory_deploys_through_vars_dirs(
    sshd_server: SSHDServer, tmp_path: Path
) -> None:
    server = sshd_server
    inv = tmp_path / "inventory"
    (inv / "group_vars").mkdir(parents=True)
    (inv / "host_vars").mkdir()
    # Hosts only: no address, port or user in the inventory file itself.
    (inv / "hosts.ini").write_text("[web]\nweb01\nweb02\n\n[db]\ndb01\n")
    (inv / "group_vars" / "all.yml").write_text(
        f"ansible_host: {server.address}\nansible_user: {getpass.getuser()}\n"
        f"ansible_ssh_private_key_file: {server.client_key}\ntier: all\n"
    )
    (inv / "group_vars" / "web").mkdir()
    (inv / "group_vars" / "web" / "main.yml").write_text("tier: web\n")
    roots = {}
    for name in ("web01", "web02", "db01"):
        root = tmp_path / "hosts" / name
        root.mkdir(parents=True)
        roots[name] = root
        (inv / "host_vars" / f"{name}.yml").write_text(
            f"ansible_port: {server.port}\nroot: {root}\n"
        )
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True, mode=0o700)
    known = home / ".ssh" / "known_hosts"
    known.write_text(server.known_hosts_line())
    known.chmod(0o600)
    spec = tmp_path / "rollout.yaml"
    spec.write_text(SPEC)
    env = {**os.environ, "HOME": str(home)}
    proc = subprocess.run(
        [*CLI, "run", str(spec), "--headless", "--yes", "--state-dir", str(tmp_path / "state")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (roots["web01"] / "deployed").read_text() == "web web01\n"
    assert (roots["web02"] / "deployed").read_text() == "web web02\n"
    assert (roots["db01"] / "deployed").read_text() == "all db01\n"
    check = subprocess.run(
        [*CLI, "check", str(spec)], capture_output=True, text=True, timeout=60, env=env
    )
    assert check.returncode == 0, check.stderr
    assert "vars files  5 read" in check.stdout
