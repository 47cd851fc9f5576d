"""Canary statistics against scipy (a test-only dependency) and hand-computed values."""

from __future__ import annotations

import math
import random

import pytest
from scipy import stats as sps

from console.signals.stats import (
    canary_analysis,
    canary_rank_analysis,
    mann_whitney_u,
    normal_sf,
    two_proportion_z,
)


def _samples(rng: random.Random, n: int, *, ties: bool) -> list[float]:
    if ties:
        return [float(rng.randint(0, 5)) for _ in range(n)]
    return [rng.gauss(0.0, 1.0) for _ in range(n)]


@pytest.mark.parametrize("alternative", ["two-sided", "greater", "less"])
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("sizes", [(1, 1), (3, 5), (9, 14), (40, 25), (200, 180)])
def test_mann_whitney_matches_scipy_asymptotic(sizes, ties, alternative):
    rng = random.Random(f"{sizes}{ties}{alternative}")
    a = _samples(rng, sizes[0], ties=ties)
    b = [x + 0.3 for x in _samples(rng, sizes[1], ties=ties)]
    u, p = mann_whitney_u(a, b, alternative=alternative)
    ref = sps.mannwhitneyu(a, b, alternative=alternative, method="asymptotic")
    assert u == pytest.approx(ref.statistic, abs=1e-9)
    if math.isnan(ref.pvalue):  # scipy: 0/0 when every value is tied
        assert p == 1.0
    else:
        assert p == pytest.approx(ref.pvalue, rel=1e-9, abs=1e-12)


def test_mann_whitney_all_tied_has_no_evidence():
    assert mann_whitney_u([1.0, 1.0], [1.0, 1.0, 1.0]) == (3.0, 1.0)


def test_mann_whitney_rejects_empty():
    with pytest.raises(ValueError):
        mann_whitney_u([], [1.0])


def test_two_proportion_z_by_hand():
    # canary 30/1000 = 3%, baseline 100/10000 = 1%; pooled 130/11000.
    p = 130 / 11000
    se = math.sqrt(p * (1 - p) * (1 / 1000 + 1 / 10000))
    z_hand = (0.03 - 0.01) / se
    z, p_one = two_proportion_z(30, 1000, 100, 10000)
    assert z == pytest.approx(z_hand, rel=1e-12)
    assert z == pytest.approx(5.58, abs=0.01)
    assert p_one == pytest.approx(sps.norm.sf(z_hand), rel=1e-9)
    assert normal_sf(1.959963984540054) == pytest.approx(0.025, rel=1e-9)


def test_two_proportion_identical_and_zero():
    assert two_proportion_z(0, 100, 0, 1000) == (0.0, 0.5)
    with pytest.raises(ValueError):
        two_proportion_z(1, 0, 1, 10)


def test_canary_verdicts():
    bad = canary_analysis(150, 1000, 100, 10000)
    assert bad.verdict == "fail" and bad.test == "two_proportion_z"
    assert bad.p_value is not None and bad.p_value < 1e-12
    assert bad.numbers["canary_rate"] == pytest.approx(0.15)
    assert bad.numbers["baseline_rate"] == pytest.approx(0.01)

    same = canary_analysis(10, 1000, 100, 10000)
    assert same.verdict == "pass" and same.p_value == pytest.approx(0.5)

    better = canary_analysis(0, 1000, 100, 10000)
    assert better.verdict == "pass"

    # z of about 1.45 (one-sided p about 0.074): above alpha, below 4 * alpha.
    _z, p = two_proportion_z(15, 1000, 100, 10000)
    assert 0.05 < p < 0.2
    assert canary_analysis(15, 1000, 100, 10000).verdict == "marginal"

    empty = canary_analysis(0, 0, 5, 100)
    assert empty.verdict == "marginal" and empty.p_value is None


def test_canary_rank_analysis_verdicts():
    rng = random.Random(7)
    baseline = [rng.uniform(0.0, 0.02) for _ in range(30)]
    worse = [rng.uniform(0.10, 0.20) for _ in range(8)]
    alike = [rng.uniform(0.0, 0.02) for _ in range(8)]
    fail = canary_rank_analysis(worse, baseline)
    assert fail.verdict == "fail" and fail.test == "mann_whitney_u"
    ref = sps.mannwhitneyu(worse, baseline, alternative="greater", method="asymptotic")
    assert fail.p_value == pytest.approx(ref.pvalue, rel=1e-9)
    assert canary_rank_analysis(alike, baseline).verdict in ("pass", "marginal")
    assert canary_rank_analysis([0.0] * 8, baseline).verdict == "pass"
    assert canary_rank_analysis([], baseline).verdict == "marginal"
