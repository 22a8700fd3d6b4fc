"""Observable gauges and counters computed at collection time from the guard and alerts.

Collections run on the exporters' threads (the Prometheus HTTP server, the OTLP timer),
while the guard lives on its asyncio loop and is not thread-safe. What a single C-level
step reads whole under the GIL (an int, a set's size, a dict's values into a list) is
read directly; the breakers' readings run Python over structures the loop mutates (and
prune windows), so they are read on the loop, with a deadline. A callback never raises:
a failed read is logged and exports nothing.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
from collections.abc import Callable, Iterable
from typing import TypeVar

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from ...domain.breakers import Reading
from ...domain.scopes import GLOBAL, Scope
from ...domain.states import SEVERITY, State, Transition
from ...ports import AlertSink, GuardReadings
from . import names

log = logging.getLogger(__name__)

T = TypeVar("T")

READ_TIMEOUT_S = 1.0  # a loop busy for this long is the problem itself; skip the gauge


class LoopReader:
    """Runs a read on the event loop that owns the guard and waits for its result; reads
    directly when already on that loop (a collection the loop itself asked for).

    The loop is given, or learnt by `bind_here` from a call made on it: the guard may be
    built before its loop runs (`asyncio.run(serve(server_parts(build(...))))`)."""

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None,
                 timeout_s: float = READ_TIMEOUT_S) -> None:
        self.loop = loop
        self._timeout_s = timeout_s

    def bind_here(self) -> None:
        """Learn the loop, if unknown, from the one running this call (if any)."""
        if self.loop is None:
            with contextlib.suppress(RuntimeError):
                self.loop = asyncio.get_running_loop()

    def __call__(self, read: Callable[[], T], unbound: T) -> T:
        """read() on the loop; `unbound` while no loop is known."""
        loop = self.loop
        if loop is None:
            return unbound
        try:
            on_loop = asyncio.get_running_loop() is loop
        except RuntimeError:
            on_loop = False
        if on_loop:
            return read()
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(read())
                except BaseException as error:  # handed to the waiting thread
                    future.set_exception(error)

        loop.call_soon_threadsafe(run)  # RuntimeError once the loop is closed
        try:
            return future.result(self._timeout_s)
        finally:
            future.cancel()  # if still queued: don't run it for nobody


Callback = Callable[[CallbackOptions], Iterable[Observation]]


def never_raising(instrument: names.Instrument, observe: Callable[[], Iterable[Observation]]
                  ) -> Callback:
    def callback(options: CallbackOptions) -> list[Observation]:
        try:
            return list(observe())
        except Exception as error:
            log.warning("metric %s not collected: %s", instrument.name,
                        f"{type(error).__name__}: {error}" if str(error)
                        else type(error).__name__)
            return []
    return callback


class GuardGauges:
    """What is read from the guard and the alert sink when metrics are collected.

    `scopes` is shared with the telemetry: every scope it has seen restricted, so that a
    scope shows ARMED = 1 after its reset instead of vanishing. `detach` stops reading
    the guard (at shutdown the loop may be blocked waiting for a final export)."""

    def __init__(self, guard: GuardReadings, alerts: AlertSink, read_on_loop: LoopReader,
                 scopes: dict[Scope, None], most_scopes: int = 1000) -> None:
        self._guard: GuardReadings | None = guard
        self._alerts = alerts
        self._on_loop = read_on_loop
        self._scopes = scopes
        # Cardinality cap: per-scope gauges cover at most this many scopes (restricted
        # ones first, the newest first), so a flood of ids never makes a scrape slow.
        self._most = most_scopes
        self._readings: list[Reading] = []

    def register(self, meter: Meter) -> None:
        gauges = ((names.SCOPE_STATE, self._states), (names.BREAKER_VALUE, self._values),
                  (names.BREAKER_THRESHOLD, self._thresholds),
                  (names.STATE_VERSION, self._version),
                  (names.WATCH_SUBSCRIBERS, self._subscribers))
        for instrument, observe in gauges:
            meter.create_observable_gauge(instrument.name, [never_raising(instrument, observe)],
                                          unit=instrument.unit,
                                          description=instrument.description)
        for instrument, attribute in ((names.ALERTS_SENT, "sent"),
                                      (names.ALERTS_FAILED, "failed"),
                                      (names.ALERTS_RETRIED, "retried"),
                                      (names.ALERTS_DROPPED, "dropped"),
                                      (names.ALERTS_MERGED, "merged")):
            meter.create_observable_counter(
                instrument.name, [never_raising(instrument, self._alert_count(attribute))],
                unit=instrument.unit, description=instrument.description)

    def detach(self) -> None:
        self._guard = None

    def _states(self) -> list[Observation]:
        guard = self._guard
        if guard is None:
            return []
        # restricted() copies the engine's dict in one C step; also restricted without a
        # transition passing through telemetry: latched at start-up, failed closed.
        lost_trips = self._lost(guard)  # first: one found meanwhile is then in restricted()
        current = {t.scope: t.state for t in guard.restricted()}
        for lost in lost_trips:  # a trip not stored denies too (42j: shown ARMED)
            if SEVERITY[lost.state] > SEVERITY[current.get(lost.scope, State.ARMED)]:
                current[lost.scope] = lost.state
        for scope in current:
            self._scopes.setdefault(scope)
        for scope in list(self._scopes)[:max(0, len(self._scopes) - self._most)]:
            if scope not in current and scope != GLOBAL:  # the oldest seen, no longer
                del self._scopes[scope]  # restricted, go first
        # The newest, when more are restricted; GLOBAL always (review 42j: a hundred
        # trips after it hid GLOBAL's, tripped).
        shown = [GLOBAL] + [scope for scope in list(self._scopes)[-self._most:]
                            if scope != GLOBAL]
        return [Observation(int(state is current.get(scope, State.ARMED)),
                            {names.SCOPE: str(scope), names.STATE: state.name})
                for scope in shown for state in State]

    @staticmethod
    def _lost(guard: GuardReadings) -> list[Transition]:
        """Read here, as restricted() is: not on the loop, whose stall would take the whole
        state gauge with it (review 42l). A read racing the loop's change of them (a trip
        lost or found) leaves this scrape the stored states, never no gauge (42m: a
        KeyError or an empty max() did)."""
        try:
            return guard.lost()
        except Exception:  # noqa: BLE001 - whatever the race raised
            return []

    def _values(self) -> list[Observation]:
        guard = self._guard
        if guard is None:
            return []
        # Both breaker gauges from one read on the loop: the threshold callback runs next
        # in the same collection (callbacks run in registration order, one collection at
        # a time), and takes what this one left; a failed read leaves nothing.
        self._readings = []
        self._readings = self._on_loop(
            lambda: guard.readings(self._most), unbound=[])
        return [Observation(r.value, {names.SCOPE: str(r.scope), names.BREAKER: r.breaker})
                for r in self._readings]

    def _thresholds(self) -> list[Observation]:
        readings, self._readings = self._readings, []
        return [Observation(r.threshold, {names.SCOPE: str(r.scope), names.BREAKER: r.breaker})
                for r in readings]

    def _version(self) -> list[Observation]:
        guard = self._guard
        return [] if guard is None else [Observation(guard.state_version())]

    def _subscribers(self) -> list[Observation]:
        guard = self._guard
        return [] if guard is None else [Observation(guard.watchers())]

    def _alert_count(self, attribute: str) -> Callable[[], list[Observation]]:
        def observe() -> list[Observation]:
            count = getattr(self._alerts, attribute, None)  # NoAlerts counts nothing
            return [] if count is None else [Observation(count)]
        return observe
