"""Canary shares as HAProxy weights: pure arithmetic, no I/O.

HAProxy's balancing algorithms give each server a share of new requests in
proportion to its weight (an integer, 0-256). To give the canary servers ``share``
percent of a backend, every canary server gets one weight ``w`` and every other
serving server keeps its own weight multiplied by one factor ``m`` (so their
proportions among themselves stay as the operator set them). Of every ``(w, m)``
integer pair that HAProxy accepts, the one whose share is the closest to the asked one
wins; ties go to the smaller factor (fewer weights far from the configured ones), then
the smaller canary weight. The share the integers really give is reported beside the
asked one (``achieved``): with 9 others at weight 1 and one canary, 5% is exact
(canary 9, others 19); with 2 others, 1% is 0.99% (canary 1, others 50 each).

Servers that do not serve (drained, in maintenance, or weight 0) are left alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from console.traffic.haproxy import MAX_WEIGHT


@dataclass(frozen=True, slots=True)
class Shares:
    """The weights to set for one canary step, and the share they give (percent)."""

    weights: dict[str, int]  # server -> weight (canary servers and the serving others)
    achieved: float


def canary_weights(share: float, canary: list[str], others: Mapping[str, int]) -> Shares:
    """Weights giving the ``canary`` servers ``share`` percent of the traffic, next to
    ``others`` (serving server -> its weight before the rollout). ``share`` in (0, 100]."""
    if not canary:
        raise ValueError("no canary server")
    if not 0 < share <= 100:
        raise ValueError(f"a share is in (0, 100], not {share}")
    serving = {name: w for name, w in others.items() if w > 0}
    k = len(canary)
    total = sum(serving.values())
    if share >= 100 or total == 0:  # nothing else serves: the canary has it all
        weights = dict.fromkeys(canary, 1)
        weights.update(dict.fromkeys(serving, 0))
        return Shares(weights, 100.0)
    p = share / 100
    best: tuple[float, int, int] | None = None  # (error, m, w)
    for m in range(1, MAX_WEIGHT // max(serving.values()) + 1):
        ideal = p * m * total / (k * (1 - p))
        for w in {max(1, min(MAX_WEIGHT, int(ideal))), max(1, min(MAX_WEIGHT, int(ideal) + 1))}:
            got = k * w / (k * w + m * total)
            key = (abs(got - p), m, w)
            if best is None or key < best:
                best = key
    assert best is not None
    _, m, w = best
    weights = dict.fromkeys(canary, w)
    weights.update({name: wt * m for name, wt in serving.items()})
    return Shares(weights, 100 * k * w / (k * w + m * total))
