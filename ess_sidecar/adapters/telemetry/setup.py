"""Telemetry for one sidecar: its providers, its Prometheus registry and its instruments."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter
from prometheus_client import CollectorRegistry

from ...settings import TelemetrySettings
from .metrics import OtelTelemetry, meter_provider
from .resource import sidecar_resource
from .tracing import tracer_provider


@dataclass
class Observability:
    """Everything telemetry.enabled turns on. Providers are this sidecar's own, never the
    global ones, so several sidecars (tests) do not share instruments."""

    telemetry: OtelTelemetry
    meters: MeterProvider
    tracers: TracerProvider
    registry: CollectorRegistry  # what the Prometheus endpoint serves

    def shutdown(self) -> None:
        """Flush what is buffered (OTLP) and stop the readers; last step of a stop. The
        telemetry stops reading the guard before its meter provider's final collection."""
        self.tracers.shutdown()
        self.telemetry.shutdown()


def observability(settings: TelemetrySettings,
                  span_exporters: Sequence[SpanExporter] = ()) -> Observability:
    resource = sidecar_resource(settings)
    registry = CollectorRegistry()
    meters = meter_provider(settings, resource, registry)
    return Observability(OtelTelemetry(settings, meters), meters,
                         tracer_provider(settings, resource, span_exporters), registry)
