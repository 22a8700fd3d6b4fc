"""The order lifecycle: every allowed order is a working order until evidence ends it.

An allowed order is recorded under (account, client_order_id) and reserves its quantity in
the book's legs. It ends only on evidence: fills for its quantity, an order update
(cancelled, rejected, expired), a SyncPositions snapshot of open orders that no longer
lists it, a replace, or an operator clearing it; never on a timer. Records of ended orders
are kept for `order_id_retention_s`, so a reused client_order_id is a duplicate and a late
fill is checked against what was allowed.

Evidence can only add to what is reserved, never to what was allowed: a snapshot that lists
more than is reserved reserves more, and a fill beyond the quantity the check allowed is
still unchecked. A replace names the one order it replaces, and keeps its strategy, symbol
and side; a replaced order's fills go to its successor, but its updates do not: a
cancel of the original says nothing of the order that replaced it. A replacement the
venue rejected leaves the original working, as it was."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Final

from .book import Book, Leg
from .errors import InvalidArgument
from .oldest import expired_run
from .orders import Fill, OpenOrder, Order, Side

ADOPTED: Final = "adopted"  # decision_id of an open order first seen in a snapshot

INFINITY: Final = float("inf")

# A fill may exceed what remains by this fraction of the order (float sums of partials).
FILL_TOLERANCE: Final = 1e-9


def what_fill(fill: Fill) -> int:
    """The strategy, symbol and side of a fill, as a hash (one int per id kept). With its
    order (the same, or one of its replace chain: a venue may stamp the latest id) and
    its quantity (within FILL_TOLERANCE: two feeds may add partials differently), they
    make a fill the one it is: the same execution reported twice (the executor and a
    drop copy) says the same. Its price is left out: two feeds may print it differently."""
    return hash((fill.strategy, fill.symbol, fill.side))


class OrderRecord:
    """One order the sidecar allowed. A plain class with its own __init__: a dataclass's
    generated one is Python code even when the domain is compiled, and one is made per
    allowed order."""

    __slots__ = ("account", "client_order_id", "strategy", "symbol", "side", "quantity",
                 "price", "time", "decision_id", "filled", "remaining", "replaced_by",
                 "replaces", "pending", "owed_only", "leaves_given_up", "reported",
                 "crossing", "unlisted", "venue_filled", "kept", "confirmed", "cap",
                 "venue_ended", "leaves_stated", "leaves_cut", "fills_before_leaves",
                 "owed_stated", "cleared_owed", "held_price", "venue_price",
                 "crossing_released", "crossing_room", "leaves_over", "confirmed_late",
                 "owed_late", "charged_late", "released_here", "restood", "final_filled",
                 "cleared", "room_capped", "said_live", "said_room", "left_out")

    def __init__(self, account: str, client_order_id: str, strategy: str, symbol: str,
                 side: Side, quantity: float, price: float, time: float, decision_id: str,
                 filled: float = 0.0, remaining: float = 0.0, replaced_by: str = "",
                 replaces: str = "") -> None:
        self.account, self.client_order_id = account, client_order_id
        self.strategy, self.symbol, self.side = strategy, symbol, side
        self.quantity = quantity  # as allowed
        self.price, self.time, self.decision_id = price, time, decision_id
        self.kept = time  # its retention counts from here (a snapshot naming it renews it)
        self.filled = filled  # fills counted against it (a replacement: also those that
        # crossed the replace, named after the order it replaced)
        self.reported = 0.0  # fills reported under its own client_order_id
        self.venue_filled = 0.0  # the most any update's filled_quantity said (it only grows)
        self.final_filled = -1.0  # its filled_quantity when the venue ended it (-1: unsaid)
        self.remaining = remaining  # reserved; 0 once ended
        self.replaced_by = replaced_by  # the order that took its place
        self.replaces = replaces  # the order whose place it took
        # Part of `remaining`: fills the venue counted (an update's filled_quantity) that
        # were not reported yet. A replace or a snapshot keeps it reserved; its fills
        # take it down first, and nothing else does but an operator's clear.
        self.pending = 0.0
        # Of `pending`: fills the venue said it was owed once it was replaced. The
        # replacement's quantity (its leaves) was judged without them known, so they are
        # the chain's: reserved here until they come, then charged to the chain's head
        # (lifecycle._charge_late; review 38j: with the head's room whole, the chain could
        # fill them twice untripped). A later replace was judged with them: none then.
        self.owed_late = 0.0
        # What such fills of orders before it took off its room, by order (None: none): a
        # rejection of it passes them on to the order it replaced, but for that order's
        # own (review 39e: lost, a rejection gave the chain their room back).
        self.charged_late: dict[str, float] | None = None
        # Works on only for its owed fills (replaced, or missing from a snapshot), having
        # given up `leaves_given_up`: a rejected replace gives them back (unreplace).
        self.owed_only = False
        self.leaves_given_up = 0.0
        # Of those, what a snapshot had listed beyond what it may fill (reserved only): a
        # rejected replace gives them back too (review 36b: cut to what the check allowed,
        # an order was allowed into the room of leaves the venue still had).
        self.leaves_over = 0.0
        # A replacement smaller than the leaves of the order it replaced: the part of its
        # reservation that covers the original's leaves filling while the replace is in
        # flight, and of that, `crossing_room`, what it may also fill (the original's
        # leaves within what it was allowed; leaves a snapshot listed beyond that are
        # reserved only). Both gone once the venue's word on it comes (confirm).
        self.crossing = 0.0
        self.crossing_room = 0.0
        # What confirmations took off `crossing` unfilled (its own, or those of the orders
        # it replaced, passed on): a stale listing of an order before it in its chain may
        # give it back, never more (OrderLedger.restand).
        self.crossing_released = 0.0
        # What its own confirmation took off the room for the leaves of the order it
        # replaced (passed down with `crossing_released`, it stays here): late fills of
        # that order, or of one before it, may have crossed in it
        # (OrderLedger.take_released; review 39j: room released for an earlier order's
        # leaves took a later order's fills).
        self.released_here = 0.0
        # Room a stale listing made it hold again since its last confirmation (restand),
        # by the order whose `released_here` it was taken from: that confirmation gives
        # it back to them (review 39q: credited to the head, it was counted twice; 39r:
        # not given back, the head's own was lost, and an honest fill tripped).
        self.restood: dict[str, float] | None = None
        # Ended by a snapshot that did not list it (it may have been in flight then): the
        # venue's OPEN update for it makes it work again.
        self.unlisted = False
        # A snapshot left it out once (kept when its next word revives it): its room was
        # free for the orders allowed after that, so its fills are judged with them
        # (GuardEngine._late_fill)
        self.left_out = False
        # The venue's word on it came (an update, a fill under its own id, a snapshot): a
        # replacement it has confirmed is no longer one the venue may yet reject.
        self.confirmed = False
        # Confirmed only by a word that came once it was replaced already: maybe an
        # executor's echo of its request (review 38n), doubted if a rejection revives it.
        self.confirmed_late = False
        # The most it may fill in all once the venue ended it (the fills counted then,
        # and those it was owed): its room went to other orders, so a fill beyond trips.
        # Never lifted; what it was allowed (`quantity`) is kept.
        self.cap = INFINITY
        # Capped by the rejection of its replacement to the room that one held (its leaves
        # beyond were free for other orders: OrderLedger._unreplace): a rejection of it in
        # turn caps the order it replaced the same way.
        self.room_capped = False
        # A word of the venue said it lived (an update, a fill under its id, a snapshot
        # listing it: `confirm`), not only a snapshot that left it out.
        self.said_live = False
        # The room it held when a snapshot put its replace in flight again (restand) after
        # a word of the venue had said it lived: what its chain held in between, whatever
        # the snapshot made it hold since (review 42k).
        self.said_room = INFINITY
        # The venue said it ended (CANCELLED, REJECTED, EXPIRED). Of an order replaced
        # then, its fills went on to the chain, so it is capped only when a rejection of
        # the replace makes it the chain again (unreplace).
        self.venue_ended = False
        # The venue gave its own leaves (an update with remaining_quantity: `shrink`). A
        # replacement's exclude the fills of the orders it replaced, all of which came
        # before it lived; `leaves_cut` is how much less than it was allowed they were,
        # which such fills reported since may explain (`stated_after`): up to that
        # much, they are off no leaves.
        self.leaves_stated = False
        self.leaves_cut = 0.0
        # Such fills counted against it that were of an order before the one it
        # replaced: what it may fill grew by them, and a rejection passes that on.
        self.fills_before_leaves = 0.0
        # The most an update ever said it was owed (filled_quantity beyond the fills
        # reported): no one fill it is owed is larger (lifecycle._parts).
        self.owed_stated = 0.0
        # Replaced, it was cleared by an operator while it worked for fills it was owed:
        # they come to it still, beyond `cap` (GuardEngine._clear), until a rejection of
        # the replace gives it its leaves back (unreplace).
        self.cleared_owed = False
        # A replacement the venue has not confirmed: the limit price of the order it
        # replaced (or a snapshot listed that order at), if higher than its own: its
        # leaves may still fill at it. Counted in its legs' prices whenever it works,
        # again if it works again (a rejected replace of it); 0 once confirmed.
        self.held_price = 0.0
        # The price the last snapshot that listed it gave (the venue's, amended past the
        # guard; 0: none). It values its leaves where higher than `price`; `price` stays
        # the limit its fills are judged against, so an amend beyond the band still trips.
        self.venue_price = 0.0
        self.cleared = False  # ended by an operator's clear, not by the venue's word

    def __repr__(self) -> str:
        return (f"OrderRecord({self.account!r}, {self.client_order_id!r}, {self.strategy!r},"
                f" {self.symbol!r}, {self.side.name}, quantity={self.quantity:g},"
                f" remaining={self.remaining:g}, filled={self.filled:g},"
                f" decision_id={self.decision_id!r})")

    @property
    def working(self) -> bool:
        return self.remaining > 0.0

    @property
    def valued(self) -> float:
        """The price its leaves are valued at: its own, or the venue's if higher."""
        return self.price if self.price >= self.venue_price else self.venue_price

    @property
    def owed(self) -> float:
        """The part of its reservation that is fills owed (never more than it reserves)."""
        return min(self.pending, self.remaining)

    @property
    def unfilled(self) -> float:
        """How much more may be filled without exceeding what was checked (or what the
        venue's end of it left: `cap`)."""
        return min(self.quantity, self.cap) - self.filled

    def cap_fills(self) -> bool:
        """The venue ended this order: it may fill no more than the fills counted and
        those it is owed (`filled_quantity`, or an earlier update's), and a stale OPEN
        update does not revive it. Of an order replaced, the fills beyond go to the order
        that replaced it: capped only if a rejection of the replace makes it the chain
        again. Whether anything changed (the journal must then have the update)."""
        changed = not self.venue_ended or self.unlisted
        self.venue_ended, self.unlisted = True, False
        if self.replaced_by:
            return changed
        most = max(self.filled, self.reported) + self.owed
        if most < self.cap:
            self.cap, changed = most, True
        return changed


class OrderLedger:
    """Order records by (account, client_order_id), in the order they were allowed;
    counts of working orders per account and strategy; recent identical orders; fill ids
    already applied. Every collection is bounded by retention, windows and caps."""

    def __init__(self, book: Book, count_identical: bool = True) -> None:
        self._book = book
        self._count_identical = count_identical  # off with the identical-orders rule
        # Every remembered order, in the order allowed (a dict keeps insertion order).
        self.records: dict[tuple[str, str], OrderRecord] = {}
        # The working ones, per account, by client_order_id: reads walk only these.
        self._working: dict[str, dict[str, OrderRecord]] = {}
        self.per_strategy: dict[tuple[str, str], int] = {}
        self._identical: dict[tuple, int] = {}
        self._identical_times: deque[tuple[float, tuple]] = deque()
        # (account, fill_id): when it was applied (or last kept), its order, what it was
        # (`what_fill`), its quantity, and whether its order was forgotten (`expire`)
        self.fill_ids: dict[tuple[str, str], tuple[float, str, int, float, bool]] = {}
        # (account, fill_id) -> why: unchecked fills applied whose account's trip is not
        # stored yet. A retry of one (its write failed) trips again, not a duplicate.
        self.untripped: dict[tuple[str, str], str] = {}
        # account -> client_order_id -> fills not reported yet that a snapshot held in its
        # positions, booked to the order then: when they come, that much of them changes
        # nothing more.
        self.included: dict[str, dict[str, float]] = {}
        # (account, client_order_id): of those, orders some of whose fills held there are
        # beyond what the order may fill: their fills trip when they come.
        self.included_unchecked: set[tuple[str, str]] = set()

    # -- reading -----------------------------------------------------------------------------

    def accounts(self) -> Iterable[str]:
        """The accounts with working orders."""
        return self._working.keys()

    def strategies(self) -> Iterable[str]:
        """The strategies with working orders (in any account)."""
        return (strategy for _, strategy in self.per_strategy)

    def get(self, account: str, client_order_id: str) -> OrderRecord | None:
        """The order a fill for `client_order_id` belongs to: that one while it is owed
        fills (`pending`: even ended, when an operator cleared it, GuardEngine._clear),
        else the head of its chain of replaces (a fill can cross a replace on its way).
        lifecycle._parts may still send part of a fill of an owed order down the chain."""
        record = self.records.get((account, client_order_id))
        if record is None or record.pending > 0.0:  # its own fills still to come: its
            return record
        # Its fills now go to the order at the head of its chain: one between that is
        # owed fills is owed its own, not this order's (review 18).
        return self.head(record)

    def head(self, record: OrderRecord | None) -> OrderRecord | None:
        """The order at the head of `record`'s chain of replaces (None if forgotten)."""
        while record is not None and record.replaced_by:
            record = self.records.get((record.account, record.replaced_by))
        return record

    def stated_after(self, named: OrderRecord, record: OrderRecord) -> OrderRecord | None:
        """The first order after `named` down its chain of replaces, as far as `record`,
        whose leaves the venue gave (`leaves_stated`); None if there is none. Every fill
        of `named` came before that order lived, so those leaves leave it out, up to what
        they fell short of what the order was allowed (`leaves_cut`)."""
        while named is not record and named.replaced_by:
            successor = self.records.get((named.account, named.replaced_by))
            if successor is None or successor.leaves_stated:
                return successor
            named = successor
        return None

    def exact(self, account: str, client_order_id: str) -> OrderRecord | None:
        """The order `client_order_id` names, itself: what an update or a snapshot means."""
        return self.records.get((account, client_order_id))

    def to_replace(self, order: Order) -> OrderRecord | None:
        """The working order `order` replaces: exactly the one it names, if that still
        works; None if it does not (the order is then judged, and kept, as a new one: an
        order already replaced is not its successor). Raises InvalidArgument naming
        `replaces_client_order_id` if that order is of another strategy, symbol or side,
        which a cancel/replace never changes."""
        record = self.exact(order.account, order.replaces_client_order_id)
        if record is None or not record.working or record.replaced_by:  # replaced already:
            return None  # it works on only for the fills it is owed
        if (record.strategy, record.symbol, record.side) != \
                (order.strategy, order.symbol, order.side):
            raise InvalidArgument("replaces_client_order_id", f"order"
                                  f" {record.client_order_id!r} is {record.side.name}"
                                  f" {record.symbol!r} for strategy {record.strategy!r}: a"
                                  " replace keeps the strategy, symbol and side")
        return record

    def used(self, account: str, client_order_id: str) -> bool:
        return (account, client_order_id) in self.records

    def identical_count(self, order: Order, now: float, window_s: float) -> int:
        """How many orders identical to this one were allowed within `window_s` of `now`
        (review 40c: counted until the timers' next run, one just out of the window
        was denied)."""
        self._forget_identical(now - window_s)
        return self._identical.get(_identity(order), 0)

    def _forget_identical(self, until: float) -> int:
        """Forget the identical orders allowed at `until` or before; how many."""
        forgotten = 0
        times = self._identical_times
        while times and times[0][0] <= until:
            _, key = times.popleft()
            forgotten += 1
            left = self._identical[key] - 1
            if left:
                self._identical[key] = left
            else:
                del self._identical[key]
        return forgotten

    def working(self, account: str | None = None) -> Iterator[OrderRecord]:
        """Working orders (of one account), each account's oldest first."""
        if account is not None:
            return iter(list(self._working.get(account, {}).values()))
        return iter([r for working in self._working.values() for r in working.values()])

    def working_count(self, account: str) -> int:
        return len(self._working.get(account, ()))

    @property
    def per_account(self) -> dict[str, int]:
        """How many orders work in each account that has any."""
        return {account: len(working) for account, working in self._working.items()}

    # -- changing ----------------------------------------------------------------------------

    def reserve(self, order: Order, now: float, decision_id: str) -> OrderRecord:
        """Record an allowed order as working; its quantity counts at once."""
        record = self._track(OrderRecord(
            order.account, order.client_order_id, order.strategy, order.symbol, order.side,
            order.quantity, order.price, now, decision_id, remaining=order.quantity))
        if self._count_identical:
            key = _identity(order)
            self._identical[key] = self._identical.get(key, 0) + 1
            self._identical_times.append((now, key))
        return record

    def adopt(self, account: str, order: OpenOrder, now: float, decision_id: str) -> None:
        """Count an open order the sidecar did not allow (a snapshot listed it)."""
        self._track(OrderRecord(account, order.client_order_id, order.strategy, order.symbol,
                                order.side, order.remaining_quantity, order.price, now,
                                decision_id, remaining=order.remaining_quantity))

    def _track(self, record: OrderRecord) -> OrderRecord:
        """Remember a new working order and reserve its quantity in its legs."""
        self.records[(record.account, record.client_order_id)] = record
        self._count(record, +1)
        self._legs_reserve(record)
        return record

    def grow(self, record: OrderRecord, quantity: float) -> None:
        """A snapshot says more remains than reserved: reserve that much more. What was
        allowed stays as it was, so a fill beyond it is still unchecked."""
        record.remaining += quantity
        for leg in self._legs(record):
            leg.widen(record.side, quantity)

    def release(self, record: OrderRecord, quantity: float) -> None:
        """Take `quantity` off a working order's reservation; at zero it has ended."""
        if not record.working or not quantity > 0.0:
            return
        taken = min(quantity, record.remaining)
        record.remaining -= taken
        ended = record.remaining <= record.quantity * FILL_TOLERANCE
        if ended:
            # ended: no replace left to confirm
            record.remaining = record.crossing = record.crossing_room = 0.0
            self._count(record, -1)
        price = record.valued if ended else 0.0
        legs = self._legs(record)
        for leg in legs:
            leg.release(record.side, taken, ended, price)
        if ended:
            if record.held_price:  # no longer counted; held again if it works again
                for leg in legs:
                    leg.priced(record.side, record.held_price, False)
            self._book.account(record.account).tidy(record.strategy, record.symbol)
            self._book.forget_if_empty(record.account)

    @contextmanager
    def without(self, record: OrderRecord | None, owed: bool = True,
                unbooked: float = 0.0) -> Iterator[None]:
        """The book as if `record` (a working order being replaced) reserved nothing but
        the fills it is owed (none, if not `owed`), and `unbooked` of its fills that a
        snapshot's positions hold were not in them yet."""
        if record is None or not (record.working or unbooked > 0.0):
            yield
            return
        legs = self._legs(record)
        saved = [(leg.saved(), leg.position) for leg in legs]
        kept = record.owed if owed else 0.0  # owed fills: the replace keeps them
        # Its price stays counted: until the venue's word on the replace, its leaves may
        # still fill at it (the replacement holds it once allowed: replace()).
        for leg in legs:
            if record.working:
                leg.release(record.side, record.remaining - kept, ended=not kept > 0.0)
            if unbooked > 0.0:
                leg.move(-unbooked if record.side is Side.BUY else unbooked)
        try:
            yield
        finally:
            for leg, (before, position) in zip(legs, saved):
                leg.position = position  # exactly as it was, not moved back in floats
                leg.restore(before)

    def replace(self, original: OrderRecord, replacement: OrderRecord) -> None:
        """`replacement` (just allowed) takes the place of `original`: its later fills go
        to the replacement once those it was owed have come. Until the venue's word on
        the replacement, the original's leaves may still fill (the replace is in flight):
        where they exceed the replacement, the replacement also reserves the difference
        (`crossing`), and may fill it within what the original could (`crossing_room`),
        so the chain counts the larger of the two, as the original alone did, and such
        fills trip nothing. Until then, too, the replacement's legs count the original's
        limit price where it is higher (`held_price`): those leaves may fill at it
        (review 33: a replace down to 100 valued the leaves of an order at 109 at 100,
        and let another order past the limit)."""
        held = max(original.valued, original.held_price)
        # What its leaves may still fill: nothing of an order a snapshot adopted, which
        # reserves and never allows (review 41e: its replacement filled its leaves under
        # its own id, untripped)
        room = 0.0 if original.decision_id == ADOPTED else original.unfilled - original.owed
        left = original.quantity - max(original.filled, original.reported) - original.owed
        crossing = original.crossing, original.crossing_room
        self.end_but_pending(original)  # its leaves, crossing included, pass on
        original.leaves_over = max(original.leaves_given_up - left, 0.0)
        # An original itself on its way (a replace of a replace) keeps what it held for
        # the order it replaced: a rejection of this replace makes it the one in flight
        # again, for its own confirmation to let go (review 34g: ended with it, the
        # original revived reserved, and could fill, its predecessor's leaves for good).
        original.crossing, original.crossing_room = crossing
        original.replaced_by = replacement.client_order_id
        replacement.replaces = original.client_order_id
        for before in self._chain_to(original):  # reserved apart, they were judged with
            before.owed_late = 0.0  # `replacement`: not its room's (review 39e)
        # What a confirmation took off the original's room for the leaves of the order it
        # replaced passes on with those leaves: a stale listing of that order gives it to
        # the new head (review 34c: kept on the original, an echo's, a false trip).
        replacement.crossing_released = original.crossing_released
        original.crossing_released = 0.0
        extra = original.leaves_given_up - replacement.quantity
        if extra > 0.0:
            # Reserved as the venue has them, but filled no further than the original
            # could have been (review 34: a snapshot had listed more leaves than it was
            # allowed, and the replacement let the chain fill them untripped).
            replacement.crossing = extra
            replacement.crossing_room = min(max(room - replacement.quantity, 0.0), extra)
            replacement.quantity += replacement.crossing_room
            self.grow(replacement, extra)
        if held > replacement.valued and replacement.working:
            self._hold(replacement, held)

    def confirm(self, replacement: OrderRecord, said: bool = True) -> None:
        """The venue's word on a replacement (an update, a fill under its own id, a
        snapshot): the replace is done, and what it held for the original's leaves goes.
        `said`: a word said it lived (not a snapshot that left it out)."""
        replacement.confirmed, replacement.confirmed_late = True, False
        replacement.said_live = replacement.said_live or said
        if replacement.held_price:
            self._hold(replacement, 0.0)
        extra, room = replacement.crossing, replacement.crossing_room
        if extra > 0.0:
            replacement.crossing = replacement.crossing_room = 0.0
            replacement.crossing_released += room
            given = 0.0
            for coid, part in (replacement.restood or {}).items():
                held = self.records.get((replacement.account, coid))
                part = min(part, room - given)
                if held is not None and part > 0.0:
                    held.released_here += part
                    given += part
            replacement.restood = None
            replacement.released_here += room - given
            replacement.quantity -= room
            if not replacement.replaced_by:  # replaced in turn, its leaves and crossing
                # went down the chain: it reserves only fills it is owed, and they stay
                # (review 37b: released, an owed-only order ended uncounted, and a second
                # update's settle reserved it again: caps passed, later a KeyError); nor do
                # those of one a rejected replace made the head again (review 41e: its
                # first owed fill ended it, and the rest were neither reserved nor tripped)
                self.release(replacement, min(extra, max(replacement.remaining
                                                         - replacement.owed, 0.0)))

    def end(self, record: OrderRecord) -> None:
        record.pending = record.owed_late = 0.0
        self.release(record, record.remaining)

    def end_but_pending(self, record: OrderRecord) -> None:
        """The order's leaves are gone at the venue (replaced, or missing from a snapshot),
        but the fills it was still owed stay reserved until they come, and it ends with
        them. What the check allowed is unchanged: its fills are its own, within it."""
        record.leaves_given_up = record.remaining - record.owed
        if record.pending > 0.0:
            record.owed_only = True
            self.release(record, record.leaves_given_up)
        else:
            self.end(record)

    def unlist(self, record: OrderRecord) -> None:
        """A snapshot of the account's open orders left the order out: it ended, maybe
        while it was in flight to the venue (its next word revives it). Its room is free
        for the orders allowed after it, so when a fill of it comes all the same, it is
        judged with them, even once its next word has revived it
        (GuardEngine._late_fill)."""
        self.end_but_pending(record)
        record.unlisted = record.left_out = True

    def shrink(self, record: OrderRecord, most: float) -> None:
        """The venue's word that a working order may fill at most `most` more (its leaves,
        plus fills it counts that were not reported here yet): what it may fill in all and
        what it reserves shrink to that, never grow (that needs a check). At zero it ends;
        a fill beyond what it may fill then trips, as any fill beyond the check's. What
        it may fill is cut even when what it reserves is no more than `most` already (a
        snapshot listed its leaves: review 38h, an expiry after it capped nothing, and
        25 more filled unseen)."""
        # What it counted, or what was reported under its id (a replace may have taken
        # fills to the other order), and `most` more.
        before = record.quantity
        record.quantity = min(record.quantity, max(record.filled, record.reported) + most)
        record.leaves_cut += before - record.quantity
        if most < record.remaining:
            self.release(record, record.remaining - most)
        record.pending = record.owed
        record.leaves_stated = True

    def revive(self, record: OrderRecord, remaining: float) -> None:
        """An ended order is working after all (a snapshot lists it, or the replace that
        ended it was rejected): it reserves `remaining` again, and its own fills are its
        own again. What was allowed and filled stays as it was."""
        assert not record.working and remaining > 0.0
        record.replaced_by, record.owed_only, record.unlisted = "", False, False
        record.owed_late = 0.0  # the chain again: what it is owed is its own
        record.remaining = remaining
        self._count(record, +1)
        self._legs_reserve(record)

    def resize(self, record: OrderRecord, target: float) -> None:
        """Make a working order reserve `target` (grow, or release: at zero it ends)."""
        if target > record.remaining:
            self.grow(record, target - record.remaining)
        elif target < record.remaining:
            self.release(record, record.remaining - target)

    def relist(self, record: OrderRecord, leaves: float, owed: float) -> None:
        """An order working only for fills it is owed since a snapshot left it out is live
        at the venue after all: it reserves its leaves and those fills again."""
        record.owed_only = record.unlisted = False
        record.pending = owed
        self.resize(record, leaves + owed)

    def unreplace(self, replacement: OrderRecord) -> bool:
        """The venue rejected `replacement`, working or not (fills that crossed the replace
        may have ended it): it never worked, so it ends, and what it counted of fills
        named after the original was the original's. The original was never replaced: it
        works again with the leaves it gave up less those fills. So did none of the
        orders that replaced `replacement` in turn and have not traded under their own
        id: they replaced an order that never lived, and are rejected first, the last
        first (review 33f: A → B → C in flight, B rejected, gave A its leaves back while
        C kept its room, and both filled in full). True (the evidence was taken)."""
        later: list[OrderRecord] = []
        for successor in self.successors(replacement):
            if successor.reported > 0.0:
                break
            later.append(successor)
        for successor in reversed(later):
            self._unreplace(successor)
        return self._unreplace(replacement)

    def said_owed_before(self, record: OrderRecord) -> float:
        """What the orders `record` replaced were said to have filled (their updates'
        filled_quantity) beyond the fills reported under their ids: up its chain to the
        first whose leaves were stated, whose own cut explains the late fills of those
        before it (`stated_after`; review 41l: counted again here, the spare cut let a
        fill naming a middle order pass after its room had gone to another order)."""
        owed = 0.0
        for before in self._chain_to(record):
            if before is not record:
                owed += max(before.venue_filled - before.reported, 0.0)
                if before.leaves_stated:
                    break
        return owed

    def _chain_to(self, record: OrderRecord) -> Iterator[OrderRecord]:
        """`record` and the orders it replaced, up its chain (as far as remembered)."""
        named: OrderRecord | None = record
        while named is not None:
            yield named
            before = self.records.get((named.account, named.replaces)) \
                if named.replaces else None
            named = before if before is not None \
                and before.replaced_by == named.client_order_id else None

    def take_released(self, record: OrderRecord, most: float) -> dict[str, float]:
        """Take up to `most` of the room that confirmations of the orders after `record`
        released for their originals' leaves (`OrderRecord.released_here`), nearest
        first; what was taken, by order."""
        taken: dict[str, float] = {}
        for successor in self.successors(record):
            part = min(most, successor.released_here)
            if part > 0.0:
                successor.released_here -= part
                taken[successor.client_order_id] = part
                most -= part
        return taken

    def successors(self, record: OrderRecord) -> Iterator[OrderRecord]:
        """The orders that replaced `record` in turn, down its chain of replaces."""
        named = record
        while named.replaced_by:
            successor = self.records.get((named.account, named.replaced_by))
            if successor is None or successor.replaces != named.client_order_id:
                return
            yield successor
            named = successor

    def rejectable(self, record: OrderRecord) -> bool:
        """Whether a rejection (or an operator's clear) of `record`, a replacement, means
        it never lived, so that its original works again (unreplace): not if it, or an
        order that replaced it in turn, filled under its own id. Then the replace was
        done, and the rejection ends it like a cancel (review 29; 33f: the original's
        leaves given back beside a traded replacement's let the chain fill twice)."""
        return bool(record.replaces) and not record.reported > 0.0 \
            and not self.traded_since(record)

    def traded_since(self, record: OrderRecord) -> bool:
        """Whether an order down `record`'s chain of replaces filled under its own id: the
        replace of `record` was done, so a snapshot listing `record` was read before it,
        and reviving `record` would let the chain fill twice (review 33f)."""
        return any(successor.reported > 0.0 for successor in self.successors(record))

    def done_since(self, record: OrderRecord) -> bool:
        """Whether the venue had an order down `record`'s chain: one traded
        (`traded_since`), or the venue ended one, so a snapshot listing `record` was read
        before its replace was done (review 41e: reviving it beside an expired replacement
        holding its crossing fills, the chain filled its room twice, untripped)."""
        return any(successor.reported > 0.0 or successor.venue_ended and not successor.cleared
                   for successor in self.successors(record))

    def _unreplace(self, replacement: OrderRecord) -> bool:
        crossed = max(replacement.filled - replacement.reported, 0.0)
        # Confirmed, its room was all the chain held since: the original's leaves beyond
        # it were free for other orders (review 42d: an executor's echoed OPEN, then the
        # venue's rejection, and an order allowed into them; both filled, untripped). So
        # too if a rejection of the order that replaced it capped it so (review 42h: the
        # echo one replace further down; 42i: any cap of it, a cancel's too, tripped an
        # honest fill); not if only a snapshot that left it out confirmed it (it freed
        # the room itself: known gap 13; reviews 42h, 42i: an honest fill tripped). Nor
        # more than it held when a stale snapshot made it cover the original's leaves
        # again (review 42k: they came back uncapped beside an order allowed into them).
        held = min(replacement.quantity, replacement.cap, replacement.said_room) \
            - replacement.filled if replacement.said_live or replacement.room_capped \
            else INFINITY
        if replacement.working:
            self.end(replacement)
        replacement.leaves_given_up = 0.0  # it never lived: one replacing it gives nothing back
        original = self.records.get((replacement.account, replacement.replaces))
        if original is None or original.replaced_by != replacement.client_order_id:
            replacement.cap_fills()  # a fill under its id beyond those counted trips
            return True  # forgotten, or a snapshot has said what it is since
        replacement.filled -= crossed
        original.filled += crossed
        # A snapshot that left the replacement out ended the chain: the original's room,
        # given back now, was free for the orders allowed since (GuardEngine._late_fill)
        original.left_out = original.left_out or replacement.left_out
        original.crossing = max(original.crossing - crossed, 0.0)  # they crossed to it
        original.crossing_room = max(original.crossing_room - crossed, 0.0)
        original.crossing_released += replacement.crossing_released  # back with its leaves
        replacement.crossing_released = replacement.released_here = 0.0
        replacement.restood = None
        # Review 29: its room goes back to the original, so it may fill no more than the
        # fills reported under its own id; a fill beyond trips (it never traded).
        replacement.cap_fills()
        _pass_charges(replacement, original)
        before = replacement.fills_before_leaves  # came before the original lived, too:
        replacement.fills_before_leaves = 0.0  # off none of its leaves
        replacement.quantity -= before
        original.quantity += before
        original.fills_before_leaves += before
        # The leaves it gave up (its fills since, wherever they went, are off them: see
        # apply_fill), never more than it may still fill of what it was allowed beyond the
        # fills it is owed (those may have come under its own id while the replace was in
        # flight), but for leaves a snapshot listed beyond that (reserved, never filled).
        left = original.quantity - max(original.filled, original.reported)  # under its id,
        leaves = max(min(original.leaves_given_up,  # or anywhere
                         left - original.owed + original.leaves_over), 0.0)
        original.leaves_over = 0.0
        original.replaced_by, original.owed_late = "", 0.0  # its owed fills are its own
        # A word on it that came once it was replaced may have been an executor's echo
        # (review 38n: a clear of it then ended it as a cancel, and the order it had
        # replaced, live, reserved nothing): a clear of it gives that order its leaves
        # back, as for a rejection. One that came while it was the head stands (38p).
        if original.confirmed_late:
            original.confirmed = original.confirmed_late = False
        if original.venue_ended:  # it ended while the replace was in flight: for good
            original.cap_fills()
        if original.cleared_owed:  # the operator freed its owed fills' room, not its
            original.cleared_owed, original.pending = False, 0.0  # leaves (review 30)
            original.cap = max(original.filled, original.reported) + leaves
        if held < leaves:  # they come back reserved; a fill into them trips
            original.cap = min(original.cap, max(original.filled, original.reported)
                               + original.owed + max(held, 0.0))
            original.room_capped = True
        if original.working:  # it works for fills it is owed: its leaves come back too
            if leaves > 0.0:
                original.owed_only = False
                self.grow(original, leaves)
        elif leaves > original.quantity * FILL_TOLERANCE:
            self.revive(original, leaves)
        return True

    def settle_owed(self, record: OrderRecord, owed: float) -> None:
        """An order working only for fills it is owed: the venue now counts `owed` of
        them not reported yet; it reserves exactly that (none left: it ends). Of an order
        replaced, what it is owed beyond what it was before is the chain's (`owed_late`)."""
        if record.replaced_by:
            more = max(owed - record.pending, 0.0)
            record.owed_late = min(record.owed_late + more, owed)
        record.pending = owed
        self.resize(record, owed)

    def owe(self, record: OrderRecord, owed: float) -> None:
        """An ended order (replaced, cancelled) is said to have `owed` fills not reported
        yet: it works for them alone until they come. What it was allowed is unchanged.
        Of an order replaced, they are the chain's (`owed_late`)."""
        assert not record.working and owed > 0.0
        record.pending, record.owed_only = owed, True
        record.owed_late = owed if record.replaced_by else 0.0
        record.remaining = owed
        self._count(record, +1)
        self._legs_reserve(record)

    def count_included(self, account: str, client_order_id: str, quantity: float,
                       unchecked: bool = False) -> None:
        """A snapshot holds `quantity` more of the order's fills, not reported yet (and
        booked to it now): when they come, that much of them changes nothing more, and
        if some were beyond what the order may fill (`unchecked`) they trip. Kept until
        they come, or the order's record is forgotten: a later snapshot holds them too."""
        held = self.included.get(account)
        if held is None:
            held = self.included[account] = {}
        held[client_order_id] = held.get(client_order_id, 0.0) + quantity
        if unchecked:
            self.included_unchecked.add((account, client_order_id))

    def counted_unchecked(self, account: str, client_order_id: str) -> bool:
        """Whether a snapshot held fills of the order beyond what it may fill, not all
        reported yet."""
        return (account, client_order_id) in self.included_unchecked

    def keep(self, record: OrderRecord, now: float) -> None:
        """Remember `record` for the retention from `now` (a snapshot booked fills of it
        that are on their way): last in the order expiry looks at them."""
        key = (record.account, record.client_order_id)
        if self.records.get(key) is record:
            del self.records[key]
            self.records[key] = record
            record.kept = max(record.kept, now)

    def counted(self, account: str, client_order_id: str, quantity: float) -> float:
        """How much of a fill of `quantity` a snapshot held (and booked) already: all that
        is left of the order's, if the fill is that much or within rounding."""
        held = self.included.get(account)
        left = held.get(client_order_id, 0.0) if held is not None else 0.0
        if not left > 0.0:
            return 0.0
        return left if left - quantity <= quantity * FILL_TOLERANCE else quantity

    def take_counted(self, account: str, client_order_id: str, quantity: float) -> None:
        if not quantity > 0.0:
            return
        held = self.included[account]
        left = held[client_order_id] - quantity
        if left > 0.0:
            held[client_order_id] = left
        else:
            self._forget_included(account, client_order_id)

    def tripped_for(self, account: str) -> None:
        """The account's unchecked_order trip is stored: its unchecked fills are tripped."""
        for key in [key for key in self.untripped if key[0] == account]:
            del self.untripped[key]

    def remember_fill(self, fill: Fill, now: float) -> None:
        key = (fill.account, fill.fill_id)
        # Moved to the end, in the order of its time: expire stops at the first id not due
        # (review 40c: an id used again, kept in its old place, kept every id after it
        # past its retention, and a venue's later reuse of one tripped the account).
        self.fill_ids.pop(key, None)
        self.fill_ids[key] = (now, fill.client_order_id, what_fill(fill), fill.quantity,
                              False)

    def applied_before(self, fill: Fill) -> bool | None:
        """Whether a fill under this fill_id was applied before and was this one (True),
        another (False), or none was (None)."""
        seen = self.fill_ids.get((fill.account, fill.fill_id))
        if seen is None:
            return None
        _, client_order_id, what, quantity, orphan = seen
        if orphan and client_order_id != fill.client_order_id:
            return None  # kept past its order for that order's id alone (review 37f: a
            # venue's execution id used again after the retention is a new fill)
        return what == what_fill(fill) \
            and abs(quantity - fill.quantity) <= max(quantity, fill.quantity) * FILL_TOLERANCE \
            and self._one_chain(fill.account, client_order_id, fill.client_order_id)

    def _one_chain(self, account: str, first: str, second: str) -> bool:
        """Whether two orders are one, or one replaced the other down its chain (as far
        as it is remembered)."""
        if first == second:
            return True
        for start, other in ((first, second), (second, first)):
            record = self.records.get((account, start))
            for _ in range(64):  # a chain longer than this is not followed
                if record is None or not record.replaced_by:
                    break
                if record.replaced_by == other:
                    return True
                record = self.records.get((account, record.replaced_by))
        return False

    def expire(self, now: float, retention_s: float, window_s: float) -> int:
        """Forget ended orders and fill ids older than the retention, and identical-order
        counts older than the window; how many were forgotten or kept. A working order,
        an order it replaced (down its chain), and the fills applied to any remembered
        order (a drop copy may send one again) are never forgotten: kept, they are
        remembered for another retention from now, and counted, so that the journal
        records the run and a replay keeps them in the same order (which decides what
        later runs forget). Review 30: a replaced original was forgotten while its
        replacement worked, and the ids of its fills with it, and a fill id was forgotten
        while a snapshot kept its order: sent again, such a fill counted twice. A fill id
        outlives its order by a retention (review 37c: forgotten with it, a drop copy's
        repeat of a day-old fill was booked to a new order reusing the order's id)."""
        forgotten = self._forget_identical(now - window_s)
        records, cutoff = self.records, now - retention_s
        works: dict[tuple[str, str], bool] = {}  # chains looked at in this run
        for key, record in expired_run(records, lambda r: r.kept <= cutoff):
            del records[key]
            forgotten += 1
            if self._chain_works(record, works):
                record.kept = now
                records[key] = record  # kept, moved to the end
            else:
                self._forget_included(*key)
        fill_ids = self.fill_ids
        for key, (_, client_order_id, what, quantity, orphan) in expired_run(
                fill_ids, lambda seen: seen[0] <= cutoff):
            del fill_ids[key]
            forgotten += 1
            remembered = (key[0], client_order_id) in records
            if remembered or not orphan or key in self.untripped:  # sent again, it would
                # count twice; its order's id forgotten (free to use again) a retention ago
                # at most, it is kept one; its account's trip not stored yet, it is owed
                # until it is (review 55e: forgotten after a weekend's full disk, the
                # account was ARMED after the restart, the fill booked)
                fill_ids[key] = (now, client_order_id, what, quantity, not remembered)
        return forgotten

    def _chain_works(self, record: OrderRecord, works: dict[tuple[str, str], bool]) -> bool:
        """Whether the order works, or one that replaced it down its chain (as far as it
        is remembered): its fills' ids are kept while it does. `works` holds the answers
        of one expiry run, so that a long chain is walked once."""
        path: list[tuple[str, str]] = []
        found = False
        while True:
            key = (record.account, record.client_order_id)
            if key in works:
                found = works[key]
                break
            path.append(key)
            if record.working or not record.replaced_by:
                found = record.working
                break
            successor = self.records.get((record.account, record.replaced_by))
            if successor is None:
                break
            record = successor
        for key in path:
            works[key] = found
        return found

    def _forget_included(self, account: str, client_order_id: str) -> None:
        self.included_unchecked.discard((account, client_order_id))
        counted = self.included.get(account)
        if counted is not None and counted.pop(client_order_id, None) is not None \
                and not counted:
            del self.included[account]

    def _count(self, record: OrderRecord, delta: int) -> None:
        account = record.account
        if delta > 0:
            working = self._working.get(account)
            if working is None:
                working = self._working[account] = {}
            working[record.client_order_id] = record
        else:
            working = self._working[account]
            del working[record.client_order_id]
            if not working:
                del self._working[account]
        _bump(self.per_strategy, (account, record.strategy), delta)

    def reprice(self, record: OrderRecord, price: float) -> None:
        """A snapshot lists `record` at `price` (amended at the venue, past the guard): its
        leaves are valued at that price where it is higher than the one it was checked at
        (`venue_price`). Its fills are still judged against the price it was checked at:
        a snapshot widens no fill's room (review 33e: a sell listed at 1, then filled at
        1, no longer tripped)."""
        before = record.valued
        record.venue_price = price
        after = record.valued
        if after != before and record.working:
            for leg in self._legs(record):
                leg.priced(record.side, after, True)
                leg.priced(record.side, before, False)

    def restand(self, head: OrderRecord, listed: OrderRecord, leaves: float,
                said: bool) -> None:
        """A snapshot lists `listed`, an order down `head`'s chain of replaces, with
        `leaves`, and not `head`: it was read while the replace was on its way, or the
        venue's word on `head` was an executor's echo. The replace is in flight again:
        `head` covers `listed`'s leaves (its crossing, given back if a confirmation had
        released it) and holds its price, until the venue's word on `head` comes again
        (review 33d: the listed original's leaves were counted nowhere; 33e: taken at its
        word, the snapshot let both orders fill in full untripped). A head that filled
        under its own id has traded: the replace is done, and the listing is stale
        (review 33f: its fills and the regrown room let the chain fill twice). `said`: a
        word of the venue had said `head` lived before this snapshot (`confirm`)."""
        if head.reported > 0.0:
            return
        if said:  # review 42k: what it held in between, should the venue reject it yet
            head.said_room = min(head.said_room, head.quantity)
        head.confirmed = False
        # Whichever listing comes, and however many: as much as the most listed, never
        # more than the listed order gave up when it was replaced. What `head` may fill
        # grows only where it would not cover them, and by no more than confirmations
        # took off the chain's crossing (review 34: grown by all it reserved less, a
        # snapshot listing `head` too, or fills that had crossed to `head` out of the
        # listed order's leaves, let the chain fill past its checks).
        most = min(leaves, listed.leaves_given_up)
        extra = most - head.remaining
        if extra > 0.0:
            room = min(extra, max(most - head.unfilled, 0.0), head.crossing_released)
            head.crossing += extra
            head.crossing_room += room
            head.crossing_released -= room
            # Held again: the room confirmations after `listed` released is not free
            # (reviews 39m, 39q), nearest first, and the next confirmation of `head`
            # does not release it as its own.
            taken = head.restood if head.restood is not None else {}
            for coid, part in self.take_released(listed, room).items():
                taken[coid] = taken.get(coid, 0.0) + part
            head.restood = taken or None
            head.quantity += room
            self.grow(head, extra)
        if listed.valued > head.valued and listed.valued > head.held_price:
            self._hold(head, listed.valued)

    def _hold(self, record: OrderRecord, price: float) -> None:
        """Make `price` (0: none) the limit price a replacement holds for the order it
        replaced; counted in its legs while it works."""
        if record.working:
            for leg in self._legs(record):
                if price:
                    leg.priced(record.side, price, True)
                if record.held_price:
                    leg.priced(record.side, record.held_price, False)
        record.held_price = price

    def _legs(self, record: OrderRecord) -> tuple[Leg, Leg]:
        """The legs a working order counts in: its strategy's, and its account's net."""
        book = self._book.account(record.account)
        return book.leg(record.strategy, record.symbol), book.net(record.symbol)

    def _legs_reserve(self, record: OrderRecord) -> None:
        for leg in self._legs(record):
            leg.reserve(record.side, record.remaining, record.valued)
            if record.held_price:
                leg.priced(record.side, record.held_price, True)


def charge(head: OrderRecord, owner: str, quantity: float) -> None:
    """`quantity` of fills of `owner`, an order `head` replaced down its chain, comes off
    what `head` may fill (lifecycle._charge_late)."""
    head.quantity -= quantity
    charges = head.charged_late if head.charged_late is not None else {}
    charges[owner] = charges.get(owner, 0.0) + quantity
    head.charged_late = charges


def _pass_charges(replacement: OrderRecord, original: OrderRecord) -> None:
    """A rejected `replacement`'s charges go to `original`, working again, but for its own
    fills (counted against it already)."""
    charges, replacement.charged_late = replacement.charged_late, None
    for owner, quantity in (charges or {}).items():
        if owner != original.client_order_id:
            charge(original, owner, quantity)


def _bump(table: dict[tuple[str, str], int], key: tuple[str, str], delta: int) -> None:
    count = table.get(key, 0) + delta
    if count:
        table[key] = count
    else:
        table.pop(key, None)


def _identity(order: Order) -> tuple:
    return (order.account, order.strategy, order.symbol, order.side, order.quantity,
            order.price)
