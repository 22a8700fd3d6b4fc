"""Breakers: rules that trip a scope when a reported metric crosses its threshold."""

from __future__ import annotations

import enum
import itertools
import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from .deadlines import Deadlines
from .errors import InvalidArgument
from .oldest import expired_run
from .orders import MAX_EQUITY
from .scopes import Scope
from .states import TriggerMode


class Metric(enum.IntEnum):
    DAILY_DRAWDOWN_PCT = 1
    WEEKLY_DRAWDOWN_PCT = 2
    TOTAL_DRAWDOWN_PCT = 3
    OPEN_LOSS_PCT = 4
    EQUITY = 5
    EXECUTION_ERROR = 6
    API_ERROR = 7
    ORDER_FAILURE = 8
    TRADE_RESULT = 9
    STOP_LOSS_HIT = 10
    DATA_FEED_TICK = 11
    DATA_FEED_CORRUPT = 12
    SYSTEM_HEALTH = 13


@dataclass(frozen=True)
class BreakerRule:
    """threshold: level, or events in window_s; window_s is the staleness for data_feed_stale."""

    threshold: float
    window_s: float = 0.0
    consecutive: int = 1
    mode: TriggerMode = TriggerMode.HALT
    auto_rearm: bool = False
    enabled: bool = True


HEALTH_CRITICAL = 2.0
MAX_EVENTS_PER_REPORT = 1_000_000
EVENT_SLOTS = 1024  # entries an event window keeps at most (one per 1/1024 of it, and one)

class Breaker(enum.StrEnum):
    """Every breaker, by the name config keys, GetState and the audit trail use."""

    DAILY_DRAWDOWN_PCT = "daily_drawdown_pct"
    WEEKLY_DRAWDOWN_PCT = "weekly_drawdown_pct"
    TOTAL_DRAWDOWN_PCT = "total_drawdown_pct"
    OPEN_LOSS_PCT = "open_loss_pct"
    EXECUTION_ERRORS = "execution_errors"
    API_ERRORS = "api_errors"
    ORDER_FAILURES = "order_failures"
    FAILED_TRADES = "failed_trades"
    CONSECUTIVE_LOSSES = "consecutive_losses"
    STOP_LOSS_HITS = "stop_loss_hits"
    DATA_FEED_STALE = "data_feed_stale"
    DATA_FEED_CORRUPT = "data_feed_corrupt"
    SYSTEM_HEALTH = "system_health"
    HEARTBEAT_LOST = "heartbeat_lost"
    # A fill the sidecar cannot tie to an order it allowed: trips the account by hand.
    UNCHECKED_ORDER = "unchecked_order"


DEFAULT_RULES: Mapping[str, BreakerRule] = {
    Breaker.DAILY_DRAWDOWN_PCT: BreakerRule(5.0),
    Breaker.WEEKLY_DRAWDOWN_PCT: BreakerRule(10.0),
    Breaker.TOTAL_DRAWDOWN_PCT: BreakerRule(20.0),
    Breaker.OPEN_LOSS_PCT: BreakerRule(10.0),
    Breaker.EXECUTION_ERRORS: BreakerRule(5, window_s=15 * 60),
    Breaker.API_ERRORS: BreakerRule(3, window_s=60),
    Breaker.ORDER_FAILURES: BreakerRule(10, window_s=5 * 60),
    Breaker.FAILED_TRADES: BreakerRule(5, window_s=60 * 60),
    Breaker.CONSECUTIVE_LOSSES: BreakerRule(10),
    Breaker.STOP_LOSS_HITS: BreakerRule(3, window_s=60 * 60),
    Breaker.DATA_FEED_STALE: BreakerRule(1, window_s=30),
    Breaker.DATA_FEED_CORRUPT: BreakerRule(1),
    Breaker.SYSTEM_HEALTH: BreakerRule(HEALTH_CRITICAL),
    Breaker.HEARTBEAT_LOST: BreakerRule(1),
    Breaker.UNCHECKED_ORDER: BreakerRule(1),
}

LEVEL_BREAKERS = {
    Metric.DAILY_DRAWDOWN_PCT: Breaker.DAILY_DRAWDOWN_PCT,
    Metric.WEEKLY_DRAWDOWN_PCT: Breaker.WEEKLY_DRAWDOWN_PCT,
    Metric.TOTAL_DRAWDOWN_PCT: Breaker.TOTAL_DRAWDOWN_PCT,
    Metric.OPEN_LOSS_PCT: Breaker.OPEN_LOSS_PCT,
    Metric.SYSTEM_HEALTH: Breaker.SYSTEM_HEALTH,
}
EVENT_BREAKERS = {
    Metric.EXECUTION_ERROR: Breaker.EXECUTION_ERRORS,
    Metric.API_ERROR: Breaker.API_ERRORS,
    Metric.ORDER_FAILURE: Breaker.ORDER_FAILURES,
    Metric.STOP_LOSS_HIT: Breaker.STOP_LOSS_HITS,
}
EVENT_WINDOWS = frozenset(EVENT_BREAKERS.values()) | {Breaker.FAILED_TRADES}
WINDOWED = EVENT_WINDOWS | {Breaker.DATA_FEED_STALE}
# Breakers whose `consecutive` counts breaching samples; the others trip on the event.
DEBOUNCED = frozenset(LEVEL_BREAKERS.values())
# Breakers tripped by one event, with no condition that goes on holding.
ONE_OFF = frozenset({Breaker.DATA_FEED_CORRUPT, Breaker.UNCHECKED_ORDER})


class Slot(NamedTuple):
    """Where a level is kept: the total drawdown derived from EQUITY samples is kept apart
    from the reported one, so neither overwrites the other; the breaker's condition holds
    if either breaches."""

    breaker: Breaker
    derived: bool = False


DERIVED_DRAWDOWN = Slot(Breaker.TOTAL_DRAWDOWN_PCT, derived=True)


@dataclass(frozen=True)
class BreakerSettings:
    """Default rules for every scope, and per-scope overrides of some of them."""

    defaults: Mapping[str, BreakerRule] = field(default_factory=lambda: dict(DEFAULT_RULES))
    overrides: Mapping[Scope, Mapping[str, BreakerRule]] = field(default_factory=dict)

    def rule(self, scope: Scope, name: str) -> BreakerRule:
        override = self.overrides.get(scope)
        if override and name in override:
            return override[name]
        return self.defaults[name]


class Reading(NamedTuple):
    """How close a breaker of a scope is to tripping: it trips at value >= threshold."""

    scope: Scope
    breaker: str
    value: float
    threshold: float


class BreakerTrip(NamedTuple):
    breaker: str
    mode: TriggerMode
    message: str


@dataclass
class _Meters:
    """What one scope's breakers remember between samples."""

    levels: dict[Slot, float] = field(default_factory=dict)
    breaches: dict[Slot, int] = field(default_factory=dict)
    # Per event breaker: (first report, latest report, count) of each slot of its window.
    events: dict[str, deque[tuple[float, float, int]]] = field(default_factory=dict)
    totals: dict[str, int] = field(default_factory=dict)
    losses: int = 0
    peak_equity: float = 0.0
    last_tick: float | None = None
    stale: bool = False
    last_seen: float = 0.0  # the last sample, or when eviction last chose to keep it
    # breaker -> until when its condition counts as holding with no evidence (restart)
    unconfirmed: dict[str, float] = field(default_factory=dict)


def event_count(value: float) -> int:
    """Event metrics carry a whole number of events; 0 (the proto default) means one. A
    count beyond MAX_EVENTS_PER_REPORT is clamped to it (and still trips): a flood of
    errors must never be the reason a breaker stays quiet."""
    if not 0 <= value < float("inf") or (value <= MAX_EVENTS_PER_REPORT
                                          and value != int(value)):
        raise InvalidArgument("value", f"must be a whole number of events, got {value!r}")
    return min(int(value), MAX_EVENTS_PER_REPORT) or 1


def check_metric_value(metric: Metric, value: float) -> None:
    """Reject a sample that cannot mean anything for its metric."""
    if value != value or value in (float("inf"), float("-inf")):
        raise InvalidArgument("value", f"must be a finite number, got {value!r}")
    if metric in EVENT_BREAKERS:
        event_count(value)
    elif metric is Metric.SYSTEM_HEALTH and value not in (0.0, 1.0, HEALTH_CRITICAL):
        raise InvalidArgument("value", "system health is 0 (ok), 1 (degraded) or 2 (critical)")
    elif metric in LEVEL_BREAKERS and value < 0:
        raise InvalidArgument("value", f"{metric.name.lower()} is a positive percentage")
    elif metric is Metric.EQUITY and not 0 <= value <= MAX_EQUITY:
        raise InvalidArgument("value", f"equity must be within 0..{MAX_EQUITY:g}")


class Breakers:
    """Evaluates samples against the rules in force and remembers what each scope reported."""

    def __init__(self, settings: BreakerSettings) -> None:
        self._settings = settings
        self._meters: dict[Scope, _Meters] = {}  # the least recently used first
        self._feeds: dict[Scope, _Meters] = {}  # scopes that watch a feed
        self._feeds_due: Deadlines[Scope] = Deadlines()  # when each may go stale
        rules = [*settings.defaults.values(),
                 *(r for overrides in settings.overrides.values() for r in overrides.values())]
        self._longest_window = max((r.window_s for r in rules), default=0.0)

    def __len__(self) -> int:
        """How many scopes have evidence."""
        return len(self._meters)

    def __contains__(self, scope: object) -> bool:
        return scope in self._meters

    def scopes(self) -> Iterable[Scope]:
        """The scopes with evidence, and those watching a feed."""
        return itertools.chain(self._meters, self._feeds)

    def record(self, scope: Scope, metric: Metric, value: float, now: float) -> list[BreakerTrip]:
        """Record one (validated) sample; return the breakers it trips."""
        meters = self._meters.pop(scope, None) or _Meters()  # re-inserted: newest last
        self._meters[scope] = meters
        meters.last_seen = now
        trip: BreakerTrip | None = None
        if metric in LEVEL_BREAKERS:
            trip = self._level(scope, meters, Slot(LEVEL_BREAKERS[metric]), value)
        elif metric in EVENT_BREAKERS:
            trip = self._event(scope, meters, EVENT_BREAKERS[metric], event_count(value), now)
        elif metric is Metric.EQUITY:
            meters.peak_equity = max(meters.peak_equity, value)
            if meters.peak_equity > 0.0:
                drawdown = (meters.peak_equity - value) / meters.peak_equity * 100.0
                trip = self._level(scope, meters, DERIVED_DRAWDOWN, drawdown)
        elif metric is Metric.TRADE_RESULT:
            return self._trade(scope, meters, value, now)
        elif metric is Metric.DATA_FEED_TICK:
            meters.last_tick, meters.stale = now, False
            self._feeds[scope] = meters
            self._watch_feed(scope, meters)
            meters.unconfirmed.pop(Breaker.DATA_FEED_STALE, None)
        elif metric is Metric.DATA_FEED_CORRUPT:
            trip = self._fire(scope, Breaker.DATA_FEED_CORRUPT, "data feed reported corrupt")
        return [trip] if trip else []

    def stale(self, now: float) -> list[tuple[Scope, BreakerTrip]]:
        """Scopes whose data feed has not ticked within its window and whose staleness
        has not tripped yet in this silence (see mark_stale). Only the feeds due are
        looked at; each overdue one stays due, so the next run finds it again until its
        trip is applied (a run may only plan, or its trip may fail to store)."""
        trips = []
        for scope in self._feeds_due.pop_due(now):
            meters = self._feeds[scope]
            self._watch_feed(scope, meters)
            if self.overdue(scope, now):
                rule = self._settings.rule(scope, Breaker.DATA_FEED_STALE)
                trips.append((scope, BreakerTrip(Breaker.DATA_FEED_STALE, rule.mode,
                                                 f"no data feed tick for {rule.window_s:g}s")))
        return trips

    def _watch_feed(self, scope: Scope, meters: _Meters) -> None:
        """Queue the feed for the time it goes stale, unless its staleness has tripped
        already in this silence (a tick, or a reset lifting it, queues it again)."""
        rule = self._settings.rule(scope, Breaker.DATA_FEED_STALE)
        if meters.last_tick is not None and not meters.stale and rule.enabled:
            self._feeds_due.schedule(scope, meters.last_tick + rule.window_s)

    def overdue(self, scope: Scope, now: float) -> bool:
        """Whether this scope's feed is stale now and its staleness has not tripped yet."""
        meters = self._feeds.get(scope)
        if meters is None or meters.last_tick is None or meters.stale:
            return False
        rule = self._settings.rule(scope, Breaker.DATA_FEED_STALE)
        return rule.enabled and now - meters.last_tick >= rule.window_s

    def feeds(self) -> list[Scope]:
        """Every scope whose feed is watched (`ticked`)."""
        return [scope for scope, meters in self._meters.items()
                if meters.last_tick is not None]

    def ticked(self, scope: Scope) -> bool:
        """Whether this scope's feed is watched: it has ticked (or, after a restart, its
        staleness is latched and assumed to hold)."""
        meters = self._meters.get(scope)
        return meters is not None and meters.last_tick is not None

    def any_fresh_feed(self) -> bool:
        """Whether a feed's staleness may still be ahead: one is queued, its staleness not
        tripped (review 46a: every feed was walked, on every run)."""
        return len(self._feeds_due) > 0

    def mark_stale(self, scope: Scope) -> None:
        """The stale trip is durable: don't trip again until the feed ticks. Set on apply,
        not on plan, so a trip that could not be stored is planned again."""
        meters = self._meters.get(scope)
        if meters is not None:
            meters.stale = True

    def holding(self, scope: Scope, now: float) -> list[str]:
        """The breakers of this scope whose condition still holds now."""
        meters = self._meters.get(scope)
        if meters is None:
            return []
        held = [name for name, until in meters.unconfirmed.items() if now < until]
        held += [slot.breaker for slot, value in meters.levels.items()
                 if self._holds(scope, slot.breaker, value)]
        held += [name for name in meters.events if self._holds(
            scope, name, self._prune(meters, name, self._settings.rule(scope, name), now))]
        if self._holds(scope, Breaker.CONSECUTIVE_LOSSES, meters.losses):
            held.append(Breaker.CONSECUTIVE_LOSSES)
        stale = self._settings.rule(scope, Breaker.DATA_FEED_STALE)
        if stale.enabled and meters.last_tick is not None \
                and now - meters.last_tick >= stale.window_s:
            held.append(Breaker.DATA_FEED_STALE)
        return list(dict.fromkeys(held))  # once each, in the order found

    def holding_may_end_at(self, scope: Scope, now: float) -> float:
        """The earliest time after `now` at which a condition of this scope may stop
        holding by time alone: an assumed one's end (assume_holding), or the oldest slot
        of an event window leaving it; infinity if only a sample can end them."""
        meters = self._meters.get(scope)
        if meters is None:
            return float("inf")
        ends = [until for until in meters.unconfirmed.values() if until > now]
        for name, window in meters.events.items():
            rule = self._settings.rule(scope, name)
            self._prune(meters, name, rule, now)  # what left it already, as holding() does
            if window:
                ends.append(window[0][1] + rule.window_s)
        return min(ends, default=float("inf"))

    def stale_at(self, scope: Scope, now: float) -> float:
        """When this scope's feed, not stale now, goes stale if it does not tick (no
        earlier than `now`); infinity if it is stale already, or has no feed."""
        meters = self._meters.get(scope)
        rule = self._settings.rule(scope, Breaker.DATA_FEED_STALE)
        if meters is None or meters.last_tick is None or not rule.enabled \
                or now - meters.last_tick >= rule.window_s:
            return float("inf")
        return max(meters.last_tick + rule.window_s, now)

    def assume_holding(self, scope: Scope, breaker: str, since: float, now: float) -> None:
        """After a restart: count this breaker's condition (its latch set at `since`) as
        holding until a fresh sample clears it (for an event window, until a whole window
        has passed since `now`), its evidence as strict as the latch says it was (reviews
        47j, 48a): meanwhile the next event re-trips the window; a level's breach count is
        one short of a trip, so the next breach re-trips it; a feed with no tick known
        went stale at `since`, so a forced reset gives it a fresh window, as one that ran
        through and saw no tick since (a tick between the two is lost with the journal:
        known gap 21)."""
        if breaker in ONE_OFF:
            return  # an event: no condition to hold
        meters = self._meters.pop(scope, None) or _Meters()  # re-inserted: newest last, or
        self._meters[scope] = meters  # it holds older ones back from eviction (review 48a)
        meters.last_seen = max(meters.last_seen, now)
        rule = self._settings.rule(scope, breaker)
        until = now + rule.window_s if breaker in EVENT_WINDOWS else float("inf")
        meters.unconfirmed[breaker] = max(until, meters.unconfirmed.get(breaker, until))
        if breaker in LEVEL_BREAKERS.values():  # (a derived drawdown's count starts over
            slot = Slot(Breaker(breaker))        # with its peak: the first sample ends it)
            meters.breaches[slot] = max(meters.breaches.get(slot, 0), rule.consecutive - 1)
        if breaker == Breaker.DATA_FEED_STALE and meters.last_tick is None:
            meters.last_tick, meters.stale = since, True

    def assumed_clear(self, scope: Scope, breaker: str, now: float) -> None:
        """A history applied after a restart has a checked reset or a re-arm lift
        `breaker` at `now`: its condition did not hold then, so what the restart assumed
        of it goes (review 48b: kept, a scope stayed COOLING_DOWN for days, the next
        event re-tripped it, and idle scopes filled `limits.max_scopes_with_evidence`);
        an event window holds one event short of its threshold, reported at the trip,
        until it leaves (48d: emptied, the next event did not re-trip where the trip's
        own reports still counted); a feed runs a window from then, as the tick that
        showed it live (lost with the journal) would have it; a losing streak starts
        again."""
        meters = self._meters.get(scope)
        until = None if meters is None else meters.unconfirmed.pop(breaker, None)
        if meters is None or until is None:
            return
        rule = self._settings.rule(scope, breaker)
        if breaker in EVENT_WINDOWS and until > now:  # as many as may be left, with those
            short = math.ceil(rule.threshold) - 1 - self._prune(  # it holds (review 48f:
                meters, breaker, rule, now)  # on top of them, a reset was refused)
            if short > 0:
                tripped = until - rule.window_s  # when the latch was set
                meters.events.setdefault(breaker, deque()).append((tripped, tripped, short))
                meters.totals[breaker] = meters.totals.get(breaker, 0) + short
        elif breaker in LEVEL_BREAKERS.values():
            meters.breaches[Slot(Breaker(breaker))] = 0
        elif breaker == Breaker.CONSECUTIVE_LOSSES:
            meters.losses = 0
        elif breaker == Breaker.DATA_FEED_STALE:
            meters.stale, meters.last_tick = False, now
            self._feeds[scope] = meters
            self._watch_feed(scope, meters)

    def idle_span(self, idle_s: float) -> float:
        """How long a scope's evidence is kept with no sample: idle_s, and at least the
        longest window."""
        return max(idle_s, self._longest_window)

    def evict(self, now: float, idle_s: float, keep: Callable[[Scope], bool]) -> int:
        """Forget the evidence of scopes with no sample for idle_s (`idle_span`), oldest
        first, unless `keep` says the scope still needs it or it watches a feed (a dead
        feed must still go stale). How many were forgotten or kept (a kept one is looked
        at again only after another idle_s): either changes what a later run forgets, so
        the journal must record the run, or a restart would forget evidence that a reset
        is refused on."""
        cutoff = now - idle_s
        meters, changed = self._meters, 0
        for scope, oldest in expired_run(meters, lambda m: m.last_seen <= cutoff):
            del meters[scope]
            changed += 1
            # A peak equity is what total drawdown counts from (review 34h: forgotten,
            # equity reported once a day never built a drawdown on a strategy or GLOBAL);
            # a losing streak and a breach count end only by a sample (review 36p: nine
            # losses, a quiet weekend, and the tenth began a new streak).
            # So is a restart's assumption that a condition holds, as the evidence it
            # stands for would be (review 47j: evicted once the scope was ARMED, a plain
            # reset was accepted that one that ran through refused).
            if keep(scope) or oldest.last_tick is not None or oldest.peak_equity > 0.0 \
                    or oldest.losses or any(oldest.breaches.values()) \
                    or any(until > now for until in oldest.unconfirmed.values()):
                oldest.last_seen = now  # kept: looked at again after another idle_s
                meters[scope] = oldest
        return changed

    def readings(self, now: float, most: int | None = None) -> list[Reading]:
        """The current value and threshold of every enabled breaker a scope has evidence
        for (for dashboards: how close is each one to tripping), for at most `most`
        scopes, the most recently reported first."""
        readings = []
        for scope in itertools.islice(reversed(self._meters), most):
            meters = self._meters[scope]
            values: dict[str, float] = {slot.breaker: value
                                        for slot, value in meters.levels.items()}
            values.update((name, float(self._prune(meters, name, self.rule(scope, name), now)))
                          for name in meters.events)
            values[Breaker.CONSECUTIVE_LOSSES] = float(meters.losses)
            if meters.last_tick is not None:
                values[Breaker.DATA_FEED_STALE] = now - meters.last_tick  # against window_s
            for name, value in values.items():
                rule = self.rule(scope, name)
                if rule.enabled:
                    limit = rule.window_s if name == Breaker.DATA_FEED_STALE else rule.threshold
                    readings.append(Reading(scope, name, value, limit))
        return readings

    def _holds(self, scope: Scope, name: str, value: float) -> bool:
        rule = self._settings.rule(scope, name)
        return rule.enabled and value >= rule.threshold

    def rearm(self, scope: Scope, breaker: str, now: float) -> None:
        """An accepted reset lifted `breaker`'s latch. It erases no evidence but what that
        latch owns: a losing streak restarts only when the streak's latch is lifted; a
        feed stale at the reset (found so, assumed so after a restart, or silent past its
        window by the last tick the journal holds) gets a fresh window from now, so if it
        stays dead it trips again (a forced reset must not silence it for good; review
        47a: an assumed one was never watched again; 47f: a restart before the reset,
        with no timer run's mark, tripped it a window early).
        With them goes a restart's assumption that their condition holds, as a sidecar
        that ran through has none left then; any other breaker's stays until a sample
        clears it, as its evidence would (review 47h: dropped, a restarted sidecar
        re-armed a scope whose open loss one that ran through still held)."""
        meters = self._meters.get(scope)
        if meters is None:
            return
        if breaker == Breaker.CONSECUTIVE_LOSSES:
            meters.losses = 0
            meters.unconfirmed.pop(breaker, None)
        elif breaker == Breaker.DATA_FEED_STALE and meters.last_tick is not None:
            # Assumed stale with a later tick known (the journal's: review 47j), the window
            # runs from that tick, as one that ran through has it.
            meters.unconfirmed.pop(breaker, None)
            if meters.stale or now - meters.last_tick \
                    >= self._settings.rule(scope, breaker).window_s:
                meters.stale, meters.last_tick = False, now
            self._feeds[scope] = meters
            self._watch_feed(scope, meters)

    def rule(self, scope: Scope, name: str) -> BreakerRule:
        return self._settings.rule(scope, name)

    def _fire(self, scope: Scope, name: str, message: str) -> BreakerTrip | None:
        rule = self._settings.rule(scope, name)
        return BreakerTrip(name, rule.mode, message) if rule.enabled else None

    def _level(self, scope: Scope, meters: _Meters, slot: Slot,
               value: float) -> BreakerTrip | None:
        name = slot.breaker
        rule = self._settings.rule(scope, name)
        meters.levels[slot] = value
        if not slot.derived:  # a derived value is no evidence about the reported one
            meters.unconfirmed.pop(name, None)
        if not rule.enabled or value < rule.threshold:
            meters.breaches[slot] = 0
            return None
        breaches = meters.breaches[slot] = meters.breaches.get(slot, 0) + 1
        if breaches < rule.consecutive:
            return None
        return BreakerTrip(name, rule.mode, f"{name} {value:g} >= {rule.threshold:g}")

    def _event(self, scope: Scope, meters: _Meters, name: str, count: int,
               now: float) -> BreakerTrip | None:
        rule = self._settings.rule(scope, name)
        window = meters.events.setdefault(name, deque())
        if window and now - window[-1][0] < rule.window_s / EVENT_SLOTS:
            # One slot for the reports within 1/EVENT_SLOTS of the window from the first
            # of them, kept as long as the latest: never fewer in the window than came,
            # none held more than a slot longer, and a window's memory bounded (review
            # 41d: an entry per report, for up to a year; review 42b: a slot reaching from
            # its latest report took a steady stream in whole, for good, and tripped it)
            first, latest, counted = window[-1]
            window[-1] = (first, max(now, latest), counted + count)
        else:
            window.append((now, now, count))
        meters.totals[name] = meters.totals.get(name, 0) + count
        total = self._prune(meters, name, rule, now)
        if not rule.enabled:
            return None
        if total >= rule.threshold:
            return BreakerTrip(name, rule.mode,
                               f"{name}: {total} in {rule.window_s:g}s >= {rule.threshold:g}")
        if meters.unconfirmed.get(name, now) > now:  # a restart's: assume_holding
            return BreakerTrip(name, rule.mode, f"{name}: {total} in {rule.window_s:g}s,"
                               f" after a restart that lost the {rule.threshold:g} or more"
                               " its latch stands for")
        return None

    def _trade(self, scope: Scope, meters: _Meters, pnl: float, now: float) -> list[BreakerTrip]:
        if pnl > 0:
            meters.losses = 0
            meters.unconfirmed.pop(Breaker.CONSECUTIVE_LOSSES, None)
            return []
        if pnl == 0:
            return []
        meters.losses += 1
        trips = [self._event(scope, meters, Breaker.FAILED_TRADES, 1, now)]
        losses = self._settings.rule(scope, Breaker.CONSECUTIVE_LOSSES)
        if losses.enabled and meters.losses >= losses.threshold:
            trips.append(BreakerTrip(Breaker.CONSECUTIVE_LOSSES, losses.mode,
                                     f"{meters.losses} consecutive losing trades"))
        return [trip for trip in trips if trip]

    @staticmethod
    def _prune(meters: _Meters, name: str, rule: BreakerRule, now: float) -> int:
        window = meters.events.get(name)
        while window and window[0][1] <= now - rule.window_s:
            meters.totals[name] -= window.popleft()[2]
        return meters.totals.get(name, 0)
