"""``rolldeck history --dora`` against a hand-computed fixture of journals."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from console.cli import main
from console.core.errors import InputError
from console.store.dora import parse_time

DAY, HOUR = 86400.0, 3600.0


def journal(
    state: Path,
    rid: str,
    service: str,
    finished: float,
    outcome: str,
    *,
    version: str = "1",
    environment: str = "prod",
    **head: object,
) -> None:
    """A journal as the engine writes one, cut to what history reads: header, start, end."""
    lines = [
        {"kind": "journal", "format": 1, "rollout_id": rid, "service": service, **head},
        {
            "kind": "rollout_started", "ts": finished - 600, "rollout_id": rid,
            "service": service, "version": version, "settings": {"environment": environment},
        },
        {"kind": "rollout_finished", "ts": finished, "outcome": outcome, "exit_code": 0},
    ]  # fmt: skip
    fd = os.open(state / f"{rid}.jsonl", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("".join(json.dumps(x) + "\n" for x in lines))


@pytest.fixture
def state(tmp_path: Path) -> Path:
    d = tmp_path / "state"
    d.mkdir(mode=0o700)
    now = time.time()

    def t(days: float, extra: float = 0.0) -> float:
        return now - days * DAY + extra

    journal(d, "s0", "shop", t(40), "succeeded")  # outside the 30-day window
    journal(d, "s1", "shop", t(10), "succeeded", commit="a1", commit_time=t(10, -2 * HOUR))
    journal(d, "s2", "shop", t(8), "rolled_back")
    journal(d, "s3", "shop", t(8, 3 * HOUR), "succeeded", commit_time=t(8, -1 * HOUR))
    journal(d, "s4", "shop", t(5), "failed")
    journal(d, "s5", "shop", t(5, HOUR), "aborted")
    journal(d, "s6", "shop", t(4), "succeeded", commit_time=t(4, -6 * HOUR))
    journal(d, "s7", "shop", t(2), "rolled_back")  # nothing after it: not restored
    journal(d, "s8", "shop", t(3), "paused")  # not ended: not counted
    journal(d, "a1", "api", t(1), "succeeded")
    # staging: neither a production deployment nor a production restore (s7 stays open)
    journal(d, "g1", "shop", t(6), "failed", environment="staging")
    journal(d, "g2", "shop", t(1), "succeeded", environment="staging")
    return d


def dora_json(state: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> list[dict]:
    assert main(["history", "--dora", "--json", "--state-dir", str(state), *extra]) == 0
    return json.loads(capsys.readouterr().out)


def test_dora_figures_match_the_hand_computed_fixture(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    api, shop, staging = dora_json(state, capsys)
    assert (shop["service"], shop["environment"]) == ("shop", "prod")
    assert shop["days"] == pytest.approx(30)
    assert (shop["rollouts"], shop["succeeded"], shop["failed"]) == (7, 3, 3)
    assert shop["per_day"] == pytest.approx(3 / 30)
    assert shop["change_failure_rate"] == pytest.approx(3 / 7)
    # lead times 2h, 4h, 6h
    assert shop["lead_time_median"] == pytest.approx(4 * HOUR)
    assert shop["lead_time_mean"] == pytest.approx(4 * HOUR) and shop["lead_times"] == 3
    # s2 -> s3: 3h; s4 -> s6: 1 day (the abort between is no success); s7 open
    assert shop["restore_median"] == pytest.approx((3 * HOUR + DAY) / 2)
    assert (shop["restored"], shop["not_restored"]) == (2, 1)
    assert shop["outcomes"] == {"succeeded": 3, "rolled_back": 2, "failed": 1, "aborted": 1}
    assert (api["rollouts"], api["change_failure_rate"], api["lead_time_median"]) == (1, 0, None)
    assert (staging["environment"], staging["rollouts"], staging["failed"]) == ("staging", 2, 1)
    assert staging["restore_median"] == pytest.approx(5 * DAY) and staging["not_restored"] == 0
    (only,) = dora_json(state, capsys, "--environment", "staging")
    assert only == staging
    (only,) = dora_json(state, capsys, "--service", "api", "--since", "2d")
    assert only["service"] == "api" and only["per_day"] == pytest.approx(1 / 2)
    assert main(["history", "--dora", "--state-dir", str(state)]) == 0
    table = capsys.readouterr().out
    assert "shop" in table and "43%" in table and "4.0h" in table and "13.5h" in table


def test_commit_time_and_since_are_checked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert parse_time("2026-12-01T10:00:00Z") == parse_time("1796119200")
    assert parse_time("2026-12-01T10:00:00") == 1796119200.0  # no zone: UTC
    with pytest.raises(InputError, match="not a time"):
        parse_time("yesterday")
    assert main(["history", "--environment", "prod", "--state-dir", str(tmp_path)]) == 2
    assert "--environment: goes with --dora" in capsys.readouterr().err
