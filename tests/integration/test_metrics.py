"""Metrics scraped over HTTP from a real sidecar: the Prometheus endpoint's counters and
gauges move as orders are judged, scopes trip and reset, breakers fill up and watchers
come and go.

Two layers. The first builds the telemetry, meter provider and metrics server itself
around a running sidecar's guard and feeds it as the servicer would. The second
(`TestWiredEndToEnd`, select with `-k Wired`) drives only gRPC and relies on the sidecar's
own wiring (`telemetry.metrics_listen`, the servicer calling the telemetry).
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import functools
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from ess.v1 import guard_pb2 as pb
from ess_sidecar.adapters.alerts.apprise_sink import AppriseAlertSink
from ess_sidecar.adapters.storage.memory import InMemoryStateStore
from ess_sidecar.adapters.telemetry import names
from ess_sidecar.adapters.telemetry.metrics import OtelTelemetry, meter_provider
from ess_sidecar.adapters.telemetry.prometheus_http import MetricsServer
from ess_sidecar.adapters.telemetry.resource import sidecar_resource
from ess_sidecar.domain.breakers import Metric
from ess_sidecar.domain.commands import Trigger
from ess_sidecar.domain.decisions import Decision
from ess_sidecar.domain.errors import InvalidArgument, StoreUnavailable, SubscriberTooSlow
from ess_sidecar.domain.orders import Order, PositionSnapshot, Side
from ess_sidecar.domain.scopes import GLOBAL, Scope, ScopeKind
from ess_sidecar.domain.states import TriggerMode, TriggerReason
from ess_sidecar.ports import AlertSink, EventQuery
from ess_sidecar.settings import AlertSettings, TelemetrySettings
from tests.integration.conftest import ACCOUNT, STRATEGY, SYMBOL, Running, next_event, \
    order, strategy_scope

MOMO = Scope(ScopeKind.STRATEGY, STRATEGY)
COOLDOWN_S = 15 * 60  # default reset_cooldown_s: docs/design.md, "Breakers"


class Scrape:
    """One scrape of /metrics, parsed by prometheus_client."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples = [sample for family in text_string_to_metric_families(text)
                        for sample in family.samples]

    def value(self, name: str, **labels: Any) -> float:
        """The sum of the samples named `name` carrying these labels (0 when none)."""
        return sum(s.value for s in self.matching(name, **labels))

    def matching(self, name: str, **labels: Any) -> list[Any]:
        wanted = {key: _label(value) for key, value in labels.items()}
        return [s for s in self.samples
                if s.name == name and all(s.labels.get(k) == v for k, v in wanted.items())]


def _label(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


async def scrape(address: str) -> Scrape:
    # Off the event loop: the gauges read the guard on it while the request waits.
    status, text = await asyncio.to_thread(http_get, f"http://{address}/metrics")
    assert status == 200, text
    return Scrape(text)


order_ids = (f"o-{i}" for i in itertools.count(1))


@dataclass
class Observed:
    """A running sidecar, and telemetry this test feeds as the servicer would."""

    running: Running
    telemetry: OtelTelemetry
    server: MetricsServer

    @property
    def guard(self) -> Any:
        return self.running.app.guard

    async def scrape(self) -> Scrape:
        return await scrape(self.server.address)

    def check(self, quantity: float = 10, strategy: str = STRATEGY) -> Decision:
        started = time.perf_counter_ns()
        decision = self.guard.check(Order(ACCOUNT, strategy, SYMBOL, Side.BUY, quantity, 100.0,
                                          client_order_id=next(order_ids)))
        self.telemetry.decided(decision, time.perf_counter_ns() - started)
        return decision

    def trigger(self, scope: Scope = MOMO,
                reason: TriggerReason = TriggerReason.RISK_VIOLATION) -> None:
        self.tell(lambda: self.guard.trigger(Trigger(scope, TriggerMode.HALT, "desk says stop",
                                                     reason, (), "trader")))

    def report(self, metric: Metric, value: float, scope: Scope = MOMO) -> None:
        self.tell(lambda: self.guard.report_metric(scope, metric, value))
        self.telemetry.metric_reported(metric)

    def tell(self, command: Callable[[], object]) -> None:
        """Run a guard command, then tell telemetry the transitions it made."""
        before = self.guard.engine.version
        command()
        if made := self.guard.engine.version - before:
            self.telemetry.transitions(self.guard.events(EventQuery(limit=made))[::-1])


Observe = Callable[..., Awaitable[Observed]]


@pytest.fixture
async def observe(start_sidecar: Any) -> AsyncIterator[Observe]:
    started: list[tuple[OtelTelemetry, MetricsServer]] = []

    async def start(alerts: AlertSink | None = None, latency_sample_every: int = 1,
                    off_loop: bool = False, max_gauge_scopes: int = 1000,
                    **overrides: Any) -> Observed:
        """off_loop: observe() the guard from a thread, as a guard built before its event
        loop runs is."""
        running = await start_sidecar(**overrides)
        settings = TelemetrySettings(latency_sample_every=latency_sample_every,
                                     instance_id="test-1", max_gauge_scopes=max_gauge_scopes)
        registry = CollectorRegistry()  # private: other sidecars in this process have theirs
        telemetry = OtelTelemetry(settings, meter_provider(settings, sidecar_resource(settings),
                                                           registry))
        observe = functools.partial(telemetry.observe, running.app.guard,
                                    alerts or running.app.alerts)
        await asyncio.to_thread(observe) if off_loop else observe()
        server = MetricsServer("127.0.0.1:0", registry, health=lambda: True)
        server.start()
        started.append((telemetry, server))
        return Observed(running, telemetry, server)

    yield start
    for telemetry, server in started:
        server.stop()
        telemetry.shutdown()


async def test_every_decision_is_counted_by_allowed_and_reason(observe: Observe) -> None:
    observed = await observe(limits={"max_order_quantity": 100})
    before = await observed.scrape()
    assert before.value("ess_decisions_total") == 0
    assert before.matching("ess_decisions_total", allowed=False, reason="EQUITY_UNKNOWN")
    for _ in range(3):
        assert observed.check().allowed
    assert observed.check(quantity=500).reason.name == "MAX_ORDER_QUANTITY"
    observed.trigger()
    for _ in range(2):
        assert observed.check().reason.name == "SCOPE_TRIPPED"

    after = await observed.scrape()
    assert after.value("ess_decisions_total", allowed=True, reason="ALLOWED") == 3
    assert after.value("ess_decisions_total", allowed=False, reason="MAX_ORDER_QUANTITY") == 1
    assert after.value("ess_decisions_total", allowed=False, reason="SCOPE_TRIPPED") == 2
    assert after.value("ess_decisions_total") == 6
    assert after.value("ess_decision_duration_microseconds_count") == 6


async def test_latency_histogram_records_one_decision_in_latency_sample_every(
        observe: Observe) -> None:
    observed = await observe(latency_sample_every=8)
    for _ in range(17):
        observed.check()
    metrics = await observed.scrape()
    assert metrics.value("ess_decisions_total", reason="ALLOWED") == 17  # exact
    assert metrics.value("ess_decision_duration_microseconds_count") == 3  # 1st, 9th, 17th
    buckets = metrics.matching("ess_decision_duration_microseconds_bucket")
    bounds = [s.labels["le"] for s in buckets]
    assert bounds == [str(b) for b in names.DURATION_BUCKETS_US] + ["+Inf"]


async def test_a_trip_is_counted_and_the_state_gauge_follows_the_scope_until_reset(
        observe: Observe) -> None:
    observed = await observe()
    observed.trigger(reason=TriggerReason.RISK_VIOLATION)
    tripped = await observed.scrape()
    assert tripped.value("ess_trips_total", scope_kind="STRATEGY", state="TRIPPED",
                         reason="RISK_VIOLATION", breaker="", drill=False) == 1
    assert tripped.value("ess_scope_state", scope="STRATEGY:momo", state="TRIPPED") == 1
    assert tripped.value("ess_scope_state", scope="STRATEGY:momo") == 1  # one state at a time
    assert tripped.value("ess_scope_state", scope="GLOBAL", state="ARMED") == 1
    assert tripped.value("ess_state_version") == observed.guard.engine.version == 1

    observed.running.clock.advance(COOLDOWN_S + 1)
    observed.tell(lambda: observed.guard.reset(MOMO, "desk says go", force=False,
                                               actor="operator"))
    reset = await observed.scrape()
    assert reset.value("ess_resets_total", scope_kind="STRATEGY", forced=False,
                       drill=False) == 1
    assert reset.value("ess_scope_state", scope="STRATEGY:momo", state="ARMED") == 1
    assert reset.value("ess_scope_state", scope="STRATEGY:momo", state="TRIPPED") == 0
    assert reset.value("ess_trips_total") == 1
    assert reset.value("ess_state_version") == 2


async def test_state_gauge_shows_a_scope_restricted_without_telemetry_being_told(
        observe: Observe) -> None:
    # As for a trip latched before start-up, or a fail-closed trip in memory.
    observed = await observe()
    observed.guard.trigger(Trigger(Scope(ScopeKind.SYMBOL, "TSLA"), TriggerMode.REDUCE_ONLY,
                                   "halt", TriggerReason.REGULATORY_HALT, (), "trader"))
    metrics = await observed.scrape()
    assert metrics.value("ess_scope_state", scope="SYMBOL:TSLA", state="REDUCE_ONLY") == 1
    assert metrics.value("ess_trips_total") == 0  # counting is what telemetry is told


async def test_breaker_gauges_show_how_close_a_scope_is_to_tripping(observe: Observe) -> None:
    observed = await observe()
    observed.report(Metric.DAILY_DRAWDOWN_PCT, 3.0)
    observed.report(Metric.API_ERROR, 2)
    close = await observed.scrape()
    labels = {"scope": "STRATEGY:momo"}
    assert close.value("ess_breaker_value", breaker="daily_drawdown_pct", **labels) == 3.0
    assert close.value("ess_breaker_threshold", breaker="daily_drawdown_pct", **labels) == 5.0
    assert close.value("ess_breaker_value", breaker="api_errors", **labels) == 2
    assert close.value("ess_breaker_threshold", breaker="api_errors", **labels) == 3
    assert close.value("ess_reports_total", metric="DAILY_DRAWDOWN_PCT") == 1
    assert close.value("ess_reports_total", metric="API_ERROR") == 1
    assert close.value("ess_trips_total") == 0

    observed.report(Metric.DAILY_DRAWDOWN_PCT, 6.0)
    tripped = await observed.scrape()
    assert tripped.value("ess_breaker_value", breaker="daily_drawdown_pct", **labels) == 6.0
    assert tripped.value("ess_trips_total", scope_kind="STRATEGY", reason="BREAKER",
                         breaker="daily_drawdown_pct") == 1
    assert tripped.value("ess_scope_state", state="TRIPPED", **labels) == 1


async def test_per_scope_gauges_are_capped_the_newest_first(observe: Observe) -> None:
    """A flood of ids never makes a scrape big: breaker gauges cover the most recently
    reported scopes, state gauges the newest restricted ones, max_gauge_scopes each."""
    observed = await observe(max_gauge_scopes=10)
    for n in range(50):
        observed.report(Metric.API_ERROR, 1, scope=Scope(ScopeKind.STRATEGY, f"s-{n}"))
    for n in range(30):
        observed.trigger(Scope(ScopeKind.STRATEGY, f"t-{n}"))
    metrics = await observed.scrape()
    reported = {s.labels["scope"] for s in metrics.samples if s.name == "ess_breaker_value"}
    assert reported == {f"STRATEGY:s-{n}" for n in range(40, 50)}
    states = {s.labels["scope"] for s in metrics.samples if s.name == "ess_scope_state"}
    assert states == {"GLOBAL"} | {f"STRATEGY:t-{n}" for n in range(20, 30)}


async def test_the_state_gauge_shows_global_however_many_trips_came_after_it(
        observe: Observe) -> None:
    """Review 42j: the cap kept the newest restricted scopes, and a hundred trips after
    GLOBAL's hid it: a Prometheus alert on GLOBAL resolved while it was tripped."""
    observed = await observe(max_gauge_scopes=10)
    observed.trigger(GLOBAL)
    for n in range(30):
        observed.trigger(Scope(ScopeKind.STRATEGY, f"t-{n}"))
    metrics = await observed.scrape()
    assert metrics.value("ess_scope_state", scope="GLOBAL", state="TRIPPED") == 1


async def test_the_state_gauge_is_read_whole_while_the_loop_is_busy(observe: Observe) -> None:
    """Review 42l: the trips not stored were read on the loop, and a loop busy past the
    read's second took the whole state gauge with it, GLOBAL's trip included."""
    observed = await observe()
    observed.trigger(GLOBAL)
    scraped: list[Scrape] = []
    scraper = threading.Thread(target=lambda: scraped.append(asyncio.run(observed.scrape())))
    scraper.start()
    time.sleep(1.5)  # the loop, busy: the scrape is served meanwhile, on its own thread
    scraper.join(10)
    assert scraped[0].value("ess_scope_state", scope="GLOBAL", state="TRIPPED") == 1


async def test_the_state_gauge_shows_a_trip_that_could_not_be_stored(
        observe: Observe) -> None:
    """Review 42j: a trip whose write failed denies its scope's orders after GLOBAL's
    reset too, and the gauge said ARMED (only GetState showed it)."""
    store = InMemoryStateStore()
    observed = await observe(state_store=store)
    observed.trigger()
    observed.running.clock.advance(COOLDOWN_S + 1)
    observed.tell(lambda: observed.guard.reset(MOMO, "desk says go", force=False,
                                               actor="operator"))
    store.fail_next_append = True
    with pytest.raises(StoreUnavailable):
        observed.trigger()
    observed.tell(lambda: observed.guard.reset(GLOBAL, "disk replaced", force=True,
                                               actor="operator"))
    assert not observed.check().allowed
    metrics = await observed.scrape()
    assert metrics.value("ess_scope_state", scope="STRATEGY:momo", state="TRIPPED") == 1
    assert metrics.value("ess_scope_state", scope="GLOBAL", state="ARMED") == 1


async def test_breakers_observed_before_the_loop_runs_show_from_the_first_report(
        observe: Observe) -> None:
    observed = await observe(off_loop=True)
    observed.guard.report_metric(MOMO, Metric.DAILY_DRAWDOWN_PCT, 3.0)  # telemetry not told
    assert not (await observed.scrape()).matching("ess_breaker_value")
    observed.report(Metric.OPEN_LOSS_PCT, 4.0)  # told, on the guard's loop
    metrics = await observed.scrape()
    assert metrics.value("ess_breaker_value", breaker="daily_drawdown_pct") == 3.0
    assert metrics.value("ess_breaker_threshold", breaker="open_loss_pct") == 10.0


async def test_watch_subscribers_and_slow_disconnects(observe: Observe) -> None:
    observed = await observe(watch={"queue_size": 1})
    assert (await observed.scrape()).value("ess_watch_slow_disconnects_total") == 0  # 44d
    watch = observed.guard.watch([], from_version=0).subscription
    assert (await observed.scrape()).value("ess_watch_subscribers") == 1
    for ident in ("a", "b"):  # the second overflows the watcher's queue: cut off
        observed.trigger(Scope(ScopeKind.STRATEGY, ident))
    assert (await watch.next(timeout=0)).scope.id == "a"
    with pytest.raises(SubscriberTooSlow):
        await watch.next(timeout=0)
    observed.telemetry.subscriber_dropped()
    metrics = await observed.scrape()
    assert metrics.value("ess_watch_subscribers") == 0
    assert metrics.value("ess_watch_slow_disconnects_total") == 1


async def test_invalid_requests_are_counted_by_field_with_indexes_folded(
        observe: Observe) -> None:
    observed = await observe()
    guard = observed.guard
    bad: list[Callable[[], object]] = [
        lambda: guard.check(Order(ACCOUNT, STRATEGY, SYMBOL, Side.BUY, 0, 100.0)),
        lambda: guard.check(Order(ACCOUNT, "", SYMBOL, Side.BUY, 1, 100.0)),
        lambda: guard.sync_positions(ACCOUNT, 1e6, [PositionSnapshot("s", "X", 1, 0.0)]),
        lambda: guard.sync_positions(ACCOUNT, 1e6, [PositionSnapshot("s", "X", 0, 0.0),
                                                    PositionSnapshot("s", "Y", 1, 0.0)])]
    for call in bad:
        with pytest.raises(InvalidArgument) as error:
            call()
        observed.telemetry.invalid_request(error.value.field)
    metrics = await observed.scrape()
    assert metrics.value("ess_invalid_requests_total", field="quantity") == 1
    assert metrics.value("ess_invalid_requests_total", field="strategy") == 1
    assert metrics.value("ess_invalid_requests_total", field="positions[].mark_price") == 2


async def test_alert_counters_read_the_alert_sink(observe: Observe) -> None:
    # Not started, with room for one alert: what does not fit is dropped, and counted.
    sink = AppriseAlertSink(AlertSettings(urls=["json://127.0.0.1:9/hook"], queue_size=1))
    observed = await observe(alerts=sink)
    for ident in ("a", "b", "c"):
        observed.trigger(Scope(ScopeKind.STRATEGY, ident))
    sink.notify(observed.guard.restricted())
    metrics = await observed.scrape()
    assert metrics.value("ess_alerts_dropped_total") == 2
    assert metrics.value("ess_alerts_merged_total") == 0
    assert metrics.value("ess_alerts_sent_total") == 0
    assert metrics.matching("ess_alerts_failed_total")
    assert metrics.matching("ess_alerts_retried_total")


async def test_no_alert_counters_without_an_alert_sink_that_counts(observe: Observe) -> None:
    observed = await observe()  # alerts.urls empty: NoAlerts
    assert not (await observed.scrape()).matching("ess_alerts_sent_total")


async def test_healthz_follows_health_and_the_resource_names_the_sidecar(
        observe: Observe) -> None:
    observed = await observe()
    serving = True
    server = MetricsServer("127.0.0.1:0", CollectorRegistry(), health=lambda: serving)
    server.start()
    try:
        assert await asyncio.to_thread(http_get, f"http://{server.address}/healthz") == (
            200, "SERVING\n")
        serving = False
        assert await asyncio.to_thread(http_get, f"http://{server.address}/healthz") == (
            503, "NOT_SERVING\n")
        status, _ = await asyncio.to_thread(http_get, f"http://{server.address}/other")
        assert status == 404
    finally:
        server.stop()
    info = (await observed.scrape()).matching("target_info")[0].labels
    assert (info["service_name"], info["service_instance_id"]) == ("ess-sidecar", "test-1")
    assert info["service_version"]


async def test_metrics_server_names_an_address_it_cannot_bind(observe: Observe) -> None:
    observed = await observe()
    taken = MetricsServer(observed.server.address, CollectorRegistry(), health=lambda: True)
    with pytest.raises(OSError, match=observed.server.address):
        taken.start()


async def test_each_sidecar_has_its_own_metrics(observe: Observe, socket_dir: Path,
                                                tmp_path: Path) -> None:
    first = await observe()
    second = await observe(server={"uds": str(socket_dir / "second.sock")},
                           store={"path": str(tmp_path / "second.db")})
    first.check()
    assert (await first.scrape()).value("ess_decisions_total") == 1
    assert (await second.scrape()).value("ess_decisions_total") == 0


# -- layer 2: through gRPC, with the sidecar's own wiring -----------------------------------


class TestWiredEndToEnd:
    """Needs: telemetry.metrics_listen starting the endpoint at running.sidecar.metrics,
    and the servicer and guard calling the telemetry."""

    @staticmethod
    async def start(start_sidecar: Any, **overrides: Any) -> tuple[Running, str]:
        telemetry = {"metrics_listen": "127.0.0.1:0", "latency_sample_every": 1}
        running = await start_sidecar(telemetry=telemetry, **overrides)
        return running, running.sidecar.metrics.address

    async def test_grpc_traffic_moves_the_counters_and_gauges(self, start_sidecar: Any) -> None:
        running, address = await self.start(start_sidecar, limits={"max_order_quantity": 100})
        stub = running.stub
        assert (await scrape(address)).value("ess_decisions_total") == 0
        for _ in range(3):
            assert (await stub.CheckOrder(order())).allowed
        assert not (await stub.CheckOrder(order(quantity=500))).allowed
        stream = stub.CheckOrderStream()
        for request_id in (1, 2):
            await stream.write(pb.CheckOrderStreamRequest(request_id=request_id, order=order()))
            assert (await stream.read()).decision.allowed
        await stream.write(pb.CheckOrderStreamRequest(request_id=3, order=order(quantity=-1)))
        assert (await stream.read()).error.field == "order.quantity"
        await stream.done_writing()
        await stub.Trigger(pb.TriggerRequest(
            scope=strategy_scope(), reason="desk says stop",
            reason_code=pb.TRIGGER_REASON_RISK_VIOLATION))
        assert not (await stub.CheckOrder(order())).allowed
        with pytest.raises(grpc.aio.AioRpcError):
            await stub.CheckOrder(order(quantity=0))
        await stub.ReportMetric(pb.ReportMetricRequest(
            scope=strategy_scope("other"), metric=pb.METRIC_DAILY_DRAWDOWN_PCT, value=3.0))
        watch = stub.WatchState(pb.WatchStateRequest())
        while (await next_event(watch)).kind != pb.WATCH_EVENT_KIND_SNAPSHOT_END:
            pass

        metrics = await scrape(address)
        assert metrics.value("ess_decisions_total", allowed=True, reason="ALLOWED") == 5
        assert metrics.value("ess_decisions_total", allowed=False,
                             reason="MAX_ORDER_QUANTITY") == 1
        assert metrics.value("ess_decisions_total", allowed=False, reason="SCOPE_TRIPPED") == 1
        assert metrics.value("ess_decision_duration_microseconds_count") == 7
        assert metrics.value("ess_trips_total", scope_kind="STRATEGY", state="TRIPPED",
                             reason="RISK_VIOLATION") == 1
        assert metrics.value("ess_scope_state", scope="STRATEGY:momo", state="TRIPPED") == 1
        assert metrics.value("ess_state_version") == 1
        assert metrics.value("ess_invalid_requests_total", field="quantity") == 1
        assert metrics.value("ess_invalid_requests_total", field="order.quantity") == 1
        assert metrics.value("ess_reports_total", metric="DAILY_DRAWDOWN_PCT") == 1
        assert metrics.value("ess_breaker_value", scope="STRATEGY:other",
                             breaker="daily_drawdown_pct") == 3.0
        assert metrics.value("ess_watch_subscribers") == 1
        watch.cancel()

    async def test_a_slow_watcher_cut_off_is_counted(self, start_sidecar: Any) -> None:
        running, address = await self.start(start_sidecar, watch={"queue_size": 1})
        watch = running.stub.WatchState(pb.WatchStateRequest())
        assert (await next_event(watch)).kind == pb.WATCH_EVENT_KIND_SNAPSHOT_END
        for ident in ("a", "b", "c"):  # no await between: the watcher cannot keep up
            running.app.guard.trigger(Trigger(Scope(ScopeKind.STRATEGY, ident), TriggerMode.HALT,
                                              "stop", TriggerReason.USER_INITIATED, (), "trader"))
        with pytest.raises(grpc.aio.AioRpcError):
            while True:
                await next_event(watch)
        metrics = await scrape(address)
        assert metrics.value("ess_watch_slow_disconnects_total") == 1
        assert metrics.value("ess_trips_total", reason="USER_INITIATED") == 3

    async def test_healthz_on_the_metrics_port(self, start_sidecar: Any) -> None:
        _, address = await self.start(start_sidecar)
        assert await asyncio.to_thread(http_get, f"http://{address}/healthz") == (
            200, "SERVING\n")
