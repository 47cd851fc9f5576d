"""Ansible host ranges and ``host:port`` splitting."""

from __future__ import annotations

from pathlib import Path

import pytest

from console.core.errors import InputError
from inventory import load_inventory
from inventory.ranges import RangeError, expand, split_port


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("web", ["web"]),
        ("web[1:3]", ["web1", "web2", "web3"]),
        ("web[01:03].example.com", ["web01.example.com", "web02.example.com", "web03.example.com"]),
        ("web[01:10:4]", ["web01", "web05", "web09"]),
        ("web[8:11]", ["web8", "web9", "web10", "web11"]),
        ("web[:2]", ["web0", "web1", "web2"]),
        ("api[a:c]", ["apia", "apib", "apic"]),
        ("api[a:e:2]-x", ["apia-x", "apic-x", "apie-x"]),
        ("api[y:B]", ["apiy", "apiz", "apiA", "apiB"]),  # Ansible's order: a-z then A-Z
        ("db[1:2]-[a:b]", ["db1-a", "db1-b", "db2-a", "db2-b"]),
        ("[1:2]x", ["1x", "2x"]),
        ("10.0.0.[1:3]", ["10.0.0.1", "10.0.0.2", "10.0.0.3"]),
    ],
)
def test_expand(pattern: str, expected: list[str]) -> None:
    assert expand(pattern) == expected


@pytest.mark.parametrize(
    "pattern",
    [
        "web[3:1]",  # begin after end
        "web[01:100]",  # padded begin, end of another width
        "web[1:3:0]",  # zero step
        "web[1:3:x]",
        "web[1]",  # no colon
        "web[1:2:3:4]",
        "web[1:]",  # no end
        "web[a:3]",
        "web[c:a]",
        "web[Y:b]",
        "web[1:3",  # unbalanced
        "web1:3]",
        "web[0:99999999]",  # more hosts than the cap
    ],
)
def test_expand_rejects(pattern: str) -> None:
    with pytest.raises(RangeError):
        expand(pattern)


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("web01", ("web01", None)),
        ("web01:2222", ("web01", 2222)),
        ("web[01:03]:2222", ("web[01:03]", 2222)),
        ("[::1]:22", ("::1", 22)),
        ("10.0.0.1:22", ("10.0.0.1", 22)),
    ],
)
def test_split_port(pattern: str, expected: tuple[str, int | None]) -> None:
    assert split_port(pattern) == expected


@pytest.mark.parametrize("pattern", ["web:0", "web:65536", "web:", ":22"])
def test_split_port_rejects(pattern: str) -> None:
    with pytest.raises(RangeError):
        split_port(pattern)


def test_ranges_in_ini_and_yaml_inventories(tmp_path: Path) -> None:
    ini = tmp_path / "hosts.ini"
    ini.write_text("[web]\nweb[01:20:2].example.com:2200 role=web\n")
    inv = load_inventory(ini)
    assert list(inv.hosts)[:3] == ["web01.example.com", "web03.example.com", "web05.example.com"]
    assert len(inv.hosts) == 10
    assert {h.port for h in inv.hosts.values()} == {2200}
    assert inv.hosts["web19.example.com"].vars == {"role": "web"}

    yml = tmp_path / "hosts.yml"
    yml.write_text("all:\n  hosts:\n    api[a:c]:\n      role: api\n")
    assert list(load_inventory(yml).hosts) == ["apia", "apib", "apic"]


def test_bracketed_ipv6_host_with_port_in_ini(tmp_path: Path) -> None:
    ini = tmp_path / "hosts.ini"
    ini.write_text("[v6]\n[::1]:2222\n")
    host = load_inventory(ini).hosts["::1"]
    assert (host.address, host.port) == ("::1", 2222)


def test_bad_range_is_an_input_error_with_line(tmp_path: Path) -> None:
    ini = tmp_path / "hosts.ini"
    ini.write_text("[web]\nok\nweb[05:1]\n")
    with pytest.raises(InputError) as info:
        load_inventory(ini)
    assert (info.value.file, info.value.line, info.value.field) == (str(ini), 3, "web[05:1]")
    assert "begin is after end" in info.value.message
