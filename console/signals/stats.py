"""Canary statistics with the standard library only.

Two questions an operator asks about a canary, answered the way automated canary
analysis does:

* Are the canary's errors a larger *proportion* of its requests than the baseline's?
  A two-proportion z-test on the pooled counts (:func:`two_proportion_z`,
  :func:`canary_analysis`).
* Are the canary's per-host or per-interval error rates *ranked* above the baseline's,
  whatever their distribution? A Mann-Whitney U test (:func:`mann_whitney_u`,
  :func:`canary_rank_analysis`), normal approximation with tie and continuity
  correction: the same figures as ``scipy.stats.mannwhitneyu(method="asymptotic")``.

Verdicts test one direction only (is the canary *worse*): a canary with fewer errors
than the baseline passes. ``fail`` when the one-sided p-value is below ``alpha``;
``marginal`` below ``MARGINAL_FACTOR * alpha`` or when there is too little data to
say; otherwise ``pass``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from console.core.events import CanaryAnalysis

MARGINAL_FACTOR = 4.0
Alternative = Literal["two-sided", "greater", "less"]


def normal_sf(z: float) -> float:
    """P(Z > z) for a standard normal Z (erfc keeps precision in the far tail)."""
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def two_proportion_z(
    errors_a: float, total_a: float, errors_b: float, total_b: float
) -> tuple[float, float]:
    """z statistic of ``errors_a/total_a - errors_b/total_b`` with the pooled standard
    error, and the one-sided p-value for "a's proportion is larger". Identical
    proportions (including both 0) give z = 0, p = 0.5."""
    if total_a <= 0 or total_b <= 0:
        raise ValueError("both samples need at least one trial")
    p_a = errors_a / total_a
    p_b = errors_b / total_b
    pooled = (errors_a + errors_b) / (total_a + total_b)
    se = math.sqrt(pooled * (1.0 - pooled) * (1.0 / total_a + 1.0 / total_b))
    if se == 0.0:
        return 0.0, 0.5
    z = (p_a - p_b) / se
    return z, normal_sf(z)


def _verdict(p_one_sided: float, alpha: float) -> str:
    if p_one_sided < alpha:
        return "fail"
    if p_one_sided < min(1.0, MARGINAL_FACTOR * alpha):
        return "marginal"
    return "pass"


def canary_analysis(
    canary_errors: float,
    canary_requests: float,
    baseline_errors: float,
    baseline_requests: float,
    *,
    alpha: float = 0.05,
) -> CanaryAnalysis:
    """Two-proportion z-test of the canary's error proportion against the baseline's."""
    numbers: dict[str, float | str | None] = {
        "canary_errors": canary_errors,
        "canary_requests": canary_requests,
        "baseline_errors": baseline_errors,
        "baseline_requests": baseline_requests,
        "alpha": alpha,
    }
    if canary_requests <= 0 or baseline_requests <= 0:
        numbers["reason"] = "no requests in the canary or the baseline"
        return CanaryAnalysis(
            verdict="marginal", test="two_proportion_z", p_value=None, numbers=numbers
        )
    z, p = two_proportion_z(canary_errors, canary_requests, baseline_errors, baseline_requests)
    numbers.update(
        canary_rate=canary_errors / canary_requests,
        baseline_rate=baseline_errors / baseline_requests,
        z=z,
    )
    return CanaryAnalysis(
        verdict=_verdict(p, alpha), test="two_proportion_z", p_value=p, numbers=numbers
    )


def _ranks(values: Sequence[float]) -> tuple[list[float], list[int]]:
    """Average ranks (1-based) of ``values``, and the sizes of the tie groups."""
    order = sorted(range(len(values)), key=values.__getitem__)
    ranks = [0.0] * len(values)
    ties: list[int] = []
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        avg = (i + j) / 2.0 + 1.0
        for k in range(i, j + 1):
            ranks[order[k]] = avg
        if j > i:
            ties.append(j - i + 1)
        i = j + 1
    return ranks, ties


def mann_whitney_u(
    a: Sequence[float], b: Sequence[float], *, alternative: Alternative = "two-sided"
) -> tuple[float, float]:
    """``(U, p)``: U is a's statistic (``R_a - n_a(n_a+1)/2``), p from the normal
    approximation with tie and continuity correction (scipy's "asymptotic" method).
    ``alternative='greater'`` asks whether a tends to be larger than b."""
    n1, n2 = len(a), len(b)
    if n1 == 0 or n2 == 0:
        raise ValueError("both samples must be non-empty")
    ranks, ties = _ranks([*a, *b])
    u1 = sum(ranks[:n1]) - n1 * (n1 + 1) / 2.0
    u2 = n1 * n2 - u1
    n = n1 + n2
    tie_term = sum(t**3 - t for t in ties)
    variance = n1 * n2 / 12.0 * ((n + 1) - tie_term / (n * (n - 1)))
    if variance <= 0.0:  # every value equal: no evidence either way
        return u1, 1.0
    u = {"greater": u1, "less": u2}.get(alternative, max(u1, u2))
    z = (u - n1 * n2 / 2.0 - 0.5) / math.sqrt(variance)
    p = normal_sf(z)
    if alternative == "two-sided":
        p *= 2.0
    return u1, min(1.0, max(0.0, p))


def canary_rank_analysis(
    canary_rates: Sequence[float], baseline_rates: Sequence[float], *, alpha: float = 0.05
) -> CanaryAnalysis:
    """Mann-Whitney U test of canary rate samples against baseline rate samples."""
    numbers: dict[str, float | str | None] = {
        "canary_samples": len(canary_rates),
        "baseline_samples": len(baseline_rates),
        "alpha": alpha,
    }
    if not canary_rates or not baseline_rates:
        numbers["reason"] = "no samples in the canary or the baseline"
        return CanaryAnalysis(
            verdict="marginal", test="mann_whitney_u", p_value=None, numbers=numbers
        )
    u, p = mann_whitney_u(canary_rates, baseline_rates, alternative="greater")
    numbers.update(
        u=u,
        canary_median=_median(canary_rates),
        baseline_median=_median(baseline_rates),
    )
    return CanaryAnalysis(
        verdict=_verdict(p, alpha), test="mann_whitney_u", p_value=p, numbers=numbers
    )


def _median(values: Sequence[float]) -> float:
    s = sorted(values)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2.0
