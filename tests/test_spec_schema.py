"""The published JSON Schemas agree with the loaders: same keys, same verdicts.

The schema (console/spec/schema.py) is what an editor checks as the user types; the
loader (console/spec/load.py) is what `rolldeck check` and `run` enforce. A key one
accepts and the other rejects is a bug in one of them, so the tests below hold the
schema's keys to the loader's tables (recorded from the loader's own calls), and
run a corpus of valid and invalid specs through both.
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from console.core.errors import InputError
from console.core.yamlnodes import Doc
from console.schemas import SCHEMAS
from console.spec import load, parse_spec
from console.spec.schema import LOADER_ONLY, object_paths, spec_schema
from tests.test_spec_errors import CASES, HEAD

ROOT = Path(__file__).resolve().parent.parent


class _Yaml12(yaml.SafeLoader):
    """YAML as editors read it (1.2 booleans): ``on:`` is a key, not True."""


_Yaml12.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def instance(text: str) -> Any:
    return yaml.load(text, Loader=_Yaml12)  # a SafeLoader subclass


VALIDATOR = jsonschema.Draft7Validator(spec_schema())


def _leaves(errors: Iterator[jsonschema.ValidationError]) -> Iterator[jsonschema.ValidationError]:
    for error in errors:
        if error.context:
            yield from _leaves(iter(error.context))
        else:
            yield error


def _field(path: Any) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def schema_fields(doc: Any) -> set[str]:
    """The fields the schema's errors name, as the loader spells them
    (``steps[2].timeout``); an unknown key is named itself."""
    names = set()
    for error in _leaves(VALIDATOR.iter_errors(doc)):
        where = _field(error.absolute_path)
        if error.validator == "additionalProperties" and isinstance(error.instance, dict):
            known = error.schema.get("properties", {})
            for key in error.instance:
                if key not in known:
                    names.add(f"{where}.{key}" if where else str(key))
        elif "propertyNames" in error.schema_path:  # the key itself is wrong
            names.add(f"{where}.{error.instance}" if where else str(error.instance))
        elif error.validator == "required":
            for key in error.validator_value:
                if isinstance(error.instance, dict) and key not in error.instance:
                    names.add(f"{where}.{key}" if where else key)
        else:
            names.add(where)
    return names


def loader_field(text: str) -> str | None:
    try:
        parse_spec(text, "corpus.yaml")
    except InputError as exc:
        return exc.field or ""
    return None


# -- the keys ---------------------------------------------------------------------------


def _normal(field: str) -> str:
    return re.sub(r"\[\d+\]", "[]", field)


def recorded_mappings(texts: list[str], monkeypatch: pytest.MonkeyPatch) -> dict[str, set[str]]:
    """Every mapping the loader reads while loading ``texts``: field -> allowed keys
    (from its own calls into the one YAML walker, so nothing is restated here)."""
    seen: dict[str, set[str]] = {}
    real = Doc.mapping

    def recording(self: Doc, node: Any, field: str, *args: Any, **kw: Any) -> Any:
        allowed = kw.get("allowed")
        if allowed is not None:
            seen.setdefault(_normal(field), set()).update(allowed)
        return real(self, node, field, *args, **kw)

    monkeypatch.setattr(Doc, "mapping", recording)
    for text in texts:
        parse_spec(text, "corpus.yaml")
    return seen


# Specs that between them use every mapping form the loader has.
MAXIMAL = [
    (ROOT / "examples" / "rollout.yaml").read_text(),
    HEAD + "between_batches: {gate: manual, timeout: 15m, on_timeout: abort}\n"
    "lease: {path: ~/.leases, stale_after: 1m}\nvitals: {run: cat /proc/loadavg, every: 5s}\n"
    "become: true\nbecome_user: app\nbecome_method: sudo\n"
    "preflight: [{name: p, run: 'true', become: true}]\n"
    "rollback: {steps: [{run: 'undo {version}', become_user: root}], batches: [50%]}\n"
    "health: {run: x, every: 2s, healthy_after: 2, deadline: 1m, watch_every: 5s}\n"
    "logs: {run: tail -f log, error_pattern: ERROR}\n"
    "error_rate: {window: 1m, max: 2%, min_requests: 10}\n",
    HEAD + "analysis:\n  interval: 10s\n  window: 1m\n"
    "  prometheus: {url: 'http://prom:9090', timeout: 5s,\n"
    "               basic_auth: {username: u, password: '{vars.p}'}}\n"
    "  metrics:\n    - {name: errors, max: 5%,\n"
    "       query: 'sum(rate(x{instance=~\"{instances}\"}[{window}]))',"
    " max_vs_baseline: 2x, compare: threshold, floor: 0.1}\n"
    "  on_no_data: pause\n"
    "notify:\n  - {on: [alert], webhook: 'https://h.example.com/x', format: slack,"
    " timeout: 5s, retries: 2}\n  - {on: all, run: ./tell.sh}\n"
    "vars: {p: x}\nsecrets: [p]\n"
    "environment: prod\nmetrics_out: metrics\n"
    "requires: [{environment: staging, outcome: succeeded, same_version: true, within: 7d}]\n"
    "between_batches: {gate: command, run: ./ok.sh, every: 10s, timeout: 1h,"
    " on_timeout: pause}\n",
    HEAD + "between_batches: {gate: approval, approvers: 2, before: final, timeout: 1h}\n"
    "load_balancer: {type: haproxy, host: lb-01, socket: /run/haproxy/admin.sock,"
    " backend: app, server: '{host}', drain: {wait_sessions: 0, timeout: 60s}}\n",
    HEAD.replace("  - deploy {version}\n", "  - {name: a, run: x, once: true, become: true}\n")
    + "rollback: [{name: r, run: y}]\n",
    HEAD + "load_balancer: {type: haproxy, host: lb, socket: /run/h.sock, backend: app,"
    " server: '{host}', drain: {wait_sessions: 0, timeout: 30s}}\n",
    HEAD + "load_balancer: {host: lb, api: '127.0.0.1:9999', backend: app}\n",
]


def test_top_level_and_step_keys_are_the_loaders() -> None:
    paths = object_paths(spec_schema())
    assert set(paths[""]) == set(load.TOP_KEYS)
    assert set(paths["steps[]"]) == set(load.STEP_KEYS)
    assert set(paths["preflight[]"]) == set(load.ROLLBACK_STEP_KEYS)
    assert set(paths["rollback[]"]) == set(load.ROLLBACK_STEP_KEYS)
    assert set(paths["rollback.steps[]"]) == set(load.ROLLBACK_STEP_KEYS)
    gate = spec_schema()["properties"]["between_batches"]["anyOf"][2]["properties"]
    assert set(gate["gate"]["enum"]) == set(load.GATE_KINDS)
    assert set(gate["on_timeout"]["enum"]) == set(load.ON_TIMEOUT)


def test_every_mapping_the_loader_reads_has_the_schemas_keys(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    loader = recorded_mappings(MAXIMAL, monkeypatch)
    schema = {path: set(keys) for path, keys in object_paths(spec_schema()).items()}
    assert {"", "health", "between_batches", "lease", "rollback", "steps[]"} <= set(loader)
    for path, keys in loader.items():
        assert schema.get(path) == keys, f"{path or 'top level'}: loader {sorted(keys)}"
    # and every mapping the schema describes is one the loader reads
    assert set(schema) == set(loader)


# -- files and fixtures validate -------------------------------------------------------


def _test_spec_constants() -> Iterator[tuple[str, str]]:
    """Every module-level string in tests/ that the loader accepts as a spec."""
    for path in sorted(
        [*(ROOT / "tests").glob("test_*.py"), *(ROOT / "tests/fixtures").glob("*.py")]
    ):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if not isinstance(node, ast.Assign) or not isinstance(node.value, ast.Constant):
                continue
            value = node.value.value
            if isinstance(value, str) and "service:" in value and "steps:" in value:
                name = ast.unparse(node.targets[0])
                yield f"{path.name}:{name}", value


FIXTURES = list(_test_spec_constants())


def test_the_corpus_of_test_specs_is_not_empty() -> None:
    assert len(FIXTURES) >= 10


@pytest.mark.parametrize("where,text", FIXTURES, ids=[w for w, _ in FIXTURES])
def test_the_tests_spec_fixtures_validate_when_the_loader_accepts_them(
    where: str, text: str
) -> None:
    if loader_field(text) is not None:
        pytest.skip("a deliberately bad spec (the loader refuses it)")
    assert schema_fields(instance(text)) == set(), where


@pytest.mark.parametrize("path", sorted((ROOT / "examples").glob("rollout*.yaml")), ids=str)
def test_example_specs_validate(path: Path) -> None:
    jsonschema.validate(instance(path.read_text()), spec_schema())


@pytest.mark.parametrize("prometheus", [None, "http://127.0.0.1:9090"], ids=["ssh", "prom"])
def test_the_specs_drills_write_validate(prometheus: str | None) -> None:
    """The spec `demo`/`drill` write for each built-in scenario: loader and schema."""
    from console.simfleet.layout import rollout_yaml
    from console.simfleet.scenario import builtin_names, load_scenario

    for name in builtin_names():
        text = rollout_yaml(load_scenario(name), 24, 1.0, name, prometheus_url=prometheus)
        assert loader_field(text) is None, name
        assert schema_fields(instance(text)) == set(), name


@pytest.mark.parametrize("name", ["inventory.yaml", "inventory_ansible.yaml"])
def test_example_yaml_inventories_validate(name: str) -> None:
    jsonschema.validate(instance((ROOT / "examples" / name).read_text()), SCHEMAS["inventory"]())


@pytest.mark.parametrize(
    "text,valid",
    [
        ("hosts: {web-01: {address: 10.0.0.1, port: 22}}", True),
        ("all: {children: {web: {hosts: {web-01: {http_port: 80}}}}}", True),
        ("hosts: {web-01: {adress: 10.0.0.1}}", False),  # a typo'd native host key
        ("defaults: {usr: deploy}", False),
        ("all: {childs: {web: {}}}", False),  # a typo'd Ansible group key
        ("plugin: aws_ec2", False),  # a dynamic inventory is refused by both
        ("hosts: {web-01: {port: 70000}}", False),
    ],
)
def test_inventory_schema_agrees_with_the_loader(tmp_path: Path, text: str, valid: bool) -> None:
    from inventory.loader import load_inventory

    path = tmp_path / "inventory.yaml"
    path.write_text(text + "\n")
    try:
        load_inventory(str(path))
        loaded = True
    except InputError:
        loaded = False
    errors = list(jsonschema.Draft7Validator(SCHEMAS["inventory"]()).iter_errors(instance(text)))
    assert (loaded, not errors) == (valid, valid), errors


@pytest.mark.parametrize(
    "path", sorted((ROOT / "console/simfleet/scenarios").glob("*.yaml")), ids=lambda p: p.name
)
def test_scenarios_validate(path: Path) -> None:
    jsonschema.validate(instance(path.read_text()), SCHEMAS["scenario"]())


def test_every_schema_is_valid_draft7() -> None:
    for make in SCHEMAS.values():
        jsonschema.Draft7Validator.check_schema(make())


# -- the corpus: both agree ------------------------------------------------------------

VALID = [
    "version2: ~".replace("version2: ~", ""),  # HEAD alone
    "batches: [1, 10%, 100%]",
    "batches: 25%",
    "batches: 3",
    "max_failures: 5%",
    "between_batches: 2m",
    "between_batches: 90",
    "between_batches: manual",
    "between_batches: {gate: bake, bake: 1h30m}",
    "health: curl -fs localhost",
    "health: {run: x, every: 500ms, timeout: 1s}",
    "vitals: false",
    "logs: false",
    "metrics: false",
    "targets: [web, api]",
    "error_rate: {max: 0.02, max_vs_baseline: 2}\nlogs: {run: t, error_pattern: E}",
    "vars: {port: 8080, debug: true, name: x}",
    "secrets: [TOKEN]",
    "order: shuffle\nseed: 3",
    "environment: 2",
]

# (extra lines, the field both must name)
INVALID = [
    ("helth: {run: x}", "helth"),
    ("health: {run: x, evrey: 2s}", "health.evrey"),
    ("rollback: {stepz: [x]}", "rollback.stepz"),
    ("preflight:\n  - {name: a, rn: x}", "preflight[0].rn"),
    ("between_batches: {gate: manual, timout: 1m}", "between_batches.timout"),
    ("error_rate: {windw: 1m}", "error_rate.windw"),
    ("max_parallel: many", "max_parallel"),
    ("max_parallel: 0", "max_parallel"),
    ("max_parallel: 2.5", "max_parallel"),
    ("batches: [1, ten]", "batches[1]"),
    ("batches: []", "batches"),
    ("max_failures: -1", "max_failures"),
    ("on_failure: explode", "on_failure"),
    ("order: random", "order"),
    ("health: {run: x, every: 2 minutes}", "health.every"),
    ("health: {run: x, every: -2s}", "health.every"),
    ("health: {every: 2s}", "health.run"),
    ("health: [curl]", "health"),
    ("metrics: {run: c, requests: r}", "metrics.errors"),
    ("vars: {'a-b': 1}", "vars.a-b"),
    ("secrets: token", "secrets"),
    ("lease: {path: /x, stale: 1m}", "lease.stale"),
    ("become_method: su", "become_method"),
    ("error_rate: {max: 2}", "error_rate.max"),
    ("targets: {web: 1}", "targets"),
]


@pytest.mark.parametrize("extra", VALID)
def test_valid_specs_pass_both(extra: str) -> None:
    text = HEAD + extra + "\n"
    assert loader_field(text) is None
    assert schema_fields(instance(text)) == set()


@pytest.mark.parametrize("extra,field", INVALID, ids=[f for _, f in INVALID])
def test_invalid_specs_fail_both_naming_the_same_field(extra: str, field: str) -> None:
    text = HEAD + extra + "\n"
    assert loader_field(text) == field
    assert field in schema_fields(instance(text))


def test_missing_required_keys_named_by_both() -> None:
    text = "service: api\nversion: '1'\n"
    assert loader_field(text) == "steps"
    assert "steps" in schema_fields(instance(text))


@pytest.mark.parametrize(
    "extra,line,field,fragment",
    [c for c in CASES if "unknown key" in c[3] or "did you mean" in c[3]],
    ids=lambda v: v if isinstance(v, str) and "." in v else None,
)
def test_every_typo_case_of_the_loader_is_flagged_by_the_schema(
    extra: str, line: int, field: str, fragment: str
) -> None:
    assert field in schema_fields(instance(HEAD + extra + "\n"))


def test_loader_only_rules_are_listed_and_real() -> None:
    """What the schema cannot say is written down; one example of each kind is
    accepted by the schema and refused by the loader."""
    assert len(LOADER_ONLY) >= 5
    for extra in ("seed: 3", "on_failure: rollback", "logs: {run: t, error_pattern: '('}"):
        text = HEAD + extra + "\n"
        assert schema_fields(instance(text)) == set()
        assert loader_field(text) is not None


def test_check_jsonschema_style_run_flags_a_typo(tmp_path: Path) -> None:
    """The user's view: the printed schema, saved, flags a typo'd key in a spec file
    (python -m jsonschema is the CLI the jsonschema package ships)."""
    schema = tmp_path / "spec.schema.json"
    out = subprocess.run(
        [sys.executable, "-m", "console", "schema", "spec"], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    schema.write_text(out.stdout)
    doc = tmp_path / "spec.json"
    doc.write_text(json.dumps(instance(HEAD + "helth: {run: x}\n")))
    errors = list(
        jsonschema.Draft7Validator(json.loads(schema.read_text())).iter_errors(
            json.loads(doc.read_text())
        )
    )
    assert errors and "'helth' was unexpected" in errors[0].message
