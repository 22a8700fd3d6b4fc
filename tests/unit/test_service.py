"""The service with fakes: persist before apply, fail closed, watchers without gaps."""

from __future__ import annotations

import asyncio
import itertools
import threading

import pytest

from ess_sidecar.adapters.storage.memory import InMemoryStateStore
from ess_sidecar.domain.commands import Trigger
from ess_sidecar.domain.config import GuardConfig, ResumePolicy
from ess_sidecar.domain.engine import GuardEngine
from ess_sidecar.domain.limits import LimitSettings
from ess_sidecar.domain.orders import Fill, Order, PositionSnapshot, Side
from ess_sidecar.domain.errors import CapacityExceeded, InvalidArgument, ResyncRequired, \
    ResetRefused, ShuttingDown, StoreUnavailable, SubscriberTooSlow
from ess_sidecar.domain.scopes import GLOBAL, Scope, ScopeKind
from ess_sidecar.domain.breakers import Metric
from ess_sidecar.domain.states import Cause, Directive, State, Transition, TriggerMode, \
    TriggerReason
from ess_sidecar.ports import EventQuery, NoAlerts, NoJournal
from ess_sidecar.recovery import latest_time
from ess_sidecar.service import CLOCK_MARK_S, MAX_EPOCH_LENGTH, Durable, Guard, store_epoch
from ess_sidecar.watch import Subscribers
from tests.fakes import FakeClock

MOMO = Scope(ScopeKind.STRATEGY, "momo")
GATE_TIMEOUT_S = 10.0  # a held write gives up rather than hang the test


def _waits_for(gate: threading.Event):  # noqa: ANN202
    """Steps of a command whose write waits (in the store's thread) until `gate` is set."""
    yield Durable(lambda: gate.wait(GATE_TIMEOUT_S))


def make_guard(queue_size: int = 16, epoch: str = "") -> tuple[Guard, InMemoryStateStore]:
    store = InMemoryStateStore()
    guard = Guard(GuardEngine(GuardConfig()), store, FakeClock(), Subscribers(queue_size),
                  epoch=epoch)
    return guard, store


def trigger(guard: Guard, scope: Scope = MOMO):  # noqa: ANN201
    return guard.trigger(Trigger(scope, TriggerMode.HALT, "stop", TriggerReason.USER_INITIATED, (),
                                 "alice"))


def test_a_trigger_is_stored_before_it_is_acknowledged() -> None:
    guard, store = make_guard()
    outcome = trigger(guard)
    assert (outcome.state, outcome.version, outcome.tripped) == (State.TRIPPED, 1, True)
    assert [t.scope for t in store.load().current] == [MOMO]


def test_a_beat_after_its_ttl_passed_trips_before_it_clears_the_loss() -> None:
    """Review of stop 32: a beat that came after the TTL, before the timers' next run,
    cleared the lapse, and the dead-man's switch never fired."""
    guard, store = make_guard()
    clock = guard._clock
    assert isinstance(clock, FakeClock)
    guard.heartbeat("exec-1", MOMO, 1.0)
    clock.advance(1.5)  # no timer ran meanwhile
    guard.heartbeat("exec-1", MOMO, 1.0)
    [lost] = store.load().current
    assert (lost.scope, lost.state, lost.breaker) == (MOMO, State.TRIPPED, "heartbeat_lost")
    clock.advance(0.5)  # beating again within its TTL: nothing more
    guard.heartbeat("exec-1", MOMO, 1.0)
    assert guard.run_timers() == [] and len(store.load().current) == 1


def test_a_tick_after_its_feed_went_stale_trips_before_it_freshens_the_feed() -> None:
    """Review 35: a data feed's tick that came after the feed's window (30 s), before the
    timers' next run, made the feed fresh again, and its staleness never tripped."""
    guard, store = make_guard()
    clock = guard._clock
    assert isinstance(clock, FakeClock)
    aapl = Scope(ScopeKind.SYMBOL, "AAPL")
    guard.report_metric(aapl, Metric.DATA_FEED_TICK, 1.0)
    clock.advance(30.5)  # no timer ran meanwhile
    guard.report_metric(aapl, Metric.DATA_FEED_TICK, 1.0)
    [stale] = store.load().current
    assert (stale.scope, stale.state, stale.breaker) == (aapl, State.TRIPPED, "data_feed_stale")
    clock.advance(10)  # ticking again within its window: nothing more
    guard.report_metric(aapl, Metric.DATA_FEED_TICK, 1.0)
    assert guard.run_timers() == [] and len(store.load().current) == 1


def test_feeds_first_ticked_are_stored_by_the_next_timer_run_in_one_write() -> None:
    """Known gap 21: the store keeps every feed that ticked, so that a start whose journal
    lacks the ticks still watches it (tests/integration/test_journal.py). Review 58d: each
    first tick was a write in its command's turn, and a burst of them held every command,
    a Trigger too, and the checks behind them, an fsync each."""
    guard, store = make_guard()
    aapl, msft, ibm = (Scope(ScopeKind.SYMBOL, s) for s in ("AAPL", "MSFT", "IBM"))
    appends = []
    store.save_feeds = lambda feeds, save=store.save_feeds: (appends.append(list(feeds)),
                                                              save(feeds))[1]
    for feed in (aapl, msft, aapl):
        guard.report_metric(feed, Metric.DATA_FEED_TICK, 1.0)
    guard.report_metric(ibm, Metric.OPEN_LOSS_PCT, 1.0)  # evidence, but no feed
    assert appends == [] and store.load().feeds == []
    guard.run_timers()
    assert appends == [[aapl, msft]] and store.load().feeds == [aapl, msft]
    guard.run_timers()
    guard.report_metric(aapl, Metric.DATA_FEED_TICK, 1.0)
    guard.run_timers()
    assert appends == [[aapl, msft]]  # known feeds: nothing more written
    store.close()  # a write now fails, and fails closed
    guard.report_metric(ibm, Metric.DATA_FEED_TICK, 1.0)
    with pytest.raises(StoreUnavailable):
        guard.run_timers()
    assert guard.engine.state_of(GLOBAL) is State.TRIPPED


def test_feeds_whose_write_failed_are_stored_with_the_next_or_at_the_stop() -> None:
    """Review 58f: a timer run's write of the feeds failed and dropped them: never stored,
    not even at the stop, so a journal lost later lost them (a dead feed never went
    stale). Not written again at each run: a store down would hold every command."""
    guard, store = make_guard()
    aapl, msft, ibm = (Scope(ScopeKind.SYMBOL, s) for s in ("AAPL", "MSFT", "IBM"))
    saved, failing = [], [True]

    def save_feeds(feeds, save=store.save_feeds) -> None:  # noqa: ANN001
        if failing.pop() if failing else False:
            raise StoreUnavailable("the state file is locked")
        saved.append(list(feeds))
        save(feeds)
    store.save_feeds = save_feeds
    guard.report_metric(aapl, Metric.DATA_FEED_TICK, 1.0)
    with pytest.raises(StoreUnavailable):
        guard.run_timers()
    guard.run_timers()
    assert saved == []  # no new feed: not tried again
    guard.report_metric(msft, Metric.DATA_FEED_TICK, 1.0)
    guard.run_timers()
    assert saved == [[aapl, msft]]
    failing.append(True)
    guard.report_metric(ibm, Metric.DATA_FEED_TICK, 1.0)
    with pytest.raises(StoreUnavailable):
        guard.run_timers()
    asyncio.run(guard.drain())
    assert saved[-1] == [ibm] and store.load().feeds == [aapl, msft, ibm]


def test_snapshots_in_flight_at_once_hold_at_most_one_full_snapshot_of_entries() -> None:
    """Review 35: 16 snapshots of 60,000 entries each, sent at once, were applied one after
    another, each in one piece, and held a Trigger 2.1 s. While snapshots are mapped or
    applied, another is let in only if all of them hold no more entries than one snapshot's
    three lists may; one alone always is."""
    guard, _ = make_guard()
    most = 3 * guard.engine.config.limits.max_snapshot_entries
    full = guard.snapshot_room(most)
    with pytest.raises(CapacityExceeded, match="send it again"):
        guard.snapshot_room(1)
    guard.snapshot_room(0)()  # equity alone, nothing listed
    full()
    halves = [guard.snapshot_room(most // 2), guard.snapshot_room(most // 2)]
    with pytest.raises(CapacityExceeded):
        guard.snapshot_room(1)
    for half in halves:
        half()
    guard.snapshot_room(most)()  # all of it given back


async def test_a_snapshot_whose_caller_gave_up_holds_its_room_until_it_is_applied() -> None:
    """Review 35 (of the first version): the room was given back when the caller left,
    while its snapshot stayed queued and was applied later, so callers that gave up and
    sent again piled snapshots up as before."""
    guard, _ = make_guard()
    most = 3 * guard.engine.config.limits.max_snapshot_entries
    ahead = threading.Event()

    async def trip_held() -> None:  # a command before the snapshot, not done yet
        await guard.run_async(_waits_for(ahead))
    first = asyncio.ensure_future(trip_held())
    await asyncio.sleep(0)
    room = guard.snapshot_room(most)
    caller = asyncio.ensure_future(guard.call_async(
        lambda: guard.sync_positions("acc-1", 1e6, []), finished=room))
    await asyncio.sleep(0)
    caller.cancel()  # the client's deadline
    with pytest.raises(asyncio.CancelledError):
        await caller
    with pytest.raises(CapacityExceeded):  # still queued: its room is still taken
        guard.snapshot_room(1)
    ahead.set()
    await asyncio.wait_for(first, 5)
    async with asyncio.timeout(5):
        while guard.engine.book.equity("acc-1") is None:  # applied, then the room freed
            await asyncio.sleep(0)
    guard.snapshot_room(most)()


def test_a_write_failure_trips_global_in_memory_and_is_not_acknowledged() -> None:
    guard, store = make_guard()
    store.fail_next_append = True
    with pytest.raises(StoreUnavailable):
        trigger(guard)
    assert guard.engine.state_of(GLOBAL) is State.TRIPPED
    assert not store.load().current  # nothing claims to be durable that is not


async def test_a_panic_whose_write_failed_still_tells_executors_to_cancel_and_flatten(
        ) -> None:
    """Review 35: on a full disk a panic (GLOBAL, cancel and flatten) failed to store, and
    the fail-closed trip that watchers saw halted with no directives: resting orders stayed
    live at the venue. The fail-closed trip carries the lost GLOBAL trip's directives."""
    guard, store = make_guard()
    watcher = guard.watch([], 0)
    store.fail_next_append = True
    panic = (Directive.CANCEL_OPEN_ORDERS, Directive.FLATTEN_POSITIONS)
    with pytest.raises(StoreUnavailable):
        guard.trigger(Trigger(GLOBAL, TriggerMode.HALT, "panic", TriggerReason.USER_INITIATED,
                              panic, "alice"))
    published = await watcher.subscription.next(timeout=1)
    assert published is not None and published.scope == GLOBAL
    assert (published.state, published.cause, published.directives) == (
        State.TRIPPED, Cause.SYSTEM, panic)
    assert guard.engine.current(GLOBAL).directives == panic  # GetState says so too


async def test_a_panic_stored_while_the_sidecar_failed_closed_still_gives_its_directives(
        ) -> None:
    """Review 36l: a reduce-only panic (cancel and flatten) was being written when a check
    allowed under it failed its journal record: the fail-closed trip took the panic's
    version, the panic's stored transition was dropped unpublished, and executors were
    told to halt but never to cancel or flatten."""
    class BreakingJournal(NoJournal):
        broken = False

        def record(self, command, transitions=()) -> None:  # noqa: ANN001
            if self.broken:
                raise StoreUnavailable("journal write failed: No space left on device")

    journal, entered, gate = BreakingJournal(), threading.Event(), threading.Event()
    store = InMemoryStateStore()
    guard = Guard(GuardEngine(GuardConfig()), store, FakeClock(), Subscribers(16),
                  journal=journal)
    guard.engine.sync_positions("acc-1", 1e6, [PositionSnapshot("momo", "AAPL", 10, 100)])
    watcher = guard.watch([], 0)
    append = store.append
    store.append = lambda transitions, prune=True: (
        entered.set(), gate.wait(GATE_TIMEOUT_S), append(transitions, prune))[2]
    panic = (Directive.CANCEL_OPEN_ORDERS, Directive.FLATTEN_POSITIONS)
    stored = asyncio.ensure_future(guard.run_async(guard.trigger_steps(Trigger(
        GLOBAL, TriggerMode.REDUCE_ONLY, "panic", TriggerReason.USER_INITIATED, panic,
        "alice"))))
    assert await asyncio.to_thread(entered.wait, GATE_TIMEOUT_S)  # held, its write waits
    journal.broken = True
    with pytest.raises(StoreUnavailable):  # reduces, so allowed: its record fails
        guard.check(Order("acc-1", "momo", "AAPL", Side.SELL, 5, 100, client_order_id="o-1"))
    gate.set()
    with pytest.raises(StoreUnavailable):
        await stored
    told = [await watcher.subscription.next(timeout=1) for _ in range(2)]
    assert [(t.scope, t.cause) for t in told] == [(GLOBAL, Cause.SYSTEM)] * 2
    assert told[-1].directives == panic
    assert guard.engine.current(GLOBAL).directives == panic


def test_a_trip_whose_write_failed_denies_after_global_is_reset_until_a_retry_stores_it(
        ) -> None:
    """Review 20: the breach's trip went with its write, so once the store worked again a
    reset of GLOBAL let the breached strategy trade, its breaker still over."""
    guard, store = make_guard()
    guard.engine.sync_positions("acc-1", 1e6, [PositionSnapshot("momo", "AAPL", 0, 100)])
    momo_order = Order("acc-1", "momo", "AAPL", Side.BUY, 1, 100, client_order_id="o-1")
    guard.report_metric(MOMO, Metric.DAILY_DRAWDOWN_PCT, 3.0)
    store.fail_next_append = True
    with pytest.raises(StoreUnavailable):
        guard.report_metric(MOMO, Metric.DAILY_DRAWDOWN_PCT, 7.0)  # threshold 5
    guard.reset(GLOBAL, "disk replaced", force=True, actor="alice")
    assert guard.engine.state_of(GLOBAL) is not State.TRIPPED
    denied = guard.check(momo_order)
    assert not denied.allowed and "daily_drawdown_pct" in denied.message
    assert guard.engine.state_of(MOMO) is State.ARMED  # nothing claims to be durable
    outcome = guard.report_metric(MOMO, Metric.DAILY_DRAWDOWN_PCT, 7.0)  # the retry
    assert outcome.tripped and [t.scope for t in store.load().current] == [MOMO]
    guard.reset(MOMO, "reviewed", force=True, actor="alice")
    guard._clock.advance(3600)  # noqa: SLF001 - the fake behind the port
    guard.run_timers()  # the re-arm delay
    assert guard.check(momo_order._replace(client_order_id="o-2")).allowed


def test_a_trip_whose_write_failed_outlasts_a_re_arm_and_a_fail_closed_trip() -> None:
    """Review 21: a durable re-arm of the scope (COOLING_DOWN to ARMED, planned over the
    lost trip, which plans do not see) ended it, and so did the fail-closed GLOBAL trip,
    not durable, of a lost GLOBAL trip: orders were allowed after each."""
    store = InMemoryStateStore()
    config = GuardConfig(policy={ScopeKind.STRATEGY: ResumePolicy(60, 600)})
    guard = Guard(GuardEngine(config), store, FakeClock(), Subscribers(16))
    guard.engine.sync_positions("acc-1", 1e6, [PositionSnapshot("momo", "AAPL", 0, 100)])
    orders = (Order("acc-1", "momo", "AAPL", Side.BUY, 1, 100, client_order_id=f"o-{i}")
              for i in itertools.count())
    guard.report_metric(MOMO, Metric.DAILY_DRAWDOWN_PCT, 7.0)  # stored
    guard.report_metric(MOMO, Metric.DAILY_DRAWDOWN_PCT, 3.0)
    guard._clock.advance(120)  # noqa: SLF001 - the fake behind the port
    guard.reset(MOMO, "recovered", force=False, actor="alice")  # COOLING_DOWN
    store.fail_next_append = True
    with pytest.raises(StoreUnavailable):  # its window passes before the re-arm: a held
        guard.report_metric(MOMO, Metric.API_ERROR, 3)  # breaker stops a re-arm (34h)
    guard.reset(GLOBAL, "disk replaced", force=True, actor="alice")
    guard._clock.advance(700)  # noqa: SLF001
    assert [(t.scope, t.state) for t in guard.run_timers()] == [(MOMO, State.ARMED)]
    assert not guard.check(next(orders)).allowed
    guard.report_metric(GLOBAL, Metric.DAILY_DRAWDOWN_PCT, 3.0)
    store.fail_next_append = True
    with pytest.raises(StoreUnavailable):
        guard.report_metric(GLOBAL, Metric.DAILY_DRAWDOWN_PCT, 7.0)
    with pytest.raises(ResetRefused, match="could not be recorded"):  # it denies on: the
        guard.reset(GLOBAL, "disk replaced", force=True, actor="alice")  # reset answered
    assert guard.check(next(orders)).blocking_scope == GLOBAL  # ARMED (review 40i)


def test_a_lost_trip_is_ended_by_its_own_latch_stored_not_by_another_breakers() -> None:
    """Review 22: a drawdown trip of the account, stored, ended the lost trip of an
    unchecked fill (as strict, another latch); once the drawdown recovered, a plain reset
    let the account trade, the unchecked fill never seen. The next timer run stores it
    (review 38d; before, the fill's retry did)."""
    guard, store = make_guard()
    account = Scope(ScopeKind.ACCOUNT, "acc-1")
    guard.engine.sync_positions("acc-1", 1e6, [PositionSnapshot("momo", "AAPL", 0, 100)])
    orders = (Order("acc-1", "momo", "AAPL", Side.BUY, 1, 100, client_order_id=f"o-{i}")
              for i in itertools.count())
    stray = Fill("acc-1", "momo", "AAPL", Side.BUY, 5, 100, "never-checked", "x-1")
    store.fail_next_append = True
    with pytest.raises(StoreUnavailable):
        guard.report_fill(stray)
    guard.reset(GLOBAL, "disk replaced", force=True, actor="alice")
    guard.report_metric(account, Metric.DAILY_DRAWDOWN_PCT, 7.0)  # stored: another latch
    guard.report_metric(account, Metric.DAILY_DRAWDOWN_PCT, 1.0)
    guard._clock.advance(3600)  # noqa: SLF001 - the fake behind the port
    with pytest.raises(ResetRefused, match="could not be recorded"):  # it denies on: the
        guard.reset(account, "drawdown recovered", force=False, actor="alice")  # reset
    assert not guard.check(next(orders)).allowed  # answered ARMED (review 40i)
    guard._clock.advance(3600)  # noqa: SLF001
    guard.run_timers()  # the fill's trip, owed, stored (review 38d)
    assert [t.breaker for t in store.load().current] == ["unchecked_order"]
    assert guard.report_fill(stray).fill.duplicate
    guard._clock.advance(3600)  # noqa: SLF001 - its reset cooldown
    guard.reset(account, "stray fill reviewed", force=False, actor="alice")
    guard._clock.advance(3600)  # noqa: SLF001
    guard.run_timers()
    assert guard.check(next(orders)).allowed


def test_each_latch_of_a_scope_whose_write_failed_denies_until_it_is_stored() -> None:
    """Review 41a: a second trip of a scope whose write failed took the first's place
    among the lost trips: a corrupt feed's HALT, then a REDUCE_ONLY stop, both unstored,
    and after GLOBAL's reset the account sold; with the stop sent again and stored, its
    reset let the account buy."""
    guard, store = make_guard()
    account = Scope(ScopeKind.ACCOUNT, "acc-1")
    guard.engine.sync_positions("acc-1", 1e6, [PositionSnapshot("momo", "AAPL", 10, 100)])
    orders = (Order("acc-1", "momo", "AAPL", side, 1, 100, client_order_id=f"o-{i}")
              for i, side in enumerate(itertools.cycle((Side.SELL, Side.BUY))))
    stop = Trigger(account, TriggerMode.REDUCE_ONLY, "desk", TriggerReason.USER_INITIATED,
                   (), "alice")
    for report in (lambda: guard.report_metric(account, Metric.DATA_FEED_CORRUPT, 1),
                   lambda: guard.trigger(stop)):
        store.fail_next_append = True
        with pytest.raises(StoreUnavailable):
            report()
    guard.reset(GLOBAL, "disk replaced", force=True, actor="alice")
    assert [t.state for t in guard.engine.lost()] == [State.TRIPPED]
    assert not any(guard.check(next(orders)).allowed for _ in range(2))
    guard.trigger(stop)  # stored: its latch is no longer lost, the HALT's is
    with pytest.raises(ResetRefused, match="data feed reported corrupt"):
        guard.reset(account, "reviewed", force=True, actor="alice")
    assert not any(guard.check(next(orders)).allowed for _ in range(2))
    guard.report_metric(account, Metric.DATA_FEED_CORRUPT, 1)  # sent again: stored
    assert guard.engine.lost() == []
    guard.reset(account, "reviewed", force=True, actor="alice")
    guard._clock.advance(3600)  # noqa: SLF001 - the fake behind the port
    guard.run_timers()
    assert guard.check(next(orders)).allowed


def test_a_renewal_whose_write_failed_is_owed_and_a_reset_naming_the_version_before_refused(
        ) -> None:
    """Review 41f: a corrupt feed reported again after the latch's cooldown renews it; its
    write failed, memory held the latch, and nothing kept the new evidence: once GLOBAL
    was reset, a reset naming the version seen before it, not forced, lifted the latch.
    The renewal is owed now, as one within the latch's second is."""
    guard, store = make_guard()
    account = Scope(ScopeKind.ACCOUNT, "acc-1")
    guard.report_metric(account, Metric.DATA_FEED_CORRUPT, 1)
    seen = guard.engine.current(account).version
    guard._clock.advance(1000)  # noqa: SLF001 - past its cooldown
    store.fail_next_append = True
    with pytest.raises(StoreUnavailable):
        guard.report_metric(account, Metric.DATA_FEED_CORRUPT, 1)
    guard.reset(GLOBAL, "disk replaced", force=True, actor="alice")
    with pytest.raises(ResetRefused, match="new evidence for data_feed_corrupt"):
        guard.reset(account, "feed fixed", force=False, actor="alice", expected_version=seen)
    [renewed] = guard.run_timers()
    assert renewed.scope == account and renewed.version > seen
    with pytest.raises(ResetRefused, match="cooldown"):  # counted from the renewal
        guard.reset(account, "feed fixed", force=False, actor="alice")


@pytest.mark.parametrize("stopped_after", [True, False])
def test_a_drills_trip_whose_write_failed_is_lifted_by_a_reset(stopped_after: bool) -> None:
    """Review 41f: a drill's trip that failed to store denied its scope, and a real stop
    after it holds no drill latch, nor can a drill be sent again: every reset of the
    scope was refused until a restart. A drill's latch lifts at once: a reset lifts its
    lost trip too, stored as one (review 41h: on a scope nothing else restricted, the
    reset planned nothing, answered ARMED, and the drill's trip went on denying)."""
    guard, store = make_guard()
    guard.engine.sync_positions("acc-1", 1e6, [PositionSnapshot("momo", "AAPL", 0, 100)])
    drill = Trigger(MOMO, TriggerMode.HALT, "drill", TriggerReason.USER_INITIATED, (),
                    "alice", drill=True)
    store.fail_next_append = True
    with pytest.raises(StoreUnavailable):
        guard.trigger(drill)
    guard.reset(GLOBAL, "disk replaced", force=True, actor="alice")
    if stopped_after:
        trigger(guard)
    assert guard.reset(MOMO, "reviewed", force=True, actor="alice").state is State.ARMED
    assert guard.engine.lost() == []
    assert store.load().current == [] and [t.cause for t in store.events(EventQuery(
        scope=MOMO, limit=1))] == [Cause.RESET]
    assert guard.check(Order("acc-1", "momo", "AAPL", Side.BUY, 1, 100,
                             client_order_id="after")).allowed


def test_a_lost_trip_is_logged_once_however_often_its_retry_fails(
        caplog: pytest.LogCaptureFixture) -> None:
    """Review 42a: on a full disk, each timer run retried a lost heartbeat's trip and
    logged it again (ten lines a second per scope, filling the logs' disk too). Logged
    when it is first lost, or lost stricter."""
    guard, store = make_guard()
    stray = Fill("acc-1", "momo", "AAPL", Side.BUY, 5, 100, "never-checked", "x-1")
    for _ in range(3):
        store.fail_next_append = True
        with pytest.raises(StoreUnavailable):
            guard.report_fill(stray)  # the retry plans the trip again
    assert [r.getMessage() for r in caplog.records].count(
        "trip not stored: it denies checks until what tripped it is sent again and stored,"
        " or the sidecar restarts") == 1
    assert guard.report_fill(stray).fill.unchecked  # stored at last
    assert [t.breaker for t in store.load().current] == ["unchecked_order"]


def test_a_journal_failed_unasked_fails_closed_at_the_next_report_or_timer_run() -> None:
    """Review 42d: a journal whose syncer stalled or died is failed without any record
    failing; reports were refused from then on, but nothing failed closed: the sidecar
    showed ARMED, with no alert, and an unchecked fill tripped nothing."""
    class Stalled(NoJournal):
        failed = False

    for first in ("report", "timers"):
        journal = Stalled()
        guard = Guard(GuardEngine(GuardConfig()), InMemoryStateStore(), FakeClock(),
                      Subscribers(16), journal=journal)
        journal.failed = True  # its syncer stalled: no record was asked for
        if first == "report":
            with pytest.raises(StoreUnavailable, match="until the sidecar restarts"):
                guard.report_metric(MOMO, Metric.API_ERROR, 1)
        else:
            guard.run_timers()
        assert guard.engine.state_of(GLOBAL) is State.TRIPPED, first
        assert "journal failed" in guard.engine.current(GLOBAL).reason


def test_timers_still_trip_a_lost_executor_once_the_journal_failed() -> None:
    """Review 49g: once the journal had failed, each timer run's clock record was refused
    before it planned anything: a dead executor was never tripped, shown nor alerted."""
    class Failing(NoJournal):
        failed = False

        def record(self, command, transitions=()) -> None:  # noqa: ANN001
            if self.failed:
                raise StoreUnavailable("journal write failed: EIO")

        def sync(self) -> None:
            if self.failed:
                raise StoreUnavailable("journal cannot be synced: EIO")

    journal, clock = Failing(), FakeClock()
    guard = Guard(GuardEngine(GuardConfig()), InMemoryStateStore(), clock, Subscribers(16),
                  journal=journal)
    guard.heartbeat("ex-1", MOMO, 1.0)
    journal.failed = True
    guard.run_timers()  # finds the journal failed: GLOBAL fails closed
    clock.advance(2.0)
    with pytest.raises(StoreUnavailable):  # the loss is planned, its write refused
        guard.run_timers()
    assert guard.engine.denying_state(MOMO) is State.TRIPPED
    assert MOMO in [view.current.scope for view in guard.scope_views()]


def test_each_unchecked_fill_is_logged_though_its_trip_is_not_stored(
        caplog: pytest.LogCaptureFixture) -> None:
    """Review 42d: the warning came after the trip's write, so a second unchecked fill
    whose trip failed to store (its latch lost already) left no line at all."""
    guard, store = make_guard()
    for fill_id, quantity in (("x-1", 5), ("x-2", 500)):
        store.fail_next_append = True
        with pytest.raises(StoreUnavailable):
            guard.report_fill(Fill("acc-1", "momo", "AAPL", Side.BUY, quantity, 100,
                                   f"never-{fill_id}", fill_id))
    said = [r.reason for r in caplog.records if r.getMessage() == "unchecked fill"]
    assert len(said) == 2 and "never-x-2" in said[1]


@pytest.mark.parametrize("drill_first", [True, False])
def test_a_drills_trip_not_stored_never_masks_a_real_one(drill_first: bool) -> None:
    """Review 42m: a drill's trip and a real one, both not stored: GetState showed the
    drill's, with a reset time, and the refused reset named the drill, the real trip
    nowhere. A reset time is shown only where a reset lifts every trip not stored."""
    guard, store = make_guard()
    drill = Trigger(MOMO, TriggerMode.HALT, "quarterly drill", TriggerReason.USER_INITIATED,
                    (), "alice", drill=True)
    real = Trigger(MOMO, TriggerMode.REDUCE_ONLY, "venue fault", TriggerReason.USER_INITIATED,
                   (), "alice")
    for stop in (drill, real) if drill_first else (real, drill):
        store.fail_next_append = True
        with pytest.raises(StoreUnavailable):
            guard.trigger(stop)
    (view,) = [v for v in guard.scope_views() if v.current.scope == MOMO]
    assert view.reset_allowed_at is None
    # Review 43a: and the trip shown is the real one, in the drill's stricter state
    assert view.unstored is not None and not view.unstored.drill
    assert (view.unstored.reason, view.unstored.state) == ("venue fault", State.TRIPPED)
    with pytest.raises(ResetRefused, match="venue fault"):
        guard.reset(MOMO, "drill over", force=True, actor="bob")


def test_a_trip_the_scope_holds_durably_already_is_not_lost() -> None:
    """Review 22: a Trigger of a scope an operator had halted, whose write failed, was held
    as lost; a reset then answered ARMED while checks were still denied."""
    guard, store = make_guard()
    trigger(guard)
    store.fail_next_append = True
    with pytest.raises(StoreUnavailable):
        guard.trigger(Trigger(MOMO, TriggerMode.HALT, "again", TriggerReason.USER_INITIATED,
                              (Directive(1),), "alice"))  # new directives: a transition
    assert not guard.engine._lost  # noqa: SLF001 - nothing a restart would not keep


def test_a_reset_whose_write_failed_is_no_lost_trip_even_if_its_scope_stays_tripped(
        ) -> None:
    """A reset of one latch of two leaves the scope TRIPPED; its failed write loosens
    nothing, and must not be held as a trip that nothing would ever end."""
    guard, store = make_guard()
    trigger(guard)
    guard.report_metric(MOMO, Metric.DAILY_DRAWDOWN_PCT, 7.0)  # a second latch
    store.fail_next_append = True
    with pytest.raises(StoreUnavailable):
        guard.reset(MOMO, "operator's halt reviewed", force=True, actor="alice",
                    latches=["trigger"])
    assert not guard.engine._lost  # noqa: SLF001


def test_a_fill_the_book_cannot_hold_is_invalid_and_its_trip_is_stored() -> None:
    guard, store = make_guard()
    guard.engine.sync_positions("acc-1", 1e6, [PositionSnapshot("momo", "AAPL", 9e11, 1)])
    with pytest.raises(InvalidArgument, match="quantity: fill f-1 would take the position"):
        guard.report_fill(Fill("acc-1", "momo", "AAPL", Side.BUY, 5e11, 1, "stray", "f-1"))
    assert [(t.scope.id, t.breaker) for t in store.load().current] == \
        [("acc-1", "unchecked_order")]
    assert guard.engine.book.position("acc-1", "momo", "AAPL") == 9e11


def test_a_reset_that_cannot_be_stored_does_not_resume() -> None:
    guard, store = make_guard()
    trigger(guard)
    store.fail_next_append = True
    with pytest.raises(StoreUnavailable):
        guard.reset(MOMO, "go", force=True, actor="alice")
    assert guard.engine.state_of(MOMO) is State.TRIPPED


async def test_watch_start_and_subscription_leave_no_gap() -> None:
    guard, _ = make_guard()
    trigger(guard, Scope(ScopeKind.STRATEGY, "a"))
    start = guard.watch([], from_version=0)
    trigger(guard, Scope(ScopeKind.STRATEGY, "b"))
    assert [t.version for t in start.initial] == [1] and start.version == 1
    assert (await start.subscription.next(timeout=1)).version == 2


async def test_slow_watcher_gets_what_was_queued_then_a_resync_error() -> None:
    guard, _ = make_guard(queue_size=2)
    start = guard.watch([], from_version=0)
    for ident in ("a", "b", "c"):
        trigger(guard, Scope(ScopeKind.STRATEGY, ident))
    assert len(guard.subscribers) == 0  # cut off: publishing no longer waits on it
    assert [(await start.subscription.next(1)).version for _ in range(2)] == [1, 2]
    with pytest.raises(SubscriberTooSlow, match="from_version=2"):
        await start.subscription.next(timeout=1)


async def test_other_watchers_are_not_held_back_by_a_slow_one() -> None:
    guard, _ = make_guard(queue_size=2)
    slow = guard.watch([], from_version=0).subscription
    fast = guard.watch([], from_version=0).subscription
    for ident in ("a", "b", "c", "d"):
        trigger(guard, Scope(ScopeKind.STRATEGY, ident))
        assert (await fast.next(timeout=1)).scope.id == ident
    with pytest.raises(SubscriberTooSlow):
        for _ in range(3):
            await slow.next(timeout=1)


async def test_watch_times_out_to_a_heartbeat_and_ends_on_close() -> None:
    guard, _ = make_guard()
    subscription = guard.watch([], from_version=0).subscription
    assert await subscription.next(timeout=0.001) is None
    guard.subscribers.close_all()
    with pytest.raises(ShuttingDown):
        await asyncio.wait_for(subscription.next(timeout=5), 5)


def test_resume_from_a_future_version_requires_resync() -> None:
    guard, _ = make_guard()
    with pytest.raises(ResyncRequired):
        guard.watch([], from_version=5)


def test_replay_that_ends_short_of_the_current_version_requires_resync() -> None:
    guard, store = make_guard()
    trigger(guard, Scope(ScopeKind.STRATEGY, "a"))
    store.fail_next_append = True
    with pytest.raises(StoreUnavailable):
        trigger(guard, Scope(ScopeKind.STRATEGY, "b"))  # GLOBAL now tripped, in memory only
    with pytest.raises(ResyncRequired):
        guard.watch([], from_version=1)


def test_any_store_exception_fails_closed_as_unavailable() -> None:
    guard, store = make_guard()
    other_writer = Transition(version=5, time=0.0, scope=MOMO, previous=State.ARMED,
                              state=State.TRIPPED, cause=Cause.TRIGGER, reason="", actor="")
    store.append([other_writer])  # versions now clash: the store raises ValueError
    with pytest.raises(StoreUnavailable):
        trigger(guard, Scope(ScopeKind.STRATEGY, "a"))
    assert guard.engine.state_of(GLOBAL) is State.TRIPPED


def test_a_stale_feed_whose_trip_could_not_be_stored_trips_once_the_store_is_back() -> None:
    guard, store = make_guard()
    clock = guard._clock  # noqa: SLF001 - the fake behind the port
    guard.report_metric(MOMO, Metric.DATA_FEED_TICK, 0)
    clock.advance(31)
    store.fail_next_append = True
    with pytest.raises(StoreUnavailable):
        guard.run_timers()
    clock.advance(15 * 60)
    guard.reset(GLOBAL, "store repaired", force=False, actor="alice")
    (trip,) = guard.run_timers()
    assert (trip.scope, trip.breaker) == (MOMO, "data_feed_stale")


def test_a_watcher_resuming_across_a_non_durable_version_must_resync() -> None:
    guard, store = make_guard()
    trigger(guard, Scope(ScopeKind.STRATEGY, "a"))
    store.fail_next_append = True
    with pytest.raises(StoreUnavailable):
        trigger(guard, Scope(ScopeKind.STRATEGY, "b"))  # shown as v2, GLOBAL v3: memory
    assert guard.epoch
    with pytest.raises(ResyncRequired, match="epoch"):
        guard.watch([], from_version=1, epoch="")  # saw v1 before the failure
    assert guard.watch([], from_version=3, epoch=guard.epoch).version == 3
    # Review 37h: a watcher of one scope saw v1, then only heartbeats, which carry the
    # new epoch: the store's v2 (what failed) is not what memory took under that version.
    with pytest.raises(ResyncRequired, match="from before epoch"):
        guard.watch([], from_version=1, epoch=guard.epoch)


def test_after_a_restart_versions_seen_only_in_memory_are_not_trusted() -> None:
    guard, store = make_guard()
    trigger(guard, Scope(ScopeKind.STRATEGY, "a"))
    store.fail_next_append = True
    with pytest.raises(StoreUnavailable):
        trigger(guard, Scope(ScopeKind.STRATEGY, "b"))
    volatile = guard.epoch
    restarted = Guard(GuardEngine(GuardConfig()), store, FakeClock(), Subscribers(16))
    stored = store.load()
    restarted.engine.restore(stored.current, stored.version, 0.0)
    trigger(restarted, Scope(ScopeKind.STRATEGY, "c"))  # takes version 2 again
    with pytest.raises(ResyncRequired):
        restarted.watch([], from_version=2, epoch=volatile)
    assert [t.scope.id for t in restarted.watch([], from_version=1, epoch="").initial] == ["c"]


def test_a_reset_naming_a_version_shown_before_a_restart_in_another_epoch_lifts_nothing(
        ) -> None:
    """Review 54c: a sidecar whose store failed showed GLOBAL's fail-closed trip at v2;
    restarted, it stored another operator's halt as v2, and a reset naming v2 lifted that
    halt. The version names a transition only with its epoch."""
    guard, store = make_guard()
    trigger(guard, Scope(ScopeKind.STRATEGY, "a"))
    store.fail_next_append = True
    with pytest.raises(StoreUnavailable):
        trigger(guard, Scope(ScopeKind.STRATEGY, "b"))  # v2, lost; GLOBAL v3
    (shown,) = [view for view in guard.scope_views() if view.current.scope == GLOBAL]
    assert (shown.current.version, shown.epoch) == (3, guard.epoch) and guard.epoch
    restarted = Guard(GuardEngine(GuardConfig()), store, FakeClock(), Subscribers(16))
    stored = store.load()
    restarted.engine.restore(stored.current, stored.version, 0.0)
    trigger(restarted, Scope(ScopeKind.STRATEGY, "b"))  # v2 again
    trigger(restarted, GLOBAL)  # another operator's halt: version 3 again
    halt = restarted.engine.current(GLOBAL)
    with pytest.raises(ResetRefused, match="version 3 was not sent with the epoch this"):
        restarted.reset(GLOBAL, "disk freed", force=True, actor="alice", expected_version=3,
                        expected_epoch=shown.epoch)
    assert restarted.engine.current(GLOBAL) == halt
    # Within one epoch the pair names what was shown, in either process.
    (view,) = [v for v in restarted.scope_views() if v.current.scope == GLOBAL]
    assert view.epoch == ""
    assert restarted.reset(GLOBAL, "looked", force=True, actor="alice", expected_version=3,
                           expected_epoch=view.epoch).state is State.ARMED


def test_a_trip_not_stored_under_a_system_latch_is_told_in_a_new_epoch_and_numbered_past(
        ) -> None:
    """Review 54d: GLOBAL latched by the system already (the evidence cap, a reseal), the
    fail-closed trip is no transition: a lost trip was shown at v2 in epoch "", and the
    next trip stored took v2, in the same process and after a restart; a reset naming
    what had been shown lifted it."""
    account = Scope(ScopeKind.ACCOUNT, "b")
    for restart in (False, True):
        store, clock = InMemoryStateStore(), FakeClock()
        guard = Guard(GuardEngine(GuardConfig()), store, clock, Subscribers(16))
        plan = guard.engine.plan(clock.now())
        plan.trip(GLOBAL, TriggerMode.HALT, Cause.SYSTEM, "evidence cap", "ess-sidecar")
        store.append(plan.transitions)
        guard.engine.apply(plan.transitions)
        store.fail_next_append = True
        with pytest.raises(StoreUnavailable):
            trigger(guard, account)  # "fat-finger, fine to resume"
        (shown,) = [v for v in guard.scope_views() if v.current.scope == account]
        assert (shown.current.version, shown.epoch) == (2, guard.epoch) and guard.epoch
        if restart:
            guard = Guard(GuardEngine(GuardConfig()), store, FakeClock(), Subscribers(16))
            stored = store.load()
            guard.engine.restore(stored.current, stored.version, 0.0)
        trigger(guard, account)  # another operator's halt, never seen
        assert guard.engine.current(account).version == (2 if restart else 3)
        with pytest.raises(ResetRefused):
            guard.reset(account, "fat-finger", force=True, actor="alice",
                        expected_version=2, expected_epoch=shown.epoch)
        assert guard.engine.denying_state(account) is State.TRIPPED


def test_a_lost_trip_retried_each_timer_run_keeps_its_version_and_takes_none() -> None:
    """Review 54f: a lost executor's trip retried by every timer run on a full disk took
    the lost trip's place and a new version each run (ten a second), and
    `store.keep_events`, counted in versions, then pruned the history before the outage.
    The trip shown keeps its version; a retry as strict takes none."""
    store, clock = InMemoryStateStore(), FakeClock()
    guard = Guard(GuardEngine(GuardConfig()), store, clock, Subscribers(16))
    guard.heartbeat("exec-1", MOMO, 1.0)
    clock.advance(2)
    shown = []
    for _ in range(5):  # the disk stays full
        store.fail_next_append = True
        with pytest.raises(StoreUnavailable):
            guard.run_timers()
        (view,) = [v for v in guard.scope_views() if v.current.scope == MOMO]
        shown.append((view.current.version, view.epoch, guard.engine.version))
        clock.advance(0.1)
    assert shown == [shown[0]] * 5 and shown[0][:2] == (1, guard.epoch)
    assert guard.engine.version == 2  # the lost trip's 1, GLOBAL's fail-closed trip 2
    (retried,) = guard.run_timers()  # the disk freed: stored
    assert (retried.scope, retried.version) == (MOMO, 3)


def test_a_version_told_by_a_watch_snapshot_in_this_epoch_is_reset(
        ) -> None:
    """Review 54d: a WatchState snapshot tells every version in the epoch of the version it
    brings the watcher to: a trip stored before the process failed closed came in the
    volatile epoch, and its reset with that pair was refused in the same process."""
    guard, store = make_guard()
    account = Scope(ScopeKind.ACCOUNT, "a")
    trigger(guard, account)  # v1, stored
    store.fail_next_append = True
    with pytest.raises(StoreUnavailable):
        trigger(guard, Scope(ScopeKind.STRATEGY, "b"))
    assert guard.epoch_of(1) == "" and guard.epoch
    assert guard.reset(account, "looked", force=True, actor="alice", expected_version=1,
                       expected_epoch=guard.epoch).state is State.ARMED


ONE_STORE, ANOTHER_STORE = bytes(range(16)), bytes(range(1, 17))  # their identities


def test_a_stores_epoch_is_its_own_every_start_and_none_without_an_identity() -> None:
    one = store_epoch(ONE_STORE)
    assert one.startswith("store-") and one == store_epoch(bytes(range(16)))
    assert store_epoch(ANOTHER_STORE).startswith("store-") and store_epoch(ANOTHER_STORE) != one
    assert ONE_STORE.hex() not in one and len(one) <= MAX_EPOCH_LENGTH  # the journal's seed
    assert store_epoch(bytes(16)) == store_epoch(None) == ""  # in memory, or made before
    resealed = store_epoch(ONE_STORE, "00112233445566aa")  # a reseal that lost versions
    assert resealed.startswith("store-") and resealed not in (one, store_epoch(ANOTHER_STORE))
    assert store_epoch(bytes(16), "00112233445566aa").startswith("store-")


def test_a_watcher_or_a_reset_naming_another_stores_version_is_told_apart() -> None:
    """Known gap 23 (review 56c): state files made anew number from 1 again, so a watcher
    that saw version 2 of the lost files resumed into the new ones' history, unaware of
    their first two trips, and a reset naming the version an operator had looked at lifted
    the new files' trip of that number."""
    old, _ = make_guard(epoch=store_epoch(ONE_STORE))
    trigger(old, MOMO)  # v1: what an operator looks at
    trigger(old, Scope(ScopeKind.SYMBOL, "A"))  # v2: the last a watcher saw
    (shown,) = [view for view in old.scope_views() if view.current.scope == MOMO]
    assert (shown.current.version, shown.epoch) == (1, store_epoch(ONE_STORE))
    new, _ = make_guard(epoch=store_epoch(ANOTHER_STORE))  # the files lost, made anew
    for scope in (MOMO, Scope(ScopeKind.SYMBOL, "B"), Scope(ScopeKind.SYMBOL, "C")):
        trigger(new, scope)
    for epoch in (shown.epoch, ""):  # "": an older client's, or one that never echoed it
        with pytest.raises(ResyncRequired, match="or was another state file's"):
            new.watch([], from_version=2, epoch=epoch)
    resumed = new.watch([], from_version=2, epoch=store_epoch(ANOTHER_STORE))
    assert [t.scope.id for t in resumed.initial] == ["C"] and not resumed.is_snapshot
    for epoch in (shown.epoch, ""):
        with pytest.raises(ResetRefused, match="state files made anew, or resealed after"):
            new.reset(MOMO, "the fat finger I saw", force=True, actor="alice",
                      expected_version=1, expected_epoch=epoch)
    assert new.engine.denying_state(MOMO) is State.TRIPPED
    (now,) = [view for view in new.scope_views() if view.current.scope == MOMO]
    assert now.epoch == new.epoch_of(1) == store_epoch(ANOTHER_STORE)
    assert new.reset(MOMO, "looked again", force=True, actor="alice", expected_version=1,
                     expected_epoch=now.epoch).state is State.ARMED


def test_a_stores_epoch_gives_way_to_a_volatile_one_where_a_version_was_not_stored(
        ) -> None:
    """What a store numbered is told in its epoch; from the first version it did not hold,
    in this process's own (review 36f), as when the store had none."""
    durable = store_epoch(ONE_STORE)
    guard, store = make_guard(epoch=durable)
    account = Scope(ScopeKind.ACCOUNT, "a")
    trigger(guard, account)  # v1, stored
    assert guard.watch([], from_version=1, epoch=durable).version == 1
    store.fail_next_append = True
    with pytest.raises(StoreUnavailable):
        trigger(guard, Scope(ScopeKind.STRATEGY, "b"))  # v2 lost, GLOBAL's trip v3
    assert guard.epoch.startswith("volatile-") and guard.durable_epoch == durable
    assert (guard.epoch_of(1), guard.epoch_of(2)) == (durable, guard.epoch)
    with pytest.raises(ResyncRequired, match="is not the current"):
        guard.watch([], from_version=1, epoch=durable)
    with pytest.raises(ResyncRequired, match="from before epoch"):
        guard.watch([], from_version=1, epoch=guard.epoch)
    assert guard.watch([], from_version=3, epoch=guard.epoch).version == 3
    for epoch in ("", "volatile-" + "0" * 8):
        with pytest.raises(ResetRefused, match="was not sent with the epoch"):
            guard.reset(account, "looked", force=True, actor="alice", expected_version=1,
                        expected_epoch=epoch)
    assert guard.reset(account, "looked", force=True, actor="alice", expected_version=1,
                       expected_epoch=durable).state is State.ARMED


@pytest.mark.parametrize(("between", "position"), [
    (("rogue-3", "f3", 1), 9),  # another unchecked fill's trip
    (("rogue-9", "f2", 40), 8)])  # a conflict: the same fill_id for another order
def test_a_fill_whose_commit_failed_is_journaled_when_it_is_sent_again(
        between: tuple[str, str, float], position: float) -> None:
    """A fill whose trip failed to store is booked, journaled nowhere, and marked
    untripped. Review 37f: another unchecked fill's trip, stored since, cleared that mark,
    so the retry was a plain duplicate, journaled nowhere either: a restart lost 7 units.
    Review 37k: so did a conflicting fill's call (it journals nothing), clearing it."""
    guard, journal, clock = _a_fill_whose_trip_failed_to_store()
    clock.advance(2)
    guard.report_fill(_unchecked(*between))  # its trip stored
    assert guard.report_fill(_unchecked("rogue-2", "f2", 7)).fill.duplicate
    restarted = _replayed(journal)  # review 37n: the conflict was booked at replay, and
    # the retry owed a renewal there that the live process did not
    assert restarted.book.position("acc", "s1", "AAPL") == \
        guard.engine.book.position("acc", "s1", "AAPL") == position
    assert restarted.orders.fill_ids.keys() == guard.engine.orders.fill_ids.keys()
    clock.advance(1)
    assert restarted.plan_timers(clock.now()).transitions == guard.run_timers() == []


def _a_fill_whose_trip_failed_to_store() -> tuple[Guard, _Recording, FakeClock]:
    """f1 trips the account ("acc"); 5 s later f2 (7 units) is booked, its trip's store
    write failing."""
    store, journal, clock = InMemoryStateStore(), _Recording(), FakeClock()
    guard = Guard(GuardEngine(GuardConfig()), store, clock, Subscribers(16), journal=journal)
    guard.report_fill(_unchecked("rogue-1", "f1", 1))
    clock.advance(5)
    store.fail_next_append = True
    with pytest.raises(StoreUnavailable):
        guard.report_fill(_unchecked("rogue-2", "f2", 7))
    return guard, journal, clock


class _Recording(NoJournal):
    """A journal that keeps what it is given, for a replay."""

    def __init__(self) -> None:
        self.entries: list = []

    def record(self, command, transitions=()) -> None:  # noqa: ANN001
        self.entries.append((command, tuple(transitions)))


def _replayed(journal: _Recording) -> GuardEngine:
    engine = GuardEngine(GuardConfig())
    for command, transitions in journal.entries:
        engine.replay(command, transitions)
    return engine


def _unchecked(order_id: str, fill_id: str, quantity: float) -> Fill:
    return Fill("acc", "s1", "AAPL", Side.BUY, quantity, 100.0, order_id, fill_id)


def test_a_late_beat_trips_its_scope_even_with_corrupt_feed_evidence_awaiting_renewal(
        ) -> None:
    """Review 37i: with a second corrupt-feed report waiting for the latch's renewal
    (the timer run a second after it), every transition of that scope was taken for that
    renewal, so a beat after its TTL, before the timers ran, cleared the loss unrecorded:
    resetting the corrupt feed's latch then resumed a scope whose executor had been lost."""
    guard, _ = make_guard()
    clock = guard._clock
    assert isinstance(clock, FakeClock)
    guard.heartbeat("exec-1", MOMO, 1.0)
    clock.advance(0.2)
    guard.report_metric(MOMO, Metric.DATA_FEED_CORRUPT, 1)
    clock.advance(0.3)
    guard.report_metric(MOMO, Metric.DATA_FEED_CORRUPT, 1)  # within its second: waits
    clock.advance(0.6)  # the TTL passed, no timer run yet
    guard.heartbeat("exec-1", MOMO, 1.0)
    held = [latch.name for latch in guard.engine.current(MOMO).held()]
    assert held == ["data_feed_corrupt", "heartbeat_lost"]


@pytest.mark.parametrize("first", ["none", "corrupt feed"])
def test_a_reset_never_lifts_evidence_that_waits_for_its_renewal(first: str) -> None:
    """Review 40g: a second unchecked fill within a second of the account's trip waits
    for the timers to renew the latch; a forced reset naming the version the operator
    had seen lifted it, and no trip of that fill was ever recorded or alerted. Review
    40h: a corrupt feed's evidence waiting too took the fill's place (one slot a scope).
    A reset that would lift a latch with evidence waiting is refused, changing nothing
    (40h: renewing it at each reset undid the once-a-second bound); the timers record
    it, and a reset of what the operator then sees is accepted."""
    store, journal, clock = InMemoryStateStore(), _Recording(), FakeClock()
    guard = Guard(GuardEngine(GuardConfig()), store, clock, Subscribers(16), journal=journal)
    account = Scope(ScopeKind.ACCOUNT, "acc")
    guard.report_fill(_unchecked("rogue-1", "f1", 1))
    if first == "corrupt feed":
        guard.report_metric(account, Metric.DATA_FEED_CORRUPT, 1)
    seen = guard.engine.current(account).version
    clock.advance(0.3)
    assert guard.report_fill(_unchecked("rogue-2", "f2", 9)).account.version == seen
    if first == "corrupt feed":
        guard.report_metric(account, Metric.DATA_FEED_CORRUPT, 1)  # waits too
    for expected_version in (seen, 0):
        with pytest.raises(ResetRefused, match="new evidence for .*unchecked_order"):
            guard.reset(account, "looked at rogue-1", True, "op",
                        expected_version=expected_version)
    assert guard.engine.version == seen  # refused: nothing changed
    clock.advance(1)
    guard.run_timers()
    renewed = store.events_after(seen, 10)
    assert any("rogue-2" in t.reason for t in renewed)  # recorded, and alerted with it
    now = guard.engine.current(account).version
    assert guard.reset(account, "looked again", True, "op",
                       expected_version=now).state is State.ARMED
    assert _replayed(journal).state_of(account) is State.ARMED


def test_evidence_waiting_stays_when_another_latch_is_set_at_the_same_clock_reading(
        ) -> None:
    """Review 40k: a transition of the scope was taken for a renewal of every latch set
    at its clock reading; a corrupt feed's trip at the same reading as two unchecked
    fills dropped the second fill's evidence, and a forced reset lifted it unrecorded."""
    store, clock = InMemoryStateStore(), FakeClock()
    guard = Guard(GuardEngine(GuardConfig()), store, clock, Subscribers(16))
    account = Scope(ScopeKind.ACCOUNT, "acc")
    guard.report_fill(_unchecked("rogue-1", "f1", 1))
    guard.report_fill(_unchecked("rogue-2", "f2", 9))  # the same reading: it waits
    guard.report_metric(account, Metric.DATA_FEED_CORRUPT, 1)  # the same reading
    seen = guard.engine.current(account).version
    with pytest.raises(ResetRefused, match="new evidence for unchecked_order"):
        guard.reset(account, "looked", True, "op", expected_version=seen)
    clock.advance(1)
    guard.run_timers()
    assert any("rogue-2" in t.reason for t in store.events_after(seen, 10))


def test_a_stop_stored_after_its_journal_sync_failed_is_numbered_past(
        caplog: pytest.LogCaptureFixture) -> None:
    """Review 40l: a stop whose journal sync failed was stored, then the fail-closed trip
    was planned at the stop's version (or, GLOBAL latched by the system already, at none),
    and every later stop clashed with it in the store. Memory is numbered past what the
    store holds first: the fail-closed trip after the stop, the next stop after both.
    Review 49a: the log said that stop was not stored."""
    class SyncFailsOnce(NoJournal):
        broken = False

        @property
        def failed(self) -> bool:
            return self.broken

        def sync(self) -> None:
            if not self.broken:
                self.broken = True
                raise StoreUnavailable("journal cannot be synced: EIO")

    store = InMemoryStateStore()
    guard = Guard(GuardEngine(GuardConfig()), store, FakeClock(), Subscribers(16),
                  journal=SyncFailsOnce())
    with pytest.raises(StoreUnavailable):
        trigger(guard)  # stored all the same
    [stored] = store.events_after(0, 10)
    assert guard.engine.current(GLOBAL).version == stored.version + 1  # the fail-closed trip
    assert trigger(guard, Scope(ScopeKind.ACCOUNT, "a")).version == stored.version + 2
    [said] = [r.getMessage() for r in caplog.records if "trip" in r.getMessage()
              and "stored" in r.getMessage()]
    assert said == ("trip stored, not made durable in full: it denies checks until the"
                    " sidecar restarts, which keeps it (it is in the state file)")


class _RecordFails(NoJournal):
    """A journal whose record fails for the commands `fails(command, transitions)` picks,
    and every record after that: failed, as FileJournal is once a write failed."""

    def __init__(self, fails) -> None:  # noqa: ANN001
        self.broken, self._fails = False, fails

    @property
    def failed(self) -> bool:
        return self.broken

    def record(self, command, transitions=()) -> None:  # noqa: ANN001
        if self.broken or self._fails(command, transitions):
            self.broken = True
            raise StoreUnavailable("journal write failed: EIO")


def test_a_trip_stored_whose_record_failed_is_told_as_stored_and_answered_as_it_denies(
        caplog: pytest.LogCaptureFixture) -> None:
    """Review 49e: a breaker's trip whose journal record failed after it was stored was
    logged as not stored, to be cleared by sending it again, which planned nothing (the
    store holds it) and answered ARMED; only a restart clears it, and keeps it."""
    store = InMemoryStateStore()
    guard = Guard(GuardEngine(GuardConfig()), store, FakeClock(), Subscribers(16),
                  journal=_RecordFails(lambda command, transitions: bool(transitions)))
    breach = Scope(ScopeKind.ACCOUNT, "acc-1"), Metric.DAILY_DRAWDOWN_PCT, 50.0
    with pytest.raises(StoreUnavailable):
        guard.report_metric(*breach)
    assert [t.scope for t in store.load().current] == [breach[0]]
    assert [r.getMessage() for r in caplog.records if "trip " in r.getMessage()] == [
        "trip stored, not made durable in full: it denies checks until the sidecar"
        " restarts, which keeps it (it is in the state file)"]
    with pytest.raises(StoreUnavailable):  # reports are refused once the journal failed
        guard.report_metric(*breach)
    assert guard.engine.denying_state(breach[0]) is State.TRIPPED


def test_a_reset_stored_whose_record_failed_is_said_and_alerted_as_applied_at_the_restart(
        caplog: pytest.LogCaptureFixture) -> None:
    """Review 54c: a reset stored, then its journal record failed: answered UNAVAILABLE,
    the scope stayed TRIPPED in that process and ARMED after the restart, and nothing
    said so; an operator who decided to keep it halted was overruled at the restart."""
    class Warnings(NoAlerts):
        def __init__(self) -> None:
            self.said: list[str] = []

        def warn(self, scope: Scope, what: str, body: str) -> None:
            self.said.append(f"{scope}{what}: {body}")

    store, alerts = InMemoryStateStore(), Warnings()
    guard = Guard(GuardEngine(GuardConfig()), store, FakeClock(), Subscribers(16),
                  alerts=alerts, journal=_RecordFails(
                      lambda command, transitions: type(command).__name__ == "ResetAsked"))
    trigger(guard, MOMO)
    with pytest.raises(StoreUnavailable):
        guard.reset(MOMO, "desk says go", force=True, actor="alice")
    assert guard.engine.denying_state(MOMO) is State.TRIPPED  # in this process
    assert [t.state for t in store.load().current if t.scope == MOMO] == []  # reset stored
    [said] = [r.getMessage() for r in caplog.records if "restarts, which applies" in
              r.getMessage()]
    assert said.startswith("stored, not made durable in full: the scope stays as it was")
    [alert] = [a for a in alerts.said if str(MOMO) in a]
    assert "ARMED at the next restart" in alert and "trip the scope again" in alert


def test_a_stop_stored_unrecorded_under_a_system_latch_is_told_in_a_new_epoch() -> None:
    """Review 40m: with GLOBAL latched by the system already (stored: a reseal's trip, the
    evidence cap), the fail-closed trip is no transition and the epoch stayed "": the
    stop stored without its record was told as version V of it, never sent, and a
    watcher resuming from V after a restart was replayed nothing."""
    class SyncFails(NoJournal):
        def sync(self) -> None:
            raise StoreUnavailable("journal cannot be synced: EIO")

    store, clock = InMemoryStateStore(), FakeClock()
    guard = Guard(GuardEngine(GuardConfig()), store, clock, Subscribers(16),
                  journal=SyncFails())
    plan = guard.engine.plan(clock.now())
    plan.trip(GLOBAL, TriggerMode.HALT, Cause.SYSTEM, "a reseal lost records", "ess-sidecar")
    store.append(plan.transitions)
    guard.engine.apply(plan.transitions)
    with pytest.raises(StoreUnavailable):
        trigger(guard)  # stored all the same
    stored = store.events_after(0, 10)[-1]
    assert guard.epoch and guard.epoch_of(stored.version) == guard.epoch


def test_a_restart_owes_the_renewals_the_live_process_owed() -> None:
    """An unchecked fill (here a conflict: another fill under f1's id) within a second of
    the account's trip renews it at the next timer run a second on; the journal's replay
    owed that renewal too (the twin test found a restart forgot it)."""
    store, journal, clock = InMemoryStateStore(), _Recording(), FakeClock()
    guard = Guard(GuardEngine(GuardConfig()), store, clock, Subscribers(16), journal=journal)
    guard.report_fill(_unchecked("rogue-1", "f1", 1))
    assert guard.report_fill(_unchecked("rogue-2", "f1", 40)).fill.conflict
    restarted = _replayed(journal)
    clock.advance(1)
    account = Scope(ScopeKind.ACCOUNT, "acc")
    assert [t.scope for t in guard.run_timers()] == [account]
    assert [t.scope for t in restarted.plan_timers(clock.now()).transitions] == [account]


def test_a_fill_whose_trip_failed_to_store_replays_in_its_place_and_trips_when_resent(
        ) -> None:
    """Review 37o: a fill whose trip failed to store was journaled only when it was sent
    again, after the account's snapshot that counted it: a restart booked it twice (15
    for 8). It is journaled in its place, before its trip, marked untripped, so that its
    retry trips the account, after a restart too."""
    guard, journal, clock = _a_fill_whose_trip_failed_to_store()
    guard.sync_positions("acc", 1e6, [PositionSnapshot("s1", "AAPL", 8, 100)])
    before_the_retry = _replayed(journal)
    plan, outcome = before_the_retry.plan_fill(_unchecked("rogue-2", "f2", 7), clock.now())
    assert outcome.duplicate and outcome.unchecked and plan.transitions  # trips again
    retry = guard.report_fill(_unchecked("rogue-2", "f2", 7))
    assert retry.fill.duplicate and retry.fill.unchecked and retry.account.tripped
    assert _replayed(journal).book.position("acc", "s1", "AAPL") == \
        guard.engine.book.position("acc", "s1", "AAPL") == 8


def test_a_fill_whose_trip_never_reached_the_store_trips_its_account_at_the_next_timer_run(
        ) -> None:
    """Review 38d: a fill booked whose trip's write failed, or whose process died before
    the write, left the account ARMED until the fill was sent again, after a restart too
    (the replay knew the trip was owed). The next timer run trips it, in the live process
    and in the restarted one."""
    store, journal, clock = InMemoryStateStore(), _Recording(), FakeClock()
    guard = Guard(GuardEngine(GuardConfig()), store, clock, Subscribers(16), journal=journal)
    store.fail_next_append = True
    with pytest.raises(StoreUnavailable):
        guard.report_fill(_unchecked("rogue-1", "f1", 5))
    account = Scope(ScopeKind.ACCOUNT, "acc")
    restarted = Guard(_replayed(journal), InMemoryStateStore(), clock, Subscribers(16))
    assert restarted.engine.state_of(account) is State.ARMED
    for each in (guard, restarted):
        tripped = each.run_timers()
        assert [(t.scope, t.breaker) for t in tripped] == [(account, "unchecked_order")]
        assert "rogue-1" in tripped[0].reason
        assert each.run_timers() == []  # owed once
    assert [t.scope for t in store.load().current] == [account]
    assert not guard.report_fill(_unchecked("rogue-1", "f1", 5)).fill.unchecked  # tripped


def test_a_renewal_that_failed_to_store_is_stored_by_the_next_timer_run_and_not_again(
        ) -> None:
    """Review 38e: with the account latched already, the owed trip of a fill whose
    renewal failed to store planned nothing, so the fill stayed owed for good, and the
    next timer run after a reset of the account tripped it again."""
    guard, _, clock = _a_fill_whose_trip_failed_to_store()
    account = Scope(ScopeKind.ACCOUNT, "acc")
    renewed = guard.run_timers()
    assert [(t.scope, t.breaker) for t in renewed] == [(account, "unchecked_order")]
    assert "rogue-2" in renewed[0].reason and not guard.engine.orders.untripped
    guard.reset(GLOBAL, "disk replaced", force=True, actor="alice")
    clock.advance(1000)  # the renewal's cooldown
    assert guard.reset(account, "reviewed", force=False, actor="alice").state is State.ARMED
    clock.advance(1)
    assert guard.run_timers() == []
    assert guard.engine.state_of(account) is State.ARMED


def test_the_journal_holds_where_the_clock_was_within_a_second() -> None:
    """Review 38d: a restart's clock starts from the latest time on disk when the
    system's is behind it, and timer runs that changed nothing were not journaled: a
    restart an hour behind gave back every second since the last record (a lost
    executor's trip came 38 s after its 20 s TTL). While a deadline is ahead, a timer run
    is journaled once a second; an order update or a clear carries its time. With none
    ahead, nothing is (review 38e: an idle month journaled 134 MB)."""
    store, journal, clock = InMemoryStateStore(), _Recording(), FakeClock()
    guard = Guard(GuardEngine(GuardConfig()), store, clock, Subscribers(16), journal=journal)

    def runs(seconds: int) -> None:
        for _ in range(seconds * 10):
            clock.advance(0.1)
            guard.run_timers()

    runs(10)
    assert journal.entries == []  # nothing to wait for
    guard.heartbeat("exec-1", MOMO, 20.0)
    for _ in range(15):
        runs(1)
        assert clock.now() - latest_time(None, journal.entries) < CLOCK_MARK_S + 0.1
    assert len(journal.entries) <= 1 + 15 / CLOCK_MARK_S  # not one a run
    guard.heartbeat("exec-2", MOMO, 20.0)  # beats once more, then it stops too
    runs(6)  # exec-1's TTL passed: the loss is tripped
    assert guard.engine.state_of(MOMO) is State.TRIPPED
    runs(15)  # and exec-2's, its scope latched already (review 38i: marked for good)
    written = len(journal.entries)
    runs(10)
    assert len(journal.entries) == written
    clock.advance(0.5)
    guard.clear_working_orders("acc", [], "nothing works", "alice")
    assert latest_time(None, journal.entries) == clock.now()


def test_a_fill_booked_once_its_id_was_forgotten_replays_booked_under_a_longer_retention(
        ) -> None:
    """Review 37p: a drop copy's repeat of a fill whose id the retention had forgotten is
    booked; raised since, the retention kept the id at replay, the repeat was a duplicate
    there, and every start failed closed ("the journal does not fit"). It is booked, as it
    was."""
    journal, clock = _Recording(), FakeClock()
    short = GuardConfig(limits=LimitSettings(order_id_retention_s=300))
    guard = Guard(GuardEngine(short), InMemoryStateStore(), clock, Subscribers(16),
                  journal=journal)
    guard.report_fill(_unchecked("rogue-1", "f1", 10))
    for _ in range(2):  # f1's id forgotten (a retention past its order's: review 37c)
        clock.advance(400)
        guard.run_timers()
    assert not guard.report_fill(_unchecked("rogue-1", "f1", 10)).fill.duplicate
    longer = GuardEngine(GuardConfig(limits=LimitSettings(order_id_retention_s=3600)))
    for command, transitions in journal.entries:
        longer.replay(command, transitions)
    assert longer.book.position("acc", "s1", "AAPL") == \
        guard.engine.book.position("acc", "s1", "AAPL") == 20


def test_a_fill_whose_record_fails_still_holds_its_accounts_trip() -> None:
    """Review 37q: the fill's record, written before its trip, failing, left the trip
    neither stored nor held: only GLOBAL's fail-closed trip denied the account's orders."""
    class Failing(NoJournal):
        def record(self, command, transitions=()) -> None:  # noqa: ANN001
            raise StoreUnavailable("journal cannot be written: ENOSPC")

    guard = Guard(GuardEngine(GuardConfig()), InMemoryStateStore(), FakeClock(),
                  Subscribers(16), journal=Failing())
    with pytest.raises(StoreUnavailable):
        guard.report_fill(_unchecked("rogue", "f1", 5))
    assert [t.scope for t in guard.engine.lost()] == [
        Scope(ScopeKind.ACCOUNT, "acc")]
