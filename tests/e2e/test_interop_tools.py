"""Interop proven with real third-party gRPC tools against `ess-sidecar serve`: grpcurl and
ghz by server reflection alone (no .proto given), grpc_health_probe over TCP and the Unix
socket, during serving and during the shutdown drain.

The tools are built pinned by `make tools` into .tools/bin; a missing one fails the test.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from ess.v1 import guard_pb2 as pb
from ess_sidecar.testing import SERVICE, SidecarProcess, free_port
from tests.e2e.conftest import guard_stub, open_channel
from tests.e2e.tools import run

pytestmark = pytest.mark.e2e

# A load generator sends one order again and again, each with its own client_order_id:
# the order rate limit and the identical-orders rule are off and each order is small
# (every allowed one stays working), so that every order of a ghz run is ALLOWED.
CONFIG = """
[limits]
max_orders_per_second = 0
duplicate_identical_orders = 0
[telemetry]
metrics_listen = "127.0.0.1:{metrics_port}"
"""
EQUITY = 1_000_000.0
PROBE_TIMEOUTS = ("-connect-timeout", "10s", "-rpc-timeout", "10s")
NOT_SERVING_EXIT = 4  # grpc_health_probe's documented exit status for NOT_SERVING


class Sidecar:
    """A running sidecar and the endpoints the tools are pointed at."""

    def __init__(self, process: SidecarProcess, metrics_port: int) -> None:
        self.process = process
        self.metrics_port = metrics_port

    @property
    def tcp(self) -> str:
        return self.process.tcp_target

    @property
    def uds_path(self) -> str:
        return str(self.process.uds)

    def decisions(self, reason: str) -> float:
        """ess_decisions_total{reason=...} from the sidecar's Prometheus endpoint."""
        return self._counter("ess_decisions_total", reason=reason)

    def invalid_requests(self) -> float:
        return self._counter("ess_invalid_requests_total")

    def _counter(self, name: str, **labels: str | None) -> float:
        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - loopback
            text = response.read().decode()
        return sum(sample.value for family in text_string_to_metric_families(text)
                   for sample in family.samples if sample.name == name
                   and all(value is None or sample.labels.get(key) == value
                           for key, value in labels.items()))


# A flat position carrying a mark: the exposure limits value AAPL at it.
MARK = pb.Position(strategy="any", symbol="AAPL", quantity=0, mark_price=100)


def sync_equity(process: SidecarProcess, account: str) -> None:
    """The account's equity and a mark for AAPL, which the exposure limits need before
    they allow an order."""
    with open_channel(process, uds=True) as channel:
        guard_stub(channel).SyncPositions(
            pb.SyncPositionsRequest(account=account, equity=EQUITY, positions=[MARK]),
            timeout=10)


@pytest.fixture(scope="module")
def sidecar(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sidecar]:
    """One sidecar for the module: each test uses accounts and strategies of its own."""
    metrics_port = free_port()
    process = SidecarProcess(tmp_path_factory.mktemp("interop"),
                             CONFIG.format(metrics_port=metrics_port))
    try:
        yield Sidecar(process.start(), metrics_port)
    finally:
        process.stop()


def order(account: str, strategy: str, client_order_id: str) -> dict[str, Any]:
    return {"account": account, "strategy": strategy, "symbol": "AAPL", "side": "SIDE_BUY",
            "quantity": 10, "price": 100, "client_order_id": client_order_id}


# -- grpcurl: reflection only ----------------------------------------------------------------


def grpcurl(sidecar: Sidecar, *command: str, flags: tuple[str, ...] = (), uds: bool = False,
            check: bool = True) -> Any:
    """grpcurl over plaintext TCP or the Unix socket; never a .proto, so everything it
    knows of the API comes from server reflection."""
    address = ("-unix", sidecar.uds_path) if uds else (sidecar.tcp,)
    return run("grpcurl", "-plaintext", "-max-time", "20", *flags, *address, *command,
               check=check)


def grpcurl_call(sidecar: Sidecar, method: str, request: dict[str, Any]) -> dict[str, Any]:
    reply = grpcurl(sidecar, f"ess.v1.GuardService/{method}",
                    flags=("-emit-defaults", "-d", json.dumps(request)))
    return json.loads(reply.stdout)


@pytest.mark.parametrize("uds", [False, True], ids=["tcp", "uds"])
def test_grpcurl_lists_the_services(sidecar: Sidecar, uds: bool) -> None:
    services = grpcurl(sidecar, "list", uds=uds).stdout.split()
    assert {"ess.v1.GuardService", "grpc.health.v1.Health"} <= set(services), services
    assert [s for s in services if s.startswith("grpc.reflection.")
            and s.endswith(".ServerReflection")], services
    methods = grpcurl(sidecar, "list", "ess.v1.GuardService", uds=uds).stdout.split()
    assert {"ess.v1.GuardService.CheckOrder", "ess.v1.GuardService.CheckOrderStream",
            "ess.v1.GuardService.Trigger"} <= set(methods), methods


def test_grpcurl_describes_methods_messages_and_enums(sidecar: Sidecar) -> None:
    method = grpcurl(sidecar, "describe", "ess.v1.GuardService.CheckOrder").stdout
    assert "ess.v1.GuardService.CheckOrder is a method:" in method
    assert ("rpc CheckOrder ( .ess.v1.CheckOrderRequest ) returns"
            " ( .ess.v1.CheckOrderResponse );") in method
    stream = grpcurl(sidecar, "describe", "ess.v1.GuardService.CheckOrderStream").stdout
    assert ("rpc CheckOrderStream ( stream .ess.v1.CheckOrderStreamRequest ) returns"
            " ( stream .ess.v1.CheckOrderStreamResponse );") in stream

    message = grpcurl(sidecar, "describe", "ess.v1.CheckOrderRequest").stdout
    assert "ess.v1.CheckOrderRequest is a message:" in message
    for field in ("string account = 1;", ".ess.v1.Side side = 4;", "double quantity = 5;",
                  "string client_order_id = 8;"):
        assert field in message, message

    enum = grpcurl(sidecar, "describe", "ess.v1.DecisionReason").stdout
    assert "ess.v1.DecisionReason is an enum:" in enum
    for value in ("DECISION_REASON_ALLOWED = 1;", "DECISION_REASON_SCOPE_TRIPPED = 2;",
                  "DECISION_REASON_EQUITY_UNKNOWN = 13;"):
        assert value in enum, enum


def test_grpcurl_checks_syncs_and_trips_by_reflection(sidecar: Sidecar) -> None:
    account, strategy = "acc-grpcurl", "grpcurl-momo"
    unknown = grpcurl_call(sidecar, "CheckOrder", order(account, strategy, "grpcurl-1"))
    assert (unknown["allowed"], unknown["reason"]) == (False, "DECISION_REASON_EQUITY_UNKNOWN")

    grpcurl_call(sidecar, "SyncPositions", {"account": account, "equity": EQUITY, "positions": [
        {"strategy": MARK.strategy, "symbol": MARK.symbol, "markPrice": MARK.mark_price}]})
    allowed = grpcurl_call(sidecar, "CheckOrder", order(account, strategy, "grpcurl-2"))
    assert (allowed["allowed"], allowed["reason"]) == (True, "DECISION_REASON_ALLOWED")
    assert allowed["decision_id"]

    scope = {"kind": "SCOPE_KIND_STRATEGY", "id": strategy}
    tripped = grpcurl_call(sidecar, "Trigger", {"scope": scope, "reason": "grpcurl says stop"})
    assert tripped["state"] == "STATE_TRIPPED"
    denied = grpcurl_call(sidecar, "CheckOrder", order(account, strategy, "grpcurl-3"))
    assert (denied["allowed"], denied["reason"]) == (False, "DECISION_REASON_SCOPE_TRIPPED")
    assert denied["blocking_scope"] == scope
    assert int(denied["state_version"]) >= int(tripped["state_version"])

    other = grpcurl_call(sidecar, "CheckOrder", order(account, "grpcurl-other", "grpcurl-4"))
    assert other["allowed"], other  # only the tripped strategy is stopped

    bad = dict(order(account, strategy, "grpcurl-5"), quantity=-1)
    refused = grpcurl(sidecar, "ess.v1.GuardService/CheckOrder", flags=("-d", json.dumps(bad)),
                      check=False)
    assert refused.returncode == 64 + grpc.StatusCode.INVALID_ARGUMENT.value[0], refused
    assert "InvalidArgument" in refused.stderr and "quantity" in refused.stderr


# -- grpc_health_probe -----------------------------------------------------------------------


def probe(address: str, service: str, check: bool = True,
          timeouts: tuple[str, ...] = PROBE_TIMEOUTS) -> Any:
    return run("grpc_health_probe", "-addr", address, "-service", service, *timeouts,
               check=check)


@pytest.mark.parametrize("service", ["", SERVICE], ids=["overall", "guard"])
@pytest.mark.parametrize("transport", ["tcp", "unix://", "unix:"])
def test_grpc_health_probe_says_serving(sidecar: Sidecar, transport: str,
                                        service: str) -> None:
    address = sidecar.tcp if transport == "tcp" else transport + sidecar.uds_path
    probed = probe(address, service)
    assert probed.returncode == 0 and "status: SERVING" in probed.stderr, probed


def test_grpc_health_probe_sees_not_serving_while_the_drain_still_answers(
        tmp_path: Path) -> None:
    """SIGTERM: health says NOT_SERVING for shutdown.drain_s while every call is still
    answered, then the process exits 0. A drain longer than the 1 s default leaves room
    for probe processes on a loaded machine; the behaviour is the same."""
    process = SidecarProcess(tmp_path, drain_s=3.0)
    try:
        process.start()
        sync_equity(process, "acc-drain")
        assert probe(process.tcp_target, SERVICE).returncode == 0
        with open_channel(process, uds=True) as channel:
            stub = guard_stub(channel)
            request = pb.CheckOrderRequest(account="acc-drain", strategy="drain",
                                           symbol="AAPL", side=pb.SIDE_BUY, quantity=10,
                                           price=100, client_order_id="drain-1")
            assert stub.CheckOrder(request, timeout=10).allowed

            assert process.process is not None
            process.process.terminate()  # SIGTERM
            signalled = time.monotonic()
            deadline = signalled + 10.0
            while True:  # each probe is a process of its own: no sleep needed between
                probed = probe(process.tcp_target, SERVICE, check=False,
                               timeouts=("-connect-timeout", "2s", "-rpc-timeout", "2s"))
                if probed.returncode == NOT_SERVING_EXIT:
                    break
                assert probed.returncode == 0, (
                    f"probe exited {probed.returncode} before it saw NOT_SERVING:\n"
                    f"{probed.stdout}{probed.stderr}\n{process.output()}")
                assert time.monotonic() < deadline, "never NOT_SERVING:\n" + process.output()
            assert 'responded with "NOT_SERVING"' in probed.stderr, probed
            seen_after_s = time.monotonic() - signalled

            draining = stub.CheckOrder(
                pb.CheckOrderRequest(account="acc-drain", strategy="drain", symbol="AAPL",
                                     side=pb.SIDE_BUY, quantity=10, price=100,
                                     client_order_id="drain-2"), timeout=5)
            assert draining.allowed, (
                f"a check during the drain was not allowed ({seen_after_s:.2f} s after"
                f" SIGTERM): {draining}")
        assert process.process.wait(timeout=30) == 0, process.output()
    finally:
        process.stop()


# -- ghz: reflection only --------------------------------------------------------------------


def ghz(sidecar: Sidecar, call: str, data: dict[str, Any], *args: str) -> dict[str, Any]:
    """A ghz run by reflection, its JSON report; fails on a non-zero exit."""
    report = run("ghz", "--insecure", "--call", call, "--data", json.dumps(data),
                 "--connect-timeout", "10s", "--timeout", "20s", "--format", "json", *args,
                 sidecar.tcp, timeout_s=120)
    return json.loads(report.stdout)


def assert_all_ok(report: dict[str, Any], calls: int) -> None:
    assert report["count"] == calls, report
    assert not report.get("errorDistribution"), report["errorDistribution"]
    assert report["statusCodeDistribution"] == {"OK": calls}, report
    assert all(d["status"] == "OK" and not d["error"] for d in report["details"])


def test_ghz_unary_check_order(sidecar: Sidecar) -> None:
    account = "acc-ghz"
    sync_equity(sidecar.process, account)
    allowed_before = sidecar.decisions("ALLOWED")
    # A unique client_order_id per request (ghz templates): ids may not be reused.
    data = order(account, "ghz-unary", "ghz-unary-{{.RequestNumber}}-{{newUUID}}")
    report = ghz(sidecar, "ess.v1.GuardService.CheckOrder", data, "-n", "200", "-c", "4")
    assert_all_ok(report, 200)
    assert sidecar.decisions("ALLOWED") - allowed_before == 200


def test_ghz_check_order_stream(sidecar: Sidecar) -> None:
    """20 streams of 10 checks each. ghz sees each stream's status only; the sidecar's
    decision count shows that every one of the 200 checks was decided, none refused."""
    account = "acc-ghz-stream"
    sync_equity(sidecar.process, account)
    allowed_before = sidecar.decisions("ALLOWED")
    invalid_before = sidecar.invalid_requests()
    # --stream-dynamic-messages renders the template for every message: a new UUID each.
    # request_id (a uint64, as a JSON string) is the call's number, the same for the
    # messages of one stream; answers come in request order, so that is fine.
    data = {"request_id": "{{.RequestNumber}}",
            "order": order(account, "ghz-stream", "ghz-stream-{{newUUID}}")}
    report = ghz(sidecar, "ess.v1.GuardService.CheckOrderStream", data, "-n", "20", "-c", "4",
                 "--stream-call-count", "10", "--stream-dynamic-messages")
    assert_all_ok(report, 20)
    assert sidecar.decisions("ALLOWED") - allowed_before == 200
    assert sidecar.invalid_requests() == invalid_before
