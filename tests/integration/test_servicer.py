"""GuardService over a real Unix socket: decisions, commands, bad input, audit."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from ess.v1 import guard_pb2 as pb
from tests.integration.conftest import ACCOUNT, STRATEGY, SYMBOL, Running, order, \
    strategy_scope

DRAWDOWN = pb.METRIC_DAILY_DRAWDOWN_PCT


async def test_breach_reported_by_metric_denies_the_next_check(sidecar: Running) -> None:
    assert (await sidecar.stub.CheckOrder(order())).allowed
    report = await sidecar.stub.ReportMetric(pb.ReportMetricRequest(
        scope=strategy_scope(), metric=DRAWDOWN, value=5.5))
    assert (report.state, report.tripped, report.state_version) == (pb.STATE_TRIPPED, True, 1)
    decision = await sidecar.stub.CheckOrder(order())
    assert not decision.allowed
    assert decision.reason == pb.DECISION_REASON_SCOPE_TRIPPED
    assert decision.blocking_scope == strategy_scope()
    assert decision.state_version == 1
    assert "daily_drawdown_pct" in decision.message


async def test_each_decision_has_its_own_id(sidecar: Running) -> None:
    ids = {(await sidecar.stub.CheckOrder(order())).decision_id for _ in range(5)}
    assert len(ids) == 5 and all(ids)


BAD_ORDERS = [
    ({"quantity": float("nan")}, "quantity"),
    ({"quantity": float("inf")}, "quantity"),
    ({"quantity": -1.0}, "quantity"),
    ({"quantity": 0.0}, "quantity"),
    ({"price": float("-inf")}, "price"),
    ({"price": 0.0}, "price"),
    ({"account": ""}, "account"),
    ({"symbol": "X" * 129}, "symbol"),
    ({"strategy": "bad\x00id"}, "strategy"),
    ({"side": 7}, "side"),
    ({"side": pb.SIDE_UNSPECIFIED}, "side"),
    ({"client_order_id": "c" * 129}, "client_order_id"),
]


@pytest.mark.parametrize(("fields", "field"), BAD_ORDERS)
async def test_malformed_order_is_rejected_naming_the_field(sidecar: Running, fields: dict,
                                                            field: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await sidecar.stub.CheckOrder(order(**fields))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details().startswith(f"{field}:")


BAD_COMMANDS = [
    ("Trigger", pb.TriggerRequest(scope=pb.Scope(kind=9, id="x")), "scope.kind"),
    ("Trigger", pb.TriggerRequest(scope=pb.Scope(kind=pb.SCOPE_KIND_GLOBAL, id="x")), "scope.id"),
    ("Trigger", pb.TriggerRequest(scope=pb.Scope(kind=pb.SCOPE_KIND_STRATEGY)), "scope.id"),
    ("Reset", pb.ResetRequest(scope=strategy_scope(), reason=""), "reason"),
    ("Reset", pb.ResetRequest(scope=strategy_scope(), reason="   "), "reason"),
    ("ReportMetric", pb.ReportMetricRequest(scope=strategy_scope(), metric=DRAWDOWN,
                                            value=float("nan")), "value"),
    ("ReportMetric", pb.ReportMetricRequest(scope=strategy_scope(), metric=99), "metric"),
    ("ReportMetric", pb.ReportMetricRequest(scope=strategy_scope(), metric=pb.METRIC_API_ERROR,
                                            value=1.5), "value"),
    ("ReportMetric", pb.ReportMetricRequest(metric=DRAWDOWN, value=50), "scope.kind"),
    ("Heartbeat", pb.HeartbeatRequest(executor_id="ex", scope=strategy_scope()), "ttl_ms"),
    ("Heartbeat", pb.HeartbeatRequest(scope=strategy_scope(), ttl_ms=100), "executor_id"),
    ("ReportFill", pb.ReportFillRequest(account=ACCOUNT, strategy=STRATEGY, symbol=SYMBOL,
                                        side=pb.SIDE_BUY, quantity=-5, price=10), "quantity"),
    ("SyncPositions", pb.SyncPositionsRequest(account=ACCOUNT, equity=float("nan")), "equity"),
    ("SyncPositions", pb.SyncPositionsRequest(
        account=ACCOUNT, equity=1e6,
        positions=[pb.Position(strategy=STRATEGY, symbol=SYMBOL, quantity=5)]),
     "positions[0].mark_price"),
    ("ListEvents", pb.ListEventsRequest(page_size=5000), "page_size"),
    ("ListEvents", pb.ListEventsRequest(page_token="not-a-token"), "page_token"),
    # digits to str.isdigit() but not to int() (superscript), or not ASCII (Arabic-Indic)
    ("ListEvents", pb.ListEventsRequest(page_token="\u00b2"), "page_token"),
    ("ListEvents", pb.ListEventsRequest(page_token="1\u00b2"), "page_token"),
    ("ListEvents", pb.ListEventsRequest(page_token="\u0663"), "page_token"),
    # beyond SQLite's 64-bit integers
    ("ListEvents", pb.ListEventsRequest(page_token="9" * 20), "page_token"),
    ("ListEvents", pb.ListEventsRequest(page_token=str(2**63)), "page_token"),
    # more digits than int() takes (review 34: ValueError, answered UNKNOWN)
    ("ListEvents", pb.ListEventsRequest(page_token="9" * 5000), "page_token"),
    # a clear, or a reset's latches, list no more than a snapshot may
    ("Reset", pb.ResetRequest(scope=strategy_scope(), reason="flood",
                              latches=["manual"] * 20_001), "latches"),
    ("ClearWorkingOrders", pb.ClearWorkingOrdersRequest(
        account=ACCOUNT, reason="flood", client_order_ids=[f"o{i}" for i in range(20_001)]),
     "client_order_ids"),
]


@pytest.mark.parametrize(("method", "request_message", "field"), BAD_COMMANDS)
async def test_bad_command_is_rejected_naming_the_field_and_changes_nothing(
        sidecar: Running, method: str, request_message: object, field: str) -> None:
    before = await sidecar.stub.GetState(pb.GetStateRequest())
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await getattr(sidecar.stub, method)(request_message)
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.value.details().startswith(f"{field}:")
    assert await sidecar.stub.GetState(pb.GetStateRequest()) == before
    assert (await sidecar.stub.CheckOrder(order())).allowed
    assert not (await sidecar.stub.ListEvents(pb.ListEventsRequest())).events


async def test_stream_answers_many_in_flight_in_order_matched_by_request_id(
        sidecar: Running) -> None:
    call = sidecar.stub.CheckOrderStream()
    for request_id in range(1, 51):
        bad = request_id == 25
        await call.write(pb.CheckOrderStreamRequest(
            request_id=request_id, order=order(quantity=-1 if bad else 1)))
    answers = [await call.read() for _ in range(50)]
    await call.done_writing()
    assert [a.request_id for a in answers] == list(range(1, 51))
    assert answers[24].WhichOneof("result") == "error"
    assert answers[24].error.field == "order.quantity"
    assert answers[24].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert all(a.decision.allowed for i, a in enumerate(answers) if i != 24)


async def test_stream_sees_a_trip_on_the_next_request(sidecar: Running) -> None:
    call = sidecar.stub.CheckOrderStream()
    await call.write(pb.CheckOrderStreamRequest(request_id=1, order=order()))
    assert (await call.read()).decision.allowed
    await sidecar.stub.Trigger(pb.TriggerRequest(scope=pb.Scope(kind=pb.SCOPE_KIND_GLOBAL),
                                                 reason="drill"))
    await call.write(pb.CheckOrderStreamRequest(request_id=2, order=order()))
    answer = await call.read()
    assert answer.request_id == 2 and not answer.decision.allowed
    assert answer.decision.blocking_scope.kind == pb.SCOPE_KIND_GLOBAL
    await call.done_writing()


async def test_stream_answers_carry_nothing_over_from_the_answer_before(
        sidecar: Running) -> None:
    """A stream fills one response in place for every answer: an allowance after a denial
    has no denial's message or scope, and a denial after an allowance is not allowed."""
    await sidecar.stub.Trigger(pb.TriggerRequest(scope=strategy_scope(), reason="desk stop"))
    call = sidecar.stub.CheckOrderStream()
    to_tripped = [True, False, False, True, False]
    for request_id, blocked in enumerate(to_tripped, 1):
        await call.write(pb.CheckOrderStreamRequest(request_id=request_id, order=order(
            strategy=STRATEGY if blocked else f"{STRATEGY}-other")))
    answers = [await call.read() for _ in to_tripped]
    await call.done_writing()
    for request_id, (blocked, answer) in enumerate(zip(to_tripped, answers), 1):
        decision = answer.decision
        assert answer.request_id == request_id and decision.decision_id
        if blocked:
            assert not decision.allowed
            assert decision.reason == pb.DECISION_REASON_SCOPE_TRIPPED
            assert decision.blocking_scope == strategy_scope()
            assert "desk stop" in decision.message
        else:
            assert decision.allowed and decision.reason == pb.DECISION_REASON_ALLOWED
            assert not decision.message and not decision.HasField("blocking_scope")
    assert len({a.decision.decision_id for a in answers}) == len(to_tripped)


async def test_trigger_is_audited_with_its_reason_code_and_a_repeat_renews_it(
        sidecar: Running) -> None:
    request = pb.TriggerRequest(scope=strategy_scope(), reason="desk says stop",
                                reason_code=pb.TRIGGER_REASON_RISK_VIOLATION,
                                directives=[pb.DIRECTIVE_CANCEL_OPEN_ORDERS])
    first = await sidecar.stub.Trigger(request)
    second = await sidecar.stub.Trigger(request)
    assert (first.state, first.state_version) == (pb.STATE_TRIPPED, 1)
    assert (second.state, second.state_version) == (pb.STATE_TRIPPED, 2)  # review 31
    (_, event) = (await sidecar.stub.ListEvents(pb.ListEventsRequest())).events
    assert event.reason_code == pb.TRIGGER_REASON_RISK_VIOLATION
    assert list(event.directives) == [pb.DIRECTIVE_CANCEL_OPEN_ORDERS]
    assert event.cause == pb.CAUSE_TRIGGER and event.reason == "desk says stop"
    assert event.actor.startswith("unauthenticated@")


async def test_a_long_reason_keeps_the_notes_of_what_was_substituted(
        sidecar: Running) -> None:
    """Review 51a: the notes saying an unknown mode halted, and an unknown code or
    directive was replaced, were cut off with the end of a long reason."""
    request = pb.TriggerRequest(scope=strategy_scope(), reason="r\x1b[31m" + "x" * 5000,
                                reason_code=77, mode=9, directives=[1, 55])
    assert (await sidecar.stub.Trigger(request)).state == pb.STATE_TRIPPED
    (event,) = (await sidecar.stub.ListEvents(pb.ListEventsRequest())).events
    assert len(event.reason) <= 1024 and event.reason.startswith("r\\x1b[31mxxx")
    assert event.reason.endswith(" [… cut; 5006 characters given] (unknown mode 9: HALT;"
                                 " unknown reason_code 77: USER_INITIATED; unknown directive"
                                 " 55 left out)"), event.reason


async def test_reduce_only_trigger_admits_only_reducing_orders(sidecar: Running) -> None:
    bought = order(side=pb.SIDE_BUY, quantity=10)
    assert (await sidecar.stub.CheckOrder(bought)).allowed
    await sidecar.stub.ReportFill(pb.ReportFillRequest(
        account=ACCOUNT, strategy=STRATEGY, symbol=SYMBOL, side=pb.SIDE_BUY, quantity=10,
        price=100, client_order_id=bought.client_order_id, fill_id="exec-1"))
    await sidecar.stub.Trigger(pb.TriggerRequest(scope=strategy_scope(),
                                                 mode=pb.TRIGGER_MODE_REDUCE_ONLY))
    grow = await sidecar.stub.CheckOrder(order(side=pb.SIDE_BUY, quantity=1))
    reduce = await sidecar.stub.CheckOrder(order(side=pb.SIDE_SELL, quantity=4))
    flip = await sidecar.stub.CheckOrder(order(side=pb.SIDE_SELL, quantity=15))
    assert grow.reason == pb.DECISION_REASON_REDUCE_ONLY and not grow.allowed
    assert reduce.allowed
    assert flip.reason == pb.DECISION_REASON_REDUCE_ONLY


async def test_reset_refused_in_cooldown_then_accepted_after_it(sidecar: Running) -> None:
    await sidecar.stub.Trigger(pb.TriggerRequest(scope=strategy_scope(), reason="stop"))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await sidecar.stub.Reset(pb.ResetRequest(scope=strategy_scope(), reason="resume"))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "cooldown until" in refused.value.details()
    assert not (await sidecar.stub.CheckOrder(order())).allowed
    sidecar.clock.advance(15 * 60)
    reset = await sidecar.stub.Reset(pb.ResetRequest(scope=strategy_scope(), reason="resume"))
    assert (reset.state, reset.state_version) == (pb.STATE_ARMED, 2)
    assert (await sidecar.stub.CheckOrder(order())).allowed


async def test_reset_refused_while_breaker_condition_holds_unless_forced(
        sidecar: Running) -> None:
    await sidecar.stub.ReportMetric(pb.ReportMetricRequest(scope=strategy_scope(),
                                                           metric=DRAWDOWN, value=7))
    sidecar.clock.advance(15 * 60)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await sidecar.stub.Reset(pb.ResetRequest(scope=strategy_scope(), reason="resume"))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "daily_drawdown_pct" in refused.value.details()
    forced = await sidecar.stub.Reset(pb.ResetRequest(scope=strategy_scope(), reason="ok",
                                                      force=True))
    assert forced.state == pb.STATE_ARMED
    newest = (await sidecar.stub.ListEvents(pb.ListEventsRequest())).events[0]
    assert newest.forced and newest.cause == pb.CAUSE_RESET


async def test_rearm_delay_keeps_scope_cooling_down_until_it_elapses(start_sidecar) -> None:
    running = await start_sidecar(policy={"rearm_delay_s": 30})
    await running.stub.Trigger(pb.TriggerRequest(scope=strategy_scope()))
    running.clock.advance(15 * 60)
    reset = await running.stub.Reset(pb.ResetRequest(scope=strategy_scope(), reason="go"))
    assert reset.state == pb.STATE_COOLING_DOWN
    assert (await running.stub.CheckOrder(order())).reason == pb.DECISION_REASON_COOLING_DOWN
    running.clock.advance(30)
    running.app.guard.run_timers()
    assert (await running.stub.CheckOrder(order())).allowed


async def test_lost_heartbeat_trips_the_executor_scope(sidecar: Running) -> None:
    await sidecar.stub.Heartbeat(pb.HeartbeatRequest(executor_id="ex-1", scope=strategy_scope(),
                                                     ttl_ms=2000))
    sidecar.clock.advance(1.5)
    await sidecar.stub.Heartbeat(pb.HeartbeatRequest(executor_id="ex-1", scope=strategy_scope(),
                                                     ttl_ms=2000))
    sidecar.clock.advance(1.5)
    assert not sidecar.app.guard.run_timers()
    sidecar.clock.advance(1.0)
    (trip,) = sidecar.app.guard.run_timers()
    assert trip.breaker == "heartbeat_lost"
    decision = await sidecar.stub.CheckOrder(order())
    assert decision.reason == pb.DECISION_REASON_SCOPE_TRIPPED


async def test_deregistered_executor_does_not_trip(sidecar: Running) -> None:
    beat = await sidecar.stub.Heartbeat(pb.HeartbeatRequest(
        executor_id="ex-1", scope=strategy_scope(), ttl_ms=1000))
    assert not beat.HasField("deregistered")  # said of a deregistration only
    retired = await sidecar.stub.Heartbeat(pb.HeartbeatRequest(
        executor_id="ex-1", scope=strategy_scope(), deregister=True))
    assert retired.HasField("deregistered") and retired.deregistered
    sidecar.clock.advance(60)
    assert not sidecar.app.guard.run_timers()


async def test_a_deregistration_says_whether_there_was_a_registration_to_remove(
        sidecar: Running) -> None:
    """Review 56d: the answer did not say, so `essctl heartbeats deregister` of an
    executor past the 1,000 it lists could not tell a typo from a retirement."""
    await sidecar.stub.Heartbeat(pb.HeartbeatRequest(executor_id="ex-1", scope=strategy_scope(),
                                                     ttl_ms=1000))
    for executor, scope in (("ex-2", strategy_scope()), ("ex-1", strategy_scope("other"))):
        none = await sidecar.stub.Heartbeat(pb.HeartbeatRequest(
            executor_id=executor, scope=scope, deregister=True))
        assert none.HasField("deregistered") and not none.deregistered
    first = await sidecar.stub.Heartbeat(pb.HeartbeatRequest(
        executor_id="ex-1", scope=strategy_scope(), deregister=True))
    again = await sidecar.stub.Heartbeat(pb.HeartbeatRequest(
        executor_id="ex-1", scope=strategy_scope(), deregister=True))
    assert (first.deregistered, again.deregistered) == (True, False)


async def test_get_state_lists_restricted_scopes_and_thresholds(sidecar: Running) -> None:
    await sidecar.stub.Trigger(pb.TriggerRequest(scope=strategy_scope(), reason="x"))
    state = await sidecar.stub.GetState(pb.GetStateRequest())
    (scope,) = state.scopes
    assert (scope.scope, scope.state, scope.reason) == (strategy_scope(), pb.STATE_TRIPPED, "x")
    assert scope.reset_allowed_at.seconds - scope.since.seconds == 15 * 60
    thresholds = {t.breaker: t for t in state.thresholds if not t.scope}
    assert thresholds["daily_drawdown_pct"].threshold == 5
    assert thresholds["api_errors"].window_ms == 60_000
    assert state.state_version == 1


async def test_breaker_disabled_for_a_scope_is_listed_as_disabled_for_it(
        start_sidecar) -> None:
    running = await start_sidecar(scopes={
        f"STRATEGY:{STRATEGY}": {"breakers": {"daily_drawdown_pct": {"enabled": False},
                                              "api_errors": {"threshold": 3}}}})
    state = await running.stub.GetState(pb.GetStateRequest())
    listed = {(t.scope, t.breaker): t for t in state.thresholds}
    assert listed[(f"STRATEGY:{STRATEGY}", "daily_drawdown_pct")].disabled
    assert listed[(f"STRATEGY:{STRATEGY}", "api_errors")].threshold == 3
    assert not listed[(f"STRATEGY:{STRATEGY}", "api_errors")].disabled
    assert not listed[("", "daily_drawdown_pct")].disabled  # the default for other scopes
    report = await running.stub.ReportMetric(pb.ReportMetricRequest(
        scope=strategy_scope(), metric=DRAWDOWN, value=50))
    assert not report.tripped  # what GetState says is what the engine does


async def test_largest_page_token_sqlite_can_hold_is_accepted(sidecar: Running) -> None:
    await sidecar.stub.Trigger(pb.TriggerRequest(scope=strategy_scope()))
    page = await sidecar.stub.ListEvents(pb.ListEventsRequest(page_token=str(2**63 - 1)))
    assert [e.version for e in page.events] == [1]


async def test_events_are_newest_first_paged_and_filtered_by_scope(sidecar: Running) -> None:
    for ident in ("a", "b", "c"):
        await sidecar.stub.Trigger(pb.TriggerRequest(scope=strategy_scope(ident)))
    page = await sidecar.stub.ListEvents(pb.ListEventsRequest(page_size=2))
    assert [e.version for e in page.events] == [3, 2] and page.next_page_token
    rest = await sidecar.stub.ListEvents(pb.ListEventsRequest(page_size=2,
                                                              page_token=page.next_page_token))
    assert [e.version for e in rest.events] == [1]
    only_b = await sidecar.stub.ListEvents(pb.ListEventsRequest(scope=strategy_scope("b")))
    assert [e.scope.id for e in only_b.events] == ["b"]


async def test_exposure_needs_known_equity(start_sidecar) -> None:
    running = await start_sidecar()
    decision = await running.stub.CheckOrder(order(account="unknown-account"))
    assert decision.reason == pb.DECISION_REASON_EQUITY_UNKNOWN


async def test_concurrent_checks_all_answered(sidecar: Running) -> None:
    decisions = await asyncio.gather(*(sidecar.stub.CheckOrder(order(quantity=1))
                                       for _ in range(50)))
    assert all(d.allowed for d in decisions)


async def test_the_kill_switch_trips_whatever_comes_with_it(sidecar: Running) -> None:
    """Only the scope must be valid: text is sanitised and bounded, unknown enums noted."""
    request = pb.TriggerRequest(scope=strategy_scope(), reason="\x1b[2J" + "r" * 100_000,
                                reason_code=999, mode=77, directives=[1, 555])
    reply = await sidecar.stub.Trigger(request)
    assert reply.state == pb.STATE_TRIPPED
    [scope] = (await sidecar.stub.GetState(pb.GetStateRequest())).scopes
    assert scope.reason_code == pb.TRIGGER_REASON_USER_INITIATED
    assert list(scope.directives) == [1]
    assert len(scope.reason) <= 1024 and "\x1b" not in scope.reason
    assert (await sidecar.stub.CheckOrder(order())).reason == pb.DECISION_REASON_SCOPE_TRIPPED


async def test_a_trigger_with_a_flood_of_directives_trips_looking_at_the_first_few(
        sidecar: Running) -> None:
    """Review 34: each of 4 million directives was mapped, and noted, before the Trigger
    was: every other call waited 20 s. Every known kind is taken, wherever it comes (a
    flatten after a flood too); the first 16 values are noted if unknown."""
    request = pb.TriggerRequest(scope=strategy_scope(), reason="flood",
                                directives=[1, 555] + [556 + i for i in range(200_000)] + [2])
    assert (await sidecar.stub.Trigger(request)).state == pb.STATE_TRIPPED
    [scope] = (await sidecar.stub.GetState(pb.GetStateRequest())).scopes
    assert list(scope.directives) == [pb.DIRECTIVE_CANCEL_OPEN_ORDERS,
                                      pb.DIRECTIVE_FLATTEN_POSITIONS]
    assert "unknown directive 555 left out" in scope.reason
    assert "unknown directive 569 left out" in scope.reason  # the 16th
    assert "unknown directive 570" not in scope.reason
    assert "199987 more directives: the known kinds among them taken" in scope.reason


async def test_a_watcher_naming_more_scopes_than_the_cap_is_refused_naming_them(
        sidecar: Running) -> None:
    """Review 34: a watcher's scopes were not capped; 250,000 held 60 MB for as long as
    it watched. A request's list is capped (limits.max_snapshot_entries, 20,000), and a
    watcher's scopes tighter (watch.max_scopes, 1,024; review 45: 256 watches of 20,000
    scopes each held a Trigger 27 s)."""
    scopes = [pb.Scope(kind=pb.SCOPE_KIND_SYMBOL, id=f"S{i}") for i in range(20_001)]
    for named, setting in ((20_001, "limits.max_snapshot_entries"),
                           (1_025, "watch.max_scopes")):
        call = sidecar.stub.WatchState(pb.WatchStateRequest(scopes=scopes[:named]))
        with pytest.raises(grpc.aio.AioRpcError) as error:
            await call.read()
        assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error.value.details().startswith("scopes:"), error.value.details()
        assert setting in error.value.details()
    call = sidecar.stub.WatchState(pb.WatchStateRequest(scopes=scopes[:1_024]))  # watched
    assert (await call.read()).kind == pb.WATCH_EVENT_KIND_SNAPSHOT_END
    call.cancel()
