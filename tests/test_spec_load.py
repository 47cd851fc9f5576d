"""The spec loader: every field of the format into the model."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from console.spec import (
    STEP_TIMEOUT,
    Budget,
    ErrorRateSpec,
    GateSpec,
    HealthSpec,
    LogsSpec,
    MetricsSpec,
    RollbackSpec,
    Step,
    VitalsSpec,
    format_duration,
    load_spec,
    parse_spec,
    percent_of,
    settings,
)
from console.templating import build_context, render
from inventory.model import Host

FULL = """\
service: checkout-api
version: 2.4.1
inventory: inventory/prod.ini
targets: web:!web-07
batches: [1, 10%, 25%, 100%]
max_parallel: 20
max_failures: 0
on_failure: pause
between_batches: 2m
current_version: readlink /opt/checkout-api/current
preflight:
  - {name: disk, run: "test $(df --output=avail /opt | tail -1) -gt 1000000"}
  - command -v lbctl
steps:
  - {name: drain,   run: "lbctl drain {host}"}
  - {name: install, run: "/opt/deploy/install {version}", timeout: 120s, once: true}
  - {name: restart, run: "systemctl restart {vars.unit}", raw: true}
  - lbctl undrain {host}
health:
  run: curl -fsS http://{address}:8080/healthz
  every: 2s
  healthy_after: 3
  deadline: 60s
  timeout: 500ms
  flap_window: 1m30s
  flap_transitions: 5
logs:
  run: journalctl -fu checkout-api -n 0 -o cat
  error_pattern: '\\b(ERROR|CRITICAL)\\b'
metrics:
  run: curl -fsS http://127.0.0.1:8080/metrics
  requests: http_requests_total
  errors: 'http_requests_total{code=~"5.."}'
  every: 10s
  timeout: 3
vitals: {every: 5s}
error_rate:
  window: 60s
  max: 2%
  max_vs_baseline: 2.0
  min_requests: 50
  min_error_lines: 3
rollback:
  batches: [50%]
  steps:
    - {run: "/opt/deploy/activate {previous_version}"}
    - {name: restart, run: "systemctl restart checkout-api", timeout: 1m}
order: shuffle
seed: 7
environment: prod
secrets: [DEPLOY_TOKEN]
vars: {unit: checkout-api.service, weight: 2, canary: true}
"""


def test_full_spec_every_field() -> None:
    spec = parse_spec(FULL, "deploy/rollout.yaml")
    assert spec.path == "deploy/rollout.yaml"
    assert spec.text == FULL
    assert spec.service == "checkout-api"
    assert spec.version == "2.4.1"
    assert spec.inventory == os.path.join("deploy", "inventory", "prod.ini")
    assert spec.targets == "web:!web-07"
    assert spec.batches == (1, "10%", "25%", "100%")
    assert spec.max_parallel == 20
    assert spec.max_failures == Budget(count=0)
    assert spec.on_failure == "pause"
    assert spec.between_batches == GateSpec(kind="bake", bake=120.0)
    assert spec.current_version == "readlink /opt/checkout-api/current"
    assert spec.preflight == (
        Step("disk", "test $(df --output=avail /opt | tail -1) -gt 1000000", 60.0, line=12),
        Step("preflight-2", "command -v lbctl", 60.0, line=13),
    )
    assert spec.steps == (
        Step("drain", "lbctl drain {host}", STEP_TIMEOUT, line=15),
        Step("install", "/opt/deploy/install {version}", 120.0, once=True, line=16),
        Step("restart", "systemctl restart {vars.unit}", STEP_TIMEOUT, raw=True, line=17),
        Step("step-4", "lbctl undrain {host}", STEP_TIMEOUT, line=18),
    )
    assert spec.health == HealthSpec(
        run="curl -fsS http://{address}:8080/healthz",
        every=2.0,
        healthy_after=3,
        deadline=60.0,
        timeout=0.5,
        flap_window=90.0,
        flap_transitions=5,
    )
    assert spec.logs == LogsSpec(
        run="journalctl -fu checkout-api -n 0 -o cat", error_pattern=r"\b(ERROR|CRITICAL)\b"
    )
    assert spec.metrics == MetricsSpec(
        run="curl -fsS http://127.0.0.1:8080/metrics",
        requests="http_requests_total",
        errors='http_requests_total{code=~"5.."}',
        every=10.0,
        timeout=3.0,
    )
    assert spec.vitals == VitalsSpec(run=None, every=5.0)
    assert spec.error_rate == ErrorRateSpec(
        window=60.0, max=0.02, max_vs_baseline=2.0, min_requests=50, min_error_lines=3
    )
    assert spec.rollback == RollbackSpec(
        steps=(
            Step("rollback-1", "/opt/deploy/activate {previous_version}", line=46),
            Step("restart", "systemctl restart checkout-api", 60.0, line=47),
        ),
        batches=("50%",),
    )
    assert spec.order == "shuffle"
    assert spec.seed == 7
    assert spec.environment == "prod"
    assert spec.secrets == ("DEPLOY_TOKEN",)
    assert spec.vars == {"unit": "checkout-api.service", "weight": 2, "canary": True}


def test_lines_map_fields_to_their_lines() -> None:
    spec = parse_spec(FULL, "r.yaml")
    assert spec.lines["targets"] == 4
    assert spec.lines["steps[1].timeout"] == 16
    assert spec.lines["health.every"] == 21
    assert spec.lines["rollback.steps[1].run"] == 47


MINIMAL = "service: api\nversion: '1'\nsteps:\n  - deploy {version}\n"


def test_minimal_spec_defaults() -> None:
    spec = parse_spec(MINIMAL, "min.yaml")
    assert spec.inventory is None
    assert spec.targets == "all"
    assert spec.batches == (1, "100%")
    assert spec.max_parallel == 20
    assert spec.max_failures == Budget(count=0)
    assert spec.on_failure == "pause"
    assert spec.between_batches == GateSpec(kind="auto")
    assert spec.current_version is None
    assert spec.preflight == ()
    assert spec.steps == (Step("step-1", "deploy {version}", line=4),)
    assert (spec.health, spec.logs, spec.metrics, spec.error_rate) == (None,) * 4
    assert spec.vitals == VitalsSpec()  # polled by default; `vitals: false` is None
    assert spec.rollback == RollbackSpec()
    assert (spec.order, spec.seed, spec.environment, spec.secrets, spec.vars) == (
        "inventory",
        None,
        None,
        (),
        {},
    )


def with_line(key_and_value: str) -> str:
    return MINIMAL + key_and_value + "\n"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90.0),
        ("2m", 120.0),
        ("1h", 3600.0),
        ("500ms", 0.5),
        ("1h30m", 5400.0),
        ("1m 30s", 90.0),
        ("1.5s", 1.5),
        ("1d", 86400.0),
        ("45", 45.0),
        ("2.5", 2.5),
        ('"30"', 30.0),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    spec = parse_spec(with_line(f"health: {{run: probe, every: {text}, healthy_after: 1}}"), "d")
    assert spec.health is not None
    assert spec.health.every == seconds


@pytest.mark.parametrize(
    ("value", "batches"),
    [
        ("5", (5,)),
        ("25%", ("25%",)),
        ("[1, 2, 10%]", (1, 2, "10%")),
        ("[12.5%]", ("12.5%",)),
        ('["10 %", 100%]', ("10%", "100%")),
    ],
)
def test_batches_forms(value: str, batches: tuple[int | str, ...]) -> None:
    assert parse_spec(with_line(f"batches: {value}"), "b").batches == batches


@pytest.mark.parametrize(
    ("value", "budget"),
    [("0", Budget(count=0)), ("3", Budget(count=3)), ("10%", Budget(percent=10.0))],
)
def test_max_failures_forms(value: str, budget: Budget) -> None:
    assert parse_spec(with_line(f"max_failures: {value}"), "b").max_failures == budget


def test_budget_allowed_rounds_down() -> None:
    assert Budget(percent=10.0).allowed(41) == 4
    assert Budget(percent=5.0).allowed(10) == 0
    assert Budget(count=2).allowed(1) == 2


@pytest.mark.parametrize(
    ("value", "gate"),
    [
        ("manual", GateSpec(kind="manual")),
        ("auto", GateSpec(kind="auto")),
        ("2m", GateSpec(kind="bake", bake=120.0)),
        ("30", GateSpec(kind="bake", bake=30.0)),
        ("0", GateSpec(kind="auto")),
        (
            "{gate: manual, timeout: 15m, on_timeout: abort}",
            GateSpec(kind="manual", timeout=900.0, on_timeout="abort"),
        ),
        (
            "{gate: manual, timeout: 1h, on_timeout: continue}",
            GateSpec(kind="manual", timeout=3600.0, on_timeout="continue"),
        ),
        ("{gate: manual}", GateSpec(kind="manual")),
        ("{bake: 5m}", GateSpec(kind="bake", bake=300.0)),
        ("{gate: bake, bake: 90s}", GateSpec(kind="bake", bake=90.0)),
        ("{gate: auto}", GateSpec(kind="auto")),
    ],
)
def test_between_batches_forms(value: str, gate: GateSpec) -> None:
    assert parse_spec(with_line(f"between_batches: {value}"), "g").between_batches == gate


def test_gate_on_timeout_rollback_needs_rollback_steps_and_accepts_them() -> None:
    text = with_line(
        "between_batches: {gate: manual, timeout: 1m, on_timeout: rollback}\n"
        "current_version: cat /v\nrollback: ['activate {previous_version}']"
    )
    spec = parse_spec(text, "g")
    assert spec.between_batches.on_timeout == "rollback"
    assert spec.rollback.steps[0].run == "activate {previous_version}"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("{max: 2%}", 0.02),
        ("{max: 0.5%}", 0.005),
        ("{max: 0.02}", 0.02),
        ("{max: 0}", 0.0),
        ("{max: 100%}", 1.0),
    ],
)
def test_error_rate_max_is_a_ratio(value: str, expected: float) -> None:
    text = with_line(f"error_rate: {value}\nlogs: {{run: tail, error_pattern: ERROR}}")
    rate = parse_spec(text, "e").error_rate
    assert rate is not None
    assert rate.max == pytest.approx(expected)


@pytest.mark.parametrize(
    ("value", "vitals"),
    [
        ("true", VitalsSpec()),
        ("false", None),
        ("cat /proc/loadavg", VitalsSpec(run="cat /proc/loadavg")),
        ("{run: uptime, every: 10s, timeout: 2s}", VitalsSpec("uptime", 10.0, 2.0)),
        ("{}", VitalsSpec()),
    ],
)
def test_vitals_forms(value: str, vitals: VitalsSpec | None) -> None:
    assert parse_spec(with_line(f"vitals: {value}"), "v").vitals == vitals


def test_short_forms_for_health_and_logs() -> None:
    spec = parse_spec(with_line("health: curl -f localhost\nlogs: tail -F /var/log/x"), "s")
    assert spec.health == HealthSpec(run="curl -f localhost")
    assert spec.logs == LogsSpec(run="tail -F /var/log/x")


def test_numbers_where_text_is_expected_keep_their_spelling() -> None:
    spec = parse_spec("service: 42\nversion: 2.10\nsteps: [x]\nenvironment: 1e3\n", "n")
    assert (spec.service, spec.version, spec.environment) == ("42", "2.10", "1e3")


def test_targets_list_is_a_union() -> None:
    assert parse_spec(with_line("targets: [web, 'api:!api-3']"), "t").targets == "web:api:!api-3"


@pytest.mark.parametrize("order", ["inventory", "sorted", "reverse_sorted"])
def test_orders(order: str) -> None:
    assert parse_spec(with_line(f"order: {order}"), "o").order == order


@pytest.mark.parametrize("on_failure", ["pause", "abort"])
def test_on_failure(on_failure: str) -> None:
    assert parse_spec(with_line(f"on_failure: {on_failure}"), "o").on_failure == on_failure


def test_on_failure_rollback_with_steps() -> None:
    spec = parse_spec(with_line("on_failure: rollback\nrollback: {steps: [undo]}"), "o")
    assert spec.on_failure == "rollback"


def test_null_values_mean_the_default() -> None:
    spec = parse_spec(with_line("health:\nrollback:\nvars:\ntargets: ~"), "n")
    assert spec.health is None
    assert spec.rollback == RollbackSpec()
    assert spec.vars == {}
    assert spec.targets == "all"


def test_aliases_reuse_values() -> None:
    text = (
        "service: api\nversion: '1'\n"
        "steps:\n  - {timeout: &t 10m, name: a, run: one}\n  - {run: two, timeout: *t}\n"
    )
    assert [s.timeout for s in parse_spec(text, "m").steps] == [600.0, 600.0]


def test_merge_key_in_a_step() -> None:
    text = (
        "service: api\nversion: '1'\n"
        "preflight:\n  - &base {name: base, run: 'true', timeout: 10m}\n"
        "steps:\n  - {<<: *base, name: a}\n  - {<<: *base, name: b, timeout: 5s}\n"
    )
    spec = parse_spec(text, "m")
    assert [(s.name, s.run, s.timeout) for s in spec.steps] == [
        ("a", "true", 600.0),
        ("b", "true", 5.0),
    ]


def test_inventory_path_resolution(tmp_path: Path) -> None:
    spec_file = tmp_path / "deploy" / "rollout.yaml"
    spec_file.parent.mkdir()
    spec_file.write_text(with_line("inventory: ../hosts.ini"))
    assert load_spec(spec_file).inventory == str(tmp_path / "hosts.ini")
    spec_file.write_text(with_line("inventory: /etc/hosts.ini"))
    assert load_spec(spec_file).inventory == "/etc/hosts.ini"
    spec_file.write_text(with_line("inventory: ~/hosts.ini"))
    assert load_spec(spec_file).inventory == os.path.expanduser("~/hosts.ini")


def test_settings_are_json_ready_and_mask_secret_vars() -> None:
    import json

    text = FULL.replace("vars: {", "vars: {db_password: hunter2, ")
    data = settings(parse_spec(text, "r.yaml"))
    json.dumps(data)
    assert data["vars"]["db_password"] == "***"
    assert data["vars"]["unit"] == "checkout-api.service"
    assert data["max_failures"] == 0
    assert data["batches"] == [1, "10%", "25%", "100%"]
    assert "text" not in data and "lines" not in data
    assert data["steps"][1] == {
        "name": "install",
        "run": "/opt/deploy/install {version}",
        "timeout": 120.0,
        "raw": False,
        "once": True,
    }


def test_percent_of_is_exact() -> None:
    assert percent_of("10%", 40) == 4
    assert percent_of("10%", 41) == 5
    assert percent_of("1%", 40) == 1
    assert percent_of("12.5%", 8) == 1
    assert percent_of("12.5%", 16) == 2
    assert percent_of("0.1%", 10) == 1
    assert percent_of("30%", 10) == 3  # 0.3 * 10 is 3.0000000000000004 in floats


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(90, "1m30s"), (0.5, "500ms"), (120, "2m"), (3600, "1h"), (0, "0s"), (1.5, "1.5s")],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_release_dir_derives_current_version_and_runs_in_a_shell(tmp_path: Path) -> None:
    """The release layout: the version is the last element of the `current` link's
    target; a host without the link fails its version read (non-zero exit)."""
    text = "service: api\nversion: '2'\nrelease_dir: '{vars.root}/'\nsteps: [deploy]\n"
    spec = parse_spec(text, "s.yaml")
    assert spec.release_dir == "{vars.root}"
    assert spec.current_version is not None and "readlink" in spec.current_version
    root = tmp_path / "odd root; $(touch pwned)"
    (root / "releases" / "1.9.3").mkdir(parents=True)
    host = Host(name="h", address="127.0.0.1", vars={"root": str(root)})
    command = render(spec.current_version, build_context(spec, host, None))

    def sh() -> subprocess.CompletedProcess[str]:
        return subprocess.run(["/bin/sh", "-c", command], capture_output=True, text=True)

    assert sh().returncode != 0  # no current link yet
    (root / "current").symlink_to("releases/1.9.3")
    assert (sh().returncode, sh().stdout) == (0, "1.9.3\n")
    (root / "current").unlink()
    (root / "current").symlink_to(root / "releases" / "1.9.3")  # an absolute target
    assert sh().stdout == "1.9.3\n"
    assert not (tmp_path / "pwned").exists() and not Path("pwned").exists()
