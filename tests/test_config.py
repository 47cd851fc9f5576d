"""config.toml and ROLLDECK_* variables: precedence flag > environment > file > default,
`rolldeck config` naming each value's source, and bad input as file:line, exit 2."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from console import config
from console.core.errors import InputError
from console.store.journal import list_journals, read_journal

SPEC = """\
service: svc
version: "2.0"
inventory: inventory.yaml
batches: [100%]
between_batches: auto
steps:
  - {name: deploy, run: "true"}
"""
INVENTORY = """\
hosts:
  h1: {address: 127.0.0.1, vars: {rolldeck_connection: local}}
"""


def rolldeck(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ROLLDECK_")}
    return subprocess.run(
        [sys.executable, "-m", "console", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=120,
        env={
            **clean,
            "HOME": str(cwd / "home"),
            "XDG_CONFIG_HOME": str(cwd / "cfg"),
            "XDG_STATE_HOME": str(cwd / "xdg-state"),
            **(env or {}),
        },
    )


def write_config(d: Path, text: str) -> Path:
    path = d / "cfg" / "rolldeck" / "config.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One real headless run whose operator and state directory come from the file."""
    d = tmp_path_factory.mktemp("config")
    (d / "home").mkdir()
    (d / "spec.yaml").write_text(SPEC)
    (d / "inventory.yaml").write_text(INVENTORY)
    write_config(d, f'operator = "carol-from-file"\nstate_dir = "{d / "file-state"}"\n')
    run = rolldeck("run", "--headless", "--json", "spec.yaml", cwd=d)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr
    return d


def test_the_config_files_operator_and_state_dir_are_journaled(ran: Path) -> None:
    (journal,) = list_journals(ran / "file-state")
    started = read_journal(journal)[0]
    assert started.operator == "carol-from-file"  # type: ignore[attr-defined]


def test_env_state_dir_beats_the_file_and_a_flag_beats_both(ran: Path) -> None:
    from_file = rolldeck("history", "--json", cwd=ran)
    assert from_file.returncode == 0, from_file.stderr
    (row,) = [json.loads(line) for line in from_file.stdout.splitlines()]
    assert row["operator"] == "carol-from-file"

    elsewhere = ran / "x"
    env = {"ROLLDECK_STATE_DIR": str(elsewhere)}
    empty = rolldeck("history", "--json", cwd=ran, env=env)
    assert empty.returncode == 0 and empty.stdout == "", empty.stderr
    assert elsewhere.is_dir()  # it read (and created) /x, not the file's directory

    env = {"ROLLDECK_STATE_DIR": str(ran / "file-state")}
    via_env = rolldeck("history", "--json", cwd=ran, env=env)
    assert json.loads(via_env.stdout)["rollout_id"] == row["rollout_id"]
    flag = rolldeck("history", "--json", "--state-dir", str(elsewhere), cwd=ran, env=env)
    assert flag.stdout == ""


def test_rolldeck_config_shows_each_value_and_its_source(ran: Path) -> None:
    env = {"ROLLDECK_MAX_HANDSHAKES": "4", "ROLLDECK_OPERATOR": "dave-from-env"}
    shown = rolldeck("config", cwd=ran, env=env)
    assert shown.returncode == 0, shown.stderr
    lines = {line.split()[0]: line for line in shown.stdout.splitlines()[1:]}
    path = ran / "cfg" / "rolldeck" / "config.toml"
    assert "[env ROLLDECK_OPERATOR]" in lines["operator"] and "dave-from-env" in lines["operator"]
    assert f"[{path}:2]" in lines["state_dir"]
    assert "[env ROLLDECK_MAX_HANDSHAKES]" in lines["max_handshakes"]
    assert "[default]" in lines["accept_new_host_keys"]
    data = json.loads(rolldeck("config", "--json", cwd=ran, env=env).stdout)
    assert data["max_handshakes"] == {"value": 4, "source": "env ROLLDECK_MAX_HANDSHAKES"}


@pytest.mark.parametrize(
    "text,line,field,fragment",
    [
        ('operator = "a"\noperatr = "b"\n', 2, "operatr", "did you mean 'operator'?"),
        ("max_handshakes = 0\n", 1, "max_handshakes", "at least 1"),
        ('max_handshakes = "many"\n', 1, "max_handshakes", "whole number"),
        ('accept_new_host_keys = "perhaps"\n', 1, "accept_new_host_keys", "true or false"),
        ('\n[keymap]\npause = "space bar"\n', 2, "keymap", "expected keys"),
        ("operator = \n", 1, None, "not valid TOML"),
        ('state_dir = "state"\n', 1, "state_dir", "must be absolute"),
    ],
)
def test_bad_files_name_the_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, line: int, field: str, fragment: str
) -> None:
    path = write_config(tmp_path, text)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    with pytest.raises(InputError) as info:
        config.load({"XDG_CONFIG_HOME": str(tmp_path / "cfg")})
    err = info.value
    assert (err.file, err.line, err.field) == (str(path), line, field)
    assert fragment in err.message


def test_a_bad_file_is_exit_2_for_every_command(tmp_path: Path) -> None:
    write_config(tmp_path, 'thme = "x"\n')
    (tmp_path / "home").mkdir()
    out = rolldeck("history", cwd=tmp_path)
    assert out.returncode == 2
    assert "config.toml:1: thme: unknown key 'thme' (did you mean 'theme'?)" in out.stderr
    assert rolldeck("config", cwd=tmp_path).returncode == 2  # the error, not a traceback


def test_environment_values_are_checked_and_parsed() -> None:
    env = {"XDG_CONFIG_HOME": "/nonexistent", "ROLLDECK_ACCEPT_NEW_HOST_KEYS": "yes"}
    cfg = config.load(env)
    assert cfg["accept_new_host_keys"] is True
    assert config.argument_defaults(cfg) == {"accept_new_host_keys": True}
    with pytest.raises(InputError) as info:
        config.load({**env, "ROLLDECK_MAX_HANDSHAKES": "ten"})
    assert info.value.field == "ROLLDECK_MAX_HANDSHAKES"
    keys = config.load({**env, "ROLLDECK_KEYMAP": "pause=space; rollback=R,ctrl+r"})
    assert keys["keymap"] == {"pause": "space", "rollback": "R,ctrl+r"}


def test_help_points_at_the_docs_and_every_docs_link_exists(tmp_path: Path) -> None:
    (tmp_path / "home").mkdir()
    out = rolldeck("--help", cwd=tmp_path)
    assert "docs/README.md" in out.stdout and "rolldeck config" in out.stdout
    docs = Path(__file__).resolve().parent.parent / "docs"
    for page in docs.glob("*.md"):
        for target in re.findall(r"\]\(([^)#:]+\.md)(?:#[^)]*)?\)", page.read_text()):
            assert (page.parent / target).exists(), f"{page.name} links to {target}"
    index = (docs / "README.md").read_text()
    for name in ("getting-started", "spec", "inventories", "console-keys", "headless-ci"):
        assert f"({name}.md)" in index
    for name in ("drills", "resume-attach", "security", "troubleshooting-ssh", "events"):
        assert f"({name}.md)" in index


def test_rolldeck_config_names_another_file(tmp_path: Path) -> None:
    other = tmp_path / "team.toml"
    other.write_text('operator = "team-bot"\n')
    cfg = config.load({"ROLLDECK_CONFIG": str(other), "XDG_CONFIG_HOME": "/nonexistent"})
    assert cfg["operator"] == "team-bot"
    assert cfg.values["operator"].source == f"{other}:1"
    missing = config.load({"ROLLDECK_CONFIG": str(tmp_path / "absent.toml")})
    assert all(v.source == "default" for v in missing.values.values())
