"""A tiny text line chart: new-version vs baseline error rate, threshold drawn in.

Pure (no Textual): :func:`plot` returns rows of ``(char, series)`` cells that the
widget colours. Each series has its own glyph, so the chart reads without colour.
"""

from __future__ import annotations

from collections.abc import Sequence

NEW_GLYPH = "●"
BASE_GLYPH = "○"
BOTH_GLYPH = "◉"
THRESHOLD_GLYPH = "─"

Grid = list[list[tuple[str, str | None]]]


def plot(
    new: Sequence[float],
    baseline: Sequence[float],
    threshold: float | None,
    width: int,
    height: int,
) -> tuple[Grid, float]:
    """Rows top to bottom of ``width`` cells; returns the grid and the y-axis top."""
    width = max(1, width)
    height = max(2, height)
    new = list(new)[-width:]
    baseline = list(baseline)[-width:]
    top = max([*new, *baseline, (threshold or 0.0) * 1.25, 1e-9])
    grid: Grid = [[(" ", None) for _ in range(width)] for _ in range(height)]

    def row_of(v: float) -> int:
        return height - 1 - min(height - 1, max(0, round(v / top * (height - 1))))

    if threshold is not None:
        r = row_of(threshold)
        for x in range(width):
            grid[r][x] = (THRESHOLD_GLYPH, "threshold")
    # align both series to the right edge (most recent sample at the right)
    for series, glyph, var in (
        (baseline, BASE_GLYPH, "series-baseline"),
        (new, NEW_GLYPH, "series-new"),
    ):
        off = width - len(series)
        for i, v in enumerate(series):
            r, x = row_of(v), off + i
            if grid[r][x][0] in (BASE_GLYPH,) and glyph == NEW_GLYPH:
                grid[r][x] = (BOTH_GLYPH, "series-new")
            else:
                grid[r][x] = (glyph, var)
    return grid, top
