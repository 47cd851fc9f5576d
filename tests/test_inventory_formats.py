"""Each inventory format, format detection, and Ansible's var precedence."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from inventory import load_inventory
from inventory.loader import detect_format

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


NATIVE = """
defaults: {user: deploy, port: 22, key: keys/id_ed25519, known_hosts: ./known_hosts}
groups:
  web: {hosts: [web-01, web-02], vars: {http_port: 8080}}
  eu:  {children: [web], vars: {http_port: 80, region: eu}}
hosts:
  web-01: {address: 10.0.0.1}
  web-02: {address: 10.0.0.2, port: 2222, user: ops, vars: {weight: 2}}
  db-01:
"""


def test_native_format(tmp_path: Path) -> None:
    inv = load_inventory(write(tmp_path, "inv.yaml", NATIVE))
    assert inv.format == "native"
    assert list(inv.hosts) == ["web-01", "web-02", "db-01"]
    web1, web2, db1 = inv.hosts.values()
    assert (web1.address, web1.port, web1.user) == ("10.0.0.1", 22, "deploy")
    assert (web2.address, web2.port, web2.user) == ("10.0.0.2", 2222, "ops")
    assert (db1.address, db1.port) == ("db-01", 22)
    assert web1.key == str(tmp_path / "keys" / "id_ed25519")
    assert web1.known_hosts == str(tmp_path / "known_hosts")
    assert web1.groups == ("eu", "web")
    assert db1.groups == ("ungrouped",)
    assert web1.vars == {"http_port": 8080, "region": "eu"}  # child group beats parent
    assert web2.vars == {"http_port": 8080, "region": "eu", "weight": 2}
    assert inv.groups["eu"] == ["web-01", "web-02"]
    assert inv.groups["all"] == ["web-01", "web-02", "db-01"]
    assert inv.groups["ungrouped"] == ["db-01"]
    assert [h.source_line for h in inv.hosts.values()] == [6, 7, 8]


def test_native_host_lists_its_groups_and_tilde_key(tmp_path: Path) -> None:
    inv = load_inventory(
        write(
            tmp_path,
            "inv.yml",
            """
            defaults: {key: ~/.ssh/id_rsa}
            groups: {db: {}, eu: {children: [db]}}
            hosts:
              db-02: {groups: [db]}
              db-01: {groups: [db], key: /abs/key}
            """,
        )
    )
    assert list(inv.hosts) == ["db-02", "db-01"]
    assert inv.hosts["db-02"].key == os.path.expanduser("~/.ssh/id_rsa")
    assert inv.hosts["db-01"].key == "/abs/key"
    assert inv.groups["eu"] == ["db-02", "db-01"]
    assert inv.hosts["db-01"].port is None and inv.hosts["db-01"].user is None


ANSIBLE_YAML = """
all:
  vars: {env: prod, http_port: 1, ansible_user: deploy}
  hosts:
    bastion: {ansible_host: 192.0.2.10}
  children:
    eu:
      vars: {http_port: 2, region: eu}
      children:
        web:
          vars: {http_port: 3}
          hosts:
            web[01:02].example.com:
            web-09:2200: {http_port: 4, ansible_ssh_private_key_file: ~/k}
    db:
      hosts: db-01
"""


def test_ansible_yaml_format(tmp_path: Path) -> None:
    inv = load_inventory(write(tmp_path, "hosts.yaml", ANSIBLE_YAML))
    assert inv.format == "ansible-yaml"
    assert list(inv.hosts) == [
        "bastion",
        "web01.example.com",
        "web02.example.com",
        "web-09",
        "db-01",
    ]
    bastion = inv.hosts["bastion"]
    assert (bastion.address, bastion.user) == ("192.0.2.10", "deploy")
    assert bastion.groups == ("ungrouped",)  # only in all: ungrouped, as in Ansible
    assert bastion.vars == {"env": "prod", "http_port": 1}  # ansible_* consumed
    web1 = inv.hosts["web01.example.com"]
    assert web1.groups == ("eu", "web")
    assert web1.vars == {"env": "prod", "http_port": 3, "region": "eu"}
    web9 = inv.hosts["web-09"]
    assert (web9.port, web9.key) == (2200, os.path.expanduser("~/k"))
    assert web9.vars["http_port"] == 4  # host beats child beats parent beats all
    assert inv.groups["eu"] == ["web01.example.com", "web02.example.com", "web-09"]
    assert inv.groups["db"] == ["db-01"]
    assert inv.hosts["db-01"].groups == ("db",)
    assert web1.source_line == 12


def test_ansible_yaml_top_level_groups_without_all(tmp_path: Path) -> None:
    inv = load_inventory(
        write(
            tmp_path,
            "inv",
            """
            web:
              hosts: {w1: , w2: {ansible_port: "2201"}}
            lb:
              hosts: {l1: }
              vars: {ansible_port: 8022}
            """,
        )
    )
    assert inv.format == "ansible-yaml"
    assert [h.port for h in inv.hosts.values()] == [None, 2201, 8022]
    assert inv.groups["all"] == ["w1", "w2", "l1"]
    assert inv.groups["ungrouped"] == []


INI = """
bastion ansible_host=192.0.2.10 ansible_ssh_user=jump
web01 ansible_host=10.0.0.1 ansible_port=2222 http_port=8080 debug=True name="two words"

[web]
web01
web[02:03] weight=2 ratio=0.5 tags="['a', 'b']" plain=yes

[web:vars]
http_port=80
ansible_user=deploy

[eu:children]
web

[eu:vars]
http_port = 81
region=eu

[all:vars]
http_port=1
ansible_ssh_private_key_file=~/.ssh/id
"""


def test_ini_format(tmp_path: Path) -> None:
    inv = load_inventory(write(tmp_path, "hosts.ini", INI))
    assert inv.format == "ini"
    assert list(inv.hosts) == ["bastion", "web01", "web02", "web03"]
    bastion, web1, web2, _ = inv.hosts.values()
    assert (bastion.address, bastion.user, bastion.groups) == ("192.0.2.10", "jump", ("ungrouped",))
    # web01 was listed before any section, then in [web]: no longer ungrouped.
    assert web1.groups == ("eu", "web")
    assert inv.groups["ungrouped"] == ["bastion"]
    assert (web1.address, web1.port, web1.user) == ("10.0.0.1", 2222, "deploy")
    assert web1.key == os.path.expanduser("~/.ssh/id")
    assert web1.vars == {"http_port": 8080, "region": "eu", "debug": True, "name": "two words"}
    assert web2.vars == {
        "http_port": 80,  # [web:vars] (child) beats [eu:vars] (parent) beats [all:vars]
        "region": "eu",
        "weight": 2,
        "ratio": 0.5,
        "tags": ["a", "b"],
        "plain": "yes",
    }
    assert bastion.vars == {"http_port": 1}
    assert web1.source_line == 2 and web2.source_line == 6
    assert inv.groups["eu"] == ["web01", "web02", "web03"]


def test_ini_sections_may_be_declared_after_use(tmp_path: Path) -> None:
    inv = load_inventory(
        write(
            tmp_path,
            "hosts",
            """
            [prod:children]
            web   # trailing comment
            [web:vars]
            x=1
            [web]
            w1:2022
            ; a comment
            # another
            """,
        )
    )
    assert inv.groups["prod"] == ["w1"]
    assert inv.hosts["w1"].port == 2022
    assert inv.hosts["w1"].vars == {"x": 1}


def test_ini_group_priority_and_alphabetical_ties(tmp_path: Path) -> None:
    inv = load_inventory(
        write(
            tmp_path,
            "hosts.ini",
            """
            [a]
            h1
            [b]
            h1
            [a:vars]
            v=a
            [b:vars]
            v=b
            [c]
            h2
            [d]
            h2
            [c:vars]
            v=c
            ansible_group_priority=10
            [d:vars]
            v=d
            """,
        )
    )
    assert inv.hosts["h1"].vars == {"v": "b"}  # same depth: later name wins, as Ansible
    assert inv.hosts["h2"].vars == {"v": "c"}  # higher priority wins
    assert "ansible_group_priority" not in inv.hosts["h2"].vars


def test_precedence_depth_beats_name(tmp_path: Path) -> None:
    # 'a' is a child (depth 2) of 'z' (depth 1): the child wins though 'z' > 'a'.
    inv = load_inventory(
        write(
            tmp_path,
            "inv.yaml",
            """
            all:
              vars: {v: all}
              children:
                z:
                  vars: {v: z}
                  children:
                    a:
                      vars: {v: a}
                      hosts: {h: }
                    b:
                      hosts: {h2: {v: host}}
            """,
        )
    )
    assert inv.hosts["h"].vars == {"v": "a"}
    assert inv.hosts["h2"].vars == {"v": "host"}
    assert inv.hosts["h"].groups == ("a", "z")


def test_examples_load() -> None:
    formats = {
        "inventory.yaml": "native",
        "inventory.ini": "ini",
        "inventory_ansible.yaml": "ansible-yaml",
    }
    for name, fmt in formats.items():
        inv = load_inventory(EXAMPLES / name)
        assert inv.format == fmt
        assert len(inv.hosts) >= 5


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("x.yaml", "web01\n", "yaml"),
        ("x.ini", "all:\n", "ini"),
        ("x.cfg", "all:\n", "ini"),
        ("x", "# c\n\n[web]\n", "ini"),
        ("x", "web01 a=1\n", "ini"),
        ("x", "web01:2222\n", "ini"),
        ("x", "all:\n  hosts:\n", "yaml"),
        ("x", "; c\ndefaults: {user: x}\n", "yaml"),
        ("x", "---\n", "yaml"),
    ],
)
def test_detect_format(name: str, text: str, expected: str) -> None:
    assert detect_format(text, name) == expected


SAME_INVENTORY = {
    "native.yaml": """
        groups:
          all: {vars: {v: all, a: all}}
          parent: {children: [child], vars: {v: parent, p: parent}}
          child: {hosts: [h1, h2], vars: {v: child, c: child}}
        hosts:
          h1: {vars: {v: host}}
          h2:
          h3:
        """,
    "ansible.yaml": """
        all:
          vars: {v: all, a: all}
          hosts: {h3: }
          children:
            parent:
              vars: {v: parent, p: parent}
              children:
                child:
                  vars: {v: child, c: child}
                  hosts: {h1: {v: host}, h2: }
        """,
    "hosts.ini": """
        h3
        [child]
        h1 v=host
        h2
        [parent:children]
        child
        [child:vars]
        v=child
        c=child
        [parent:vars]
        v=parent
        p=parent
        [all:vars]
        v=all
        a=all
        """,
}


@pytest.mark.parametrize("name", sorted(SAME_INVENTORY))
def test_precedence_is_the_same_in_every_format(tmp_path: Path, name: str) -> None:
    inv = load_inventory(write(tmp_path, name, SAME_INVENTORY[name]))
    assert {h.name: h.vars for h in inv.hosts.values()} == {
        "h1": {"v": "host", "a": "all", "p": "parent", "c": "child"},
        "h2": {"v": "child", "a": "all", "p": "parent", "c": "child"},
        "h3": {"v": "all", "a": "all"},
    }
    assert {h.name: h.groups for h in inv.hosts.values()} == {
        "h1": ("child", "parent"),
        "h2": ("child", "parent"),
        "h3": ("ungrouped",),
    }
    assert inv.groups["parent"] == ["h1", "h2"] and inv.groups["ungrouped"] == ["h3"]


def test_yaml_merge_keys_in_vars(tmp_path: Path) -> None:
    inv = load_inventory(
        write(
            tmp_path,
            "inv.yaml",
            """
            all:
              vars:
                base: &base {ansible_user: deploy, tier: web, size: s}
              hosts:
                a: {<<: *base, size: l}
                b:
                  <<: [{tier: db}, *base]
            """,
        )
    )
    a, b = inv.hosts["a"], inv.hosts["b"]
    assert a.user == "deploy" and a.vars["size"] == "l" and a.vars["tier"] == "web"
    assert b.vars["tier"] == "db"  # the earlier merged mapping wins


def test_yaml_merge_key_in_native_host(tmp_path: Path) -> None:
    inv = load_inventory(
        write(
            tmp_path,
            "inv.yaml",
            """
            hosts:
              a: &common {port: 2200, user: ops, vars: {x: 1}}
              b: {<<: *common, address: 10.0.0.2}
            """,
        )
    )
    b = inv.hosts["b"]
    assert (b.address, b.port, b.user, b.vars) == ("10.0.0.2", 2200, "ops", {"x": 1})


def test_a_merge_key_inside_a_var_value_is_data(tmp_path: Path) -> None:
    """``<<`` inside a var's value merges as YAML says (it did before the shared YAML
    walker; the inventory's own rule about merge keys is for where hosts are named)."""
    path = write(
        tmp_path,
        "hosts.yml",
        """\
        all:
          hosts:
            web1:
              cfg: {<<: {a: 1, b: 1}, b: 2}
        """,
    )
    assert load_inventory(path).hosts["web1"].vars["cfg"] == {"a": 1, "b": 2}
