"""test_replace_races.py's venue model, widened (review 30e): snapshots while replaces are
in flight, replaces of replaces in flight, venue rejections of any request, drop-copy
fills sent twice, operator clears of orders the venue has ended, and expiry with a short
retention while time passes.

The venue is the same FIFO FIX venue (test_replace_races.py's docstring), with these
additions:

- a replace may name an order still on its way (a replacement in flight: a chain of
  replaces), as long as no other request names it; the venue takes it if its original
  is live when it comes, else rejects it. It may also reject any request at the head of
  its queue. An order whose leaves reach 0 is done (a replace of it is too late).
- a snapshot may come at any time: the venue's position, the orders it has live (never
  those still on their way to it, or, with `sent`, only the new orders among those),
  and per order the cumulative fills the position counts.
- the operator clears, by name, an order the venue has ended while the sidecar still
  has it working.
- time passes, and the timers forget what is past a short retention.

Invariants (as test_replace_races.py): the worst case is never below the truth; no fill
of an order the sidecar allowed trips the account; the position counts no fill twice; a
replay of the journal (as the service journals: TimersRan only when expire changed
something) ends where the engine is.

Excluded by design, and nothing else:

- a fill that trips after the operator cleared its order (or an order the cleared one
  replaced) while it was undelivered: engine.clear_working_orders says such a fill trips
  (review 30), and until it comes it is in neither the position nor a reservation;
- a fill that trips when its order's record, or one down its chain, has been forgotten
  (Known gaps 10, "Retention counts from when an order was allowed ... After that such
  a fill trips the account, never counts twice silently");
- while an order still on its way is left out of a snapshot and its venue word has not
  come, its chain's potential (design.md, the order's lifecycle: "an unlisted working
  order ends ... the venue's ORDER_STATUS_OPEN for it makes it work again").

A trip so excused ends the run (the account is tripped; its book is no longer a claim).

Left out by preconditions, each a failure found by this model and kept below as an xfail
(set the named environment variable to let the model reach it):

- a repeat of a fill stamped with a later id of its chain that the sidecar does not know
  as one chain (XFAIL_UNLINKED: test_a_restamped_repeat_*; docs/design.md, Known gaps 10).

Two more it found are fixed, and the model reaches them (test_order_lifecycle.py has each
as a unit test): fills of an owed order delivered out of the venue's order around its
replace, and an operator's clear of a replaced original held for owed fills.

HUNT (examples), STEPS and FORKS=0 tune a run.
"""

from __future__ import annotations

import os

import pytest
from hypothesis import Phase, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from ess_sidecar.domain.commands import Admitted, FillReported, OrdersCleared, OrderUpdated, \
    PositionsSynced, TimersRan
from ess_sidecar.domain.limits import LimitSettings
from ess_sidecar.domain.orders import Fill, IncludedFills, OpenOrder, Order, OrderStatus, \
    OrderUpdate, PositionSnapshot, Side

from .conftest import ACCOUNT, STRATEGY, SYMBOL, T0, make_engine, run
from .test_replace_races import EQUITY, Venue, VenueOrder, _book

RETENTION = 10.0
FORKS = os.environ.get("FORKS", "1") != "0"
XFAIL_UNLINKED = bool(os.environ.get("XFAIL_UNLINKED"))
LIMITS = LimitSettings(max_orders_per_second=0, duplicate_identical_orders=0,
                       order_id_retention_s=RETENTION)


class WideReplaceRaces(Venue, RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.engine = make_engine(limits=LIMITS, equity=EQUITY)
        self.journal: list = []
        self.replayed = make_engine(limits=LIMITS, equity=EQUITY)
        self.replayed_to = 0
        self.venue: dict[str, VenueOrder] = {}
        self.queue: list[str] = []
        self.reports: list[OrderUpdate] = []
        self.drop: list[Fill] = []
        self.delivered: list[Fill] = []
        self.filled = 0.0
        self.ids = 0
        self.now = T0
        self.over = ""  # why the run ended: an excused trip
        self.excused: set[str] = set()  # fill ids a clear lets trip
        self.unlisted: set[str] = set()  # on their way, left out of a snapshot, no word yet
        self.heard_end: set[str] = set()  # orders the executor heard ended or rejected
        self.crossed_a_snapshot: set[str] = set()  # originals whose replace a snapshot ended

    def _check(self, quantity: float, replaces: str = "") -> None:
        candidate = Order(ACCOUNT, STRATEGY, SYMBOL, Side.BUY, quantity, 100.0, False,
                          self._id("o"), replaces)
        decision = self.engine.check(candidate, self.now)
        if decision.allowed:
            self.journal.append(Admitted(candidate, self.now, decision.decision_id))
            sent = self.venue[candidate.client_order_id] = VenueOrder(
                candidate.client_order_id, quantity, replaces)
            if replaces:
                sent.chain = self.venue[replaces].chain
                sent.known = sum(o.told for o in self._chain(sent.chain))
            sent.sent_at, sent.taken, sent.seq = self.now, False, self.ids
            # Whether the sidecar took it as the replace it is (it judges one of an order
            # it has ended, say unlisted by a snapshot while on its way, as a new order)
            sent.linked = bool(self.engine.orders.exact(ACCOUNT, sent.coid).replaces)
            self.queue.append(candidate.client_order_id)

    # -- the executor ------------------------------------------------------------------------

    @precondition(lambda self: not self.over)
    @rule(quantity=st.sampled_from([1.0, 4.0, 10.0]))
    def new_order(self, quantity):
        self._check(quantity)

    def _replaceable(self) -> list[VenueOrder]:
        """Orders the executor may replace: not heard ended, and not named by a request
        of its own it has not heard rejected (one replace in flight per order)."""
        named = {o.replaces for o in self.venue.values()
                 if o.replaces and o.coid not in self.heard_end}
        return [o for o in self.venue.values()
                if o.coid not in self.heard_end and o.coid not in named
                and not (o.state == "dead" and o.coid in self.heard_end)]

    @precondition(lambda self: not self.over)
    @rule(pick=st.integers(0, 9), quantity=st.sampled_from([1.0, 4.0, 10.0, 15.0]))
    def replace(self, pick, quantity):
        """Of a live order, or of a replacement still on its way (a chain in flight)."""
        orders = self._replaceable()
        if orders:
            target = orders[pick % len(orders)]
            if target.state == "pending":
                event("a replace of a replace in flight")
            self._check(quantity, target.coid)

    @precondition(lambda self: not self.over and FORKS)
    @rule(pick=st.integers(0, 9), quantity=st.sampled_from([1.0, 4.0, 10.0, 15.0]))
    def replace_again(self, pick, quantity):
        """An order replaced again, by name, while its first replace is on its way (a
        fork: the venue takes one and rejects the other; the sidecar judges the second as
        a new order, Known gaps 10's exotic chains: a reservation may stick, a denial)."""
        named = {o.replaces for o in self.venue.values()
                 if o.replaces and o.coid not in self.heard_end}
        orders = [o for o in self.venue.values()
                  if o.coid in named and o.coid not in self.heard_end]
        if orders:
            event("a fork")
            self._check(quantity, orders[pick % len(orders)].coid)

    # -- the venue ---------------------------------------------------------------------------

    @precondition(lambda self: not self.over and self.queue)
    @rule(reject=st.booleans())
    def venue_takes_the_next_request(self, reject):
        order = self.venue[self.queue.pop(0)]
        target = self.venue.get(order.replaces)
        if reject or (order.replaces and target.state != "live"):
            order.state = "dead"
            self.reports.append(OrderUpdate(ACCOUNT, order.coid, OrderStatus.REJECTED, None,
                                            0.0))
            return
        order.taken = True
        if target is not None:
            target.state = "dead"
            self.reports.append(OrderUpdate(ACCOUNT, target.coid, OrderStatus.CANCELLED,
                                            None, target.cum))
        order.leaves = max(order.quantity - self._crossed(order), 0.0)
        order.state = "live" if order.leaves > 0.0 else "dead"
        self.reports.append(OrderUpdate(ACCOUNT, order.coid, OrderStatus.OPEN, order.leaves,
                                        0.0))

    @precondition(lambda self: not self.over and self._live())
    @rule(pick=st.integers(0, 9), part=st.sampled_from([0.5, 1.0]))
    def venue_fills(self, pick, part):
        live = self._live()
        order = live[pick % len(live)]
        quantity = order.leaves * part
        order.leaves -= quantity
        order.cum += quantity
        if order.leaves <= 0.0:
            order.state = "dead"  # filled: too late to replace or cancel
        self.filled += quantity
        self.drop.append(Fill(ACCOUNT, STRATEGY, SYMBOL, Side.BUY, quantity, 100.0,
                              order.coid, self._id("f")))
        self.reports.append(OrderUpdate(ACCOUNT, order.coid, OrderStatus.OPEN, order.leaves,
                                        order.cum))

    @precondition(lambda self: not self.over and self._live())
    @rule(pick=st.integers(0, 9), word=st.booleans(), expired=st.booleans())
    def venue_cancels(self, pick, word, expired):
        live = self._live()
        order = live[pick % len(live)]
        order.state = "dead"
        status = OrderStatus.EXPIRED if expired else OrderStatus.CANCELLED
        self.reports.append(OrderUpdate(ACCOUNT, order.coid, status, None,
                                        order.cum if word else None))

    # -- deliveries to the sidecar ------------------------------------------------------------

    @precondition(lambda self: not self.over and self.reports)
    @rule()
    def the_next_report_arrives(self):
        update = self.reports.pop(0)
        if update.filled_quantity is not None:
            self.venue[update.client_order_id].told = update.filled_quantity
        if update.status is not OrderStatus.OPEN:
            self.heard_end.add(update.client_order_id)
        self.unlisted.discard(update.client_order_id)
        if self.engine.update_order(update):
            self.journal.append(OrderUpdated(update))

    def _linked(self, order: VenueOrder, ancestor: VenueOrder) -> bool:
        """Whether the sidecar took every replace from `ancestor` down to `order` as one.
        Not so, a repeat stamped with the later id is another fill to it: a false trip
        (f2_restamped_repeat_false_trip.py), or, once the original's record and fill id
        are forgotten, counted twice (f1_restamped_repeat_counts_twice.py)."""
        ledger, walk = self.engine.orders, order
        while walk is not ancestor:
            if not walk.linked:
                return False
            walk = self.venue[walk.replaces]
        # and a snapshot since has not undone the replace (one that lists the original and
        # its replacement on its way, with `sent` "all", makes the original work again)
        record = ledger.exact(ACCOUNT, ancestor.coid)
        while record is not None and record.client_order_id != order.coid:
            record = ledger.exact(ACCOUNT, record.replaced_by) if record.replaced_by else None
        return record is not None

    def _descends(self, order: VenueOrder, ancestor: VenueOrder) -> bool:
        while order.replaces:
            order = self.venue[order.replaces]
            if order is ancestor:
                return True
        return False

    def _forgotten(self, coid: str) -> bool:
        """Whether the order, or one down its chain of replaces, is forgotten."""
        ledger = self.engine.orders
        record = ledger.exact(ACCOUNT, coid)
        while record is not None and record.replaced_by:
            record = ledger.exact(ACCOUNT, record.replaced_by)
        return record is None

    @precondition(lambda self: not self.over and (self.drop or self.delivered))
    @rule(pick=st.integers(0, 9), again=st.booleans(), latest=st.booleans())
    def a_fill_arrives(self, pick, again, latest):
        """A fill, or one delivered before sent again (a drop copy's repeat, stamped with
        the chain's latest order the venue took, as a venue may)."""
        pool = self.delivered if (again or not self.drop) and self.delivered else self.drop
        each = pool[pick % len(pool)]
        if pool is self.drop:
            self.drop.remove(each)
            self.delivered.append(each)
        elif latest:
            order = self.venue[each.client_order_id]
            later = [o for o in self._chain(order.chain) if o.taken and o.seq > order.seq
                     and self._descends(o, order) and (XFAIL_UNLINKED or self._linked(o, order))]
            if later:
                event("a repeat stamped with a later id")
                each = each._replace(client_order_id=later[-1].coid)
        forgotten = self._forgotten(each.client_order_id)
        plan, outcome = self.engine.plan_fill(each, self.now)
        run(self.engine, plan)
        if not (outcome.refused or outcome.conflict
                or (outcome.duplicate and not outcome.unchecked)):
            self.journal.append(FillReported(each, self.now))
        if outcome.unchecked:
            if each.fill_id in self.excused:
                self.over = f"cleared: {outcome.unchecked}"
            elif forgotten:
                self.over = f"forgotten: {outcome.unchecked}"
            elif each.client_order_id in self.crossed_a_snapshot:
                self.over = f"crossed a snapshot: {outcome.unchecked}"
            else:
                raise AssertionError(outcome)
            event(self.over.split(":")[0])

    @precondition(lambda self: not self.over)
    @rule(listed=st.booleans(), sent=st.sampled_from(["", "new", "all"]))
    def a_snapshot_arrives(self, listed, sent):
        """The venue now: its position, the orders it has live (with `sent`, the new
        orders on their way too, as an executor may add them), and per order the fills
        its position counts."""
        positions = (PositionSnapshot(STRATEGY, SYMBOL, self.filled, 100.0),)
        if listed and any(self.venue[c].replaces for c in self.queue):
            event("a snapshot while a replace is in flight")
        working = [(o.coid, o.leaves) for o in self._live() if o.leaves > 0.0]
        if sent:
            working += [(coid, self.venue[coid].quantity) for coid in self.queue
                        if sent == "all" or not self.venue[coid].replaces]
        open_orders = tuple(OpenOrder(coid, STRATEGY, SYMBOL, Side.BUY, leaves, 100.0)
                            for coid, leaves in working) if listed else None
        included = tuple(IncludedFills(o.coid, o.cum) for o in self.venue.values() if o.cum)
        self.engine.sync_positions(ACCOUNT, EQUITY, list(positions),
                                   None if open_orders is None else list(open_orders),
                                   self.now, list(included))
        self.journal.append(PositionsSynced(ACCOUNT, EQUITY, positions, open_orders,
                                            self.now, included))
        if listed:
            names = {coid for coid, _ in working}
            for coid in self.queue:
                record = self.engine.orders.exact(ACCOUNT, coid)
                if coid not in names and record is not None and record.unlisted:
                    self.unlisted.add(coid)
                    walk = self.venue[coid]
                    while walk.replaces:
                        self.crossed_a_snapshot.add(walk.replaces)
                        walk = self.venue[walk.replaces]

    @precondition(lambda self: not self.over and self._clearable())
    @rule(pick=st.integers(0, 9))
    def the_operator_clears_an_ended_order(self, pick):
        orders = self._clearable()
        order = orders[pick % len(orders)]
        ancestors = {order.coid}
        walk = order
        while walk.replaces:
            ancestors.add(walk.replaces)
            walk = self.venue[walk.replaces]
        self.excused |= {f.fill_id for f in self.drop if f.client_order_id in ancestors}
        self.engine.clear_working_orders(ACCOUNT, [order.coid])
        event("a clear")
        self.journal.append(OrdersCleared(ACCOUNT, (order.coid,)))

    def _clearable(self) -> list[VenueOrder]:
        ledger = self.engine.orders
        return [o for o in self.venue.values() if o.state == "dead"
                and (r := ledger.exact(ACCOUNT, o.coid)) is not None and r.working]

    @precondition(lambda self: not self.over)
    @rule(seconds=st.sampled_from([0.0, 2.0, 6.0, 11.0]))
    def time_passes(self, seconds):
        """Never so far that a request is on its way longer than the retention, or an order
        left out of a snapshot while on its way waits that long for its venue word (with a
        day's retention, neither happens; the model's is short)."""
        waiting = [self.venue[c].sent_at for c in (*self.queue, *self.unlisted)]
        if waiting and self.now + seconds - min(waiting) >= RETENTION:
            return
        self.now += seconds
        if self.engine.expire(self.now):
            event("expiry forgot or kept")
            self.journal.append(TimersRan(self.now))

    @rule()
    def idle(self):
        """Something to do once the run is over."""

    # -- what must hold ----------------------------------------------------------------------

    def _viable(self, order: VenueOrder) -> bool:
        """Whether a request on its way may still be taken."""
        while order.replaces:
            target = self.venue[order.replaces]
            if target.state == "dead":
                return False
            if target.state == "live":
                return True
            order = target
        return True

    def truth(self) -> float:
        """Every venue fill, plus what each chain could still fill (the most of its live
        order's leaves and of its requests on their way), less what is excused."""
        still = 0.0
        excluded = set(self.excused)
        for chain in {o.chain for o in self.venue.values()}:
            members = self._chain(chain)
            if any(o.coid in self.unlisted for o in members):
                names = {o.coid for o in members}
                excluded |= {f.fill_id for f in self.drop if f.client_order_id in names}
                continue
            most = 0.0
            for o in members:
                if o.state == "live":
                    most = max(most, o.leaves)
                elif o.state == "pending" and self._viable(o):
                    most = max(most, o.quantity - self._crossed(o))
            still += most
        excused = sum(f.quantity for f in self.drop if f.fill_id in excluded)
        return self.filled + still - excused

    def _sidecar(self) -> float:
        net = self.engine.book.account(ACCOUNT).nets.get(SYMBOL)
        return (net.position + net.buying) if net is not None else 0.0

    @invariant()
    def the_worst_case_is_never_below_the_truth(self):
        if not self.over:
            assert self._sidecar() + 1e-9 >= self.truth(), (self._sidecar(), self.truth())

    @invariant()
    def the_position_never_counts_a_fill_twice(self):
        if not self.over:
            net = self.engine.book.account(ACCOUNT).nets.get(SYMBOL)
            least = (net.position - net.selling) if net is not None else 0.0
            assert least <= self.filled + 1e-9, (least, self.filled)

    @invariant()
    def a_replay_of_the_journal_ends_where_the_engine_is(self):
        for command in self.journal[self.replayed_to:]:
            self.replayed.replay(command, ())
        self.replayed_to = len(self.journal)
        assert _book(self.replayed) == _book(self.engine)
        assert _everything(self.replayed) == _everything(self.engine)


_FIELDS = ("account", "client_order_id", "strategy", "symbol", "side", "quantity", "price",
           "time", "decision_id", "filled", "remaining", "replaced_by", "replaces", "pending",
           "owed_only", "leaves_given_up", "reported", "crossing", "unlisted", "venue_filled",
           "kept", "confirmed", "cap", "venue_ended", "leaves_stated", "leaves_cut",
           "fills_before_leaves")  # OrderRecord's slots (compiled: no __slots__ to read)


def _everything(engine) -> tuple:
    """Every field of every order record, in the ledger's order (expiry walks it), and the
    fill ids with when they were applied: what decides later runs, not only later checks."""
    ledger = engine.orders
    return ([(key, [getattr(r, name) for name in _FIELDS])
             for key, r in ledger.records.items()],
            list(ledger.fill_ids.items()), sorted(ledger.untripped))


WideReplaceRaces.TestCase.settings = settings(max_examples=int(os.environ.get("HUNT") or 800),
                                              stateful_step_count=int(os.environ.get("STEPS")
                                                                      or 100),
                                              deadline=None,
                                              **({"phases": (Phase.generate,)}
                                                 if os.environ.get("GENERATE_ONLY") else {}))
TestWideReplaceRaces = pytest.mark.timeout(600)(WideReplaceRaces.TestCase)


# -- the failures found (review 30e), as engine calls -------------------------------------

def _engine(retention: float = 86_400.0):
    return make_engine(limits=LimitSettings(max_orders_per_second=0,
                                            duplicate_identical_orders=0,
                                            order_id_retention_s=retention), equity=EQUITY)


def _order(coid: str, quantity: float, replaces: str = "") -> Order:
    return Order(ACCOUNT, STRATEGY, SYMBOL, Side.BUY, quantity, 100.0, False, coid, replaces)


def _fill(coid: str, quantity: float, fill_id: str) -> Fill:
    return Fill(ACCOUNT, STRATEGY, SYMBOL, Side.BUY, quantity, 100.0, coid, fill_id)


def _worst(engine) -> float:
    net = engine.book.account(ACCOUNT).nets[SYMBOL]
    return net.position + net.buying


def _unlisted_then_replaced(engine) -> None:
    """o1 on its way when a snapshot left it out (ended, unlisted); the venue takes it and
    the executor replaces it by o2, which the sidecar judges as a new order."""
    assert engine.check(_order("o1", 1.0), T0).allowed
    engine.sync_positions(ACCOUNT, EQUITY, [PositionSnapshot(STRATEGY, SYMBOL, 0.0, 100.0)],
                          [], T0, [])
    assert engine.check(_order("o2", 1.0, replaces="o1"), T0).allowed


@pytest.mark.xfail(strict=True, reason="review 30e: the replace of an order a snapshot ended"
                   " while on its way is judged new, so a repeat stamped with its id is"
                   " another fill to the sidecar (OrderLedger.applied_before/_one_chain)")
def test_a_restamped_repeat_of_a_fill_is_a_duplicate_after_an_unlisted_replace():
    engine = _engine()
    _unlisted_then_replaced(engine)
    _, outcome = engine.plan_fill(_fill("o1", 0.5, "f1"), T0)
    assert not outcome.unchecked
    _, outcome = engine.plan_fill(_fill("o2", 0.5, "f1"), T0)  # stamped with the latest id
    assert outcome.duplicate and not outcome.unchecked


@pytest.mark.xfail(strict=True, reason="review 30e: once o1 and its fill id are forgotten,"
                   " the restamped repeat is booked to o2 again, silently")
def test_a_restamped_repeat_never_counts_twice_after_expiry():
    engine = _engine(retention=10.0)
    _unlisted_then_replaced(engine)
    run(engine, engine.plan_fill(_fill("o1", 0.5, "f1"), T0)[0])
    engine.update_order(OrderUpdate(ACCOUNT, "o1", OrderStatus.CANCELLED, None, 0.5))
    engine.update_order(OrderUpdate(ACCOUNT, "o2", OrderStatus.OPEN, 0.5, 0.0))
    engine.expire(T0 + 11.0)
    plan, outcome = engine.plan_fill(_fill("o2", 0.5, "f1"), T0 + 11.0)
    run(engine, plan)
    position = engine.book.account(ACCOUNT).nets[SYMBOL].position
    assert position == 0.5 or outcome.unchecked  # counted once, or tripped
