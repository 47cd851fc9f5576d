"""Every kind of bad inventory is one InputError naming the file, the line and the field."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from console.core.errors import InputError
from inventory import load_inventory

# (file name, content, line, field, a piece of the message)
CASES = [
    # -- YAML syntax: the line of the problem, not of the document start
    (
        "inv.yaml",
        "hosts:\n  web-01: {address: 10.0.0.1}\n  web-02: {address: [}\n",
        3,
        None,
        "YAML syntax error",
    ),
    ("inv.yaml", "all:\n  hosts:\n    a: 1\n   b: 2\n", 4, None, "YAML syntax error"),
    ("inv.yaml", "all:\n  hosts: {a: }\n---\nall: {}\n", 3, None, "YAML"),
    # -- unknown keys, with a suggestion
    ("inv.yaml", "defautls: {}\nhosts: {a: }\n", 1, "defautls", "did you mean 'defaults'"),
    (
        "inv.yaml",
        "defaults: {user: x, prot: 22}\nhosts: {a: }\n",
        1,
        "defaults.prot",
        "did you mean 'port'",
    ),
    (
        "inv.yaml",
        "hosts:\n  a:\n    adress: 10.0.0.1\n",
        3,
        "hosts.a.adress",
        "did you mean 'address'",
    ),
    (
        "inv.yaml",
        "groups:\n  web:\n    host: [a]\nhosts: {a: }\n",
        3,
        "groups.web.host",
        "did you mean 'hosts'",
    ),
    (
        "inv.yaml",
        "all:\n  children:\n    web:\n      var: {x: 1}\n",
        4,
        "all.children.web.var",
        "did you mean 'vars'",
    ),
    # -- wrong types
    (
        "inv.yaml",
        "hosts:\n  a: {port: seventy}\n",
        2,
        "hosts.a.port",
        "expected a port number 1-65535, found 'seventy'",
    ),
    ("inv.yaml", "hosts:\n  a:\n    port: 70000\n", 3, "hosts.a.port", "1-65535"),
    ("inv.yaml", "hosts:\n  a: {port: true}\n", 2, "hosts.a.port", "1-65535"),
    ("inv.yaml", "defaults:\n  port: -1\nhosts: {a: }\n", 2, "defaults.port", "1-65535"),
    ("inv.yaml", "hosts:\n  a: {user: [x]}\n", 2, "hosts.a.user", "expected a non-empty string"),
    ("inv.yaml", "hosts:\n  a: {vars: [1]}\n", 2, "hosts.a.vars", "expected a mapping"),
    ("inv.yaml", "groups:\n  web: {hosts: a}\nhosts: {a: }\n", 2, "groups.web.hosts", "list"),
    ("inv.yaml", "hosts: [a, b]\n", 1, "hosts", "expected a mapping of host names"),
    (
        "inv.yaml",
        "all:\n  hosts:\n    a:\n      ansible_port: seventy\n",
        4,
        "a.ansible_port",
        "found 'seventy'",
    ),
    (
        "inv.yaml",
        "all:\n  vars:\n    ansible_port: 0\n  hosts: {a: }\n",
        3,
        "a.ansible_port",
        "1-65535",
    ),
    ("inv.yaml", "all:\n  hosts: [a, b]\n", 2, "all.hosts", "a list is not valid here"),
    ("inv.yaml", "web: [a, b]\n", 1, "web", "expected a group"),
    ("inv.yaml", "- a\n- b\n", 1, None, "expected a mapping"),
    ("inv.yaml", "all:\n  hosts:\n    a: {ansible_host: [1]}\n", 3, "a.ansible_host", "string"),
    # -- a group naming a host (or group) that does not exist
    (
        "inv.yaml",
        "groups:\n  web:\n    hosts:\n      - web-01\n      - web-2\n"
        "hosts:\n  web-01:\n  web-02:\n",
        5,
        "groups.web.hosts",
        "host 'web-2' is not defined under hosts (did you mean 'web-02'?)",
    ),
    (
        "inv.yaml",
        "groups:\n  web: {}\n  eu: {children: [wbe]}\nhosts: {a: }\n",
        3,
        "groups.eu.children",
        "group 'wbe' is not defined under groups (did you mean 'web'?)",
    ),
    (
        "inv.yaml",
        "groups: {web: {}}\nhosts:\n  a: {groups: [db]}\n",
        3,
        "hosts.a.groups",
        "group 'db' is not defined",
    ),
    # -- duplicates (PyYAML alone would keep the last silently)
    (
        "inv.yaml",
        "hosts:\n  web-01: {address: 10.0.0.1}\n  web-02:\n  web-01: {address: 10.0.0.9}\n",
        4,
        "hosts.web-01",
        "duplicate key 'web-01' (first on line 2)",
    ),
    (
        "inv.yaml",
        "all:\n  hosts:\n    a:\n      x: 1\n      x: 2\n",
        5,
        "all.hosts.a.x",
        "duplicate key 'x'",
    ),
    ("inv.yaml", "hosts:\n  ? [a]\n  : 1\n", 2, "hosts", "a key must be a plain name"),
    # -- cycles in children, reported at the edge that closes the cycle
    (
        "inv.yaml",
        "groups:\n  a: {children: [b]}\n  b: {children: [c]}\n  c:\n    children: [a]\n"
        "hosts: {h: }\n",
        5,
        "groups.c.children",
        "cycle in children: a -> b -> c -> a",
    ),
    (
        "inv.yaml",
        "groups:\n  a: {children: [all]}\nhosts: {h: }\n",
        2,
        "groups.a.children",
        "'all' contains every group",
    ),
    (
        "hosts.ini",
        "[a:children]\nb\n[b:children]\na\n[a]\nh\n",
        4,
        "[b:children]",
        "cycle in children: a -> b -> a",
    ),
    (
        "inv.yaml",
        "web:\n  children:\n    web: {}\n",
        3,
        "web.children",
        "cycle in children: web -> web",
    ),
    # -- INI specifics
    ("hosts.ini", "[web]\na ansible_port=seventy\n", 2, "a.ansible_port", "found 'seventy'"),
    (
        "hosts.ini",
        "[web]\na\n[web:vars]\nansible_port=99999\n",
        4,
        "a.ansible_port",
        "found 99999",
    ),
    ("hosts.ini", "[web:hostz]\na\n", 1, "[web:hostz]", "unknown type 'hostz'"),
    ("hosts.ini", "a\n[web group]\n", 2, "section", "invalid section header"),
    ("hosts.ini", "[web]\na\n[web:vars]\njust-a-word\n", 4, "[web:vars]", "expected key=value"),
    ("hosts.ini", "[web]\na port 22\n", 2, "a", "expected key=value after the host name"),
    ("hosts.ini", "[web]\na x='unclosed\n", 2, "web", "cannot parse host line"),
    ("hosts.ini", "[p:children]\nweb:x\n", 2, "[p:children]", "expected a group name"),
    ("hosts.ini", "a\n[db:vars]\nx=1\n", 2, "db", "undeclared group 'db'"),
    ("hosts.ini", "a\n[p:children]\ndb\n", 3, "db", "undeclared group 'db'"),
    ("hosts.ini", "[web]\nweb:\n", 2, "web:", "ends in ':'"),
    ("hosts.ini", "[web]\nweb:99999\n", 2, "web:99999", "not in 1-65535"),
    ("hosts.ini", "[web]\n---\n", 2, "web", "YAML"),
    ("hosts.ini", "[web]\n[web:vars]\nx=1\n", None, None, "defines no hosts"),
    # -- names and addresses reach terminals and ssh: no blanks or control characters
    ("hosts.ini", "[web]\nweb\x1b\x07\n", 2, "host name", "has a blank or a control"),
    ("inv.yaml", "hosts:\n  'web 01':\n", 2, "host name", "has a blank or a control"),
    ("inv.yaml", "groups: {'a b': {}}\nhosts: {h: }\n", 1, "group name", "blank"),
    (
        "inv.yaml",
        "hosts:\n  a: {address: '10.0.0.1 -oProxyCommand=x'}\n",
        2,
        "hosts.a.address",
        "blank",
    ),
    ("hosts.ini", "[web]\na ansible_host='1.2.3.4 x'\n", 2, "a.ansible_host", "blank"),
    ("hosts.ini", "[web]\na ansible_user=''\n", 2, "a.ansible_user", "must not be empty"),
    # -- empty files
    ("inv.yaml", "", None, None, "empty"),
    ("inv.yaml", "  \n\n", None, None, "empty"),
    ("inv.yaml", "# nothing here\n", None, None, "empty"),
    ("hosts.ini", "# nothing\n; here\n", None, None, "defines no hosts"),
    ("inv.yaml", "hosts: {}\n", None, None, "defines no hosts"),
]


@pytest.mark.parametrize(
    ("name", "text", "line", "field", "needle"),
    CASES,
    ids=[f"{i}-{c[4][:30]}" for i, c in enumerate(CASES)],
)
def test_bad_inventory(
    tmp_path: Path, name: str, text: str, line: int | None, field: str | None, needle: str
) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(InputError) as info:
        load_inventory(path)
    err = info.value
    assert needle in err.message
    assert (err.file, err.line, err.field) == (str(path), line, field)
    rendered = str(err)
    assert "\n" not in rendered
    assert rendered.startswith(f"{path}:{line}: " if line else f"{path}: ")


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.ini"
    with pytest.raises(InputError) as info:
        load_inventory(path)
    assert str(info.value) == f"{path}: no such file"


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        load_inventory(tmp_path)
    assert "no inventory file in this directory" in info.value.message


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "hosts.ini"
    path.write_text("a\n")
    path.chmod(0)
    with pytest.raises(InputError) as info:
        load_inventory(path)
    assert "cannot read" in info.value.message


def test_unreadable_file_via_os_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Root can read a mode-0 file, so simulate the EACCES that users hit.
    path = tmp_path / "hosts.ini"
    path.write_text("a\n")

    def deny(*args: object, **kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr("builtins.open", deny)
    with pytest.raises(InputError) as info:
        load_inventory(path)
    assert str(info.value) == f"{path}: cannot read: Permission denied"


def test_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "hosts.ini"
    path.write_bytes(b"a\nb\n\xff\xfe\n")
    with pytest.raises(InputError) as info:
        load_inventory(path)
    assert (info.value.line, info.value.message) == (3, "not valid UTF-8 text")


def test_recursive_alias_in_vars(tmp_path: Path) -> None:
    path = tmp_path / "inv.yaml"
    path.write_text(
        textwrap.dedent("""\
        all:
          hosts:
            a:
              x: &loop [1, *loop]
        """)
    )
    with pytest.raises(InputError) as info:
        load_inventory(path)
    assert (info.value.line, info.value.field) == (4, "all.hosts.a.x")
    assert "recursive alias" in info.value.message


def test_alias_bomb_in_vars(tmp_path: Path) -> None:
    lines = ["all:", "  vars:", "    l0: &l0 [x, x, x, x, x, x, x, x, x, x]"]
    for i in range(1, 9):
        refs = ", ".join([f"*l{i - 1}"] * 10)
        lines.append(f"    l{i}: &l{i} [{refs}]")
    lines.append("  hosts: {a: }")
    path = tmp_path / "inv.yaml"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError) as info:
        load_inventory(path)
    assert "alias expansion" in info.value.message


def test_recursive_merge_key(tmp_path: Path) -> None:
    path = tmp_path / "inv.yaml"
    path.write_text("all:\n  hosts:\n    a: &x\n      k: 1\n      <<: *x\n")
    with pytest.raises(InputError) as info:
        load_inventory(path)
    assert "recursive alias" in info.value.message
    assert (info.value.line, info.value.field) == (5, "all.hosts.a")


def test_merge_key_not_allowed_in_group_structure(tmp_path: Path) -> None:
    path = tmp_path / "inv.yaml"
    path.write_text("all:\n  <<: {hosts: {a: }}\n")
    with pytest.raises(InputError) as info:
        load_inventory(path)
    assert (info.value.line, info.value.field) == (2, "all")
    assert "merge keys (<<) are not supported here" in info.value.message


def test_host_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("inventory.builder.MAX_HOSTS", 5)
    path = tmp_path / "hosts.ini"
    path.write_text("[web]\nweb[1:3]\napi[1:3]\n")
    with pytest.raises(InputError) as info:
        load_inventory(path)
    # The range is refused from its bounds, before any of its names is built.
    assert (info.value.line, info.value.field) == (3, "api[1:3]")
    assert "expands to 3 hosts, over the inventory's limit (2 more allowed" in info.value.message
    path.write_text("[web]\nweb[1:3]\napi1\napi2\napi3\n")
    with pytest.raises(InputError) as info:
        load_inventory(path)
    assert (info.value.line, info.value.field) == (5, "api3")
    assert info.value.message.startswith("more than 5 hosts in the inventory")
