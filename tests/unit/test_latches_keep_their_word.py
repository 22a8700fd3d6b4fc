"""Latches keep their word: a reset erases no evidence it does not own, a forced reset
re-arms the timers, directives accumulate, and no trip loosens a state."""

from __future__ import annotations

from ess_sidecar.domain.breakers import Metric
from ess_sidecar.domain.config import ResumePolicy
from ess_sidecar.domain.decisions import DecisionReason
from ess_sidecar.domain.scopes import ScopeKind
from ess_sidecar.domain.states import Cause, Directive, State, TriggerMode, TriggerReason

from .conftest import T0, account, make_engine, order, report, reset, rules, run, symbol, \
    timers, trip

STREAK_OF_3 = rules(consecutive_losses={"threshold": 3}, failed_trades={"threshold": 100})
NO_COOLDOWN = {kind: ResumePolicy(reset_cooldown_s=0) for kind in ScopeKind}


def losses(engine, count: int, now: float = T0) -> list:  # noqa: ANN001
    return [t for _ in range(count) for t in report(engine, account(), Metric.TRADE_RESULT,
                                                    -1.0, now)]


def test_a_drills_reset_keeps_the_losing_streak() -> None:
    engine = make_engine(breakers=STREAK_OF_3,
                         policy=NO_COOLDOWN)
    assert losses(engine, 2) == []
    run(engine, engine.plan_trigger(account(), TriggerMode.HALT, "drill",
                                    TriggerReason.USER_INITIATED, (), "op", T0, drill=True))
    reset(engine, account(), T0 + 1)
    (tripped,) = losses(engine, 1, T0 + 2)
    assert tripped.breaker == "consecutive_losses"


def test_resetting_another_trip_keeps_the_streak() -> None:
    engine = make_engine(breakers=STREAK_OF_3,
                         policy=NO_COOLDOWN)
    losses(engine, 2)
    trip(engine, account())
    reset(engine, account(), T0 + 1)
    assert [t.breaker for t in losses(engine, 1, T0 + 2)] == ["consecutive_losses"]


def test_a_forced_reset_of_the_streaks_own_trip_restarts_it() -> None:
    engine = make_engine(breakers=STREAK_OF_3,
                         policy=NO_COOLDOWN)
    assert losses(engine, 3)
    reset(engine, account(), T0 + 1, force=True)
    assert losses(engine, 2, T0 + 2) == []


def test_a_forced_reset_rearms_a_dead_feed() -> None:
    engine = make_engine(breakers=rules(data_feed_stale={"window_s": 10.0}),
                         policy=NO_COOLDOWN)
    report(engine, symbol(), Metric.DATA_FEED_TICK, 1.0, T0)
    assert [t.breaker for t in timers(engine, T0 + 10)] == ["data_feed_stale"]
    reset(engine, symbol(), T0 + 11, force=True)
    assert timers(engine, T0 + 20) == []  # a fresh window from the reset
    (again,) = timers(engine, T0 + 21)
    assert (again.scope, again.breaker) == (symbol(), "data_feed_stale")


def test_directives_accumulate_and_are_recorded() -> None:
    """A panic after a plain halt: its directives are a new transition, with the halt's."""
    engine = make_engine()
    run(engine, engine.plan_trigger(account(), TriggerMode.HALT, "halt",
                                    TriggerReason.USER_INITIATED, (), "op", T0))
    (panic,) = run(engine, engine.plan_trigger(
        account(), TriggerMode.HALT, "panic", TriggerReason.USER_INITIATED,
        (Directive.CANCEL_OPEN_ORDERS, Directive.FLATTEN_POSITIONS), "op", T0 + 1))
    assert panic.state is State.TRIPPED and panic.directives == (
        Directive.CANCEL_OPEN_ORDERS, Directive.FLATTEN_POSITIONS)
    (more,) = run(engine, engine.plan_trigger(
        account(), TriggerMode.HALT, "pause", TriggerReason.USER_INITIATED,
        (Directive.PAUSE_STRATEGIES,), "op", T0 + 2))
    assert more.directives == (Directive.CANCEL_OPEN_ORDERS, Directive.FLATTEN_POSITIONS,
                               Directive.PAUSE_STRATEGIES)
    assert run(engine, engine.plan_trigger(  # nothing new: nothing recorded
        account(), TriggerMode.HALT, "again", TriggerReason.USER_INITIATED,
        (Directive.FLATTEN_POSITIONS,), "op", T0 + 3)) == []


def test_a_reduce_only_trip_never_loosens_cooling_down() -> None:
    engine = make_engine(policy={kind: ResumePolicy(reset_cooldown_s=0, rearm_delay_s=60)
                                 for kind in ScopeKind})
    trip(engine, account())
    reset(engine, account(), T0 + 1)
    assert engine.state_of(account()) is State.COOLING_DOWN
    (held,) = run(engine, engine.plan_trigger(account(), TriggerMode.REDUCE_ONLY, "executor",
                                              TriggerReason.RISK_VIOLATION, (), "exec", T0 + 2))
    assert held.state is State.TRIPPED and held.cause is Cause.TRIGGER
    assert engine.check(order(), T0 + 3).reason is DecisionReason.SCOPE_TRIPPED
    assert timers(engine, T0 + 120) == []  # no re-arm lifts it: a reset does
