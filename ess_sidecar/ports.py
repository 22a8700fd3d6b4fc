"""The interfaces the service needs: a state store, an alert sink, telemetry and a clock."""

from __future__ import annotations

import abc
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from .domain.breakers import Metric, Reading
from .domain.commands import Command
from .domain.decisions import Decision
from .domain.scopes import Scope
from .domain.states import Transition


class StoredRegistration(NamedTuple):
    """An executor's heartbeat registration for one scope, as stored."""

    executor_id: str
    scope: Scope
    ttl_s: float
    owner: str = ""  # the principal it is bound to ("" with authentication off)


@dataclass(frozen=True)
class StoredState:
    """What a store holds on start-up."""

    # the latest transition per non-ARMED scope, oldest first
    current: list[Transition] = field(default_factory=list)
    version: int = 0  # the highest version ever written; never reused
    # The history at or below it has holes (store.keep_events); not state either.
    pruned_through: int = field(default=0, compare=False)
    registrations: list[StoredRegistration] = field(default_factory=list)
    # Every scope whose data feed has ticked (save_feeds), in the order first saved.
    feeds: list[Scope] = field(default_factory=list)
    # The store's own, random: the journal beside it chains its records from it, so that
    # another store's journal is found out. All zeros: a store made before it had one.
    identity: bytes = field(default=bytes(16), compare=False)  # not state: two stores agree
    # Its generation (meta.generation): drawn by a reseal that lost versions, which may
    # then number again versions told before the loss; "" for none. With the identity, it names the
    # epoch its versions are told in (service.store_epoch).
    generation: str = field(default="", compare=False)


@dataclass(frozen=True)
class EventQuery:
    scope: Scope | None = None
    since: float | None = None  # inclusive
    until: float | None = None  # exclusive
    before_version: int | None = None  # paging: only versions below this
    limit: int = 100


class StateStore(abc.ABC):
    """Durable state: the audit log of transitions, the latched state, registrations and
    the feeds watched."""

    @property
    def locked(self) -> bool:
        """Whether this process holds the files (no other sidecar writes them): only then
        may it write the journal beside them."""
        return True

    @abc.abstractmethod
    def load(self) -> StoredState:
        """Read everything needed to resume. Raises StoreUnavailable if it cannot be read."""

    @abc.abstractmethod
    def append(self, transitions: Sequence[Transition], prune: bool = True) -> None:
        """Record transitions atomically and durably (fsync) before returning; each becomes
        its scope's latched state. Versions must rise strictly above every stored version
        (ValueError otherwise). Raises StoreUnavailable; then nothing was recorded, but
        for StoredUnsealed: then they were. `prune` False: no event is pruned (store.keep_events), as none may be that the
        journal lacks (its writes have failed), or a start would find them gone."""

    @abc.abstractmethod
    def events(self, query: EventQuery) -> list[Transition]:
        """Audited transitions matching the query, newest first, at most query.limit. The
        reads (this and events_after) may run in another thread than the writes, while
        one runs: they see what was committed."""

    @abc.abstractmethod
    def events_after(self, version: int, limit: int) -> list[Transition]:
        """Transitions with a version above `version`, oldest first, at most limit (none
        for limit <= 0). Only an unbroken run is returned: if anything after `version` was
        pruned, the run starts after the pruned part, so its first version is not
        version + 1 and the caller knows to resync."""

    @abc.abstractmethod
    def save_registration(self, executor_id: str, scope: Scope, ttl_s: float,
                          owner: str = "") -> None:
        """Durably remember an executor's heartbeat registration for a scope (insert or
        replace); `owner` is the principal it is bound to."""

    @abc.abstractmethod
    def delete_registration(self, executor_id: str, scope: Scope) -> None:
        """Forget an executor's registration for a scope; unknown ones are ignored."""

    @abc.abstractmethod
    def save_feeds(self, scopes: Sequence[Scope]) -> None:
        """Durably remember that these scopes watch a data feed (at a first tick; known
        ones are ignored), in one write: a start whose journal lacks a feed's ticks still
        watches it, so a dead feed goes stale."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the store; later calls may fail."""


JournalEntry = tuple[Command | None, tuple[Transition, ...]]


class Journal(abc.ABC):
    """The commands that changed the engine's memory, in order, with the transitions each
    caused (domain/commands.py): replayed on start-up, they restore it exactly."""

    @abc.abstractmethod
    def load(self) -> list[JournalEntry]:
        """Every entry, oldest first, verified; then ready to record. Raises
        StoreUnavailable (a subclass when the journal is damaged)."""

    @abc.abstractmethod
    def record(self, command: Command | None, transitions: Sequence[Transition] = ()) -> None:
        """Append one entry; it survives a crash of this process once this returns.
        Raises StoreUnavailable; then nothing was recorded."""

    @abc.abstractmethod
    def sync(self) -> None:
        """Make everything recorded so far durable on disk (fsync). Raises
        StoreUnavailable."""

    @abc.abstractmethod
    def start(self) -> None:
        """Begin syncing in the background."""

    @property
    def failed(self) -> bool:
        """Whether every record is refused from now on (a write or a sync failed): only a
        restart, which replays what it kept, lifts it."""
        return False

    @abc.abstractmethod
    def close(self) -> None:
        """Sync what is recorded and release the journal."""


class NoJournal(Journal):
    """Memory only: a restart forgets the book (tests of other parts, in process)."""

    def load(self) -> list[JournalEntry]:
        return []

    def record(self, command: Command | None, transitions: Sequence[Transition] = ()) -> None:
        pass

    def sync(self) -> None:
        pass

    def start(self) -> None:
        pass

    def close(self) -> None:
        pass


class VersionFloor(abc.ABC):
    """Where the highest version this process may have told without a store holding it
    (the fail-closed trip, a lost trip) outlives the process: the next run numbers its
    transitions past it, so no version told is given to another transition (docs/
    design.md, "The version floor"). Kept where a full disk does not stop a write."""

    @abc.abstractmethod
    def read(self) -> int:
        """The floor an earlier run left (0: none)."""

    @abc.abstractmethod
    def prepare(self, version: int) -> None:
        """At start-up, with the store read: keep at least `version`, so that later
        writes need no room. Raises OSError."""

    @abc.abstractmethod
    def raise_to(self, version: int) -> None:
        """Keep `version` as the floor if it is higher: made durable soon after, in the
        background. Returns at once and never raises (a failure is logged)."""

    @abc.abstractmethod
    def close(self) -> None:
        """Finish what was asked, for a while at most, and release the file."""


class NoFloor(VersionFloor):
    """Nowhere: versions told while failed closed may be given again after a restart."""

    def read(self) -> int:
        return 0

    def prepare(self, version: int) -> None:
        pass

    def raise_to(self, version: int) -> None:
        pass

    def close(self) -> None:
        pass


class AlertSink(abc.ABC):
    """Where operators are told about transitions (trips, resets, re-arms, lost
    heartbeats). Delivery happens elsewhere, later: the guard never waits for it."""

    @abc.abstractmethod
    def notify(self, transitions: Sequence[Transition]) -> None:
        """Queue alerts for these durable transitions and return at once. Never raises
        and never blocks; an alert that cannot be queued is dropped, logged and counted."""

    def still_latched(self, current: Sequence[Transition]) -> None:
        """At start-up: the scopes not ARMED (their current transitions), one alert for
        all. An alert still waiting when the last process was killed died with it (review
        36f), so each start says again what still needs an operator. Like notify: never
        raises, never blocks. None configured: nothing."""

    def warn(self, scope: Scope, what: str, body: str) -> None:
        """One warning for what changes no stored scope's state, so that it is seen beyond
        this process's log: an operator's act that loosens what protects trading (working
        orders cleared, another's heartbeat deregistered: review 41c), or a trip that
        could not be stored and denies all the same (review 42j: no alert named it, and
        GLOBAL's reset looked like the all-clear). Titled "ESS <scope><what>"; `body`
        may hold what a caller sent (a reason), so its lines are its own, not the
        alert's. Like notify: never raises, never blocks."""

    @abc.abstractmethod
    async def start(self) -> None:
        """Begin delivering, on the running event loop."""

    @abc.abstractmethod
    async def stop(self, grace_s: float) -> None:
        """Deliver what is queued for at most grace_s seconds, then give up on the rest
        (logged and counted) and return."""


class NoAlerts(AlertSink):
    """No alert URLs configured."""

    def notify(self, transitions: Sequence[Transition]) -> None:
        pass

    async def start(self) -> None:
        pass

    async def stop(self, grace_s: float) -> None:
        pass


class Telemetry(abc.ABC):
    """What the guard tells dashboards (metrics, spans). Every method is cheap, never
    raises and never blocks; `decided` is on the hot path."""

    @abc.abstractmethod
    def decided(self, decision: Decision, elapsed_ns: int) -> None:
        """One order judged (allowed or denied), and how long the judging took."""

    @abc.abstractmethod
    def annotate(self, decision: Decision) -> None:
        """Put the decision on the current RPC's span, if it is being recorded."""

    @abc.abstractmethod
    def transitions(self, transitions: Sequence[Transition]) -> None:
        """Durable transitions (trips, resets, re-arms); a trip is an event on the span."""

    @abc.abstractmethod
    def metric_reported(self, metric: Metric) -> None:
        """One ReportMetric sample was accepted."""

    @abc.abstractmethod
    def invalid_request(self, field: str) -> None:
        """A request was rejected as INVALID_ARGUMENT because of this field."""

    @abc.abstractmethod
    def subscriber_dropped(self) -> None:
        """A WatchState subscriber was cut off for being too slow."""

    @abc.abstractmethod
    def call_refused(self, code: str) -> None:
        """A call was refused by authentication or authorization (`code`: its status)."""


class NoTelemetry(Telemetry):
    """telemetry.enabled = false."""

    def decided(self, decision: Decision, elapsed_ns: int) -> None:
        pass

    def annotate(self, decision: Decision) -> None:
        pass

    def transitions(self, transitions: Sequence[Transition]) -> None:
        pass

    def metric_reported(self, metric: Metric) -> None:
        pass

    def invalid_request(self, field: str) -> None:
        pass

    def subscriber_dropped(self) -> None:
        pass

    def call_refused(self, code: str) -> None:
        pass


class GuardReadings(abc.ABC):
    """What dashboards read from the guard (gauges): a port, so telemetry depends on it
    and not on the service. Called on the guard's event loop."""

    @abc.abstractmethod
    def restricted(self) -> list[Transition]:
        """Every scope that is not ARMED: its current transition, oldest first."""

    @abc.abstractmethod
    def state_version(self) -> int:
        """The latest version applied."""

    @abc.abstractmethod
    def readings(self, most: int) -> list[Reading]:
        """Breaker values and thresholds, for at most `most` scopes (the newest first)."""

    @abc.abstractmethod
    def watchers(self) -> int:
        """How many WatchState subscribers are connected."""

    @abc.abstractmethod
    def lost(self) -> list[Transition]:
        """Trips whose write failed, still denying (restricted() has them not). Read off
        the loop too: may raise RuntimeError if they change meanwhile."""


class Clock(abc.ABC):
    @abc.abstractmethod
    def now(self) -> float:
        """Seconds since the epoch, never going back (cooldowns are persisted as times)."""


class SystemClock(Clock):
    """The system's wall clock as it is: for one-off commands, never for a serving sidecar
    (SteadyClock)."""

    def now(self) -> float:
        return time.time()


class SteadyClock(Clock):
    """The serving sidecar's clock, advanced by the monotonic clock. A step of the system
    clock while serving (NTP, a VM resumed, a `date` typed) moves no deadline: a step back
    would hold off every heartbeat's and data feed's deadline, a reset request's lifetime
    and every window by its size, and a step forward would end cooldowns, retention and
    windows at once (review 36d). It starts from the system's wall clock, or, given `last`
    (the serving clock and the system's as last read together and journaled: ClockRead),
    from the time the serving clock then kept plus what the system's says passed since,
    if that is earlier: started from the system's, a restart aged everything stamped since
    a step forward by its size (review 43d: a used order id taken again, a cooldown over
    early); started ahead of it, after a step back the system's clock was put right from
    while stopped, by that step (review 43g). Never earlier than `floor`, the latest time
    the state on disk holds."""

    def __init__(self, floor: float = 0.0, wall: Callable[[], float] = time.time,
                 monotonic: Callable[[], float] = time.monotonic,
                 last: tuple[float, float] | None = None) -> None:
        self._wall, self._monotonic = wall, monotonic
        started = wall()
        resumed = started if last is None else min(last[0] + started - last[1],
                                                   max(started, floor))
        self.floored = floor > resumed  # started from `floor`
        self._origin = max(resumed, floor) - monotonic()
        self.ahead = self.now() - started  # of the system clock at the start (-: behind it)
        self._offset_said = -self.ahead

    def now(self) -> float:
        return self._origin + self._monotonic()

    def reading(self) -> tuple[float, float]:
        """This clock's time and the system's, read together (ClockRead)."""
        return self.now(), self._wall()

    def stepped(self, tolerance_s: float = 1.0) -> float | None:
        """How far the system clock is from this one (+: ahead), if that moved by more than
        `tolerance_s` since it was last said (or since the start); else None."""
        offset = self._wall() - self.now()
        if abs(offset - self._offset_said) <= tolerance_s:
            return None
        self._offset_said = offset
        return offset
