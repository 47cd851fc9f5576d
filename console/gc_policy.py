"""The garbage collector's pace for a process that watches a fleet.

CPython runs a young-generation collection every 700 net allocations of container
objects. Watching 1,000 hosts allocates a few hundred thousand of those a second
(SSH packets, futures, timer handles, events), almost all freed by reference
counting, yet each collection still walks every young object, and every tenth of
them the older generation: measured with ``bench/health.py --hosts 1000 --metrics``,
about 2,000 collections and 8 s of a 35 s run, a quarter of the console's only core,
spent finding no cycles. A higher first threshold keeps cycle collection (a leaked
cycle is still freed, some seconds later) at a pace that costs almost nothing.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000  # net container allocations between young collections
OLDER_THRESHOLDS = (20, 100)  # young collections per middle one, middle per full


def tune() -> None:
    """Set the collector's thresholds for a fleet-watching process (idempotent; never
    lowers a threshold someone raised further)."""
    young, middle, old = gc.get_threshold()
    gc.set_threshold(
        max(young, YOUNG_THRESHOLD), max(middle, OLDER_THRESHOLDS[0]), max(old, OLDER_THRESHOLDS[1])
    )
