"""What is polled: the spec's switches, the one planner, and ``rolldeck check``'s polls."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from console.core.errors import InputError
from console.signals.polls import DEFAULT_VITALS, planned_polls, vitals_of
from console.spec import VitalsSpec, parse_spec

BASE = 'service: api\nversion: "2"\nsteps: ["deploy {version}"]\n'
METRICS = "metrics: {run: curl m, requests: req_total, errors: err_total, every: 7s}\n"


def signals(extra: str) -> list[str]:
    return [p.signal for p in planned_polls(parse_spec(BASE + extra, "s.yaml"))]


def test_vitals_default_on_false_off() -> None:
    assert parse_spec(BASE, "s").vitals == VitalsSpec()
    assert parse_spec(BASE + "vitals: true\n", "s").vitals == VitalsSpec()
    assert parse_spec(BASE + "vitals: false\n", "s").vitals is None
    assert signals("") == ["vitals"]
    assert signals("vitals: false\n") == []
    assert vitals_of(parse_spec(BASE, "s"), enabled=False) is None


def test_logs_and_metrics_false_mean_no_polls() -> None:
    spec = parse_spec(BASE + "logs: false\nmetrics: false\nvitals: false\n", "s")
    assert (spec.logs, spec.metrics, spec.vitals) == (None, None, None)
    assert planned_polls(spec) == ()
    assert signals(METRICS + "logs: tail -F x\n") == ["vitals", "metrics", "logs"]


@pytest.mark.parametrize("key", ["logs", "metrics"])
def test_true_without_a_command_names_file_line_field(key: str) -> None:
    with pytest.raises(InputError) as err:
        parse_spec(BASE + f"{key}: true\n", "r.yaml")
    assert (err.value.file, err.value.line, err.value.field) == ("r.yaml", 4, key)
    assert "false turns" in err.value.message


def test_the_planner_gives_paces_and_rendered_commands() -> None:
    spec = parse_spec(
        BASE + METRICS + "health: {run: 'curl {vars.p}', every: 3s, healthy_after: 2}\n"
        "vitals: {every: 9s, timeout: 1s}\n",
        "s",
    )
    polls = {p.signal: p for p in planned_polls(spec, lambda c: c.replace("{vars.p}", "8080"))}
    assert list(polls) == ["vitals", "metrics", "health gating", "health watch"]
    assert (polls["vitals"].command, polls["vitals"].every, polls["vitals"].timeout) == (
        DEFAULT_VITALS,
        9.0,
        1.0,
    )
    assert polls["metrics"].every == 7.0
    assert polls["health watch"].command == "curl 8080" and polls["health gating"].every == 3.0
    assert "until 2 passes" in polls["health gating"].when


def test_check_lists_polls_per_group_of_identical_hosts(tmp_path: Path) -> None:
    (tmp_path / "inv.ini").write_text(
        "[web]\nweb-[01:03] ansible_host=127.0.0.1 port=80\nweb-04 port=81\n"
        "db-01 port=80 rolldeck_shell=none\n"
    )
    (tmp_path / "r.yaml").write_text(
        BASE + "inventory: inv.ini\nvitals: false\nlogs: false\n"
        "health: {run: 'curl -f localhost:{vars.port}', every: 2s}\n"
    )
    cli = [sys.executable, "-m", "console", "check", str(tmp_path / "r.yaml")]
    done = subprocess.run([*cli, "--json"], capture_output=True, text=True, check=True)
    groups = json.loads(done.stdout)["polls"]
    assert [g["hosts"] for g in groups] == [["web-01", "web-02", "web-03"], ["web-04"], ["db-01"]]
    assert [g["shared_shell"] for g in groups] == [True, True, False]
    first = groups[0]
    assert [p["signal"] for p in first["polls"]] == ["health gating", "health watch"]
    assert (
        first["polls"][0]["command"] == "curl -f localhost:80" and first["polls"][0]["every"] == 2
    )
    assert groups[1]["polls"][0]["command"] == "curl -f localhost:81"
    assert any(off.startswith("vitals") for off in first["off"])
    text = subprocess.run(cli, capture_output=True, text=True, check=True).stdout
    polls = text[text.index("\npolls") :]
    assert "3 hosts: web-01 web-02 web-03" in polls and "vitals (vitals: false)" in polls
    assert "health watch" in polls and "rolldeck_shell: none" in polls
