"""The garbage collector policy (adapters/collector.py), with Python's real collector and
an injected clock: how long a collection took is what the clock says."""

from __future__ import annotations

import gc
import itertools
from collections.abc import Iterator

import pytest

from ess_sidecar.adapters.collector import FreezeAfterLongCollections


def clock(step_s: float) -> Iterator[float]:
    """Each reading `step_s` after the one before: every collection takes `step_s`."""
    return itertools.count(0.0, step_s).__next__


@pytest.fixture(autouse=True)
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()


def test_a_long_full_collection_freezes_what_survived_it() -> None:
    policy = FreezeAfterLongCollections(after_s=0.01, clock=clock(0.011)).install()
    try:
        kept = [[n] for n in range(1000)]  # tracked, alive
        gc.collect()
        assert policy.freezes == 1
        assert policy.longest_s == pytest.approx(0.011)
        assert gc.get_freeze_count() >= len(kept)
    finally:
        policy.uninstall()
    assert gc.get_freeze_count() == 0  # unfrozen: walked again as before
    assert policy not in gc.callbacks


def test_a_short_full_collection_freezes_nothing() -> None:
    policy = FreezeAfterLongCollections(after_s=0.01, clock=clock(0.01)).install()
    try:
        gc.collect()
        assert policy.freezes == 0
        assert gc.get_freeze_count() == 0
    finally:
        policy.uninstall()


def test_a_young_collection_freezes_nothing_however_long() -> None:
    policy = FreezeAfterLongCollections(after_s=0.01, clock=clock(1.0)).install()
    try:
        gc.collect(0)
        gc.collect(1)
        assert policy.freezes == 0
        assert gc.get_freeze_count() == 0
    finally:
        policy.uninstall()


def test_frozen_objects_are_still_freed_by_their_reference_counts() -> None:
    """A remembered order forgotten is freed at once, frozen or not: only garbage in a
    cycle waits for the collector."""
    policy = FreezeAfterLongCollections(after_s=0.0, clock=clock(1.0)).install()
    try:
        kept = [[n] for n in range(1000)]
        gc.collect()
        frozen = gc.get_freeze_count()
        del kept
        assert gc.get_freeze_count() <= frozen - 1000
    finally:
        policy.uninstall()
