"""Latches over a real socket: GetState and WatchState show every restriction on a scope,
a Reset lifts the latches it names, and a restart (journal or store) keeps them all."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from ess.v1 import guard_pb2 as pb
from ess_sidecar.adapters.storage.sqlite import SqliteStateStore
from ess_sidecar.domain.states import State
from tests.integration.conftest import ACCOUNT, order

SCOPE = pb.Scope(kind=pb.SCOPE_KIND_ACCOUNT, id=ACCOUNT)
NO_COOLDOWN = {"policy": {"reset_cooldown_s": 0}}


async def reduce_only_then_drawdown(stub: Any) -> None:
    await stub.Trigger(pb.TriggerRequest(scope=SCOPE, mode=pb.TRIGGER_MODE_REDUCE_ONLY,
                                         reason="desk: reduce only"))
    await stub.ReportMetric(pb.ReportMetricRequest(scope=SCOPE, metric=pb.METRIC_DAILY_DRAWDOWN_PCT,
                                                   value=6))


async def latches(stub: Any) -> dict[str, int]:
    state = await stub.GetState(pb.GetStateRequest())
    (scope,) = [s for s in state.scopes if s.scope == SCOPE]
    return {latch.name: latch.state for latch in scope.latches}


async def test_get_state_shows_each_latch_and_a_named_reset_lifts_only_it(
        start_sidecar: Any) -> None:
    running = await start_sidecar(**NO_COOLDOWN)
    stub = running.stub
    await reduce_only_then_drawdown(stub)
    assert await latches(stub) == {"trigger": pb.STATE_REDUCE_ONLY,
                                   "daily_drawdown_pct": pb.STATE_TRIPPED}
    await stub.ReportMetric(pb.ReportMetricRequest(scope=SCOPE, metric=pb.METRIC_DAILY_DRAWDOWN_PCT,
                                                   value=1))
    reply = await stub.Reset(pb.ResetRequest(scope=SCOPE, reason="drawdown recovered",
                                             latches=["daily_drawdown_pct"]))
    assert reply.state == pb.STATE_REDUCE_ONLY  # the operator's latch stays
    assert await latches(stub) == {"trigger": pb.STATE_REDUCE_ONLY}
    decision = await stub.CheckOrder(order())
    assert decision.reason == pb.DECISION_REASON_REDUCE_ONLY
    events = (await stub.ListEvents(pb.ListEventsRequest(scope=SCOPE))).events
    assert [latch.name for latch in events[0].latches] == ["trigger"]


async def test_a_reset_naming_a_version_the_scope_has_left_is_refused_and_lifts_nothing(
        start_sidecar: Any) -> None:
    """An operator looked at the desk's REDUCE_ONLY; a drawdown trip landed before their
    forced reset arrived. The reset names the version they saw: nothing is lifted."""
    running = await start_sidecar(**NO_COOLDOWN)
    stub = running.stub
    await stub.Trigger(pb.TriggerRequest(scope=SCOPE, mode=pb.TRIGGER_MODE_REDUCE_ONLY,
                                         reason="desk: reduce only"))
    (seen,) = [s for s in (await stub.GetState(pb.GetStateRequest())).scopes
               if s.scope == SCOPE]
    await stub.ReportMetric(pb.ReportMetricRequest(scope=SCOPE, metric=pb.METRIC_DAILY_DRAWDOWN_PCT,
                                                   value=6))
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.Reset(pb.ResetRequest(scope=SCOPE, reason="desk done", force=True,
                                         expected_version=seen.version,
                                         expected_epoch=seen.epoch))
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert f"changed since version {seen.version}" in refused.value.details()
    assert await latches(stub) == {"trigger": pb.STATE_REDUCE_ONLY,
                                   "daily_drawdown_pct": pb.STATE_TRIPPED}
    state = await stub.GetState(pb.GetStateRequest())
    (now,) = [s for s in state.scopes if s.scope == SCOPE]
    reply = await stub.Reset(pb.ResetRequest(scope=SCOPE, reason="both seen", force=True,
                                             expected_version=now.version,
                                             expected_epoch=now.epoch))
    assert reply.state == pb.STATE_ARMED


async def test_a_latch_the_scope_does_not_hold_is_invalid_and_changes_nothing(
        start_sidecar: Any) -> None:
    running = await start_sidecar(**NO_COOLDOWN)
    await reduce_only_then_drawdown(running.stub)
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await running.stub.Reset(pb.ResetRequest(scope=SCOPE, reason="x", force=True,
                                                 latches=["open_loss_pct"]))
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "latches[0]" in refused.value.details()
    assert len(await latches(running.stub)) == 2


async def test_latches_survive_a_restart_and_are_stored(start_sidecar: Any,
                                                       tmp_path: Any) -> None:
    first = await start_sidecar(**NO_COOLDOWN)
    await reduce_only_then_drawdown(first.stub)
    await first.sidecar.stop()
    stored = SqliteStateStore(tmp_path / "ess.db")  # what a restart without a journal has
    try:
        (latched,) = stored.load().current
    finally:
        stored.close()
    assert {latch.name: latch.state for latch in latched.held()} == {
        "trigger": State.REDUCE_ONLY, "daily_drawdown_pct": State.TRIPPED}
    second = await start_sidecar(sync=False, **NO_COOLDOWN)
    assert await latches(second.stub) == {"trigger": pb.STATE_REDUCE_ONLY,
                                          "daily_drawdown_pct": pb.STATE_TRIPPED}
