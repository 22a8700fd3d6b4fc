"""What a failed check means (deny, or allow when fail-open), counted and logged by cause."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Callable

from .verdict import Failure, Verdict

log = logging.getLogger("ess_client")


class FailurePolicy:
    """Turns every failed check into the verdict the executor obeys, and keeps the books.

    Each failure is counted by cause in `counts`; allowances granted by `fail_open` are
    counted again in `failed_open`. Logging is rate-limited per cause so that a dead
    sidecar under a high order rate does not flood the executor's log."""

    def __init__(self, fail_open: bool, log_interval_s: float = 1.0,
                 logger: logging.Logger = log,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.fail_open = fail_open
        self.counts: Counter[Failure] = Counter()
        self.failed_open = 0
        self._log_interval_s = log_interval_s
        self._logger = logger
        self._clock = clock
        self._next_log: dict[Failure, float] = {}
        self._suppressed: Counter[Failure] = Counter()

    def apply(self, verdict: Verdict) -> Verdict:
        """Count and log a verdict that carries a failure; return it denied, or allowed only
        when fail-open is on and the cause is connectivity (see Failure.is_connectivity)."""
        cause = verdict.failure
        assert cause is not None
        self.counts[cause] += 1
        verdict = dataclasses.replace(verdict, allowed=False)  # closed unless proven otherwise
        if self.fail_open and cause.is_connectivity:
            self.failed_open += 1
            verdict = dataclasses.replace(verdict, allowed=True)
        self._log(verdict, cause)
        return verdict

    def _log(self, verdict: Verdict, cause: Failure) -> None:
        now = self._clock()
        if now < self._next_log.get(cause, float("-inf")):
            self._suppressed[cause] += 1
            return
        self._next_log[cause] = now + self._log_interval_s
        more = self._suppressed.pop(cause, 0)
        self._logger.warning(
            "ess check failed %s (%s): %s%s", "OPEN" if verdict.allowed else "CLOSED",
            cause.value, verdict.message,
            f" [{more} more since the last log]" if more else "")
