"""The one YAML walker (console.core.yamlnodes) and the three loaders standing on it.

The hostile documents run in a child process with a memory cap, so a loader that
expands an alias bomb or recurses without end fails the test instead of taking the
machine down; the child's timeout is generous, never a timing assertion.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from console.core import yamlnodes
from console.core.errors import InputError
from console.core.yamlnodes import MAX_DEPTH, Doc, compose
from console.simfleet.scenario import parse_scenario
from console.spec import parse_spec
from inventory import load_inventory

ROOT = Path(__file__).resolve().parent.parent
DEEP = 5000


def _list_bomb() -> str:
    """A billion laughs in flow style: ten aliases per level, nine levels."""
    items = ["&l0 [x, x, x, x, x, x, x, x, x, x]"]
    items += [f"&l{i} [" + ", ".join([f"*l{i - 1}"] * 10) + "]" for i in range(1, 10)]
    return "[" + ", ".join(items) + "]"


def _merge_bomb(keys: str) -> str:
    """The same through merge keys, which every walker expands itself."""
    items = [f"&m0 {{{keys}}}"]
    items += [f"&m{i} {{<<: [" + ", ".join([f"*m{i - 1}"] * 10) + "]}" for i in range(1, 10)]
    return "[" + ", ".join(items) + "]"


def _deep_flow() -> str:
    return "[" * DEEP + "]" * DEEP


def _deep_block(indent: int, depth: int = 2000) -> str:
    """Deeper than both limits (ours and libyaml's 1,000), and at 2 MB well inside the
    10 MiB a scenario may have (5,000 levels of indentation would be 12 MiB)."""
    lines = [" " * (indent + i) + f"k{i}:" for i in range(depth)]
    return "\n" + "\n".join(lines) + " 1"


SPEC_HEAD = "service: a\nversion: '1'\nsteps: [x]\n"
# (loader, file name, text, the line the error names)
HOSTILE = [
    ("scenario", "bomb.yaml", f"rollout: {{batches: {_list_bomb()}}}\n", 1),
    (
        "scenario",
        "merge-bomb.yaml",
        f"versions: {{new: {{<<: {_merge_bomb('latency: 1s, warmup: 2s')}}}}}\n",
        1,
    ),
    ("scenario", "deep.yaml", f"name: x\nrollout: {{batches: {_deep_flow()}}}\n", 2),
    ("scenario", "deep-block.yaml", "name: x\nrollout:" + _deep_block(2) + "\n", None),
    ("spec", "bomb.yaml", SPEC_HEAD + f"targets: {_list_bomb()}\n", 4),
    (
        "spec",
        "merge-bomb.yaml",
        SPEC_HEAD + f"health: {{run: x, <<: {_merge_bomb('every: 1s, timeout: 2s')}}}\n",
        4,
    ),
    ("spec", "deep.yaml", SPEC_HEAD + f"vars: {{a: {_deep_flow()}}}\n", 4),
    ("inventory", "bomb.yaml", f"all:\n  vars:\n    x: {_list_bomb()}\n  hosts: {{a: }}\n", 3),
    (
        "inventory",
        "merge-bomb.yaml",
        f"all:\n  hosts:\n    a: {{<<: {_merge_bomb('k: 1, j: 2')}}}\n",
        3,
    ),
    ("inventory", "deep.yaml", f"all:\n  hosts:\n    a:\n      x: {_deep_flow()}\n", 4),
    ("inventory", "deep-block.yaml", "all:\n  vars:\n    x:" + _deep_block(6) + "\n", None),
]

CHILD = """
import json, resource, sys
resource.setrlimit(resource.RLIMIT_AS, (1 << 31, 1 << 31))
from console.core.errors import InputError
kind, path = sys.argv[1:]
if kind == "scenario":
    from console.simfleet.scenario import load_scenario as load
elif kind == "spec":
    from console.spec import load_spec as load
else:
    from inventory import load_inventory as load
try:
    load(path)
except InputError as exc:
    print(json.dumps({"file": exc.file, "line": exc.line, "message": exc.message}))
else:
    print(json.dumps({"loaded": True}))
"""


@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    ("kind", "name", "text", "line"),
    HOSTILE,
    ids=[f"{kind}-{name.removesuffix('.yaml')}" for kind, name, _, _ in HOSTILE],
)
def test_hostile_documents_are_input_errors(
    tmp_path: Path, kind: str, name: str, text: str, line: int | None
) -> None:
    path = tmp_path / name
    path.write_text(text)
    result = subprocess.run(
        [sys.executable, "-c", CHILD, kind, str(path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    error = json.loads(result.stdout.strip().splitlines()[-1])
    assert error.get("file") == str(path), error
    assert error["line"] is not None, error
    if line is not None:
        assert error["line"] == line, error
    assert "alias expansion" in error["message"] or "nested too deeply" in error["message"]


# -- the walker itself -------------------------------------------------------------------


def fails(text: str) -> InputError:
    with pytest.raises(InputError) as info:
        doc = Doc(text, "f.yaml")
        assert doc.root is not None
        doc.plain(doc.root, "")
    assert info.value.file == "f.yaml"
    return info.value


def test_depth_limit_is_exact() -> None:
    ok = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    assert compose(ok, "f.yaml") is not None
    err = fails("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1))
    assert err.line == 1
    assert err.message == f"YAML nested too deeply (at most {MAX_DEPTH} levels)"


def test_depth_counts_levels_reached_through_aliases() -> None:
    """Each anchor nests the previous one once: shallow as written, deep as walked."""
    lines = ["- &a0 [x]"] + [f"- &a{i} [*a{i - 1}]" for i in range(1, MAX_DEPTH + 5)]
    err = fails("\n".join(lines) + "\n")
    assert "nested too deeply" in err.message
    assert err.line is not None


def test_pure_python_loader_stops_at_the_limit_too(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without libyaml the composer recurses per level: it must stop with a line."""
    monkeypatch.setattr(yamlnodes, "_LOADER", yamlnodes._GuardedLoader)
    err = fails("a:\n  b: " + "[" * DEEP + "]" * DEEP + "\n")
    assert (err.line, "nested too deeply" in err.message) == (2, True)
    assert compose("a: [[1]]\n", "f.yaml") is not None


def test_alias_bomb_names_the_innermost_culprit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(yamlnodes, "MAX_NODES", 500)
    text = "a: &a [x, x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\n"
    text += "c: [*b, *b, *b, *b, *b, *b, *b, *b]\n"
    err = fails(text)
    assert (err.line, "alias expansion" in err.message) == (3, True)


def test_reuse_in_proportion_to_the_file_is_fine(monkeypatch: pytest.MonkeyPatch) -> None:
    """A large file reusing one anchor per entry is not a bomb (10x what is written)."""
    monkeypatch.setattr(yamlnodes, "MAX_NODES", 100)
    text = "base: &b {user: u, port: 22}\nhosts:\n"
    text += "".join(f"  h{i}: {{<<: *b, n: {i}}}\n" for i in range(200))
    doc = Doc(text, "f.yaml")
    assert doc.root is not None
    data = doc.plain(doc.root, "")
    assert data["hosts"]["h7"] == {"user": "u", "port": 22, "n": 7}


def test_duplicate_keys_name_both_lines() -> None:
    err = fails("a: 1\nb:\n  c: 1\n  c: 2\n")
    assert (err.line, err.field, err.message) == (4, "b.c", "duplicate key 'c' (first on line 3)")


def test_merge_keys_written_keys_win_then_earlier_sources() -> None:
    doc = Doc("x: &x {a: 1, b: 1}\ny: &y {b: 2, c: 2}\nz: {<<: [*x, *y], a: 0}\n", "f.yaml")
    assert doc.root is not None
    top = {e.key: e.value for e in doc.mapping(doc.root, "")}
    assert doc.plain(top["z"], "z") == {"a": 0, "b": 1, "c": 2}
    entries = doc.mapping(top["z"], "z", allowed=("a", "b", "c"), required=("c",))
    assert [e.key for e in entries] == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("text", "line", "field", "fragment"),
    [
        ("z: &z {run: 1, <<: *z}\n", 1, "z", "refers to a mapping containing it"),
        ("z: {<<: 5}\n", 1, "z", "a merge (<<) takes mappings, got a value ('5')"),
        ("z: {run: 1, rn: 2}\n", 1, "z.rn", "unknown key 'rn' (did you mean 'run'?)"),
        ("z: {<<: {rn: 2}}\n", 1, "z.rn", "unknown key 'rn' (did you mean 'run'?)"),
        ("z: {}\n", 1, "z.run", "missing required key 'run'"),
        ("z: [1]\n", 1, "z", "expected a mapping, got a list"),
        ("z: {[1]: 2}\n", 1, "z", "a key must be a plain name, got a list"),
        ("z: {'': 2}\n", 1, "z", "a key must be a plain name"),
    ],
)
def test_mapping_errors(text: str, line: int, field: str, fragment: str) -> None:
    doc = Doc(text, "f.yaml")
    assert doc.root is not None
    (entry,) = doc.mapping(doc.root, "")
    with pytest.raises(InputError) as info:
        doc.mapping(entry.value, "z", allowed=("run",), required=("run",))
    assert (info.value.line, info.value.field) == (line, field), str(info.value)
    assert fragment in info.value.message, str(info.value)


def test_recursive_alias_in_a_value() -> None:
    err = fails("a: 1\nz: &z\n  - [2, {b: *z}]\n")
    assert (err.line, err.field, err.message) == (2, "z", "recursive alias in value")


def test_merge_keys_can_be_refused() -> None:
    doc = Doc("z: {<<: {a: 1}}\n", "f.yaml")
    assert doc.root is not None
    (entry,) = doc.mapping(doc.root, "")
    with pytest.raises(InputError, match=r"merge keys \(<<\) are not supported here"):
        doc.mapping(entry.value, "z", merge=False)


def test_plain_values_share_aliases_and_keep_scalar_types() -> None:
    doc = Doc("a: &a [1, 2.5, true, null, '3', 2024-01-02]\nb: *a\n", "f.yaml")
    assert doc.root is not None
    data = doc.plain(doc.root, "")
    assert data["a"] is data["b"]
    assert data["a"][:5] == [1, 2.5, True, None, "3"]


def test_scalar_reads_the_resolved_tag() -> None:
    doc = Doc("[1, x, 2024-01-02, ~, !!binary aGk=]\n", "f.yaml")
    assert doc.root is not None
    items = doc.sequence(doc.root, "l")
    assert [doc.scalar(n, "l") for n in items[:4]] == [1, "x", "2024-01-02", None]
    with pytest.raises(InputError, match="unsupported YAML tag"):
        doc.scalar(items[4], "l")


def test_syntax_errors_name_the_line() -> None:
    with pytest.raises(InputError) as info:
        compose("a: 1\nb: [2\n", "f.yaml")
    assert (info.value.file, info.value.line) == ("f.yaml", 3)
    assert info.value.message.startswith("YAML syntax error")


# -- what the loaders gained from sharing it ------------------------------------------------


def test_scenario_duplicate_version_keys_are_errors() -> None:
    """The scenario walked its versions mapping by hand: the second `new` won silently."""
    with pytest.raises(InputError) as info:
        parse_scenario("versions:\n  new: {error_rate: 1%}\n  new: {error_rate: 9%}\n", "s.yaml")
    assert (info.value.line, info.value.field) == (3, "versions.new")
    assert "duplicate key" in info.value.message


def test_scenario_merge_keys() -> None:
    text = textwrap.dedent("""\
        versions:
          default: &slow {latency: 200ms, warmup: 3s}
          new: {<<: *slow, error_rate: 5%}
        """)
    sc = parse_scenario(text, "s.yaml")
    b = sc.behaviour("h", "9.9.9")
    assert (b.latency, b.warmup, b.error_rate) == (0.2, 3.0, 0.05)


def test_spec_merge_chain_longer_than_the_depth_limit() -> None:
    """A chain of merges is a chain of walks: refused by depth, not by a RecursionError."""
    sources = ["&m0 {run: x}"] + [f"&m{i} {{<<: *m{i - 1}}}" for i in range(1, MAX_DEPTH + 5)]
    text = SPEC_HEAD + f"health: {{<<: [{', '.join(sources)}]}}\n"
    with pytest.raises(InputError) as info:
        parse_spec(text, "spec.yaml")
    assert (info.value.line, "nested too deeply" in info.value.message) == (4, True)


def test_inventory_children_that_contain_themselves(tmp_path: Path) -> None:
    path = tmp_path / "inv.yaml"
    path.write_text("all: &a\n  hosts: {h: }\n  children:\n    web: *a\n")
    with pytest.raises(InputError) as info:
        load_inventory(path)
    assert (info.value.line, info.value.field) == (4, "all.children.web")
    assert "recursive alias" in info.value.message


def test_one_walker() -> None:
    """Only the core composes YAML; the loaders walk its nodes."""
    users = []
    for package in ("console", "inventory", "screens"):
        for path in sorted((ROOT / package).rglob("*.py")):
            text = path.read_text()
            if "yaml.compose(" in text or "SafeLoader" in text or "yaml.safe_load(" in text:
                users.append(path.relative_to(ROOT).as_posix())
    assert users == ["console/core/yamlnodes.py"]
    assert not (ROOT / "console" / "simfleet" / "yamlnodes.py").exists()
