"""Alerts through apprise to real HTTP receivers on loopback: delivered, retried, given up,
dropped, and never in the way of a decision."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import socket
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
import pytest

from ess.v1 import guard_pb2 as pb
from ess_sidecar.adapters.alerts.apprise_sink import AppriseAlertSink
from ess_sidecar.adapters.storage.memory import InMemoryStateStore
from ess_sidecar.domain.errors import InvalidConfig
from ess_sidecar.domain.scopes import GLOBAL, Scope, ScopeKind
from ess_sidecar.domain.states import Cause, Directive, State, Transition
from ess_sidecar.settings import AlertSettings
from tests.fakes import START
from tests.integration.conftest import order, strategy_scope, synced

DEADLINE_S = 10.0  # generous: these wait for events, never measure time
FAST = {"backoff_initial_s": 0.01, "backoff_max_s": 0.05}


class Receiver:
    """A real HTTP server on 127.0.0.1 that records every JSON body POSTed to it."""

    def __init__(self, port: int = 0) -> None:
        self.bodies: list[dict[str, Any]] = []
        self._arrived = asyncio.Event()
        loop = asyncio.get_running_loop()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("Content-Length", 0))
                receiver.bodies.append(json.loads(self.rfile.read(length)))
                loop.call_soon_threadsafe(receiver._arrived.set)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = self._server.server_address[1]
        self.url = f"json://127.0.0.1:{self.port}/hook"
        # A short poll interval keeps close() (shutdown waits for one poll) quick.
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()

    async def wait_for(self, count: int) -> list[dict[str, Any]]:
        """The first `count` bodies, once they have arrived."""
        async def arrived() -> None:
            while len(self.bodies) < count:
                self._arrived.clear()
                await self._arrived.wait()
        await asyncio.wait_for(arrived(), DEADLINE_S)
        return self.bodies[:count]

    async def close(self) -> None:
        await asyncio.to_thread(self._server.shutdown)
        self._server.server_close()


class Hanging:
    """A server that accepts connections, reads, and never answers."""

    def __init__(self) -> None:
        self.connected = asyncio.Event()
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self) -> Hanging:
        self._server = await asyncio.start_server(self._hold, "127.0.0.1", 0)
        self.url = f"json://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/hook"
        return self

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.append(writer)
        self.connected.set()
        await reader.read()  # until the client gives up

    async def close(self) -> None:
        self._server.close()
        for writer in self._writers:
            writer.close()


class Outcomes:
    """Waits on the sink's attempt hook instead of sleeping."""

    def __init__(self, sink: AppriseAlertSink) -> None:
        self.seen: list[tuple[str, str]] = []
        self._changed = asyncio.Event()
        sink.on_attempt = self._record

    def _record(self, url: str, outcome: str) -> None:
        self.seen.append((url, outcome))
        self._changed.set()

    async def until(self, condition: Callable[[], bool]) -> None:
        async def reached() -> None:
            while not condition():
                self._changed.clear()
                await self._changed.wait()
        await asyncio.wait_for(reached(), DEADLINE_S)


def free_port() -> int:
    """A loopback port with nothing listening on it (until a test starts a receiver)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def dead_url(port: int | None = None) -> str:
    return f"json://127.0.0.1:{port or free_port()}/hook"


def trip(version: int = 1, ident: str = "momo") -> Transition:
    return Transition(version, START, Scope(ScopeKind.STRATEGY, ident), State.ARMED,
                      State.TRIPPED, Cause.TRIGGER, "desk says stop", "alice")


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    started = Receiver()
    yield started
    await started.close()


@pytest.fixture
async def hanging() -> AsyncIterator[Hanging]:
    server = await Hanging().start()
    yield server
    await server.close()


@pytest.fixture
async def sinks() -> AsyncIterator[Callable[..., AppriseAlertSink]]:
    made: list[AppriseAlertSink] = []

    def make(*urls: str, **settings: Any) -> AppriseAlertSink:
        sink = AppriseAlertSink(AlertSettings(urls=list(urls), **{**FAST, **settings}))
        made.append(sink)
        return sink

    yield make
    for sink in made:
        await sink.stop(0)


# -- through the real sidecar ----------------------------------------------------------------


async def test_trigger_and_reset_are_alerted_with_their_details(
        start_sidecar: Any, receiver: Receiver) -> None:
    running = await start_sidecar(alerts={"urls": [receiver.url], "backoff_initial_s": 0.05})
    await running.stub.Trigger(pb.TriggerRequest(scope=strategy_scope(), reason="desk says stop"))
    (tripped,) = await receiver.wait_for(1)
    assert tripped["title"] == "ESS STRATEGY:momo TRIPPED"
    assert tripped["type"] == "failure"
    for line in ("scope: STRATEGY:momo", "state: TRIPPED (was ARMED)",
                 "reason: desk says stop", "actor: unauthenticated@", "version: 1"):
        assert line in tripped["message"]
    running.clock.advance(15 * 60)
    await running.stub.Reset(pb.ResetRequest(scope=strategy_scope(), reason="all clear"))
    reset = (await receiver.wait_for(2))[1]
    assert reset["title"] == "ESS STRATEGY:momo ARMED (reset)" and reset["type"] == "success"
    assert "reason: all clear" in reset["message"] and "version: 2" in reset["message"]


async def test_a_lost_heartbeat_is_alerted_naming_the_executor(
        start_sidecar: Any, receiver: Receiver) -> None:
    running = await start_sidecar(alerts={"urls": [receiver.url]})
    await running.stub.Heartbeat(pb.HeartbeatRequest(executor_id="ex-1", scope=strategy_scope(),
                                                     ttl_ms=2000))
    running.clock.advance(3)
    running.app.guard.run_timers()
    (lost,) = await receiver.wait_for(1)
    assert lost["title"] == "ESS STRATEGY:momo TRIPPED (heartbeat lost)"
    assert "executor ex-1 missed its 2s heartbeat" in lost["message"]
    assert "breaker: heartbeat_lost" in lost["message"]


async def test_an_operators_clear_and_a_deregistration_for_another_are_alerted(
        start_sidecar: Any, receiver: Receiver) -> None:
    """Review 41c: a clear of working orders (their room free at once) and an operator's
    deregistration of another principal's executor (its death then trips nothing) left
    no trace but a log line, the second not even that."""
    from ess_sidecar.domain.access import Principal, Role  # noqa: PLC0415
    running = await start_sidecar(alerts={"urls": [receiver.url]})
    assert (await running.stub.CheckOrder(order())).allowed
    await running.stub.ClearWorkingOrders(pb.ClearWorkingOrdersRequest(
        account="acc-1", reason="venue says gone"))
    (cleared,) = await receiver.wait_for(1)
    assert cleared["title"] == "ESS ACCOUNT:acc-1: 1 working order(s) cleared"
    assert cleared["type"] == "warning" and "'venue says gone'" in cleared["message"]
    guard, scope = running.app.guard, Scope(ScopeKind.STRATEGY, "momo")
    guard.heartbeat("ex-1", scope, 5.0, caller=Principal("bob", Role.EXECUTOR))
    guard.heartbeat("ex-1", scope, 5.0, deregister=True,
                    caller=Principal("alice", Role.OPERATOR))
    retired = (await receiver.wait_for(2))[1]
    assert retired["title"] == "ESS STRATEGY:momo: executor 'ex-1' deregistered by alice"
    assert "bob" in retired["message"]
    guard.heartbeat("ex-2", scope, 5.0, caller=Principal("bob", Role.EXECUTOR))
    guard.heartbeat("ex-2", scope, 5.0, deregister=True,  # its own: nothing to say
                    caller=Principal("bob", Role.EXECUTOR))
    await running.stub.Trigger(pb.TriggerRequest(scope=strategy_scope(), reason="then"))
    assert (await receiver.wait_for(3))[2]["title"] == "ESS STRATEGY:momo TRIPPED"


async def test_a_trip_that_could_not_be_stored_is_alerted(
        start_sidecar: Any, receiver: Receiver) -> None:
    """Review 42j: a trip whose write failed denies its scope until it is stored or the
    sidecar restarts, after GLOBAL's reset too; no alert named it, and the alert of
    GLOBAL's reset read as the all-clear."""
    store = InMemoryStateStore()
    running = await start_sidecar(alerts={"urls": [receiver.url]}, state_store=store)
    store.fail_next_append = True
    with pytest.raises(grpc.aio.AioRpcError):
        await running.stub.Trigger(pb.TriggerRequest(scope=strategy_scope(), reason="stop"))
    alerts = await receiver.wait_for(2)
    lost = next(a for a in alerts if "not recorded" in a["title"])
    assert lost["title"] == "ESS STRATEGY:momo TRIPPED, not recorded"
    assert lost["type"] == "warning" and "no reset lifts it" in lost["message"]


async def test_warnings_quote_spaced_ids_and_indent_a_reasons_lines_and_skip_drills(
        start_sidecar: Any, receiver: Receiver) -> None:
    """Review 42l: the warnings built their own titles and bodies, so an id with spaces
    and a reason with newlines forged a title and lines 42j had closed for transitions;
    and a drill's trip not stored was alerted as a real one no reset lifts."""
    store = InMemoryStateStore()
    running = await start_sidecar(alerts={"urls": [receiver.url]}, state_store=store)
    await running.stub.SyncPositions(synced("ops desk"))
    assert (await running.stub.CheckOrder(order(account="ops desk"))).allowed
    await running.stub.ClearWorkingOrders(pb.ClearWorkingOrdersRequest(
        account="ops desk", reason="gone\nstate: ARMED (was TRIPPED)"))
    (cleared,) = await receiver.wait_for(1)
    assert cleared["title"] == 'ESS "ACCOUNT:ops desk": 1 working order(s) cleared'
    assert not any(line.startswith("state:") for line in cleared["message"].splitlines())
    store.fail_next_append = True
    with pytest.raises(grpc.aio.AioRpcError):
        await running.stub.Trigger(pb.TriggerRequest(scope=strategy_scope(), drill=True,
                                                     reason="drill"))
    titles = [alert["title"] for alert in await receiver.wait_for(2)]
    assert titles[1] == "ESS GLOBAL TRIPPED (system)" and "not recorded" not in str(titles)


async def test_decisions_and_triggers_answer_while_the_receiver_hangs(
        start_sidecar: Any, hanging: Hanging) -> None:
    running = await start_sidecar(alerts={"urls": [hanging.url]}, server={"grace_s": 0.2})
    await asyncio.wait_for(running.stub.Trigger(pb.TriggerRequest(scope=strategy_scope("a"))), 2)
    await asyncio.wait_for(hanging.connected.wait(), DEADLINE_S)
    # The first alert is stuck in flight; these must not wait behind it.
    await asyncio.wait_for(running.stub.Trigger(pb.TriggerRequest(scope=strategy_scope("b"))), 2)
    decision = await asyncio.wait_for(running.stub.CheckOrder(order(strategy="a")), 2)
    assert decision.reason == pb.DECISION_REASON_SCOPE_TRIPPED
    assert (await asyncio.wait_for(running.stub.CheckOrder(order(strategy="c")), 2)).allowed


# -- the sink on its own ---------------------------------------------------------------------


async def test_an_alert_to_a_receiver_that_was_down_arrives_once_it_is_back(
        sinks: Callable[..., AppriseAlertSink]) -> None:
    port = free_port()
    sink = sinks(dead_url(port), retries=1000)
    outcomes = Outcomes(sink)
    await sink.start()
    sink.notify([trip()])
    await outcomes.until(lambda: sink.retried >= 2)
    back = Receiver(port)
    try:
        (body,) = await back.wait_for(1)
        await outcomes.until(lambda: sink.sent == 1)
    finally:
        await back.close()
    assert body["title"] == "ESS STRATEGY:momo TRIPPED"
    assert (sink.sent, sink.failed, sink.dropped) == (1, 0, 0)


async def test_a_url_that_never_works_is_given_up_and_logged_without_its_secret(
        sinks: Callable[..., AppriseAlertSink], receiver: Receiver,
        caplog: pytest.LogCaptureFixture) -> None:
    secret_url = f"json://ops:s3cret@127.0.0.1:{free_port()}/hooks/S3CRETPATH"
    sink = sinks(secret_url, receiver.url, retries=2)
    outcomes = Outcomes(sink)
    await sink.start()
    sink.notify([trip()])
    await receiver.wait_for(1)
    await outcomes.until(lambda: sink.failed == 1)
    assert (sink.sent, sink.failed, sink.retried) == (1, 1, 2)
    (given_up,) = [r for r in caplog.records if r.levelno == logging.ERROR
                   and r.name.startswith("ess_sidecar")]
    assert "failed after 3 attempt(s)" in given_up.getMessage()
    assert "to alerts.urls[0] json failed" in given_up.getMessage()
    assert "s3cret" not in caplog.text.lower()  # nor the path (review 40g)
    assert "ops" not in given_up.getMessage()  # nor the user: it may be a key (40h)


async def test_alerts_keep_their_order_per_url(
        sinks: Callable[..., AppriseAlertSink], receiver: Receiver) -> None:
    sink = sinks(receiver.url)
    await sink.start()
    sink.notify([trip(1, "a"), trip(2, "b")])
    sink.notify([trip(3, "c")])
    titles = [body["title"] for body in await receiver.wait_for(3)]
    assert titles == [f"ESS STRATEGY:{s} TRIPPED" for s in "abc"]


async def test_notify_never_blocks_and_drops_what_does_not_fit(
        sinks: Callable[..., AppriseAlertSink], caplog: pytest.LogCaptureFixture) -> None:
    sink = sinks(dead_url(), queue_size=1, retries=1000)
    await sink.start()
    sink.notify([trip(v) for v in range(1, 101)])
    assert sink.dropped == 99
    assert "queue full (1)" in caplog.text


async def test_renewed_trips_waiting_to_be_sent_are_merged_so_a_new_trip_is_never_dropped(
        sinks: Callable[..., AppriseAlertSink], receiver: Receiver) -> None:
    """Review 31: each further unchecked fill renews its account's trip, and each renewal
    is a transition. 300 of them filled a queue of 20 and the operator's GLOBAL trip that
    followed was dropped. A renewal like one still waiting to be sent is merged into it."""
    account = Scope(ScopeKind.ACCOUNT, "acc-1")
    first = Transition(1, START, account, State.ARMED, State.TRIPPED, Cause.BREAKER,
                       "unchecked fill", "system", breaker="unchecked_order")
    renewals = [dataclasses.replace(first, version=v, previous=State.TRIPPED)
                for v in range(2, 302)]
    halt = Transition(302, START, Scope(ScopeKind.GLOBAL, ""), State.ARMED, State.TRIPPED,
                      Cause.TRIGGER, "desk halt", "alice")
    sink = sinks(receiver.url, queue_size=20)
    sink.notify([first, *renewals, halt])  # before start: nothing is sent yet
    assert (sink.dropped, sink.merged) == (0, 299)
    await sink.start()
    delivered = await receiver.wait_for(3)
    assert [body["title"] for body in delivered] == [
        "ESS ACCOUNT:acc-1 TRIPPED (breaker)", "ESS ACCOUNT:acc-1 TRIPPED (breaker)",
        "ESS GLOBAL TRIPPED"]
    sink.notify([dataclasses.replace(first, version=303, previous=State.TRIPPED)])
    assert (await receiver.wait_for(4))[3]["title"] == "ESS ACCOUNT:acc-1 TRIPPED (breaker)"


async def test_renewals_of_two_kinds_on_one_scope_are_both_merged(
        sinks: Callable[..., AppriseAlertSink], receiver: Receiver) -> None:
    """Review 49h: an account's unchecked fills and an executor's repeated Triggers of it
    renewing in turn never merged (one key per scope), and the queue dropped GLOBAL's
    trip."""
    account = Scope(ScopeKind.ACCOUNT, "acc-1")
    first = Transition(1, START, account, State.ARMED, State.TRIPPED, Cause.BREAKER,
                       "unchecked fill", "system", breaker="unchecked_order")
    fills = dataclasses.replace(first, previous=State.TRIPPED)
    stops = dataclasses.replace(fills, cause=Cause.TRIGGER, breaker="", actor="bot")
    renewals = [dataclasses.replace(fills if v % 2 else stops, version=v)
                for v in range(2, 302)]
    halt = Transition(302, START, GLOBAL, State.ARMED, State.TRIPPED, Cause.TRIGGER,
                      "desk halt", "alice")
    sink = sinks(receiver.url, queue_size=20)
    sink.notify([first, *renewals, halt])  # before start: nothing is sent yet
    assert (sink.dropped, sink.merged) == (0, 298)
    await sink.start()
    assert (await receiver.wait_for(4))[3]["title"] == "ESS GLOBAL TRIPPED"


async def test_a_renewed_trip_after_other_news_of_its_scope_is_never_merged_behind_it(
        sinks: Callable[..., AppriseAlertSink], receiver: Receiver) -> None:
    """Review 49g: a breaker's trip, an operator's stop renewing it, a reset of the stop's
    latch, then another operator's stop: the last was merged into the first stop's alert,
    still waiting, and the last alert sent said the scope was reset."""
    scope = Scope(ScopeKind.STRATEGY, "x")
    corrupt = Transition(1, START, scope, State.ARMED, State.TRIPPED, Cause.BREAKER,
                         "corrupt feed", "system", breaker="data_feed_corrupt")
    alice = Transition(2, START, scope, State.TRIPPED, State.TRIPPED, Cause.TRIGGER,
                       "halt", "alice")
    reset = Transition(3, START, scope, State.TRIPPED, State.TRIPPED, Cause.RESET,
                       "trigger lifted", "bob")
    carol = dataclasses.replace(alice, version=4, reason="HALT x, it is running away",
                                actor="carol")
    sink = sinks(receiver.url)
    sink.notify([corrupt, alice, reset, carol])  # before start: all wait together
    assert sink.merged == 0
    await sink.start()
    delivered = await receiver.wait_for(4)
    assert "HALT x, it is running away" in delivered[3]["message"]


async def test_a_renewed_trip_never_merges_past_news_of_its_scope_that_was_dropped(
        sinks: Callable[..., AppriseAlertSink]) -> None:
    """Review 49i: with the queue full, a reset and a halt again were dropped, and the
    next renewal was merged into the alert queued before them: the last alert sent named
    a state the scope had left. It is dropped too, and counted."""
    account = Scope(ScopeKind.ACCOUNT, "acc-1")
    renewed = Transition(1, START, account, State.TRIPPED, State.TRIPPED, Cause.TRIGGER,
                         "halt", "bot")
    lifted = Transition(3, START, account, State.TRIPPED, State.REDUCE_ONLY, Cause.RESET,
                        "halt lifted", "alice")
    again = Transition(4, START, account, State.REDUCE_ONLY, State.TRIPPED, Cause.TRIGGER,
                       "HALT again", "carol")
    sink = sinks(dead_url(), queue_size=2)  # not started: the queue stays full
    sink.notify([renewed, trip(2, "other"), lifted, again,
                 dataclasses.replace(renewed, version=5)])
    assert (sink.merged, sink.dropped) == (0, 3)


async def test_a_renewed_trip_with_directives_is_never_merged_into_one_without(
        sinks: Callable[..., AppriseAlertSink], receiver: Receiver) -> None:
    """Review 36f: GLOBAL halted, and halted again (renewed) by another executor, then a
    panic on it (cancel and flatten) while the renewal's alert still waited: the panic was
    merged into the renewal's alert and never sent."""
    halt = Transition(1, START, GLOBAL, State.ARMED, State.TRIPPED, Cause.TRIGGER,
                      "desk halt", "ex-7")
    renewed = dataclasses.replace(halt, version=2, previous=State.TRIPPED, actor="ex-8")
    panic = dataclasses.replace(renewed, version=3, reason="panic", actor="alice",
                                directives=(Directive.CANCEL_OPEN_ORDERS,
                                            Directive.FLATTEN_POSITIONS))
    again = dataclasses.replace(panic, version=4, directives=panic.directives[::-1])
    sink = sinks(receiver.url)
    sink.notify([halt, renewed, panic, again])  # before start: all wait together
    assert sink.merged == 1  # the same directives again, in another order
    await sink.start()
    delivered = await receiver.wait_for(3)
    assert "directives: CANCEL_OPEN_ORDERS, FLATTEN_POSITIONS" in delivered[2]["message"]


async def test_alerts_notified_before_start_are_delivered_after_it(
        sinks: Callable[..., AppriseAlertSink], receiver: Receiver) -> None:
    sink = sinks(receiver.url)
    sink.notify([trip(1, "a"), trip(2, "b")])
    await sink.start()
    assert [b["title"] for b in await receiver.wait_for(2)] == \
        ["ESS STRATEGY:a TRIPPED", "ESS STRATEGY:b TRIPPED"]


async def test_stop_gives_up_on_a_hanging_receiver_and_counts_what_is_left(
        sinks: Callable[..., AppriseAlertSink], receiver: Receiver, hanging: Hanging,
        caplog: pytest.LogCaptureFixture) -> None:
    sink = sinks(hanging.url, receiver.url)
    await sink.start()
    sink.notify([trip(1, "a"), trip(2, "b")])
    await asyncio.wait_for(hanging.connected.wait(), DEADLINE_S)
    await receiver.wait_for(2)  # the other URL is not held up by the hanging one
    await asyncio.wait_for(sink.stop(0.2), 0.2 + 5)
    assert (sink.sent, sink.dropped, sink.failed) == (2, 2, 0)
    assert "2 alert(s) to alerts.urls[0] json undelivered" in caplog.text
    sink.notify([trip(3)])
    assert sink.dropped == 4


async def test_stop_before_start_counts_the_queue_as_dropped(
        sinks: Callable[..., AppriseAlertSink]) -> None:
    sink = sinks(dead_url())
    sink.notify([trip()])
    await sink.stop(1)
    assert sink.dropped == 1


def test_a_url_apprise_cannot_use_refuses_to_start() -> None:
    with pytest.raises(InvalidConfig) as refused:
        AppriseAlertSink(AlertSettings(urls=["json://127.0.0.1/ok", "nope://x"]))
    assert refused.value.key == "alerts.urls[1]"


async def test_a_trip_restored_from_the_store_at_start_is_alerted(
        start_sidecar: Any, receiver: Receiver, tmp_path: Any) -> None:
    """Review 7: killed between a Trigger's COMMIT and its journal record, so before its
    alert went out: the start that takes the trip from the store alerts it."""
    first = await start_sidecar(sync=False)
    journal = tmp_path / "ess.db.journal"
    seal = tmp_path / "ess.db.journal.seal"
    before = journal.read_bytes(), seal.read_bytes()
    await first.stub.Trigger(pb.TriggerRequest(scope=strategy_scope(), reason="desk says stop"))
    await first.channel.close()
    await first.sidecar.stop()
    journal.write_bytes(before[0])  # the journal as the kill left it: without the Trigger
    seal.write_bytes(before[1])
    await start_sidecar(sync=False, alerts={"urls": [receiver.url]})
    (restored,) = await receiver.wait_for(1)
    assert restored["title"] == "ESS STRATEGY:momo TRIPPED"
    assert "reason: desk says stop" in restored["message"]


async def test_a_start_with_scopes_latched_alerts_them_once_more(
        receiver: Receiver, tmp_path: Path) -> None:
    """Review 36f: a panic's alert still waiting (a receiver down) when the sidecar was
    SIGKILLed died with it, and nothing told the operator after the restart. Each start
    alerts the scopes it finds latched, in one alert."""
    from ess_sidecar.bootstrap import build  # noqa: PLC0415
    from ess_sidecar.domain.commands import Trigger  # noqa: PLC0415
    from ess_sidecar.domain.states import TriggerMode, TriggerReason  # noqa: PLC0415
    from ess_sidecar.settings import load_settings  # noqa: PLC0415
    from tests.fakes import FakeClock  # noqa: PLC0415
    settings = load_settings(None, server={"listen": ""}, telemetry={"enabled": False},
                             store={"path": str(tmp_path / "ess.db")},
                             alerts={"urls": [receiver.url], **FAST})
    first = build(settings, clock=FakeClock())  # its alerts never start: as if killed
    first.guard.trigger(Trigger(GLOBAL, TriggerMode.HALT, "desk panic",
                                TriggerReason.USER_INITIATED,
                                (Directive.CANCEL_OPEN_ORDERS, Directive.FLATTEN_POSITIONS),
                                "alice"))
    first.journal.close()
    first.store.close()
    second = build(settings, clock=FakeClock())
    await second.alerts.start()
    try:
        (alert,) = await receiver.wait_for(1)
        assert alert["title"] == "ESS started with 1 scope(s) not ARMED"
        assert "GLOBAL TRIPPED since" in alert["message"]
        assert "'desk panic' by alice, directives: CANCEL_OPEN_ORDERS, FLATTEN_POSITIONS (v1)" \
            in alert["message"]
    finally:
        await second.alerts.stop(1.0)
        second.journal.close()
        second.store.close()



async def test_a_start_with_nothing_latched_alerts_nothing(
        sinks: Callable[..., AppriseAlertSink], receiver: Receiver) -> None:
    sink = sinks(receiver.url)
    outcomes = Outcomes(sink)
    sink.still_latched([])
    sink.notify([trip(1, "a")])
    await sink.start()
    await outcomes.until(lambda: sink.sent == 1)
    assert [b["title"] for b in receiver.bodies] == ["ESS STRATEGY:a TRIPPED"]


async def test_a_start_with_many_latched_lists_the_widest_stops_first_and_bounded(
        sinks: Callable[..., AppriseAlertSink], receiver: Receiver) -> None:
    """Review 49g: 300 symbols and GLOBAL latched made a 47,000-character alert (past what
    Slack, Telegram or PagerDuty take) with GLOBAL's line last."""
    symbols = [trip(v, f"S{v}") for v in range(1, 301)]
    halt = Transition(301, START, GLOBAL, State.TRIPPED, State.TRIPPED, Cause.TRIGGER,
                      "desk halt", "alice")
    sink = sinks(receiver.url)
    sink.still_latched([*symbols, halt])
    await sink.start()
    [alert] = await receiver.wait_for(1)
    assert alert["title"] == "ESS started with 301 scope(s) not ARMED"
    lines = alert["message"].splitlines()
    assert lines[1].startswith("GLOBAL TRIPPED") and "desk halt" in lines[1]
    assert lines[-1] == "... and 251 more: essctl status lists them"
    assert len(alert["message"]) < 20_000
