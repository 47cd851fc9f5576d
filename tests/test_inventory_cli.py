"""``rolldeck inventory``: table, --json, --targets, and one-line errors with exit 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from console.cli import main

INI = """\
[web]
web-01 ansible_host=10.0.0.1 ansible_port=2222 http_port=8080
web-02 ansible_host=10.0.0.2 db_password=hunter2
[web:vars]
ansible_user=deploy
[eu:children]
web
"""


@pytest.fixture
def ini(tmp_path: Path) -> Path:
    path = tmp_path / "hosts.ini"
    path.write_text(INI)
    return path


def test_table(ini: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inventory", str(ini)]) == 0
    out = capsys.readouterr().out
    for column in ("name", "address", "port", "user", "groups", "vars"):
        assert column in out
    web1 = next(line for line in out.splitlines() if "web-01" in line)
    assert "10.0.0.1" in web1 and "2222" in web1 and "deploy" in web1
    assert "(ini, 2 hosts)" in out
    assert "hunter2" not in out


def test_json_has_exactly_the_documented_keys(
    ini: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["inventory", str(ini), "--json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert [set(r) for r in records] == [{"name", "address", "port", "user", "groups", "vars"}] * 2
    assert records[0] == {
        "name": "web-01",
        "address": "10.0.0.1",
        "port": 2222,
        "user": "deploy",
        "groups": ["eu", "web"],
        "vars": {"http_port": 8080},
    }
    assert records[1]["port"] is None
    assert records[1]["vars"] == {"db_password": "***"}  # secrets are masked


def test_targets(ini: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inventory", str(ini), "--json", "--targets", "eu:!web-01"]) == 0
    assert [r["name"] for r in json.loads(capsys.readouterr().out)] == ["web-02"]


def test_json_of_yaml_only_types(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "inv.yaml"
    path.write_text("hosts:\n  a: {vars: {day: 2024-01-02, blob: !!binary aGk=}}\n")
    assert main(["inventory", str(path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["vars"]["day"] == "2024-01-02"


def test_no_markup_from_user_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "hosts.ini"
    path.write_text('[web]\nweb-01 note="[bold]x[/bold]"\n')
    assert main(["inventory", str(path)]) == 0
    assert "[bold]x[/bold]" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("text", "args", "expected"),
    [
        ("[web]\na ansible_port=seventy\n", [], "{path}:2: a.ansible_port: expected a port"),
        ("[web]\na\n", ["--targets", "db"], "--targets: host pattern 'db': 'db' matches no"),
        (
            "[web]\nh\n[web:children]\neu\n[eu:children]\nweb\n",
            [],
            "{path}:6: [eu:children]: cycle in children: web -> eu -> web",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    text: str,
    args: list[str],
    expected: str,
) -> None:
    path = tmp_path / "hosts.ini"
    path.write_text(text)
    assert main(["inventory", str(path), *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1
    assert captured.err.startswith("rolldeck: " + expected.format(path=path))
    assert "Traceback" not in captured.err


def test_missing_file_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["inventory", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err == f"rolldeck: {tmp_path / 'nope'}: no such file\n"


def test_large_inventories_print_plain_aligned_columns(
    ini: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("console.subcommands.inventory.RICH_TABLE_MAX_ROWS", 1)
    assert main(["inventory", str(ini)]) == 0
    title, header, rule, *rows = capsys.readouterr().out.splitlines()
    assert title == f"{ini} (ini, 2 hosts)"
    assert header.split() == ["name", "address", "port", "user", "groups", "vars"]
    assert rows == [
        "web-01  10.0.0.1  2222  deploy  eu,web  http_port=8080",
        'web-02  10.0.0.2        deploy  eu,web  db_password="***"',
    ]
    assert header.index("address") == rule.index("  -") + 2 == rows[0].index("10.0.0.1")
