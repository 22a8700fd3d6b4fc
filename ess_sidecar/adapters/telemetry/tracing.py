"""Traces: one sampled SERVER span per GuardService call, the raw CheckOrderStream included."""

from __future__ import annotations

import asyncio
import os
import random
from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextvars import ContextVar
from typing import Any

import grpc
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.instrumentation.grpc import aio_server_interceptor
from opentelemetry.propagate import extract
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, \
    SpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, Sampler, SamplingResult, \
    TraceIdRatioBased
from opentelemetry.trace import Link, SpanKind, Status, StatusCode
from opentelemetry.util.types import Attributes

from ess.v1 import guard_pb2 as pb

from ...settings import TelemetrySettings, otlp_exports

SERVICE = pb.DESCRIPTOR.services_by_name["GuardService"].full_name
# The instrumentation names a span by the full method, "/ess.v1.GuardService/CheckOrder".
CHECK_ORDER = f"/{SERVICE}/CheckOrder"
CHECK_ORDER_STREAM = f"/{SERVICE}/CheckOrderStream"
WATCH_STATE = f"/{SERVICE}/WatchState"
CONTROL = (f"/{SERVICE}/Trigger", f"/{SERVICE}/Reset")
# Not through the instrumentation: the streams are spanned by `traced_stream`, health
# probes not at all.
UNTRACED = frozenset({CHECK_ORDER_STREAM, WATCH_STATE, "/grpc.health.v1.Health/Check",
                      "/grpc.health.v1.Health/Watch"})

# The status codes a server span reports as an error, as the gRPC instrumentation (and the
# semantic conventions) do: the others are the client's doing, not the server's failure.
SERVER_ERRORS = frozenset({grpc.StatusCode.UNKNOWN, grpc.StatusCode.DEADLINE_EXCEEDED,
                           grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.INTERNAL,
                           grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DATA_LOSS})

# True in the task of a root call that SampledCalls drew at its method's ratio.
_DRAWN: ContextVar[bool] = ContextVar("ess_trace_drawn", default=False)

Handle = Callable[[Any, grpc.aio.ServicerContext], Awaitable[None]]


class MethodRatioSampler(Sampler):
    """Keeps a ratio of root spans chosen by RPC method (the span's name): few of the
    high-rate order checks, every kill-switch Trigger and Reset, some of the rest. A call
    the gate (`SampledCalls`) already drew at that ratio is kept without drawing again."""

    def __init__(self, check_order_ratio: float, control_ratio: float,
                 default_ratio: float) -> None:
        self._ratios = {CHECK_ORDER: check_order_ratio, CHECK_ORDER_STREAM: check_order_ratio,
                        **{name: control_ratio for name in CONTROL}}
        self._default_ratio = default_ratio
        self._samplers = {ratio: TraceIdRatioBased(ratio)
                          for ratio in (*self._ratios.values(), default_ratio)}

    @classmethod
    def from_settings(cls, settings: TelemetrySettings,
                      exporting: bool = True) -> MethodRatioSampler:
        """The settings' ratios; none at all when no span is exported (`exporting`):
        a root span nobody receives cost a Trigger about 0.3 ms of CPU (stop 51)."""
        if not exporting:
            return cls(0.0, 0.0, 0.0)
        return cls(settings.check_order_sample_ratio, settings.control_sample_ratio,
                   settings.default_sample_ratio)

    def ratio(self, name: str) -> float:
        return self._ratios.get(name, self._default_ratio)

    def should_sample(self, parent_context: Context | None, trace_id: int, name: str,
                      kind: SpanKind | None = None, attributes: Attributes = None,
                      links: Sequence[Link] | None = None,
                      trace_state: trace.TraceState | None = None) -> SamplingResult:
        sampler = ALWAYS_ON if _DRAWN.get() else self._samplers[self.ratio(name)]
        return sampler.should_sample(parent_context, trace_id, name, kind, attributes, links,
                                     trace_state)

    def get_description(self) -> str:
        ratios = ",".join(f"{name.rsplit('/', 1)[1]}={ratio}"
                          for name, ratio in self._ratios.items())
        return f"MethodRatioSampler{{{ratios},default={self._default_ratio}}}"


class ParentOrMethodRatio(ParentBased):
    """The caller's sampling decision when it sent one, else MethodRatioSampler's."""

    def __init__(self, methods: MethodRatioSampler) -> None:
        super().__init__(root=methods)
        self.methods = methods  # for the call gate


def tracer_provider(settings: TelemetrySettings, resource: Resource,
                    exporters: Iterable[SpanExporter] = ()) -> TracerProvider:
    """A provider for this sidecar only (never the global one: several sidecars may share
    a process). A sampled parent from the caller keeps the server span, so an order's
    trace runs through the check (and the log lines of the call carry its trace id);
    OTLP export when the standard variables ask for it. With nothing to export to (no
    OTLP, no `exporters`), no root span is sampled: only a caller's sampled trace is
    followed."""
    exporters = tuple(exporters)
    otlp = "TRACES" in otlp_exports(os.environ)
    sampler = ParentOrMethodRatio(MethodRatioSampler.from_settings(
        settings, exporting=otlp or bool(exporters)))
    provider = TracerProvider(resource=resource, sampler=sampler)
    if otlp:
        # Imported only when used: it pulls in the OTLP protobufs and a gRPC channel.
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import \
            OTLPSpanExporter  # noqa: PLC0415
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    for exporter in exporters:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def server_interceptors(provider: TracerProvider, draw: Callable[[], float] = random.random,
                        ) -> list[grpc.aio.ServerInterceptor]:
    """The OpenTelemetry gRPC server instrumentation, behind a gate that lets through only
    the calls whose span will be kept (`provider` from `tracer_provider`: the gate draws at
    its sampler's ratios). Not the streams (the instrumentation would wrap them as async
    generators; `traced_stream` spans them) nor health probes (frequent, and not the
    sidecar's work)."""
    if not isinstance(provider.sampler, ParentOrMethodRatio):
        raise TypeError("server_interceptors needs a provider made by tracer_provider()")
    instrumentation = aio_server_interceptor(tracer_provider=provider)
    return [SampledCalls(instrumentation, provider.sampler.methods, draw)]


class SampledCalls(grpc.aio.ServerInterceptor):
    """Runs the instrumentation only for a call whose span will be sampled: one from a
    client whose trace is sampled (W3C traceparent flag), or a root call drawn at its
    method's ratio. Even for a span it does not keep, the instrumentation adds about 15 %
    to a unary CheckOrder (context wrapper, attributes, a span started; measured by
    benchmarks/tracing_cost.py); the gate, under 1 µs."""

    def __init__(self, instrumentation: grpc.aio.ServerInterceptor,
                 sampler: MethodRatioSampler, draw: Callable[[], float]) -> None:
        self._instrumentation = instrumentation
        self._sampler = sampler
        self._draw = draw

    async def intercept_service(self, continuation: Callable, details: Any) -> Any:
        method = details.method
        if method in UNTRACED:
            return await continuation(details)
        metadata = details.invocation_metadata or ()
        parent = next((m.value for m in metadata if m.key == "traceparent"), None)
        if parent is None:
            if self._draw() >= self._sampler.ratio(method):
                return await continuation(details)
            # This call's task only: the sampler must not draw a second time (ratio²).
            _DRAWN.set(True)
        elif not _sampled(parent):  # ParentBased would drop the span anyway
            return await continuation(details)
        return await self._instrumentation.intercept_service(continuation, details)


def _sampled(traceparent: str) -> bool:
    """The sampled bit of a W3C traceparent's trace-flags (its last byte)."""
    try:
        return bool(int(traceparent[-2:], 16) & 1)
    except ValueError:  # malformed: the propagator ignores it, the root sampler decides
        return True


def traced_stream(provider: trace.TracerProvider, path: str, handle: Handle) -> Handle:
    """`handle`, the coroutine of the stream method at `path` ("/ess.v1.GuardService/
    WatchState"), inside one SERVER span per stream, current while it runs, sampled like
    any root span of that method. The context is passed through unwrapped: no work per
    message."""
    tracer = provider.get_tracer(__name__)
    service, method = path.lstrip("/").split("/")

    async def traced(request_iterator: Any, context: grpc.aio.ServicerContext) -> None:
        metadata = context.invocation_metadata() or ()
        attributes = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": method,
                      **_peer_attributes(metadata, context.peer())}
        with tracer.start_as_current_span(
                path, context=extract({m.key: m.value for m in metadata}),
                kind=SpanKind.SERVER, attributes=attributes, record_exception=False,
                set_status_on_exception=False) as span:
            try:
                await handle(request_iterator, context)
            except asyncio.CancelledError:  # the client went away: not the server's error
                _end(span, grpc.StatusCode.CANCELLED, None)
                raise
            except grpc.aio.AbortError:
                _end(span, context.code() or grpc.StatusCode.UNKNOWN, context.details())
                raise
            except Exception as error:  # grpc answers the client UNKNOWN
                span.record_exception(error)
                _end(span, grpc.StatusCode.UNKNOWN, f"{type(error).__name__}: {error}")
                raise
            _end(span, context.code() or grpc.StatusCode.OK, context.details())
    return traced


def _end(span: trace.Span, code: grpc.StatusCode, details: str | None) -> None:
    span.set_attribute("rpc.grpc.status_code", code.value[0])
    if code in SERVER_ERRORS:
        span.set_status(Status(StatusCode.ERROR, f"{code}:{details or ''}"))


def _peer_attributes(metadata: Iterable[Any], peer: str) -> dict[str, str]:
    """user agent and TCP peer, as the instrumentation records them; nothing for a Unix
    socket peer."""
    found = {"rpc.user_agent": m.value for m in metadata if m.key == "user-agent"}
    if peer.startswith(("ipv4:", "ipv6:")):
        address = peer.split(",")[0].split(":", 1)[1]
        ip, _, port = address.rpartition(":")
        found.update({"net.peer.ip": ip, "net.peer.port": port})
    return found
