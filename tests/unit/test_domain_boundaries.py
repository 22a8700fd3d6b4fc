"""The domain's boundaries: its enums are the contract's, and it imports nothing but the
standard library (so the decision can be read, run and tested without grpc, sqlite or
OpenTelemetry)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from ess.v1 import guard_pb2 as pb
from ess_sidecar.domain.breakers import Metric
from ess_sidecar.domain.decisions import DecisionReason
from ess_sidecar.domain.orders import OrderStatus, Side
from ess_sidecar.domain.scopes import ScopeKind
from ess_sidecar.domain.states import Cause, Directive, State, TriggerMode, TriggerReason

DOMAIN = Path(__file__).resolve().parents[2] / "ess_sidecar" / "domain"
# domain enum -> (proto enum, the prefix of its value names)
PAIRS = [(ScopeKind, pb.ScopeKind, "SCOPE_KIND_"), (State, pb.State, "STATE_"),
         (Side, pb.Side, "SIDE_"), (DecisionReason, pb.DecisionReason, "DECISION_REASON_"),
         (Metric, pb.Metric, "METRIC_"), (TriggerReason, pb.TriggerReason, "TRIGGER_REASON_"),
         (TriggerMode, pb.TriggerMode, "TRIGGER_MODE_"), (Directive, pb.Directive, "DIRECTIVE_"),
         (Cause, pb.Cause, "CAUSE_"), (OrderStatus, pb.OrderStatus, "ORDER_STATUS_")]


@pytest.mark.parametrize("domain, proto, prefix", PAIRS, ids=lambda v: getattr(v, "__name__", ""))
def test_every_domain_enum_equals_its_proto_enum_by_name_and_number(domain, proto, prefix):
    contract = {name.removeprefix(prefix): number for name, number in proto.items()
                if number != 0}
    assert {member.name: member.value for member in domain} == contract


def test_the_domain_imports_only_the_standard_library():
    for path in DOMAIN.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                assert top in sys.stdlib_module_names or top == "__future__", (path.name, name)


ADAPTERS = DOMAIN.parent / "adapters"


def _imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            found.add("." * node.level + (node.module or ""))
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def test_adapters_reach_the_guard_through_its_api_not_its_engine():
    """The servicer and telemetry use the service's read API (and telemetry only its
    port): swapping the engine's insides never touches an adapter."""
    for path in [ADAPTERS / "grpc" / "servicer.py", *(ADAPTERS / "telemetry").glob("*.py")]:
        engine = [node.lineno for node in ast.walk(ast.parse(path.read_text()))
                  if isinstance(node, ast.Attribute) and node.attr == "engine"]
        assert not engine, f"{path.name} reaches into the engine at lines {engine}"
    for path in (ADAPTERS / "telemetry").glob("*.py"):
        assert not {"...service", "ess_sidecar.service"} & _imports(path), \
            f"{path.name} imports the service; telemetry reads ports.GuardReadings"
