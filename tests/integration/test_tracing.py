"""Server spans over a real grpc.aio server: sampling by method, the caller's W3C trace
context as parent, one span per CheckOrderStream, kept in an in-memory exporter."""

from __future__ import annotations

import asyncio

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry import trace
from opentelemetry.propagate import extract
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from ess.v1 import guard_pb2 as pb
from ess.v1 import guard_pb2_grpc as pb_grpc
from ess_sidecar.adapters.grpc.handlers import add_guard_service
from ess_sidecar.adapters.grpc.server import Sidecar
from ess_sidecar.adapters.grpc.servicer import GuardServicer
from ess_sidecar.adapters.telemetry.tracing import server_interceptors, traced_stream, \
    tracer_provider
from ess_sidecar.bootstrap import build, server_parts
from ess_sidecar.settings import TelemetrySettings, load_settings
from tests.fakes import FakeClock
from tests.integration.conftest import ACCOUNT, order, strategy_scope

CHECK_ORDER = "/ess.v1.GuardService/CheckOrder"
CHECK_ORDER_STREAM = "/ess.v1.GuardService/CheckOrderStream"
TRIGGER = "/ess.v1.GuardService/Trigger"
TRACE_ID, PARENT_ID = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"


def traceparent(flags: str = "01") -> tuple[tuple[str, str]]:
    return (("traceparent", f"00-{TRACE_ID}-{PARENT_ID}-{flags}"),)


@dataclass
class Traced:
    stub: pb_grpc.GuardServiceStub
    channel: grpc.aio.Channel
    exporter: InMemorySpanExporter

    def spans(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.exporter.get_finished_spans() if s.name == name]

    async def stream_spans(self, name: str, deadline_s: float = 5.0) -> list[ReadableSpan]:
        """A stream's spans once one has ended: the client may see the stream's status
        before the server's handler, which ends the span, has returned."""
        async with asyncio.timeout(deadline_s):
            while not self.spans(name):
                await asyncio.sleep(0.001)
        return self.spans(name)


@pytest.fixture
async def traced_server(start_sidecar: Any) -> Any:
    """A running sidecar's guard served by a second server built here the way the wiring
    should: the tracing interceptors, and the streams wrapped by traced_stream.
    `wrap` lets a test put its own handler between the span and the real stream; `draw`
    replaces the sampling gate's random numbers."""
    servers: list[tuple[grpc.aio.Server, grpc.aio.Channel]] = []

    async def serve(wrap: Callable | None = None, draw: Callable[[], float] = random.random,
                    **telemetry: Any) -> Traced:
        running = await start_sidecar()
        exporter, settings = InMemorySpanExporter(), TelemetrySettings(**telemetry)
        provider = tracer_provider(settings, Resource.create({}), [exporter])
        server = grpc.aio.server(interceptors=server_interceptors(provider, draw))
        add_guard_service(GuardServicer(running.app.guard, 30.0), server, wrap_streams=lambda
                          path, handle: traced_stream(provider, path,
                                                      wrap(handle) if wrap else handle))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
        servers.append((server, channel))
        return Traced(pb_grpc.GuardServiceStub(channel), channel, exporter)

    yield serve
    for server, channel in servers:
        await channel.close()
        await server.stop(None)


async def test_denied_check_order_produces_a_server_span(traced_server: Any) -> None:
    traced = await traced_server(check_order_sample_ratio=1.0)
    await traced.stub.Trigger(pb.TriggerRequest(scope=strategy_scope(), reason="stop"))
    assert not (await traced.stub.CheckOrder(order())).allowed
    [span] = traced.spans(CHECK_ORDER)
    assert span.kind is SpanKind.SERVER
    assert span.attributes is not None
    assert span.attributes["rpc.system"] == "grpc"
    assert span.attributes["rpc.service"] == "ess.v1.GuardService"
    assert span.attributes["rpc.method"] == "CheckOrder"
    # A denial is a normal answer, not an RPC error.
    assert span.attributes["rpc.grpc.status_code"] == grpc.StatusCode.OK.value[0]
    assert span.status.status_code is StatusCode.UNSET


async def test_trigger_is_always_sampled_while_check_order_at_ratio_zero_is_not(
        traced_server: Any) -> None:
    traced = await traced_server(check_order_sample_ratio=0.0, default_sample_ratio=0.0)
    await traced.stub.Trigger(pb.TriggerRequest(scope=strategy_scope(), reason="stop"))
    for _ in range(20):
        await traced.stub.CheckOrder(order())
    await traced.stub.GetState(pb.GetStateRequest())
    names = [s.name for s in traced.exporter.get_finished_spans()]
    assert names == [TRIGGER]


@pytest.mark.parametrize("draw, kept", [(0.49, 20), (0.5, 0)])
async def test_a_call_the_gate_draws_is_kept_without_a_second_draw(
        traced_server: Any, draw: float, kept: int) -> None:
    """At ratio 0.5 a second, trace-id based draw would keep about half of the calls the
    gate let through (all 20 by chance: one in a million)."""
    traced = await traced_server(draw=lambda: draw, check_order_sample_ratio=0.5)
    for _ in range(20):
        await traced.stub.CheckOrder(order())
    assert len(traced.spans(CHECK_ORDER)) == kept


async def test_a_sampled_client_trace_is_the_parent_of_the_server_span(
        traced_server: Any) -> None:
    traced = await traced_server(check_order_sample_ratio=0.0)
    await traced.stub.CheckOrder(order(), metadata=traceparent())
    [span] = traced.spans(CHECK_ORDER)
    assert trace.format_trace_id(span.context.trace_id) == TRACE_ID
    assert span.parent is not None and span.parent.is_remote
    assert trace.format_span_id(span.parent.span_id) == PARENT_ID


async def test_an_unsampled_client_trace_keeps_even_a_trigger_unsampled(
        traced_server: Any) -> None:
    traced = await traced_server()
    await traced.stub.Trigger(pb.TriggerRequest(scope=strategy_scope(), reason="stop"),
                              metadata=traceparent(flags="00"))
    assert not traced.exporter.get_finished_spans()


async def test_a_stream_is_one_span_however_many_orders_with_the_client_parent(
        traced_server: Any) -> None:
    traced = await traced_server(check_order_sample_ratio=0.0)
    call = traced.stub.CheckOrderStream(metadata=traceparent())
    for request_id in range(1, 11):
        await call.write(pb.CheckOrderStreamRequest(request_id=request_id, order=order()))
        assert (await call.read()).decision.allowed
    await call.done_writing()
    assert await call.code() == grpc.StatusCode.OK
    [span] = traced.exporter.get_finished_spans()
    assert span.name == CHECK_ORDER_STREAM and span.kind is SpanKind.SERVER
    assert span.attributes is not None
    assert span.attributes["rpc.method"] == "CheckOrderStream"
    assert span.attributes["rpc.grpc.status_code"] == grpc.StatusCode.OK.value[0]
    assert trace.format_trace_id(span.context.trace_id) == TRACE_ID
    assert span.parent is not None and trace.format_span_id(span.parent.span_id) == PARENT_ID


async def test_the_stream_span_is_current_while_the_handler_runs(traced_server: Any) -> None:
    seen: list[trace.SpanContext] = []

    def recording(handle: Callable) -> Callable:
        async def record(request_iterator: Any, context: Any) -> None:
            seen.append(trace.get_current_span().get_span_context())
            await handle(request_iterator, context)
        return record

    traced = await traced_server(recording, check_order_sample_ratio=1.0)
    call = traced.stub.CheckOrderStream()
    await call.done_writing()
    assert await call.code() == grpc.StatusCode.OK
    [span] = await traced.stream_spans(CHECK_ORDER_STREAM)
    assert seen == [span.context]


async def test_an_aborted_stream_span_carries_the_status_code(traced_server: Any) -> None:
    traced = await traced_server(check_order_sample_ratio=1.0)
    call = traced.channel.stream_stream(CHECK_ORDER_STREAM)()  # raw bytes, no serializer
    await call.write(b"\xff\xff not protobuf")
    assert await call.code() == grpc.StatusCode.INVALID_ARGUMENT
    [span] = await traced.stream_spans(CHECK_ORDER_STREAM)
    assert span.attributes is not None
    assert span.attributes["rpc.grpc.status_code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    # As the instrumentation does: a client's mistake is not a server error.
    assert span.status.status_code is StatusCode.UNSET


async def test_a_failing_stream_handler_makes_an_error_span(traced_server: Any) -> None:
    def failing(handle: Callable) -> Callable:
        async def fail(request_iterator: Any, context: Any) -> None:
            raise RuntimeError("bug")
        return fail

    traced = await traced_server(failing, check_order_sample_ratio=1.0)
    call = traced.stub.CheckOrderStream()
    assert await call.code() == grpc.StatusCode.UNKNOWN
    [span] = await traced.stream_spans(CHECK_ORDER_STREAM)
    assert span.status.status_code is StatusCode.ERROR
    assert [event.name for event in span.events] == ["exception"]


# -- End to end through the wiring: bootstrap.build(span_exporters=...), the interceptors
# -- bootstrap.server_parts gives the Sidecar, and OtelTelemetry.annotate / .transitions on
# -- the current span.

@pytest.fixture
async def wired_sidecar(tmp_path: Path, socket_dir: Path) -> Any:
    exporter = InMemorySpanExporter()
    settings = load_settings(None, server={"listen": "", "uds": str(socket_dir / "ess.sock")},
                             store={"path": str(tmp_path / "ess.db")},
                             telemetry={"check_order_sample_ratio": 1.0})
    app = build(settings, clock=FakeClock(), span_exporters=[exporter])
    sidecar = Sidecar(server_parts(app))
    await sidecar.start()
    channel = grpc.aio.insecure_channel(sidecar.addresses[0])
    stub = pb_grpc.GuardServiceStub(channel)
    await stub.SyncPositions(pb.SyncPositionsRequest(account=ACCOUNT, equity=1e6))
    yield Traced(stub, channel, exporter)
    await channel.close()
    await sidecar.stop()


async def test_wired_denied_check_order_span_has_the_decision_reason(
        wired_sidecar: Traced) -> None:
    await wired_sidecar.stub.Trigger(pb.TriggerRequest(scope=strategy_scope(), reason="x"))
    assert not (await wired_sidecar.stub.CheckOrder(order())).allowed
    [span] = wired_sidecar.spans(CHECK_ORDER)
    assert span.attributes is not None and span.attributes.get("ess.decision.reason")


async def test_wired_trip_is_an_event_on_the_trigger_span(wired_sidecar: Traced) -> None:
    await wired_sidecar.stub.Trigger(pb.TriggerRequest(scope=strategy_scope(), reason="x"),
                                     metadata=traceparent())
    [span] = wired_sidecar.spans(TRIGGER)
    assert "ess.trip" in [event.name for event in span.events]
    assert span.parent is not None and trace.format_span_id(span.parent.span_id) == PARENT_ID


def test_with_nothing_to_export_to_only_a_callers_sampled_trace_is_followed(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A span nobody receives cost a Trigger about 0.3 ms of CPU: with no exporter, no
    root span is sampled, whatever the ratios; a caller's sampled trace still is (the
    call's log lines carry its trace id)."""
    for variable in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        monkeypatch.delenv(variable, raising=False)
    settings = TelemetrySettings(control_sample_ratio=1.0, default_sample_ratio=1.0)
    tracer = tracer_provider(settings, Resource.create({})).get_tracer(__name__)
    assert not tracer.start_span(TRIGGER, kind=SpanKind.SERVER).is_recording()
    parent = extract(dict(traceparent()))
    followed = tracer.start_span(TRIGGER, context=parent, kind=SpanKind.SERVER)
    assert followed.is_recording()
    assert trace.format_trace_id(followed.get_span_context().trace_id) == TRACE_ID
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://127.0.0.1:1")
    exporting = tracer_provider(settings, Resource.create({}))
    try:
        assert exporting.get_tracer(__name__).start_span(TRIGGER).is_recording()
    finally:
        exporting.shutdown()
