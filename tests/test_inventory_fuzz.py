"""Fuzzing: whatever the bytes, load_inventory returns an Inventory or raises InputError.

Random bytes find decoding and detection holes; mutations of valid files in each
format (spans deleted, structural characters inserted, lines duplicated or swapped)
reach deep into the parsers. A loaded inventory must also be consistent and
printable as JSON.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from console.core.errors import InputError
from inventory import Inventory, load_inventory, select

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SEEDS = {
    "inventory.yaml": (EXAMPLES / "inventory.yaml").read_text(),
    "inventory.ini": (EXAMPLES / "inventory.ini").read_text(),
    "inventory_ansible.yaml": (EXAMPLES / "inventory_ansible.yaml").read_text(),
    # Anchors, aliases and merge keys: the paths where recursion can hide.
    "anchors.yaml": (
        "all:\n  vars:\n    base: &base {ansible_user: deploy, tags: &t [a, b]}\n"
        "  hosts:\n    a: {<<: *base, tags: *t}\n    b:\n      <<: [*base, {x: 1}]\n"
        "  children:\n    web: &web\n      hosts: {c: {ansible_port: 22}}\n"
        "    eu:\n      children: {web: }\n"
    ),
}
SUFFIXES = ["x.yaml", "x.ini", "x"]
SIGNIFICANT = "[]{}:,-#;=&*!|>?%@`'\"\\ \t\n~0123456789azAZ_."

_counter = itertools.count()


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


def load_or_input_error(path: Path) -> Inventory | None:
    try:
        inv = load_inventory(path)
    except InputError as exc:
        assert exc.file == str(path)
        assert "\n" not in str(exc)
        assert exc.line is None or exc.line >= 1
        return None
    check_consistent(inv)
    return inv


def check_consistent(inv: Inventory) -> None:
    assert list(inv.groups["all"]) == list(inv.hosts)
    for name, host in inv.hosts.items():
        assert host.name == name and host.address
        assert host.port is None or 1 <= host.port <= 65535
        for group in host.groups:
            assert name in inv.groups[group]
    assert [h.name for h in select(inv, "all")] == list(inv.hosts)
    json.dumps([h.to_json() for h in inv.hosts.values()], default=str)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=600), suffix=st.sampled_from(SUFFIXES))
def test_random_bytes(workdir: Path, data: bytes, suffix: str) -> None:
    path = workdir / f"{next(_counter)}-{suffix}"
    path.write_bytes(data)
    load_or_input_error(path)


@st.composite
def mutated(draw: st.DrawFn) -> tuple[str, str]:
    name = draw(st.sampled_from(sorted(SEEDS)))
    text = SEEDS[name]
    for _ in range(draw(st.integers(1, 4))):
        lines = text.split("\n")
        op = draw(st.sampled_from(["delete", "insert", "dup_line", "swap_lines", "replace"]))
        at = draw(st.integers(0, len(text)))
        if op == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 20)) :]
        elif op == "insert":
            text = text[:at] + draw(st.text(SIGNIFICANT, min_size=1, max_size=6)) + text[at:]
        elif op == "replace":
            text = text[:at] + draw(st.text(SIGNIFICANT, min_size=1, max_size=3)) + text[at + 3 :]
        elif op == "dup_line":
            i = draw(st.integers(0, len(lines) - 1))
            lines.insert(i, lines[i])
            text = "\n".join(lines)
        else:
            i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
            text = "\n".join(lines)
    return name, text


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=mutated())
def test_mutated_valid_files(workdir: Path, case: tuple[str, str]) -> None:
    name, text = case
    path = workdir / f"{next(_counter)}-{name}"
    path.write_text(text)
    load_or_input_error(path)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    text=st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=300).map(
        lambda t: "[web]\n" + t
    )
)
def test_random_ini_bodies(workdir: Path, text: str) -> None:
    path = workdir / f"{next(_counter)}-hosts.ini"
    path.write_text(text, encoding="utf-8")
    load_or_input_error(path)


@settings(max_examples=200, deadline=None)
@given(pattern=st.text(SIGNIFICANT + "web-0ap*", max_size=20))
def test_random_patterns(pattern: str) -> None:
    inv = load_inventory(EXAMPLES / "inventory.ini")
    try:
        hosts = select(inv, pattern)
    except InputError as exc:
        assert "\n" not in str(exc)
        return
    assert hosts and [h.name for h in hosts] == [n for n in inv.hosts if inv.hosts[n] in hosts]
