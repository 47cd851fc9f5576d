"""Inventory directories, group_vars/ and host_vars/, several inventories, limit files
and the host limit, checked against Ansible's own answer.

``tests/fixtures/ansible_dir/inventory`` has a conflict at every precedence level (all,
parent and child group, ``ansible_group_priority``, file vars below vars-dir vars, host
line vars below host_vars/, two files setting one host var) and the files Ansible skips
in a directory. rolldeck's resolved hosts are compared with ``ansible-inventory --list``
when ansible-core is installed, and always with ``expected.json``, which that command
produced once (``produced_by`` in the file).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from console.core.errors import InputError
from console.subcommands.check import analyse, format_report
from inventory import load_inventory, select
from inventory.model import Inventory
from inventory.patterns import read_limit_file

FIXTURE = Path(__file__).parent / "fixtures" / "ansible_dir"
INVENTORY = FIXTURE / "inventory"
CLI = [sys.executable, "-m", "console"]
# What ansible-inventory keeps in hostvars that is not a var of the inventory.
ANSIBLE_INTERNAL = {"inventory_file", "inventory_dir", "playbook_dir", "group_names"}


def rolldeck_view(inv: Inventory) -> dict[str, dict[str, Any]]:
    return {
        name: {"address": h.address, "port": h.port, "user": h.user, "vars": h.vars}
        for name, h in inv.hosts.items()
    }


def ansible_view(hostvars: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Ansible's hostvars as rolldeck's host fields (connection vars consumed)."""
    out = {}
    for name, raw in hostvars.items():
        hv = {k: v for k, v in raw.items() if k not in ANSIBLE_INTERNAL}
        out[name] = {
            "address": hv.pop("ansible_host", name),
            "port": hv.pop("ansible_port", None),
            "user": hv.pop("ansible_user", None),
            "vars": hv,
        }
    return out


def group_hosts(inv: Inventory) -> dict[str, list[str]]:
    return {
        g: sorted(members)
        for g, members in inv.groups.items()
        if g not in ("all", "ungrouped", "app") and members
    }


def test_directory_matches_stored_ansible_result() -> None:
    expected = json.loads((FIXTURE / "expected.json").read_text())
    inv = load_inventory(INVENTORY)
    assert rolldeck_view(inv) == ansible_view(expected["hostvars"])
    assert group_hosts(inv) == expected["group_hosts"]
    # The files Ansible skips in a directory were skipped (they would add hosts).
    assert set(inv.hosts) == {"web01", "web02", "db01", "db02", "cache01"}


def test_directory_matches_ansible_inventory(tmp_path: Path) -> None:
    exe = shutil.which("ansible-inventory") or str(
        Path(sys.executable).parent / "ansible-inventory"
    )
    if not os.access(exe, os.X_OK):
        pytest.skip("ansible-inventory not installed (pip install ansible-core: a test extra)")
    env = {**os.environ, "ANSIBLE_LOCAL_TEMP": str(tmp_path), "HOME": str(tmp_path)}
    out = subprocess.run(
        [exe, "-i", "inventory", "--list"],
        cwd=FIXTURE,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=True,
    )
    listed = json.loads(out.stdout)
    inv = load_inventory(INVENTORY)
    assert rolldeck_view(inv) == ansible_view(listed["_meta"]["hostvars"])
    for group, members in group_hosts(inv).items():
        assert sorted(listed[group]["hosts"]) == members, group


def test_vars_files_read_and_notes() -> None:
    inv = load_inventory(INVENTORY)
    names = [os.path.relpath(f, INVENTORY) for f in inv.vars_files]
    assert names == [
        "group_vars/all.yml",
        "group_vars/app.yml",
        "group_vars/canary.json",
        "group_vars/web/10-main.yml",
        "group_vars/web/20-more.json",
        "group_vars/zone.yaml",
        "host_vars/db01/a.yml",
        "host_vars/db01/b.yaml",
        "host_vars/web01.yml",
        "host_vars/web02",
    ]
    notes = "\n".join(inv.notes)
    assert "group_vars/web.yml: not read" in notes and "group_vars/web is" in notes
    assert "no group 'nosuchgroup' in the inventory" in notes
    assert [os.path.relpath(f, INVENTORY) for f in inv.files] == [
        "01-hosts.ini",
        "02-more.yml",
        os.path.join("sub", "03-sub.ini"),
    ]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_several_sources_later_wins_and_round_trip(tmp_path: Path) -> None:
    a = write(tmp_path / "a" / "hosts.ini", "[web]\nweb01 x=a-line\nweb02\n")
    write(tmp_path / "a" / "group_vars" / "web.yml", "g: a-dir\nx: a-dir\n")
    b = write(tmp_path / "b" / "hosts.yml", "web:\n  hosts:\n    web01: {x: b-line}\n")
    write(tmp_path / "b" / "group_vars" / "web.yml", "g: b-dir\n")
    write(tmp_path / "b" / "host_vars" / "web02.yml", "ansible_port: 2222\n")
    inv = load_inventory([a, b])
    assert inv.hosts["web01"].vars == {"x": "b-line", "g": "b-dir"}
    assert inv.hosts["web02"].vars == {"x": "a-dir", "g": "b-dir"}
    assert inv.hosts["web02"].port == 2222
    # What the journal records for several inventories reads back the same.
    again = load_inventory(inv.path)
    assert rolldeck_view(again) == rolldeck_view(inv)
    assert inv.path == os.pathsep.join([str(a), str(b)])


def test_limit_file(tmp_path: Path) -> None:
    limit = write(tmp_path / "retry", "# failed last time\nweb02\n\n  db01  # db too\n!web01\n")
    assert read_limit_file(str(limit)) == "web02,db01,!web01"
    inv = load_inventory(INVENTORY)
    assert [h.name for h in select(inv, read_limit_file(str(limit)))] == ["web02", "db01"]
    write(limit, "web02 db01\n")
    with pytest.raises(InputError) as info:
        read_limit_file(str(limit))
    assert (info.value.file, info.value.line) == (str(limit), 1)


def test_bad_vars_file_values_name_file_line_field(tmp_path: Path) -> None:
    write(tmp_path / "hosts.ini", "[web]\nweb01\n")
    bad = write(tmp_path / "group_vars" / "web.yml", "a: 1\nansible_port: seventy\n")
    with pytest.raises(InputError) as info:
        load_inventory(tmp_path / "hosts.ini")
    assert (info.value.file, info.value.line, info.value.field) == (
        str(bad),
        2,
        "web01.ansible_port",
    )
    write(bad, "a: 1\na: 2\n")
    with pytest.raises(InputError) as info:
        load_inventory(tmp_path / "hosts.ini")
    assert (info.value.file, info.value.line) == (str(bad), 2)
    assert "duplicate key" in info.value.message
    write(bad, "token: !vault |\n  $ANSIBLE_VAULT;1.1;AES256\n  3133\n")
    with pytest.raises(InputError) as info:
        load_inventory(tmp_path / "hosts.ini")
    assert (info.value.file, info.value.line, info.value.field) == (str(bad), 1, "token")
    assert "ansible-vault" in info.value.message
    write(bad, "- a\n- b\n")
    with pytest.raises(InputError) as info:
        load_inventory(tmp_path / "hosts.ini")
    assert "expected a mapping of variables" in info.value.message


def test_vars_file_size_checked_before_parsing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("inventory.varsdirs.MAX_VARS_BYTES", 1000)
    write(tmp_path / "hosts.ini", "[web]\nweb01\n")
    big = write(tmp_path / "host_vars" / "web01.yml", "x: " + "y" * 2000 + "\n")
    with pytest.raises(InputError) as info:
        load_inventory(tmp_path / "hosts.ini")
    assert info.value.file == str(big)
    assert "a vars file larger than 1,000 bytes" in info.value.message


def test_native_file_stands_alone(tmp_path: Path) -> None:
    native = write(tmp_path / "inv" / "native.yaml", "hosts:\n  web01: {address: 10.0.0.1}\n")
    write(tmp_path / "inv" / "group_vars" / "all.yml", "x: 1\n")
    inv = load_inventory(native)
    assert inv.hosts["web01"].vars == {}
    assert any("native inventory format has no vars directories" in n for n in inv.notes)
    write(tmp_path / "inv" / "more.ini", "[db]\ndb01\n")
    with pytest.raises(InputError) as info:
        load_inventory(tmp_path / "inv")
    assert info.value.file == str(native)
    assert "cannot be merged" in info.value.message


def test_range_bomb_refused_fast(tmp_path: Path) -> None:
    """Issue 18.5: a 38-byte range line is refused from its bounds (no host built)."""
    bomb = write(tmp_path / "hosts.ini", "[web]\nweb-a\nh[0:999999]\n")
    started = time.monotonic()
    proc = subprocess.run(
        [*CLI, "inventory", str(bomb)], capture_output=True, text=True, timeout=60
    )
    elapsed = time.monotonic() - started
    assert proc.returncode == 2, proc.stderr
    assert f"{bomb}:3" in proc.stderr
    assert "expands to 1,000,000 hosts" in proc.stderr and "ROLLDECK_MAX_HOSTS" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert elapsed < 20  # a generous bound on a busy machine: it is not built at all
    # Raised through the environment, a larger fleet loads.
    env = {**os.environ, "ROLLDECK_MAX_HOSTS": "1000"}
    write(bomb, "[web]\nh[1:800]\n")
    ok = subprocess.run(
        [*CLI, "inventory", str(bomb), "--json"], capture_output=True, text=True, env=env
    )
    assert ok.returncode == 0, ok.stderr
    assert len(json.loads(ok.stdout)) == 800
    env["ROLLDECK_MAX_HOSTS"] = "500"
    refused = subprocess.run(
        [*CLI, "inventory", str(bomb)], capture_output=True, text=True, env=env
    )
    assert refused.returncode == 2 and f"{bomb}:2" in refused.stderr


def test_total_host_limit_across_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROLLDECK_MAX_HOSTS", "10")
    write(tmp_path / "inv" / "a.ini", "[web]\nweb[1:6]\n")
    second = write(tmp_path / "inv" / "b.ini", "[db]\ndb[1:5]\n")
    with pytest.raises(InputError) as info:
        load_inventory(tmp_path / "inv")
    assert (info.value.file, info.value.line) == (str(second), 2)
    assert "4 more allowed" in info.value.message


SPEC = """\
service: shop
version: "2.0"
inventory: inventory
batches: [1, 100%]
steps:
  - {name: install, run: "echo {vars.tier}"}
"""


def test_check_reports_vars_files_and_unhonoured_connection_vars(tmp_path: Path) -> None:
    inv = tmp_path / "inventory"
    shutil.copytree(INVENTORY, inv)
    write(inv / "group_vars" / "db.yml", "ansible_ssh_common_args: -o ProxyJump=bastion\n")
    write(inv / "host_vars" / "cache01.yml", "ansible_connection: winrm\n")
    write(inv / "group_vars" / "zone.yaml", "ansible_python_interpreter: /usr/bin/python3\n")
    spec = write(tmp_path / "rollout.yaml", SPEC)
    report = analyse(str(spec), targets="web:db:extra")
    joined = "\n".join(report.warnings)
    assert "ansible_ssh_common_args: not honoured by rolldeck" in joined
    assert "(2 hosts: db01, db02)" in joined
    assert "ansible_connection=winrm: rolldeck connects over SSH only (1 host: cache01)" in joined
    assert "ansible_python_interpreter" not in joined
    assert "inventory: " in joined and "nosuchgroup" in joined
    text = format_report(report)
    assert f"vars files  {len(report.vars_files)} read" in text
    assert "... 2 more (--verbose lists all)" in text
    assert str(inv / "host_vars" / "web02") in format_report(report, verbose=True)
    assert report.to_json()["vars_files"] == list(report.vars_files)


def test_check_cli_several_inventories_and_targets_file(tmp_path: Path) -> None:
    spec = write(tmp_path / "rollout.yaml", SPEC)
    shutil.copytree(INVENTORY, tmp_path / "inventory")
    extra = write(tmp_path / "more" / "hosts.ini", "[web]\nweb09 tier=t v_split=s\n")
    targets = write(tmp_path / "targets", "web09\nweb01\n")
    proc = subprocess.run(
        [
            *CLI,
            "check",
            str(spec),
            "--inventory",
            str(tmp_path / "inventory"),
            "--inventory",
            str(extra),
            "--targets",
            f"@{targets}",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert sorted(out["batches"][0] + out["batches"][1]) == ["web01", "web09"]
    missing = subprocess.run(
        [*CLI, "check", str(spec), "--targets", f"@{tmp_path / 'nope'}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 2 and "no such file" in missing.stderr
