"""A command's durable write runs in the store's thread, not on the event loop: checks are
answered while a Trigger is being fsynced, and judged as if its trip were already applied.

The store here is the real SQLite store whose append waits at a gate the test opens, so a
write can be held "in the middle of its fsync" for as long as the test needs."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
from pathlib import Path
from collections.abc import Callable
from typing import Any

import grpc
import pytest

from ess.v1 import guard_pb2 as pb
from ess_sidecar.adapters.storage import sqlite as sqlite_store
from ess_sidecar.adapters.storage.journal import FileJournal
from ess_sidecar.adapters.storage.sqlite import SqliteStateStore
from ess_sidecar.domain.engine import GuardEngine
from ess_sidecar.domain.errors import StoreUnavailable
from ess_sidecar.recovery import replay
from tests.integration.conftest import ACCOUNT, STRATEGY, SYMBOL, Running, next_event, order, \
    strategy_scope, synced

GATE_TIMEOUT_S = 10.0  # the old design blocked the loop here: fail rather than hang


class GatedStore(SqliteStateStore):
    """Appends wait until the gate is open; `entered` is set once one is waiting."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.gate = threading.Event()
        self.gate.set()
        self.passes = threading.Semaphore(0)  # writes let through a closed gate
        self.entered = threading.Event()
        self.appended = threading.Event()

    def append(self, transitions: Any, prune: bool = True) -> None:
        self.entered.set()
        if not self.gate.is_set() and not self.passes.acquire(timeout=GATE_TIMEOUT_S):
            raise AssertionError("the gate was never opened: was the event loop blocked?")
        super().append(transitions, prune)
        self.appended.set()

    def let_one(self) -> None:
        """Let the write waiting at the closed gate (or the next one) through."""
        self.passes.release()

    def close_gate(self) -> None:
        self.gate.clear()
        self.passes = threading.Semaphore(0)
        self.entered.clear()
        self.appended.clear()

    def open_gate(self) -> None:
        self.gate.set()
        for _ in range(100):
            self.passes.release()

    async def wait_entered(self) -> None:
        assert await asyncio.to_thread(self.entered.wait, 5.0), "no write began"

    async def wait_appended(self) -> None:
        assert await asyncio.to_thread(self.appended.wait, 5.0), "the write did not end"


@pytest.fixture
async def gated(start_sidecar: Any, tmp_path: Path) -> tuple[Running, GatedStore]:
    store = GatedStore(tmp_path / "ess.db")
    running = await start_sidecar(state_store=store)
    # These tests place their commands, timer runs included, themselves.
    running.sidecar.parts.timers.stop()
    return running, store


def trigger(ident: str = STRATEGY) -> pb.TriggerRequest:
    return pb.TriggerRequest(scope=strategy_scope(ident), reason="off-loop test")


async def until(condition: Callable[[], bool], deadline_s: float = 5.0) -> None:
    """Until the in-process sidecar's state meets `condition` (polled on its loop)."""
    async with asyncio.timeout(deadline_s):
        while not condition():
            await asyncio.sleep(0.001)


def fill_of(checked: pb.CheckOrderRequest, fill_id: str) -> pb.ReportFillRequest:
    return pb.ReportFillRequest(
        account=checked.account, strategy=checked.strategy, symbol=checked.symbol,
        side=checked.side, quantity=checked.quantity, price=checked.price,
        client_order_id=checked.client_order_id, fill_id=fill_id)


async def trip_being_stored(running: Running, store: GatedStore,
                            ident: str = STRATEGY) -> asyncio.Future:
    """A Trigger whose write has begun and waits at the closed gate; its call."""
    store.close_gate()
    tripping = asyncio.ensure_future(running.stub.Trigger(trigger(ident), timeout=10))
    await store.wait_entered()
    return tripping


async def check(running: Running, **fields: Any) -> pb.CheckOrderResponse:
    return await running.stub.CheckOrder(order(**fields), timeout=5)


async def test_a_check_is_answered_while_a_trip_is_stored_and_the_trip_already_denies(
        gated: tuple[Running, GatedStore]) -> None:
    running, store = gated
    before = await running.version()
    tripping = await trip_being_stored(running, store)

    blocked = await check(running)
    assert not blocked.allowed
    assert blocked.reason == pb.DECISION_REASON_SCOPE_TRIPPED
    assert (await check(running, strategy="other")).allowed  # the loop is not waiting
    assert not tripping.done()  # not acknowledged before it is durable
    assert await running.version() == before  # nor shown as current

    store.open_gate()
    reply = await tripping
    assert reply.state == pb.STATE_TRIPPED and reply.state_version == before + 1
    assert not (await check(running)).allowed


async def test_a_reset_being_stored_allows_nothing_until_it_is_stored(
        gated: tuple[Running, GatedStore]) -> None:
    running, store = gated
    await running.stub.Trigger(trigger())
    store.close_gate()
    resetting = asyncio.ensure_future(running.stub.Reset(pb.ResetRequest(
        scope=strategy_scope(), reason="checked", force=True), timeout=10))
    await store.wait_entered()

    assert not (await check(running)).allowed

    store.open_gate()
    assert (await resetting).state == pb.STATE_ARMED
    assert (await check(running)).allowed


async def test_a_write_that_hangs_denies_every_check_until_it_ends_and_nothing_is_lost(
        gated: tuple[Running, GatedStore]) -> None:
    """Review 40b: a store write that hung (a frozen disk) held every command after it,
    a panic too, and every check after those, silently, until the callers' deadlines.
    Past `store_stall_s` GLOBAL is held tripped and the checks waiting are answered:
    denied. Review 40e: failed closed instead, the hung trip was stored under the
    fail-closed trip's version, and every later start failed closed. When the write
    ends, all goes on as if it had been slow: both trips are stored and acknowledged."""
    running, store = gated
    guard = running.app.guard
    guard.store_stall_s = 0.2
    before = await running.version()
    tripping = await trip_being_stored(running, store)
    panic = asyncio.ensure_future(running.stub.Trigger(pb.TriggerRequest(
        scope=pb.Scope(kind=pb.SCOPE_KIND_GLOBAL), reason="panic",
        directives=[pb.DIRECTIVE_CANCEL_OPEN_ORDERS]), timeout=10))
    await until(lambda: guard.unplanned > 0)  # the panic came, and waits for its turn
    waited = await check(running, strategy="other")  # would wait for the panic's plan
    assert (waited.allowed, waited.blocking_scope.kind) == (False, pb.SCOPE_KIND_GLOBAL)
    assert "has not finished in 0.2 s" in waited.message
    assert await running.version() == before  # nothing stored, published nor versioned
    store.open_gate()
    assert (await tripping).state_version == before + 1
    assert (await panic).state_version == before + 2
    stored = running.app.store.events_after(before, 10)
    assert [(t.scope.kind, t.version) for t in stored] == [
        (pb.SCOPE_KIND_STRATEGY, before + 1), (pb.SCOPE_KIND_GLOBAL, before + 2)]
    assert (await check(running, strategy="other")).blocking_scope.kind == \
        pb.SCOPE_KIND_GLOBAL  # the panic's trip, applied: no longer the stall's
    assert "panic" in (await check(running, strategy="other")).message


async def test_a_write_that_outlived_a_fail_closed_is_journaled_and_the_next_start_agrees(
        gated: tuple[Running, GatedStore], start_sidecar: Any, tmp_path: Path) -> None:
    """Review 40e: a trip stored while the sidecar failed closed (a fault of ours, here)
    lost its version to the fail-closed trip and was not journaled; the journal went on
    recording after it, and every later start found journal and store disagree."""
    running, store = gated
    tripping = await trip_being_stored(running, store)
    running.app.guard.internal_fault("a test", RuntimeError("a bug"))
    store.open_gate()
    with pytest.raises(grpc.aio.AioRpcError) as failed:
        await tripping
    assert failed.value.code() == grpc.StatusCode.UNAVAILABLE
    await running.stub.Trigger(trigger("other"), timeout=5)  # recorded after it
    await running.sidecar.stop()
    again = await start_sidecar(state_store=SqliteStateStore(tmp_path / "ess.db"), sync=False)
    scopes = {s.scope.id: (s.state, s.cause)
              for s in (await again.stub.GetState(pb.GetStateRequest())).scopes}
    assert scopes == {STRATEGY: (pb.STATE_TRIPPED, pb.CAUSE_TRIGGER),
                      "other": (pb.STATE_TRIPPED, pb.CAUSE_TRIGGER)}


async def test_a_write_of_two_trips_that_outlived_a_fail_closed_clashes_with_nothing(
        gated: tuple[Running, GatedStore], start_sidecar: Any, tmp_path: Path) -> None:
    """Review 40f: a timer run tripping two lost heartbeats, stored after the fail-closed
    trip took the first one's version, left memory a version behind the store: every
    later stop clashed with the store's second trip and was refused until a restart. A
    watcher resuming from before it was replayed the store's transitions as if they were
    what it had been sent."""
    running, store = gated
    guard = running.app.guard
    for executor in ("s1", "s2"):
        await running.stub.Heartbeat(pb.HeartbeatRequest(
            executor_id=executor, scope=strategy_scope(executor), ttl_ms=1000))
    before = await running.version()
    store.close_gate()
    running.clock.advance(5)
    timers = asyncio.ensure_future(guard.run_timers_async(0.05))
    await store.wait_entered()
    guard.internal_fault("a test", RuntimeError("a bug"))
    store.open_gate()
    with pytest.raises(StoreUnavailable):
        await timers
    stopped = await running.stub.Trigger(trigger("stop"), timeout=5)  # no clash
    assert stopped.state_version == before + 3
    resumed = running.stub.WatchState(pb.WatchStateRequest(
        from_version=before + 1, epoch=guard.epoch))
    with pytest.raises(grpc.aio.AioRpcError) as resync:
        await resumed.read()
    assert resync.value.code() == grpc.StatusCode.OUT_OF_RANGE
    await running.sidecar.stop()
    again = await start_sidecar(state_store=SqliteStateStore(tmp_path / "ess.db"), sync=False)
    scopes = {s.scope.id for s in (await again.stub.GetState(pb.GetStateRequest())).scopes}
    assert scopes == {"s1", "s2", "stop"}


async def test_a_trip_whose_caller_gave_up_is_still_applied_and_the_next_one_follows(
        gated: tuple[Running, GatedStore]) -> None:
    running, store = gated
    before = await running.version()
    store.close_gate()
    with pytest.raises(grpc.aio.AioRpcError) as gave_up:
        await running.stub.Trigger(trigger(), timeout=0.2)
    assert gave_up.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert not (await check(running)).allowed  # held while it is written

    store.open_gate()
    await store.wait_appended()
    second = await running.stub.Trigger(trigger("other"), timeout=5)
    assert second.state_version == before + 2  # the first took before + 1: no clash
    assert not (await check(running)).allowed
    stored = running.app.store.events_after(before, 10)
    assert [(t.scope.id, t.version) for t in stored] == [(STRATEGY, before + 1),
                                                         ("other", before + 2)]


async def test_commands_are_stored_one_at_a_time_in_the_order_they_came(
        gated: tuple[Running, GatedStore]) -> None:
    running, store = gated
    before = await running.version()
    first = await trip_being_stored(running, store, "a")
    second = asyncio.ensure_future(running.stub.Trigger(trigger("b"), timeout=10))
    await until(lambda: running.app.guard.unplanned == 1)  # b waits for a's write
    store.open_gate()
    assert [(await first).state_version, (await second).state_version] == \
        [before + 1, before + 2]


async def test_a_check_that_comes_after_a_queued_trip_is_judged_after_it(
        gated: tuple[Running, GatedStore]) -> None:
    running, store = gated
    first = await trip_being_stored(running, store, "a")
    assert (await check(running, strategy="b")).allowed  # nothing about b yet
    second = asyncio.ensure_future(running.stub.Trigger(trigger("b"), timeout=10))
    await until(lambda: running.app.guard.unplanned == 1)
    checking = asyncio.ensure_future(check(running, strategy="b"))
    store.open_gate()  # a is stored, b planned (and held), then the check is judged
    assert not (await checking).allowed
    await first, await second


async def test_a_snapshot_after_a_fill_is_applied_after_it_even_while_a_trip_is_stored(
        gated: tuple[Running, GatedStore]) -> None:
    running, store = gated
    sell = order(side=pb.SIDE_SELL, quantity=10)
    buy = order(quantity=10)
    assert (await running.stub.CheckOrder(buy)).allowed
    await running.stub.ReportFill(fill_of(buy, "f-1"))  # long 10
    assert (await running.stub.CheckOrder(sell)).allowed
    tripping = await trip_being_stored(running, store, "a")
    filled = asyncio.ensure_future(running.stub.ReportFill(fill_of(sell, "f-2")))  # flat
    await until(lambda: running.app.guard.unplanned == 1)
    synced_flat = asyncio.ensure_future(running.stub.SyncPositions(synced()))  # flat too
    await until(lambda: running.app.guard.unplanned == 2)
    store.open_gate()
    await tripping, await filled, await synced_flat
    book = running.app.guard.engine.book.peek(ACCOUNT)
    assert book is not None and book.net(SYMBOL).position == 0  # not -10: in order


async def test_a_watcher_resuming_while_a_trip_is_stored_misses_nothing_and_sees_it_once(
        gated: tuple[Running, GatedStore]) -> None:
    running, store = gated
    start, epoch = await running.version(), await running.epoch()
    for ident in ("a", "b"):
        await running.stub.Trigger(trigger(ident))
    store.close_gate()
    tripping = asyncio.ensure_future(running.stub.Trigger(trigger("c"), timeout=10))
    await store.wait_entered()
    stream = running.stub.WatchState(pb.WatchStateRequest(from_version=start + 1,
                                                          epoch=epoch))
    await until(lambda: running.app.guard.watchers() == 1)  # its resume read waits
    store.open_gate()
    await tripping
    seen = [await next_event(stream) for _ in range(3)]
    assert [(m.kind, m.version) for m in seen] == [
        (pb.WATCH_EVENT_KIND_TRANSITION, start + 2),  # missed: read from the store
        (pb.WATCH_EVENT_KIND_SNAPSHOT_END, start + 2),
        (pb.WATCH_EVENT_KIND_TRANSITION, start + 3)]  # live: queued while it was read
    assert seen[2].scope.id == "c"
    stream.cancel()


async def test_audit_reads_wait_for_no_write_nor_the_loop_and_see_only_what_is_stored(
        gated: tuple[Running, GatedStore]) -> None:
    """Reads have a thread and a connection of their own (review 45b): one made while a
    trip is being stored is answered meanwhile, without it; once it is acknowledged, it
    is in every read."""
    running, store = gated
    before = await running.version()
    tripping = await trip_being_stored(running, store)
    listing = await running.stub.ListEvents(pb.ListEventsRequest(), timeout=5)
    assert [e.version for e in listing.events if e.version > before] == []  # not stored yet
    assert not (await check(running)).allowed  # answered while the write waits
    store.open_gate()
    await tripping
    events = (await running.stub.ListEvents(pb.ListEventsRequest(), timeout=5)).events
    assert events[0].version == before + 1  # newest first, and stored


async def test_a_check_waits_only_for_the_commands_that_came_before_it(
        gated: tuple[Running, GatedStore]) -> None:
    running, store = gated
    guard = running.app.guard
    first = await trip_being_stored(running, store, "a")
    second = asyncio.ensure_future(running.stub.Trigger(trigger("b"), timeout=10))
    await until(lambda: guard.unplanned == 1)
    checking = asyncio.ensure_future(check(running, strategy="c"))
    await until(lambda: guard.waiting_checks == 1)  # it waits for b's plan
    third = asyncio.ensure_future(running.stub.Trigger(trigger("d"), timeout=10))
    await until(lambda: guard.unplanned == 2)  # d came after the check
    store.let_one()  # a is stored, b planned (its write waits at the gate), d queued
    assert (await checking).allowed  # answered while d is still not planned
    assert guard.unplanned == 1
    store.open_gate()
    await first, await second, await third


async def test_a_timer_run_with_nothing_to_trip_never_makes_a_check_wait(
        gated: tuple[Running, GatedStore]) -> None:
    """Review 12: timers run every 100 ms, so with a write held (a slow disk, a locked
    database) one was always queued behind it, and every check waited for the write. A
    timer run with nothing to trip takes its turn when it comes, and is planned then."""
    running, store = gated
    guard = running.app.guard
    first = await trip_being_stored(running, store, "a")
    timers = asyncio.ensure_future(running.sidecar.parts.timers.tick_async())
    await until(lambda: guard.commands_in_flight == 2)  # the timer run waits its turn
    assert guard.unplanned == 0
    assert (await check(running, strategy="c")).allowed  # answered, the write still held
    assert not timers.done() and not first.done()
    store.open_gate()
    await first
    assert await timers == []


async def test_a_timer_run_that_would_trip_comes_before_the_checks_after_it(
        gated: tuple[Running, GatedStore]) -> None:
    """A lost heartbeat is never put off by a slow write while checks go on: the checks
    that come after the timer run wait for its trip, and are denied by it."""
    running, store = gated
    guard = running.app.guard
    await running.stub.Heartbeat(pb.HeartbeatRequest(
        executor_id="ex-1", scope=strategy_scope("h"), ttl_ms=2000))
    running.clock.advance(3)
    first = await trip_being_stored(running, store, "a")
    timers = asyncio.ensure_future(running.sidecar.parts.timers.tick_async())
    await until(lambda: guard.unplanned == 1)  # the timer run is in the order
    checking = asyncio.ensure_future(check(running, strategy="h"))
    await until(lambda: guard.waiting_checks == 1)
    store.open_gate()
    denied = await checking
    assert denied.reason == pb.DECISION_REASON_SCOPE_TRIPPED
    assert denied.blocking_scope == strategy_scope("h")
    await first
    [lost] = await timers
    assert lost.breaker == "heartbeat_lost"


async def test_a_heartbeat_lost_while_a_timer_run_waits_denies_the_checks_after_it(
        gated: tuple[Running, GatedStore]) -> None:
    """Review 13: the timer run queued with nothing to trip, and the heartbeat lapsed while
    it waited behind the write: checks went on, allowed. It looks again every interval,
    as the timers would have, and once it would trip, checks wait for its trip."""
    running, store = gated
    guard = running.app.guard
    await running.stub.Heartbeat(pb.HeartbeatRequest(
        executor_id="ex-1", scope=strategy_scope("h"), ttl_ms=2000))
    first = await trip_being_stored(running, store, "a")
    timers = asyncio.ensure_future(running.sidecar.parts.timers.tick_async())
    await until(lambda: guard.commands_in_flight == 2)
    assert guard.unplanned == 0  # nothing to trip yet
    running.clock.advance(3)
    await until(lambda: guard.unplanned == 1)  # it looked again: now it would trip
    checking = asyncio.ensure_future(check(running, strategy="h"))
    await until(lambda: guard.waiting_checks == 1)
    store.open_gate()
    assert (await checking).reason == pb.DECISION_REASON_SCOPE_TRIPPED
    await first
    [lost] = await timers
    assert lost.breaker == "heartbeat_lost"


async def test_a_latched_lost_heartbeat_does_not_make_every_timer_run_wait(
        gated: tuple[Running, GatedStore]) -> None:
    """Review 13: a scope latched by its lost heartbeat, whose executor beat once more and
    fell silent again, has nothing more to trip: its timer runs are not numbered, and
    checks go on."""
    running, store = gated
    guard = running.app.guard
    beat = pb.HeartbeatRequest(executor_id="ex-1", scope=strategy_scope("h"), ttl_ms=2000)
    await running.stub.Heartbeat(beat)
    running.clock.advance(3)
    [lost] = await running.sidecar.parts.timers.tick_async()
    assert lost.breaker == "heartbeat_lost"
    await running.stub.Heartbeat(beat)  # back, but the latch needs a reset
    running.clock.advance(3)
    assert await running.sidecar.parts.timers.tick_async() == []
    first = await trip_being_stored(running, store, "a")
    timers = asyncio.ensure_future(running.sidecar.parts.timers.tick_async())
    await until(lambda: guard.commands_in_flight == 2)
    assert guard.unplanned == 0
    assert (await check(running, strategy="c")).allowed
    store.open_gate()
    await first
    assert await timers == []


async def test_a_timer_run_that_forgets_and_trips_is_journaled_before_checks_it_let_by(
        start_sidecar: Any, tmp_path: Path) -> None:
    """Review 16: a timer run that forgot orders and tripped was journaled once its trip
    was stored, after the checks answered meanwhile. Here one of them reuses the id of an
    order the run forgot: replayed before the run, it took that order's place (and age),
    and the replay kept orders the run had forgotten. A restart must remember exactly
    what the running sidecar did."""
    store = GatedStore(tmp_path / "ess.db")
    running = await start_sidecar(state_store=store, limits={"order_id_retention_s": 10})
    running.sidecar.parts.timers.stop()
    guard = running.app.guard
    for coid in ("z", "w"):  # two orders that end, remembered for the retention
        assert (await check(running, client_order_id=coid)).allowed
        await running.stub.ReportOrderUpdate(pb.ReportOrderUpdateRequest(
            account=ACCOUNT, client_order_id=coid, status=pb.ORDER_STATUS_CANCELLED))
    await running.stub.Heartbeat(pb.HeartbeatRequest(
        executor_id="ex-1", scope=strategy_scope("h"), ttl_ms=2000))
    running.clock.advance(11)  # both past the retention, and the heartbeat lost
    store.close_gate()
    timers = asyncio.ensure_future(running.sidecar.parts.timers.tick_async())
    await store.wait_entered()  # it forgot z and w, and its trip is being stored
    assert (await check(running, client_order_id="z")).allowed  # z's id is free again
    store.open_gate()
    [lost] = await timers
    assert lost.breaker == "heartbeat_lost"

    restarted = GuardEngine(running.app.settings.guard_config())
    replay(restarted, FileJournal(running.app.journal.path, identity=None).load())
    assert list(restarted.orders.records) == list(guard.engine.orders.records) \
        == [(ACCOUNT, "z")]
    assert restarted.orders.exact(ACCOUNT, "z").working


async def test_a_trip_whose_caller_gave_up_while_it_queued_still_denies_what_came_after(
        gated: tuple[Running, GatedStore]) -> None:
    running, store = gated
    first = await trip_being_stored(running, store, "a")
    with pytest.raises(grpc.aio.AioRpcError):
        await running.stub.Trigger(trigger("b"), timeout=0.2)  # queued behind a's write
    checking = asyncio.ensure_future(check(running, strategy="b"))
    store.open_gate()
    assert not (await checking).allowed  # b came before the check: never dropped
    await first


async def test_stopping_waits_for_the_command_being_stored_before_the_store_closes(
        gated: tuple[Running, GatedStore]) -> None:
    running, store = gated
    before = await running.version()
    tripping = await trip_being_stored(running, store)
    stopping = asyncio.ensure_future(running.sidecar.stop())
    store.open_gate()
    await stopping
    assert (await tripping).state_version == before + 1  # acknowledged: so it is stored
    reopened = SqliteStateStore(store.path)
    try:
        assert [t.version for t in reopened.load().current] == [before + 1]
    finally:
        reopened.close()


class _Seen(logging.Handler):
    """Set once a record whose message holds `text` is logged (from any thread)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text, self.event = text, threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.event.set()


async def test_a_stop_waits_for_a_lock_another_process_holds_and_is_stored(
        start_sidecar: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Review 43b: with the state file locked past SQLite's busy timeout by another
    process (a tool's write, a backup), a Trigger was refused at once, and the restart
    that followed had forgotten it. It is tried again while the lock is held, denying its
    scope meanwhile, and answered once stored."""
    monkeypatch.setattr(sqlite_store, "BUSY_TIMEOUT_S", 0.2)
    running = await start_sidecar()
    running.sidecar.parts.timers.stop()
    tried_again = _Seen("the stop is tried again")
    logging.getLogger("ess_sidecar.service").addHandler(tried_again)
    other = sqlite3.connect(tmp_path / "ess.db", isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")  # another process's write lock on the file
        tripping = asyncio.ensure_future(running.stub.Trigger(trigger(), timeout=30))
        assert await asyncio.to_thread(tried_again.event.wait, 10.0), "never tried again"
        denied = await check(running)
        assert not denied.allowed  # by the stop held, or GLOBAL held once the write stalled
        assert denied.blocking_scope.kind in (pb.SCOPE_KIND_STRATEGY, pb.SCOPE_KIND_GLOBAL)
        other.rollback()  # the lock goes
        answer = await tripping
    finally:
        other.close()
        logging.getLogger("ess_sidecar.service").removeHandler(tried_again)
    assert answer.state == pb.STATE_TRIPPED
    [stored] = running.app.store.events_after(0, 10)
    assert (stored.scope.id, stored.version) == (STRATEGY, answer.state_version)
    after = await check(running, strategy="other")
    assert after.allowed  # not failed closed: the write was only slow


class GatedReads(SqliteStateStore):
    """Reads of the audit trail wait until `gate` is set; `entered` once one waits."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.gate, self.entered = threading.Event(), threading.Event()

    def events(self, query: Any) -> Any:
        self.entered.set()
        if not self.gate.wait(GATE_TIMEOUT_S):
            raise AssertionError("the gate was never opened")
        return super().events(query)


async def test_a_trigger_is_stored_and_acknowledged_while_an_audit_read_is_under_way(
        start_sidecar: Any, tmp_path: Path) -> None:
    """Reads had the writes' thread: 200 audit queries queued ahead of a Trigger kept it
    unacknowledged for over 30 s (review 45b). Reads have a thread of their own."""
    store = GatedReads(tmp_path / "ess.db")
    running = await start_sidecar(state_store=store)
    reading = asyncio.ensure_future(running.stub.ListEvents(pb.ListEventsRequest(),
                                                            timeout=GATE_TIMEOUT_S))
    assert await asyncio.to_thread(store.entered.wait, 5.0), "the read never began"
    reply = await running.stub.Trigger(trigger(), timeout=5)  # the read still held
    assert reply.state == pb.STATE_TRIPPED
    assert not reading.done()
    store.gate.set()
    assert [e.version for e in (await reading).events] == [reply.state_version]
