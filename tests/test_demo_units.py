"""The pieces of ``rolldeck demo``/``drill`` that need no fleet: input checks that
fail before anything starts, and the operator policy's spec rewrite."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import pytest

from console.core.errors import InputError
from console.simfleet.layout import rollout_yaml
from console.simfleet.scenario import load_scenario
from console.spec import load_spec
from console.subcommands.demo import (
    RehearsalOptions,
    _leave_failures_to_the_operator,
    _scenario_exists,
    rehearse,
)


def test_operator_policy_leaves_rollback_to_the_operator(tmp_path: Path) -> None:
    spec = tmp_path / "rollout.yaml"
    spec.write_text(rollout_yaml(load_scenario("bad-canary"), 6, 0.05, "test"), encoding="utf-8")
    assert load_spec(str(spec)).on_failure == "rollback"
    _leave_failures_to_the_operator(spec)
    assert load_spec(str(spec)).on_failure == "pause"
    assert "--policy operator" in spec.read_text(encoding="utf-8")


def test_scenario_exists(tmp_path: Path) -> None:
    assert _scenario_exists("bad-canary")
    assert not _scenario_exists("bad-canery")
    custom = tmp_path / "mine.yaml"
    custom.write_text("name: mine\n", encoding="utf-8")
    assert _scenario_exists(str(custom))


@pytest.mark.parametrize(
    ("opts", "field"),
    [
        (RehearsalOptions(scenario="demo", hosts=0), "--hosts"),
        (RehearsalOptions(scenario="demo", time_scale=-1.0), "--time-scale"),
        (RehearsalOptions(scenario="no-such-scenario"), "scenario"),
    ],
)
def test_bad_input_starts_nothing(
    opts: RehearsalOptions, field: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(InputError) as info:
        rehearse(opts, out=io.StringIO(), err=io.StringIO())
    assert info.value.field == field
    assert list(tmp_path.iterdir()) == []  # no fleet dir was made


def test_bad_scenario_file_names_its_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nversions:\n  new: {error_rate: 150%}\n", encoding="utf-8")
    with pytest.raises(InputError) as info:
        rehearse(RehearsalOptions(scenario=str(bad)), out=io.StringIO(), err=io.StringIO())
    assert info.value.file == str(bad) and info.value.line == 3
