"""The guard engine: scope states, breakers, limits and the position book, in memory.

Mutations of scope state are two-phase so the service can make them durable first:
`plan_*` returns the transitions a command causes without applying them; the service
persists them, then calls `apply`. Versions are assigned at plan time, so a plan must be
applied (or dropped) before the next one is made: the service runs one command at a time,
and while it stores a plan's transitions it `hold`s them, so that they already deny.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Generator, Iterable, Iterator
from datetime import datetime, timezone
from typing import Final

from .access import Permission, Principal
from .approvals import Approvals
from .breakers import DEFAULT_RULES, ONE_OFF, Breaker, Breakers, Metric, \
    check_metric_value
from .commands import Admitted, ClockRead, Command, Trigger, FillReported, HeartbeatSeen, \
    MetricReported, OrdersCleared, OrderUpdated, PositionsSynced, ResetAsked, Restored, \
    TimersRan, Triggered
from .config import GuardConfig
from .deadlines import Deadlines
from .decide import first_denial, late_fill_denial
from .decisions import Decision, DecisionReason
from .errors import DrillRefused, InvalidArgument, ResetRefused
from .heartbeats import MAX_TTL_S, Heartbeats
from .book import Book
from .ids import canonical_id, likeness, looks, nameable
from .lifecycle import FillOutcome, apply_fill, apply_update, lacking_fills, sync_account
from .limits import OrderRate
from .orders import MAX_EQUITY, MAX_QUANTITY, Fill, IncludedFills, OpenOrder, Order, \
    OrderUpdate, PositionSnapshot
from .planner import Plan
from .scopes import GLOBAL, Scope, ScopeKind, check_text, sanitized_text
from .validation import check_positive, validate_fill, validate_included, \
    check_ended_without_leaves, check_one_mark, validate_open_order, validate_order, \
    validate_snapshot, validate_update
from .working import OrderLedger, OrderRecord
from .states import SEVERITY, SYSTEM_ACTOR, Cause, Latch, LatchKind, State, Transition, \
    TriggerMode, latch_name

RESTRICTING = (State.TRIPPED, State.REDUCE_ONLY)
INFINITY = float("inf")
NEXT_RUN = -INFINITY  # queued for the timers' next run
# A one-off breaker's latch is renewed by a report at most this often (review 36q: a feed
# handler reporting each corrupt message made one durable transition each, a storm).
RENEW_EVERY_S = 1.0
AT_CAP = "(limits.max_scopes_with_evidence)"  # in the reason of GLOBAL's trip at the cap
LOOSENING = (Cause.RESET, Cause.REARM)  # may leave a scope restricted, by its other latches
_ALLOWED: Final = DecisionReason.ALLOWED
MOST_ALIKE: Final = 100  # scopes spelled alike that spelled_alike names
MOST_LOOKED: Final = 100_000  # ids it looks at, at most


class GuardEngine:
    def __init__(self, config: GuardConfig, decision_prefix: str = "d") -> None:
        self.config = config.validate()
        self.version = 0
        limits = self.config.limits
        self.book = Book(lambda symbol: limits.for_symbol(symbol).reference_price)
        self.orders = OrderLedger(self.book, config.limits.duplicate_identical_orders > 0)
        self.breakers = Breakers(config.breakers)
        self.heartbeats = Heartbeats()
        self.approvals = Approvals(config.approvals)
        self._rate = OrderRate(config.limits.max_orders_per_second)
        self._current: dict[Scope, Transition] = {}
        # The current transitions that time alone may change (`_timed_by`): a COOLING_DOWN
        # scope's re-arm, a latch of a breaker that re-arms by itself; each queued by
        # when the timers must look at it next (`_next_look`), and again at once when a
        # sample, a beat or a deregistration comes for its scope. The timers look at
        # those due, not at every restricted scope (review 45: 90,000 scopes latched by as
        # many stale feeds made each run, ten a second, walk them all, 77 ms; review 46a:
        # so did those whose latch re-arms by itself, while their feeds stayed stale).
        self._timed: set[Scope] = set()  # their current transitions: `_current`
        self._timed_due: Deadlines[Scope] = Deadlines()
        self._by_kind: dict[ScopeKind, ScopeTable] = {k: ScopeTable(k) for k in ScopeKind}
        # Non-ARMED transitions being made durable: they block checks already (hold).
        self._held: dict[ScopeKind, ScopeTable] = {k: ScopeTable(k) for k in ScopeKind}
        self._holding = False
        # Trips whose write failed, per scope and latch: held until their latch is stored,
        # or the process ends (review 41a: one per scope, a second trip's took the first's
        # place, and a reset let the scope trade).
        self._lost: dict[Scope, dict[str, Transition]] = {}
        # Transitions the store holds and memory did not apply (their journal record
        # failed, or the sidecar failed closed while they were written), the latest per
        # scope: plans of the scope start from them (`_planned_from`).
        self._unapplied: dict[Scope, Transition] = {}
        self._decision_ids = itertools.count(1)
        self.decision_prefix = decision_prefix  # unique per process
        # Why GLOBAL, tripped, cannot be reset in this process, if so: it started failed
        # closed (a damaged or unreadable store or journal) and its memory may lack trips,
        # working orders or fills, or a fault of its own may have left memory half changed.
        self.untrusted = ""
        # Evidence a latch did not renew for (within a second of its last renewal:
        # `_renews`), per scope and latch: the latest (mode, reason, actor). The next timer
        # run from a second after that renewal renews it (review 37f: left unrecorded, a
        # reset naming the version seen lifted it hours later; review 40h: one slot per
        # scope, a corrupt feed's evidence took an unchecked fill's place). A reset that
        # would lift such a latch is refused. Rebuilt by replay.
        self._unrenewed: dict[Scope, dict[str, tuple[TriggerMode, str, str]]] = {}
        # A sample was refused at limits.max_scopes_with_evidence since GLOBAL last
        # resumed: its breach may be recorded nowhere, so only a forced reset resumes
        # GLOBAL (review 38p; 38q: held while the evidence was at its cap instead, a
        # re-arm delay of GLOBAL never ended). Rebuilt by replay (MetricReported.accepted).
        self.refused_at_cap = False
        # Registrations the replayed journal ended (start-up only: a store that still has
        # one, its delete failed or never came, must not bring it back; recovery.py).
        self.deregistered_in_replay: set[tuple[str, Scope]] = set()
        # Four-eyes requests the journal holds that this version's rules refuse (a reason
        # an earlier version took: review 53d), for the start to say they are gone.
        self.refused_in_replay: list[str] = []
        # Scopes whose evidence the journal holds under an id no request can name (two
        # spaces in a row, journaled before stop 60: ids.py), dropped, for the start to say.
        self.unnamed_in_replay: set[Scope] = set()

    # -- reading ---------------------------------------------------------------------------

    def current(self, scope: Scope) -> Transition | None:
        """The transition that put a non-ARMED scope in its state; None when ARMED."""
        return self._current.get(scope)

    def state_of(self, scope: Scope) -> State:
        current = self._current.get(scope)
        return current.state if current else State.ARMED

    def denying_state(self, scope: Scope) -> State:
        """The state checks of the scope see: its own, or a stricter trip's whose write
        failed, or that the store holds but memory did not apply (`lose`)."""
        state = self.state_of(scope)
        if scope in self._lost:
            lost = self._strictest_lost(scope).state
            if SEVERITY[lost] > SEVERITY[state]:
                return lost
        return state

    def restricted(self) -> list[Transition]:
        """Every non-ARMED scope, oldest transition first."""
        return sorted(self._current.values(), key=lambda t: t.version)

    def ids_known(self, kind: ScopeKind) -> Iterator[str]:
        """The ids of `kind` that trading or the configuration names, read a little at a
        time: the scopes with evidence, an executor registration or a breaker override;
        the accounts, strategies or symbols of the book, the working orders, the order
        rate and the symbol limits. Each collection is copied (at C speed) when the walk
        reaches it, so the engine may move on between two ids. Not trips (a stop spelled
        wrong would name its id), nor order ids alone (there may be a million: what they
        name is in the book)."""
        for scope in [*self.breakers.scopes(), *self.heartbeats.scopes(),
                      *self.config.breakers.overrides]:
            if scope.kind is kind:
                yield scope.id
        if kind is ScopeKind.ACCOUNT:
            yield from list(self.book.accounts)
            yield from list(self.orders.accounts())
        elif kind is ScopeKind.STRATEGY:
            yield from list(self._rate.strategies())
            yield from list(self.orders.strategies())
            for account in list(self.book.accounts.values()):
                yield from list(account.strategies)
        elif kind is ScopeKind.SYMBOL:
            yield from list(self.config.limits.symbols)
            for account in list(self.book.accounts.values()):
                yield from list(account.nets)
                yield from list(account.marks)

    def spelled_alike(self, scope: Scope, every: int = 16, most: int = MOST_LOOKED
                      ) -> Generator[None, None, tuple[bool, list[Scope], bool]]:
        """Whether something that trades or is configured names `scope`'s id (GLOBAL:
        always); up to MOST_ALIKE scopes of its kind so named whose ids differ from its
        own only in letter case or runs of spaces (`likeness`): a stop names one id
        exactly, and accounts and strategies are case-sensitive, so a stop of `ACC-2`
        leaves `acc-2` trading (review 55f). An id that looks like its own (`ids.looks`)
        counts as naming it, since the stop covers it (stop 61), and is not listed as
        alike (the answer does not list the look-alikes covered). And whether it stopped
        at `most` ids,
        not having looked at them all. Yields after every `every` ids, so that a caller
        on the event loop bounds each slice by time (reviews 56a, 56c: 100,000 long ids
        walked at once held stops and checks for seconds)."""
        if scope.kind is ScopeKind.GLOBAL:
            return True, [], False
        symbol = scope.kind is ScopeKind.SYMBOL
        like, seen, known = likeness(scope.id), set(looks(scope.id, symbol)), False
        alike: set[str] = set()
        for count, other in enumerate(self.ids_known(scope.kind), 1):
            if count > most:
                return known, self._alike_scopes(scope.kind, alike), True
            if other == scope.id or seen.intersection(looks(other, symbol)):  # it covers it
                known = True
            elif other not in alike and likeness(other) == like and nameable(other):
                alike.add(other)
            if count % every == 0:
                yield
        return known, self._alike_scopes(scope.kind, alike), False

    @staticmethod
    def _alike_scopes(kind: ScopeKind, ids: set[str]) -> list[Scope]:
        return [Scope(kind, other) for other in sorted(ids)[:MOST_ALIKE]]

    def lost(self) -> list[Transition]:
        """For each scope with trips whose write failed, still denying (`lose`), oldest
        first: the strictest that is not a drill's, in the state of the strictest of all
        (review 43a: a drill's stricter trip was shown alone, saying a reset lifts it, and
        the real one no reset lifts was named nowhere); a drill's if they all are."""
        shown = []
        for scope in self._lost:
            strictest = self._strictest_lost(scope)
            trip = self._real_lost(scope) or strictest
            shown.append(trip if trip.state is strictest.state
                         else dataclasses.replace(trip, state=strictest.state))
        return sorted(shown, key=lambda t: t.version)

    def _strictest_lost(self, scope: Scope) -> Transition:
        return max(self._lost[scope].values(), key=lambda t: SEVERITY[t.state])

    def _real_lost(self, scope: Scope) -> Transition | None:
        """The strictest trip of the scope not stored that is not a drill's, if any: no
        reset lifts it."""
        return max((t for t in self._lost.get(scope, {}).values() if not t.drill),
                   key=lambda t: SEVERITY[t.state], default=None)

    def reset_lifts_lost(self, scope: Scope) -> bool:
        """Whether a reset lifts every trip of the scope not stored: drills' alone (review
        42m: a drill's showed a reset time beside a real one, which refused the reset)."""
        return self._real_lost(scope) is None

    def reset_allowed_at(self, current: Transition) -> float | None:
        """When a reset of every latch of the scope is out of its cooldown; None when no
        reset lifts it in this process (GLOBAL, untrusted: review 42j showed a cooldown
        that never ended)."""
        if current.scope == GLOBAL and self.untrusted:
            return None
        since = max((latch.since for latch in current.held()), default=current.time)
        return since + self.config.policy_for(current.scope.kind).reset_cooldown_s

    # -- the hot path ----------------------------------------------------------------------

    def check(self, order: Order, now: float) -> Decision:
        """Validate and judge one order; an allowed one is working from now on (and one it
        replaces has ended). Raises InvalidArgument for malformed fields."""
        order = validate_order(order)
        orders = self.orders
        replacing = orders.to_replace(order) if order.replaces_client_order_id else None
        blocking = self._blocking(order) if self._current or self._holding else None
        book = self.book.peek(order.account) or self.book.nobody
        if replacing is None:
            denial = first_denial(order, blocking, book, orders, self.config.limits,
                                  self._rate, now)
        else:
            with orders.without(replacing):
                denial = first_denial(order, blocking, book, orders, self.config.limits,
                                      self._rate, now, replacing)
        decision_id = f"{self.decision_prefix}-{next(self._decision_ids)}"
        if denial is None:
            self._admit(order, replacing, now, decision_id)
            return Decision(True, _ALLOWED, "", self.version, None, decision_id)
        return Decision(False, denial.reason, denial.message, self.version,
                        denial.blocking_scope, decision_id)

    def _admit(self, order: Order, replacing: OrderRecord | None, now: float,
               decision_id: str) -> None:
        """An allowed order is working from now on, and counts toward the rate."""
        self._rate.record(order.strategy, now)
        record = self.orders.reserve(order, now, decision_id)
        if replacing is not None and replacing.working:
            self.orders.replace(replacing, record)
            # Remembered for the retention from now: a rejection of the replace makes it
            # work again, and a record forgotten meanwhile would leave it reserving nothing.
            self.orders.keep(replacing, now)

    def _blocking(self, order: Order) -> Transition | None:
        """The most severe transition restricting the order's scopes, held ones included."""
        worst = _most_severe(self._by_kind, order, None)
        return _most_severe(self._held, order, worst) if self._holding else worst

    # -- reports that do not change scope state --------------------------------------------

    def plan_fill(self, fill: Fill, now: float,
                  actor: str = SYSTEM_ACTOR) -> tuple[Plan, FillOutcome]:
        """Apply a fill (once per fill_id). One the sidecar cannot tie to an order it
        allowed, or larger than what is left of it, trips the account (breaker
        unchecked_order, manual reset): something sent an order past the guard. So does
        one that would take a position beyond ±MAX_QUANTITY (review 20), which is not
        booked (`refused`: the caller answers INVALID_ARGUMENT naming `quantity`): the
        book can no longer hold the account's truth, so nothing more of it is allowed."""
        fill = validate_fill(fill)
        late = self._late_fill(fill)  # judged against the book before it
        outcome = apply_fill(self.book, self.orders, fill, now, self._band(fill.symbol))
        if outcome.refused:
            outcome = outcome._replace(unchecked=outcome.refused)
        elif late and not (outcome.unchecked or outcome.duplicate):
            outcome = outcome._replace(unchecked=late)
        key = (fill.account, fill.fill_id)
        if outcome.duplicate and key in self.orders.untripped:
            # Applied before, but its trip never reached the store (the write failed): the
            # fill is in the book, so the retry must trip, not pass as a duplicate.
            outcome = outcome._replace(unchecked=self.orders.untripped[key])
        plan = self.plan(now)
        account = Scope(ScopeKind.ACCOUNT, fill.account)
        rule = self.breakers.rule(account, Breaker.UNCHECKED_ORDER)
        if outcome.unchecked and rule.enabled:  # each one is new evidence: renewed, so that
            # a reset or approval made before it lifts nothing (review 31), as `_renews` says
            if not plan.trip(account, rule.mode, Cause.BREAKER, outcome.unchecked, actor,
                             breaker=Breaker.UNCHECKED_ORDER,
                             renew=self._renews(account, Breaker.UNCHECKED_ORDER, now)):
                self._unrenewed.setdefault(account, {})[Breaker.UNCHECKED_ORDER] = (
                    rule.mode, outcome.unchecked, actor)
                outcome = outcome._replace(renewal=outcome.unchecked)
            if plan.transitions and not outcome.refused and not outcome.conflict:
                self.orders.untripped[key] = outcome.unchecked  # booked; tripped once stored
                outcome = outcome._replace(untripped=outcome.unchecked)
        return plan, outcome

    def _late_fill(self, fill: Fill) -> str:
        """Why a fill of an order a snapshot ended once (left out, maybe while it was in
        flight: `OrderRecord.left_out`; the order it names, or the one it goes to down a
        chain of replaces) takes the account where no order may go now ("" if it does
        not). The order's room was free for the orders allowed after the snapshot, each
        judged without it, so the two filling went past the limit, each within its own
        check (known gap 13). So its fills are judged as an order of their size at their
        price (late_fill_denial), on the book as if the order they go to reserved nothing
        and held none of them: a reservation its next word gave it back, or a snapshot's
        booking of them, may come after its room was taken (review 59a), and so may its
        fills or its revival after a later order was left out in turn (review 59b). A fill
        within its own check's room is within the limit so judged, unless the market or
        equity moved since, or stale words made other orders reserve more (known gap
        13)."""
        orders, account = self.orders, fill.account
        named = orders.exact(account, fill.client_order_id)
        target = orders.get(account, fill.client_order_id)  # where its fills go
        book = self.book.peek(account)
        if named is None or target is None or book is None \
                or not (named.left_out or target.left_out) \
                or (target.strategy, target.symbol, target.side) \
                != (fill.strategy, fill.symbol, fill.side) \
                or orders.applied_before(fill) is not None:
            return ""
        counted = orders.counted(account, fill.client_order_id, fill.quantity)
        order = Order(account, fill.strategy, fill.symbol, fill.side, fill.quantity,
                      fill.price, client_order_id=fill.client_order_id)
        reducing = self._reduce_only(order) if self._current or self._holding else None
        with orders.without(target, owed=False, unbooked=counted):
            denial = late_fill_denial(order, reducing, book, self.config.limits)
        if denial is None:
            return ""
        return (f"fill {fill.fill_id} for order {fill.client_order_id} goes where no order"
                " may go now (a snapshot had left the order out, and its room was free for"
                f" what was allowed since): {denial.message}")

    def _reduce_only(self, order: Order) -> Transition | None:
        """A scope of the order that is REDUCE_ONLY, held ones included, whatever else
        restricts it beside (a halt on top is no room for a late fill: review 59c)."""
        for table in (self._by_kind, self._held):
            for current in _covering(table, order):
                if current.state is State.REDUCE_ONLY:
                    return current
        return None

    def _band(self, symbol: str) -> float:
        """The symbol's price band (percent; 0: off), which bounds what a fill's price
        may say of the market (lifecycle.apply_fill)."""
        return self.config.limits.for_symbol(symbol).price_band_pct

    def update_order(self, update: OrderUpdate, replay: bool = False) -> bool:
        """Evidence that a working order ended (or shrank); False if none was working.
        Leaves with an ended status are refused (a replay applies what was accepted)."""
        update = validate_update(update, journaled=replay)
        if not replay:
            check_ended_without_leaves(update)
        return apply_update(self.orders, update)

    def sync_positions(self, account: str, equity: float, positions: list[PositionSnapshot],
                       open_orders: list[OpenOrder] | None = None, now: float = 0.0,
                       included: list[IncludedFills] | None = None, left_out: int = 0) -> int:
        """Replace the account's book with a snapshot; `open_orders` (None: not given)
        are then its working orders, and `left_out` more that `adoptable` did not take in;
        `included`, the fills of each order its positions count (those not named: none
        not reported yet). Each list holds at most `limits.max_snapshot_entries`: a
        snapshot is applied in one piece, so its size bounds how long a `Trigger` sent
        meanwhile waits."""
        self.check_snapshot_length(len(positions), len(open_orders or ()) + left_out,
                                   len(included or ()))
        return self._sync_positions(account, equity, positions, open_orders, now, included,
                                    left_out)

    def _checked_orders(self, account: str, open_orders: list[OpenOrder],
                        journaled: bool = False) -> list[OpenOrder]:
        """A snapshot's open orders, validated as a list (InvalidArgument naming the entry):
        each one, no id twice, a known order listed as what it is."""
        orders = [validate_open_order(o, f"open_orders[{i}]", journaled)
                  for i, o in enumerate(open_orders)]
        ids = [o.client_order_id for o in orders]
        if len(set(ids)) != len(ids):
            raise InvalidArgument("open_orders", "lists a client_order_id twice")
        for index, listed in enumerate(orders):
            known = self.orders.exact(account, listed.client_order_id)
            if known is not None and (known.strategy, known.symbol, known.side) != \
                    (listed.strategy, listed.symbol, listed.side):
                raise InvalidArgument(f"open_orders[{index}]", f"order"
                                      f" {known.client_order_id!r} is {known.side.name}"
                                      f" {known.symbol!r} for strategy {known.strategy!r}")
        return orders

    def adoptable(self, account: str, open_orders: list[OpenOrder]) -> list[OpenOrder]:
        """The open orders a snapshot may list now: while the sidecar remembers
        `limits.max_remembered_orders` order ids, those it does not know are left out, not
        adopted (review 35: adoption went past the cap, 36 MiB a second for as long as
        snapshots of new ids came); the rest of the snapshot applies (refused whole, it
        left the orders it would have ended working for good). Nothing is allowed that
        the orders left out would have denied: the account's orders are denied until a
        snapshot of it leaves none out, or an operator clears all its orders (review 38b:
        denied only at the cap, the orders were forgotten once ids expired or the cap was
        raised), and their fills trip the account as unchecked. One that starts under the cap adopts
        every order it lists (the ids pass the cap by one snapshot's list at most). The
        list is validated whole first (review 35o: left out first, two unknown orders of
        one id passed, and an error named an entry by its place in what was left)."""
        records = self.orders.records
        if len(records) < self.config.limits.max_remembered_orders:
            return open_orders
        account = canonical_id(account, "account")
        return [order for order in self._checked_orders(account, open_orders)
                if (account, order.client_order_id) in records]

    def check_snapshot_length(self, positions: int, open_orders: int, included: int) -> None:
        """InvalidArgument naming the list a snapshot would hold too many entries in (an
        adapter may ask before it maps them)."""
        for field, entries in (("positions", positions), ("open_orders", open_orders),
                               ("included_fills", included)):
            self.check_list_length(field, entries)

    def check_list_length(self, field: str, entries: int) -> None:
        """InvalidArgument naming `field` if a request's list holds more than
        `limits.max_snapshot_entries`: a snapshot's lists, an operator's clear, a
        watcher's scopes (review 34: 250,000 scopes held 60 MB per watcher)."""
        most = self.config.limits.max_snapshot_entries
        if entries > most:
            raise InvalidArgument(field, f"lists {entries}: at most {most} in one request"
                                  " (limits.max_snapshot_entries)")

    def _sync_positions(self, account: str, equity: float, positions: list[PositionSnapshot],
                        open_orders: list[OpenOrder] | None, now: float,
                        included: list[IncludedFills] | None, left_out: int = 0,
                        replay: bool = False) -> int:
        """sync_positions with no cap: a replay applies what was accepted, whatever the
        cap is now (and whatever marks its positions gave)."""
        account = canonical_id(account, "account", replay)
        check_positive(equity, "equity", MAX_EQUITY)
        checked: list[PositionSnapshot] = []
        seen: set[tuple[str, str]] = set()  # a set: a large book is not a long pause
        marks: dict[str, tuple[float, int]] = {}
        for index, position in enumerate(positions):
            position = validate_snapshot(position, f"positions[{index}]", replay)
            key = (position.strategy, position.symbol)
            if key in seen:  # which one would win is arbitrary: refuse
                raise InvalidArgument(f"positions[{index}]", "duplicate position for"
                                      f" {position.strategy}/{position.symbol}")
            seen.add(key)
            if position.mark_price and not replay:
                check_one_mark(marks, position, index)
            checked.append(position)
        orders = None if open_orders is None \
            else self._checked_orders(account, open_orders, replay)
        counted = [validate_included(c, f"included_fills[{i}]", replay)
                   for i, c in enumerate(included or ())]
        if len({c.client_order_id for c in counted}) != len(counted):
            raise InvalidArgument("included_fills", "lists a client_order_id twice")
        self._check_lacking(account, checked, counted)
        return sync_account(self.book, self.orders, account, equity, checked, orders, now,
                            counted, left_out)

    def unnamed_legs(self) -> list[str]:
        """The accounts holding legs of a strategy or symbol no request can name
        (AccountBook.unnamed): only orders that reduce are allowed there."""
        return sorted(a for a, book in self.book.accounts.items() if book.unnamed)

    def _check_lacking(self, account: str, positions: list[PositionSnapshot],
                       counted: list[IncludedFills]) -> None:
        """Fills reported since a snapshot was taken are added to its positions: refuse
        one they would take beyond ±MAX_QUANTITY (InvalidArgument naming the field)."""
        legs = {(p.strategy, p.symbol): p.quantity for p in positions}
        nets: dict[str, float] = {}
        for p in positions:
            nets[p.symbol] = nets.get(p.symbol, 0.0) + p.quantity
        for index, order in enumerate(counted):
            named = self.orders.exact(account, order.client_order_id)
            if named is None:
                continue
            lacking = lacking_fills(named, order)
            if not lacking:
                continue
            key = (named.strategy, named.symbol)
            legs[key] = legs.get(key, 0.0) + lacking
            nets[named.symbol] = nets.get(named.symbol, 0.0) + lacking
            if abs(legs[key]) > MAX_QUANTITY or abs(nets[named.symbol]) > MAX_QUANTITY:
                raise InvalidArgument(f"included_fills[{index}]", "the fills reported since"
                                      " the snapshot would take a position beyond"
                                      f" ±{MAX_QUANTITY:g}")

    def clear_working_orders(self, account: str, client_order_ids: list[str],
                             replay: bool = False) -> int:
        """An operator's word that these working orders (all of the account's if none
        are named) are gone; how many ended. Their room is free at once, that of fills
        the venue said were owed too (a clear is how an operator ends a reservation
        nothing else will), so each may fill no more than the fills counted when it was
        cleared: a fill beyond, an owed one included, trips the account (review 30: a
        cleared order and the one allowed in its room both filled in full, unseen). A
        replacement named, that the venue has not confirmed, may be gone because the
        venue rejected it: the order it was to replace works again as a rejection would
        leave it (unless it is named too), so that a clear never takes what a live order
        reserves."""
        account = canonical_id(account, "account", replay)
        # In the order named: a replay ends them in the same order.
        wanted = dict.fromkeys(canonical_id(c, f"client_order_ids[{i}]", replay)
                               for i, c in enumerate(client_order_ids))
        ended = [r for r in self.orders.working(account)
                 if not wanted or r.client_order_id in wanted]
        if not wanted:  # all of them, those a snapshot left out too
            for record in ended:
                self._clear(record)
            if (book := self.book.peek(account)) is not None:
                book.unadopted = 0
            return len(ended)
        # Until none named works: one made to work again by an unreplace may itself be a
        # replacement the venue has not confirmed (a replace of a replace), whose original
        # must then work again too. Each pass ends one at least, and an order works again
        # only once per replace that ended it, so this ends.
        while True:
            working = [record for record in (self.orders.exact(account, c) for c in wanted)
                       if record is not None and record.working]
            if not working:
                return len(ended)
            for record in working:
                if not record.working:  # ended by the one before it in this pass
                    continue
                if not record.confirmed and self.orders.rejectable(record) and not any(
                        s.confirmed and not s.confirmed_late
                        for s in self.orders.successors(record)):
                    # (a replace of it the venue confirmed as the head says it lived:
                    # review 38q, the unreplace ended that live order; 38r: a word that
                    # came once it was replaced may be an echo, and proves nothing)
                    self.orders.unreplace(record)
                else:
                    self._clear(record)

    def _clear(self, record: OrderRecord) -> None:
        owed = record.pending
        record.cleared = True  # not the venue's word (review 41g: OrderLedger.done_since)
        self.orders.end(record)
        if not record.replaced_by:
            record.cap_fills()
        elif owed > 0.0:
            # Replaced, it worked for fills it was owed alone: they would go down the
            # chain once it ended, off a reservation the venue's leaves already leave
            # them out of (review 30). They come to it still (`pending` with nothing
            # reserved: OrderLedger.get), beyond what it may fill, and trip. Not capped
            # for good: a rejection of its replace gives it its leaves back (unreplace).
            record.cap = min(record.cap, max(record.filled, record.reported))
            record.pending, record.cleared_owed = owed, True

    def heartbeat(self, executor_id: str, scope: Scope, ttl_s: float, now: float,
                  deregister: bool = False, caller: Principal | None = None) -> bool:
        """Record a heartbeat; True when the registration changed and must be persisted.
        An authenticated caller's beats bind the registration to it: another principal's
        beat or deregistration is PermissionDenied, but for an operator's deregistration
        (retiring an executor that is gone). caller None: authentication is off."""
        canonical_id(executor_id, "executor_id")
        owner = caller.name if caller is not None else ""
        if deregister:
            changed = self.heartbeats.deregister(
                executor_id, scope, owner,
                override=caller is not None and Permission.RESET in caller.role.permissions)
        else:
            check_positive(ttl_s, "ttl_s")  # a NaN TTL would never lapse: fail open
            if ttl_s > MAX_TTL_S:
                raise InvalidArgument("ttl_s", f"must be at most {MAX_TTL_S:g}s, got"
                                      f" {ttl_s!r}")
            changed = self.heartbeats.beat(executor_id, scope, ttl_s, now, owner)
        self._look_again(scope)
        return changed

    # -- plans: commands that change scope state -------------------------------------------

    def plan(self, now: float) -> Plan:
        return Plan(self.version, self._planned_from, now, self._rule_rearms)

    def _rule_rearms(self, scope: Scope, latch: str) -> bool | None:
        """Whether the rule in force re-arms this latch of the scope by itself; None if
        no breaker's rule sets it (a trigger's, a drill's, the system's)."""
        return self.breakers.rule(scope, latch).auto_rearm if latch in DEFAULT_RULES \
            else None

    def _rearms_by_itself(self, scope: Scope, latch: Latch) -> bool:
        """Whether time may lift this latch: its breaker re-arms by itself now, and did
        when it was set (a latch set to wait for a reset waits though the rule was
        switched before a restart; one kept before that was recorded: the rule now)."""
        return latch.auto_rearm is not False and bool(self._rule_rearms(scope, latch.name))

    def rearming_by_themselves(self, current: Transition) -> list[str]:
        """The names of `current`'s latches that time may lift (`_rearms_by_itself`), once
        their cooldown has passed and their breaker's evidence has cleared; the others wait
        for a reset (GetState's ScopeState.auto_rearming_latches: review 55b, an operator
        could not tell the two apart)."""
        return [latch.name for latch in current.held()
                if self._rearms_by_itself(current.scope, latch)]

    def plan_unwatched(self, executor_id: str, scope: Scope, why: str, now: float,
                       actor: str = SYSTEM_ACTOR) -> Plan:
        """An executor whose first heartbeat cannot be registered (the registrations'
        cap: `why`): its dead-man's switch cannot arm, so its scope trips as for a lost
        executor (review 49g: refused, the scope traded with no switch), the beat's
        sender as its actor (49h). A checked reset lifts it once no registered executor
        of the scope is lost; the next beat refused trips it again."""
        plan = self.plan(now)
        rule = self.breakers.rule(scope, Breaker.HEARTBEAT_LOST)
        if rule.enabled:
            plan.trip(scope, rule.mode, Cause.HEARTBEAT_LOST,
                      f"executor {executor_id} cannot be watched: {why}", actor,
                      breaker=Breaker.HEARTBEAT_LOST)
        return plan

    def _planned_from(self, scope: Scope) -> Transition | None:
        """The transition a plan starts from: the scope's current one, or a later one the
        store holds that memory did not apply, so that what is stored next keeps its
        latches (review 41a: a stop stored after a HALT whose record failed took its
        place in the store, and the restart forgot the HALT)."""
        current = self._current.get(scope)
        unapplied = self._unapplied.get(scope)
        if unapplied is None or current is not None and current.version > unapplied.version:
            return current
        return None if unapplied.state is State.ARMED else unapplied

    def numbered_past(self, version: int) -> None:
        """Versions up to `version` were told with no store holding them (GetState shows
        a lost trip's; a run before this one told them: the version floor): what comes
        next is numbered after them, never given one of theirs."""
        self.version = max(self.version, version)

    def stored_unapplied(self, transitions: Iterable[Transition]) -> None:
        """Transitions the store holds that memory will not apply: what comes next is
        numbered after them, and plans of their scopes start from them."""
        for transition in transitions:
            self.version = max(self.version, transition.version)
            known = self._unapplied.get(transition.scope)
            if known is None or transition.version > known.version:
                self._unapplied[transition.scope] = transition

    def plan_report(self, scope: Scope, metric: Metric, value: float, now: float,
                    actor: str = SYSTEM_ACTOR, capped: bool = True) -> Plan:
        """Record one metric sample; the plan holds the trips its breakers call for, with
        the reporter as their actor. `capped`: refused at
        `limits.max_scopes_with_evidence` (a replay of a sample kept live is not: review
        38m, a restart with the cap lowered dropped evidence, and a reset was accepted
        while the breach held). A sample that trips its scope on its own is kept past the
        cap: the latch needs its evidence, for its reset and its renewals (reviews 38m,
        38n: refused, the breach was recorded nowhere, and a reset, or an auto re-arm,
        lifted it while it held)."""
        check_metric_value(metric, value)
        plan = self.plan(now)
        most = self.config.limits.max_scopes_with_evidence
        if capped and scope not in self.breakers and len(self.breakers) >= most:
            # No evidence can be kept for this scope, so nothing can be ruled out: stop
            # everything (once), and refuse the sample (plan.refusal); then only a forced
            # reset resumes GLOBAL (`refused_at_cap`). One that trips its scope alone is
            # kept, up to a tenth past the cap (review 38p: unbounded otherwise).
            plan.trip(GLOBAL, TriggerMode.HALT, Cause.SYSTEM, f"{most} scopes have breaker"
                      f" evidence {AT_CAP}: no more can be kept", actor)
            if len(self.breakers) >= most + most // 10 \
                    or not Breakers(self.config.breakers).record(scope, metric, value, now):
                plan.refusal = f"limits.max_scopes_with_evidence: {most} scopes have" \
                               f" evidence; a sample for {scope} cannot be kept (GLOBAL" \
                               " tripped)"
                self.refused_at_cap = True
                return plan
        if metric is Metric.EQUITY and scope.kind is ScopeKind.ACCOUNT:
            self.book.set_equity(scope.id, value)
        trips = self.breakers.record(scope, metric, value, now)
        self._look_again(scope)
        for trip in trips:
            # A one-off breaker's report is new evidence each time, as an unchecked fill is
            # (review 36p: a corrupt feed reported again 1 s before the re-arm left no
            # trace, nothing holds for it, and the re-arm lifted it).
            renew = trip.breaker in ONE_OFF and self._renews(scope, trip.breaker, now)
            if not plan.trip(scope, trip.mode, Cause.BREAKER, trip.message, actor,
                             breaker=trip.breaker, renew=renew) and trip.breaker in ONE_OFF:
                self._unrenewed.setdefault(scope, {})[trip.breaker] = (trip.mode,
                                                                       trip.message, actor)
        return plan

    def _renews(self, scope: Scope, name: str, now: float) -> bool:
        """Whether new evidence for the scope's latch `name` renews it (a new version: its
        cooldown counts from now, and a reset asked before it is void). Once a second at
        most (reviews 36q, 37c: renewed for each corrupt message or unchecked fill, a
        storm made one durable write and one alert each, with checks waiting), never less
        often than a cooldown ends (review 36r: with a cooldown of 0.5 s, a feed corrupt
        every 0.1 s re-armed between renewals, so a reset allowed after the cooldown always
        finds the evidence before it), and always while a reset of the scope is asked."""
        current = self._current.get(scope)
        if current is None:
            return False
        every = min(RENEW_EVERY_S, self.config.policy_for(scope.kind).reset_cooldown_s)
        return any(latch.name == name and latch.since <= now - every
                   for latch in current.held()) \
            or self.approvals.pending(scope, current.version, now) is not None

    def plan_trigger(self, trigger: Trigger, now: float) -> Plan:
        """Restrict a scope by hand. A drill must start from ARMED: its trip is reset
        without cooldown or second approver, so it must never stand for a real one."""
        scope = trigger.scope
        reason = sanitized_text(trigger.reason)  # never refused: a stop is never held up
        plan = self.plan(now)
        if trigger.drill and plan.state_of(scope) is not State.ARMED:
            raise DrillRefused(f"{scope} is {plan.state_of(scope).name}: a drill needs an"
                               " ARMED scope")
        plan.trip(scope, trigger.mode, Cause.TRIGGER, reason, trigger.actor,
                  reason_code=trigger.reason_code, directives=trigger.directives,
                  drill=trigger.drill, renew=True)
        return plan

    def plan_reset(self, scope: Scope, reason: str, force: bool, actor: str, now: float,
                   latches: Iterable[str] = (), expected_version: int = 0,
                   void: bool = False, credential: str = "", elsewhere: bool = False,
                   expires_at: float | None = None) -> Plan:
        """Lift the named latches of a restricted scope (none named: all of them), or
        refuse (ResetRefused) while one of them is in its cooldown or its breaker still
        holds, unless forced; a reset that resumes the scope is also refused while any
        breaker of the scope holds. With four-eyes on, the first operator's reset only
        becomes plan.pending_reset; a second one's, for the same latches, takes effect.
        Resetting an unrestricted scope changes nothing; a drill's latch lifts at once.
        expected_version, when not 0, is the scope's version the operator looked at: a
        scope that changed since (another trip landed) is refused, even forced, so what
        was not seen is never lifted; `elsewhere`: it was shown in another epoch than this
        process gives it (a sidecar that failed closed before a restart numbered a trip it
        never stored; state files made anew number from 1 again), so it names no
        transition here, whatever the number. `void`: a
        four-eyes request pending for the scope is void (its requester is no longer an
        operator): this reset is a new request, made with the actor's `credential`.
        `expires_at`: the expiry a replayed request was given (Approvals.review)."""
        check_text(reason, "reason", required=True)  # docs/design.md, "Resets"
        plan = self.plan(now)
        self._check_recorded(scope)
        current = self._current.get(scope)
        if current is None or current.state not in RESTRICTING:  # nothing to lift, and no
            # version kept: whatever it names (a drill's clean-up may not know whether its
            # trip landed: review 39k); but a drill's trip not stored (no other is left:
            # _check_recorded) is lifted by a reset stored as one (review 41h: none was,
            # and it went on denying)
            if scope in self._lost:
                plan.move(scope, current.state if current else State.ARMED, Cause.RESET,
                          reason, actor, drill=True,
                          rearm_at=current.rearm_at if current else None)
            return plan
        if expected_version and current.version != expected_version:
            raise ResetRefused(f"{scope} changed since version {expected_version}: it is"
                               f" {current.state.name} at version {current.version}"
                               f" ({current.reason}); look again before resetting it")
        if elsewhere:  # review 54c: a reset sent after the restart lifted another's halt
            raise ResetRefused(f"{scope}: version {expected_version} was not sent with the"
                               " epoch this sidecar gives it (ScopeState.epoch): a sidecar"
                               " that failed closed numbers trips it never stored, and"
                               " state files made anew, or resealed after a loss, number"
                               " theirs again, so"
                               " after a restart the number may be another trip's; here it"
                               f" is {current.state.name} ({current.reason}): look again,"
                               " and send the version with its epoch")
        if scope == GLOBAL and self.untrusted:  # not even forced: nothing here to resume to
            raise ResetRefused(f"GLOBAL cannot be reset in this process: {self.untrusted}")
        held = {latch.name: latch for latch in current.held()}
        named = tuple(dict.fromkeys(latches)) or tuple(held)
        for index, name in enumerate(named):
            if name not in held:
                raise InvalidArgument(f"latches[{index}]", f"{scope} has no latch {name!r}:"
                                      f" it has {', '.join(held)}")
        resumes = len(named) == len(held)
        if scope == GLOBAL and self.refused_at_cap and not force \
                and (resumes or LatchKind.SYSTEM in named):  # a drill's too (review 38r)
            raise ResetRefused("GLOBAL: samples were refused at limits.max_scopes_with_evidence"
                               " since it last resumed, or may have been (a restart lost"
                               " what set its system latch): a breach may be recorded"
                               " nowhere (review 38p); check the reporting scopes, then"
                               " force")
        if all(name == LatchKind.DRILL for name in named):  # a drill's transition only if
            plan.clear(scope, named, Cause.RESET, reason, actor,  # no real latch is left
                       self._rearm_delay(scope), drill=resumes)
            return plan
        self._check_resumable(scope, [held[n] for n in named], resumes, force, now)
        unseen = [name for name in named if name in self._unrenewed.get(scope, {})]
        if unseen:  # review 40g: a forced reset naming the version seen lifted it unrecorded
            raise ResetRefused(f"{scope}: new evidence for {', '.join(unseen)} came after"
                               f" version {current.version}; it is recorded within a second:"
                               " look again before resetting it")
        approved_by = ""
        if self.approvals.required:
            pending = self.approvals.review(scope, current.version, actor, reason, force, now,
                                            named, void, credential, expires_at)
            if pending.requested_by == actor:
                plan.pending_reset = pending
                return plan
            approved_by, actor = actor, pending.requested_by
            reason = f"{pending.reason} | approved: {reason}"
        plan.clear(scope, named, Cause.RESET, reason, actor, self._rearm_delay(scope),
                   forced=force, approved_by=approved_by)
        return plan

    def _check_recorded(self, scope: Scope) -> None:
        """ResetRefused while the scope holds what memory could not judge a reset against:
        a transition stored that memory did not apply (review 41f: a reset naming the
        version before a renewal stored so lifted it), or a trip not stored but a drill's,
        which denies after any reset (review 40i: the reset answered ARMED)."""
        unapplied = self._unapplied.get(scope)
        current = self._current.get(scope)
        if unapplied is not None and (current is None or unapplied.version > current.version):
            raise ResetRefused(f"{scope} changed in the state file (version"
                               f" {unapplied.version}: {unapplied.reason}) after this process"
                               " could record it: restart the sidecar, which takes it, then"
                               " look again")
        if (lost := self._real_lost(scope)) is not None:  # named (42m: the drill's was)
            raise ResetRefused(f"{scope} holds a trip that could not be recorded (version"
                               f" {lost.version}: {lost.reason}); it denies every order of"
                               " the scope until what tripped it (a Trigger too) is sent"
                               " again, or the sidecar restarts (which keeps it if the"
                               " state file has it); no reset lifts it")

    def _check_resumable(self, scope: Scope, clearing: list[Latch], resumes: bool,
                         force: bool, now: float) -> None:
        """ResetRefused while a latch being lifted is in its cooldown, or its breaker (or,
        when the scope would resume, any breaker of it) still holds; unless forced."""
        if force:
            return
        cooldown = self.config.policy_for(scope.kind).reset_cooldown_s
        allowed_at = max(latch.since for latch in clearing) + cooldown
        if now < allowed_at:
            raise ResetRefused(f"{scope} is in its reset cooldown until"
                               f" {_iso(allowed_at)} ({allowed_at - now:.0f}s left)",
                               until=allowed_at)
        names = {latch.name for latch in clearing}
        holding = [b for b in self.holding(scope, now) if resumes or b in names]
        if holding:
            raise ResetRefused(f"{scope}: breaker condition still holds:"
                               f" {', '.join(holding)}")

    def horizons(self) -> tuple[float, float, float]:
        """What `expire` forgets by, from the configuration: the order ids' retention, the
        identical-order window, and how long an idle scope's evidence is kept (at least
        the longest breaker window)."""
        limits = self.config.limits
        return (limits.order_id_retention_s, limits.duplicate_window_s,
                self.breakers.idle_span(limits.idle_evidence_s))

    def expire(self, now: float, horizons: tuple[float, float, float] | None = None) -> int:
        """Forget what is past its retention: order ids, fill ids, identical-order counts,
        rate windows, and the evidence of idle scopes that nothing latched still needs.
        How many were forgotten, or kept for another idle period (the journal records a
        run that did either, with its `horizons`, so a replay forgets exactly what this
        process did, whatever the configuration says now)."""
        retention_s, window_s, idle_s = horizons or self.horizons()
        return (self.orders.expire(now, retention_s, window_s) + self._rate.expire(now)
                + self.breakers.evict(now, idle_s, self._needs_evidence))

    def _needs_evidence(self, scope: Scope) -> bool:
        """A latched scope (its reset needs the evidence), or an account with a book (its
        peak equity is what drawdown is measured from)."""
        return scope in self._current or (scope.kind is ScopeKind.ACCOUNT
                                          and self.book.peek(scope.id) is not None)

    def awaits_deadline(self, now: float) -> bool:
        """Whether time alone may still change what is decided: an executor's TTL, a
        feed's staleness, a four-eyes request's expiry, still ahead. A restart whose
        system clock is behind must then not lose the time since the last record
        (Guard.timers_steps); every other rule only gets stricter when time is lost (a
        cooldown, a retention)."""
        return self.heartbeats.any_ahead() or self.breakers.any_fresh_feed() \
            or self.approvals.any_pending(now, self._version_of)

    def _version_of(self, scope: Scope) -> int:
        """The version of the transition that put `scope` in its state (0: ARMED)."""
        current = self._current.get(scope)
        return current.version if current is not None else 0

    def _latched(self, scope: Scope, name: str) -> bool:
        """Whether the scope's stored state holds the latch `name` (applied, or stored
        and not applied: `_planned_from`), not one planned alone."""
        current = self._planned_from(scope)
        return current is not None and any(latch.name == name for latch in current.held())

    def timers_would_trip(self, now: float) -> bool:
        """Whether a timer run now would restrict a scope (a stale feed, a lost heartbeat
        not latched yet, a re-arm that goes through COOLING_DOWN from REDUCE_ONLY): such
        a run takes its place before the checks that come after it. Other runs only
        loosen (re-arms) or forget, and may come later."""
        return any((t.cause is not Cause.REARM and not self._renewal_only(t))
                   or SEVERITY[t.state] > SEVERITY[t.previous]
                   for t in self.plan_timers(now).transitions)

    def _renewal_only(self, transition: Transition) -> bool:
        """Whether a timer run's transition only renews a latch for evidence it holds
        (`_unrenewed`): the same state and latches, so no check is judged otherwise
        (review 37i: any transition of such a scope, a lost heartbeat's latch among them,
        was passed over, and a late beat then cleared the loss unrecorded)."""
        current = self._current.get(transition.scope)
        return transition.scope in self._unrenewed and current is not None \
            and transition.state is current.state \
            and {latch.name for latch in transition.held()} == \
            {latch.name for latch in current.held()}

    def plan_timers(self, now: float) -> Plan:
        """What time alone causes: stale feeds, lost heartbeats, evidence a latch did not
        renew for yet, re-arms; and the trips of unchecked fills booked whose trip never
        reached the store (`OrderLedger.untripped`: its write failed, or the process died
        before it, and a restart replayed the fill: review 38d, the account was left
        ARMED until the fill was sent again), renewed if the account holds that latch
        already (review 38e: a renewal that failed to store was owed for good, and undid
        the resets after it), as the fill would have (`_renews`). Such a trip was decided
        with the breaker on: made though a restart turned it off since (review 55d: the
        trip was dropped, and the account stayed ARMED with the fill booked)."""
        plan = self.plan(now)
        owed = {account: reason for (account, _), reason in self.orders.untripped.items()}
        for account, reason in owed.items():
            scope = Scope(ScopeKind.ACCOUNT, account)
            plan.trip(scope, self.breakers.rule(scope, Breaker.UNCHECKED_ORDER).mode,
                      Cause.BREAKER, reason, SYSTEM_ACTOR, breaker=Breaker.UNCHECKED_ORDER,
                      renew=self._renews(scope, Breaker.UNCHECKED_ORDER, now))
        # A feed or an executor whose scope holds its latch durably already trips nothing
        # new: it is marked as if its own trip were applied, or every run would plan it
        # again, and its tick or beat would run the timers' whole plan (review 41d: a
        # flapping feed, or a fleet lapsing after the first, slowed every check).
        for scope, trip in self.breakers.stale(now):
            if plan.trip(scope, trip.mode, Cause.BREAKER, trip.message, SYSTEM_ACTOR,
                         breaker=trip.breaker) is None and self._latched(scope, trip.breaker):
                self.breakers.mark_stale(scope)
        for lapsed in self.heartbeats.lapse(now):
            rule = self.breakers.rule(lapsed.scope, Breaker.HEARTBEAT_LOST)
            if not rule.enabled or plan.trip(
                    lapsed.scope, rule.mode, Cause.HEARTBEAT_LOST,
                    f"executor {lapsed.executor_id} missed its {lapsed.ttl_s:g}s heartbeat",
                    SYSTEM_ACTOR, breaker=Breaker.HEARTBEAT_LOST) is None \
                    and self._latched(lapsed.scope, Breaker.HEARTBEAT_LOST):
                # Its loss trips nothing new (the breaker is off here, or the latch is
                # held): not looked at again until it beats (review 46a: with the breaker
                # off, every silent executor was taken and queued again on every run).
                self.heartbeats.mark_lost(lapsed.scope, now)
        for scope, evidence in self._unrenewed.items():
            current = self._current.get(scope)  # renewed before a re-arm can look at it
            if plan.current(scope) is not current:
                continue  # renewed, or changed, above (an unchecked fill's): the next run
            for name, (mode, reason, actor) in evidence.items():
                if current is not None and any(latch.name == name for latch in current.held()) \
                        and self._renews(scope, name, now):
                    plan.trip(scope, mode, Cause.BREAKER, reason, actor, breaker=name,
                              renew=True)
        for scope in sorted(self._timed_due.pop_due(now), key=self._falls_due):
            current = self._current[scope]
            if plan.current(scope) is not current:
                self._timed_due.schedule(scope, NEXT_RUN)
                continue
            self._timed_due.schedule(scope, self._next_look(current, now))
            if current.state is State.COOLING_DOWN and current.rearm_at is not None \
                    and now >= current.rearm_at:
                # Not while a breaker of the scope holds, as a reset or an auto re-arm is
                # not (review 34h: a level breaker with `consecutive` > 1, breached once
                # during the delay, held unlatched, and the scope re-armed): it stays
                # COOLING_DOWN until a sample clears the condition or latches it.
                if not self.holding(current.scope, now):
                    plan.move(current.scope, State.ARMED, Cause.REARM, "re-arm delay elapsed",
                              SYSTEM_ACTOR, drill=current.drill)
                    self._timed_due.schedule(scope, NEXT_RUN)  # until it is applied
            elif rearming := self._auto_rearming(current, now):
                plan.clear(current.scope, rearming, Cause.REARM,
                           f"auto re-arm: {', '.join(rearming)} cleared", SYSTEM_ACTOR,
                           self._rearm_delay(current.scope))
                self._timed_due.schedule(scope, NEXT_RUN)
        return plan

    def _falls_due(self, scope: Scope) -> tuple[float, int, str]:
        """The order a run re-arms its due scopes in: when each fell due (its re-arm delay's
        end; the earliest cooldown's end of its auto re-arming latches), then the scope.
        The queue's own order is not it: a restart queues every scope for its first run in
        the order the journal replayed them (review 52b: two re-arms due while the sidecar
        was down were made in that order, and took each other's versions)."""
        current = self._current[scope]
        if current.state is State.COOLING_DOWN:
            due = current.rearm_at if current.rearm_at is not None else INFINITY
        else:
            cooldown = self.config.policy_for(scope.kind).reset_cooldown_s
            due = min((latch.since + cooldown for latch in current.held()
                       if self._rearms_by_itself(scope, latch)), default=INFINITY)
        return due, scope.kind.value, scope.id

    def _next_look(self, current: Transition, now: float) -> float:
        """Having looked at this scope now, when time alone may next let it re-arm: its
        re-arm delay's end; the earliest cooldown's end of its auto re-arming latches,
        while none is past it; else a condition of the scope that holds ending by time
        (an assumed one's end, an event leaving its window), or a latched feed going
        stale or a latched executor lapsing (a re-arm that would lift every latch while
        another breaker holds is held back, and one latch holding again makes it partial:
        review 46c). A sample, a beat or a deregistration for the scope has it looked at
        again at once (`_look_again`)."""
        scope = current.scope
        if current.state is State.COOLING_DOWN:
            rearm_at = current.rearm_at if current.rearm_at is not None else INFINITY
            return rearm_at if now < rearm_at else self.breakers.holding_may_end_at(scope,
                                                                                   now)
        cooldown = self.config.policy_for(scope.kind).reset_cooldown_s
        ahead, past = INFINITY, False
        for latch in current.held():
            if self._rearms_by_itself(scope, latch):
                if latch.since + cooldown > now:
                    ahead = min(ahead, latch.since + cooldown)
                else:
                    past = True
        if not past:
            return ahead
        held = {latch.name for latch in current.held()}
        return min(ahead, self.breakers.holding_may_end_at(scope, now),
                   self.breakers.stale_at(scope, now) if Breaker.DATA_FEED_STALE in held
                   else INFINITY,
                   self.heartbeats.lapse_at(scope, now) if Breaker.HEARTBEAT_LOST in held
                   else INFINITY)

    def _look_again(self, scope: Scope) -> None:
        """New evidence for the scope: the timers look at it on their next run, if time
        may change its state (a condition that held may no longer)."""
        if scope in self._timed:
            self._timed_due.schedule(scope, NEXT_RUN)

    def holding(self, scope: Scope, now: float) -> list[str]:
        """Breakers of this scope whose condition still holds."""
        held = self.breakers.holding(scope, now)
        if self.heartbeats.lapsed(scope, now) \
                and self.breakers.rule(scope, Breaker.HEARTBEAT_LOST).enabled:
            held.append(Breaker.HEARTBEAT_LOST)
        return held

    def _auto_rearming(self, current: Transition, now: float) -> list[str]:
        """The latches of breakers that re-arm by themselves whose cooldown has passed and
        whose condition no longer holds; every other latch stays (an operator's REDUCE_ONLY
        under an auto re-arming breaker is lifted only by hand). None if lifting them would
        resume the scope while another of its breakers holds (one that has not latched
        yet, say): a reset would be refused then, and so is a re-arm."""
        if current.state not in RESTRICTING:
            return []
        cooldown = self.config.policy_for(current.scope.kind).reset_cooldown_s
        holding: list[str] | None = None
        lifted = []
        for latch in current.held():
            if not self._rearms_by_itself(current.scope, latch) \
                    or now < latch.since + cooldown:
                continue
            if holding is None:
                holding = self.holding(current.scope, now)
            if latch.name not in holding:
                lifted.append(latch.name)
        if holding and len(lifted) == len(current.held()):
            return []
        return lifted

    def _rearm_delay(self, scope: Scope) -> float:
        return self.config.policy_for(scope.kind).rearm_delay_s

    # -- applying ----------------------------------------------------------------------------

    def apply(self, transitions: Iterable[Transition], durable: bool = True) -> None:
        """Make durable transitions current, in version order (`durable` False: the trip
        a failed write leaves in memory, Guard.fail_closed; it ends no lost trip)."""
        for transition in transitions:
            if transition.version <= self.version:
                raise ValueError(f"transition {transition.version} is not after {self.version}")
            self.version = transition.version
            if durable and transition.scope in self._lost:
                self._found(transition)
            unapplied = self._unapplied.get(transition.scope)
            if unapplied is not None and transition.version > unapplied.version:
                del self._unapplied[transition.scope]  # planned from it: current now
            before = self._current.get(transition.scope)
            self._set(transition)
            owed = self._unrenewed.get(transition.scope)
            if owed is not None:
                for name in [name for name in owed if not any(  # renewed or lifted by it:
                        latch.name == name and latch.version < transition.version  # recorded
                        for latch in transition.held())]:  # (review 40k: by time, a latch
                    # set at the same clock reading looked renewed, and its evidence went)
                    del owed[name]
                if not owed:
                    del self._unrenewed[transition.scope]
            if transition.scope == GLOBAL and transition.state not in RESTRICTING:
                self.refused_at_cap = False  # resumed (forced, see _check_resumable)
            if transition.cause is Cause.RESET:
                kept = {latch.name for latch in transition.held()}
                for latch in before.held() if before else ():
                    if latch.name not in kept:
                        self.breakers.rearm(transition.scope, latch.name, transition.time)
                        if latch.name == Breaker.HEARTBEAT_LOST:
                            self.heartbeats.rearm(transition.scope, transition.time)
                self.approvals.discard(transition.scope)
            elif transition.breaker == Breaker.DATA_FEED_STALE:
                self.breakers.mark_stale(transition.scope)
            elif transition.breaker == Breaker.HEARTBEAT_LOST:
                self.heartbeats.mark_lost(transition.scope, transition.time)
            elif transition.breaker == Breaker.UNCHECKED_ORDER:
                self.orders.tripped_for(transition.scope.id)  # its unchecked fills' trip

    def _owe_renewal(self, transition: Transition) -> None:
        """A breaker's renewal of a latch memory holds, whose write failed: its evidence is
        owed as one within the latch's second is (`_unrenewed`): a reset naming the version
        before it is refused, and the timers renew the latch (review 41f: unrecorded, a
        reset not forced lifted it inside the cooldown it restarted)."""
        if transition.cause is Cause.BREAKER and transition.breaker:
            latch = next((l for l in transition.held() if l.name == transition.breaker), None)
            mode = TriggerMode.HALT if latch is None or latch.state is State.TRIPPED \
                else TriggerMode.REDUCE_ONLY
            self._unrenewed.setdefault(transition.scope, {})[transition.breaker] = (
                mode, transition.reason, transition.actor)

    def _found(self, transition: Transition) -> None:
        """A durable transition of a scope with lost trips: those whose latch it holds
        are stored at last, and decide as it does now; a reset lifts a drill's (it lifts
        at once, and no drill can be sent again while the scope is restricted: review
        41f)."""
        scope, lost = transition.scope, self._lost[transition.scope]
        gone = [trip for trip in lost.values() if _holds_latch(transition, trip)
                or trip.drill and transition.cause is Cause.RESET]
        for trip in gone:
            del lost[latch_name(trip.cause, trip.breaker, trip.drill)]
        table = self._held[scope.kind]
        if not lost:
            del self._lost[scope]
        if any(table.get(scope.id) is trip for trip in gone):
            if lost:
                table.put(scope.id, self._strictest_lost(scope))
            else:
                table.drop(scope.id)

    def halted(self) -> bool:
        """Whether GLOBAL is TRIPPED, applied or held: every check is denied."""
        held = self._held[ScopeKind.GLOBAL].get("")
        return self.state_of(GLOBAL) is State.TRIPPED or (
            self._holding and held is not None and held.state is State.TRIPPED)

    def hold(self, transitions: Iterable[Transition]) -> None:
        """Transitions on their way to the store: until apply(), every one that leaves
        its scope restricted (any state but ARMED) blocks checks as if applied, so no
        check answered while a trip is written is allowed that would be denied once it
        is. A check takes the most severe of the held and the applied transitions, so a
        held reset (TRIPPED to COOLING_DOWN, REDUCE_ONLY to ARMED) loosens nothing before
        apply(); one that tightens (REDUCE_ONLY to COOLING_DOWN) does at once."""
        for transition in transitions:
            lost = self._strictest_lost(transition.scope) \
                if transition.scope in self._lost else None
            if transition.state is not State.ARMED and (
                    lost is None or SEVERITY[transition.state] >= SEVERITY[lost.state]):
                self._held[transition.scope.kind].put(transition.scope.id, transition)
                self._holding = True

    def release(self) -> None:
        """The held transitions were applied, or could not be stored (then the caller
        has failed closed already, and the trips among them are lost: still held)."""
        if self._holding:
            for table in self._held.values():
                table.clear()
            self._holding = False
            for scope in self._lost:  # still lost: held again
                self._held[scope.kind].put(scope.id, self._strictest_lost(scope))
                self._holding = True

    def lose(self, transitions: Iterable[Transition]) -> list[Transition]:
        """Transitions whose write failed. Each trip among them (a scope left TRIPPED or
        REDUCE_ONLY) goes on denying checks as a held one does, until a durable
        transition of its scope holds the same latch at least as strict (the retry of what
        tripped it: a report, a fill, a timer run, a Trigger sent again) or the process
        ends: a breach is no less real for not being stored, and neither resetting GLOBAL
        once the store works again, nor a re-arm or reset of its scope, nor another latch's
        trip may let that scope trade unseen. Plans do not see it (unless the store holds
        it: `stored_unapplied`), so a retry plans the trip again, and stores it. Each
        latch's is kept, the strictest held (review 41a: a second trip took the first's
        place), the first of those as strict: the one shown, whose version stays what
        GetState told (review 54f: a timer's retry each run took its place, and a new
        version each time). A latch the scope holds durably already is not lost. Returns
        the trips newly lost, or stricter than the one their latch had lost (review 42a: a
        timer retrying a trip on a full disk logged it again every run)."""
        lost = []
        for transition in list(transitions):
            scope, current = transition.scope, self._current.get(transition.scope)
            if transition.state not in RESTRICTING or transition.cause in LOOSENING:
                continue
            if current is not None and _holds_latch(current, transition):
                self._owe_renewal(transition)  # its evidence is new all the same
            else:
                trips = self._lost.setdefault(scope, {})
                name = latch_name(transition.cause, transition.breaker, transition.drill)
                known = trips.get(name)
                if known is None or SEVERITY[transition.state] > SEVERITY[known.state]:
                    trips[name] = transition
                    lost.append(transition)
                self._held[scope.kind].put(scope.id, self._strictest_lost(scope))
                self._holding = True
        return lost

    def replay(self, command: Command | None, transitions: Iterable[Transition]) -> None:
        """Redo one journaled command's effects on memory, then apply the transitions it
        caused, as they were (domain/commands.py). Raises what the command would raise
        if the journal no longer fits this engine (then the state cannot be trusted)."""
        match command:
            case Admitted(order, now, decision_id):
                order = validate_order(order, journaled=True)
                try:
                    replacing = self.orders.to_replace(order) \
                        if order.replaces_client_order_id else None
                except InvalidArgument:  # journaled before replaces were checked: a new one
                    replacing = None
                self._admit(order, replacing, now, decision_id)
            case FillReported(fill, now, booked, renewal, untripped, marked):
                valid = validate_fill(fill, journaled=True)
                if booked:
                    replayed = apply_fill(self.book, self.orders, valid, now,
                                          self._band(valid.symbol), marked)
                    if replayed.conflict or replayed.duplicate:
                        # Its id remembered longer than the live process did (a retention
                        # raised since: review 37p): booked, as it was.
                        self.orders.fill_ids.pop((valid.account, valid.fill_id))
                        replayed = apply_fill(self.book, self.orders, valid, now,
                                              self._band(valid.symbol), marked)
                    if replayed.refused:
                        raise ValueError(f"fill {valid.fill_id} was booked, and the book"
                                         " replayed cannot hold it: the journal does not fit")
                if untripped:
                    self.orders.untripped[(valid.account, valid.fill_id)] = untripped
                if renewal:
                    self._renewal_owed_in_replay(valid.account, renewal)
            case MetricReported(scope, metric, value, now, accepted):
                if accepted is False:
                    self.refused_at_cap = True
                elif scope.kind is not ScopeKind.GLOBAL and not nameable(scope.id):
                    # No report, tick or order names it again: its feed, watched, would go
                    # stale and trip a scope no reset names (review 60a). A trip it made is
                    # applied below, and fails the start (recovery.respelled).
                    self.unnamed_in_replay.add(scope)
                else:  # accepted None: the cap in force now decides
                    self.plan_report(scope, metric, value, now, capped=accepted is None)
            case OrderUpdated(update):
                self.update_order(update, replay=True)
            case PositionsSynced(account, equity, positions, open_orders, now, included,
                                 left_out):
                self._sync_positions(account, equity, list(positions),
                                     None if open_orders is None else list(open_orders), now,
                                     list(included), left_out, replay=True)
            case OrdersCleared(account, client_order_ids):
                self.clear_working_orders(account, list(client_order_ids), replay=True)
            case HeartbeatSeen(executor_id, scope, ttl_s, now, deregister, owner):
                if deregister:  # it was allowed when it was made
                    self.heartbeats.deregister(executor_id, scope, override=True)
                    self.deregistered_in_replay.add((executor_id, scope))
                else:
                    self.heartbeats.beat(executor_id, scope, ttl_s, now, owner)
                    self.deregistered_in_replay.discard((executor_id, scope))
            case ResetAsked(scope, reason, force, actor, now, latches, void, credential,
                            expires_at):
                try:  # its transitions count
                    self.plan_reset(scope, reason, force, actor, now, latches,
                                    void=void, credential=credential, expires_at=expires_at)
                except ResetRefused:
                    pass
                except InvalidArgument as error:
                    self.refused_in_replay.append(f"{actor}'s reset of {scope}: {error}")
            case TimersRan(now, horizons):
                self.expire(now, horizons)
            case Restored(now, version):
                self.catch_up(list(transitions), version, now)
                return
            case Triggered() | ClockRead() | None:
                pass
        self.apply(transitions)

    def _renewal_owed_in_replay(self, account: str, reason: str) -> None:
        """An unchecked fill came within its account's latch's second: the renewal it is
        owed, as the live process owed it (`_unrenewed`, which plan_timers checks against
        the latch; the actor is not journaled: the sidecar's)."""
        scope = Scope(ScopeKind.ACCOUNT, account)
        self._unrenewed.setdefault(scope, {})[Breaker.UNCHECKED_ORDER] = (
            self.breakers.rule(scope, Breaker.UNCHECKED_ORDER).mode, reason, SYSTEM_ACTOR)

    def catch_up(self, transitions: list[Transition], version: int, now: float) -> None:
        """The store's transitions after this engine's version (start-up, when the journal
        ends before the store): applied in order if each is after the one before, the first
        after this engine's version (versions a store write never took may lie between:
        review 41a), else (history pruned) taken as the latched state as they are: restore().
        Either way the version becomes the store's `version`, and the breakers they latch
        have no evidence: applied in order, each trip's latches are assumed to hold as of
        when it set them, so a reset after it lifts what it lifted live, and a checked reset
        or a re-arm ends the assumption of what it lifted (reviews 48a, 48b)."""
        versions = [self.version] + [t.version for t in transitions]
        if not all(a < b for a, b in zip(versions, versions[1:])):
            self.restore(transitions, version, now)
            return
        for transition in transitions:
            before = self._current.get(transition.scope)
            for latch in transition.held():
                if latch.version == transition.version:  # set by it
                    self._assume(transition, latch, latch.since)
            self.apply([transition])
            self._assumed_clear(before, transition)
        self.version = max(version, self.version)

    def restore(self, current: Iterable[Transition], version: int, now: float) -> None:
        """Load the latched state: the latest transition of every non-ARMED scope. What
        the breakers had seen is gone, so each latched breaker's condition counts as
        holding until fresh samples clear it: no reset or auto re-arm on no evidence."""
        for transition in current:
            self._set(transition)
            for latch in transition.held():
                self._assume(transition, latch, now)
        self.version = max(version, self.version)

    def _assume(self, transition: Transition, latch: Latch, now: float) -> None:
        """`latch`, of `transition`, holds on no evidence (as of `now`). An executor's loss
        is assumed of every executor of the scope (the journal may not show which lapsed:
        reviews 48f, 48g); a checked reset or a re-arm gives each its last beat known
        (Heartbeats.rearm). GLOBAL's latch at the evidence cap, where the transition that
        set it is not at hand to say so, is taken to be one (48d): a sample refused at
        the cap may be lost with the journal (48b), so only a forced reset resumes
        GLOBAL."""
        if latch.name == Breaker.HEARTBEAT_LOST:
            self.heartbeats.assume_lapsed(transition.scope)
        elif latch.name in DEFAULT_RULES:
            self.breakers.assume_holding(transition.scope, latch.name, latch.since, now)
        elif transition.scope == GLOBAL and latch.name == LatchKind.SYSTEM and (
                AT_CAP in transition.reason or latch.version != transition.version):
            self.refused_at_cap = True

    def _assumed_clear(self, before: Transition | None, transition: Transition) -> None:
        """A reset checked (not forced, and not a drill's alone) or a re-arm: the breakers
        it lifted did not hold, nor, if it resumed the scope, any breaker of it; nor was
        a sample refused at the cap if it lifted GLOBAL's system latch (review 48d); an
        executor's loss it lifts, the executors beat (lost with the journal), as a reset
        has them (48g: never watched again)."""
        lifted = {latch.name for latch in before.held()} - {
            latch.name for latch in transition.held()} if before else set()
        if transition.cause is Cause.REARM or (transition.cause is Cause.RESET
                                               and not transition.forced
                                               and lifted - {LatchKind.DRILL}):
            for name in DEFAULT_RULES if not transition.held() else lifted:
                self.breakers.assumed_clear(transition.scope, name, transition.time)
            if transition.scope == GLOBAL and LatchKind.SYSTEM in lifted:
                self.refused_at_cap = False
            if transition.cause is Cause.REARM and Breaker.HEARTBEAT_LOST in lifted:
                self.heartbeats.rearm(transition.scope, transition.time)  # as a reset does

    def _set(self, transition: Transition) -> None:
        scope = transition.scope
        table = self._by_kind[scope.kind]
        if transition.state is State.ARMED:
            self._current.pop(scope, None)
            table.drop(scope.id)
        else:
            self._current[scope] = transition
            table.put(scope.id, transition)
        self._timed_due.discard(scope)
        if self._timed_by(transition):
            self._timed.add(scope)
            self._timed_due.schedule(scope, NEXT_RUN)  # the run says when next
        else:
            self._timed.discard(scope)

    def _timed_by(self, transition: Transition) -> bool:
        """Whether time alone may change the state this transition leaves: a re-arm delay
        that ends, or a latch of a breaker that re-arms by itself (`_auto_rearming`)."""
        if transition.state is State.COOLING_DOWN:
            return transition.rearm_at is not None
        return transition.state in RESTRICTING and any(
            self._rearms_by_itself(transition.scope, latch) for latch in transition.held())


def _holds_latch(transition: Transition, trip: Transition) -> bool:
    """Whether `transition` leaves its scope holding the latch `trip` set, as strict."""
    name = latch_name(trip.cause, trip.breaker, trip.drill)
    wanted = next((latch.state for latch in trip.held() if latch.name == name), trip.state)
    return any(latch.name == name and SEVERITY[latch.state] >= SEVERITY[wanted]
               for latch in transition.held())


def _most_severe(by_kind: dict[ScopeKind, ScopeTable], order: Order,
                 worst: Transition | None) -> Transition | None:
    """The most severe of `worst` and the transitions in `by_kind` on the order's scopes."""
    for current in _covering(by_kind, order):
        if worst is None or SEVERITY[current.state] > SEVERITY[worst.state]:
            worst = current
    return worst


def _covering(by_kind: dict[ScopeKind, ScopeTable], order: Order) -> list[Transition]:
    """The transitions in `by_kind` of the order's scopes, and of every scope whose id
    looks like one of the order's (the same skeleton: a halt of "∆-hedge" typed on a
    Mac, an increment sign, covers the strategy "Δ-hedge", a Greek delta)."""
    covering = by_kind[ScopeKind.GLOBAL].covering(GLOBAL.id)
    covering += by_kind[ScopeKind.ACCOUNT].covering(order.account)
    covering += by_kind[ScopeKind.STRATEGY].covering(order.strategy)
    covering += by_kind[ScopeKind.SYMBOL].covering(order.symbol)
    return covering


class ScopeTable:
    """The restricting transitions of one kind of scope, by id and by what the id looks
    like (`looks`: UTS 39's skeleton), so that a check finds the scopes that look like its
    own in one lookup each, however many are restricted."""

    def __init__(self, kind: ScopeKind) -> None:
        self._symbols = kind is ScopeKind.SYMBOL
        self._by_id: dict[str, Transition] = {}
        self._by_look: dict[str, dict[str, Transition]] = {}

    def _keys(self, scope_id: str) -> list[str]:
        """What the id looks like (`ids.looks`): the keys it is found by."""
        return looks(scope_id, self._symbols)

    def get(self, scope_id: str) -> Transition | None:
        return self._by_id.get(scope_id)

    def put(self, scope_id: str, transition: Transition) -> None:
        self._by_id[scope_id] = transition
        for look in self._keys(scope_id):
            self._by_look.setdefault(look, {})[scope_id] = transition

    def drop(self, scope_id: str) -> None:
        if self._by_id.pop(scope_id, None) is not None:
            for look in self._keys(scope_id):
                alike = self._by_look[look]
                del alike[scope_id]
                if not alike:
                    del self._by_look[look]

    def clear(self) -> None:
        self._by_id.clear()
        self._by_look.clear()

    def covering(self, scope_id: str) -> list[Transition]:
        """The transition of `scope_id` first (it is named on a tie of severity: review
        61b), then those of the ids that look like it."""
        if not self._by_id:
            return []
        own = self._by_id.get(scope_id)
        covering = [own] if own is not None else []
        seen = {scope_id}
        for look in self._keys(scope_id):
            for other, transition in self._by_look.get(look, {}).items():
                if other not in seen:
                    seen.add(other)
                    covering.append(transition)
        return covering


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat(timespec="seconds")
