"""``rolldeck check`` through console.cli.main, as a user runs it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from console.cli import main

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "rollout.yaml"

INVENTORY = """\
[web]
web-[01:40] ansible_host=10.0.0.1 http_port=8080

[db]
db-1 ansible_host=10.0.1.1 db_password=hunter2-secret

[all:vars]
region=eu
"""

SPEC = """\
service: api
version: 2.0.0
inventory: hosts.ini
targets: web
batches: [1, 10%, 25%, 100%]
max_failures: 2
current_version: cat /opt/api/VERSION
steps:
  - {name: install, run: "install {version} --port {vars.http_port}", once: true}
  - {name: login, run: "login --token {vars.DEPLOY_TOKEN} --pw {vars.api_password}"}
health: {run: "curl -f http://{address}:{vars.http_port}/"}
rollback: {steps: ["activate {previous_version}"]}
secrets: [DEPLOY_TOKEN]
vars: {api_password: "p@ss w0rd"}
"""


def write(tmp_path: Path, spec: str = SPEC, inventory: str = INVENTORY) -> Path:
    (tmp_path / "hosts.ini").write_text(inventory)
    path = tmp_path / "rollout.yaml"
    path.write_text(spec)
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(["check", *argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(autouse=True)
def token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEPLOY_TOKEN", "tok-from-env-123")


@pytest.mark.parametrize(
    "example", sorted((ROOT / "examples").glob("rollout*.yaml")), ids=lambda p: p.name
)
def test_every_example_checks_without_warnings(
    example: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, str(example), "--json")
    assert (code, err) == (0, "")
    data = json.loads(out)
    assert data["hosts"] > 0
    assert data["warnings"] == []


def test_example_spec_checks(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, str(EXAMPLE))
    assert (code, err) == (0, "")
    assert "checkout-api 2.4.1" in out
    assert "batch 1   1 host" in out
    assert "max_failures 0: any failed host fires on_failure (pause)" in out
    assert "bake 2m" in out


def test_plan_budget_and_rendered_commands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, str(write(tmp_path)))
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert "targets     web: 40 hosts" in lines
    assert "  batch 1   1 host     web-01" in lines
    assert "  batch 2   4 hosts    web-02 web-03 web-04 web-05" in lines
    assert (
        "  batch 3   10 hosts   web-06 web-07 web-08 web-09 web-10 web-11 ... web-15 (3 not shown)"
        in lines
    )
    assert (
        "  batch 4   25 hosts   web-16 web-17 web-18 web-19 web-20 web-21 ... web-40 "
        "(18 not shown) (20 at a time)"
    ) in lines
    assert "pauses at the third failed host, at the earliest in batch 2" in out
    assert "rollback    1 step on the hosts that moved, in the rollout's own batches" in lines
    assert "  step install            install 2.0.0 --port 8080   [timeout 5m, once]" in lines
    assert "  step login              login --token *** --pw ***   [timeout 5m]" in lines
    assert "  health                  curl -f http://10.0.0.1:8080/   [timeout 10s]" in lines
    assert "  rollback rollback-1     activate '<previous_version>'   [timeout 5m]" in lines
    assert "tok-from-env-123" not in out
    assert "p@ss" not in out
    assert "warnings" not in out


def test_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, str(write(tmp_path)), "--json")
    assert code == 0
    data = json.loads(out)
    assert data["hosts"] == 40
    assert [len(b) for b in data["batches"]] == [1, 4, 10, 25]
    assert data["batches"][0] == ["web-01"]
    assert data["batches"][3][-1] == "web-40"
    assert data["budget"].startswith("40 hosts; max_failures 2: more than 2 failed hosts")
    settings = data["settings"]
    assert settings["inventory"] == str(tmp_path / "hosts.ini")
    assert settings["targets"] == "web"
    assert settings["batches"] == [1, "10%", "25%", "100%"]
    assert settings["max_failures"] == 2
    assert settings["vars"] == {"api_password": "***"}
    assert settings["steps"][0]["once"] is True
    commands = data["commands"]
    assert commands["host"] == "web-01"
    assert commands["commands"][0]["field"] == "current_version"
    assert commands["commands"][2]["command"] == "login --token *** --pw ***"
    assert "tok-from-env-123" not in out and "p@ss" not in out
    assert data["warnings"] == []


def test_targets_and_inventory_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write(tmp_path)
    other = tmp_path / "other.ini"
    other.write_text("[web]\nweb-a http_port=1\nweb-b http_port=2\nweb-c http_port=3\n")
    code, out, _ = run(capsys, str(spec), "--inventory", str(other), "--targets", "web:!web-b")
    assert code == 0, out
    assert json.loads(run(capsys, str(spec), "--inventory", str(other), "--json")[1])[
        "batches"
    ] == [["web-a"], ["web-b"], ["web-c"]]
    code, out, _ = run(
        capsys, str(spec), "--inventory", str(other), "--targets", "web:!web-b", "--json"
    )
    assert json.loads(out)["batches"] == [["web-a"], ["web-c"]]


def test_pattern_matching_nothing_points_at_the_spec(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write(tmp_path, SPEC.replace("targets: web", "targets: web:&db"))
    code, out, err = run(capsys, str(spec))
    assert code == 2 and out == ""
    assert err.startswith(f"rolldeck: {spec}:4: targets: host pattern 'web:&db'")
    assert "matches no hosts" in err
    code, _, err = run(capsys, str(spec), "--targets", "nothing-*")
    assert code == 2
    assert "--targets: host pattern 'nothing-*'" in err


def test_no_inventory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write(tmp_path, SPEC.replace("inventory: hosts.ini\n", ""))
    code, _, err = run(capsys, str(spec))
    assert code == 2
    assert err == (
        f"rolldeck: {spec}: inventory: no inventory: set inventory in the spec "
        "or pass --inventory FILE\n"
    )


def test_missing_inventory_file_points_at_the_spec(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = write(tmp_path, SPEC.replace("inventory: hosts.ini", "inventory: nope/hosts.ini"))
    code, _, err = run(capsys, str(spec))
    assert code == 2
    assert err.startswith(f"rolldeck: {spec}:3: inventory: inventory {tmp_path}/nope/hosts.ini")
    code, _, err = run(capsys, str(spec), "--inventory", str(tmp_path / "other.ini"))
    assert code == 2
    assert err.startswith(f"rolldeck: {tmp_path / 'other.ini'}")


def test_missing_var_on_some_hosts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write(tmp_path, SPEC.replace("targets: web", "targets: all"))
    code, _, err = run(capsys, str(spec))
    assert code == 2
    assert err.startswith(
        f"rolldeck: {spec}:9: steps[0]: {{vars.http_port}} is not set for 1 of 41"
    )
    assert "(db-1)" in err


def test_missing_env_secret(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("DEPLOY_TOKEN")
    code, _, err = run(capsys, str(write(tmp_path)))
    assert code == 2
    assert ":10: steps[1]: {vars.DEPLOY_TOKEN} is not set for 40 of 40 hosts" in err


def test_warnings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write(
        tmp_path,
        "service: api\nversion: '1'\ninventory: hosts.ini\nsteps: [deploy]\n"
        "order: shuffle\nmax_failures: 100%\nsecrets: [NOT_SET_ANYWHERE]\n"
        "error_rate: {window: 1m}\nlogs: {run: tail, error_pattern: ERR}\n",
    )
    code, out, _ = run(capsys, str(spec))
    assert code == 0
    warnings = out.split("\nwarnings\n", 1)[1].splitlines()
    assert warnings == [
        "  - no health check: a host counts as healthy as soon as its steps succeed",
        "  - rollback has no steps: a rollback cannot move hosts back",
        "  - no current_version: previous versions are not read or journaled",
        "  - error_rate has neither max nor max_vs_baseline: it never stops anything",
        "  - order shuffle without seed: seed 0 is used, so every run shuffles alike",
        "  - max_failures allows every host to fail",
        "  - secret NOT_SET_ANYWHERE is not set in vars, the inventory or the environment",
    ]


def test_secret_host_vars_are_masked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write(
        tmp_path,
        "service: api\nversion: '1'\ninventory: hosts.ini\ntargets: db\n"
        "steps: ['psql --password {vars.db_password}']\n",
    )
    code, out, _ = run(capsys, str(spec), "--json")
    assert code == 0
    assert "hunter2" not in out
    assert json.loads(out)["commands"]["commands"][0]["command"] == "psql --password ***"


def test_bad_inventory_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write(tmp_path, inventory="[web]\nweb-01 ansible_port=seventy\n")
    code, out, err = run(capsys, str(spec))
    assert code == 2 and out == ""
    assert err.startswith(f"rolldeck: {tmp_path / 'hosts.ini'}:2")
    assert err.count("\n") == 1


def test_help_mentions_no_connection(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["check", "--help"])
    assert info.value.code == 0
    assert "without connecting" in capsys.readouterr().out


def test_rollback_commands_render_the_version_a_host_goes_back_to(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """During rollback {version} is the version the host goes back to and
    {new_version} the rollout's target: check shows rollback steps as they will run."""
    spec = SPEC.replace(
        'rollback: {steps: ["activate {previous_version}"]}',
        'rollback: {steps: ["activate {version} --from {new_version}"]}',
    )
    code, out, _ = run(capsys, str(write(tmp_path, spec)))
    assert code == 0
    line = next(ln for ln in out.splitlines() if "activate" in ln)
    assert "activate '<previous_version>' --from 2.0.0" in line
