"""The server around the service: health, reflection, start-up from a bad state file."""

from __future__ import annotations

import asyncio

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from ess.v1 import guard_pb2 as pb
from ess_sidecar.adapters.storage.memory import InMemoryStateStore
from tests.integration.conftest import Running, order, strategy_scope

SERVICE = "ess.v1.GuardService"


async def test_health_serving_for_both_names_then_not_serving_from_shutdown(
        start_sidecar) -> None:
    running = await start_sidecar()
    health = health_pb2_grpc.HealthStub(running.channel)
    for name in ("", SERVICE):
        reply = await health.Check(health_pb2.HealthCheckRequest(service=name))
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    watch = health.Watch(health_pb2.HealthCheckRequest(service=SERVICE))
    assert (await watch.read()).status == health_pb2.HealthCheckResponse.SERVING
    stopping = asyncio.ensure_future(running.sidecar.stop())
    reply = await asyncio.wait_for(watch.read(), 5)
    assert reply.status == health_pb2.HealthCheckResponse.NOT_SERVING
    watch.cancel()  # an open health watch would hold the drain for the whole grace period
    await stopping


async def test_reflection_lists_the_guard_service(sidecar: Running) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(sidecar.channel)
    call = stub.ServerReflectionInfo()
    await call.write(reflection_pb2.ServerReflectionRequest(list_services=""))
    reply = await call.read()
    names = {s.name for s in reply.list_services_response.service}
    assert {SERVICE, "grpc.health.v1.Health"} <= names
    await call.done_writing()


async def test_unreadable_state_file_starts_with_global_tripped(start_sidecar, tmp_path) -> None:
    state = tmp_path / "ess.db"
    state.write_bytes(b"this is not a database" * 100)
    running = await start_sidecar()
    (scope,) = (await running.stub.GetState(pb.GetStateRequest())).scopes
    assert scope.scope.kind == pb.SCOPE_KIND_GLOBAL and scope.state == pb.STATE_TRIPPED
    assert "state store unreadable" in scope.reason and str(state) in scope.reason
    assert (await running.stub.CheckOrder(order())).reason == pb.DECISION_REASON_SCOPE_TRIPPED
    try:
        await running.stub.Reset(pb.ResetRequest(scope=scope.scope, reason="x", force=True))
    except grpc.aio.AioRpcError as error:
        assert error.code() == grpc.StatusCode.UNAVAILABLE
    else:
        raise AssertionError("a reset must not be accepted without a durable store")
    assert (await running.stub.CheckOrder(order())).reason == pb.DECISION_REASON_SCOPE_TRIPPED


async def test_store_write_failure_fails_closed(start_sidecar) -> None:
    store = InMemoryStateStore()
    running = await start_sidecar(state_store=store)
    store.fail_next_append = True
    try:
        await running.stub.Trigger(pb.TriggerRequest(scope=strategy_scope()))
    except grpc.aio.AioRpcError as error:
        assert error.code() == grpc.StatusCode.UNAVAILABLE
    else:
        raise AssertionError("a trigger that was not made durable must not be acknowledged")
    decision = await running.stub.CheckOrder(order(strategy="other"))
    assert decision.reason == pb.DECISION_REASON_SCOPE_TRIPPED
    assert decision.blocking_scope.kind == pb.SCOPE_KIND_GLOBAL
    assert "state store write failed" in decision.message
