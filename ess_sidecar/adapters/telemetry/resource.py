"""Who is reporting: the OpenTelemetry resource shared by metrics and traces."""

from __future__ import annotations

import os
import socket
from importlib import metadata

from opentelemetry.sdk.resources import Resource

from ...settings import TelemetrySettings


def sidecar_resource(settings: TelemetrySettings) -> Resource:
    """service.name, service.instance.id and service.version, merged over what the
    standard OTEL_RESOURCE_ATTRIBUTES / OTEL_SERVICE_NAME variables say. The service's
    name is telemetry.service_name when set, else the variables' (the SDK reads them),
    else its default (review 44d: the default hid OTEL_SERVICE_NAME)."""
    instance = settings.instance_id or f"{socket.gethostname()}-{os.getpid()}"
    attributes = {"service.instance.id": instance,
                  "service.version": metadata.version("ess-sidecar")}
    named = Resource.create().attributes.get("service.name", "")
    if "service_name" in settings.model_fields_set or str(named).startswith(
            "unknown_service"):  # what the SDK calls a service no variable names
        attributes["service.name"] = settings.service_name
    return Resource.create(attributes)
