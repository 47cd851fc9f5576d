"""``rolldeck drill`` blue-green end to end, headless: a real fleet child with a real
HAProxy in front of its hosts' HTTP servers and a load generator sending requests
through it, the real engine reaching HAProxy's admin socket through lb-01 over SSH.

A bad release is switched back (exit 4): blue live and green idle as HAProxy reports
at the end, and the new version stops answering requests once the switch back is
done. A good release leaves blue idle on the old version and green live on the new.
A weighted canary through the same fleet (``load_balancer: true``) is rolled back with
its weights restored.
What HAProxy held and what the requests got back are the fleet's own record
(``traffic.json``, written as the fleet stops, read from the kept fleet directory).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from console.core import events as ev
from console.core.errors import EXIT_OK, EXIT_ROLLED_BACK
from console.simfleet.load import REQUEST_TIMEOUT
from console.store.journal import read_journal
from tests.fixtures.haproxy import require_haproxy

OLD, NEW = "2.4.0", "2.4.1"
BLUE, GREEN = ["web-01", "api-01"], ["worker-01", "web-02"]

pytestmark = pytest.mark.timeout(240)

GOOD = (
    (Path(__file__).resolve().parents[1] / "console/simfleet/scenarios/blue-green-bad.yaml")
    .read_text()
    .replace("new: {error_rate: 15%", "new: {error_rate: 0.5%")
)


CANARY = """
name: canary-weights-bad
description: A weighted canary through HAProxy; the new version fails 15% of requests.
load_balancer: true
request_rate: 40
versions:
  default: {error_rate: 0.5%, latency: 40ms}
  new: {error_rate: 15%, latency: 60ms}
rollout:
  strategy: canary
  traffic: [25%, 50%, 100%]
  batches: [1, 100%]
  on_failure: rollback
  between_batches: 60s
"""


@dataclass
class Drill:
    code: int
    events: list[ev.Event]
    card: ev.DrillScorecard
    lb: dict[str, Any]  # traffic.json: HAProxy's servers at the end, the requests' answers
    stderr: str


def prepare(tmp: Path) -> tuple[Path, Path]:
    """The drill's TMPDIR (where its fleet directory goes) and state directory."""
    (tmp / "tmp").mkdir(parents=True)
    return tmp / "tmp", tmp / "state"


def result(code: int, err: str, state: Path) -> Drill:
    """The journal, the scorecard and the fleet's traffic.json; HAProxy is gone."""
    (journal,) = state.glob("*.jsonl")
    events = read_journal(journal)
    card = events[-1]
    assert isinstance(card, ev.DrillScorecard), err
    kept = re.search(r"fleet files kept in (\S+)", err)
    assert kept, err
    fleet_dir = Path(kept.group(1))
    lb = json.loads((fleet_dir / "traffic.json").read_text())
    fleet = json.loads((fleet_dir / "fleet.json").read_text())
    pid = fleet["balancer"]["haproxy_pid"]
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    return Drill(code, events, card, lb, err)


async def drill(tmp: Path, scenario: str) -> Drill:
    scratch, state = prepare(tmp)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "console", "drill", scenario, "--headless", "--policy", "auto",
        "--hosts", "4", "--time-scale", "0.05", "--state-dir", str(state), "--keep-fleet-dir",
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "TMPDIR": str(scratch)},
    )  # fmt: skip
    _, err_bytes = await asyncio.wait_for(proc.communicate(), 180)
    err = err_bytes.decode()
    assert "Traceback" not in err, err
    assert proc.returncode is not None
    return result(proc.returncode, err, state)


def admin(d: Drill) -> dict[str, str]:
    return {name: s["admin"] for name, s in d.lb["servers"].items()}


def shifts(d: Drill, move: str) -> list[ev.TrafficShifted]:
    return [e for e in d.events if isinstance(e, ev.TrafficShifted) and e.move == move]


async def test_blue_green_bad_is_switched_back_good_leaves_blue_idle_and_a_canary_by_weight(
    tmp_path: Path,
) -> None:
    """Three drills at once (each mostly waits on timers)."""
    require_haproxy()
    good_path, canary_path = tmp_path / "blue-green-good.yaml", tmp_path / "canary.yaml"
    good_path.write_text(GOOD)
    canary_path.write_text(CANARY)
    bad, good, canary = await asyncio.gather(
        drill(tmp_path / "bad", "blue-green-bad"),
        drill(tmp_path / "good", str(good_path)),
        drill(tmp_path / "canary", str(canary_path)),
    )

    # The bad release: green took the traffic, the alert fired, the switch back put blue
    # live again; green is left idle on the new version (no redeploy).
    card = bad.card
    assert bad.code == EXIT_ROLLED_BACK and card.outcome == ev.Outcome.ROLLED_BACK, bad.stderr
    assert admin(bad) == dict.fromkeys(BLUE, "ready") | dict.fromkeys(GREEN, "drain")
    assert card.final_versions == dict.fromkeys(BLUE, OLD) | dict.fromkeys(GREEN, NEW)
    assert card.rollback == "completed" and card.first_alert.startswith("error_rate")
    assert card.blast_radius == tuple(sorted(GREEN))
    (switch,) = [e for e in shifts(bad, "switch") if e.phase == "done"]
    (back,) = [e for e in shifts(bad, "switch_back") if e.phase == "done"]
    alert = next(e for e in bad.events if isinstance(e, ev.Alert) and e.level == "critical")
    assert switch.ts <= alert.ts <= back.ts
    traffic = bad.lb["traffic"]
    assert traffic["answers"][NEW].get("500", 0) > 0  # green erred once it had traffic
    assert traffic["first"][NEW] >= switch.ts - 1.0  # ... and not before (clock rounding)
    # The new version answered nothing after the switch back but what was in flight.
    assert traffic["last"][NEW] <= back.ts + REQUEST_TIMEOUT
    assert "HAProxy backend app: blue 2 hosts (web-01, api-01) ready" in bad.stderr

    # The good release: green live on the new version, blue idle on the old one.
    assert good.code == EXIT_OK, good.stderr
    assert admin(good) == dict.fromkeys(BLUE, "drain") | dict.fromkeys(GREEN, "ready")
    assert good.card.final_versions == dict.fromkeys(BLUE, OLD) | dict.fromkeys(GREEN, NEW)
    assert good.card.alerts == 0 and not shifts(good, "switch_back")
    assert good.lb["traffic"]["answers"][NEW].get("200", 0) > 0

    # The weighted canary: web-01 at weight 0 until its first share, alerted on while it
    # had that share of the traffic, the weights restored, rolled back to the old version.
    card = canary.card
    assert canary.code == EXIT_ROLLED_BACK and card.blast_radius == ("web-01",), canary.stderr
    (first,) = [e for e in shifts(canary, "weights") if e.phase == "start" and e.step == 0]
    assert card.fault_at == first.ts and card.first_alert.startswith("error_rate")
    assert {n: (s["admin"], s["weight"]) for n, s in canary.lb["servers"].items()} == {
        n: ("ready", 1) for n in BLUE + GREEN
    }
    assert card.final_versions == dict.fromkeys(BLUE + GREEN, OLD)
    assert canary.lb["traffic"]["answers"][NEW].get("500", 0) > 0


def test_without_haproxy_the_drill_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from console.core.errors import EXIT_FAILED
    from console.subcommands.demo import RehearsalOptions, rehearse

    monkeypatch.setattr("console.simfleet.haproxy.HAPROXY", "/nonexistent/haproxy")
    monkeypatch.setenv("PATH", "/nonexistent")
    err = io.StringIO()
    opts = RehearsalOptions(scenario="blue-green-bad", headless=True, kind="drill")
    assert rehearse(opts, out=io.StringIO(), err=err).exit_code == EXIT_FAILED
    assert "runs through HAProxy: HAProxy not installed" in err.getvalue()
    assert "apt-get install haproxy" in err.getvalue()
