"""Breakers with their defaults (docs/design.md), and Trigger, the manual kill switch."""

from __future__ import annotations

import dataclasses
import math

import pytest

from ess_sidecar.domain.breakers import BreakerRule, Metric, Reading
from ess_sidecar.domain.commands import Trigger
from ess_sidecar.domain.config import ResumePolicy
from ess_sidecar.domain.decisions import DecisionReason
from ess_sidecar.domain.errors import InvalidArgument
from ess_sidecar.domain.scopes import GLOBAL, Scope, ScopeKind
from ess_sidecar.domain.states import SYSTEM_ACTOR, Cause, Directive, State, TriggerMode, \
    TriggerReason

from .conftest import T0, account, make_engine, order, report, reset, rules, run, strategy, \
    symbol, timers, trip

M = Metric
LEVELS = [(M.DAILY_DRAWDOWN_PCT, "daily_drawdown_pct", 5), (M.WEEKLY_DRAWDOWN_PCT,
          "weekly_drawdown_pct", 10), (M.TOTAL_DRAWDOWN_PCT, "total_drawdown_pct", 20),
          (M.OPEN_LOSS_PCT, "open_loss_pct", 10)]
WINDOWED = [(M.EXECUTION_ERROR, "execution_errors", 5, 15 * 60),
            (M.API_ERROR, "api_errors", 3, 60), (M.ORDER_FAILURE, "order_failures", 10, 5 * 60),
            (M.STOP_LOSS_HIT, "stop_loss_hits", 3, 60 * 60)]


def assert_tripped_by(transitions, scope, breaker, state=State.TRIPPED):
    assert len(transitions) == 1
    (transition,) = transitions
    assert (transition.scope, transition.state, transition.cause, transition.breaker,
            transition.actor) == (scope, state, Cause.BREAKER, breaker, SYSTEM_ACTOR)


@pytest.mark.parametrize("metric, breaker, threshold", LEVELS, ids=lambda v: str(v))
def test_level_breakers_trip_at_their_default_threshold(engine, metric, breaker, threshold):
    assert report(engine, account(), metric, threshold - 0.01) == []
    assert_tripped_by(report(engine, account(), metric, threshold), account(), breaker)


def test_equity_falling_twenty_percent_from_its_peak_trips_total_drawdown(engine):
    for equity in (100_000, 120_000, 96_001):
        assert report(engine, account(), M.EQUITY, equity) == []
    assert_tripped_by(report(engine, account(), M.EQUITY, 96_000), account(),
                      "total_drawdown_pct")


@pytest.mark.parametrize("metric, breaker, count, window", WINDOWED, ids=lambda v: str(v))
def test_event_breakers_trip_at_their_default_count_in_window(engine, metric, breaker, count,
                                                               window):
    for i in range(count - 1):
        assert report(engine, strategy(), metric, 1, T0 + i) == []
    assert_tripped_by(report(engine, strategy(), metric, 1, T0 + window - 1), strategy(),
                      breaker)


@pytest.mark.parametrize("metric, breaker, count, window", WINDOWED, ids=lambda v: str(v))
def test_events_that_left_the_window_do_not_count(engine, metric, breaker, count, window):
    for _ in range(count - 1):
        report(engine, strategy(), metric, 1, T0)
    assert report(engine, strategy(), metric, 1, T0 + window) == []


def test_api_errors_trip_at_three_in_sixty_seconds(engine):
    assert report(engine, GLOBAL, M.API_ERROR, 1, T0) == []
    assert report(engine, GLOBAL, M.API_ERROR, 1, T0 + 30) == []
    assert_tripped_by(report(engine, GLOBAL, M.API_ERROR, 1, T0 + 59), GLOBAL, "api_errors")


def test_api_errors_outside_the_window_do_not_count(engine):
    report(engine, GLOBAL, M.API_ERROR, 1, T0)
    report(engine, GLOBAL, M.API_ERROR, 1, T0 + 30)
    assert report(engine, GLOBAL, M.API_ERROR, 1, T0 + 60) == []  # T0's error has expired
    assert report(engine, GLOBAL, M.API_ERROR, 1, T0 + 89) != []


def test_one_report_may_carry_several_events_and_zero_means_one(engine):
    assert report(engine, GLOBAL, M.API_ERROR, 0) == []
    assert report(engine, GLOBAL, M.API_ERROR, 2) != []


def test_event_windows_are_kept_per_scope(engine):
    for ident in ("a", "b", "a", "b"):
        assert report(engine, strategy(ident), M.API_ERROR, 1) == []


def test_failed_trades_trip_at_five_losing_trades_in_an_hour(engine):
    for i in range(4):
        assert report(engine, strategy(), M.TRADE_RESULT, -10, T0 + i * 60) == []
    assert_tripped_by(report(engine, strategy(), M.TRADE_RESULT, -10, T0 + 3599), strategy(),
                      "failed_trades")


def lose(engine, times, start, step=15 * 60):
    """Losing trades far enough apart that failed_trades (5 an hour) never trips."""
    trips = []
    for i in range(times):
        trips += report(engine, strategy(), M.TRADE_RESULT, -10, start + i * step)
    return trips, start + times * step


def test_consecutive_losses_trip_at_ten(engine):
    trips, now = lose(engine, 9, T0)
    assert trips == []
    assert_tripped_by(lose(engine, 1, now)[0], strategy(), "consecutive_losses")


def test_consecutive_losses_reset_by_a_winning_trade(engine):
    trips, now = lose(engine, 9, T0)
    assert report(engine, strategy(), M.TRADE_RESULT, 25, now) == []
    trips, now = lose(engine, 9, now + 900)
    assert trips == []
    assert_tripped_by(lose(engine, 1, now)[0], strategy(), "consecutive_losses")


def test_data_feed_corrupt_trips_on_any_report(engine):
    assert_tripped_by(report(engine, symbol(), M.DATA_FEED_CORRUPT, 0), symbol(),
                      "data_feed_corrupt")


def test_system_health_trips_when_critical_only(engine):
    assert report(engine, GLOBAL, M.SYSTEM_HEALTH, 0) == []
    assert report(engine, GLOBAL, M.SYSTEM_HEALTH, 1) == []  # degraded
    assert_tripped_by(report(engine, GLOBAL, M.SYSTEM_HEALTH, 2), GLOBAL, "system_health")


def test_breaker_with_consecutive_two_ignores_one_bad_tick():
    engine = make_engine(breakers=rules(daily_drawdown_pct={"consecutive": 2}))
    assert report(engine, account(), M.DAILY_DRAWDOWN_PCT, 6) == []
    assert report(engine, account(), M.DAILY_DRAWDOWN_PCT, 1) == []  # the streak is broken
    assert report(engine, account(), M.DAILY_DRAWDOWN_PCT, 6) == []
    assert_tripped_by(report(engine, account(), M.DAILY_DRAWDOWN_PCT, 7), account(),
                      "daily_drawdown_pct")


def test_breaker_in_reduce_only_mode_restricts_instead_of_halting():
    engine = make_engine(breakers=rules(open_loss_pct={"mode": TriggerMode.REDUCE_ONLY}))
    assert_tripped_by(report(engine, account(), M.OPEN_LOSS_PCT, 12), account(),
                      "open_loss_pct", State.REDUCE_ONLY)
    assert engine.check(order(), T0).reason is DecisionReason.REDUCE_ONLY
    assert_tripped_by(report(engine, account(), M.DAILY_DRAWDOWN_PCT, 6), account(),
                      "daily_drawdown_pct")  # a halting breaker escalates


def test_disabled_breaker_never_trips():
    engine = make_engine(breakers=rules(api_errors={"enabled": False}))
    for i in range(10):
        assert report(engine, GLOBAL, M.API_ERROR, 1, T0 + i) == []


def test_per_scope_override_applies_to_that_scope_only():
    engine = make_engine(overrides={symbol(): {"api_errors": BreakerRule(1, window_s=60)}})
    assert report(engine, symbol("ETH-USD"), M.API_ERROR, 1) == []
    assert_tripped_by(report(engine, symbol(), M.API_ERROR, 1), symbol(), "api_errors")


def test_a_breach_is_denied_by_the_very_next_check(engine):
    report(engine, account(), M.DAILY_DRAWDOWN_PCT, 5.5)
    decision = engine.check(order(), T0)
    assert decision.reason is DecisionReason.SCOPE_TRIPPED
    assert decision.blocking_scope == account() and decision.state_version == 1


def test_a_breach_on_a_tripped_scope_adds_its_own_latch_once(engine):
    """Each restriction is its own latch: a second breaker's trip on a tripped scope is
    recorded (a reset of the first must not lift it), but the same breaker again is not."""
    report(engine, GLOBAL, M.SYSTEM_HEALTH, 2)
    (second,) = report(engine, GLOBAL, M.DATA_FEED_CORRUPT, 0)
    assert (second.previous, second.state) == (State.TRIPPED, State.TRIPPED)
    assert [latch.name for latch in second.latches] == ["system_health", "data_feed_corrupt"]
    assert report(engine, GLOBAL, M.SYSTEM_HEALTH, 2) == []  # a level: its reset checks it
    assert engine.version == 2


def test_a_corrupt_feed_reported_again_renews_its_latch_and_its_cooldown():
    """Review 36p: a one-off breaker holds nothing a reset or re-arm can check, and a
    second corrupt report left no trace: the latch was lifted by the re-arm 1 s after it
    (and by an approval, or a Reset naming the version, made before it). It is renewed."""
    engine = make_engine(breakers=rules(data_feed_corrupt={"auto_rearm": True}))
    (first,) = report(engine, strategy(), M.DATA_FEED_CORRUPT, 0)
    cooldown = engine.config.policy_for(ScopeKind.STRATEGY).reset_cooldown_s
    (again,) = report(engine, strategy(), M.DATA_FEED_CORRUPT, 0, T0 + cooldown - 1)
    assert (again.version, again.state) == (first.version + 1, State.TRIPPED)
    assert all(report(engine, strategy(), M.DATA_FEED_CORRUPT, 0,
                      T0 + cooldown - 1 + 0.001 * (n + 1)) == []
               for n in range(300))  # review 36q: renewed once a second at most, no storm
    assert engine.version == again.version
    (renewed,) = timers(engine, T0 + cooldown)  # the last of them (review 37f), a second on
    assert (renewed.version, renewed.state) == (again.version + 1, State.TRIPPED)
    assert engine.state_of(strategy()) is State.TRIPPED
    (rearmed,) = timers(engine, T0 + 2 * cooldown)
    assert (rearmed.state, rearmed.cause) == (State.ARMED, Cause.REARM)


def test_a_feed_corrupt_without_pause_never_re_arms_however_short_the_cooldown():
    """Review 36r: renewed once a second at most, a latch with a cooldown of 0.5 s re-armed
    between renewals while the feed was reported corrupt every 0.1 s; and a latch stored
    before latches were recorded (schema 4) was never renewed."""
    engine = make_engine(breakers=rules(data_feed_corrupt={"auto_rearm": True}),
                         policy={ScopeKind.STRATEGY: ResumePolicy(reset_cooldown_s=0.5)})
    for tenth in range(30):
        now = T0 + tenth / 10
        report(engine, strategy(), M.DATA_FEED_CORRUPT, 0, now)
        timers(engine, now + 0.05)
        assert engine.state_of(strategy()) is State.TRIPPED, now - T0
    legacy = make_engine(breakers=rules(data_feed_corrupt={"auto_rearm": True}))
    (trip,) = report(legacy, strategy(), M.DATA_FEED_CORRUPT, 0)
    stored = make_engine(breakers=rules(data_feed_corrupt={"auto_rearm": True}))
    stored.restore([dataclasses.replace(trip, latches=())], trip.version, T0)
    cooldown = ResumePolicy().reset_cooldown_s
    assert report(stored, strategy(), M.DATA_FEED_CORRUPT, 0, T0 + cooldown - 1)
    assert timers(stored, T0 + cooldown + 0.1) == []


def test_a_losing_streak_and_a_debounce_count_outlast_a_quiet_spell():
    """Review 36p: nine losses in a row, then a weekend with no sample: the timers forgot
    the streak, and the tenth loss began a new one (likewise a breach count)."""
    engine = make_engine(breakers=rules(open_loss_pct={"consecutive": 2}))
    quiet = strategy("quiet")  # no book: nothing else keeps its evidence
    for hour in range(9):  # two hours apart: failed_trades (5 an hour) stays quiet
        report(engine, quiet, M.TRADE_RESULT, -1, T0 + 7_200.0 * hour)
    report(engine, quiet, M.OPEN_LOSS_PCT, 50, T0 + 7_200.0 * 9)  # one breach of two
    monday = T0 + 7_200.0 * 9 + 3 * 86_400.0
    assert timers(engine, monday) == [] and engine.state_of(quiet) is State.ARMED
    (streak,) = report(engine, quiet, M.TRADE_RESULT, -1, monday)
    assert streak.breaker == "consecutive_losses"
    (debounced,) = report(engine, quiet, M.OPEN_LOSS_PCT, 50, monday)
    assert debounced.breaker == "open_loss_pct"


@pytest.mark.parametrize("metric, value", [
    (M.DAILY_DRAWDOWN_PCT, math.nan), (M.OPEN_LOSS_PCT, math.inf), (M.EQUITY, -math.inf),
    (M.DAILY_DRAWDOWN_PCT, -1), (M.API_ERROR, -1), (M.API_ERROR, 1.5),
    (M.SYSTEM_HEALTH, 3), (M.EQUITY, -1), (M.EQUITY, 1e19), (M.EQUITY, 1e308),
    (M.TRADE_RESULT, math.nan),
], ids=repr)
def test_invalid_metric_values_are_rejected_and_change_nothing(metric, value):
    engine = make_engine(breakers=rules(api_errors={"threshold": 1}))
    with pytest.raises(InvalidArgument) as raised:
        engine.plan_report(account(), metric, value, T0)
    assert raised.value.field == "value"
    assert engine.version == 0 and engine.book.equity("acc-1") == 1e6
    assert engine.breakers.holding(account(), T0) == []


def test_trigger_halts_a_scope_with_its_reason_and_directives(engine):
    plan = engine.plan_trigger(Trigger(strategy(), TriggerMode.HALT, "fat finger",
                                       TriggerReason.RISK_VIOLATION,
                                       (Directive.CANCEL_OPEN_ORDERS, Directive.FLATTEN_POSITIONS),
                                       "alice"), T0)
    (transition,) = run(engine, plan)
    assert (transition.version, transition.previous, transition.state, transition.cause,
            transition.reason, transition.reason_code, transition.actor, transition.directives
            ) == (1, State.ARMED, State.TRIPPED, Cause.TRIGGER, "fat finger",
                  TriggerReason.RISK_VIOLATION, "alice",
                  (Directive.CANCEL_OPEN_ORDERS, Directive.FLATTEN_POSITIONS))
    assert engine.state_of(strategy()) is State.TRIPPED


def test_trigger_never_loosens_a_scope(engine):
    """Each Trigger is recorded (a repeat renews its latch: review 31); none loosens."""
    states = [[t.state for t in trip(engine, GLOBAL, mode=mode)] for mode in (
        TriggerMode.REDUCE_ONLY, TriggerMode.REDUCE_ONLY, TriggerMode.HALT, TriggerMode.HALT,
        TriggerMode.REDUCE_ONLY)]
    assert states == [[State.REDUCE_ONLY]] * 2 + [[State.TRIPPED]] * 3
    assert engine.state_of(GLOBAL) is State.TRIPPED and engine.version == 5


def test_trigger_during_cooling_down_starts_over():
    engine = make_engine(policy={ScopeKind.GLOBAL: ResumePolicy(0, rearm_delay_s=60)})
    trip(engine, GLOBAL, T0)
    reset(engine, GLOBAL, T0 + 1)
    (transition,) = trip(engine, GLOBAL, T0 + 2)
    assert (transition.previous, transition.state, transition.time) == (
        State.COOLING_DOWN, State.TRIPPED, T0 + 2)


def test_readings_say_how_close_each_breaker_is_to_its_threshold(engine):
    report(engine, strategy(), Metric.DAILY_DRAWDOWN_PCT, 3.5, T0)
    report(engine, strategy(), Metric.API_ERROR, 2, T0)
    report(engine, strategy(), Metric.DATA_FEED_TICK, 1, T0)
    readings = {r.breaker: r for r in engine.breakers.readings(T0 + 10)}
    assert readings["daily_drawdown_pct"] == Reading(strategy(), "daily_drawdown_pct", 3.5, 5)
    assert readings["api_errors"] == Reading(strategy(), "api_errors", 2, 3)
    assert readings["data_feed_stale"] == Reading(strategy(), "data_feed_stale", 10, 30)
    assert readings["consecutive_losses"].value == 0
    assert {r.breaker: r.value for r in engine.breakers.readings(T0 + 61)}["api_errors"] == 0


def test_a_count_beyond_the_cap_is_clamped_and_still_trips():
    engine = make_engine()
    tripped = report(engine, strategy(), Metric.API_ERROR, 2e6)
    assert [t.breaker for t in tripped] == ["api_errors"]
    other = make_engine()
    assert report(other, strategy(), Metric.EXECUTION_ERROR, 1e300)  # 5 in 15 min: tripped


def test_an_event_window_keeps_bounded_memory_and_never_counts_fewer_than_came(engine):
    """Review 41d: an event window kept an entry per report for up to window_s (a year at
    most): an executor in an error loop at 1,000 reports a second held 360 MB for an
    hour's window. Reports close together share a slot, kept as long as the latest."""
    from ess_sidecar.domain.breakers import EVENT_SLOTS  # noqa: PLC0415
    scope = Scope(ScopeKind.STRATEGY, "busy")
    for i in range(20_000):
        engine.breakers.record(scope, M.STOP_LOSS_HIT, 1, T0 + i * 0.001)
    window = engine.breakers._meters[scope].events["stop_loss_hits"]  # noqa: SLF001
    assert len(window) <= EVENT_SLOTS + 1
    assert sum(count for *_, count in window) == 20_000
    last = T0 + 19_999 * 0.001
    assert "stop_loss_hits" in engine.breakers.holding(scope, last + 3599)  # its hour
    assert "stop_loss_hits" not in engine.breakers.holding(scope, last + 3600.5)


def test_a_steady_rate_below_an_event_breakers_threshold_never_trips_it():
    """Review 42b: a report within a slot of the window's last entry joined it and moved
    its time to the report's, so a steady stream (1,500 a minute, threshold 2,000) was
    one entry that never aged out: tripped after 80 s, and a reset refused while the
    stream went on. A slot spans 1/1024 of the window from its first report."""
    engine = make_engine(overrides={strategy(): {"api_errors": BreakerRule(2000,
                                                                            window_s=60)}})
    for i in range(7_500):  # five minutes, one every 40 ms
        now = T0 + i * 0.04
        assert not engine.breakers.record(strategy(), Metric.API_ERROR, 1, now), now
    counted = {r.breaker: r.value for r in engine.breakers.readings(now)}["api_errors"]
    assert 1_500 <= counted <= 1_502  # the last minute's, and at most a slot more
    assert "api_errors" not in engine.breakers.holding(strategy(), now)
