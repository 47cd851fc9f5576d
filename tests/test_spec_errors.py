"""Every kind of bad spec is one InputError naming the file, the line and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from console.cli import main
from console.core.errors import InputError
from console.spec import load_spec, parse_spec

HEAD = "service: api\nversion: '1'\nsteps:\n  - deploy {version}\n"  # lines 1-4


def fail(text: str) -> InputError:
    with pytest.raises(InputError) as info:
        parse_spec(text, "bad.yaml")
    assert info.value.file == "bad.yaml"
    return info.value


# (extra lines after HEAD, expected line, expected field, message fragment)
CASES = [
    # unknown keys, with a suggestion
    ("helth: {run: x}", 5, "helth", "unknown key 'helth' (did you mean 'health'?)"),
    ("health: {run: x, evrey: 2s}", 5, "health.evrey", "did you mean 'every'?"),
    ("rollback: {stepz: [x]}", 5, "rollback.stepz", "did you mean 'steps'?"),
    ("preflight:\n  - {name: a, rn: x}", 6, "preflight[0].rn", "did you mean 'run'?"),
    ("between_batches: {gate: manual, timout: 1m}", 5, "between_batches.timout", "timeout"),
    ("error_rate: {windw: 1m}", 5, "error_rate.windw", "did you mean 'window'?"),
    ("zzz: 1", 5, "zzz", "unknown key 'zzz'"),
    # the release layout
    ("release_dir: opt/app", 5, "release_dir", "must be an absolute path"),
    ("release_dir: /opt/my app", 5, "release_dir", "would need quoting"),
    ("release_dir: '/opt/$(id)'", 5, "release_dir", "would need quoting"),
    ("current_version: cat V\nrelease_dir: /opt/a", 6, "release_dir", "not both"),
    # duplicates
    ("health: {run: x}\nhealth: {run: y}", 6, "health", "duplicate key"),
    # wrong types
    ("max_parallel: many", 5, "max_parallel", "expected a whole number"),
    ("max_parallel: 2.5", 5, "max_parallel", "expected a whole number"),
    ("max_parallel: true", 5, "max_parallel", "expected a whole number"),
    ("max_parallel: 0", 5, "max_parallel", "must be at least 1"),
    ("steps2: x", 5, "steps2", "did you mean 'steps'?"),
    ("health: [curl]", 5, "health", "expected a mapping, got a list"),
    ("metrics: curl", 5, "metrics", "expected a mapping, got a value"),
    ("targets: {web: 1}", 5, "targets", "expected a single value, got a mapping"),
    ("vars: [a, b]", 5, "vars", "expected a mapping, got a list"),
    ("vars: {a: [1]}", 5, "vars.a", "expected a single value"),
    ("vars: {'a-b': 1}", 5, "vars.a-b", "not a var name"),
    ("secrets: [ok, 'not ok']", 5, "secrets[1]", "not a var name"),
    ("secrets: token", 5, "secrets", "expected a list"),
    ("seed: x\norder: shuffle", 5, "seed", "expected a whole number"),
    ("environment: [a]", 5, "environment", "expected a single value"),
    ("environment: null_but_ok\nservice2: 1", 6, "service2", "did you mean 'service'?"),
    ("inventory: ''", 5, "inventory", "must not be empty"),
    ("logs: {run: tail, error_pattern: '(unclosed'}", 5, "logs.error_pattern", "bad regex"),
    ("health: {run: x, healthy_after: 0}", 5, "health.healthy_after", "at least 1"),
    ("health: {run: x, flap_transitions: 1}", 5, "health.flap_transitions", "at least 2"),
    ("error_rate: {min_requests: -1}", 5, "error_rate.min_requests", "at least 1"),
    ("vitals: [a]", 5, "vitals", "expected a mapping, got a list"),
    ("steps2: ~", 5, "steps2", "unknown key"),
    ("health: {run: !!binary aGk=}", 5, "health.run", "unsupported YAML tag"),
    ("health: {run: !custom x}", 5, "health.run", "unsupported YAML tag"),
    ("max_parallel: !!int x", 5, "max_parallel", "not a valid int"),
    # durations
    ("health: {run: x, every: 2 minutes}", 5, "health.every", "is not a duration"),
    ("health: {run: x, every: -2s}", 5, "health.every", "is not a duration"),
    ("health: {run: x, every: -2}", 5, "health.every", "must not be negative"),
    ("health: {run: x, every: 0}", 5, "health.every", "longer than 0"),
    ("health: {run: x, every: .inf}", 5, "health.every", "finite"),
    ("health: {run: x, every: .nan}", 5, "health.every", "finite"),
    ("health: {run: x, every: 31d}", 5, "health.every", "longer than 30 days"),
    ("health: {run: x, every: 10s, deadline: 15s}", 5, "health.deadline", "too short for 3"),
    ("health: {run: x, every: true}", 5, "health.every", "expected a number"),
    ("metrics: {run: c, requests: r, errors: e, every: 5 s s}", 5, "metrics.every", "duration"),
    ("steps2: 1", 5, "steps2", "unknown key"),
    # percentages and budgets
    ("max_failures: -1", 5, "max_failures", "must not be negative"),
    ("max_failures: 1.5", 5, "max_failures", "expected a whole number"),
    ("max_failures: 150%", 5, "max_failures", "at most 100%"),
    ("max_failures: ten", 5, "max_failures", "expected a percentage like 10%"),
    ("max_failures: -5%", 5, "max_failures", "expected a percentage"),
    ("error_rate: {max: 2}", 5, "error_rate.max", "write a percentage like 2%"),
    ("error_rate: {max: two}", 5, "error_rate.max", "expected a percentage"),
    ("error_rate: {max_vs_baseline: 0}", 5, "error_rate.max_vs_baseline", "more than 0"),
    ("error_rate: {max_vs_baseline: -1}", 5, "error_rate.max_vs_baseline", "not be negative"),
    # batches
    ("batches: []", 5, "batches", "at least one batch size"),
    ("batches: [1, 0]", 5, "batches[1]", "must be at least 1"),
    ("batches: [1, -2]", 5, "batches[1]", "must be at least 1"),
    ("batches: [1, 0%]", 5, "batches[1]", "more than 0%"),
    ("batches: [1, 110%]", 5, "batches[1]", "at most 100%"),
    ("batches: [1, ten]", 5, "batches[1]", "expected a percentage"),
    ("batches: [1, 2.5]", 5, "batches[1]", "expected a whole number"),
    ("batches:\n  - 1\n  - [2]", 7, "batches[1]", "expected a single value"),
    ("batches: {a: 1}", 5, "batches", "expected a single value, got a mapping"),
    ("rollback: {batches: [0], steps: [x]}", 5, "rollback.batches[0]", "at least 1"),
    # enums
    ("on_failure: stop", 5, "on_failure", "is not one of pause, rollback, abort"),
    ("on_failure: paus", 5, "on_failure", "did you mean 'pause'?"),
    ("order: random", 5, "order", "is not one of inventory, sorted"),
    ("order: shufle", 5, "order", "did you mean 'shuffle'?"),
    ("between_batches: manuel", 5, "between_batches", "did you mean 'manual'?"),
    ("between_batches: sometimes", 5, "between_batches", "expected manual, auto or a bake"),
    ("between_batches: -1m", 5, "between_batches", "expected manual, auto or a bake"),
    ("between_batches: -60", 5, "between_batches", "must not be negative"),
    ("between_batches: off", 5, "between_batches", "expected manual, auto or a bake"),
    ("between_batches: ~x", 5, "between_batches", "expected manual, auto or a bake"),
    ("between_batches: {gate: maybe}", 5, "between_batches.gate", "is not one of manual"),
    ("between_batches: {timeout: 1m}", 5, "between_batches.gate", "missing required key"),
    ("between_batches: {gate: auto, timeout: 1m}", 5, "between_batches.timeout", "manual"),
    (
        "between_batches: {gate: manual, on_timeout: abort}",
        5,
        "between_batches.on_timeout",
        "needs a timeout",
    ),
    (
        "between_batches: {gate: manual, timeout: 1m, on_timeout: go}",
        5,
        "between_batches.on_timeout",
        "'go' is not one of abort, pause, rollback, continue",
    ),
    ("between_batches: {gate: bake}", 5, "between_batches.bake", "needs a bake time"),
    ("between_batches: {gate: manual, bake: 1m}", 5, "between_batches.bake", "no bake time"),
    # steps
    ("preflight:\n  - {name: x, run: a}\n  - {name: x, run: b}", 7, "preflight[1].name", "dup"),
    ("preflight:\n  - {name: x}", 6, "preflight[0].run", "missing required key 'run'"),
    ("preflight:\n  - {run: a, timeout: soon}", 6, "preflight[0].timeout", "not a duration"),
    ("preflight:\n  - {run: a, raw: yes please}", 6, "preflight[0].raw", "true or false"),
    ("preflight:\n  - {run: a, once: true}", 6, "preflight[0].once", "unknown key"),
    ("preflight:\n  - {run: ''}", 6, "preflight[0].run", "must not be empty"),
    ("preflight:\n  - {run: ~}", 6, "preflight[0].run", "expected text, got null"),
    ("preflight:\n  - [a]", 6, "preflight[0]", "expected a mapping"),
    ("rollback: {steps: [{run: a, once: true}]}", 5, "rollback.steps[0].once", "unknown key"),
    ("metrics: {run: c, requests: 'a b', errors: e}", 5, "metrics.requests", "series selector"),
    ("metrics: {run: c, requests: r}", 5, "metrics.errors", "missing required key 'errors'"),
    # templates: caught at load, at the line of the command
    ("health: {run: 'curl {hots}'}", 5, "health.run", "unknown placeholder {hots}"),
    ("logs: {run: 'tail {vars.}'}", 5, "logs.run", "bad placeholder"),
    ("current_version: cat /v/{service", 5, "current_version", "unmatched '{'"),
    ("rollback: {steps: ['undo {version}}']}", 5, "rollback.steps[0].run", "unmatched '}'"),
    ("preflight:\n  - run: |\n      ok\n      ${HOME}", 8, "preflight[0].run", "literal braces"),
    # rules across fields
    (
        "rollback: {steps: ['activate {previous_version}']}",
        5,
        "rollback.steps[0].run",
        "needs current_version",
    ),
    ("current_version: 'echo {previous_version}'", 5, "current_version", "cannot use it"),
    ("on_failure: rollback", 5, "on_failure", "rollback has no steps"),
    ("on_failure: rollback\nrollback: {steps: []}", 5, "on_failure", "rollback has no steps"),
    (
        "between_batches: {gate: manual, timeout: 1m, on_timeout: rollback}",
        5,
        "between_batches.on_timeout",
        "rollback has no steps",
    ),
    ("error_rate: {max: 2%}", 5, "error_rate", "error_rate needs a source"),
    ("error_rate: {max: 2%}\nlogs: tail", 5, "error_rate", "error_rate needs a source"),
    ("seed: 3", 5, "seed", "only applies to order: shuffle"),
]


@pytest.mark.parametrize(("extra", "line", "field", "fragment"), CASES)
def test_bad_spec(extra: str, line: int, field: str, fragment: str) -> None:
    err = fail(HEAD + extra + "\n")
    assert err.line == line, str(err)
    assert err.field == field, str(err)
    assert fragment in err.message, str(err)
    assert str(err).startswith(f"bad.yaml:{line}: ")


@pytest.mark.parametrize(
    ("text", "line", "field", "fragment"),
    [
        ("version: '1'\nsteps: [x]\n", 1, "service", "missing required key 'service'"),
        ("service: a\nsteps: [x]\n", 1, "version", "missing required key 'version'"),
        ("service: a\nversion: '1'\n", 1, "steps", "missing required key 'steps'"),
        ("service: a\nversion: '1'\nsteps: []\n", 3, "steps", "at least one step"),
        ("service: a\nversion: '1'\nsteps: x\n", 3, "steps", "expected a list"),
        ("service: ''\nversion: '1'\nsteps: [x]\n", 1, "service", "must not be empty"),
        ("service: a\nversion: null\nsteps: [x]\n", 2, "version", "expected text, got null"),
        ("service: \"a\\nb\"\nversion: '1'\nsteps: [x]\n", 1, "service", "must be one line"),
        ("service: a\nversion: ' 1'\nsteps: [x]\n", 2, "version", "surrounding spaces"),
        ("service: a\nversion: true\nsteps: [x]\n", 2, "version", "expected text, got true"),
        ("- a\n- b\n", 1, None, "expected a mapping, got a list"),
        ("just text\n", 1, None, "expected a mapping, got a value"),
        ("", 1, None, "the spec is empty"),
        ("# only a comment\n", 1, None, "the spec is empty"),
        ("service: a\nversion: [1\n", 3, None, "YAML syntax error"),
        ("service: a\n  version: 1\n", 2, None, "YAML syntax error"),
        ("service: a\n---\nservice: b\n", 2, None, "YAML syntax error"),
        ("service: *nowhere\n", 1, None, "YAML syntax error"),
        ("service: a\nversion: '1'\nsteps: [x]\n[1, 2]: k\n", 4, None, "a plain name"),
        ("service: a\nversion: '1'\nsteps: [x]\n? {a: 1}\n: k\n", 4, None, "a plain name"),
        ("service: a\tb\n\x07\n", None, None, "YAML error"),
        (
            "service: a\nversion: '1'\nsteps:\n  - &s {<<: *s, run: x}\n",
            4,
            "steps[0]",
            "refers to a mapping containing it",
        ),
        (
            "service: a\nversion: '1'\nsteps: [x]\nhealth: &h {run: x, <<: [*h]}\n",
            4,
            "health",
            "refers to a mapping containing it",
        ),
        ("service: a\nversion: '1'\nsteps:\n  - {<<: 5, run: x}\n", 4, "steps[0]", "mapping"),
        ("service: a\nversion: '1'\nsteps:\n  - {<<: {rn: x}}\n", 4, "steps[0].rn", "'run'"),
    ],
)
def test_bad_document(text: str, line: int | None, field: str | None, fragment: str) -> None:
    err = fail(text)
    assert err.line == line, str(err)
    assert err.field == field, str(err)
    assert fragment in err.message, str(err)


def test_deep_nesting_is_an_input_error() -> None:
    err = fail("service: " + "[" * 5000 + "]" * 5000 + "\n")
    assert "nesting depth" in err.message or "nested too deeply" in err.message


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read spec") as info:
        load_spec(tmp_path / "missing.yaml")
    assert info.value.file == str(tmp_path / "missing.yaml")
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"service: \xff\xfe\n")
    with pytest.raises(InputError, match="not UTF-8"):
        load_spec(binary)
    with pytest.raises(InputError, match="cannot read spec"):
        load_spec(tmp_path)  # a directory


def test_cli_prints_one_line_and_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = tmp_path / "r.yaml"
    spec.write_text(HEAD + "health: {run: x, every: soon}\n")
    assert main(["check", str(spec)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"rolldeck: {spec}:5: health.every: 'soon' is not a duration")
