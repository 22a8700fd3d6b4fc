"""The periodic timers (stale feeds, lost heartbeats, re-arms), apart from any transport:
whatever serves the guard, bootstrap gives it these to start and stop."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from .domain.errors import StoreUnavailable
from .domain.states import Transition
from .ports import SteadyClock
from .service import Guard

log = logging.getLogger(__name__)

# A timer failure that repeats every tick is logged with its traceback once, then at most
# this often with a count, until a tick succeeds.
REPEAT_LOG_INTERVAL_S = 60.0


class RepeatedFailureLog:
    """Logs a failure with its traceback the first time; the same failure again at most
    once per `interval_s` with how many were not logged; a success starts afresh."""

    def __init__(self, logger: logging.Logger, interval_s: float = REPEAT_LOG_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._log = logger
        self._interval_s = interval_s
        self._clock = clock
        self._last: tuple[type, str] | None = None
        self._logged_at = 0.0
        self._suppressed = 0

    def failed(self, what: str, error: BaseException) -> None:
        key = (type(error), str(error))
        now = self._clock()
        if key != self._last:
            self._log.error("%s", what, exc_info=error)
            self._last, self._logged_at, self._suppressed = key, now, 0
        elif now - self._logged_at >= self._interval_s:
            self._log.error("%s (still failing; %d identical failure(s) not logged in the"
                            " last %.0f s): %s: %s", what, self._suppressed,
                            now - self._logged_at, type(error).__name__, error)
            self._logged_at, self._suppressed = now, 0
        else:
            self._suppressed += 1

    def succeeded(self) -> None:
        if self._last is not None:
            self._log.info("recovered after %d further identical failure(s) not logged",
                           self._suppressed)
            self._last, self._suppressed = None, 0


class Timers:
    """Runs `guard.run_timers` every `interval_s` on the running loop, from `start` to
    `stop`. A failing run is logged (RepeatedFailureLog) and never ends the runs after it:
    a timer that stopped would leave stale feeds and lost heartbeats untripped. A run that
    fails for a fault of ours (not the store's) fails closed (Guard.internal_fault)."""

    def __init__(self, guard: Guard, interval_s: float, clock: SteadyClock | None = None,
                 ) -> None:
        self._guard = guard
        self._interval_s = interval_s
        self._clock = clock  # the guard's, if steady: a step of the system clock is said
        self._failures = RepeatedFailureLog(log)
        self._task: asyncio.Task[None] | None = None

    def tick(self) -> list[Transition]:
        """One run, here (tests): the transitions it made, none when it failed (logged)."""
        try:
            return self._succeeded(self._guard.run_timers())
        except Exception as error:  # a bug here must never stop the timers
            return self._failed(error)

    async def tick_async(self) -> list[Transition]:
        """One run as served (Guard.run_timers_async): its durable writes off the event
        loop, and checks wait for it only if it would trip a scope."""
        try:
            if self._clock is not None and (offset := self._clock.stepped()) is not None:
                log.warning("the system clock is now %+.3f s from the sidecar's, which keeps"
                            " its own time (deadlines, cooldowns and windows do not step, nor"
                            " does a restart: journaled)", offset)
                self._guard.clock_read(*self._clock.reading())
            return self._succeeded(await self._guard.run_timers_async(self._interval_s))
        except Exception as error:  # a bug here must never stop the timers
            return self._failed(error)

    def _succeeded(self, transitions: list[Transition]) -> list[Transition]:
        self._failures.succeeded()
        return transitions

    def _failed(self, error: Exception) -> list[Transition]:
        if isinstance(error, StoreUnavailable):
            self._failures.failed("a timer run's write (a transition, or the feeds first"
                                  " ticked since the last run) could not be made durable",
                                  error)
        else:  # a fault of ours: no stale feed, lost executor or re-arm might trip from
            # here on, and memory may be half changed; it fails closed as a call's fault
            # does (review 41d: it was logged, and orders went on being allowed)
            self._failures.failed("timer run failed", error)
            if not self._guard.engine.untrusted:  # once: GLOBAL is not reset in this
                self._guard.internal_fault("a timer run", error)  # process after it
        return []

    def start(self) -> None:
        """Tick now, then every interval_s, on the running loop (the guard's)."""
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    def stop(self) -> None:
        """No tick after this returns: call it before the store closes."""
        if self._task is not None:
            self._task.cancel()

    async def _run(self) -> None:
        while True:
            await self.tick_async()
            await asyncio.sleep(self._interval_s)
