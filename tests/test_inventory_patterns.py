"""Ansible host patterns: operators, globs, regexes, subscripts, errors, order."""

from __future__ import annotations

from pathlib import Path

import pytest

from console.core.errors import InputError
from inventory import Inventory, load_inventory, select
from inventory.patterns import split_pattern

INI = """
lb-01
[web]
web-01
web-02
web-07
[api]
api-01
api-02
[canary]
api-02
web-02
[eu:children]
web
[us:children]
api
[empty]
"""


@pytest.fixture(scope="module")
def inv(tmp_path_factory: pytest.TempPathFactory) -> Inventory:
    path = tmp_path_factory.mktemp("inv") / "hosts.ini"
    path.write_text(INI)
    return load_inventory(path)


def names(inv: Inventory, pattern: str) -> list[str]:
    return [h.name for h in select(inv, pattern)]


ALL = ["lb-01", "web-01", "web-02", "web-07", "api-01", "api-02"]


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("all", ALL),
        ("*", ALL),
        ("web", ["web-01", "web-02", "web-07"]),
        ("api-01", ["api-01"]),
        ("ungrouped", ["lb-01"]),
        # union, in inventory order whatever order the terms are written in
        ("api:web", ["web-01", "web-02", "web-07", "api-01", "api-02"]),
        ("api,web-01", ["web-01", "api-01", "api-02"]),
        ("api, lb-01", ["lb-01", "api-01", "api-02"]),
        # intersection and exclusion
        ("web:&canary", ["web-02"]),
        ("eu:us:&canary", ["web-02", "api-02"]),
        ("web:!web-07", ["web-01", "web-02"]),
        ("web:!canary", ["web-01", "web-07"]),
        ("!web-07:web", ["web-01", "web-02"]),  # exclusions apply last, as in Ansible
        ("&canary:web", ["web-02"]),
        ("!web:!api", ["lb-01"]),  # only exclusions: start from all
        ("all:!eu:!us", ["lb-01"]),
        ("eu:us:&canary:!api-02", ["web-02"]),
        # globs on host and group names
        ("web-0*", ["web-01", "web-02", "web-07"]),
        ("web-0[12]*", ["web-01", "web-02"]),
        ("*-02", ["web-02", "api-02"]),
        ("e?", ["web-01", "web-02", "web-07"]),  # group eu
        ("can*:&api", ["api-02"]),
        # regex (anchored at the start, like Ansible's re.match)
        ("~web-0[17]", ["web-01", "web-07"]),
        ("~(api|lb)-01", ["lb-01", "api-01"]),
        ("~us", ["api-01", "api-02"]),  # group us
        ("~u", ["lb-01", "api-01", "api-02"]),  # groups us and ungrouped
        # subscripts pick by position in the matched hosts
        ("web[0]", ["web-01"]),
        ("web[-1]", ["web-07"]),
        ("web[1:2]", ["web-02", "web-07"]),
        ("web[1:]", ["web-02", "web-07"]),
        ("all[0]:api[1]", ["lb-01", "api-02"]),
    ],
)
def test_select(inv: Inventory, pattern: str, expected: list[str]) -> None:
    assert names(inv, pattern) == expected


def test_select_returns_hosts(inv: Inventory) -> None:
    hosts = select(inv, "web-01")
    assert hosts == [inv.hosts["web-01"]]


@pytest.mark.parametrize(
    ("pattern", "needle"),
    [
        ("web-7", "'web-7' matches no host or group (did you mean 'web-07'?)"),
        ("web:!web-7", "'web-7' matches no host or group"),
        ("web:&nope", "'nope' matches no host or group"),
        ("db-*", "'db-*' matches no host or group"),
        ("~db", "'~db' matches no host or group"),
        ("~web[,", "invalid regular expression"),
        ("~web[", "unbalanced '[' or ']'"),
        ("web]:api", "unbalanced '[' or ']'"),
        ("web:&api", "matches no hosts"),
        ("empty", "matches no hosts"),
        ("web:!web", "matches no hosts"),
        ("web[5]", "index 5 is out of range (3 hosts)"),
        ("web[-4]", "index -4 is out of range (3 hosts)"),
        ("web[3:]", "range is out of range"),
        ("~a{99999999999}", "invalid regular expression"),
        ("", "is empty"),
        (" , ", "is empty"),
        ("web:!", "empty term"),
    ],
)
def test_select_errors(inv: Inventory, pattern: str, needle: str) -> None:
    with pytest.raises(InputError) as info:
        select(inv, pattern, file="spec.yaml", line=4)
    err = info.value
    assert needle in err.message
    assert (err.file, err.line, err.field) == ("spec.yaml", 4, "targets")
    assert repr(pattern) in err.message
    assert str(err).startswith("spec.yaml:4: targets: host pattern")


def test_select_field_is_configurable(inv: Inventory) -> None:
    with pytest.raises(InputError) as info:
        select(inv, "nope", field="--targets")
    assert (info.value.file, info.value.line, info.value.field) == (None, None, "--targets")


@pytest.mark.parametrize(
    ("pattern", "terms"),
    [
        ("web:api", ["web", "api"]),
        ("web:&eu:!web-07", ["web", "&eu", "!web-07"]),
        ("web[0:2]:api", ["web[0:2]", "api"]),
        ("a, b ,c", ["a", "b", "c"]),
        ("~x:y,z", ["~x:y", "z"]),  # commas win: a regex may hold ':'
    ],
)
def test_split_pattern(pattern: str, terms: list[str]) -> None:
    assert split_pattern(pattern) == terms


def test_group_name_wins_over_host_name(tmp_path: Path) -> None:
    path = tmp_path / "hosts.ini"
    path.write_text("[web]\nweb\nother\n")
    inv = load_inventory(path)
    assert names(inv, "web") == ["web", "other"]
