"""Use cases: check, report, trigger, reset, watch. Every transition is made durable by
the store first, then applied to the engine, then published to watchers."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import hashlib
import logging
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

from .domain.access import Principal
from .domain.approvals import PendingReset
from .domain.breakers import Metric, Reading
from .domain.commands import Admitted, ClockRead, Command, FillReported, HeartbeatSeen, \
    MetricReported, OrderUpdated, OrdersCleared, PositionsSynced, ResetAsked, Restored, \
    TimersRan, Trigger, Triggered
from .domain.config import GuardConfig
from .domain.decisions import Decision
from .domain.engine import LOOSENING, GuardEngine
from .domain.errors import CapacityExceeded, InvalidArgument, ResetRefused, ResyncRequired, \
    StoreBusy, StoredUnsealed, StoreUnavailable
from .domain.lifecycle import FillOutcome
from .domain.orders import Fill, IncludedFills, OpenOrder, Order, OrderUpdate, PositionSnapshot
from .domain.planner import Plan
from .domain.heartbeats import Registration
from .domain.working import OrderRecord
from .domain.scopes import GLOBAL, Scope, ScopeKind, check_text
from .domain.states import SYSTEM_ACTOR, Cause, Directive, State, Transition, TriggerMode
from .ports import AlertSink, Clock, EventQuery, GuardReadings, Journal, NoAlerts, NoFloor, \
    NoJournal, NoTelemetry, StateStore, Telemetry, VersionFloor
from .watch import Subscribers, Subscription

log = logging.getLogger(__name__)

MAX_REPLAY = 100_000
MAX_WAITING_CHECKS = 10_000  # then waiters of checks that gave up are dropped
# The epochs this sidecar sends: "store-<16 hex>" (store_epoch), "" (a store with no
# identity), "unread-<8 hex>" (a store it could not read) and "volatile-<8 hex>".
MAX_EPOCH_LENGTH = 64
# While a deadline is ahead (GuardEngine.awaits_deadline), a timer run is journaled at
# least this often, so that a restart's clock starts no earlier than this far before where
# the process that stopped was (recovery.latest_time).
CLOCK_MARK_S = 1.0


T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Durable:
    """A write a command needs stored before it goes on. `holds`: transitions that block
    checks while it is written. `on_loop`: the event loop waits for it, checks with it."""

    write: Callable[[], None]
    holds: Sequence[Transition] = ()
    on_loop: bool = False


# A command, as steps: it yields the writes it needs stored, and returns its result.
Steps = Generator[Durable, None, T]


class _Turn:
    """A command's place among those checks wait for: its number (0 while it has none:
    a timer run nobody waits for), and whether it is planned."""

    __slots__ = ("ticket", "planned")

    def __init__(self, ticket: int) -> None:
        self.ticket, self.planned = ticket, False


def _without_writes(command: Callable[[], T]) -> Steps[T]:
    """A command that needs nothing stored, as steps."""
    return command()
    yield  # noqa: unreachable - makes this a generator


@dataclass(frozen=True)
class Outcome:
    """A scope's state after a command, and whether the command restricted it."""

    state: State
    version: int
    tripped: bool = False
    pending_reset: PendingReset | None = None  # four-eyes: waiting for a second operator
    requested_by: str = ""  # four-eyes: whose request a reset approved and carried out
    deregistered: bool = False  # a heartbeat's deregistration removed a registration


@dataclass(frozen=True)
class FillReport:
    """What a fill did: the book (FillOutcome) and the account's state after it."""

    fill: FillOutcome
    account: Outcome


LATER = object()  # scope_views: a reset time made when its view is


@dataclass(frozen=True)
class ScopeView:
    """A restricted scope as GetState shows it."""

    current: Transition
    # When a reset of all its latches is out of the cooldown; None: no reset lifts it in
    # this process (GLOBAL untrusted, or the journal failed).
    reset_allowed_at: float | None
    pending_reset: PendingReset | None
    # A trip of the scope whose write failed: it denies (GuardEngine.lose), and no reset
    # lifts it in this process (review 40i: GetState said ARMED, a reset answered ARMED).
    unstored: Transition | None = None
    epoch: str = ""  # that of current's version (Guard.epoch_of)
    # Its latches that time lifts, with no reset (GuardEngine.rearming_by_themselves).
    rearming: tuple[str, ...] = ()


@dataclass(frozen=True)
class WatchStart:
    """What a new watcher receives before live transitions: a snapshot of the restricted
    scopes (from_version 0) or the transitions it missed, then `version` marks the end."""

    initial: list[Transition]
    is_snapshot: bool
    version: int
    subscription: Subscription


def store_epoch(identity: bytes | None, generation: str = "") -> str:
    """The epoch of a store's durable versions, named after its identity
    (StoredState.identity, random at its creation; hashed, as the journal is chained from
    it) and its generation (a lossy reseal's): state files lost and made anew number their
    versions from 1 again, and a reseal that lost versions may number again some told
    before, so a watcher resuming from an old run's version, or a reset naming one, is
    told apart (known gap 23, reviews 56c, 57a). "" for a store with neither (in memory,
    or made before stores had an identity)."""
    if not generation and (not identity or not any(identity)):
        return ""
    named = b"ess-sidecar epoch\0" + (identity or b"") + generation.encode()
    return "store-" + hashlib.sha256(named).hexdigest()[:16]


class StoredUnrecorded(StoreUnavailable):
    """Transitions were stored, and the journal's sync before them (a stop's) or its
    record of them failed."""


class Guard(GuardReadings):
    store_stall_s = 5.0  # a store write running this long holds GLOBAL tripped (_stalled)

    def __init__(self, engine: GuardEngine, store: StateStore, clock: Clock,
                 subscribers: Subscribers, alerts: AlertSink | None = None,
                 telemetry: Telemetry | None = None, journal: Journal | None = None,
                 is_operator: Callable[[str, str], bool] | None = None,
                 floor: VersionFloor | None = None, epoch: str = "") -> None:
        """epoch: the store's (`store_epoch`): the versions it numbers are only
        comparable within it, so a watcher or a reset naming another store's version
        (state files lost, another state directory) is told apart."""
        self.engine = engine
        self.subscribers = subscribers
        self.alerts = alerts or NoAlerts()
        self.telemetry = telemetry or NoTelemetry()
        # The store's while every published version is durable; this process's own, a
        # volatile epoch, once one is not (fail_closed), so a watcher resuming across that
        # point resyncs instead of trusting replay.
        self.durable_epoch = self.epoch = epoch
        self._volatile_from = 0  # the first version published in the volatile epoch
        # The last version of transitions the store holds and memory did not apply
        # (_stored_unapplied): up to it, memory and the store may differ.
        self._diverged_through = 0
        self._store = store
        self._journal = journal or NoJournal()
        self._floor = floor or NoFloor()  # past every version told and not stored
        # Feeds first ticked since the last timer run, which stores them in one write
        # (review 58d: a write each, in its command's turn, held every command after it),
        # and those whose write failed: stored with the next ones, or at the stop (review
        # 58f: dropped, they were never stored, and a journal lost later lost them).
        self._feeds_unsaved: list[Scope] = []
        self._feeds_failed: list[Scope] = []
        self._clock = clock
        self._clock_marked = clock.now()  # the last timer run journaled
        self._writing = asyncio.Lock()  # run_async: one command at a time
        # Commands are numbered as they come; a check waits until all that came before it
        # are planned (until_planned).
        self._arrived = 0
        self._planned_through = 0
        self._planned_tickets: set[int] = set()
        self._waiters: collections.deque[tuple[int, asyncio.Future[None]]] = \
            collections.deque()
        self._tasks: set[asyncio.Task[Any]] = set()  # commands running (kept referenced)
        self._thread: ThreadPoolExecutor | None = None  # the store's writes', while served
        self._reads: ThreadPoolExecutor | None = None  # and its reads'
        self._drained = False
        # False once the server stops taking calls: from then on a stop (a new Trigger)
        # is refused, so no check is answered either (the adapters refuse them).
        self.deciding = True
        # Whether a principal's name, with the credential it came with, is an operator's
        # now (None: authentication is off, and four-eyes with it): a four-eyes request
        # whose requester is not is void.
        self._is_operator = is_operator
        self._snapshot_entries = 0  # of snapshots being mapped or applied (snapshot_room)

    # -- the hot path: one write(2) when allowed, no fsync, no await -----------------------

    def check(self, order: Order) -> Decision:
        """Judge an order; an allowed one is journaled before the answer goes out."""
        now = self._clock.now()
        decision = self.engine.check(order, now)
        if decision.allowed:
            self._record(Admitted(order, now, decision.decision_id))
        return decision

    # -- commands ---------------------------------------------------------------------------
    # Each command is written once, as steps (a generator) that yield the durable writes it
    # needs. `run` does them here (tests, in-process use); `run_async` in the store's own
    # thread, so that an fsync never stops the event loop and checks go on meanwhile.

    def report_metric(self, scope: Scope, metric: Metric, value: float,
                      actor: str = SYSTEM_ACTOR) -> Outcome:
        return self.run(self.report_metric_steps(scope, metric, value, actor))

    def report_metric_steps(self, scope: Scope, metric: Metric, value: float,
                            actor: str = SYSTEM_ACTOR) -> Steps[Outcome]:
        self._recordable(book=False)
        now = self._clock.now()
        if metric is Metric.DATA_FEED_TICK and self.engine.breakers.overdue(scope, now):
            yield from self._owed_timers(now)  # a tick after its window must not clear it
        first_tick = metric is Metric.DATA_FEED_TICK and not self.engine.breakers.ticked(scope)
        plan = self.engine.plan_report(scope, metric, value, now, actor)
        transitions = yield from self._commit(plan, MetricReported(scope, metric, value, now,
                                                                   not plan.refusal))
        if first_tick and not plan.refusal:  # watched from now on, whatever the journal
            self._feeds_unsaved.append(scope)  # keeps: stored by the next timer run
        outcome = self._outcome(scope, transitions)
        if plan.refusal:
            raise CapacityExceeded(plan.refusal)
        self.telemetry.metric_reported(metric)
        return outcome

    def report_fill(self, fill: Fill, actor: str = SYSTEM_ACTOR) -> FillReport:
        return self.run(self.report_fill_steps(fill, actor))

    def report_fill_steps(self, fill: Fill, actor: str = SYSTEM_ACTOR) -> Steps[FillReport]:
        """Apply a fill; one of an order the sidecar never allowed trips the account,
        durably, before this returns. That trip is written on the event loop: the fill
        changed the book before it, and a check answered while it was written would be
        journaled before the fill, and replayed in another order than it happened."""
        self._recordable()
        now = self._clock.now()
        plan, outcome = self.engine.plan_fill(fill, now, actor)
        account = Scope(ScopeKind.ACCOUNT, fill.account)  # canonical: plan_fill checked it
        # Journaled in its place, before its trip is stored (the journal is never behind
        # the store), with what the engine decided: booked or not, the renewal its latch
        # is owed, and whether it is booked but its trip not stored yet (untripped: a
        # retry trips again, after a restart too). Reviews 37f, 37k, 37n, 37o: journaled
        # only when it was sent again after its trip failed to store, a fill was replayed
        # after a snapshot that counted it (booked twice), or not at all.
        books = not (outcome.refused or outcome.conflict or outcome.duplicate)
        if books or outcome.renewal:
            self._record(FillReported(fill, now, books, outcome.renewal, outcome.untripped,
                                      outcome.marked), holds=plan.transitions)
        if outcome.unchecked:  # before its trip is stored: logged if that fails too
            log.warning("unchecked fill", extra={"account": account.id, "actor": actor,
                                                 "reason": outcome.unchecked})
        transitions = yield from self._commit(plan, None, on_loop=True)
        state = self._outcome(account, transitions)
        if outcome.refused:
            raise InvalidArgument("quantity", outcome.refused)
        return FillReport(outcome, state)

    def report_order_update(self, update: OrderUpdate) -> bool:
        self._recordable()
        changed = self.engine.update_order(update)
        if changed:
            self._record(OrderUpdated(update, self._clock.now()))
        return changed

    def check_snapshot_length(self, positions: int, open_orders: int, included: int) -> None:
        """InvalidArgument if a snapshot lists more than `limits.max_snapshot_entries` in
        one of its lists: asked before its entries are mapped, so that a refused one costs
        little."""
        self.engine.check_snapshot_length(positions, open_orders, included)

    def check_list_length(self, field: str, entries: int) -> None:
        """InvalidArgument if a request's list (`field`) holds more than
        `limits.max_snapshot_entries`, asked before it is mapped."""
        self.engine.check_list_length(field, entries)

    def admit_watcher(self, scopes: int, internal: bool = False) -> None:
        """Raises unless a watcher naming `scopes` scopes would be let in now (Subscribers.
        admit): asked before they are mapped, so a refused one costs nothing. The
        subscription asks again: a place taken meanwhile still refuses it. `internal`: a
        stream of the fan-out process, which has places of its own."""
        self.subscribers.admit(scopes, internal=internal)

    def snapshot_room(self, entries: int) -> Callable[[], None]:
        """Room for a snapshot of `entries`, taken until the returned call gives it back
        (call_async's `finished`: once it is applied or refused, even if its caller gave up
        meanwhile, for it stays queued). Refused (CapacityExceeded) while snapshots in
        flight hold, with it, more entries than one snapshot's three lists may (review 35:
        16 snapshots of 60,000 entries each, sent at once, held a Trigger 2.1 s; each is
        applied in one piece, one after another). One alone is always let in."""
        most = 3 * self.engine.config.limits.max_snapshot_entries
        if self._snapshot_entries and self._snapshot_entries + entries > most:
            raise CapacityExceeded(f"snapshots of {self._snapshot_entries} entries are being"
                                   f" applied; with these {entries}, more than {most} would"
                                   " hold commands and checks up: send it again shortly")
        self._snapshot_entries += entries

        def give_back() -> None:
            self._snapshot_entries -= entries
        return give_back

    def sync_positions(self, account: str, equity: float, positions: list[PositionSnapshot],
                       open_orders: list[OpenOrder] | None = None,
                       included: list[IncludedFills] | None = None) -> int:
        self._recordable()
        now = self._clock.now()
        listed = len(open_orders or ())
        if open_orders:
            open_orders = self.engine.adoptable(account, open_orders)
        left_out = listed - len(open_orders or ())
        adopted = self.engine.sync_positions(account, equity, positions, open_orders, now,
                                             included, left_out)
        if left_out:
            log.warning("snapshot's unknown orders not adopted: order ids at their cap; the"
                        " account's orders are denied until a snapshot leaves none out",
                        extra={"account": account, "left_out": left_out,
                               "limit": "limits.max_remembered_orders"})
        self._record(PositionsSynced(account, equity, tuple(positions),
                                     None if open_orders is None else tuple(open_orders), now,
                                     tuple(included or ()), left_out))
        return adopted

    def clear_working_orders(self, account: str, client_order_ids: list[str], reason: str,
                             actor: str) -> int:
        """An operator ends working orders by hand; logged with who and why."""
        self._recordable()
        self.engine.check_list_length("client_order_ids", len(client_order_ids))
        check_text(reason, "reason", required=True)
        cleared = self.engine.clear_working_orders(account, client_order_ids)
        self._record(OrdersCleared(account, tuple(client_order_ids), self._clock.now()))
        log.warning("working orders cleared", extra={
            "account": account, "actor": actor, "reason": reason, "cleared": cleared,
            "client_order_ids": client_order_ids[:100]})
        named = ", ".join(client_order_ids[:20]) + (" …" if len(client_order_ids) > 20 else "")
        self.alerts.warn(Scope(ScopeKind.ACCOUNT, account),
                         f": {cleared} working order(s) cleared",
                         f"{actor} cleared {cleared} working order(s) of account"
                         f" {account} ({named or 'all'}): {reason!r}. Their room is free:"
                         " one the venue still has would fill past the limits (and trip).")
        return cleared

    def heartbeat(self, executor_id: str, scope: Scope, ttl_s: float,
                  deregister: bool = False, caller: Principal | None = None) -> Outcome:
        return self.run(self.heartbeat_steps(executor_id, scope, ttl_s, deregister, caller))

    def heartbeat_steps(self, executor_id: str, scope: Scope, ttl_s: float,
                        deregister: bool = False, caller: Principal | None = None
                        ) -> Steps[Outcome]:
        """A beat or a deregistration by `caller` (None: authentication is off)."""
        self._recordable(book=False)
        now = self._clock.now()
        if self.engine.heartbeats.overdue(executor_id, scope, now):
            yield from self._owed_timers(now)
        before = self.engine.heartbeats.owner(executor_id, scope)
        try:
            changed = self.engine.heartbeat(executor_id, scope, ttl_s, now, deregister, caller)
        except CapacityExceeded:  # no switch can arm for it: its scope trips (review 49g)
            yield from self._commit(self.engine.plan_unwatched(
                executor_id, scope, "the heartbeat registrations are at their cap", now,
                caller.name if caller is not None else SYSTEM_ACTOR), None)
            raise
        if changed and deregister and caller is not None and before not in ("", caller.name):
            self._deregistered_for(executor_id, scope, before, caller.name)
        owner = self.engine.heartbeats.owner(executor_id, scope)
        self._record(HeartbeatSeen(executor_id, scope, ttl_s, now, deregister, owner))
        if changed and deregister:
            yield Durable(lambda: self._store.delete_registration(executor_id, scope))
        elif changed:
            yield Durable(lambda: self._store.save_registration(executor_id, scope, ttl_s,
                                                                owner))
        return dataclasses.replace(self._outcome(scope, []),
                                   deregistered=changed and deregister)

    def _deregistered_for(self, executor_id: str, scope: Scope, owner: str,
                          actor: str) -> None:
        """An operator retired another principal's executor: its death trips nothing
        from now on (review 41c: it left no trace at all)."""
        log.warning("heartbeat deregistered for another principal", extra={
            "executor_id": executor_id, "scope": str(scope), "owner": owner, "actor": actor})
        self.alerts.warn(scope, f": executor {executor_id!r} deregistered by {actor}",
                         f"{actor} deregistered executor {executor_id!r} of {scope}, whose"
                         f" heartbeats {owner} sent: if it dies now, nothing trips.")

    def _owed_timers(self, now: float) -> Steps[None]:
        """Trip what the timers would trip by now, before a heartbeat or a data feed's
        tick that is overdue: one that comes after its TTL or its feed's window has
        passed, before the timers' next run saw it (they run every timers.interval_s, and
        later while a long command holds the loop), must not clear a loss unseen (review
        of stop 32: heartbeats; review 35: ticks). Asked only when that one is overdue:
        the timers' plan looks at every feed and registration (review 35: 0.36 ms a
        report with 1,000 feeds)."""
        if self.engine.timers_would_trip(now):
            yield from self._commit(self.engine.plan_timers(now), None)

    def trigger(self, trigger: Trigger) -> Outcome:
        return self.run(self.trigger_steps(trigger))

    def trigger_steps(self, trigger: Trigger) -> Steps[Outcome]:
        now = self._clock.now()
        plan = self.engine.plan_trigger(trigger, now)
        return self._outcome(trigger.scope, (yield from self._commit(plan, Triggered(now))))

    def reset(self, scope: Scope, reason: str, force: bool, actor: str,
              latches: Iterable[str] = (), expected_version: int = 0,
              credential: str = "", expected_epoch: str = "") -> Outcome:
        return self.run(self.reset_steps(scope, reason, force, actor, latches,
                                         expected_version, credential, expected_epoch))

    def reset_steps(self, scope: Scope, reason: str, force: bool, actor: str,
                    latches: Iterable[str] = (), expected_version: int = 0,
                    credential: str = "", expected_epoch: str = "") -> Steps[Outcome]:
        """Lift the named latches of a scope (none named: all of them); refused if the
        scope is no longer at expected_version (0: any) in expected_epoch: a version shown
        in another epoch (a sidecar that failed closed, before a restart) may be another
        transition's here (review 54c). `credential`: which of the actor's credentials it
        came with (Principal.credential)."""
        if self._journal_failed():  # nothing but a restart lets a reset be recorded
            raise ResetRefused(JOURNAL_FAILED)
        now = self._clock.now()
        latches = tuple(latches)
        # Review 34: a request whose requester was revoked since (its line removed from the
        # tokens file, and a restart) was approved by the next operator's reset alone;
        # review 35: so was one whose token was replaced by a new one for the same name.
        requester, requested_with = self.engine.approvals.requester(scope)
        void = self._void(requester, requested_with)
        try:
            plan = self.engine.plan_reset(
                scope, reason, force, actor, now, latches, expected_version, void,
                credential, elsewhere=bool(expected_version)
                and not self._names_here(expected_version, expected_epoch))
        except ResetRefused as refused:
            log.warning("reset refused", extra={"scope": str(scope), "actor": actor,
                                                "reason": reason, "refusal": str(refused),
                                                "forced": force, "latches": latches})
            raise
        command = ResetAsked(scope, reason, force, actor, now, latches, void, credential)
        if plan.pending_reset is not None:
            if void:  # the request met was dropped: this one is new
                log.warning("a pending reset is void: its requester is no longer an operator",
                            extra={"scope": str(scope), "requested_by": requester,
                                   "actor": actor})
            pending = plan.pending_reset
            log.warning("reset pending approval", extra={
                "scope": str(scope), "actor": actor, "reason": reason, "forced": force,
                "expires_at": pending.expires_at, "latches": pending.latches})
            self._record(dataclasses.replace(command, expires_at=pending.expires_at))
            return dataclasses.replace(self._outcome(scope, []), pending_reset=pending)
        transitions = yield from self._commit(plan, command)
        approved = next((t.actor for t in transitions if t.approved_by), "")
        return dataclasses.replace(self._outcome(scope, transitions), requested_by=approved)

    def _names_here(self, version: int, epoch: str) -> bool:
        """Whether `version` told with `epoch` is this process's transition of that
        version: the epoch it gives the version, or its own volatile epoch, unique to it
        (a WatchState snapshot tells each version in the epoch of the version it brings
        the watcher to: review 54d)."""
        return epoch == self.epoch_of(version) or self._volatile and epoch == self.epoch

    @property
    def _volatile(self) -> bool:
        return self.epoch != self.durable_epoch

    def run_timers(self) -> list[Transition]:
        return self.run(self.timers_steps())

    def timers_steps(self) -> Steps[list[Transition]]:
        """Stale feeds, lost heartbeats, re-arms and forgetting; run every timers.interval_s
        by `Timers` (timers.py), whatever transport serves the guard. A journal that
        failed unasked (its syncer stalled or dead) fails closed here, traffic or not."""
        failed = self._journal_failed()
        now, horizons = self._clock.now(), self.engine.horizons()
        if self.engine.expire(now, horizons) or (now - self._clock_marked >= CLOCK_MARK_S
                                       and self.engine.awaits_deadline(now)):
            # Journaled now, in its place: what it forgot or kept depends on the orders as
            # they are now, and a check answered while this run's trips are written may
            # replace one (docs/design.md, "The journal's order"). Once a second anyway
            # while a deadline is ahead, though it forgot nothing: its time is where a
            # restart's clock starts from when the system clock is behind it (review 38d:
            # a restart an hour behind gave back every second since the last record, and
            # a lost executor's trip came 38 s after its 20 s TTL). An idle sidecar with
            # nothing to wait for journals nothing (review 38e: a month idle was 134 MB).
            # A journal that failed takes no record, and the run still plans: its trips
            # deny, shown and alerted as not stored (review 49g: the record's refusal
            # ended every run first, and a dead executor or feed was never told).
            if not failed:
                self._record(TimersRan(now, horizons))
            self._clock_marked = now
        plan = self.engine.plan_timers(now)
        transitions = yield from self._commit(plan, None)
        if self._feeds_unsaved:  # the journal has their ticks meanwhile
            feeds = self._feeds_failed + self._feeds_unsaved
            self._feeds_unsaved, self._feeds_failed = [], []
            yield Durable(lambda: self._save_feeds(feeds))
        return transitions

    def _save_feeds(self, feeds: list[Scope]) -> None:
        """Store these feeds; if that fails, they are stored with the next, or at the stop.
        Not again at each timer run: a store that is down would hold every command for
        its busy timeout each time."""
        try:
            self._store.save_feeds(feeds)
        except BaseException:
            self._feeds_failed.extend(feeds)
            raise

    # -- running commands -------------------------------------------------------------------

    def run(self, steps: Steps[T]) -> T:
        """Run a command to its end, its durable writes here. Not while run_async runs one:
        that is for the event loop that serves the guard."""
        if self._writing.locked():
            raise RuntimeError("a command is being written off the loop: use run_async")
        try:
            durable = next(steps)
            while True:
                self._durably(durable.write, durable.holds)
                durable = steps.send(None)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]

    async def run_async(self, steps: Steps[T],
                        finished: Callable[[], None] | None = None) -> T:
        """Run a command to its end, its durable writes in the store's thread while the
        event loop goes on deciding. Commands run one at a time, in the order they came,
        each planned (its memory effects made, its trips held) before the next; a check
        waits until every command that came before it is planned (until_planned), never
        for a write. A command that came is never dropped, and once it came it finishes
        even if its caller is cancelled (a client's deadline): the sequential design would
        have run it, and checks after it were judged with it. `finished` is called when
        it has ended, whether its caller still waits or not."""
        turn = _Turn(self._number())  # checks from now on wait for its plan
        task = self._start(steps, turn)
        if finished is not None:
            task.add_done_callback(lambda _: finished())
        return await asyncio.shield(task)

    async def run_timers_async(self, look_every_s: float) -> list[Transition]:
        """A timer run as served. One that would trip a scope (a stale feed, a lost
        heartbeat) is a command like the others: checks after it wait for its trip, never
        put off by a slow write. One with nothing to trip (nearly all) waits for its turn
        unnumbered, so checks never wait for it behind another command's write; while it
        waits it looks again every `look_every_s`, as the timers would have, and once it
        would trip it is numbered: checks from then on wait for its trip."""
        clock, engine = self._clock, self.engine
        turn = _Turn(self._number() if engine.timers_would_trip(clock.now()) else 0)
        task = self._start(self.timers_steps(), turn)
        while not turn.ticket:
            await asyncio.wait((task,), timeout=look_every_s)
            if turn.planned:
                break
            if engine.timers_would_trip(clock.now()):
                turn.ticket = self._number()
        return await asyncio.shield(task)

    def _number(self) -> int:
        """The next command's number: checks that come from now on wait for its plan."""
        self._arrived += 1
        return self._arrived

    def _start(self, steps: Steps[T], turn: _Turn) -> asyncio.Task[T]:
        task = asyncio.ensure_future(self._in_turn(steps, turn))
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    async def call_async(self, command: Callable[[], T],
                         finished: Callable[[], None] | None = None) -> T:
        """A command with no durable write (a snapshot, an order update, clearing working
        orders) in its turn: its memory effects and journal record never overtake those
        of a command that came before it."""
        return await self.run_async(_without_writes(command), finished)

    @property
    def unplanned(self) -> int:
        """How many commands came and are not planned yet (while any, checks wait)."""
        return self._arrived - self._planned_through

    @property
    def commands_in_flight(self) -> int:
        """Commands running, or waiting for their turn to (run_async)."""
        return len(self._tasks)

    @property
    def waiting_checks(self) -> int:
        """Checks waiting for commands that came before them to be planned."""
        return sum(not waiter.done() for _, waiter in self._waiters)

    def until_planned(self) -> asyncio.Future[None]:
        """For a check: done once every command that came before now is planned, so that
        the check is judged as the sequential design would judge it."""
        waiter = asyncio.get_running_loop().create_future()
        # With GLOBAL halted (applied or held) any check is denied whenever it is judged:
        # it need not wait for the commands before it (a stalled write holds them).
        if self._planned_through >= self._arrived or self.engine.halted():
            waiter.set_result(None)
            return waiter
        waiters = self._waiters
        if len(waiters) >= MAX_WAITING_CHECKS:  # checks whose callers gave up (a hung write)
            self._waiters = waiters = collections.deque(w for w in waiters if not w[1].done())
        waiters.append((self._arrived, waiter))
        return waiter

    async def _in_turn(self, steps: Steps[T], turn: _Turn) -> T:
        try:
            await self._writing.acquire()
        except BaseException:  # cancelled: only the loop closing does it (run_async shields)
            self._planned(turn)
            raise
        try:
            try:
                durable = next(steps)  # plan: memory effects, nothing awaited
            finally:
                self._planned(turn)
            while True:
                await self._durably_async(durable)  # holds before its first await
                durable = steps.send(None)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        finally:
            self._writing.release()

    def _planned(self, turn: _Turn) -> None:
        """The command is planned (or will never be): move the mark over every number
        planned without a gap, and wake the checks that waited for them."""
        turn.planned = True
        if not turn.ticket:  # a timer run nobody waits for
            return
        done = self._planned_tickets
        done.add(turn.ticket)
        while self._planned_through + 1 in done:
            self._planned_through += 1
            done.discard(self._planned_through)
        waiters = self._waiters
        while waiters and waiters[0][0] <= self._planned_through:
            waiter = waiters.popleft()[1]
            if not waiter.done():  # a check cancelled while it waited
                waiter.set_result(None)

    def _finished(self, task: asyncio.Task[Any]) -> None:
        """A command's task ended; its error was its caller's, if the caller still waits
        (a fail closed is logged where it happens)."""
        self._tasks.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: no "never retrieved" noise for a gone caller

    async def _durably_async(self, durable: Durable) -> None:
        """One write, its transitions held (they deny already) until it is done. Called
        right after the plan: nothing awaits before the hold."""
        if durable.on_loop:  # the loop waits for it, but it runs in the store's thread
            self._durably(lambda: self._store_thread().submit(durable.write).result(),
                          durable.holds)
            return
        version = self.engine.version
        self.engine.hold(durable.holds)
        try:
            writing = asyncio.get_running_loop().run_in_executor(self._store_thread(),
                                                                 durable.write)
            stalled = not (await asyncio.wait((writing,), timeout=self.store_stall_s))[0]
            if stalled:
                self._stalled()
            await writing
            if stalled:
                log.warning("the state store write that stalled has ended: checks are"
                            " judged as before")
        except Exception as error:
            self._failed(error, durable.holds)  # trips before the holds go: none between
        finally:
            self.engine.release()
        if self.engine.version != version:
            # Failed closed meanwhile (a journal write failed, or a fault of ours). Here the
            # fail-closed trip took their version: they are lost as a failed write's are,
            # their trips deny and a GLOBAL trip's directives go with the fail-closed trip
            # (review 36l: a panic's cancel and flatten, stored, were never published).
            # The restart restores them from the store: a failed journal refuses every
            # record, so it ends before them; a journal that works records them now, as a
            # start would (review 40e: records after them, and every start failed closed
            # on a store the journal disagreed with).
            self._failed(StoreUnavailable("the sidecar failed closed while this change was"
                                          " stored"), durable.holds, stored=True)

    def _kept_for_the_restart(self, transitions: Sequence[Transition]) -> None:
        """The store holds `transitions` and memory will not apply them: a journal that
        works records them as a start would restore them (review 40e: records after them,
        and every start failed closed on a store the journal disagreed with), and what
        comes next is numbered after them (_stored_unapplied)."""
        if not self._journal.failed:
            with contextlib.suppress(StoreUnavailable):  # then it has failed, too
                self._journal.record(Restored(self._clock.now(), transitions[-1].version),
                                     transitions)
        self._stored_unapplied(transitions)

    def _stored_unapplied(self, transitions: Sequence[Transition]) -> None:
        """The store holds `transitions`, and memory will not apply them (the sidecar
        failed closed, or their journal record failed): number what comes next after them,
        or the next write clashes with them (review 40f: a write of two trips left memory
        one behind, and every later stop was refused; 40i: so did a record that failed
        after its write). Memory and store differ up to them: a watcher resuming from
        before must resync. The next start restores them from the store."""
        stored = transitions[-1].version
        self.engine.stored_unapplied(transitions)  # plans start from them (review 41a)
        self._diverged_through = max(self._diverged_through, stored)
        # Nothing may have been published under it (GLOBAL latched by the system already:
        # the fail-closed trip is no transition): told in a new epoch, a watcher resumes
        # after a restart with a resync (review 40m).
        self._volatile_since(stored)

    def _volatile_since(self, version: int) -> None:
        """Versions from `version` on are told in this process's volatile epoch (unless
        an earlier one began it): another run of the sidecar may number other transitions
        so (`epoch_of`)."""
        if not self._volatile:
            self.epoch = f"volatile-{self.engine.decision_prefix}"
            self._volatile_from = version

    def _told_unstored(self, trips: Sequence[Transition]) -> None:
        """No store holds `trips`, newly lost, and GetState shows them with their versions
        (GuardEngine.lose): told in the volatile epoch from the first of them, and what
        comes next, the fail-closed trip first, is numbered past them (review 54d: GLOBAL
        latched by the system already, the fail-closed trip took no version nor epoch, and
        the next trip stored, in the same process, took the lost trip's version: a reset
        of what had been shown lifted it). A retry of a trip lost already is not shown and
        takes no version (review 54f: a timer's, each run, burnt ten a second, and
        `store.keep_events`, counted in versions, pruned the history before the outage)."""
        self._volatile_since(trips[0].version)
        self.engine.numbered_past(max(trip.version for trip in trips))
        self._floor.raise_to(self.engine.version)  # and the next run, too

    def _stalled(self) -> None:
        """A store write has run for store_stall_s (a hung disk): every command after it
        waits for its turn, a `Trigger` too, and every check for the commands that came
        before it (review 40b: a panic queued behind one waited 40 s, while checks hung to
        their callers' deadlines). Until it ends, GLOBAL is held tripped (no version, not
        stored nor published: when the write ends, all goes on as if it had been slow),
        and the checks waiting are answered: denied, as every check is meanwhile. Failed
        closed instead, the write's trip, stored after the fail-closed trip took its
        version, made every later start fail closed (review 40e)."""
        why = f"a state store write has not finished in {self.store_stall_s:g} s"
        plan = self.engine.plan(self._clock.now())
        stall = plan.trip(GLOBAL, TriggerMode.HALT, Cause.SYSTEM, f"{why} (a hung disk?)",
                          SYSTEM_ACTOR)
        log.error("%s (a hung disk?): every check is denied until it ends; commands wait"
                  " for it", why)
        if stall is not None:
            self.engine.hold([stall])
        self._answer_waiting_checks()

    def _answer_waiting_checks(self) -> None:
        """GLOBAL is halted: the checks waiting for commands are judged now (denied)."""
        while self._waiters:
            waiter = self._waiters.popleft()[1]
            if not waiter.done():
                waiter.set_result(None)

    async def read_async(self, read: Callable[[], R]) -> R:
        """A read of the store (history, a watcher's resume) in a thread of the reads' own:
        it never waits on the event loop, nor the loop on it, nor a write on it (review
        45b: 200 audit queries queued in the writes' thread kept a Trigger unacknowledged
        past 30 s), and it sees only committed data."""
        return await asyncio.get_running_loop().run_in_executor(self._store_thread(True),
                                                                read)

    async def drain(self) -> None:
        """Before the store closes (the server and the timers stopped): wait for every
        command that came to finish, then stop the store's thread. A store call after
        this fails (StoreUnavailable): no thread but the closing one touches the store.
        The version floor is left at the last version numbered: a next start that cannot
        read the store numbers past it all the same."""
        while self._tasks:
            await asyncio.wait(set(self._tasks))
        if feeds := self._feeds_failed + self._feeds_unsaved:  # first ticked since the last
            self._feeds_unsaved, self._feeds_failed = [], []  # timer run, or failed then
            try:
                await asyncio.get_running_loop().run_in_executor(
                    self._store_thread(), lambda: self._store.save_feeds(feeds))
            except StoreUnavailable as error:  # the journal has them: a start saves them
                log.warning("%d data feed(s) not stored at the stop (first ticked since the"
                            " last timer run, or its write failed): the next start stores"
                            " those its journal has: %s", len(feeds), error)
        self._drained = True
        self._floor.raise_to(self.engine.version)
        self._floor.close()
        for thread in (self._thread, self._reads):
            if thread is not None:
                thread.shutdown(wait=True)
        self._thread = self._reads = None

    def _store_thread(self, reads: bool = False) -> ThreadPoolExecutor:
        """One thread does every store write while serving, another every read (`reads`):
        each with its SQLite connection, never used by two threads at once."""
        if self._drained:
            raise StoreUnavailable("the sidecar is stopping: its store is closing")
        if reads:
            if self._reads is None:
                self._reads = ThreadPoolExecutor(1, thread_name_prefix="ess-store-reads")
            return self._reads
        if self._thread is None:
            self._thread = ThreadPoolExecutor(1, thread_name_prefix="ess-store")
        return self._thread

    def fail_closed(self, reason: str, directives: Iterable[Directive] = ()) -> None:
        """Trip GLOBAL in memory when durability is lost (unreadable or unwritable store):
        every order is denied until an operator resets GLOBAL, which itself needs a
        working store, or repairs the store and restarts. `directives`: those of a GLOBAL
        trip whose write failed, which executors must see all the same (review 35: a
        panic on a full disk halted, and its cancel and flatten never reached them)."""
        plan = self.engine.plan(self._clock.now())
        if plan.trip(GLOBAL, TriggerMode.HALT, Cause.SYSTEM, reason, SYSTEM_ACTOR,
                     directives=directives):
            log.error("fail closed: GLOBAL tripped in memory, not durable",
                      extra=transition_fields(plan.transitions[0]))
            self._volatile_since(plan.transitions[0].version)
            self._floor.raise_to(plan.transitions[0].version)  # the next run numbers past it
            self.engine.apply(plan.transitions, durable=False)
            self.subscribers.publish(plan.transitions)
            self.alerts.notify(plan.transitions)
            self.telemetry.transitions(plan.transitions)

    def internal_fault(self, where: str, error: BaseException) -> str:
        """A fault of the sidecar's own (a bug, not bad input) while `where` ran: memory
        may be half changed (review 37b: a fill moved the position, then a KeyError left
        its order's count wrong and nothing journaled, and its retry booked it again).
        Fail closed until a restart, which replays what the journal acknowledged; what
        the caller is told."""
        log.error("internal error in %s: GLOBAL tripped until a restart", where,
                  exc_info=error)
        reason = f"internal error in {where} ({type(error).__name__}: {error})"
        self.fail_closed(reason)
        self.engine.untrusted = self.engine.untrusted or (
            f"{reason} may have left this process's memory half changed: restart the"
            " sidecar, which replays what its journal acknowledged")
        return f"{reason}: GLOBAL is tripped until the sidecar restarts"

    # -- reads ------------------------------------------------------------------------------

    def now(self) -> float:
        return self._clock.now()

    def epoch_of(self, version: int) -> str:
        """The epoch that versions up to `version` were published in: the volatile one only
        from the fail-closed trip on. A watcher told an earlier version under the volatile
        epoch would resume from it with the store's replay, whose next version may be a
        transition memory never took (review 36f: the store's trip whose journal record
        failed, in place of the fail-closed GLOBAL trip under the same version)."""
        return self.epoch if version >= self._volatile_from else self.durable_epoch

    def restricted(self) -> list[Transition]:
        return self.engine.restricted()

    def state_version(self) -> int:
        return self.engine.version

    def readings(self, most: int) -> list[Reading]:
        return self.engine.breakers.readings(self._clock.now(), most)

    def watchers(self) -> int:
        return len(self.subscribers)

    def lost(self) -> list[Transition]:
        return self.engine.lost()

    @property
    def config(self) -> GuardConfig:
        return self.engine.config

    def scope_views(self) -> Iterator[ScopeView]:
        """Every restricted scope with when it may be reset and any pending request, and
        each with a trip not stored (a scope restricted by that alone shows it as
        current), the oldest first. All of it is read when this is called but each view's
        reset time, which its transition and the configuration alone decide (GLOBAL's,
        which depends on whether it is trusted, at once): views made as they are taken,
        a caller may take them a few at a time (GetState: at 20,000 scopes, reading all
        takes about a third of making all)."""
        engine, now, failed = self.engine, self._clock.now(), self._journal.failed
        # scope: [current, pending request, trip not stored, reset time or LATER]
        taken: dict[Scope, list[Any]] = {
            t.scope: [t, self._live(engine.approvals.pending(t.scope, t.version, now)), None,
                      None if failed else LATER] for t in engine.restricted()}
        for lost in engine.lost():
            entry = taken.setdefault(lost.scope, [lost, None, None, lost.time])
            entry[2] = lost
            if failed or not engine.reset_lifts_lost(lost.scope):  # no reset time (review
                entry[3] = None  # 42m: a drill's beside a real one's showed one)
        if (entry := taken.get(GLOBAL)) is not None and entry[3] is LATER:
            entry[3] = engine.reset_allowed_at(entry[0])  # trusted or not, now
        return (ScopeView(current, engine.reset_allowed_at(current) if at is LATER else at,
                          pending, unstored, self.epoch_of(current.version),
                          () if failed or current is unstored  # no timer run records one
                          else tuple(engine.rearming_by_themselves(current)))
                for current, pending, unstored, at in sorted(
                    taken.values(), key=lambda entry: entry[0].version))

    def _live(self, pending: PendingReset | None) -> PendingReset | None:
        """A four-eyes request, unless it is void: a reset is a new request then (review
        55f: shown as live, the approver was asked to approve it)."""
        return None if pending is not None \
            and self._void(pending.requested_by, pending.credential) else pending

    def _void(self, requester: str, credential: str) -> bool:
        """Whether a four-eyes request of `requester`, made with `credential`, is void:
        that is no longer an operator's (authentication on)."""
        return bool(requester) and self._is_operator is not None \
            and not self._is_operator(requester, credential)

    def spelled_alike(self, scope: Scope
                      ) -> Generator[None, None, tuple[bool, list[Scope], bool]]:
        """Whether anything here names `scope`, and the known ones spelled alike that an
        operator may have meant by it, a walk that yields now and then
        (GuardEngine.spelled_alike)."""
        return self.engine.spelled_alike(scope)

    def heartbeats(self, most: int
                   ) -> Generator[None, None, list[tuple[Registration, float | None, bool]]]:
        """Up to `most` heartbeat registrations, the longest silent first, each with its
        last beat known (None: none) and whether it is past its TTL as the walk ends: a
        walk that yields now and then (Heartbeats.silent_first)."""
        return self.engine.heartbeats.silent_first(self._clock.now, most)

    def heartbeats_registered(self) -> int:
        return len(self.engine.heartbeats)

    def working_orders(self, account: str | None = None) -> Iterator[OrderRecord]:
        """Working orders (of one account, when given), the oldest first."""
        return self.engine.orders.working(account)

    def working_counts(self) -> dict[str, int]:
        """How many orders work, per account that has any."""
        return self.engine.orders.per_account

    def working_count(self, account: str) -> int:
        return self.engine.orders.working_count(account)

    def unsubscribe(self, subscription: Subscription) -> None:
        self.subscribers.remove(subscription)

    def events(self, query: EventQuery) -> list[Transition]:
        return self._store.events(query)

    async def events_async(self, query: EventQuery) -> list[Transition]:
        return await self.read_async(lambda: self._store.events(query))

    def watch(self, scopes: Iterable[Scope], from_version: int, epoch: str = "") -> WatchStart:
        """Start a watcher with no gap: the initial part and the subscription are taken in
        one step, so no transition falls between them. Resuming (from_version > 0) needs
        the epoch the watcher last saw: versions are only comparable within one epoch."""
        start = self._subscribe(scopes, from_version, epoch)
        with self._unsubscribed_on_error(start):
            if from_version:
                start.initial.extend(self._replay(from_version, start.version))
        return self._started(start)

    async def watch_async(self, scopes: Iterable[Scope], from_version: int,
                          epoch: str = "", internal: bool = False) -> WatchStart:
        """As watch(), the missed transitions read in the store's thread. Still no gap:
        the subscription is taken first, and queues every transition after `version`.
        `internal`: as admit_watcher's."""
        start = self._subscribe(scopes, from_version, epoch, internal)
        with self._unsubscribed_on_error(start):
            if from_version:
                start.initial.extend(await self.read_async(
                    lambda: self._replay(from_version, start.version)))
        return self._started(start)

    def _subscribe(self, scopes: Iterable[Scope], from_version: int,
                   epoch: str, internal: bool = False) -> WatchStart:
        """The subscription, the snapshot when from_version is 0, else nothing yet."""
        scopes = frozenset(scopes)
        version = self.engine.version
        if len(epoch) > MAX_EPOCH_LENGTH:  # never echo an unbounded string back
            raise InvalidArgument("epoch", f"is at most {MAX_EPOCH_LENGTH} characters: an"
                                  " epoch is only ever one this sidecar sent")
        if from_version and epoch != self.epoch:
            raise ResyncRequired(f"epoch {epoch!r} is not the current {self.epoch!r}: what was"
                                 " seen may not have been durable, or was another state"
                                 " file's; resubscribe from 0")
        if from_version and self._volatile and from_version < self._volatile_from:
            # Review 37h: a watcher of one scope took the epoch from a heartbeat, its
            # version from a transition before the fail-closed trip: the store's version
            # after it can be a transition memory never took (a reset whose record failed).
            raise ResyncRequired(f"from_version {from_version} is from before epoch"
                                 f" {epoch!r} began (version {self._volatile_from}): what"
                                 " followed may not have been durable; resubscribe from 0")
        if from_version and from_version < self._diverged_through:
            raise ResyncRequired(f"from_version {from_version} is from before version"
                                 f" {self._diverged_through}, which this process and its"
                                 " store hold differently; resubscribe from 0")
        if from_version > version:
            raise ResyncRequired(f"from_version {from_version} is ahead of this sidecar's"
                                 f" version {version}; resubscribe from 0")
        missed = version - from_version
        if from_version and missed > MAX_REPLAY:
            raise ResyncRequired(f"more than {MAX_REPLAY} transitions since version"
                                 f" {from_version}; resubscribe from 0")
        initial = [] if from_version else self.engine.restricted()
        subscription = self.subscribers.add(scopes, internal)
        subscription.delivered = version
        return WatchStart(initial, not from_version, version, subscription)

    @contextlib.contextmanager
    def _unsubscribed_on_error(self, start: WatchStart) -> Iterator[None]:
        try:
            yield
        except BaseException:
            self.subscribers.remove(start.subscription)
            raise

    @staticmethod
    def _started(start: WatchStart) -> WatchStart:
        start.initial[:] = [t for t in start.initial if start.subscription.matches(t)]
        return start

    def _replay(self, from_version: int, version: int) -> list[Transition]:
        """Every transition after from_version up to the current version, or resync: the
        store's run must start right after from_version and reach `version` (a transition
        held only in memory, after a failed write, is not in the store)."""
        missed = version - from_version
        replay = self._store.events_after(from_version, missed) if missed else []
        if [t.version for t in replay] != list(range(from_version + 1, version + 1)):
            raise ResyncRequired(f"history after version {from_version} is not all kept;"
                                 " resubscribe from 0")
        return replay

    # -- durability -------------------------------------------------------------------------

    def _commit(self, plan: Plan, command: Command | None,
                on_loop: bool = False) -> Steps[list[Transition]]:
        """Store the plan's transitions (fsync), journal the command with them, apply and
        publish them. The journal is synced first, so on disk it is never behind the
        store; with no transitions, the command is only journaled. While the write runs,
        the plan's trips already block checks (GuardEngine.hold)."""
        if not plan.transitions:
            if command is not None:
                self._record(command)
            return plan.transitions
        stop = type(command) is Triggered
        if stop and self._journal.failed:  # the store alone: see _store_transitions
            yield Durable(lambda: self._store_stop(plan.transitions, prune=False),
                          plan.transitions, on_loop)
        else:
            yield Durable(lambda: self._store_transitions(plan.transitions, stop),
                          plan.transitions, on_loop)
            self._durably(lambda: self._record_stored(command, plan.transitions),
                          plan.transitions)
        self.engine.apply(plan.transitions)
        self.subscribers.publish(plan.transitions)
        self.alerts.notify(plan.transitions)
        self.telemetry.transitions(plan.transitions)
        for transition in plan.transitions:
            log.warning("transition", extra=transition_fields(transition))
        return plan.transitions

    def _record_stored(self, command: Command | None, transitions: list[Transition]) -> None:
        """Journal a command whose transitions are stored; if that fails, they are stored
        but not applied (_failed, told StoredUnrecorded: review 49e, logged as not
        stored)."""
        try:
            self._journal.record(command, transitions)
        except StoreUnavailable as error:
            raise StoredUnrecorded(str(error)) from error

    def _store_transitions(self, transitions: list[Transition], stop: bool = False) -> None:
        """The durable part of a commit; in the store's thread when served. A `stop` (a
        Trigger) is stored even when the journal cannot be synced, and once it has failed
        it is not journaled at all: the journal refuses every record until a restart, and
        the kill switch must not (review 40b: after a full disk was freed, every stop was
        refused, and the restart that was the only way out forgot them). A trip needs no
        record before it; the next start restores the store's trips beyond the journal's
        end (recovery.reconcile)."""
        try:
            if self._journal.failed:  # a sync with nothing new would pass (review 40i: a
                raise StoreUnavailable(JOURNAL_FAILED)  # trip
            self._journal.sync()  # stored unrecorded left memory behind the store)
        except StoreUnavailable as error:
            if stop:  # stored, then failed as the journal did: the caller is told. Nothing
                # is pruned the journal lacks (review 41f: with keep_events small, a reset
                # stored unrecorded was pruned, and every start failed closed)
                self._store_stop(transitions, prune=False)
                raise StoredUnrecorded(str(error)) from error
            raise
        if stop:
            self._store_stop(transitions)
        else:
            self._store.append(transitions)

    def _store_stop(self, transitions: list[Transition], prune: bool = True) -> None:
        """Store a stop's transitions, trying again for STOP_PATIENCE_S while another
        process holds the state file's lock (StoreBusy: nothing was written). Meanwhile the
        stop already denies its scope's orders, and GLOBAL's once the write has stalled
        (_stalled). Given up on so soon, the stop was refused and forgotten at the next
        start (review 43b); any other failure is final at once."""
        give_up = time.monotonic() + STOP_PATIENCE_S
        while True:
            try:
                self._store.append(transitions, prune=prune)
                return
            except StoreBusy as error:
                if time.monotonic() >= give_up:
                    raise
                log.warning("%s: the stop is tried again, for up to %g s in all", error,
                            STOP_PATIENCE_S)

    def _record(self, command: Command, holds: Sequence[Transition] = ()) -> None:
        """Journal a command that changed memory but caused no transition (yet: `holds`,
        the trips planned with it and stored after it, hold if its record fails: review
        37q, a fill's)."""
        try:
            self._journal.record(command)
        except StoreUnavailable as error:
            if holds:
                self._failed(error, holds)
            self.fail_closed(f"journal write failed: {error}; {JOURNAL_FAILED}")
            raise

    def clock_read(self, now: float, wall: float) -> None:
        """Journal the serving clock and the system's, read together (ClockRead: the next
        start goes on from it). Changes nothing in memory, so it needs no turn."""
        if not self._journal_failed():
            self._record(ClockRead(now, wall))

    def _recordable(self, book: bool = True) -> None:
        """Refuse a report once the journal has failed: memory may hold what it could not
        record, and a report answered from it (a fill already applied: `duplicate`; an
        update that changes nothing more) would acknowledge what a restart forgets (review
        42a: a fill retried after its record failed was answered `duplicate`, and after the
        restart the order's overfill passed untripped). Stops go on: they are stored. So
        too, for a report the `book` judges (fills, updates, snapshots, clears), while
        memory cannot be trusted (the state on disk could not be, or a fault of ours):
        judged against it, a fill resent for an order the journal held was taken for one
        never allowed, and its false trip stored (review 43h). Heartbeats and metrics go
        on then: refused, a live executor's scope tripped for a lost heartbeat (43j)."""
        if self._journal_failed():
            raise StoreUnavailable(JOURNAL_FAILED)
        if book and self.engine.untrusted:
            raise StoreUnavailable(f"reports are refused until the sidecar restarts (send"
                                   f" them again then): {self.engine.untrusted}")

    def _journal_failed(self) -> bool:
        """Whether the journal has failed, failing closed if so: it fails unasked too, its
        syncer stalled or dead (review 42d: reports refused left the sidecar ARMED, and
        an unchecked fill tripped nothing)."""
        if self._journal.failed:
            self.fail_closed(f"journal failed: {JOURNAL_FAILED}")
            return True
        return False

    def _durably(self, write: Callable[[], None],
                 transitions: Sequence[Transition] = ()) -> None:
        """Any failure to store (an I/O error, a version clash with another writer) leaves
        state that may not be durable: fail closed, and tell the caller UNAVAILABLE."""
        try:
            write()
        except Exception as error:
            self._failed(error, transitions)

    def _failed(self, error: Exception, transitions: Sequence[Transition] = (),
                stored: bool = False) -> NoReturn:
        """A write (of `transitions`) failed: fail closed, their trips go on denying checks
        (GuardEngine.lose), and raise it as StoreUnavailable. `stored`: the store holds
        them all the same (so do StoredUnrecorded and StoredUnsealed)."""
        # Stored, but its journal record or the state file's seal failed: numbered past
        # before the fail-closed trip (review 40l: GLOBAL latched by the system already,
        # that trip took no version, and every later stop clashed; review 49a: after a
        # seal that failed, every later write did), and a restart restores it from the
        # state file (49a: the log said it was not stored).
        stored = stored or isinstance(error, (StoredUnrecorded, StoredUnsealed))
        if stored and transitions:
            self._kept_for_the_restart(transitions)
        what, until = ("trip stored, not made durable in full", "the sidecar restarts,"
                       " which keeps it (it is in the state file)") if stored else (
            "trip not stored", "what tripped it is sent again and stored, or the sidecar"
            " restarts")
        lost = self.engine.lose(transitions)
        if lost and not stored:  # shown with their versions: numbered past
            self._told_unstored(lost)
        for trip in lost:
            log.error(f"{what}: it denies checks until {until}", extra=transition_fields(trip))
            if not trip.drill:  # a reset lifts a drill's (review 42l)
                self.alerts.warn(trip.scope, f" {trip.state.name}, "
                                 + ("not made durable in full" if stored else "not recorded"),
                                 f"the write failed: {error}. It denies every order of the"
                                 f" scope until {until}; no reset lifts it, GLOBAL's"
                                 f" included. Its reason: {trip.reason}")
        for lifted in (t for t in transitions if stored and t.cause in LOOSENING):
            # A reset or re-arm the state file holds, which memory does not apply: the
            # restart does, and its operator was told UNAVAILABLE (review 54c: nothing said
            # so, and a scope the operator then meant to keep halted resumed at the restart)
            log.error("stored, not made durable in full: the scope stays as it was until the"
                      " sidecar restarts, which applies it (it is in the state file)",
                      extra=transition_fields(lifted))
            self.alerts.warn(lifted.scope, f" {lifted.state.name} at the next restart",
                             f"the write failed: {error}. This {lifted.cause.name.lower()}"
                             " is in the state file but not applied: the scope denies as"
                             " before until the sidecar restarts, which applies it; trip"
                             f" the scope again to keep it halted. Its reason: {lifted.reason}")
        directives = [d for t in transitions if t.scope == GLOBAL and not t.drill
                      for d in t.directives]  # a drill's are no order to act
        if isinstance(error, StoreUnavailable):
            self.fail_closed(f"state store write failed: {error}", directives)
            raise error
        self.fail_closed(f"state store write failed: {error!r}", directives)
        raise StoreUnavailable(f"state store write failed: {error!r}") from error

    def _outcome(self, scope: Scope, transitions: list[Transition]) -> Outcome:
        """The state checks of the scope see: a report sent again after its trip was
        stored but not applied (its seal or journal record failed) plans nothing new, and
        was answered ARMED while its trip denied (review 49d)."""
        tripped = any(t.scope == scope and t.state in (State.TRIPPED, State.REDUCE_ONLY)
                      for t in transitions)
        return Outcome(self.engine.denying_state(scope), self.engine.version, tripped)


# How long a stop keeps trying to store itself while another process holds the state
# file's lock (each try waits the store's busy timeout): essctl waits 30 s for its answer.
STOP_PATIENCE_S = 20.0

JOURNAL_FAILED = "the journal refuses records since it failed: reports and resets are" \
    " refused until the sidecar restarts (free the disk or fix the file system first;" \
    " stored trips are kept, and what was refused must be sent again after the restart)"


def transition_fields(t: Transition) -> dict[str, object]:
    """A transition as structured log fields (one JSON object per line with json logs)."""
    fields: dict[str, object] = {
        "scope": str(t.scope), "previous": t.previous.name, "state": t.state.name,
        "version": t.version, "actor": t.actor, "cause": t.cause.name, "reason": t.reason}
    for name in ("breaker", "approved_by"):
        if getattr(t, name):
            fields[name] = getattr(t, name)
    if t.forced or t.drill:
        fields.update(forced=t.forced, drill=t.drill)
    if t.latches:
        fields["latches"] = [f"{latch.name}:{latch.state.name}" for latch in t.latches]
    return fields
