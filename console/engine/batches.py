"""The plan as it runs: batches re-cut in flight, the batch running, its queue.

Owned by the engine; commands change it only through these named operations, each of
which keeps the plan's rules (batches already started are history and stay as they
were; no batch is empty; a re-cut is the planner's own, :func:`console.plan.recut`).
The caller journals the new plan (``PlanChanged``) with :meth:`Batches.snapshot`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence

from console.plan import batch_size, parse_size, recut


class Batches:
    def __init__(self, batches: Iterable[Sequence[str]], targeted: int) -> None:
        self._batches: list[list[str]] = [list(b) for b in batches]
        self.targeted = targeted  # what a percentage is of: every targeted host
        self.index: int | None = None  # the batch running or last run
        self.queue: deque[str] | None = None  # the running batch's not-started hosts

    def copy(self) -> Batches:
        """An independent copy (to try a change before making it)."""
        other = Batches(self._batches, self.targeted)
        other.index = self.index
        other.queue = None if self.queue is None else deque(self.queue)
        return other

    def __len__(self) -> int:
        return len(self._batches)

    def hosts(self, index: int) -> tuple[str, ...]:
        return tuple(self._batches[index])

    def snapshot(self) -> tuple[tuple[str, ...], ...]:
        return tuple(tuple(b) for b in self._batches)

    @property
    def first_unstarted(self) -> int:
        """Index of the first batch not started yet."""
        return 0 if self.index is None else self.index + 1

    @property
    def running(self) -> int | None:
        """The batch whose hosts are being started now, if any."""
        return self.index if self.queue is not None else None

    def start(self, index: int, queue: deque[str]) -> None:
        self.index, self.queue = index, queue

    def end(self) -> None:
        self.queue = None

    def recut(self, size: object, pending: Callable[[str], bool]) -> tuple[int, int, bool]:
        """Re-cut the batches not started, keeping the hosts ``pending`` says, by the
        planner's rule (:func:`console.plan.recut`, as :func:`~console.plan.replan`).
        Returns (the size in hosts, hosts re-planned, whether anything changed).
        ValueError on a bad size."""
        parsed = parse_size(size)
        start = self.first_unstarted
        remaining = [n for b in self._batches[start:] for n in b if pending(n)]
        cut = [list(b) for b in recut(remaining, parsed, self.targeted)]
        count = batch_size(parsed, self.targeted)
        if cut == self._batches[start:]:
            return count, len(remaining), False
        self._batches[start:] = cut
        return count, len(remaining), True

    def remove(self, name: str) -> bool:
        """Take ``name`` out of the batches not started; True if it was in one."""
        start = self.first_unstarted
        changed = False
        for batch in self._batches[start:]:
            if name in batch:
                batch.remove(name)
                changed = True
        if self.queue is not None and name in self.queue:
            self.queue.remove(name)
        self._batches[start:] = [b for b in self._batches[start:] if b]
        return changed

    def place_retry(self, name: str) -> str:
        """Into the running batch if there is one, else at the front of the next
        batch; returns where, in words ("batch 3")."""
        first = self.first_unstarted
        for batch in self._batches[first:]:
            if name in batch:
                batch.remove(name)
        running = self.running
        if running is not None and self.queue is not None:
            self.queue.append(name)
            if name not in self._batches[running]:
                self._batches[running].append(name)
            where = running
        elif first < len(self._batches):
            self._batches[first].insert(0, name)
            where = first
        else:
            self._batches.append([name])
            where = len(self._batches) - 1
        self._batches[first:] = [b for b in self._batches[first:] if b]
        return f"batch {where + 1}"
