"""Latches keep their word: a reset erases no evidence it does not own, a forced reset
re-arms the timers, directives accumulate, and no trip loosens a state."""

from __future__ import annotations

import pytest

from ess_sidecar.domain.breakers import Metric
from ess_sidecar.domain.commands import Trigger
from ess_sidecar.domain.config import ResumePolicy
from ess_sidecar.domain.decisions import DecisionReason
from ess_sidecar.domain.errors import InvalidArgument, ResetRefused
from ess_sidecar.domain.scopes import ScopeKind
from ess_sidecar.domain.states import Cause, Directive, State, TriggerMode, TriggerReason

from .conftest import T0, account, make_engine, order, report, reset, rules, run, strategy, \
    symbol, timers, trip

STREAK_OF_3 = rules(consecutive_losses={"threshold": 3}, failed_trades={"threshold": 100})
NO_COOLDOWN = {kind: ResumePolicy(reset_cooldown_s=0) for kind in ScopeKind}


def losses(engine, count: int, now: float = T0) -> list:  # noqa: ANN001
    return [t for _ in range(count) for t in report(engine, account(), Metric.TRADE_RESULT,
                                                    -1.0, now)]


def test_a_drills_reset_keeps_the_losing_streak() -> None:
    engine = make_engine(breakers=STREAK_OF_3,
                         policy=NO_COOLDOWN)
    assert losses(engine, 2) == []
    run(engine, engine.plan_trigger(Trigger(account(), TriggerMode.HALT, "drill",
                                            TriggerReason.USER_INITIATED, (), "op",
                                            drill=True), T0))
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


def test_a_forced_reset_rearms_a_feed_assumed_stale_after_a_restart() -> None:
    """Review 47a: after a start whose journal lacked the feed's ticks (a reseal cut
    them), its stale latch was restored as holding with no tick known; a forced reset
    lifted it but started no window, so the dead feed never tripped again, and its
    assumed staleness refused the next plain reset of any other trip of the scope."""
    engine = make_engine(breakers=rules(data_feed_stale={"window_s": 10.0}),
                         policy=NO_COOLDOWN)
    report(engine, symbol(), Metric.DATA_FEED_TICK, 1.0, T0)
    (stale,) = timers(engine, T0 + 10)
    restarted = make_engine(breakers=rules(data_feed_stale={"window_s": 10.0}),
                            policy=NO_COOLDOWN)
    restarted.restore([stale], stale.version, T0 + 50)
    reset(restarted, symbol(), T0 + 51, force=True)
    assert restarted.state_of(symbol()) is State.ARMED
    assert timers(restarted, T0 + 60) == []  # a fresh window from the reset
    (again,) = timers(restarted, T0 + 61)
    assert (again.scope, again.breaker) == (symbol(), "data_feed_stale")
    reset(restarted, symbol(), T0 + 62, force=True)
    trip(restarted, symbol(), T0 + 63)  # an operator's, within the fresh window
    reset(restarted, symbol(), T0 + 64)  # nothing assumed holds it
    assert restarted.state_of(symbol()) is State.ARMED


def through_and_restarted(policy, scope) -> tuple:  # noqa: ANN001
    """Two engines with `scope` latched by an open loss of 50 %: one that ran through, and
    one restarted with only the latched transition (its evidence lost: assumed)."""
    through = make_engine(policy=policy)
    (tripped,) = report(through, scope, Metric.OPEN_LOSS_PCT, 50.0, T0)
    restarted = make_engine(policy=policy)
    restarted.restore([tripped], tripped.version, T0 + 1)
    return through, restarted


def test_after_a_restart_a_forced_reset_lifts_as_much_as_one_that_ran_through() -> None:
    """A latch restored with no evidence is assumed to hold until a sample clears it, as
    the evidence would have: a forced reset with a re-arm delay leaves an open loss's
    scope COOLING_DOWN until a sample under the threshold (review 47h: review 47f's
    change lifted the assumption, and the restarted sidecar re-armed and allowed orders
    one that ran through denied); a losing streak's latch, which a reset restarts, is
    lifted with it (47f: a plain reset of another trip was refused for it)."""
    limits = {kind: ResumePolicy(reset_cooldown_s=0, rearm_delay_s=2) for kind in ScopeKind}
    for each in through_and_restarted(limits, account()):
        reset(each, account(), T0 + 11, force=True)
        assert timers(each, T0 + 3600) == []  # still COOLING_DOWN: the loss holds
        assert each.state_of(account()) is State.COOLING_DOWN
        report(each, account(), Metric.OPEN_LOSS_PCT, 1.0, T0 + 3601)
        (armed,) = timers(each, T0 + 3602)
        assert (armed.scope, armed.state) == (account(), State.ARMED)
    streaks = make_engine(breakers=STREAK_OF_3, policy=NO_COOLDOWN)
    streak = losses(streaks, 3)[0]
    restarted = make_engine(breakers=STREAK_OF_3, policy=NO_COOLDOWN)
    restarted.restore([streak], streak.version, T0 + 10)
    reset(restarted, account(), T0 + 11, force=True)
    trip(restarted, account(), T0 + 12)
    reset(restarted, account(), T0 + 13)  # plain: the streak began again
    assert restarted.state_of(account()) is State.ARMED


def test_a_restarts_assumption_outlives_a_timer_run_as_the_evidence_would() -> None:
    """Review 47j: kept through a forced reset, a level's assumption was evicted at the
    next timer run once the scope was ARMED (its record had never been seen), and a plain
    reset of an operator's trip was accepted that a sidecar that ran through refused."""
    policy = {kind: ResumePolicy(reset_cooldown_s=0) for kind in ScopeKind}
    for each in through_and_restarted(policy, strategy()):
        reset(each, strategy(), T0 + 10, force=True)
        timers(each, T0 + 11)
        trip(each, strategy(), T0 + 20)
        with pytest.raises(ResetRefused, match="open_loss_pct"):
            reset(each, strategy(), T0 + 21)


def test_after_a_restart_the_next_event_within_the_window_trips_again() -> None:
    """Review 47j: a restart rebuilt no event window, so after a forced reset the next
    error did not re-trip where the lost ones still counted for a sidecar that ran
    through. The window is restored holding its threshold, reported at the restart."""
    rule = rules(execution_errors={"threshold": 3.0, "window_s": 60.0})
    through = make_engine(breakers=rule, policy=NO_COOLDOWN)
    (tripped,) = report(through, account(), Metric.EXECUTION_ERROR, 3.0, T0)
    restarted = make_engine(breakers=rule, policy=NO_COOLDOWN)
    restarted.restore([tripped], tripped.version, T0 + 1)
    for each in (through, restarted):
        with pytest.raises(ResetRefused, match="execution_errors"):
            reset(each, account(), T0 + 2)
        reset(each, account(), T0 + 2, force=True)
        (again,) = report(each, account(), Metric.EXECUTION_ERROR, 1.0, T0 + 30)
        assert again.breaker == "execution_errors"
        reset(each, account(), T0 + 62, force=True)  # the first three have left it
        assert report(each, account(), Metric.EXECUTION_ERROR, 1.0, T0 + 62) == []
        assert each.state_of(account()) is State.ARMED


def test_after_a_restart_the_next_breach_trips_again() -> None:
    """Review 47j: a level's breach count started at 0 after a restart, so with
    `consecutive` 3, after a forced reset three more breaches were needed where one that
    ran through tripped on the next."""
    rule = rules(open_loss_pct={"threshold": 10.0, "consecutive": 3})
    through = make_engine(breakers=rule, policy=NO_COOLDOWN)
    for _ in range(2):
        assert report(through, account(), Metric.OPEN_LOSS_PCT, 50.0, T0) == []
    (tripped,) = report(through, account(), Metric.OPEN_LOSS_PCT, 50.0, T0)
    restarted = make_engine(breakers=rule, policy=NO_COOLDOWN)
    restarted.restore([tripped], tripped.version, T0 + 1)
    for each in (through, restarted):
        reset(each, account(), T0 + 2, force=True)
        (again,) = report(each, account(), Metric.OPEN_LOSS_PCT, 50.0, T0 + 3)
        assert again.breaker == "open_loss_pct"
        reset(each, account(), T0 + 4, force=True)
        assert report(each, account(), Metric.OPEN_LOSS_PCT, 1.0, T0 + 5) == []
        assert report(each, account(), Metric.OPEN_LOSS_PCT, 50.0, T0 + 6) == []  # 1 of 3


def test_a_restart_that_replays_a_trip_and_its_reset_keeps_what_the_reset_kept() -> None:
    """Review 48a: with no journal, the store's history is applied in order, and only the
    latches still held at its end were assumed: a trip forced off before the restart left
    no evidence, so a plain reset of the next operator's trip was accepted behind an open
    loss, the next error in the window did not re-trip, and a dead feed was never watched
    again. Each trip's evidence is assumed as it is applied; the reset then lifts what it
    did in the sidecar that ran through."""
    rule = rules(execution_errors={"threshold": 3.0, "window_s": 60.0},
                 data_feed_stale={"window_s": 10.0})
    through = make_engine(breakers=rule, policy=NO_COOLDOWN)
    history = [*report(through, account(), Metric.OPEN_LOSS_PCT, 50.0, T0),
               *report(through, strategy(), Metric.EXECUTION_ERROR, 3.0, T0),
               *report(through, symbol(), Metric.DATA_FEED_TICK, 1.0, T0),
               *timers(through, T0 + 10)]
    history += [*reset(through, account(), T0 + 11, force=True),
                *reset(through, strategy(), T0 + 11, force=True),
                *reset(through, symbol(), T0 + 11, force=True)]
    assert len(history) == 6
    restarted = make_engine(breakers=rule, policy=NO_COOLDOWN)
    restarted.catch_up(history, history[-1].version, T0 + 12)
    for each in (through, restarted):
        trip(each, account(), T0 + 13)
        with pytest.raises(ResetRefused, match="open_loss_pct"):
            reset(each, account(), T0 + 14)
        (again,) = report(each, strategy(), Metric.EXECUTION_ERROR, 1.0, T0 + 15)
        assert again.breaker == "execution_errors"
        assert timers(each, T0 + 20) == []
        (stale,) = timers(each, T0 + 21)  # a window from the reset
        assert (stale.scope, stale.breaker) == (symbol(), "data_feed_stale")


def test_a_checked_reset_in_the_replayed_history_ends_what_the_restart_assumed() -> None:
    """Review 48b: applying the history after a restart, each trip's evidence was assumed
    and kept past a plain reset, which the sidecar that ran through accepted only because
    the condition no longer held: a scope stayed COOLING_DOWN until a sample for the
    metric came (days), and the next event re-tripped a window that had cleared."""
    rule = rules(api_errors={"threshold": 3.0, "window_s": 60.0})
    delay = {kind: ResumePolicy(reset_cooldown_s=0, rearm_delay_s=30) for kind in ScopeKind}
    through = make_engine(breakers=rule, policy=delay)
    history = [*report(through, account(), Metric.OPEN_LOSS_PCT, 50.0, T0),
               *report(through, strategy(), Metric.API_ERROR, 3.0, T0)]
    report(through, account(), Metric.OPEN_LOSS_PCT, 1.0, T0 + 5)  # lost with the journal
    history += [*reset(through, account(), T0 + 10), *reset(through, strategy(), T0 + 70)]
    restarted = make_engine(breakers=rule, policy=delay)
    restarted.catch_up(history, history[-1].version, T0 + 75)
    for each in (through, restarted):
        timers(each, T0 + 101)
        assert each.state_of(account()) is State.ARMED  # its re-arm delay over
        assert report(each, strategy(), Metric.API_ERROR, 1.0, T0 + 102) == []
        timers(each, T0 + 102)
        assert each.state_of(strategy()) is State.ARMED


def test_a_checked_reset_in_the_replayed_history_keeps_what_the_window_may_still_hold(
        ) -> None:
    """Review 48d: a plain reset is accepted once fewer than the threshold are in the
    window, not none: emptied by it after a restart, the next error did not re-trip
    where the trip's own reports still counted in the sidecar that ran through."""
    rule = rules(api_errors={"threshold": 3.0, "window_s": 100.0})
    through = make_engine(breakers=rule, policy=NO_COOLDOWN)
    report(through, strategy(), Metric.API_ERROR, 1.0, T0 - 80)
    report(through, strategy(), Metric.API_ERROR, 1.0, T0 - 50)
    history = report(through, strategy(), Metric.API_ERROR, 1.0, T0)
    history += reset(through, strategy(), T0 + 30)  # the first has left the window
    restarted = make_engine(breakers=rule, policy=NO_COOLDOWN)
    restarted.catch_up(history, history[-1].version, T0 + 35)
    for each in (through, restarted):
        (again,) = report(each, strategy(), Metric.API_ERROR, 1.0, T0 + 40)
        assert again.breaker == "api_errors"
        reset(each, strategy(), T0 + 150, force=True)  # all three have left it
        assert report(each, strategy(), Metric.API_ERROR, 1.0, T0 + 150) == []


def test_what_a_checked_reset_leaves_in_the_window_counts_what_it_holds_already() -> None:
    """Review 48f: the events one short of the threshold were added on top of those the
    journal held, so the window held again after a reset accepted because it did not,
    and the next plain reset was refused."""
    rule = rules(api_errors={"threshold": 3.0, "window_s": 60.0})
    engines = [make_engine(breakers=rule, policy=NO_COOLDOWN) for _ in range(2)]
    for each in engines:  # the journal's part
        report(each, strategy(), Metric.API_ERROR, 1.0, T0 + 10)
        report(each, strategy(), Metric.API_ERROR, 1.0, T0 + 20)
    through, restarted = engines
    lacking = [*report(through, strategy(), Metric.API_ERROR, 1.0, T0 + 30),
               *reset(through, strategy(), T0 + 71)]  # the first has left: 2 of 3
    restarted.catch_up(lacking, lacking[-1].version, T0 + 72)
    for each in engines:
        trip(each, strategy(), T0 + 73)
        reset(each, strategy(), T0 + 75)
        assert each.state_of(strategy()) is State.ARMED
        (again,) = report(each, strategy(), Metric.API_ERROR, 1.0, T0 + 76)  # 3 of 3
        assert again.breaker == "api_errors"


def test_a_lapse_the_journal_cannot_show_is_assumed() -> None:
    """Review 48f: applying an executor's loss marked lost only those the journal's beats
    showed lapsed; with a TTL shortened in what the journal lost, none was, and the
    latch held on nothing: a plain reset was accepted (an auto re-arm lifted it at once).
    48g: nor may the one it shows lapsed be the one that did ("x" beats on)."""
    engines = [make_engine(policy=NO_COOLDOWN) for _ in range(2)]
    for each in engines:  # the journal's part
        each.heartbeat("a", strategy(), 60, T0)
        each.heartbeat("x", strategy(), 5, T0)
    through, restarted = engines
    through.heartbeat("a", strategy(), 5, T0 + 1)  # lost with the journal
    through.heartbeat("x", strategy(), 5, T0 + 4)
    lacking = timers(through, T0 + 7)
    assert [t.breaker for t in lacking] == ["heartbeat_lost"]
    restarted.catch_up(lacking, lacking[-1].version, T0 + 8)
    for each in engines:
        each.heartbeat("x", strategy(), 5, T0 + 8.5)  # "a" is dead
        with pytest.raises(ResetRefused, match="heartbeat_lost"):
            reset(each, strategy(), T0 + 9)


def test_a_checked_lift_of_an_executors_loss_in_the_history_runs_from_the_last_beat_known(
        ) -> None:
    """Review 48g: assumed lapsed at the trip, every executor of the scope got a fresh TTL
    from a checked reset, so one whose beats the journal held whole tripped a TTL after
    the reset, not after its last beat; and after a re-arm (which a sidecar that ran
    through makes once they beat) none was watched again: a dead one never tripped."""
    auto = rules(heartbeat_lost={"auto_rearm": True})
    for lift in ("reset", "re-arm"):
        engines = [make_engine(policy=NO_COOLDOWN, breakers=auto) for _ in range(2)]
        for each in engines:  # the journal's part
            each.heartbeat("a", strategy(), 60, T0)
            each.heartbeat("b", strategy(), 60, T0)
        through, restarted = engines
        through.heartbeat("a", strategy(), 5, T0 + 1)  # lost with the journal
        lacking = timers(through, T0 + 7)  # "a" lapsed
        through.heartbeat("a", strategy(), 5, T0 + 8)
        lacking += reset(through, strategy(), T0 + 9) if lift == "reset" \
            else timers(through, T0 + 9)
        assert through.state_of(strategy()) is State.ARMED
        restarted.catch_up(lacking, lacking[-1].version, T0 + 10)
        assert timers(restarted, T0 + 59) == []  # "b" beat last at T0, with a TTL of 60
        for each in engines:  # "a" is dead since T0 + 8, "b" since T0
            (lost,) = timers(each, T0 + 61)
            assert lost.breaker == "heartbeat_lost"


def test_where_the_history_is_cut_into_records_changes_nothing() -> None:
    """Review 48b: applied in records (`Restored`, up to 2,000 transitions each), the end of
    each assumed every latch the scope then held, those the journal had the evidence of
    included: in one record a scope re-armed, in two it stayed COOLING_DOWN behind a
    health breaker the journal had seen clear."""
    delay = {kind: ResumePolicy(reset_cooldown_s=0, rearm_delay_s=2) for kind in ScopeKind}
    engines = [make_engine(policy=delay) for _ in range(3)]
    for each in engines:  # the journal's part: a health trip, and the sample that cleared it
        report(each, account(), Metric.SYSTEM_HEALTH, 2.0, T0)
        report(each, account(), Metric.SYSTEM_HEALTH, 0.0, T0 + 1)
    through, whole, cut = engines
    lacking = [*trip(through, account(), T0 + 2), *reset(through, account(), T0 + 3, force=True)]
    whole.catch_up(lacking, lacking[-1].version, T0 + 4)
    for transition in lacking:
        cut.catch_up([transition], transition.version, T0 + 4)
    for each in engines:
        (armed,) = timers(each, T0 + 5)
        assert (armed.scope, armed.state) == (account(), State.ARMED)


def test_where_the_history_is_cut_changes_no_executor_assumed_lapsed() -> None:
    """Review 48d: executors were assumed lapsed at the end of each record: cut between a
    lapse and its reset, every executor of the scope counted from the reset, and the one
    that beat last tripped a TTL after it, past one that ran through; in one record, a
    TTL after its last beat the journal held, before it."""
    engines = [make_engine(policy=NO_COOLDOWN) for _ in range(3)]
    for each in engines:  # the journal's part
        each.heartbeat("a", strategy(), 10, T0)
        each.heartbeat("b", strategy(), 10, T0 + 5)
    through, whole, cut = engines
    through.heartbeat("b", strategy(), 10, T0 + 10.5)  # lost with the journal
    lacking = timers(through, T0 + 11)  # "a" lapsed
    through.heartbeat("a", strategy(), 10, T0 + 11.5)
    lacking += reset(through, strategy(), T0 + 12)
    whole.catch_up(lacking, lacking[-1].version, T0 + 13)
    for transition in lacking:
        cut.catch_up([transition], transition.version, T0 + 13)
    assert timers(through, T0 + 16) == []  # "b" beat at T0 + 10.5, which the others lost
    for each in (whole, cut):  # a TTL after its last beat known, T0 + 5
        assert timers(each, T0 + 16)
    assert timers(through, T0 + 21)


def test_a_restarts_assumption_does_not_hold_older_evidence_back_from_eviction() -> None:
    """Review 48a: an assumed latch's record kept its place in the least recently used
    order, with a recent time: eviction, which stops at the first record it keeps, kept
    every idle one behind it, and at `limits.max_scopes_with_evidence` GLOBAL tripped."""
    restarted = make_engine(policy=NO_COOLDOWN)
    report(restarted, strategy("old"), Metric.OPEN_LOSS_PCT, 1.0, T0)
    for number in range(5):
        report(restarted, strategy(f"idle{number}"), Metric.OPEN_LOSS_PCT, 1.0, T0 + 1)
    tripped = make_engine(policy=NO_COOLDOWN)
    (trip_of_old,) = report(tripped, strategy("old"), Metric.OPEN_LOSS_PCT, 50.0, T0 + 2)
    restarted.restore([trip_of_old], trip_of_old.version, T0 + 3000)
    assert len(restarted.breakers) == 6
    timers(restarted, T0 + 2 + restarted.config.limits.idle_evidence_s)  # idle, not "old"
    assert strategy("old") in restarted.breakers
    assert len(restarted.breakers) == 1  # the idle ones went


def test_a_feed_assumed_stale_with_a_later_tick_known_runs_its_window_from_it() -> None:
    """Review 47j: restored from the store after the journal's replay had a tick later
    than the stale trip, the latch was assumed to hold and a forced reset started a
    window from the reset: the dead feed tripped again a window after the reset, where a
    sidecar that ran through tripped it a window after that tick."""
    rule = rules(data_feed_stale={"window_s": 30.0})
    through = make_engine(breakers=rule, policy=NO_COOLDOWN)
    report(through, symbol(), Metric.DATA_FEED_TICK, 1.0, T0)
    (stale,) = timers(through, T0 + 30)
    report(through, symbol(), Metric.DATA_FEED_TICK, 1.0, T0 + 40)
    restarted = make_engine(breakers=rule, policy=NO_COOLDOWN)
    report(restarted, symbol(), Metric.DATA_FEED_TICK, 1.0, T0)
    report(restarted, symbol(), Metric.DATA_FEED_TICK, 1.0, T0 + 40)
    restarted.restore([stale], stale.version, T0 + 45)  # the trip from the store
    for each in (through, restarted):
        reset(each, symbol(), T0 + 50, force=True)
        (again,) = timers(each, T0 + 70)  # a window after the tick at T0 + 40
        assert (again.scope, again.breaker) == (symbol(), "data_feed_stale")


def test_a_forced_reset_of_a_feed_silent_past_its_window_starts_a_fresh_one() -> None:
    """Review 47f: under its latch a feed ticked once and went silent again; a timer run
    marked it (no record), so a forced reset gave it a fresh window, and a restart before
    that reset, which had no mark, tripped it a window early. The window is now from
    what the journal holds alone: the feed was silent past its window at the reset."""
    rule = rules(data_feed_stale={"window_s": 10.0})
    engine = make_engine(breakers=rule, policy=NO_COOLDOWN)
    report(engine, symbol(), Metric.DATA_FEED_TICK, 1.0, T0)
    timers(engine, T0 + 10)  # stale: latched
    report(engine, symbol(), Metric.DATA_FEED_TICK, 1.0, T0 + 11)
    replayed = make_engine(breakers=rule, policy=NO_COOLDOWN)
    report(replayed, symbol(), Metric.DATA_FEED_TICK, 1.0, T0)
    timers(replayed, T0 + 10)
    report(replayed, symbol(), Metric.DATA_FEED_TICK, 1.0, T0 + 11)
    assert timers(engine, T0 + 21) == []  # silent again, marked under the latch
    for each in (engine, replayed):  # the second never ran that timer run
        reset(each, symbol(), T0 + 25, force=True)
        assert timers(each, T0 + 34) == []
        (again,) = timers(each, T0 + 35)
        assert (again.scope, again.breaker) == (symbol(), "data_feed_stale")


def test_directives_accumulate_and_are_recorded() -> None:
    """A panic after a plain halt: its directives are a new transition, with the halt's."""
    engine = make_engine()
    run(engine, engine.plan_trigger(Trigger(account(), TriggerMode.HALT, "halt",
                                            TriggerReason.USER_INITIATED, (), "op"), T0))
    panic_directives = (Directive.CANCEL_OPEN_ORDERS, Directive.FLATTEN_POSITIONS)
    (panic,) = run(engine, engine.plan_trigger(Trigger(account(), TriggerMode.HALT, "panic",
                                                       TriggerReason.USER_INITIATED,
                                                       panic_directives, "op"), T0 + 1))
    assert panic.state is State.TRIPPED and panic.directives == (
        Directive.CANCEL_OPEN_ORDERS, Directive.FLATTEN_POSITIONS)
    (more,) = run(engine, engine.plan_trigger(Trigger(account(), TriggerMode.HALT, "pause",
                                                      TriggerReason.USER_INITIATED,
                                                      (Directive.PAUSE_STRATEGIES,),
                                                      "op"), T0 + 2))
    assert more.directives == (Directive.CANCEL_OPEN_ORDERS, Directive.FLATTEN_POSITIONS,
                               Directive.PAUSE_STRATEGIES)
    (again,) = run(engine, engine.plan_trigger(Trigger(account(), TriggerMode.HALT, "again",
                                                       TriggerReason.USER_INITIATED,
                                                       (Directive.FLATTEN_POSITIONS,),
                                                       "op"), T0 + 3))
    assert again.directives == more.directives  # a repeat adds none, and is recorded


def test_a_reduce_only_trip_never_loosens_cooling_down() -> None:
    engine = make_engine(policy={kind: ResumePolicy(reset_cooldown_s=0, rearm_delay_s=60)
                                 for kind in ScopeKind})
    trip(engine, account())
    reset(engine, account(), T0 + 1)
    assert engine.state_of(account()) is State.COOLING_DOWN
    (held,) = run(engine, engine.plan_trigger(Trigger(account(), TriggerMode.REDUCE_ONLY,
                                                      "executor", TriggerReason.RISK_VIOLATION, (),
                                                      "exec"), T0 + 2))
    assert held.state is State.TRIPPED and held.cause is Cause.TRIGGER
    assert engine.check(order(), T0 + 3).reason is DecisionReason.SCOPE_TRIPPED
    assert timers(engine, T0 + 120) == []  # no re-arm lifts it: a reset does


AUTO_NONE = {kind: ResumePolicy(reset_cooldown_s=0) for kind in ScopeKind}


def latches_of(engine, scope) -> dict[str, State]:  # noqa: ANN001
    current = engine.current(scope)
    return {latch.name: latch.state for latch in current.held()} if current else {}


def operator_reduce_only_then_drawdown(engine) -> None:  # noqa: ANN001
    run(engine, engine.plan_trigger(Trigger(account(), TriggerMode.REDUCE_ONLY, "desk",
                                            TriggerReason.RISK_VIOLATION, (), "op"), T0))
    report(engine, account(), Metric.DAILY_DRAWDOWN_PCT, 6.0, T0 + 1)


def test_each_restriction_is_its_own_latch() -> None:
    engine = make_engine(policy=AUTO_NONE)
    operator_reduce_only_then_drawdown(engine)
    assert engine.state_of(account()) is State.TRIPPED
    assert latches_of(engine, account()) == {"trigger": State.REDUCE_ONLY,
                                             "daily_drawdown_pct": State.TRIPPED}


def test_a_reset_naming_the_breaker_leaves_the_operators_reduce_only() -> None:
    engine = make_engine(policy=AUTO_NONE)
    operator_reduce_only_then_drawdown(engine)
    report(engine, account(), Metric.DAILY_DRAWDOWN_PCT, 1.0, T0 + 2)  # it cleared
    (lifted,) = run(engine, engine.plan_reset(account(), "drawdown recovered", False, "op",
                                              T0 + 3, ["daily_drawdown_pct"]))
    assert (lifted.previous, lifted.state, lifted.cause) == (
        State.TRIPPED, State.REDUCE_ONLY, Cause.RESET)
    assert latches_of(engine, account()) == {"trigger": State.REDUCE_ONLY}
    assert engine.check(order(), T0 + 4).reason is DecisionReason.REDUCE_ONLY


def test_a_reset_naming_nothing_lifts_every_latch() -> None:
    engine = make_engine(policy=AUTO_NONE)
    operator_reduce_only_then_drawdown(engine)
    report(engine, account(), Metric.DAILY_DRAWDOWN_PCT, 1.0, T0 + 2)
    (resumed,) = reset(engine, account(), T0 + 3)
    assert resumed.state is State.ARMED and resumed.latches == ()


def test_lifting_the_operators_latch_alone_is_not_held_up_by_a_breaker_that_stays() -> None:
    """The drawdown still holds, but its latch stays: lifting the operator's latch
    resumes nothing, so the breaker's condition does not refuse it."""
    engine = make_engine(policy=AUTO_NONE)
    operator_reduce_only_then_drawdown(engine)
    (lifted,) = run(engine, engine.plan_reset(account(), "desk done", False, "op", T0 + 3,
                                              ["trigger"]))
    assert lifted.state is State.TRIPPED
    assert latches_of(engine, account()) == {"daily_drawdown_pct": State.TRIPPED}
    with pytest.raises(ResetRefused, match="daily_drawdown_pct"):
        engine.plan_reset(account(), "try", False, "op", T0 + 4)


def test_a_latch_the_scope_does_not_have_is_invalid() -> None:
    engine = make_engine(policy=AUTO_NONE)
    trip(engine, account())
    with pytest.raises(InvalidArgument, match=r"latches\[0\].*no latch 'open_loss_pct'"):
        engine.plan_reset(account(), "try", False, "op", T0 + 1, ["open_loss_pct"])


def test_latches_come_back_from_the_stored_transition() -> None:
    """What a store holds (the latched transition, latches included) restores every latch,
    each breaker's held until fresh evidence."""
    engine = make_engine(policy=AUTO_NONE)
    operator_reduce_only_then_drawdown(engine)
    fresh = make_engine(policy=AUTO_NONE)
    fresh.restore(engine.restricted(), engine.version, T0 + 5)
    assert latches_of(fresh, account()) == latches_of(engine, account())
    with pytest.raises(ResetRefused, match="daily_drawdown_pct"):
        fresh.plan_reset(account(), "no evidence yet", False, "op", T0 + 6,
                         ["daily_drawdown_pct"])
