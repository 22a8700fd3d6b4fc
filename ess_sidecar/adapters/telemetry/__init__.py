"""OpenTelemetry: metrics (Prometheus, OTLP), traces and structured logs."""
