"""``environment:`` + ``requires:``: promotion from staging, checked by ``check`` and
by ``run`` against the state directory's history; ``--override-requires --reason``
goes on and is journaled."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from console.cli import main
from console.core import events as ev
from console.core.errors import EXIT_BAD_INPUT, EXIT_FAILED, InputError
from console.spec import parse_spec
from console.store.journal import read_journal
from tests.test_history_dora import journal

SPEC = """\
service: shop
version: "2.0"
inventory: inventory.yaml
environment: prod
requires:
  - {environment: staging, outcome: succeeded, same_version: true, within: 7d}
steps:
  - {name: install, run: "true"}
"""


@pytest.fixture
def where(tmp_path: Path) -> Path:
    (tmp_path / "rollout.yaml").write_text(SPEC)
    (tmp_path / "inventory.yaml").write_text(
        "all:\n  hosts:\n    here: {ansible_connection: local}\n"
    )
    (tmp_path / "state").mkdir(mode=0o700)
    return tmp_path


def cli(where: Path, *argv: str) -> int:
    return main([*argv, str(where / "rollout.yaml"), "--state-dir", str(where / "state")])


def test_requires_is_parsed_with_its_fields() -> None:
    (rule,) = parse_spec(SPEC, "s.yaml").requires
    assert (rule.environment, rule.outcome, rule.same_version, rule.within) == (
        "staging", "succeeded", True, 7 * 86400,
    )  # fmt: skip
    with pytest.raises(InputError) as bad:
        parse_spec(SPEC.replace("outcome: succeeded", "outcome: great"), "s.yaml")
    assert bad.value.field == "requires[0].outcome" and bad.value.line == 6


def test_check_and_run_refuse_without_the_staging_run(
    where: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = where / "state"
    now = time.time()
    journal(state, "st1", "shop", now - 3600, "succeeded", version="1.9", environment="staging")
    journal(
        state, "st2", "shop", now - 8 * 86400, "succeeded", version="2.0", environment="staging"
    )
    assert cli(where, "check") == EXIT_FAILED
    out = capsys.readouterr().out
    assert "requires    NOT MET: requires a succeeded staging rollout of shop 2.0 within 7d" in out
    assert "the last staging rollout is st1: shop 1.9 succeeded" in out
    assert cli(where, "run", "--headless") == EXIT_FAILED
    err = capsys.readouterr().err
    assert "refused: requires a succeeded staging rollout of shop 2.0" in err
    assert "--override-requires" in err
    assert sorted(p.name for p in state.iterdir()) == ["st1.jsonl", "st2.jsonl"]  # nothing ran


def test_met_by_a_recent_staging_run_and_overridden_with_a_reason(
    where: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    state = where / "state"
    assert cli(where, "run", "--headless", "--override-requires") == EXIT_BAD_INPUT
    assert "--override-requires needs --reason" in capsys.readouterr().err
    assert cli(where, "run", "--headless", "--override-requires", "--reason", "hotfix") == 0
    (prod,) = state.glob("shop-*.jsonl")
    notes = [e.message for e in read_journal(prod) if isinstance(e, ev.Notice)]
    assert any("requires OVERRIDDEN by" in n and "hotfix" in n for n in notes), notes
    journal(state, "st3", "shop", time.time() - 3600, "succeeded", version="2.0",
            environment="staging")  # fmt: skip
    capsys.readouterr()
    assert cli(where, "check") == 0
    assert "requires    met: a succeeded staging rollout of shop 2.0 within 7d: st3" in (
        capsys.readouterr().out
    )
