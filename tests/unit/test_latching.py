"""Trips are never swallowed: not by a restriction already in place, not by a failed write,
not by a restart that forgot what the breakers had seen."""

from __future__ import annotations

import dataclasses

import pytest

from ess_sidecar.domain.breakers import Metric
from ess_sidecar.domain.commands import Trigger
from ess_sidecar.domain.engine import GuardEngine
from ess_sidecar.domain.errors import InvalidArgument, ResetRefused
from ess_sidecar.domain.states import Cause, Directive, State, TriggerMode, TriggerReason
from ess_sidecar.domain.decisions import DecisionReason
from ess_sidecar.domain.orders import Side
from ess_sidecar.domain.config import GuardConfig, ResumePolicy
from ess_sidecar.domain.scopes import GLOBAL, ScopeKind, sanitized_text
from tests.unit.conftest import ACCOUNT, T0, account, make_engine, order, position, report, \
    reset, rules, run, strategy, symbol, timers, trip

COOLDOWN = 15 * 60

AUTO_DRAWDOWN = rules(daily_drawdown_pct={"auto_rearm": True})


def restarted(engine: GuardEngine, now: float,
              config: GuardConfig | None = None) -> GuardEngine:
    """A new engine loaded from what the store would hold: the latched transitions (with
    another configuration, if given)."""
    fresh = GuardEngine(config or engine.config)
    fresh.heartbeats.restore([(r.executor_id, r.scope, r.ttl_s, r.owner)
                              for r in engine.heartbeats.registrations()], now)
    fresh.restore(engine.restricted(), engine.version, now)
    return fresh


def test_manual_breaker_over_an_auto_rearming_trip_is_latched():
    engine = make_engine(breakers=AUTO_DRAWDOWN)
    report(engine, account(), Metric.DAILY_DRAWDOWN_PCT, 6, T0)
    (latched,) = report(engine, account(), Metric.DATA_FEED_CORRUPT, 1, T0 + 5)
    assert (latched.state, latched.breaker) == (State.TRIPPED, "data_feed_corrupt")
    report(engine, account(), Metric.DAILY_DRAWDOWN_PCT, 1, T0 + 10)
    (rearmed,) = timers(engine, T0 + 10 * COOLDOWN)  # lifts the drawdown's latch only
    assert (rearmed.state, [latch.name for latch in rearmed.latches]) == (
        State.TRIPPED, ["data_feed_corrupt"])
    assert timers(engine, T0 + 20 * COOLDOWN) == []
    assert engine.state_of(account()) is State.TRIPPED


def test_an_auto_rearm_never_resumes_a_scope_while_another_breaker_holds():
    """Weekly drawdown breached but not latched yet (3 samples in a row needed): the daily
    trip's re-arm would resume trading on it; a reset would be refused too."""
    engine = make_engine(breakers=rules(daily_drawdown_pct={"auto_rearm": True},
                                        weekly_drawdown_pct={"consecutive": 3}))
    report(engine, strategy(), Metric.WEEKLY_DRAWDOWN_PCT, 50, T0)
    report(engine, strategy(), Metric.DAILY_DRAWDOWN_PCT, 6, T0 + 1)
    report(engine, strategy(), Metric.DAILY_DRAWDOWN_PCT, 0, T0 + 2)
    assert timers(engine, T0 + 10 * COOLDOWN) == []
    assert engine.state_of(strategy()) is State.TRIPPED
    assert not engine.check(order(), T0 + 10 * COOLDOWN).allowed
    report(engine, strategy(), Metric.WEEKLY_DRAWDOWN_PCT, 1, T0 + 10 * COOLDOWN)
    assert timers(engine, T0 + 10 * COOLDOWN)[0].state is State.ARMED


def test_two_auto_rearming_trips_each_lift_their_own_latch():
    engine = make_engine(breakers=rules(daily_drawdown_pct={"auto_rearm": True},
                                        open_loss_pct={"auto_rearm": True}))
    report(engine, account(), Metric.DAILY_DRAWDOWN_PCT, 6, T0)
    (second,) = report(engine, account(), Metric.OPEN_LOSS_PCT, 12, T0 + 1)
    assert [latch.name for latch in second.latches] == ["daily_drawdown_pct", "open_loss_pct"]
    report(engine, account(), Metric.DAILY_DRAWDOWN_PCT, 1, T0 + 2)
    (one,) = timers(engine, T0 + 10 * COOLDOWN)  # the open loss still holds
    assert [latch.name for latch in one.latches] == ["open_loss_pct"]
    report(engine, account(), Metric.OPEN_LOSS_PCT, 1, T0 + 10 * COOLDOWN)
    assert timers(engine, T0 + 10 * COOLDOWN)[0].state is State.ARMED


def test_stale_trip_is_planned_again_until_it_is_applied():
    engine = make_engine()
    report(engine, strategy(), Metric.DATA_FEED_TICK, 0, T0)
    dropped = engine.plan_timers(T0 + 31)  # say the store failed: never applied
    assert [t.breaker for t in dropped.transitions] == ["data_feed_stale"]
    (trip,) = timers(engine, T0 + 32)
    assert trip.breaker == "data_feed_stale"
    assert timers(engine, T0 + 33) == []  # once applied, once per silence


def test_lost_heartbeat_is_planned_again_until_it_is_applied():
    engine = make_engine()
    engine.heartbeat("ex-1", strategy(), 1.0, T0)
    engine.plan_timers(T0 + 2)  # dropped
    (trip,) = timers(engine, T0 + 3)
    assert trip.cause is Cause.HEARTBEAT_LOST
    assert timers(engine, T0 + 4) == []


def test_after_restart_a_level_condition_holds_until_a_fresh_sample():
    engine = make_engine()
    report(engine, strategy(), Metric.DAILY_DRAWDOWN_PCT, 8, T0)
    engine = restarted(engine, T0 + 60)
    with pytest.raises(ResetRefused, match="daily_drawdown_pct"):
        reset(engine, strategy(), T0 + COOLDOWN + 60)
    report(engine, strategy(), Metric.DAILY_DRAWDOWN_PCT, 2, T0 + COOLDOWN + 61)
    assert reset(engine, strategy(), T0 + COOLDOWN + 62)[0].state is State.ARMED


def test_after_restart_an_event_window_holds_for_one_window():
    engine = make_engine()
    report(engine, strategy(), Metric.EXECUTION_ERROR, 5, T0)
    engine = restarted(engine, T0 + 60)
    with pytest.raises(ResetRefused, match="execution_errors"):
        reset(engine, strategy(), T0 + 60 + 15 * 60 - 1)
    assert reset(engine, strategy(), T0 + 60 + 15 * 60)[0].state is State.ARMED


def test_after_restart_auto_rearm_waits_for_evidence():
    engine = make_engine(breakers=rules(system_health={"auto_rearm": True}))
    report(engine, account(), Metric.SYSTEM_HEALTH, 2, T0)
    engine = restarted(engine, T0 + 1)
    assert timers(engine, T0 + 10 * COOLDOWN) == []
    report(engine, account(), Metric.SYSTEM_HEALTH, 0, T0 + 10 * COOLDOWN)
    assert timers(engine, T0 + 10 * COOLDOWN + 1)[0].state is State.ARMED


@pytest.mark.parametrize("set_under,now", [(False, True), (True, False)])
def test_a_latch_re_arms_by_itself_only_if_its_rule_did_when_set_and_does_now(
        set_under: bool, now: bool) -> None:
    """Known gap 22 until stop 56 (review 55b): a breaker switched to auto_rearm before a
    restart lifted the latches it had set under a manual re-arm, with no reset, where the
    sidecar that set them held them until one. Switched the other way, the manual rule
    now in force holds them too: the stricter of the two."""
    engine = make_engine(breakers=rules(system_health={"auto_rearm": set_under}))
    (tripped,) = report(engine, account(), Metric.SYSTEM_HEALTH, 2, T0)
    assert [latch.auto_rearm for latch in tripped.latches] == [set_under]
    switched = make_engine(breakers=rules(system_health={"auto_rearm": now})).config
    engine = restarted(engine, T0 + 1, switched)
    assert engine.rearming_by_themselves(engine.current(account())) == []  # as shown
    report(engine, account(), Metric.SYSTEM_HEALTH, 0, T0 + 10 * COOLDOWN)
    assert timers(engine, T0 + 10 * COOLDOWN + 1) == []
    assert engine.state_of(account()) is State.TRIPPED
    assert reset(engine, account(), T0 + 10 * COOLDOWN + 2)[0].state is State.ARMED


def test_which_latches_lift_by_themselves_is_told() -> None:
    """Review 55b: GetState showed no latch's re-arm mode, so an operator could not tell a
    latch that waits for a reset from one the timers lift once its evidence clears."""
    engine = make_engine(breakers=AUTO_DRAWDOWN)
    report(engine, account(), Metric.DAILY_DRAWDOWN_PCT, 6, T0)
    report(engine, account(), Metric.DATA_FEED_CORRUPT, 1, T0 + 5)
    trip(engine, account(), T0 + 6)
    current = engine.current(account())
    assert [latch.name for latch in current.held()] == [
        "daily_drawdown_pct", "data_feed_corrupt", "trigger"]
    assert engine.rearming_by_themselves(current) == ["daily_drawdown_pct"]
    report(engine, account(), Metric.DAILY_DRAWDOWN_PCT, 1, T0 + 10)
    (rearmed,) = timers(engine, T0 + 10 * COOLDOWN)  # as told: that one, and no other
    assert [latch.name for latch in rearmed.held()] == ["data_feed_corrupt", "trigger"]
    assert engine.rearming_by_themselves(rearmed) == []


def test_a_latch_recorded_before_its_mode_was_kept_re_arms_by_the_rule_in_force():
    """A latch from a store or journal written before stop 56 carries no mode (None): the
    rule in force decides, as it did."""
    engine = make_engine(breakers=rules(system_health={"auto_rearm": True}))
    (tripped,) = report(engine, account(), Metric.SYSTEM_HEALTH, 2, T0)
    older = dataclasses.replace(tripped, latches=tuple(
        dataclasses.replace(latch, auto_rearm=None) for latch in tripped.latches))
    fresh = GuardEngine(engine.config)
    fresh.restore([older], older.version, T0 + 1)
    report(fresh, account(), Metric.SYSTEM_HEALTH, 0, T0 + 10 * COOLDOWN)
    assert timers(fresh, T0 + 10 * COOLDOWN + 1)[0].state is State.ARMED


def test_a_latch_set_to_wait_still_waits_once_made_stricter_under_an_auto_rule():
    """A latch that waits for a reset, made stricter after a restart under a rule that
    now re-arms by itself, still waits: it was never one that lifts by itself."""
    manual = make_engine(breakers=rules(system_health={"mode": TriggerMode.REDUCE_ONLY}))
    report(manual, account(), Metric.SYSTEM_HEALTH, 2, T0)
    auto = make_engine(breakers=rules(system_health={"auto_rearm": True})).config
    engine = restarted(manual, T0 + 1, auto)
    (stricter,) = report(engine, account(), Metric.SYSTEM_HEALTH, 2, T0 + 2)
    assert stricter.state is State.TRIPPED and stricter.latches[0].auto_rearm is False
    report(engine, account(), Metric.SYSTEM_HEALTH, 0, T0 + 10 * COOLDOWN)
    assert timers(engine, T0 + 10 * COOLDOWN + 1) == []
    assert engine.state_of(account()) is State.TRIPPED


def test_after_restart_a_lost_executor_holds_until_it_beats():
    engine = make_engine()
    engine.heartbeat("ex-1", strategy(), 1.0, T0)
    timers(engine, T0 + 2)
    engine = restarted(engine, T0 + 5)
    with pytest.raises(ResetRefused, match="heartbeat_lost"):
        reset(engine, strategy(), T0 + COOLDOWN + 5)
    engine.heartbeat("ex-1", strategy(), 1.0, T0 + COOLDOWN + 6)
    assert reset(engine, strategy(), T0 + COOLDOWN + 6)[0].state is State.ARMED


def test_equity_samples_do_not_clear_a_reported_total_drawdown():
    engine = make_engine()
    report(engine, account(), Metric.TOTAL_DRAWDOWN_PCT, 25, T0)
    report(engine, account(), Metric.EQUITY, 100_000, T0 + 1)
    with pytest.raises(ResetRefused, match="total_drawdown_pct"):
        reset(engine, account(), T0 + COOLDOWN)


def test_sync_positions_refuses_duplicates_and_changes_nothing():
    engine = make_engine()
    engine.sync_positions("acc-1", 1e6, [position(10)])
    with pytest.raises(InvalidArgument, match=r"positions\[1\]"):
        engine.sync_positions("acc-1", 5e5, [position(1), position(2)])
    assert engine.book.position("acc-1", "strat-1", "BTC-USD") == 10
    assert engine.book.equity("acc-1") == 1e6




def test_a_trigger_is_never_refused_for_its_reason_text():
    engine = make_engine()
    reason = "slippage\r\n\x1b[31mRED\x1b[0m " + "x" * 5000
    [tripped] = run(engine, engine.plan_trigger(Trigger(strategy(), TriggerMode.HALT, reason,
                                                        TriggerReason.RISK_VIOLATION, (),
                                                        "op"), T0))
    assert tripped.state is State.TRIPPED
    assert len(tripped.reason) <= 1024 and "\x1b" not in tripped.reason and "\r" not in \
        tripped.reason
    assert tripped.reason.startswith("slippage\\r\n\\x1b[31mRED") and "characters given]" in \
        tripped.reason


def test_a_long_reason_of_control_characters_is_cut_before_it_is_written_out():
    """Review 34: 4 million NULs were each escaped (40 MB) before the cut."""
    text = sanitized_text("\x00" * 4_000_000)
    assert len(text) <= 1024 and text.startswith("\\x00" * 200)
    assert text.endswith(" [… cut; 4000000 characters given]")
    assert sanitized_text("\x00" * 200) == "\\x00" * 200  # 800 characters: not cut


# -- a plan being stored: its trips block checks before apply (GuardEngine.hold) ---------------

def plan_trip(engine: GuardEngine, scope, mode: TriggerMode = TriggerMode.HALT):  # noqa: ANN201
    return engine.plan_trigger(Trigger(scope, mode, "drill", TriggerReason.USER_INITIATED, (),
                                       "operator"), T0)


@pytest.mark.parametrize("scope", [GLOBAL, account(), strategy(), symbol()])
def test_a_held_trip_denies_orders_on_its_scope_before_it_is_applied(scope) -> None:
    engine = make_engine()
    plan = plan_trip(engine, scope)
    engine.hold(plan.transitions)
    denied = engine.check(order(), T0)
    assert (denied.allowed, denied.reason, denied.blocking_scope) == (
        False, DecisionReason.SCOPE_TRIPPED, scope)
    assert engine.state_of(scope) is State.ARMED and engine.version == 0  # not applied
    engine.release()
    assert engine.check(order(), T0).allowed  # never stored (the caller failed closed)


def test_a_held_reduce_only_trip_allows_only_reducing_orders() -> None:
    engine = make_engine()
    engine.sync_positions(ACCOUNT, 1e6, [position(10.0)])
    engine.hold(plan_trip(engine, account(), TriggerMode.REDUCE_ONLY).transitions)
    assert not engine.check(order(1.0), T0).allowed
    assert engine.check(order(1.0, side=Side.SELL), T0).allowed


def test_a_held_reset_lifts_nothing_and_a_held_trip_adds_to_what_is_applied() -> None:
    engine = make_engine()
    trip(engine, strategy())
    resetting = engine.plan_reset(strategy(), "checked", True, "operator", T0)
    engine.hold(resetting.transitions)
    assert not engine.check(order(), T0).allowed  # loosening waits for apply()
    engine.release()
    engine.apply(resetting.transitions)
    assert engine.check(order(), T0).allowed
    engine.hold(plan_trip(engine, strategy("other")).transitions)
    assert engine.check(order(), T0).allowed  # another strategy: not held
    assert not engine.check(order(strategy="other"), T0).allowed


def test_a_held_reset_that_tightens_reduce_only_to_cooling_down_denies_at_once() -> None:
    engine = make_engine(policy={ScopeKind.ACCOUNT: ResumePolicy(0, rearm_delay_s=60)})
    engine.sync_positions(ACCOUNT, 1e6, [position(10.0)])
    trip(engine, account(), mode=TriggerMode.REDUCE_ONLY)
    reducing = order(1.0, side=Side.SELL)
    assert engine.check(reducing, T0).allowed
    resetting = engine.plan_reset(account(), "checked", True, "operator", T0)
    assert [t.state for t in resetting.transitions] == [State.COOLING_DOWN]
    engine.hold(resetting.transitions)
    assert engine.check(order(1.0, side=Side.SELL), T0).reason is DecisionReason.COOLING_DOWN


def test_a_trigger_that_adds_directives_restarts_the_reset_cooldown():
    """A halt, then after its cooldown a panic (flatten positions) on the same scope: the
    scope is stricter than the cooldown was counted for, so it counts again."""
    engine = make_engine()
    trip(engine, account(), T0)
    panic = Trigger(account(), TriggerMode.HALT, "panic", TriggerReason.USER_INITIATED,
                    (Directive.FLATTEN_POSITIONS,), "operator")
    (escalated,) = run(engine, engine.plan_trigger(panic, T0 + COOLDOWN + 1))
    assert escalated.directives == (Directive.CANCEL_OPEN_ORDERS, Directive.FLATTEN_POSITIONS)
    with pytest.raises(ResetRefused, match="cooldown"):
        reset(engine, account(), T0 + COOLDOWN + 2)
    assert engine.reset_allowed_at(escalated) == T0 + 2 * COOLDOWN + 1
    (resumed,) = reset(engine, account(), T0 + 2 * COOLDOWN + 1)
    assert resumed.state is State.ARMED


def test_a_second_stop_of_a_halted_scope_is_never_lifted_by_a_reset_made_before_it():
    """Review 31: a second halt of a scope already halted was dropped, so a reset with the
    version the operator had seen before it, after its cooldown, lifted it unseen."""
    engine = make_engine()
    (first,) = trip(engine, account(), T0)
    again = Trigger(account(), TriggerMode.HALT, "feed corrupt, do not resume",
                    TriggerReason.USER_INITIATED, (), "bob")
    (second,) = run(engine, engine.plan_trigger(again, T0 + COOLDOWN))
    assert second.version > first.version and second.state is State.TRIPPED
    assert second.actor == "bob" and "feed corrupt" in second.reason
    with pytest.raises(ResetRefused, match="changed since version"):
        run(engine, engine.plan_reset(account(), "seen", False, "alice", T0 + 2 * COOLDOWN,
                                      expected_version=first.version))
    with pytest.raises(ResetRefused, match="cooldown"):  # counted from the second stop
        reset(engine, account(), T0 + COOLDOWN + 1)
    (resumed,) = reset(engine, account(), T0 + 2 * COOLDOWN)
    assert resumed.state is State.ARMED


def test_global_tripped_by_a_start_that_could_not_trust_its_state_is_never_reset():
    """Started failed closed (a damaged journal, say): memory may lack working orders and
    fills, so not even a forced reset resumes GLOBAL in that process. Other scopes reset."""
    engine = make_engine()
    trip(engine, GLOBAL, T0)
    trip(engine, account(), T0)
    engine.untrusted = "journal damaged"
    with pytest.raises(ResetRefused, match="cannot be reset in this process: journal damaged"):
        reset(engine, GLOBAL, T0 + 10 * COOLDOWN, force=True)
    assert engine.state_of(GLOBAL) is State.TRIPPED
    (lifted,) = reset(engine, account(), T0 + 10 * COOLDOWN)
    assert lifted.state is State.ARMED
