"""When a timer run must next look at each of many keys (a feed, an executor), so that a
run costs what is due, not what is watched (review 45: 90,000 stale feeds, walked ten
times a second, took 77 ms of each 100).

A key's time is never late, only early: whoever takes a due key looks at its own state,
and schedules it again if time may still change it. Each key is queued at most once.

Keys due at the same time are taken in the order of their text (`str`), not in the order
they were scheduled: that order is history a restart does not keep, and a timer run
numbers its trips in the order it takes them (stop 62, the restart twin: two feeds stale
at the same instant were tripped in one order by the sidecar that stayed up, in the other
after a restart)."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)

# Times are scheduled this much early: a deadline computed as `start + window` in floats
# may round past the instant at which `now - start >= window` first holds, and a key due
# a millisecond early is only looked at again, never missed.
EARLY_S = 0.001


class Deadlines(Generic[K]):
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, K]] = []
        self._at: dict[K, float] = {}  # each queued key's time: the earliest scheduled
        self._order = itertools.count()  # heap ties: pop_due orders them by their text

    def __len__(self) -> int:
        return len(self._at)

    def schedule(self, key: K, at: float) -> None:
        """Look at `key` from `at` (less EARLY_S) on, unless it is queued earlier already."""
        at -= EARLY_S
        queued = self._at.get(key)
        if queued is None or at < queued:
            self._at[key] = at
            heapq.heappush(self._heap, (at, next(self._order), key))
            if queued is not None:
                self._compact()

    def discard(self, key: K) -> None:
        """Look at `key` no more (until it is scheduled again)."""
        if self._at.pop(key, None) is not None:
            self._compact()

    def _compact(self) -> None:
        """Once entries of keys discarded or queued again earlier (which pop_due would
        skip) outnumber the rest, drop them: the heap stays within twice the keys queued
        (review 46a: 200,000 executors deregistered held their entries, 65 MB, until
        their TTLs passed)."""
        if len(self._heap) <= 2 * len(self._at) + 64:
            return
        self._heap = [(at, next(self._order), key) for key, at in self._at.items()]
        heapq.heapify(self._heap)

    def pop_due(self, now: float) -> list[K]:
        """The keys due by `now`, oldest time first, each taken off the queue; those due
        at the same time in the order of their text."""
        heap = self._heap
        due: list[tuple[float, K]] = []
        tied = False
        while heap and heap[0][0] <= now:
            at, _, key = heapq.heappop(heap)
            if self._at.get(key) == at:  # else superseded by an earlier time, taken already
                del self._at[key]
                tied = tied or bool(due) and due[-1][0] == at
                due.append((at, key))
        if tied:  # rare: sorted only then (review 45 took 90,000 due feeds in one run)
            due.sort(key=lambda entry: (entry[0], str(entry[1])))
        return [key for _, key in due]
