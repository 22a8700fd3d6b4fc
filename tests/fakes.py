"""Fakes for our own ports: a clock the test moves by hand."""

from __future__ import annotations

from ess_sidecar.ports import Clock

START = 1_790_000_000.0  # a fixed wall time, so cooldown messages are reproducible


class FakeClock(Clock):
    def __init__(self, now: float = START) -> None:
        self._now = now

    def now(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += seconds
