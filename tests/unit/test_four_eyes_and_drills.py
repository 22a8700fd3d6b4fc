"""Four-eyes resets (a second, different operator within a time limit) and drills (a trip
that is reset at once, and never stands for a real one)."""

from __future__ import annotations

import pytest

from ess_sidecar.domain.approvals import ApprovalPolicy
from ess_sidecar.domain.breakers import Metric
from ess_sidecar.domain.commands import Trigger
from ess_sidecar.domain.config import GuardConfig
from ess_sidecar.domain.engine import GuardEngine
from ess_sidecar.domain.errors import DrillRefused, ResetRefused
from ess_sidecar.domain.states import Cause, State, TriggerMode, TriggerReason

from .conftest import ACCOUNT, EQUITY, T0, order, position, report, run, strategy, trip

COOLDOWN = 15 * 60
WINDOW = 300.0
AFTER = T0 + COOLDOWN  # the cooldown of a trip at T0 has elapsed


def four_eyes() -> GuardEngine:
    engine = GuardEngine(GuardConfig(approvals=ApprovalPolicy(required=2, window_s=WINDOW)))
    engine.sync_positions(ACCOUNT, EQUITY, [position(0.0)])  # a mark for order()s
    return engine


def reset_by(engine: GuardEngine, actor: str, now: float = AFTER, force: bool = False,
             reason: str = "reviewed"):
    plan = engine.plan_reset(strategy(), reason, force, actor, now)
    run(engine, plan)
    return plan


def drill(engine: GuardEngine, now: float = T0):
    return run(engine, engine.plan_trigger(Trigger(strategy(), TriggerMode.HALT, "drill",
                                                   TriggerReason.USER_INITIATED, (), "alice",
                                                   drill=True), now))


def test_the_first_operators_reset_only_waits_for_a_second():
    engine = four_eyes()
    trip(engine, strategy())
    plan = reset_by(engine, "alice")
    assert plan.transitions == [] and engine.state_of(strategy()) is State.TRIPPED
    assert (plan.pending_reset.requested_by, plan.pending_reset.expires_at) == (
        "alice", AFTER + WINDOW)


def test_a_second_different_operator_makes_the_reset_take_effect_with_both_recorded():
    engine = four_eyes()
    trip(engine, strategy())
    reset_by(engine, "alice", reason="loss explained")
    (transition,) = reset_by(engine, "bob", AFTER + 10, reason="agreed").transitions
    assert (transition.state, transition.actor, transition.approved_by) == (
        State.ARMED, "alice", "bob")
    assert "loss explained" in transition.reason and "agreed" in transition.reason
    assert engine.check(order(), AFTER + 10).allowed


def test_a_request_made_void_by_a_new_trip_awaits_no_deadline_whether_read_or_not():
    """Review 39g: a GetState dropped a request whose trip was renewed since (not
    journaled): the live process then awaited no deadline, a restart (its replay keeps
    the request) one until the request's expiry, and journaled a clock mark a second."""
    engine = four_eyes()
    trip(engine, strategy())
    reset_by(engine, "alice")
    assert engine.awaits_deadline(AFTER + 1)
    (renewed,) = trip(engine, strategy(), AFTER + 2)  # the request is void
    assert not engine.awaits_deadline(AFTER + 3)
    assert engine.approvals.pending(strategy(), renewed.version, AFTER + 3) is None  # a read
    assert not engine.awaits_deadline(AFTER + 3)


def test_the_same_operator_cannot_approve_their_own_reset():
    engine = four_eyes()
    trip(engine, strategy())
    reset_by(engine, "alice")
    with pytest.raises(ResetRefused, match="different operator"):
        reset_by(engine, "alice", AFTER + 1)
    assert engine.state_of(strategy()) is State.TRIPPED


def test_an_approval_after_the_time_limit_starts_a_new_request_instead():
    engine = four_eyes()
    trip(engine, strategy())
    reset_by(engine, "alice")
    plan = reset_by(engine, "bob", AFTER + WINDOW)
    assert plan.transitions == [] and plan.pending_reset.requested_by == "bob"
    assert engine.state_of(strategy()) is State.TRIPPED


def test_an_approval_must_match_the_requests_force():
    engine = four_eyes()
    trip(engine, strategy())
    reset_by(engine, "alice", AFTER, force=True)
    with pytest.raises(ResetRefused, match="same force"):
        reset_by(engine, "bob", AFTER + 1, force=False)
    (transition,) = reset_by(engine, "bob", AFTER + 2, force=True).transitions
    assert transition.forced and transition.approved_by == "bob"


def test_a_new_trip_voids_the_pending_request():
    engine = four_eyes()
    report(engine, strategy(), Metric.DAILY_DRAWDOWN_PCT, 6, T0)
    reset_by(engine, "alice", AFTER, force=True)
    trip(engine, strategy(), AFTER + 1)  # the operator's own halt over the breaker's trip
    plan = reset_by(engine, "bob", AFTER + 2, force=True)
    assert plan.transitions == [] and plan.pending_reset.requested_by == "bob"


def test_the_second_operator_is_still_refused_during_the_cooldown():
    engine = four_eyes()
    trip(engine, strategy())
    with pytest.raises(ResetRefused, match="cooldown"):
        reset_by(engine, "alice", T0 + 1)
    assert engine.approvals.pending(strategy(), 1, T0 + 1) is None


def test_a_drill_trips_and_is_reset_at_once_without_a_second_operator():
    engine = four_eyes()
    (tripped,) = drill(engine)
    assert tripped.drill and tripped.state is State.TRIPPED
    assert not engine.check(order(), T0 + 1).allowed
    (resumed,) = reset_by(engine, "alice", T0 + 1).transitions
    assert resumed.drill and resumed.state is State.ARMED and resumed.cause is Cause.RESET


def test_a_drill_is_refused_on_a_scope_that_is_not_armed(engine):
    trip(engine, strategy())
    with pytest.raises(DrillRefused):
        drill(engine, T0 + 1)
    assert engine.version == 1 and not engine.current(strategy()).drill


def test_lifting_a_drills_latch_leaves_a_real_trip_that_came_meanwhile_as_real(engine):
    """essctl drill resets the drill's latch only: the real one keeps its rules."""
    drill(engine)
    report(engine, strategy(), Metric.DATA_FEED_CORRUPT, 1, T0 + 1)
    (lifted,) = run(engine, engine.plan_reset(strategy(), "drill complete", False, "alice",
                                              T0 + 2, ["drill"]))
    assert (lifted.state, lifted.drill) == (State.TRIPPED, False)
    assert [latch.name for latch in lifted.latches] == ["data_feed_corrupt"]
    assert not engine.check(order(), T0 + 2).allowed
    with pytest.raises(ResetRefused, match="cooldown"):
        reset_by(engine, "alice", T0 + 3)


@pytest.mark.parametrize("real_trip", ["trigger", "breaker", "reduce-only trigger"])
def test_a_real_trip_during_a_drill_latches_as_real(engine, real_trip):
    drill(engine)
    if real_trip == "breaker":
        report(engine, strategy(), Metric.DATA_FEED_CORRUPT, 1, T0 + 1)
    else:
        mode = TriggerMode.HALT if real_trip == "trigger" else TriggerMode.REDUCE_ONLY
        trip(engine, strategy(), T0 + 1, mode=mode)
    current = engine.current(strategy())
    assert current.state is State.TRIPPED and not current.drill
    with pytest.raises(ResetRefused, match="cooldown"):
        reset_by(engine, "alice", T0 + 2)


def test_a_journaled_request_this_versions_rules_refuse_is_said_to_be_gone(caplog):
    """Review 53d: an earlier version took "\u2800" alone as a reset's reason; replayed
    after the upgrade, its four-eyes request was dropped without a word, and the second
    operator's approval became a new request."""
    from ess_sidecar.domain.commands import ResetAsked
    from ess_sidecar.recovery import replay

    engine = four_eyes()
    trip(engine, strategy())
    replay(engine, [(ResetAsked(strategy(), "\u2800", True, "alice", AFTER), ())])
    assert engine.refused_in_replay == []  # said, then cleared
    assert engine.approvals.pending(strategy(), engine.version, AFTER) is None
    assert f"alice's reset of {strategy()}: reason" in caplog.text and "ask again" in caplog.text
