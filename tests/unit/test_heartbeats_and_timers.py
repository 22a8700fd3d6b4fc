"""What time alone causes: stale data feeds and lost executor heartbeats."""

from __future__ import annotations

import math

import pytest

from ess_sidecar.domain.access import Principal, Role
from ess_sidecar.domain.breakers import Metric
from ess_sidecar.domain.commands import HeartbeatSeen
from ess_sidecar.domain.config import ResumePolicy
from ess_sidecar.domain.decisions import DecisionReason
from ess_sidecar.domain.errors import InvalidArgument, PermissionDenied, ResetRefused
from ess_sidecar.domain.heartbeats import Heartbeats
from ess_sidecar.domain.scopes import GLOBAL, ScopeKind
from ess_sidecar.domain.states import Cause, State, TriggerMode

from .conftest import T0, account, make_engine, order, report, reset, rules, run, strategy, \
    symbol, timers, trip

COOLDOWN = 15 * 60


def tick(engine, now, scope=None):
    return report(engine, scope or symbol(), Metric.DATA_FEED_TICK, 1, now)


def test_stale_feed_trips_after_thirty_seconds_without_tick(engine):
    tick(engine, T0)
    assert timers(engine, T0 + 29.9) == []
    (transition,) = timers(engine, T0 + 30)
    assert (transition.scope, transition.state, transition.cause, transition.breaker) == (
        symbol(), State.TRIPPED, Cause.BREAKER, "data_feed_stale")


def test_ticks_keep_the_feed_fresh(engine):
    for second in range(0, 300, 10):
        tick(engine, T0 + second)
        assert timers(engine, T0 + second + 9) == []


def test_a_feed_that_never_ticked_is_not_stale(engine):
    assert timers(engine, T0 + 3600) == []


def test_stale_feed_trips_once_per_episode(engine):
    tick(engine, T0)
    assert timers(engine, T0 + 30) != []
    reset(engine, symbol(), T0 + 31, force=True)
    assert timers(engine, T0 + 60) == []  # still the same silence
    tick(engine, T0 + 61)
    assert timers(engine, T0 + 91) != []


def test_reset_refused_while_the_feed_is_still_stale(engine):
    tick(engine, T0)
    timers(engine, T0 + 30)
    with pytest.raises(ResetRefused, match="data_feed_stale"):
        reset(engine, symbol(), T0 + 30 + COOLDOWN)
    tick(engine, T0 + 30 + COOLDOWN)
    assert reset(engine, symbol(), T0 + 30 + COOLDOWN)[0].state is State.ARMED


def test_heartbeat_lost_trips_the_executor_scope(engine):
    assert engine.heartbeat("exec-1", strategy(), 5.0, T0) is True
    assert timers(engine, T0 + 5) == []
    (transition,) = timers(engine, T0 + 5.1)
    assert (transition.scope, transition.state, transition.cause, transition.breaker) == (
        strategy(), State.TRIPPED, Cause.HEARTBEAT_LOST, "heartbeat_lost")
    assert "exec-1" in transition.reason
    assert engine.check(order(), T0 + 6).reason is DecisionReason.SCOPE_TRIPPED
    assert engine.check(order(strategy="other"), T0 + 6).allowed
    assert engine.state_of(GLOBAL) is State.ARMED


def test_heartbeats_within_the_ttl_keep_the_scope_armed(engine):
    engine.heartbeat("exec-1", strategy(), 5.0, T0)
    for second in range(4, 120, 4):
        assert engine.heartbeat("exec-1", strategy(), 5.0, T0 + second) is False
        assert timers(engine, T0 + second + 4.9) == []


def test_a_lost_heartbeat_trips_once_per_silence(engine):
    engine.heartbeat("exec-1", strategy(), 5.0, T0)
    assert timers(engine, T0 + 6) != []
    assert timers(engine, T0 + 6.5) == []  # latched: not tripped again while it lasts


def test_a_forced_reset_rearms_the_dead_mans_switch(engine):
    """Forcing a reset past a dead executor gives it one fresh TTL: still silent after
    that, it trips again (a forced reset must not silence the switch for good)."""
    engine.heartbeat("exec-1", strategy(), 5.0, T0)
    assert timers(engine, T0 + 6) != []
    reset(engine, strategy(), T0 + 7, force=True)
    assert engine.state_of(strategy()) is State.ARMED
    assert timers(engine, T0 + 12) == []
    (again,) = timers(engine, T0 + 12.1)
    assert (again.scope, again.breaker) == (strategy(), "heartbeat_lost")


def test_heartbeats_are_kept_per_executor_and_scope(engine):
    """Registering an executor for a second scope, or deregistering it from one, leaves
    its switch on the other scope armed."""
    engine.heartbeat("exec-1", strategy(), 5.0, T0)
    engine.heartbeat("exec-1", account(), 5.0, T0)
    engine.heartbeat("exec-1", account(), 5.0, T0 + 1, deregister=True)
    (lost,) = timers(engine, T0 + 6)
    assert lost.scope == strategy()


def test_a_deregistered_executor_never_trips(engine):
    engine.heartbeat("exec-1", strategy(), 5.0, T0)
    assert engine.heartbeat("exec-1", strategy(), 5.0, T0 + 1, deregister=True) is True
    assert timers(engine, T0 + 60) == []


def test_a_scopes_switch_counts_only_its_own_registrations_as_they_stand(engine):
    """Registrations are also kept by scope (review 36o: every trip scanned all of them,
    and 6,000 lapsing at once held a Trigger 9 s): one deregistered, or re-registered with
    a new TTL, counts as it stands, and a reset sees only its scope's."""
    engine.heartbeat("gone", strategy(), 5.0, T0)
    engine.heartbeat("gone", strategy(), 5.0, T0, deregister=True)
    engine.heartbeat("slow", strategy(), 5.0, T0)
    engine.heartbeat("slow", strategy(), 50.0, T0)  # the 5 s registration replaced
    engine.heartbeat("other", account(), 5.0, T0)
    (lost,) = timers(engine, T0 + 10)
    assert lost.scope == account()
    assert not engine.heartbeats.lapsed(strategy(), T0 + 10)
    assert reset(engine, account(), T0 + 2_000, force=True)[0].state is State.ARMED
    engine.heartbeat("other", account(), 5.0, T0 + 2_000)  # back: the switch is armed
    engine.heartbeat("slow", strategy(), 50.0, T0 + 2_000)
    assert timers(engine, T0 + 2_004) == []
    assert [t.scope for t in timers(engine, T0 + 2_006)] == [account()]


def test_a_changed_ttl_or_another_scope_is_a_new_registration(engine):
    engine.heartbeat("exec-1", strategy(), 5.0, T0)
    assert engine.heartbeat("exec-1", strategy(), 10.0, T0 + 1) is True
    assert engine.heartbeat("exec-1", GLOBAL, 10.0, T0 + 2) is True
    assert timers(engine, T0 + 10.5) == []  # the 10 s TTL replaced the 5 s one
    assert {t.scope for t in timers(engine, T0 + 12.5)} == {strategy(), GLOBAL}


DESK_A = Principal("desk-a", Role.EXECUTOR)
DESK_B = Principal("desk-b", Role.EXECUTOR)
OPS = Principal("ops", Role.OPERATOR)


def test_another_principals_beats_do_not_keep_an_executor_alive(engine):
    """Review: one process could keep a dead one's switch from firing by beating for its
    executor_id. With authentication on, a registration is bound to the principal that
    made it."""
    engine.heartbeat("exec-1", strategy(), 5.0, T0, caller=DESK_A)
    with pytest.raises(PermissionDenied, match="exec-1.*desk-a.*desk-b"):
        engine.heartbeat("exec-1", strategy(), 5.0, T0 + 4, caller=DESK_B)
    with pytest.raises(PermissionDenied):
        engine.heartbeat("exec-1", strategy(), 60.0, T0 + 4, caller=DESK_B)  # nor re-time it
    (lost,) = timers(engine, T0 + 5.1)  # desk-a went quiet at T0: the switch fires
    assert (lost.scope, lost.breaker) == (strategy(), "heartbeat_lost")
    assert engine.heartbeat("exec-1", strategy(), 5.0, T0 + 6, caller=DESK_A) is False


def test_only_the_owner_or_an_operator_deregisters(engine):
    engine.heartbeat("exec-1", strategy(), 5.0, T0, caller=DESK_A)
    with pytest.raises(PermissionDenied):
        engine.heartbeat("exec-1", strategy(), 5.0, T0 + 1, deregister=True, caller=DESK_B)
    assert [r.owner for r in engine.heartbeats.registrations()] == ["desk-a"]
    assert engine.heartbeat("exec-1", strategy(), 5.0, T0 + 1, deregister=True, caller=OPS)
    assert timers(engine, T0 + 60) == []  # retired by the operator


def test_a_registration_made_with_authentication_off_is_bound_by_the_next_signed_beat(engine):
    engine.heartbeat("exec-1", strategy(), 5.0, T0)  # no caller: authentication off
    assert engine.heartbeat("exec-1", strategy(), 5.0, T0 + 1, caller=DESK_A) is True  # store
    with pytest.raises(PermissionDenied):
        engine.heartbeat("exec-1", strategy(), 5.0, T0 + 2, caller=DESK_B)
    assert engine.heartbeat("exec-1", strategy(), 5.0, T0 + 3) is False  # auth off again


def test_reset_refused_while_the_heartbeat_is_still_lost_unless_forced(engine):
    engine.heartbeat("exec-1", strategy(), 5.0, T0)
    timers(engine, T0 + 6)
    with pytest.raises(ResetRefused, match="heartbeat_lost"):
        reset(engine, strategy(), T0 + 6 + COOLDOWN)
    engine.heartbeat("exec-1", strategy(), 5.0, T0 + 7 + COOLDOWN)
    assert reset(engine, strategy(), T0 + 7 + COOLDOWN)[0].state is State.ARMED


def test_a_disabled_heartbeat_breaker_neither_trips_nor_blocks_a_reset():
    engine = make_engine(breakers=rules(heartbeat_lost={"enabled": False}))
    engine.heartbeat("exec-1", strategy(), 5.0, T0)
    assert timers(engine, T0 + 6) == []
    trip(engine, strategy(), T0 + 7)
    assert reset(engine, strategy(), T0 + 7 + COOLDOWN)[0].state is State.ARMED


def test_heartbeat_breaker_may_restrict_to_reduce_only():
    engine = make_engine(breakers=rules(heartbeat_lost={"mode": TriggerMode.REDUCE_ONLY}))
    engine.heartbeat("exec-1", strategy(), 5.0, T0)
    assert timers(engine, T0 + 6)[0].state is State.REDUCE_ONLY


@pytest.mark.parametrize("executor_id, ttl_s, field", [
    ("exec-1", math.nan, "ttl_s"), ("exec-1", math.inf, "ttl_s"), ("exec-1", 0.0, "ttl_s"),
    ("exec-1", -5.0, "ttl_s"), ("exec-1", 3601.0, "ttl_s"),
    ("", 5.0, "executor_id"), ("x" * 129, 5.0, "executor_id"),
], ids=repr)
def test_invalid_heartbeats_are_rejected_and_register_nothing(engine, executor_id, ttl_s,
                                                             field):
    with pytest.raises(InvalidArgument) as raised:
        engine.heartbeat(executor_id, strategy(), ttl_s, T0)
    assert raised.value.field == field and engine.heartbeats.registrations() == []


def test_one_timer_pass_may_trip_several_scopes_in_version_order(engine):
    tick(engine, T0)
    engine.heartbeat("exec-1", strategy(), 5.0, T0)
    transitions = timers(engine, T0 + 30)
    assert [t.scope for t in transitions] == [symbol(), strategy()]
    assert [t.version for t in transitions] == [1, 2] and engine.version == 2


def test_a_replayed_journal_keeps_who_a_registration_is_bound_to(engine):
    """A restart replays the beats as journaled: desk-b is still refused after it."""
    engine.heartbeat("exec-1", strategy(), 5.0, T0, caller=DESK_A)
    fresh = make_engine()
    fresh.replay(HeartbeatSeen("exec-1", strategy(), 5.0, T0, owner="desk-a"), ())
    with pytest.raises(PermissionDenied):
        fresh.heartbeat("exec-1", strategy(), 5.0, T0 + 1, caller=DESK_B)


def test_a_timer_run_that_would_restrict_is_told_from_one_that_only_loosens():
    """A run that trips, or re-arms REDUCE_ONLY through COOLING_DOWN (which denies reducing
    orders too), comes before the checks after it (Guard.run_timers_async); one that only
    loosens does not."""
    engine = make_engine(breakers=rules(api_errors=dict(mode=TriggerMode.REDUCE_ONLY,
                                                        auto_rearm=True)),
                         policy={ScopeKind.STRATEGY: ResumePolicy(reset_cooldown_s=0,
                                                                  rearm_delay_s=30)})
    for i in range(3):
        run(engine, engine.plan_report(strategy(), Metric.API_ERROR, 1, T0 + i))
    assert engine.state_of(strategy()) is State.REDUCE_ONLY
    assert not engine.timers_would_trip(T0 + 3)  # nothing due yet
    assert engine.timers_would_trip(T0 + 120)  # REDUCE_ONLY -> COOLING_DOWN
    run(engine, engine.plan_timers(T0 + 120))
    assert engine.state_of(strategy()) is State.COOLING_DOWN
    assert not engine.timers_would_trip(T0 + 200)  # COOLING_DOWN -> ARMED loosens
    engine.heartbeat("ex-1", strategy("h"), 2, T0 + 200)
    assert engine.timers_would_trip(T0 + 203)  # a lost heartbeat trips


def test_a_re_arm_delay_does_not_arm_a_scope_while_a_breaker_of_it_holds():
    """Review 34h: a level breaker asking for two breaches in a row, breached once during
    the re-arm delay, held unlatched, and the delay's end armed the scope, as neither a
    reset nor an auto re-arm would have. It stays COOLING_DOWN until a sample clears the
    condition (or a second one latches it)."""
    scope = strategy()
    engine = make_engine(breakers=rules(daily_drawdown_pct={"consecutive": 2}),
                         policy={ScopeKind.STRATEGY: ResumePolicy(reset_cooldown_s=0,
                                                                  rearm_delay_s=60)})
    trip(engine, scope, T0)
    reset(engine, scope, T0 + 1)
    report(engine, scope, Metric.DAILY_DRAWDOWN_PCT, 7.0, T0 + 2)  # one breach of two
    timers(engine, T0 + 61)
    assert engine.state_of(scope) is State.COOLING_DOWN
    report(engine, scope, Metric.DAILY_DRAWDOWN_PCT, 1.0, T0 + 62)  # recovered
    timers(engine, T0 + 63)
    assert engine.state_of(scope) is State.ARMED


def test_a_feed_stale_again_under_its_latch_is_marked_and_trips_after_a_forced_reset(engine):
    """Review 41d: a feed that went stale again while its scope still held its latch
    (stale, tripped, one tick, stale again) was never marked: every timer run planned its
    trip again, and its next tick ran the timers' whole plan (with 4,000 such feeds, 47 s
    of the event loop). Marked as if tripped, it still trips again after a forced reset if
    it stays dead."""
    tick(engine, T0)
    [stale] = timers(engine, T0 + 30)
    tick(engine, T0 + 31)
    assert engine.breakers.stale(T0 + 61) != []  # due again: its scope holds the latch
    assert timers(engine, T0 + 61) == []
    assert engine.breakers.stale(T0 + 62) == []  # marked: planned no more
    reset(engine, symbol(), T0 + 61 + COOLDOWN, force=True)
    assert timers(engine, T0 + 61 + COOLDOWN + 29) == []
    [again] = timers(engine, T0 + 61 + COOLDOWN + 30)
    assert (again.scope, again.breaker) == (symbol(), stale.breaker)


def test_executors_that_lapse_after_their_scopes_latch_are_marked_lost():
    """Review 41d: the first executor's loss latched the scope; those that lapsed after it
    were never marked lost, so every timer run planned their trip again, and each one's
    return beat ran the timers' whole plan."""
    engine = make_engine()
    scope = strategy()
    engine.heartbeat("first", scope, 1.0, T0)
    engine.heartbeat("second", scope, 5.0, T0)
    [lost] = timers(engine, T0 + 2)
    assert lost.breaker == "heartbeat_lost"
    assert [r.executor_id for r in engine.heartbeats.lapse(T0 + 6)] == ["second"]
    assert timers(engine, T0 + 6) == []
    assert engine.heartbeats.lapse(T0 + 7) == []


def test_registrations_are_listed_the_longest_silent_first_and_capped() -> None:
    """essctl heartbeats: those counted as lost since a restart first (their last beat
    before it kept), then the oldest beat; at most `most` of them."""
    switches = Heartbeats()
    switches.beat("late", strategy(), 5.0, T0 + 3)
    switches.beat("early", strategy(), 5.0, T0 + 1)
    switches.beat("lost", account(), 5.0, T0 + 2)
    switches.assume_lapsed(account())
    assert [(r.executor_id, last, lapsed) for r, last, lapsed
            in walked(switches.silent_first(lambda: T0 + 7, 10))] == [
        ("lost", T0 + 2, True), ("early", T0 + 1, True), ("late", T0 + 3, False)]
    assert [r.executor_id for r, _, _ in walked(switches.silent_first(lambda: T0 + 4, 2))] == [
        "lost", "early"]
    assert walked(switches.silent_first(lambda: T0 + 4, 0)) == []


def walked(walk):  # noqa: ANN001, ANN201
    """What a walk returns, run to its end."""
    return walk_to_end(walk)[0]


def walk_to_end(walk):  # noqa: ANN001, ANN201
    """What a walk returns, and how many times it yielded on its way."""
    yields = 0
    try:
        while True:
            next(walk)
            yields += 1
    except StopIteration as done:
        return done.value, yields


def test_a_listing_yields_every_so_many_registrations_and_picks_as_a_sort_would() -> None:
    """Reviews 56c, 56d: the 1,000 longest silent of 100,000 registrations were picked
    at once, holding checks and stops 18 ms; a walk yields, so its caller slices it."""
    switches = Heartbeats()
    for n in range(1000):  # beats out of order, many at the same time (ties)
        switches.beat(f"ex-{n}", strategy(), 60.0, T0 + (n * 7919) % 250)
    listed, yields = walk_to_end(switches.silent_first(lambda: T0 + 100, 300, every=64))
    assert yields == 1000 // 64
    by_sort = sorted(switches.registrations(), key=lambda r: r.last_seen)[:300]  # stable:
    assert [r.executor_id for r, _, _ in listed] == [r.executor_id for r in by_sort]  # ties
    assert [lapsed for _, _, lapsed in listed] == [r.past_ttl(T0 + 100) for r in by_sort]


def test_a_listing_shows_the_registrations_as_they_are_when_its_walk_ends() -> None:
    """Review 57c: walked in slices, a listing showed an executor deregistered meanwhile,
    one that beat meanwhile among the longest silent with its new beat, a re-registration
    with its old TTL, and a lapse that came during the walk as beating."""
    switches = Heartbeats()
    for n in range(8):
        switches.beat(f"ex-{n}", strategy(), 10.0, T0 + n)
    now = [T0 + 9]
    walk = switches.silent_first(lambda: now[0], 5, every=2)
    next(walk)  # ex-0 and ex-1 looked at
    switches.deregister("ex-0", strategy(), "")
    switches.beat("ex-1", strategy(), 10.0, T0 + 9)  # no longer among the most silent
    switches.beat("ex-2", strategy(), 30.0, T0 + 2)  # the same beat, another TTL
    now[0] = T0 + 13.5  # ex-3 has lapsed since the walk began; ex-2 has its new TTL
    listed = walked(walk)
    assert [(r.executor_id, r.ttl_s, last, lapsed) for r, last, lapsed in listed] == [
        ("ex-2", 30.0, T0 + 2, False), ("ex-3", 10.0, T0 + 3, True),
        ("ex-4", 10.0, T0 + 4, False), ("ex-1", 10.0, T0 + 9, False)]
