"""The metric names the README lists are the ones the Prometheus endpoint shows."""

from __future__ import annotations

import re

from opentelemetry.metrics import Observation
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from ess_sidecar.adapters.telemetry import names
from ess_sidecar.adapters.telemetry.metrics import MAX_FIELDS, OtelTelemetry, meter_provider
from ess_sidecar.adapters.telemetry.resource import sidecar_resource
from ess_sidecar.settings import TelemetrySettings


def exported(registry: CollectorRegistry) -> dict[str, list[dict[str, str]]]:
    """Sample name -> the label sets it was exported with."""
    samples: dict[str, list[dict[str, str]]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample.labels)
    return samples


def provider(registry: CollectorRegistry) -> object:
    settings = TelemetrySettings()
    return meter_provider(settings, sidecar_resource(settings), registry)


def test_names_are_unique_lowercase_and_prefixed() -> None:
    all_names = [i.name for i in names.INSTRUMENTS]
    assert len(set(all_names)) == len(all_names)
    assert all(re.fullmatch(r"ess(\.[a-z_]+)+", name) for name in all_names)
    assert len({i.prometheus_name() for i in names.INSTRUMENTS}) == len(all_names)


def test_each_instrument_shows_on_the_endpoint_under_its_documented_name() -> None:
    registry = CollectorRegistry()
    meter = provider(registry).get_meter("names-test")  # type: ignore[attr-defined]
    for i in names.INSTRUMENTS:
        attributes = dict.fromkeys(i.attributes, "x")
        if i.kind == "counter":
            meter.create_counter(i.name, unit=i.unit).add(1, attributes)
        elif i.kind == "histogram":
            meter.create_histogram(i.name, unit=i.unit).record(1, attributes)
        else:
            meter.create_observable_gauge(
                i.name, [lambda _, a=attributes: [Observation(1, a)]], unit=i.unit)
    samples = exported(registry)
    for i in names.INSTRUMENTS:
        name = i.prometheus_name() + ("_count" if i.kind == "histogram" else "")
        assert name in samples, f"{i.name} is not exported as {name}: {sorted(samples)}"
        assert set(i.attributes) <= set(samples[name][0]), i.name


def test_markdown_table_lists_every_instrument() -> None:
    table = names.markdown_table()
    assert all(f"`{i.name}`" in table for i in names.INSTRUMENTS)


def test_invalid_request_fields_fold_indexes_and_stay_bounded() -> None:
    registry = CollectorRegistry()
    telemetry = OtelTelemetry(TelemetrySettings(), provider(registry))  # type: ignore[arg-type]
    for index in range(3):
        telemetry.invalid_request(f"positions[{index}].mark_price")
    for index in range(MAX_FIELDS + 10):
        telemetry.invalid_request(f"field_{index}")
    fields = {labels["field"] for labels in exported(registry)["ess_invalid_requests_total"]}
    assert "positions[].mark_price" in fields and "other" in fields
    assert len(fields) == MAX_FIELDS + 1


def test_the_readme_lists_every_metric_as_names_py_does() -> None:
    from pathlib import Path

    from ess_sidecar.adapters.telemetry.names import markdown_table
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert markdown_table().strip() in readme, "README metrics table is stale: paste" \
        " ess_sidecar.adapters.telemetry.names.markdown_table()"
