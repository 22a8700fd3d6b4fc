"""A timer run looks only at what is due (review 45: 90,000 stale feeds were walked ten
times a second, 77 ms a run), and finds exactly what a walk of everything would: every
feed past its window whose staleness has not tripped, every executor past its TTL whose
loss has not, again on each run until its trip is applied, and again after a reset; and
every scope whose re-arm delay has ended, or whose auto re-arming latch may be lifted."""

from __future__ import annotations

import dataclasses
import math

from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from ess_sidecar.domain.breakers import Breaker, Metric
from ess_sidecar.domain.deadlines import EARLY_S, Deadlines
from ess_sidecar.domain.scopes import Scope, ScopeKind
from ess_sidecar.domain.config import ResumePolicy
from ess_sidecar.domain.engine import GuardEngine
from ess_sidecar.domain.states import Cause, State, TriggerMode

from .conftest import T0, make_engine, report, reset, rules, run

SCOPES = [Scope(ScopeKind.SYMBOL, s) for s in ("X", "Y")] \
    + [Scope(ScopeKind.STRATEGY, s) for s in ("s1", "s2")]
EXECUTORS = ("e1", "e2")
WINDOW_S, TTL_S, COOLDOWN_S = 30.0, 5.0, 20.0


class TimersMachine(RuleBasedStateMachine):
    """Ticks, beats, deregistrations, time (steps landing on the deadlines among them),
    timer runs applied or only planned (a write that failed), resets and restarts'
    assumptions, against the walk of every feed and every registration."""

    def __init__(self) -> None:
        super().__init__()
        again = {"auto_rearm": True}  # latches that lift themselves once clear
        every = rules(data_feed_stale={"window_s": WINDOW_S, **again}, heartbeat_lost=again,
                      api_errors={"threshold": 2, "window_s": 10.0, **again},
                      open_loss_pct={"consecutive": 2})  # holds, unlatched, once of two
        off = {name: dataclasses.replace(every[name], enabled=False)  # nothing to trip
               for name in (Breaker.DATA_FEED_STALE, Breaker.HEARTBEAT_LOST)}
        policy = {ScopeKind.SYMBOL: ResumePolicy(COOLDOWN_S, 3.0),  # through COOLING_DOWN
                  ScopeKind.STRATEGY: ResumePolicy(COOLDOWN_S, 0.0)}
        self.engine = make_engine(breakers=every, policy=policy, overrides={
            SCOPES[1]: {Breaker.DATA_FEED_STALE: off[Breaker.DATA_FEED_STALE]},
            SCOPES[2]: {Breaker.HEARTBEAT_LOST: off[Breaker.HEARTBEAT_LOST]}})
        self.now = T0
        self.fed: set[Scope] = set()

    @rule(scope=st.sampled_from(SCOPES))
    def tick(self, scope: Scope) -> None:
        report(self.engine, scope, Metric.DATA_FEED_TICK, 1.0, self.now)
        self.fed.add(scope)

    @rule(scope=st.sampled_from(SCOPES), errors=st.integers(1, 3))
    def api_errors(self, scope: Scope, errors: int) -> None:
        report(self.engine, scope, Metric.API_ERROR, float(errors), self.now)

    @rule(scope=st.sampled_from(SCOPES), loss=st.sampled_from([0.0, 11.0]))
    def open_loss(self, scope: Scope, loss: float) -> None:
        report(self.engine, scope, Metric.OPEN_LOSS_PCT, loss, self.now)

    @rule(executor=st.sampled_from(EXECUTORS), scope=st.sampled_from(SCOPES),
          deregister=st.booleans())
    def beat(self, executor: str, scope: Scope, deregister: bool) -> None:
        self.engine.heartbeat(executor, scope, TTL_S, self.now, deregister=deregister)

    @rule(step=st.one_of(st.sampled_from([0.0, EARLY_S, TTL_S, WINDOW_S, WINDOW_S - EARLY_S,
                                          TTL_S + 1e-9, COOLDOWN_S, 3.0, 10.0]),
                         st.floats(0, 2 * WINDOW_S)))
    def advance(self, step: float) -> None:
        self.now += step

    @rule(applied=st.booleans())
    def timers(self, applied: bool) -> None:
        self.engine.expire(self.now)
        plan = self.engine.plan_timers(self.now)
        if applied:
            run(self.engine, plan)

    @rule(scope=st.sampled_from(SCOPES))
    def forced_reset(self, scope: Scope) -> None:
        current = self.engine.current(scope)
        if current is not None and current.state is not State.COOLING_DOWN:
            reset(self.engine, scope, self.now, force=True)

    @rule(scope=st.sampled_from(SCOPES))
    def restarted_lost(self, scope: Scope) -> None:
        self.engine.heartbeats.assume_lapsed(scope)

    @invariant()
    def a_run_finds_what_a_walk_of_everything_finds(self) -> None:
        breakers, heartbeats, now = self.engine.breakers, self.engine.heartbeats, self.now
        assert {scope for scope, _ in breakers.stale(now)} == \
            {scope for scope in self.fed if breakers.overdue(scope, now)}
        assert {(r.executor_id, r.scope) for r in heartbeats.lapse(now)} == \
            {(r.executor_id, r.scope) for r in heartbeats.registrations()
             if heartbeats.overdue(r.executor_id, r.scope, now)}
        planned = self.engine.plan_timers(now).transitions
        for scope in self.fed:
            if breakers.overdue(scope, now) and self.engine.current(scope) is None:
                assert (scope, Cause.BREAKER) in {(t.scope, t.cause) for t in planned}
        assert {t.scope for t in planned if t.cause is Cause.REARM} == \
            rearms_walked(self.engine, now, {t.scope for t in planned
                                             if t.cause is not Cause.REARM})


def rearms_walked(engine: GuardEngine, now: float, planned: set[Scope]) -> set[Scope]:
    """The scopes a timer run re-arms, found as before the queue: every restricted scope
    looked at, but those the run planned another transition for."""
    walked = set()
    for current in engine.restricted():
        if current.scope in planned:
            continue
        if current.state is State.COOLING_DOWN and current.rearm_at is not None \
                and now >= current.rearm_at:
            if not engine.holding(current.scope, now):
                walked.add(current.scope)
        elif engine._auto_rearming(current, now):
            walked.add(current.scope)
    return walked


TimersMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40,
                                           deadline=None)
TestTimers = TimersMachine.TestCase


def test_keys_due_at_the_same_time_come_in_their_texts_order_not_as_scheduled() -> None:
    """Stop 62 (the restart twin): the sidecar that stayed up had queued one stale feed
    before the other, a restart queued them the other way round, and the two trips, due
    at the same instant, got each other's versions."""
    a1, s1 = Scope(ScopeKind.ACCOUNT, "a1"), Scope(ScopeKind.STRATEGY, "s1")
    for first, second in ((a1, s1), (s1, a1)):
        deadlines: Deadlines[Scope] = Deadlines()
        deadlines.schedule(first, 36.0)
        deadlines.schedule(second, 36.0)
        deadlines.schedule(Scope(ScopeKind.SYMBOL, "Z"), 35.0)
        assert deadlines.pop_due(40.0) == [Scope(ScopeKind.SYMBOL, "Z"), a1, s1]


def test_a_key_is_due_from_its_earliest_time_once() -> None:
    deadlines: Deadlines[str] = Deadlines()
    deadlines.schedule("a", 10.0)
    deadlines.schedule("a", 20.0)  # later: it is looked at from 10 already
    deadlines.schedule("b", 5.0)
    deadlines.schedule("b", 3.0)  # earlier: from 3
    assert deadlines.pop_due(2.0) == []
    assert deadlines.pop_due(3.0) == ["b"]
    assert deadlines.pop_due(9.0) == []
    assert deadlines.pop_due(10.0) == ["a"]
    assert (deadlines.pop_due(100.0), len(deadlines)) == ([], 0)  # b's later entry spent


@given(st.one_of(st.floats(0, 10), st.floats(1e9, 4e9)), st.floats(0.001, 3600))
@example(2.1289119484551473, 4.155641386988007)  # 6.284553535643247 rounds up, past it
def test_a_deadline_rounded_in_floats_is_never_late(start: float, window: float) -> None:
    """`start + window` may round past the instant `now - start >= window` first holds:
    at the first such instant, the key is due."""
    now = start + window
    while now - start >= window:
        now = math.nextafter(now, -math.inf)
    while not now - start >= window:
        now = math.nextafter(now, math.inf)
    deadlines: Deadlines[str] = Deadlines()
    deadlines.schedule("feed", start + window)
    assert deadlines.pop_due(now) == ["feed"]


def test_a_key_discarded_is_never_due_and_the_heap_keeps_to_the_keys_queued() -> None:
    """Review 46a: 200,000 executors deregistered held their entries (65 MB) until their
    TTLs passed."""
    deadlines: Deadlines[int] = Deadlines()
    for key in range(10_000):
        deadlines.schedule(key, 3600.0)
    for key in range(10, 10_000):
        deadlines.discard(key)
    assert len(deadlines) == 10 and len(deadlines._heap) <= 2 * 10 + 64
    assert deadlines.pop_due(3600.0) == list(range(10))


def test_a_silent_executor_whose_breaker_is_off_is_taken_once_not_every_run() -> None:
    """Review 46a: with heartbeat_lost off, a lapsed executor was never marked lost, so
    every run took it and queued it again (100,000 of them: 700 ms a run)."""
    engine = make_engine(breakers=rules(heartbeat_lost={"enabled": False}))
    scope = SCOPES[0]
    engine.heartbeat("e1", scope, TTL_S, T0)
    run(engine, engine.plan_timers(T0 + TTL_S + 1))  # lapsed: nothing trips
    assert engine.heartbeats.lapse(T0 + TTL_S + 2) == []
    engine.heartbeat("e1", scope, TTL_S, T0 + TTL_S + 3)  # back: watched again
    assert [r.executor_id for r in engine.heartbeats.lapse(T0 + 2 * TTL_S + 4)] == ["e1"]


def test_no_deadline_is_ahead_once_the_executors_and_feeds_are_gone_or_stale() -> None:
    """What a restart's clock must not lose (awaits_deadline) is read from the queues, not
    from every registration and feed (review 46a: both walked on every idle run)."""
    engine = make_engine(breakers=rules(data_feed_stale={"window_s": WINDOW_S}))
    assert not engine.awaits_deadline(T0)
    engine.heartbeat("e1", SCOPES[0], TTL_S, T0)
    assert engine.awaits_deadline(T0)
    engine.heartbeat("e1", SCOPES[0], TTL_S, T0, deregister=True)
    assert not engine.awaits_deadline(T0)
    report(engine, SCOPES[1], Metric.DATA_FEED_TICK, 1.0, T0)
    assert engine.awaits_deadline(T0 + WINDOW_S - 1)
    run(engine, engine.plan_timers(T0 + WINDOW_S))  # stale: tripped, and latched
    run(engine, engine.plan_timers(T0 + WINDOW_S + 1))
    assert not engine.awaits_deadline(T0 + WINDOW_S + 1)


def test_a_latch_held_past_its_cooldown_by_its_window_re_arms_when_the_events_leave_it(
        ) -> None:
    """The timers look at an auto re-arming scope again when a condition that holds may
    end by time alone (an event leaving its window), with no sample to wake them."""
    engine = make_engine(breakers=rules(api_errors={"threshold": 2, "window_s": 10.0,
                                                    "auto_rearm": True}),
                         policy={ScopeKind.STRATEGY: ResumePolicy(COOLDOWN_S, 0.0)})
    scope, now = SCOPES[2], T0
    report(engine, scope, Metric.API_ERROR, 2.0, now)  # tripped
    report(engine, scope, Metric.API_ERROR, 2.0, now + COOLDOWN_S - 5)  # still holding
    for step in range(int(COOLDOWN_S + 10) * 10):  # ten runs a second
        now = T0 + step / 10
        run(engine, engine.plan_timers(now))
        if engine.current(scope) is None:
            break
    assert engine.current(scope) is None
    assert now >= T0 + COOLDOWN_S - 5 + 10  # not before the second report left the window


def test_a_re_arm_held_back_goes_through_once_a_latched_executor_lapses_again() -> None:
    """Review 46c: a re-arm that would lift every latch while an unlatched breaker holds
    is held back; once one latched executor lapses again, lifting the other latch alone is
    allowed, and the walk of every scope made it on its next run. The queue waited for a
    sample."""
    engine = make_engine(
        breakers=rules(system_health={"auto_rearm": True},
                       heartbeat_lost={"auto_rearm": True, "mode": TriggerMode.REDUCE_ONLY},
                       open_loss_pct={"consecutive": 2}),
        policy={ScopeKind.SYMBOL: ResumePolicy(0.0, 0.0)})
    scope = SCOPES[1]
    engine.heartbeat("e", scope, TTL_S, T0)
    report(engine, scope, Metric.SYSTEM_HEALTH, 2.0, T0)  # system_health latched
    run(engine, engine.plan_timers(T0 + 6))  # e lapsed: heartbeat_lost latched too
    report(engine, scope, Metric.OPEN_LOSS_PCT, 11.0, T0 + 6)  # holds, once of two
    report(engine, scope, Metric.SYSTEM_HEALTH, 0.0, T0 + 7)
    engine.heartbeat("e", scope, TTL_S, T0 + 7)  # back: both would lift, open loss holds
    assert run(engine, engine.plan_timers(T0 + 7)) == []
    lifted = run(engine, engine.plan_timers(T0 + 12.5))  # e lapsed again at +12
    assert [(t.state, [latch.name for latch in t.held()]) for t in lifted] == [
        (State.REDUCE_ONLY, [Breaker.HEARTBEAT_LOST])]
