"""OTLP export to a real (in-process) OTLP/gRPC collector when the standard variables are
set, and telemetry.enabled = false turning all of it off."""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2 as metrics_pb
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2_grpc as metrics_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2 as trace_pb
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc as trace_grpc
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from ess.v1 import guard_pb2 as pb
from ess.v1 import guard_pb2_grpc as pb_grpc
from ess_sidecar.adapters.grpc.server import Sidecar
from ess_sidecar.adapters.telemetry.resource import sidecar_resource
from ess_sidecar.bootstrap import build, server_parts
from ess_sidecar.ports import NoTelemetry
from ess_sidecar.settings import load_settings
from tests.fakes import FakeClock
from tests.integration.conftest import order, strategy_scope


class Collector(metrics_grpc.MetricsServiceServicer, trace_grpc.TraceServiceServicer):
    """Records what an OTLP exporter sends."""

    def __init__(self) -> None:
        self.metrics: list[metrics_pb.ExportMetricsServiceRequest] = []
        self.spans: list[trace_pb.ExportTraceServiceRequest] = []
        self.gauges_seen = threading.Event()  # a periodic export read the guard's state

    def Export(self, request: Any, context: Any) -> Any:  # noqa: N802
        if isinstance(request, metrics_pb.ExportMetricsServiceRequest):
            self.metrics.append(request)
            if "ess.scope.state" in self.metric_names():
                self.gauges_seen.set()
            return metrics_pb.ExportMetricsServiceResponse()
        self.spans.append(request)
        return trace_pb.ExportTraceServiceResponse()

    def metric_names(self) -> set[str]:
        return {metric.name for request in self.metrics for resource in request.resource_metrics
                for scope in resource.scope_metrics for metric in scope.metrics}

    def span_names(self) -> set[str]:
        return {span.name for request in self.spans for resource in request.resource_spans
                for scope in resource.scope_spans for span in scope.spans}

    def resource_attributes(self) -> dict[str, str]:
        resource = self.metrics[0].resource_metrics[0].resource
        return {a.key: a.value.string_value for a in resource.attributes}


@pytest.fixture
def collector() -> Any:
    """On its own threads, like a collector in another process."""
    recorder = Collector()
    server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=4))
    metrics_grpc.add_MetricsServiceServicer_to_server(recorder, server)
    trace_grpc.add_TraceServiceServicer_to_server(recorder, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield recorder, f"http://127.0.0.1:{port}"
    server.stop(None)


def settings_for(tmp_path: Path, socket_dir: Path, **telemetry: Any) -> Any:
    return load_settings(None, server={"listen": "", "uds": str(socket_dir / "ess.sock")},
                         store={"path": str(tmp_path / "ess.db")},
                         telemetry={"instance_id": "test-1", **telemetry})


async def drive(sidecar: Sidecar) -> None:
    async with grpc.aio.insecure_channel(sidecar.addresses[0]) as channel:
        stub = pb_grpc.GuardServiceStub(channel)
        await stub.CheckOrder(order())
        await stub.Trigger(pb.TriggerRequest(scope=strategy_scope(), reason="stop"))


async def test_otlp_variables_send_metrics_and_spans_to_the_collector(
        collector: Any, tmp_path: Path, socket_dir: Path, monkeypatch: Any) -> None:
    recorder, endpoint = collector
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_INSECURE", "true")
    monkeypatch.setenv("OTEL_METRIC_EXPORT_INTERVAL", "200")  # ms
    app = build(settings_for(tmp_path, socket_dir), clock=FakeClock())
    sidecar = Sidecar(server_parts(app))
    await sidecar.start()
    await drive(sidecar)
    assert await asyncio.to_thread(recorder.gauges_seen.wait, 20), "no periodic export"
    await sidecar.stop()  # flushes both exporters before it returns
    assert {"ess.decisions", "ess.trips", "ess.scope.state"} <= recorder.metric_names()
    assert "/ess.v1.GuardService/Trigger" in recorder.span_names()  # always sampled
    assert recorder.resource_attributes()["service.name"] == "ess-sidecar"
    assert recorder.resource_attributes()["service.instance.id"] == "test-1"


async def test_telemetry_disabled_records_nothing(tmp_path: Path, socket_dir: Path) -> None:
    exporter = InMemorySpanExporter()
    settings = settings_for(tmp_path, socket_dir, enabled=False, metrics_listen="127.0.0.1:0",
                            check_order_sample_ratio=1.0)
    app = build(settings, clock=FakeClock(), span_exporters=[exporter])
    sidecar = Sidecar(server_parts(app))
    await sidecar.start()
    await drive(sidecar)
    await sidecar.stop()
    assert app.observability is None and isinstance(app.guard.telemetry, NoTelemetry)
    assert sidecar.metrics is None and exporter.get_finished_spans() == ()


@pytest.mark.parametrize("environ, configured, expected", [
    ({}, {}, "ess-sidecar"),
    ({"OTEL_SERVICE_NAME": "desk-7"}, {}, "desk-7"),
    ({"OTEL_RESOURCE_ATTRIBUTES": "service.name=desk-8"}, {}, "desk-8"),
    ({"OTEL_SERVICE_NAME": "desk-7"}, {"service_name": "from-config"}, "from-config"),
])
def test_the_service_name_is_the_settings_else_the_standard_variables(
        monkeypatch: pytest.MonkeyPatch, environ: dict[str, str], configured: dict[str, str],
        expected: str) -> None:
    """Review 44d: the default service name hid OTEL_SERVICE_NAME."""
    for name in ("OTEL_SERVICE_NAME", "OTEL_RESOURCE_ATTRIBUTES"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    settings = load_settings(None, telemetry=configured).telemetry
    assert sidecar_resource(settings).attributes["service.name"] == expected
