"""Scenario files: built-ins, behaviour resolution, and file:line:field errors."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from console.core.errors import InputError
from console.simfleet.host import SimHost
from console.simfleet.scenario import (
    builtin_names,
    load_scenario,
    parse_duration,
    parse_ratio,
    parse_scenario,
)

BUILTINS = [
    "bad-canary",
    "blue-green-bad",
    "demo",
    "flapping-health",
    "healthy",
    "host-dies-mid-batch",
    "hung-install",
    "slow-canary",
    "slow-rollout",
]


def test_builtins_are_shipped() -> None:
    assert builtin_names() == BUILTINS


@pytest.mark.parametrize("name", BUILTINS)
def test_each_builtin_loads(name: str) -> None:
    sc = load_scenario(name)
    assert sc.name == name and sc.description
    assert sc.initial_version != sc.target_version
    for rule in sc.hosts:  # every host rule names a host that exists in a 6-host fleet
        assert any(
            rule.matches(h)
            for h in ("web-01", "api-01", "worker-01", "web-02", "api-02", "worker-02")
        )


def test_behaviour_layers_by_version_and_host() -> None:
    sc = parse_scenario(
        """
versions:
  default: {error_rate: 1%, latency: 50ms}
  new: {error_rate: 10%}
  2.5.0: {latency: 1s}
hosts:
  - match: "web-*"
    error_rate: 3%
  - match: web-02
    versions: {new: {health: failing, install_duration: [5s, 6s]}}
""",
        "s.yaml",
    )
    assert sc.behaviour("api-01", "2.4.0").error_rate == 0.01
    assert sc.behaviour("api-01", "2.4.1").error_rate == 0.10
    assert sc.behaviour("api-01", "2.5.0").latency == 1.0
    assert sc.behaviour("api-01", "2.5.0").error_rate == 0.10
    assert sc.behaviour("web-01", "2.4.1").error_rate == 0.03  # host rule beats version
    b = sc.behaviour("web-02", "2.4.1")
    assert (b.health, b.install_duration, b.error_rate) == ("failing", (5.0, 6.0), 0.03)
    assert sc.behaviour("web-02", "2.4.0").health == "ok"


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        (
            "versions:\n  new: {error_rat: 5%}\n",
            ":2: versions.new.error_rat",
            "did you mean 'error_rate'",
        ),
        ("name: x\nhostz: []\n", ":2: hostz", "did you mean 'hosts'"),
        (
            "versions:\n  new:\n    error_rate: 150%\n",
            ":3: versions.new.error_rate",
            "between 0% and 100%",
        ),
        ("versions:\n  new: {latency: fast}\n", ":2: versions.new.latency", "expected a duration"),
        ("hosts:\n  - match: a\n    slow: -2\n", ":3: hosts[0].slow", "positive"),
        ("hosts:\n  - {slow: 2}\n", ":2: hosts[0].match", "missing"),
        (
            "hosts:\n  - match: a\n    unreachable: {on: instal}\n",
            ":3: hosts[0].unreachable.on",
            "did you mean 'install'",
        ),
        (
            "hosts:\n  - match: a\n    unreachable: {after: 1s, on: install}\n",
            ":3: hosts[0].unreachable.on",
            "either after or on",
        ),
        ("hosts:\n  - match: a\n    disk_full: maybe\n", ":3: hosts[0].disk_full", "expected true"),
        (
            "versions:\n  default: {install_duration: [3s, 1s]}\n",
            ":2: versions.default.install_duration",
            "MAX is smaller",
        ),
        ("versions:\n  default: {health: sick}\n", ":2: versions.default.health", "ok or failing"),
        ("target_version: 2.4.0\n", ":1: target_version", "must differ"),
        ("rollout: {on_falure: rollback}\n", ":1: rollout.on_falure", "did you mean 'on_failure'"),
        ("versions: [1, 2]\n", ":1: versions", "expected a mapping"),
        ("name: [unclosed\n", ":2:", "YAML syntax error"),
        ("", ":1:", "empty scenario"),
    ],
)
def test_errors_name_file_line_and_field(text: str, where: str, message: str) -> None:
    with pytest.raises(InputError) as info:
        parse_scenario(text, "drill.yaml")
    text_error = str(info.value)
    assert text_error.startswith("drill.yaml" + where), text_error
    assert message in text_error


def test_scenario_file_by_path(tmp_path: Path) -> None:
    path = tmp_path / "mine.yaml"
    path.write_text("versions:\n  new: {error_rate: 7%}\n")
    sc = load_scenario(path)
    assert sc.name == "mine" and sc.path == str(path)
    path.write_text("versions:\n  new: {eror_rate: 7%}\n")
    with pytest.raises(InputError, match=rf"^{path}:2: versions.new.eror_rate: unknown key"):
        load_scenario(path)


def test_unknown_scenario_name_suggests_a_builtin() -> None:
    with pytest.raises(InputError, match="did you mean 'bad-canary'"):
        load_scenario("bad-canery")


def test_value_parsers() -> None:
    assert parse_duration("250ms") == 0.25
    assert parse_duration("1.5m") == 90.0
    assert parse_duration(3) == 3.0
    assert parse_ratio("15%") == pytest.approx(0.15)
    assert parse_ratio(0.2) == 0.2
    for bad in ("soon", "-1s", True):
        with pytest.raises(ValueError):
            parse_duration(bad)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _run_host(seed: int) -> tuple[list[float], list[str]]:
    sc = load_scenario("bad-canary")
    clock = FakeClock()
    host = SimHost("web-01", sc, seed=seed, log_rate=50, clock=clock)
    installs = [host.install_time("2.4.1") for _ in range(3)]
    host.active = "2.4.1"
    host.restart()
    lines = []
    for _ in range(20):
        clock.now += 1.0
        lines += [line.split(" ", 1)[1] for line in host.generate_logs()]  # drop timestamps
    return installs, lines


def test_same_seed_same_behaviour() -> None:
    a, b, c = _run_host(7), _run_host(7), _run_host(8)
    assert a == b
    assert a[0] != c[0] and a[1] != c[1]
    errors = sum(" ERROR " in f" {line}" for line in a[1])
    assert 0.08 < errors / len(a[1]) < 0.25  # ERROR lines at the new version's 15%


def test_flapping_health_alternates() -> None:
    sc = load_scenario("flapping-health")
    clock = FakeClock()
    host = SimHost("worker-01", sc, seed=1, clock=clock)
    host.active = "2.4.1"
    clock.now += host.restart() + 5.0
    results = []
    for _ in range(12):
        clock.now += 1.0
        results.append(host.health()[0])
    transitions = sum(a != b for a, b in itertools.pairwise(results))
    assert transitions >= 3 and any(results) and not all(results)
