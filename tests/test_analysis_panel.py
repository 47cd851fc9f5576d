"""The console's analysis panel (Pilot): each analysis metric's last judgement, new
cohort vs baseline with its bounds and verdict, above the error-rate chart."""

from __future__ import annotations

from console.core import events as ev
from screens.dashboard import DashboardScreen
from tests.test_tui_helpers import SIZE, _private_config, make_app  # noqa: F401
from tests.waiting import settled, wait_until


def sample(metric: str, verdict: str, new: float | None, **kw: object) -> ev.AnalysisSample:
    fields: dict[str, object] = {
        "metric": metric,
        "verdict": verdict,
        "new_value": new,
        "baseline_value": 0.005,
        "new_hosts": 1,
        "baseline_hosts": 23,
        "rule": "r",
        "unit": "ratio",
        "max": 0.05,
        "max_vs_baseline": 3.0,
    }
    fields.update(kw)
    return ev.AnalysisSample(**fields)  # type: ignore[arg-type]


async def test_the_panel_shows_each_metric_new_vs_baseline_with_its_bounds() -> None:
    app, _ctl, bus, _r = make_app("running")
    async with app.run_test(size=SIZE) as pilot:
        await settled(pilot, DashboardScreen)
        panel = app.screen.query_one("#rates")
        bus.publish(sample("error-ratio", "pass", 0.004))
        bus.publish(
            sample(
                "p95-latency",
                "fail",
                0.272,
                baseline_value=0.091,
                unit="seconds",
                max=None,
                max_vs_baseline=1.5,
            )
        )
        await wait_until(lambda: "p95-latency" in str(panel.render()), what="the panel")
        lines = str(panel.render()).splitlines()
        assert lines[0].startswith("✔ error-ratio")
        assert "new 0.40% (1)  base 0.50% (23)  ≤5.0% ≤3x" in lines[0]
        assert lines[1].startswith("✖ p95-latency")
        assert "new 272ms (1)  base 91ms (23)  ≤1.5x" in lines[1]
        assert any("● new" in line for line in lines[2:])  # the error-rate chart stays
        # a later judgement replaces the metric's line, in place
        bus.publish(sample("error-ratio", "no_data", None))
        await wait_until(lambda: "? error-ratio" in str(panel.render()), what="the update")
        assert "new no data (1)" in str(panel.render()).splitlines()[0]
