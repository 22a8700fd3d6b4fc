"""What an operator reads in an alert for each kind of transition."""

from __future__ import annotations

import dataclasses

from ess_sidecar.adapters.alerts.message import alert_of, iso_utc
from ess_sidecar.domain.scopes import GLOBAL, Scope, ScopeKind
from ess_sidecar.domain.states import Cause, Directive, State, Transition, TriggerReason

T0 = 1_700_000_000.0  # 2023-11-14T22:13:20Z

TRIP = Transition(7, T0, Scope(ScopeKind.STRATEGY, "momo"), State.ARMED, State.TRIPPED,
                  Cause.TRIGGER, "desk says stop", "alice",
                  reason_code=TriggerReason.RISK_VIOLATION,
                  directives=(Directive.CANCEL_OPEN_ORDERS, Directive.FLATTEN_POSITIONS))


def test_a_trip_names_scope_state_reason_actor_version_and_time() -> None:
    alert = alert_of(TRIP)
    assert alert.title == "ESS STRATEGY:momo TRIPPED"
    assert alert.severity == "failure" and alert.version == 7
    assert alert.body.splitlines() == [
        "scope: STRATEGY:momo", "state: TRIPPED (was ARMED)", "cause: TRIGGER",
        "reason: desk says stop", "reason code: RISK_VIOLATION", "actor: alice",
        "directives: CANCEL_OPEN_ORDERS, FLATTEN_POSITIONS", "version: 7",
        "time: 2023-11-14T22:13:20.000Z"]


def test_a_breaker_trip_to_reduce_only_names_the_breaker() -> None:
    alert = alert_of(dataclasses.replace(TRIP, state=State.REDUCE_ONLY, cause=Cause.BREAKER,
                                         breaker="daily_drawdown_pct", actor="system",
                                         reason_code=None, directives=()))
    assert alert.title == "ESS STRATEGY:momo REDUCE_ONLY (breaker)"
    assert alert.severity == "failure"
    assert "breaker: daily_drawdown_pct" in alert.body.splitlines()


def test_a_forced_four_eyes_reset_names_both_operators() -> None:
    reset = Transition(8, T0 + 60, GLOBAL, State.TRIPPED, State.COOLING_DOWN, Cause.RESET,
                       "all clear", "alice", forced=True, approved_by="bob",
                       rearm_at=T0 + 90)
    alert = alert_of(reset)
    assert alert.title == "ESS GLOBAL COOLING_DOWN (forced reset)"
    assert alert.severity == "warning"
    lines = alert.body.splitlines()
    for line in ("actor: alice", "approved by: bob", "forced: yes",
                 "re-arms at: 2023-11-14T22:14:50.000Z", "state: COOLING_DOWN (was TRIPPED)"):
        assert line in lines


def test_a_re_arm_is_good_news() -> None:
    alert = alert_of(Transition(9, T0, GLOBAL, State.COOLING_DOWN, State.ARMED, Cause.REARM,
                                "re-arm delay elapsed", "system"))
    assert (alert.title, alert.severity) == ("ESS GLOBAL ARMED (re-armed)", "success")


def test_a_drill_says_so_in_title_and_body() -> None:
    alert = alert_of(dataclasses.replace(TRIP, drill=True))
    assert alert.title == "[DRILL] ESS STRATEGY:momo TRIPPED"
    assert alert.body.splitlines()[-1] == "DRILL: this is a drill, not a real trip"


def test_times_are_iso_8601_utc() -> None:
    assert iso_utc(0.25) == "1970-01-01T00:00:00.250Z"


def test_a_reason_or_an_id_cannot_forge_the_alerts_own_lines_or_title() -> None:
    """Review 42j: a Trigger's reason with newlines showed lines of its own ("state:
    ARMED") before the alert's real ones, and an id with spaces read as a state in the
    title."""
    alert = alert_of(dataclasses.replace(
        TRIP, scope=Scope(ScopeKind.STRATEGY, "q ARMED (reset)"),
        reason="line1\nstate: ARMED (was TRIPPED)\nactor: risk-desk"))
    assert alert.title == 'ESS "STRATEGY:q ARMED (reset)" TRIPPED'
    lines = alert.body.splitlines()
    assert lines[3:6] == ["reason: line1", "    state: ARMED (was TRIPPED)",
                          "    actor: risk-desk"]
    assert [line for line in lines if line.startswith(("state:", "actor:"))] == [
        "state: TRIPPED (was ARMED)", "actor: alice"]
