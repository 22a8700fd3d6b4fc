"""How trading resumes after a trip: reset cooldown, condition check, re-arm delay, auto re-arm."""

from __future__ import annotations

import pytest

from ess_sidecar.domain.breakers import Metric
from ess_sidecar.domain.config import ResumePolicy
from ess_sidecar.domain.decisions import DecisionReason
from ess_sidecar.domain.errors import InvalidArgument, ResetRefused
from ess_sidecar.domain.scopes import GLOBAL, ScopeKind
from ess_sidecar.domain.states import Cause, Directive, State, TriggerMode

from .conftest import T0, account, make_engine, order, report, reset, rules, run, strategy, \
    symbol, timers, trip

COOLDOWN = 15 * 60


def test_reset_is_refused_during_cooldown(engine):
    trip(engine, GLOBAL, T0)
    with pytest.raises(ResetRefused) as refused:
        reset(engine, GLOBAL, T0 + COOLDOWN - 1)
    assert refused.value.until == T0 + COOLDOWN and "cooldown" in str(refused.value)
    assert engine.state_of(GLOBAL) is State.TRIPPED and engine.version == 1


def test_reset_is_accepted_once_the_cooldown_has_elapsed(engine):
    trip(engine, GLOBAL, T0)
    (transition,) = reset(engine, GLOBAL, T0 + COOLDOWN)
    assert (transition.previous, transition.state, transition.cause, transition.forced,
            transition.actor, transition.reason) == (
        State.TRIPPED, State.ARMED, Cause.RESET, False, "operator", "checked, resuming")
    assert engine.state_of(GLOBAL) is State.ARMED and engine.check(order(), T0 + COOLDOWN).allowed


def test_a_reset_of_the_version_looked_at_lifts_it(engine):
    (tripped,) = trip(engine, GLOBAL, T0)
    run(engine, engine.plan_reset(GLOBAL, "seen, resuming", True, "operator", T0 + 1,
                                  expected_version=tripped.version))
    assert engine.state_of(GLOBAL) is State.ARMED


def test_a_trip_that_landed_after_the_operator_looked_is_not_lifted_even_forced(engine):
    """The operator looked at one trip; another operator's trigger changed the scope
    meanwhile. A reset of the version looked at lifts nothing."""
    (seen,) = trip(engine, GLOBAL, T0, mode=TriggerMode.REDUCE_ONLY)
    trip(engine, GLOBAL, T0 + 5)  # HALT now: the scope's version moves on
    version = engine.version
    assert version > seen.version
    with pytest.raises(ResetRefused) as refused:
        engine.plan_reset(GLOBAL, "window over", True, "operator", T0 + 10,
                          expected_version=seen.version)
    assert f"changed since version {seen.version}" in str(refused.value)
    assert engine.state_of(GLOBAL) is State.TRIPPED and engine.version == version


def test_a_reset_of_an_armed_scope_changes_nothing_whatever_it_names(engine):
    """A drill's clean-up names its latch without knowing whether its trip landed
    (review 39k: refused, it said the clean-up failed with nothing tripped)."""
    assert not engine.plan_reset(strategy(), "drill complete", False, "operator", T0,
                                 latches=["drill"], expected_version=7).transitions
    assert engine.state_of(strategy()) is State.ARMED


def test_forced_reset_overrides_the_cooldown_and_is_recorded_as_forced(engine):
    trip(engine, GLOBAL, T0)
    (transition,) = reset(engine, GLOBAL, T0 + 1, force=True)
    assert transition.forced and transition.state is State.ARMED


def test_reset_refused_while_condition_holds_unless_forced(engine):
    report(engine, account(), Metric.DAILY_DRAWDOWN_PCT, 6, T0)
    with pytest.raises(ResetRefused, match="daily_drawdown_pct"):
        reset(engine, account(), T0 + COOLDOWN)
    assert engine.state_of(account()) is State.TRIPPED
    (transition,) = reset(engine, account(), T0 + COOLDOWN, force=True)
    assert transition.forced and engine.state_of(account()) is State.ARMED


def test_reset_is_accepted_once_the_condition_has_cleared(engine):
    report(engine, account(), Metric.DAILY_DRAWDOWN_PCT, 6, T0)
    report(engine, account(), Metric.DAILY_DRAWDOWN_PCT, 3, T0 + 60)
    assert reset(engine, account(), T0 + COOLDOWN)[0].state is State.ARMED


def test_reset_refused_while_the_error_window_still_breaches():
    engine = make_engine(policy={ScopeKind.GLOBAL: ResumePolicy(reset_cooldown_s=0)})
    for i in range(3):
        report(engine, GLOBAL, Metric.API_ERROR, 1, T0 + i)
    with pytest.raises(ResetRefused, match="api_errors"):
        reset(engine, GLOBAL, T0 + 30)
    assert reset(engine, GLOBAL, T0 + 61)[0].state is State.ARMED


def test_forced_reset_clears_the_losing_streak(engine):
    for i in range(10):
        report(engine, strategy(), Metric.TRADE_RESULT, -1, T0 + i * 900)
    now = T0 + 9 * 900 + COOLDOWN
    with pytest.raises(ResetRefused, match="consecutive_losses"):
        reset(engine, strategy(), now)
    reset(engine, strategy(), now, force=True)
    assert report(engine, strategy(), Metric.TRADE_RESULT, -1, now + 900) == []


def test_reset_cooldown_counts_from_the_latest_restriction(engine):
    trip(engine, GLOBAL, T0, mode=TriggerMode.REDUCE_ONLY)
    trip(engine, GLOBAL, T0 + 600, mode=TriggerMode.HALT)
    with pytest.raises(ResetRefused):
        reset(engine, GLOBAL, T0 + COOLDOWN)
    assert reset(engine, GLOBAL, T0 + 600 + COOLDOWN)[0].state is State.ARMED


def test_reduce_only_scope_is_reset_like_a_tripped_one(engine):
    trip(engine, symbol(), T0, mode=TriggerMode.REDUCE_ONLY)
    with pytest.raises(ResetRefused):
        reset(engine, symbol(), T0 + 1)
    assert reset(engine, symbol(), T0 + COOLDOWN)[0].previous is State.REDUCE_ONLY


def test_resume_policy_is_per_scope_kind():
    engine = make_engine(policy={ScopeKind.SYMBOL: ResumePolicy(reset_cooldown_s=60)})
    trip(engine, symbol(), T0)
    trip(engine, GLOBAL, T0)
    assert reset(engine, symbol(), T0 + 60) != []
    with pytest.raises(ResetRefused):
        reset(engine, GLOBAL, T0 + 60)


def test_reset_of_an_unrestricted_scope_changes_nothing(engine):
    assert reset(engine, strategy(), T0) == []
    assert engine.version == 0


@pytest.mark.parametrize("reason", ["  ", "\u2800", "\u3164\n\ufe0f", ""])
def test_reset_requires_a_reason_that_shows(engine, reason):
    """Review 41c: a reason of the braille blank or a Hangul filler alone, which render as
    nothing, was the audit trail's why."""
    trip(engine, GLOBAL, T0)
    with pytest.raises(InvalidArgument) as raised:
        engine.plan_reset(GLOBAL, reason, True, "operator", T0 + COOLDOWN)
    assert raised.value.field == "reason" and engine.state_of(GLOBAL) is State.TRIPPED


def test_rearm_delay_keeps_scope_cooling_down_then_arms():
    engine = make_engine(policy={ScopeKind.GLOBAL: ResumePolicy(rearm_delay_s=120)})
    trip(engine, GLOBAL, T0)
    (cooling,) = reset(engine, GLOBAL, T0 + COOLDOWN)
    assert cooling.state is State.COOLING_DOWN and cooling.rearm_at == T0 + COOLDOWN + 120
    assert engine.check(order(), T0 + COOLDOWN + 1).reason is DecisionReason.COOLING_DOWN
    assert reset(engine, GLOBAL, T0 + COOLDOWN + 2) == []  # nothing left to reset
    assert timers(engine, T0 + COOLDOWN + 119) == []
    (armed,) = timers(engine, T0 + COOLDOWN + 120)
    assert (armed.previous, armed.state, armed.cause) == (State.COOLING_DOWN, State.ARMED,
                                                          Cause.REARM)
    assert engine.check(order(), T0 + COOLDOWN + 120).allowed


def test_auto_rearm_breaker_rearms_after_cooldown_when_cleared():
    engine = make_engine(breakers=rules(daily_drawdown_pct={"auto_rearm": True}))
    report(engine, account(), Metric.DAILY_DRAWDOWN_PCT, 6, T0)
    report(engine, account(), Metric.DAILY_DRAWDOWN_PCT, 2, T0 + 60)
    assert timers(engine, T0 + COOLDOWN - 1) == []  # cleared, but still in the cooldown
    (armed,) = timers(engine, T0 + COOLDOWN)
    assert (armed.state, armed.cause, armed.forced) == (State.ARMED, Cause.REARM, False)


def test_auto_rearm_waits_while_the_condition_holds():
    engine = make_engine(breakers=rules(daily_drawdown_pct={"auto_rearm": True}))
    report(engine, account(), Metric.DAILY_DRAWDOWN_PCT, 6, T0)
    assert timers(engine, T0 + 2 * COOLDOWN) == []
    report(engine, account(), Metric.DAILY_DRAWDOWN_PCT, 4, T0 + 2 * COOLDOWN)
    assert timers(engine, T0 + 2 * COOLDOWN + 1)[0].state is State.ARMED


def test_auto_rearm_goes_through_cooling_down():
    engine = make_engine(breakers=rules(system_health={"auto_rearm": True}),
                         policy={ScopeKind.GLOBAL: ResumePolicy(rearm_delay_s=30)})
    report(engine, GLOBAL, Metric.SYSTEM_HEALTH, 2, T0)
    report(engine, GLOBAL, Metric.SYSTEM_HEALTH, 0, T0 + 1)
    assert timers(engine, T0 + COOLDOWN)[0].state is State.COOLING_DOWN
    assert timers(engine, T0 + COOLDOWN + 29) == []
    assert timers(engine, T0 + COOLDOWN + 30)[0].state is State.ARMED


def test_by_default_resuming_is_manual_only(engine):
    report(engine, account(), Metric.DAILY_DRAWDOWN_PCT, 6, T0)
    report(engine, account(), Metric.DAILY_DRAWDOWN_PCT, 0, T0 + 1)
    trip(engine, strategy(), T0)
    assert timers(engine, T0 + 10 * COOLDOWN) == []
    assert engine.state_of(account()) is engine.state_of(strategy()) is State.TRIPPED


def test_auto_rearm_does_not_lift_an_earlier_manual_restriction():
    engine = make_engine(breakers=rules(daily_drawdown_pct={"auto_rearm": True}))
    trip(engine, account(), T0, mode=TriggerMode.REDUCE_ONLY)  # the operator's
    report(engine, account(), Metric.DAILY_DRAWDOWN_PCT, 6, T0 + 10)  # escalates to TRIPPED
    report(engine, account(), Metric.DAILY_DRAWDOWN_PCT, 1, T0 + 20)
    (rearmed,) = timers(engine, T0 + 10 * COOLDOWN)  # the breaker's latch goes, not hers
    assert (rearmed.previous, rearmed.state, rearmed.cause) == (
        State.TRIPPED, State.REDUCE_ONLY, Cause.REARM)
    assert [latch.name for latch in rearmed.latches] == ["trigger"]
    assert timers(engine, T0 + 20 * COOLDOWN) == []
    assert engine.state_of(account()) is State.REDUCE_ONLY


def test_operator_trigger_on_an_auto_rearming_trip_is_latched_by_hand():
    engine = make_engine(breakers=rules(daily_drawdown_pct={"auto_rearm": True}))
    report(engine, account(), Metric.DAILY_DRAWDOWN_PCT, 6, T0)
    (latched,) = trip(engine, account(), T0 + 10)  # the operator's kill switch
    assert (latched.previous, latched.state, latched.cause) == (
        State.TRIPPED, State.TRIPPED, Cause.TRIGGER)
    assert latched.directives == (Directive.CANCEL_OPEN_ORDERS,)
    report(engine, account(), Metric.DAILY_DRAWDOWN_PCT, 1, T0 + 20)
    (rearmed,) = timers(engine, T0 + 10 * COOLDOWN)
    assert [latch.name for latch in rearmed.latches] == ["trigger"]
    assert engine.state_of(account()) is State.TRIPPED


def test_operator_reduce_only_on_an_automatic_halt_keeps_it_halted():
    engine = make_engine(breakers=rules(daily_drawdown_pct={"auto_rearm": True}))
    report(engine, account(), Metric.DAILY_DRAWDOWN_PCT, 6, T0)
    (latched,) = trip(engine, account(), T0 + 10, mode=TriggerMode.REDUCE_ONLY)
    assert latched.state is State.TRIPPED and latched.cause is Cause.TRIGGER


def test_second_operator_trigger_renews_the_halt(engine):
    """Review 31: it used to change nothing, and a reset made before it then lifted it."""
    (first,) = trip(engine, account(), T0)
    (second,) = trip(engine, account(), T0 + 1)
    assert (second.previous, second.state, second.version) == \
        (State.TRIPPED, State.TRIPPED, first.version + 1)
    assert [(latch.name, latch.since) for latch in second.latches] == [("trigger", T0 + 1)]
