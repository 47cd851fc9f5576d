"""The post-deploy health watch at its own pace (``health.watch_every``, issue 13).

Gating keeps ``health.every``; the watch of healthy hosts defaults to ``max(every,
1s)`` in a spec file. The monitor tests run the real HostMonitor on the in-memory
connection of tests/test_monitor_host.py and compare monitors side by side (never a
fixed sleep): while one watching at the gating pace probes 30 times, one watching
every hour has probed at most once.
"""

from __future__ import annotations

import pytest

from console.core.errors import InputError
from console.signals.polls import planned_polls
from console.spec import HealthSpec, parse_spec
from console.spec.model import WATCH_EVERY_FLOOR
from tests.test_monitor_host import Harness, make_spec, until

BASE = 'service: s\nversion: "2"\nsteps: ["true"]\n'


def _health(text: str) -> HealthSpec:
    spec = parse_spec(BASE + text, "rollout.yaml")
    assert spec.health is not None
    return spec.health


def _pace(text: str) -> dict[str, float | None]:
    return {p.signal: p.every for p in planned_polls(parse_spec(BASE + text, "r.yaml"))}


def test_watch_defaults_to_every_but_not_faster_than_a_second() -> None:
    assert WATCH_EVERY_FLOOR == 1.0
    fast = _health("health: {run: ok, every: 200ms, healthy_after: 1}\n")
    assert (fast.every, fast.watch_interval) == (0.2, 1.0)
    slow = _health("health: {run: ok, every: 3s}\n")
    assert (slow.every, slow.watch_interval) == (3.0, 3.0)
    assert _health("health: curl -f localhost\n").watch_interval == 2.0  # short form
    # `rolldeck check` lists what runs: gating at `every`, the watch at its own pace.
    pace = _pace("health: {run: ok, every: 200ms, healthy_after: 1}\nvitals: false\n")
    assert pace == {"health gating": 0.2, "health watch": 1.0}


def test_watch_every_given_wins_either_way() -> None:
    faster = _health("health: {run: ok, every: 2s, watch_every: 500ms}\n")
    assert (faster.every, faster.watch_interval) == (2.0, 0.5)
    slower = _health("health: {run: ok, every: 200ms, watch_every: 30s, healthy_after: 1}\n")
    assert (slower.every, slower.watch_interval) == (0.2, 30.0)
    # Built in code (no spec file): None means the gating pace, as before.
    assert HealthSpec(run="ok", every=0.05).watch_interval == 0.05


@pytest.mark.parametrize(
    ("value", "message"),
    [("0", "longer than 0"), ("soon", "is not a duration"), ("-1", "must not be negative")],
)
def test_bad_watch_every_names_file_line_and_field(value: str, message: str) -> None:
    text = BASE + f"health:\n  run: ok\n  watch_every: {value}\n"
    with pytest.raises(InputError) as caught:
        parse_spec(text, "rollout.yaml")
    said = str(caught.value)
    assert "rollout.yaml" in said and ":6:" in said and "health.watch_every" in said, said
    assert message in said, said


async def test_the_monitor_watches_at_watch_every_not_at_the_gating_pace() -> None:
    def watched(watch_every: float | None) -> Harness:
        health = HealthSpec(run="svc health", every=0.005, healthy_after=1, watch_every=watch_every)
        h = Harness(make_spec(health=health), vitals=False)
        h.conn.handlers["svc health"] = lambda: (0, ["ok"])
        return h

    gating_pace, hourly = watched(None), watched(3600.0)
    async with gating_pace, hourly:
        gating_pace.monitor.watch_health(True)
        hourly.monitor.watch_health(True)
        await until(lambda: gating_pace.conn.count("svc health") >= 30)
        # The hourly watch's first probe comes at a random offset within the hour.
        assert hourly.conn.count("svc health") <= 1
        assert hourly.monitor.watching
