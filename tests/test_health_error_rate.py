"""ErrorRateAnalyzer: window arithmetic, counter resets, minimum samples, the rules."""

from __future__ import annotations

import random

import pytest

from console.signals.health import (
    BASELINE_FLOOR_PER_MIN,
    BASELINE_FLOOR_RATIO,
    ErrorRateAnalyzer,
)
from console.spec import ErrorRateSpec


def analyzer(**kw) -> ErrorRateAnalyzer:
    has_metrics = kw.pop("has_metrics", True)
    noise = kw.pop("noise_alpha", 0.001)
    return ErrorRateAnalyzer(ErrorRateSpec(**kw), has_metrics=has_metrics, noise_alpha=noise)


def by_scope(a: ErrorRateAnalyzer, now: float) -> dict:
    return {s.scope: s for s in a.samples(now)}


def test_first_scrape_sets_the_start_and_deltas_accumulate():
    a = analyzer(window=60)
    a.set_cohort("h1", "new")
    a.observe_counters("h1", 5000, 40, now=100.0)  # history before we looked: not counted
    a.observe_counters("h1", 5100, 42, now=105.0)
    a.observe_counters("h1", 5300, 45, now=110.0)
    s = by_scope(a, 110.0)["h1"]
    assert (s.requests, s.errors) == (300, 5)
    assert s.rate == pytest.approx(5 / 300)
    assert s.unit == "ratio" and s.window == 60


def test_window_slides_with_one_second_buckets():
    a = analyzer(window=10)
    a.observe_counters("h", 0, 0, now=0.0)
    for t in range(1, 21):  # 10 requests, 1 error each second
        a.observe_counters("h", 10 * t, t, now=float(t) + 0.5)
    s = by_scope(a, 20.5)["h"]
    # Buckets of seconds 11..20 start inside the window (10.5, 20.5]: 10 of them.
    assert (s.requests, s.errors) == (100, 10)
    # Later, with nothing new, the window empties bucket by bucket.
    assert by_scope(a, 25.0)["h"].requests == 50  # seconds 16..20 remain
    assert by_scope(a, 31.0)["h"].requests == 0
    assert by_scope(a, 31.0)["h"].rate is None


def test_memory_is_bounded_by_the_window():
    a = analyzer(window=30)
    for t in range(10_000):
        a.observe_counters("h", t * 10, t, now=t / 3)
    assert len(a._hosts["h"].buckets) <= 32


def test_counter_reset_counts_from_the_new_value_never_negative():
    a = analyzer(window=60)
    a.observe_counters("h", 1000, 100, now=0.0)
    a.observe_counters("h", 1100, 101, now=5.0)  # +100 / +1
    a.observe_counters("h", 30, 3, now=10.0)  # restart: +30 / +3
    a.observe_counters("h", 80, 4, now=15.0)  # +50 / +1
    s = by_scope(a, 15.0)["h"]
    assert (s.requests, s.errors) == (180, 5)
    assert a.resets == 1
    # Only the error counter dropping (requests barely moved) is a restart too.
    a.observe_counters("h", 81, 0, now=20.0)
    s = by_scope(a, 20.0)["h"]
    assert (s.requests, s.errors) == (261, 5)
    assert a.resets == 2
    assert all(x.requests >= 0 and x.errors >= 0 for x in a.samples(20.0))


def test_cohorts_pool_hosts_and_moving_a_host_clears_its_window():
    a = analyzer(window=60)
    for h in ("a", "b", "c"):
        a.set_cohort(h, "baseline")
        a.observe_counters(h, 0, 0, now=0.0)
    a.observe_counters("a", 100, 1, now=5.0)
    a.observe_counters("b", 300, 3, now=5.0)
    a.observe_counters("c", 600, 60, now=5.0)
    base = by_scope(a, 5.0)["cohort:baseline"]
    assert (base.requests, base.errors) == (1000, 64)
    a.set_cohort("c", "new")  # deployed: its old-version counts leave with it
    s = by_scope(a, 5.0)
    assert (s["cohort:baseline"].requests, s["cohort:baseline"].errors) == (400, 4)
    assert s["cohort:new"].requests == 0 and s["cohort:new"].rate is None
    a.observe_counters("c", 700, 70, now=6.0)
    assert by_scope(a, 6.0)["cohort:new"].errors == 10
    with pytest.raises(ValueError):
        a.set_cohort("a", "old")


def feed(a: ErrorRateAnalyzer, host: str, t: float, req: float, err: float) -> None:
    """Scrape a host whose cumulative counters grew by req/err since its last scrape."""
    w = a._hosts.get(host)
    if w is None or w.last_requests is None or w.last_errors is None:
        a.observe_counters(host, 0.0, 0.0, now=t - 1)
        w = a._hosts[host]
    assert w.last_requests is not None and w.last_errors is not None
    a.observe_counters(host, w.last_requests + req, w.last_errors + err, now=t)


def test_min_requests_one_error_in_ten_does_not_roll_back():
    a = analyzer(window=60, max=0.02, max_vs_baseline=2.0, min_requests=100)
    a.set_cohort("canary", "new")
    a.set_cohort("old", "baseline")
    feed(a, "old", 1.0, 10_000, 10)
    feed(a, "canary", 1.0, 10, 1)  # 10% of ten requests
    assert a.evaluate(1.0) is None
    feed(a, "canary", 2.0, 90, 14)  # 15 in 100 now
    alert = a.evaluate(2.0)
    assert alert is not None and alert.rule == "error_rate.max"


def test_max_rule_alert_carries_the_numbers_in_words():
    a = analyzer(window=60, max=0.02, min_requests=100)
    a.set_cohort("canary", "new")
    feed(a, "canary", 10.0, 1000, 150)
    alert = a.evaluate(10.0)
    assert alert is not None
    assert alert.level == "critical" and alert.rule == "error_rate.max"
    n = alert.numbers
    assert n["new_rate"] == pytest.approx(0.15)
    assert (n["requests"], n["errors"], n["window"], n["threshold"]) == (1000, 150, 60, 0.02)
    assert "baseline_rate" in n
    assert alert.message == (
        "error rate of the new version is 15.0% (150 errors in 1,000 requests in the "
        "last 60s), above the 2.0% maximum"
    )


def test_vs_baseline_rule_and_message():
    a = analyzer(window=60, max_vs_baseline=2.0, min_requests=100)
    a.set_cohort("new1", "new")
    a.set_cohort("old1", "baseline")
    feed(a, "old1", 5.0, 20_000, 400)  # 2%
    feed(a, "new1", 5.0, 10_000, 300)  # 3%: 1.5x, under the limit
    assert a.evaluate(5.0) is None
    feed(a, "new1", 6.0, 10_000, 700)  # 1,000 in 20,000 = 5%: 2.5x
    alert = a.evaluate(6.0)
    assert alert is not None and alert.rule == "error_rate.max_vs_baseline"
    n = alert.numbers
    assert n["new_rate"] == pytest.approx(0.05) and n["baseline_rate"] == pytest.approx(0.02)
    assert n["threshold"] == 2.0 and n["threshold_rate"] == pytest.approx(0.04)
    assert n["ratio"] == pytest.approx(2.5) and n["baseline_live"] is True
    assert "2.5x the baseline's 2.0% (400 errors in 20,000 requests); the limit is 2x" in (
        alert.message
    )


def test_error_free_baseline_uses_the_floor_not_infinity():
    a = analyzer(window=60, max_vs_baseline=2.0, min_requests=100)
    a.set_cohort("new1", "new")
    a.set_cohort("old1", "baseline")
    feed(a, "old1", 5.0, 50_000, 0)
    # 1 error in 5,000 (0.02%) is infinitely more than 0, yet below 2 x the 0.1% floor.
    feed(a, "new1", 5.0, 5_000, 1)
    assert a.evaluate(5.0) is None
    # 60 in 10,000 = 0.6%: 6x the floor.
    feed(a, "new1", 6.0, 5_000, 59)
    alert = a.evaluate(6.0)
    assert alert is not None
    assert alert.numbers["baseline_rate"] == 0
    assert alert.numbers["baseline_floor"] == BASELINE_FLOOR_RATIO
    assert alert.numbers["ratio"] == pytest.approx(6.0)
    assert "6.0x the baseline's 0.00%, counted as 0.10% (0 errors in 50,000" in alert.message


def test_no_baseline_no_ratio_verdict_then_last_known_baseline_is_used():
    a = analyzer(window=60, max_vs_baseline=2.0, min_requests=100)
    a.set_cohort("n", "new")
    feed(a, "n", 1.0, 1000, 100)
    assert a.evaluate(1.0) is None  # nothing to compare with yet
    a.set_cohort("o", "baseline")
    feed(a, "o", 2.0, 1000, 10)
    first = a.evaluate(2.0)
    assert first is not None and first.numbers["baseline_live"] is True
    a.set_cohort("o", "new")  # the last batch: no baseline host left
    feed(a, "n", 3.0, 1000, 100)
    later = a.evaluate(3.0)
    assert later is not None and later.numbers["baseline_live"] is False
    assert later.numbers["baseline_rate"] == pytest.approx(0.01)
    assert "last measured" in later.message


def test_noise_guard_waits_for_evidence_but_not_for_long():
    # 5 errors in 100 requests against a 2% maximum: 2.1 standard errors, could be luck.
    a = analyzer(window=60, max=0.02, min_requests=100)
    a.set_cohort("n", "new")
    feed(a, "n", 1.0, 100, 5)
    assert a.evaluate(1.0) is None
    plain = analyzer(window=60, max=0.02, min_requests=100, noise_alpha=None)
    plain.set_cohort("n", "new")
    feed(plain, "n", 1.0, 100, 5)
    assert plain.evaluate(1.0) is not None  # a bare threshold would have fired
    # A real regression (15%) is beyond noise at the minimum sample already.
    feed(a, "n", 2.0, 100, 15)
    assert a.evaluate(2.0) is not None


def noisy_rollout_alarms(noise_alpha: float | None) -> int:
    """Runs (of 20 seeds) that alerted: a healthy fleet at 1% errors with binomial noise,
    max 2% and 2x baseline, evaluated every second while batches move to 'new'."""
    alarms = 0
    for seed in range(20):
        rng = random.Random(seed)
        a = analyzer(
            window=60, max=0.02, max_vs_baseline=2.0, min_requests=100, noise_alpha=noise_alpha
        )
        hosts = [f"h{i}" for i in range(12)]
        for i, h in enumerate(hosts):
            a.set_cohort(h, "new" if i < 2 else "baseline")
        for t in range(1, 301):
            for h in hosts:
                req = rng.randint(5, 15)
                err = sum(rng.random() < 0.01 for _ in range(req))
                feed(a, h, float(t), req, err)
            if t % 60 == 0:  # move a batch onto the new version
                for h in hosts[: 2 + t // 30]:
                    a.set_cohort(h, "new")
            if a.evaluate(float(t)) is not None:
                alarms += 1
                break
    return alarms


def test_healthy_noisy_fleet_never_alerts():
    assert noisy_rollout_alarms(0.001) == 0
    # The same runs judged on bare thresholds do raise false alarms: the guard matters.
    assert noisy_rollout_alarms(None) > 0


def test_log_mode_rates_per_minute_and_minimum_error_lines():
    a = analyzer(window=60, has_metrics=False, max=0.02, max_vs_baseline=2.0, min_error_lines=5)
    for h in ("o1", "o2"):
        a.set_cohort(h, "baseline")
        a.observe_log(h, 0, 0, now=0.0)
    a.set_cohort("n1", "new")
    a.observe_log("n1", 0, 0, now=0.0)
    for t in range(1, 61):
        a.observe_log("o1", 10, 1 if t % 30 == 0 else 0, now=float(t))  # 2 per minute
        a.observe_log("o2", 10, 1 if t % 15 == 0 else 0, now=float(t))  # 4 per minute
        a.observe_log("n1", 10, 1 if t % 20 == 0 else 0, now=float(t))  # 3 per minute
    s = by_scope(a, 60.0)
    assert s["o1"].unit == "per_min" and s["o1"].requests is None
    assert s["o1"].rate == pytest.approx(2.0) and s["o2"].rate == pytest.approx(4.0)
    assert s["cohort:baseline"].rate == pytest.approx(3.0)  # per host-minute
    assert s["cohort:new"].rate == pytest.approx(3.0)
    assert a.evaluate(60.0) is None  # 3 error lines < min_error_lines, and 1x anyway
    for t in range(61, 81):  # the new host now logs 1 error line a second
        a.observe_log("n1", 10, 1, now=float(t))
    alert = a.evaluate(80.0)
    # Window (20, 80]: the baseline logged 2 + 3 error lines in its 2 host-minutes.
    assert alert is not None and alert.rule == "error_rate.max_vs_baseline"
    assert alert.numbers["unit"] == "per_min" and alert.numbers["requests"] is None
    # Window (20, 80]: the lines at 40 and 60, then one a second from 61 to 80.
    assert alert.numbers["errors"] == 22 and alert.numbers["new_rate"] == pytest.approx(22.0)
    assert alert.message == (
        "the new version logs 22.0 error lines per host-minute (22 in 1.0 host-minutes in "
        "the last 60s), 8.8x the baseline's 2.5 (5 in 2.0 host-minutes); the limit is 2x"
    )


def test_log_mode_floor_and_restart_burst():
    a = analyzer(window=60, has_metrics=False, max_vs_baseline=2.0, min_error_lines=5)
    a.set_cohort("o", "baseline")
    a.observe_log("o", 0, 0, now=0.0)
    a.observe_log("o", 100, 0, now=59.0)  # a silent baseline: floored at 1 line/min
    a.set_cohort("n", "new")
    a.observe_log("n", 0, 0, now=59.0)
    a.observe_log("n", 6, 6, now=60.0)  # a burst while starting: too little host-time
    assert a.evaluate(60.0) is None
    a.observe_log("n", 0, 0, now=80.0)  # 6 lines over 21 s: 17/min, 17x the floor
    alert = a.evaluate(80.0)
    assert alert is not None
    assert alert.numbers["baseline_floor"] == BASELINE_FLOOR_PER_MIN
    assert alert.numbers["baseline_rate"] == 0


def test_evaluate_does_not_latch_and_recovers():
    a = analyzer(window=10, max=0.02, min_requests=100)
    a.set_cohort("n", "new")
    feed(a, "n", 1.0, 1000, 200)
    assert a.evaluate(1.0) is not None
    assert a.evaluate(1.5) is not None
    assert a.evaluate(12.0) is None  # the bad second left the window


def test_canary_analysis_from_the_analyzer_metrics_mode():
    a = analyzer(window=60, max=0.5)
    a.set_cohort("c", "new")
    a.set_cohort("b", "baseline")
    feed(a, "b", 5.0, 10_000, 100)  # 1%
    feed(a, "c", 5.0, 1_000, 150)  # 15%
    result = a.canary(5.0)
    assert result.verdict == "fail" and result.test == "two_proportion_z"
    assert result.numbers["canary_errors"] == 150 and result.numbers["baseline_requests"] == 10_000
    feed(a, "c", 70.0, 1_000, 10)  # the bad minute left the window: 1% now
    feed(a, "b", 70.0, 10_000, 100)
    assert a.canary(70.0).verdict == "pass"


def test_canary_analysis_from_the_analyzer_log_mode_ranks_hosts():
    a = analyzer(window=60, has_metrics=False)
    for i in range(8):
        a.set_cohort(f"b{i}", "baseline")
        a.observe_log(f"b{i}", 0, 0, now=0.0)
        a.observe_log(f"b{i}", 300, i % 3, now=60.0)  # 0-2 error lines a minute
    for i in range(4):
        a.set_cohort(f"n{i}", "new")
        a.observe_log(f"n{i}", 0, 0, now=0.0)
        a.observe_log(f"n{i}", 300, 20 + i, now=60.0)
    assert sorted(a.host_rates("new", 60.0)) == [20.0, 21.0, 22.0, 23.0]
    result = a.canary(60.0)
    assert result.test == "mann_whitney_u" and result.verdict == "fail"
    assert result.numbers["u"] == 32.0  # every new host above every baseline host
