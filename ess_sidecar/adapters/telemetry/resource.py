"""Who is reporting: the OpenTelemetry resource shared by metrics and traces."""

from __future__ import annotations

import os
import socket
from importlib import metadata

from opentelemetry.sdk.resources import Resource

from ...settings import TelemetrySettings


def sidecar_resource(settings: TelemetrySettings) -> Resource:
    """service.name, service.instance.id and service.version, merged over what the
    standard OTEL_RESOURCE_ATTRIBUTES / OTEL_SERVICE_NAME variables say."""
    instance = settings.instance_id or f"{socket.gethostname()}-{os.getpid()}"
    return Resource.create({"service.name": settings.service_name,
                            "service.instance.id": instance,
                            "service.version": metadata.version("ess-sidecar")})
