"""Fuzz the spec loader: whatever the input, the only error is InputError."""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from console.core.errors import InputError
from console.spec import TOP_KEYS, RolloutSpec, load_spec, parse_spec
from tests.test_spec_load import FULL

FUZZ = settings(max_examples=70, deadline=None, suppress_health_check=[HealthCheck.too_slow])
LINES = FULL.splitlines(keepends=True)
TOKENS = [
    "{",
    "}",
    "[",
    "]",
    ":",
    "- ",
    "  ",
    "&a ",
    "*a",
    "<<: *a",
    "!!binary ",
    "!x ",
    "%",
    "-1",
    "0",
    ".inf",
    "~",
    "'",
    '"',
    "\t",
    "\n",
    "{previous_version}",
    "{vars.x}",
    "}}",
    "99999999999999999999d",
    "1e400",
    "?",
    "#",
    "|",
    ">",
    "\x00",
    "\ufeff",
]


def outcome(text: str) -> RolloutSpec | InputError:
    try:
        return parse_spec(text, "fuzz.yaml")
    except InputError as exc:
        assert exc.file == "fuzz.yaml"
        assert exc.message
        assert exc.line is None or exc.line >= 1
        return exc


@FUZZ
@given(st.binary(max_size=400))
def test_random_bytes(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "spec.yaml"
        path.write_bytes(data)
        try:
            load_spec(path)
        except InputError as exc:
            assert exc.file == str(path)


@st.composite
def mutated(draw: st.DrawFn) -> str:
    lines = list(LINES)
    for _ in range(draw(st.integers(1, 4))):
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(["delete", "duplicate", "insert", "truncate", "swap", "dedent"]))
        if op == "delete" and len(lines) > 1:
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "insert":
            pos = draw(st.integers(0, len(lines[i])))
            token = draw(st.sampled_from(TOKENS) | st.text(max_size=5))
            lines[i] = lines[i][:pos] + token + lines[i][pos:]
        elif op == "truncate":
            lines[i] = lines[i][: draw(st.integers(0, len(lines[i])))] + "\n"
        elif op == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        else:
            lines[i] = lines[i].lstrip()
    return "".join(lines)


@FUZZ
@given(mutated())
def test_mutated_valid_spec(text: str) -> None:
    outcome(text)


SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.floats(allow_nan=True)
    | st.text(max_size=12)
    | st.sampled_from(["10%", "2m", "manual", "{host}", "{vars.x}", "rollback", "-5%", "0"])
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(["run", "name", "every", "gate", "steps", "x"]), inner)
    ),
    max_leaves=12,
)


@FUZZ
@given(st.dictionaries(st.sampled_from(TOP_KEYS), VALUES, max_size=10))
def test_schema_shaped_documents(doc: dict[str, object]) -> None:
    base: dict[str, object] = {"service": "s", "version": "1", "steps": ["x"]}
    base.update(doc)
    outcome(yaml.safe_dump(base, allow_unicode=True))
