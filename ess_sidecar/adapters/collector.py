"""Python's cyclic garbage collector, kept from stalling decisions.

Every order the sidecar allowed is remembered until `limits.order_id_retention_s` after it
ended, up to `limits.max_remembered_orders` (1,000,000): each is an object the collector
tracks, and a full collection walks them all with the decisions waiting (one thread, one
GIL). CPython 3.11 runs one whenever what survived into the oldest generation has grown by
a quarter: with the shipped cap, 0.1 to 0.35 s each (`benchmarks/gc_pauses.py`), during
which every check waits, and those with a shorter deadline are denied.

`gc.freeze()` moves everything tracked into a generation no collection walks, so the next
full collections walk only what was allocated since. Frozen objects are still freed by
their reference counts (a remembered order forgotten is freed at once, frozen or not),
but one that becomes garbage in a reference cycle after it was frozen is never freed: a
call in flight at the freeze leaves about five such objects once served (gRPC's). So the
sidecar freezes only after a full collection that was long (over FREEZE_AFTER_S), when
the oldest generation has grown by about a hundred thousand objects since the last freeze:
a few freezes per million orders remembered, each costing the cycles of the calls then in
flight (kilobytes), against a pause of about FREEZE_AFTER_S at most instead of up to a
third of a second. Freezing after every full collection (tried, stop 45) bounds pauses as
well but freezes about once a second under load, and its leak grows with uptime."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

FREEZE_AFTER_S = 0.01  # a full collection longer than this freezes what survived it


class FreezeAfterLongCollections:
    """A `gc.callbacks` entry: once a full collection took longer than `after_s`, what
    survived it is frozen. `install` adds it; `uninstall` removes it and unfreezes (the
    collector walks everything again, as before `install`)."""

    def __init__(self, after_s: float = FREEZE_AFTER_S,
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.after_s = after_s
        self.freezes = 0  # how many times it froze
        self.longest_s = 0.0  # the longest full collection seen
        self._clock = clock
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = self._clock()
            return
        if info["generation"] != 2:
            return
        took = self._clock() - self._started
        self.longest_s = max(self.longest_s, took)
        if took > self.after_s:
            gc.freeze()
            self.freezes += 1

    def install(self) -> FreezeAfterLongCollections:
        gc.callbacks.append(self)
        return self

    def uninstall(self) -> None:
        if self in gc.callbacks:
            gc.callbacks.remove(self)
            gc.unfreeze()
