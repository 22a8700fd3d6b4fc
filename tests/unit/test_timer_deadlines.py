"""A timer run looks only at what is due (review 45: 90,000 stale feeds were walked ten
times a second, 77 ms a run), and finds exactly what a walk of everything would: every
feed past its window whose staleness has not tripped, every executor past its TTL whose
loss has not, again on each run until its trip is applied, and again after a reset."""

from __future__ import annotations

import math

from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from ess_sidecar.domain.breakers import Metric
from ess_sidecar.domain.deadlines import EARLY_S, Deadlines
from ess_sidecar.domain.scopes import Scope, ScopeKind
from ess_sidecar.domain.states import Cause

from .conftest import T0, make_engine, report, reset, rules, run

SCOPES = [Scope(ScopeKind.SYMBOL, s) for s in ("X", "Y")] \
    + [Scope(ScopeKind.STRATEGY, s) for s in ("s1", "s2")]
EXECUTORS = ("e1", "e2")
WINDOW_S, TTL_S = 30.0, 5.0


class TimersMachine(RuleBasedStateMachine):
    """Ticks, beats, deregistrations, time (steps landing on the deadlines among them),
    timer runs applied or only planned (a write that failed), resets and restarts'
    assumptions, against the walk of every feed and every registration."""

    def __init__(self) -> None:
        super().__init__()
        self.engine = make_engine(breakers=rules(data_feed_stale={"window_s": WINDOW_S}))
        self.now = T0
        self.fed: set[Scope] = set()

    @rule(scope=st.sampled_from(SCOPES))
    def tick(self, scope: Scope) -> None:
        report(self.engine, scope, Metric.DATA_FEED_TICK, 1.0, self.now)
        self.fed.add(scope)

    @rule(executor=st.sampled_from(EXECUTORS), scope=st.sampled_from(SCOPES),
          deregister=st.booleans())
    def beat(self, executor: str, scope: Scope, deregister: bool) -> None:
        self.engine.heartbeat(executor, scope, TTL_S, self.now, deregister=deregister)

    @rule(step=st.one_of(st.sampled_from([0.0, EARLY_S, TTL_S, WINDOW_S, WINDOW_S - EARLY_S,
                                          TTL_S + 1e-9]),
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
        if self.engine.current(scope) is not None:
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
        planned = {(t.scope, t.cause) for t in self.engine.plan_timers(now).transitions}
        for scope in self.fed:
            if breakers.overdue(scope, now) and self.engine.current(scope) is None:
                assert (scope, Cause.BREAKER) in planned


TimersMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40,
                                           deadline=None)
TestTimers = TimersMachine.TestCase


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
