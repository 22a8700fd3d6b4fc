"""Evidence about orders: fills, order updates and snapshots move the book and end working
orders; a fill the sidecar cannot tie to what it allowed is reported for a trip."""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from .book import AccountBook, Book
from .errors import InvalidArgument
from .orders import ENDED, MAX_QUANTITY, Fill, IncludedFills, OpenOrder, OrderStatus, \
    OrderUpdate, PositionSnapshot, Side
from .working import ADOPTED, FILL_TOLERANCE, OrderLedger, OrderRecord, charge


class FillOutcome(NamedTuple):
    position: float  # the strategy's position in the symbol after the fill
    duplicate: bool = False  # its fill_id was applied before: nothing changed
    unchecked: str = ""  # why the fill is not of an order the sidecar allowed, if it is not
    # Why the fill could not be booked, if it could not: the position would leave
    # ±MAX_QUANTITY (nothing changed; no order the sidecar allowed could take it there).
    refused: str = ""
    # Its fill_id was applied before to another fill: nothing was booked (`unchecked`
    # says why, and the account trips).
    conflict: bool = False
    # Unchecked within its account's latch's second: the reason the next timer run renews
    # the latch for (GuardEngine._unrenewed).
    renewal: str = ""
    # Booked, and its account's trip planned: why, until the trip is stored
    # (OrderLedger.untripped).
    untripped: str = ""
    marked: bool = False  # its price became the account's mark (_marks)


def apply_fill(book: Book, ledger: OrderLedger, fill: Fill, now: float,
               band_pct: float = 0.0, marks: bool | None = None) -> FillOutcome:
    """Apply a validated fill once per fill_id: the position moves, the account's mark is
    the fill's price (within `band_pct`, the symbol's price band: `_marks`), and the
    order's reservation shrinks. Of a fill a snapshot counted already (`included_fills`,
    booked to its order then), only what is beyond it moves the position or the order. If
    a position would leave ±MAX_QUANTITY, nothing changes and the outcome says why
    (`refused`). `marks`: whether its price becomes the mark, as the live process judged
    it (a replay's), in place of judging it again."""
    same = ledger.applied_before(fill)
    if same is not None:
        position = book.position(fill.account, fill.strategy, fill.symbol)
        if same:
            return FillOutcome(position, True)
        # Review 29: not the fill applied under this id (another order, symbol, side or
        # quantity). Ignored as a duplicate, an order never allowed went unseen; booked,
        # a drop copy's garbled repeat would count twice. Neither can be told: the
        # account trips, and its next snapshot says what it holds.
        first = ledger.fill_ids[(fill.account, fill.fill_id)][1]
        return FillOutcome(position, unchecked=f"fill {fill.fill_id} was applied before to"
                           f" another fill (order {first!r}): a fill_id names one"
                           " execution of the account's; this one is not booked",
                           conflict=True)
    named = ledger.exact(fill.account, fill.client_order_id)
    counted = ledger.counted(fill.account, fill.client_order_id, fill.quantity) \
        if named is not None and _same_instrument(named, fill) else 0.0
    moved = max(fill.quantity - counted, 0.0)  # what the snapshot did not count
    beyond = counted > 0.0 and ledger.counted_unchecked(fill.account, fill.client_order_id)
    signed = moved if fill.side is Side.BUY else -moved
    account = book.account(fill.account)
    leg, net = account.leg(fill.strategy, fill.symbol), account.net(fill.symbol)
    for quantity in (leg.position, net.position):
        if abs(quantity + signed) > MAX_QUANTITY:
            account.tidy(fill.strategy, fill.symbol)
            return FillOutcome(leg.position, refused=f"fill {fill.fill_id} would take the"
                               f" position beyond ±{MAX_QUANTITY:g}, where no order the"
                               " sidecar allowed could: the book cannot hold it")
    ledger.take_counted(fill.account, fill.client_order_id, counted)
    record = ledger.get(fill.account, fill.client_order_id)
    parts = _parts(ledger, record, named, moved)
    unchecked = ""
    if moved > fill.quantity * FILL_TOLERANCE:
        for part, quantity in parts:
            unchecked = unchecked or _unchecked(fill._replace(quantity=quantity), part,
                                                _judged_by(ledger, part, named, quantity),
                                                named)
            if part is named and part is not None and _same_instrument(part, fill):
                past = _charge_late(ledger, part, quantity)  # before the chain's part
                if past > quantity * FILL_TOLERANCE and not unchecked:  # is judged
                    unchecked = (f"fill {fill.fill_id} for order {fill.client_order_id}:"
                                 f" {past:g} of it past what its chain of replaces was"
                                 " allowed")
    else:  # all of it in the snapshot, and booked then: only an adopted order's trips
        unchecked = _unchecked(fill, record, None, named) \
            if record is not None and _adopted(record, named) else ""
        moved = 0.0
    if not unchecked and named is not None and named.final_filled >= 0.0 \
            and moved > fill.quantity * FILL_TOLERANCE \
            and named.reported + moved > named.final_filled * (1.0 + FILL_TOLERANCE) + 1e-9:
        # Review 41g: its replacement's end cut the chain's leaves, and a fill naming it,
        # judged within its own room, passed while that room went to another order.
        unchecked = (f"fill {fill.fill_id} for order {fill.client_order_id}: beyond the"
                     f" {named.final_filled:g} the venue said it filled when it ended")
    if beyond and not unchecked:
        unchecked = (f"fill {fill.fill_id} for order {fill.client_order_id}: a snapshot"
                     " held fills of it beyond what the order may fill")
    priced = named if named is not None and _same_instrument(named, fill) else None
    unchecked = unchecked or _beyond_limit(fill, priced, band_pct)
    if moved:
        leg.move(signed)
        net.move(signed)
    if marks is None:
        marks = _marks(fill, account.anchors.get(fill.symbol) or account.reference(fill.symbol)
                       or None, priced, band_pct)
    if marks:
        account.set_mark(fill.symbol, fill.price)
        account.anchors.setdefault(fill.symbol, fill.price)
    for part, quantity in parts if moved else ():
        if part is not None and _same_instrument(part, fill):  # else no evidence of it
            _book(ledger, part, named, quantity)
    ledger.remember_fill(fill, now)
    position = leg.position
    account.tidy(fill.strategy, fill.symbol)
    return FillOutcome(position, unchecked=unchecked, marked=marks)


def _beyond_limit(fill: Fill, order: OrderRecord | None, band_pct: float) -> str:
    """Why a fill priced worse than its order's limit, by more than the price band, is not
    one the venue could give ("" if it is not): a SELL below its limit, a BUY above it
    (review of stop 32: a sell filled at 1 against a limit of 100, the units of an
    executor's bug, took the mark to 1 and a sell 40 times the notional cap was allowed).
    The band leaves room for a market order's slippage, whose price is what the executor
    expected to pay."""
    if order is None or not band_pct:
        return ""
    worse = order.price - fill.price if fill.side is Side.SELL else fill.price - order.price
    if worse / order.price * 100.0 <= band_pct:
        return ""
    return (f"fill {fill.fill_id} for order {fill.client_order_id} at {fill.price:g} is"
            f" {worse / order.price * 100.0:.4g}% worse than its limit {order.price:g}"
            f" (band {band_pct:g}%)")


def _marks(fill: Fill, anchor: float | None, order: OrderRecord | None,
           band_pct: float) -> bool:
    """Whether the fill's price becomes the account's mark: within the price band of the
    anchor (AccountBook.anchors: the last snapshot's mark, else the first fill's; else the
    symbol's reference_price), or with none of its order's price. A price beyond it moves
    no mark (a real move that far comes in the account's next snapshot, which anchors it
    anew), since a mark taken from a wrong fill values every order of the symbol and
    bounds its price band: a BUY's fill reported at a hundredth of the market would let a
    SELL at that price pass as small, where it executes at the market; and fills each
    within the band of the last would walk it there. With none of these (a fill of an
    order the sidecar never allowed, in a symbol with no mark yet), nothing bands it: it
    sets no mark either (review 37e: a stray fill at a hundredth of the market was the
    mark once the account was reset)."""
    reference = anchor if anchor is not None else order.price if order is not None else None
    if not band_pct:
        return True
    return reference is not None and abs(fill.price - reference) / reference * 100.0 <= band_pct


def _parts(ledger: OrderLedger, record: OrderRecord | None, named: OrderRecord | None,
           moved: float, one_fill: bool = True) -> list[tuple[OrderRecord | None, float]]:
    """Where fills of `named` go (OrderLedger.get): to `record`, but for an order replaced
    while it was owed fills (which keep its fills with it) and fills of it larger than
    what it is still owed. Those are split: what it is owed is its own, the rest crossed
    the replace and goes down the chain, as a fill of an order owed nothing does (review
    30: all of it was judged against the original's whole quantity, and the chain filled
    its room twice). But one execution larger than any the order was ever said to be
    owed (`owed_stated`), and within the leaves it gave up, is not one of those at all:
    it crossed whole (review 30: split, it took the owed fills' place, and they counted
    twice once an update said again they were owed). Which fills are the owed ones
    cannot be known when they come out of the venue's order: this errs towards counting
    them (a false trip) over a worst case below the truth."""
    if record is None or record is not named or not record.replaced_by:
        return [(record, moved)]
    owed, tolerance = record.pending, moved * FILL_TOLERANCE
    if not moved - owed > tolerance:
        return [(record, moved)]
    head = ledger.head(record)
    if one_fill and moved > record.owed_stated + tolerance \
            and moved <= record.leaves_given_up + tolerance:
        return [(head, moved)]
    return [(record, owed), (head, moved - owed)]


def _book(ledger: OrderLedger, record: OrderRecord, named: OrderRecord | None,
          quantity: float) -> None:
    """Count `quantity` filled against `record`, the order a fill goes to; `named` is the
    one the fill names (the same, or an order `record` replaced)."""
    if named is not None:  # the one it names, even if it goes to its replacement
        named.reported += quantity
    if named is record:
        ledger.confirm(record)  # a fill under its own id: a replacement is live
    else:  # the original's fill, crossing the replace
        if named is not None:  # the leaves a rejected replace would give back go first
            named.leaves_given_up = max(named.leaves_given_up - quantity, 0.0)
            quantity -= _before_leaves(ledger, record, named, quantity)
            if not quantity > 0.0:
                return
        # and what was held for the original's leaves, which the rest came out of
        record.crossing = max(record.crossing - quantity, 0.0)
        record.crossing_room = max(record.crossing_room - quantity, 0.0)
    record.filled += quantity
    record.pending = max(record.pending - quantity, 0.0)
    if record.owed_only:  # it works only for its owed fills: this is one of them
        ledger.release(record, min(quantity, record.remaining))
    else:
        # An update (OPEN, remaining_quantity) may have counted this fill already: never
        # reserve less than both what the update left and what the check allowed,
        # unfilled.
        keep = max(min(record.remaining, record.unfilled), 0.0)
        ledger.release(record, min(quantity, record.remaining - keep))


def _charge_late(ledger: OrderLedger, record: OrderRecord, quantity: float) -> float:
    """A fill of `record`, replaced, that it was said to be owed once replaced
    (`OrderRecord.owed_late`) is booked to it, and is the chain's too. Reserved apart
    until it came and charged once it is here, it counts once whichever way it went
    (review 38j: uncharged, the chain filled it twice untripped; sent down the chain, it
    tripped a head the venue had ended before it was reported). It is taken, in turn, by
    what leaves the venue gave an order after `record` left out (`stated_after`), by room
    the confirmations of those orders released (it may have crossed their replaces:
    `OrderLedger.take_released`; seed 20 of review 38j's sim), as far as the head still
    has it (`crossing_released`), and by the head's own room, whatever
    the venue's end of it left (`charge`). What the head reserves is left as it is: the
    venue's word or its fills lower it (review 39j: released, an order was allowed into
    leaves the venue still had). Returns how much of it none of these held: it filled
    past what the chain's checks allowed (review 39e: passed, untripped)."""
    late = min(quantity, record.owed_late)
    if not late > 0.0:
        return 0.0
    record.owed_late -= late
    head = ledger.head(record)
    if head is None or head is record:
        return 0.0
    stated = ledger.stated_after(record, head)
    if stated is not None:
        explained = min(late, stated.leaves_cut)
        stated.leaves_cut -= explained  # explained, once
        late -= explained
    # Room released for the leaves of an order before `record` is not its fills' (review
    # 39j: it let the chain fill past its checks).
    released = sum(ledger.take_released(record, min(late, head.crossing_released)).values())
    head.crossing_released -= released
    late -= released
    cut = min(late, max(head.quantity - max(head.filled, head.reported), 0.0))
    if cut > 0.0:
        charge(head, record.client_order_id, cut)
        head.crossing_room = max(head.crossing_room - cut, 0.0)
    return late - cut


def _before_leaves(ledger: OrderLedger, record: OrderRecord, named: OrderRecord,
                   quantity: float) -> float:
    """Book the part of a fill of `named` that came before the leaves the venue gave an
    order after it in the chain (OrderLedger.stated_after): it adds to what the chain may
    fill, and takes nothing off what `record` reserves. Returns that part."""
    stated = ledger.stated_after(named, record)
    before = min(quantity, stated.leaves_cut) if stated is not None else 0.0
    if stated is not None and before > 0.0:
        stated.leaves_cut -= before  # explained, once
        record.quantity += before
        record.filled += before
        if named.client_order_id != record.replaces:  # of an order before the one it
            record.fills_before_leaves += before  # replaced: a rejection passes it on
    return before


def _judged_by(ledger: OrderLedger, record: OrderRecord | None, named: OrderRecord | None,
               quantity: float) -> OrderRecord | None:
    """The order whose room a fill of `named` that goes to `record` is within, or not:
    `record`, but for a fill that all came before the leaves the venue gave an order after
    `named` (OrderLedger.stated_after), which is `named`'s own."""
    if record is None or named is None or named is record:
        return record
    stated = ledger.stated_after(named, record)
    return named if stated is not None \
        and stated.leaves_cut >= quantity * (1.0 - FILL_TOLERANCE) else record


def _room(judged: OrderRecord) -> float:
    """How much more `judged` (the order a fill goes to, or the one it names: _judged_by)
    may fill: what it was allowed less its fills, those counted against it or reported
    under its id, whichever is more (an original whose fills went down a chain whose
    replace was then rejected works again with them reported but not counted: review
    30)."""
    return min(judged.quantity, judged.cap) - max(judged.filled, judged.reported)


def _adopted(record: OrderRecord, named: OrderRecord | None) -> bool:
    """Whether the fill's order was counted since a snapshot listed it, never checked:
    the one it goes to, or the one it names. Replaced by a checked order, its own fills
    are still its (review 29: they went down the chain, unseen)."""
    return record.decision_id == ADOPTED or (named is not None and named.decision_id == ADOPTED)


def _unchecked(fill: Fill, record: OrderRecord | None,
               judged: OrderRecord | None = None, named: OrderRecord | None = None) -> str:
    """Why this fill is not of an order the sidecar allowed ("" if it is). `record` is
    the order it goes to, `judged` the one whose room it must be within (_judged_by),
    `named` the one it names (an order `record` replaced, or `record`)."""
    coid = fill.client_order_id
    if record is None:
        return f"fill {fill.fill_id} for order {coid}, which the sidecar never allowed"
    if _adopted(record, named):
        return (f"fill {fill.fill_id} for order {coid}, which the sidecar never allowed (a"
                " snapshot listed it open)")
    if not _same_instrument(record, fill):
        return (f"fill {fill.fill_id} for order {coid} is {fill.side.name} {fill.symbol} for"
                f" {fill.strategy}; the order allowed was {record.side.name} {record.symbol}"
                f" for {record.strategy}")
    judged = judged or record
    left = _room(judged)
    if fill.quantity > left + judged.quantity * FILL_TOLERANCE:
        return (f"fill {fill.fill_id} of {fill.quantity:g} for order {coid} exceeds the"
                f" {max(left, 0.0):g} left of the {judged.quantity:g} it may fill"
                " (what its check allowed, less what the venue ended)")
    return ""


def apply_update(ledger: OrderLedger, update: OrderUpdate) -> bool:
    """End a working order, or shrink what it reserves; False if it changed nothing. The
    update is of the order it names, never of one that replaced it. A rejected
    replacement never worked: the order it was to replace works again, with the fills
    that crossed the replace counted as its own.

    An update never releases what may have been filled but not reported yet (a drop copy's
    fills can come after the executor's update): what the order may still fill is its
    leaves (0 once ended) plus the fills the venue counts (filled_quantity) beyond those
    reported under its client_order_id. Without filled_quantity an OPEN update releases
    nothing, since its leaves may have shrunk by such fills, and an ended status takes
    every fill as reported but those an earlier update said are owed (pending): the room
    it held is free, so a fill beyond them is beyond what the order may fill, and trips.
    An order that has ended (replaced, cancelled) and is said to have more fills than
    reported reserves them until they come."""
    record = ledger.exact(update.account, update.client_order_id)
    if record is None:
        return False
    # A rejected replacement never lived, unless it filled under its own id: then the
    # rejection contradicts that, and it ends like a cancel, the original left replaced
    # (review 29: its own fills and the original's leaves given back filled the chain's
    # room twice); so does one an order that replaced it in turn filled under its own id
    # (review 33f). An OPEN before the rejection may be an executor echoing its request.
    # So does a replacement cancelled before any word of the venue on it, with no fills:
    # an executor that was told no (its check's deadline passed, the sidecar allowed it
    # all the same) reports it cancelled, never sent, and the original works on at the
    # venue (review 41b: taken as the venue's confirmation, the original's leaves were
    # reserved nowhere, and an order was allowed past the limit). If the venue did take it
    # and then cancel it, the original's leaves only reserve, until its own end is said.
    if (update.status is OrderStatus.REJECTED or update.status is OrderStatus.CANCELLED
            and record.working and not record.confirmed and not update.filled_quantity) \
            and ledger.rejectable(record):
        return ledger.unreplace(record)
    leaves = 0.0 if update.status in ENDED else update.remaining_quantity
    owed, counted = None, False
    if update.filled_quantity is not None:  # cumulative: a late, older update lowers nothing
        counted = update.filled_quantity > record.venue_filled
        record.venue_filled = max(record.venue_filled, update.filled_quantity)
        owed = max(record.venue_filled - record.reported, 0.0)
        record.owed_stated = max(record.owed_stated, owed)
        if update.status in ENDED:  # all it filled, under its own id (review 41g); a
            # change journaled (review 41i: not, and a restart forgot the bound)
            counted = counted or record.final_filled != record.venue_filled
            record.final_filled = record.venue_filled
    if update.status in ENDED and record.cleared:  # the venue's own end, whatever an
        record.cleared, counted = False, True  # operator did (review 41i); journaled
    if not record.working:  # what changed memory, the journal must have: say so
        return _update_of_an_ended_order(ledger, record, update.status, leaves, owed) \
            or counted
    ledger.confirm(record)  # the venue took the replace (if it is one)
    if update.status is OrderStatus.OPEN and leaves and record.owed_only \
            and record.unlisted and not record.replaced_by:
        # In flight when a snapshot left it out, and owed fills then: the venue has it
        # live, so its leaves work again beside the fills it is owed.
        ledger.relist(record, leaves, record.owed if owed is None else owed)
    elif owed is not None and record.owed_only:  # its leaves are gone (or its replacement's):
        ledger.settle_owed(record, owed)  # it works for the fills it is owed alone
        if update.status in ENDED:
            record.leaves_given_up = 0.0
            record.cap_fills()
    elif owed is not None and leaves is not None:
        # Fills it is owed beyond those it was owed before and beyond what it reserves are
        # real, so they count (its leaves never grow: a late update's are older).
        short = min(leaves + owed - record.remaining, owed - record.owed)
        record.pending = owed
        if short > 0.0:
            ledger.grow(record, short)
        stated, cut = record.leaves_stated, record.leaves_cut
        ledger.shrink(record, leaves + owed)
        if update.status in ENDED:  # review 41i: the venue ended it (done_since), and
            record.venue_ended = True  # the leaves an OPEN stated before bound the fills
            if stated:  # before them, not this end's: with its whole cut, a fill naming
                # the order it replaced passed in its own room; yet never below what the
                # orders it replaced were said to have filled beyond those reported (review
                # 41k: an executor's echoed OPEN stated no cut, and their late fills tripped)
                record.leaves_cut = min(max(cut, ledger.said_owed_before(record)),
                                        record.leaves_cut)
    elif update.status in ENDED:  # no word on fills: those said owed before stay reserved,
        record.cap_fills()  # and it may fill no more than them: its room is free now
        ledger.end_but_pending(record)
    return True


def _update_of_an_ended_order(ledger: OrderLedger, record: OrderRecord,
                              status: OrderStatus, leaves: float | None,
                              owed: float | None) -> bool:
    """The venue's word on an order the sidecar has ended (filled, cancelled, replaced,
    left out of a snapshot); whether it changed anything. It is confirmed: an operator's
    clear of it ends it as a cancel would, not as a replacement the venue rejected
    (review 38i: the clear unreplaced it, and first ended the live order that replaced it
    in turn). Its word came once it was replaced, so it may be an executor's echo
    (`confirmed_late`): a rejection that revives it undoes that (review 38n), and it
    proves nothing of the orders before it (engine.clear_working_orders, 38r)."""
    changed = not record.confirmed
    if changed:  # once replaced: maybe an executor's echo (OrderRecord.confirmed_late)
        record.confirmed = record.confirmed_late = True
    if status is OrderStatus.OPEN and leaves and record.unlisted and not record.replaced_by:
        most = leaves if owed is not None else max(  # no word on fills: it releases
            leaves, min(record.quantity, record.cap) - max(record.filled, record.reported))
        # nothing (review 41i: it reserved its leaves alone, and its unreported fills and
        # an order allowed beside them went past the limit)
        ledger.revive(record, most + (owed or 0.0))  # in flight when a snapshot left it out
        record.pending = owed or 0.0
        if owed is not None:  # it may fill no more, as a working order told so (review
            ledger.shrink(record, leaves + owed)  # 41e: 38 more filled untripped); without
        return True  # filled_quantity its leaves may leave out fills not reported (41g)
    if status in ENDED and record.replaced_by and record.leaves_given_up > 0.0:
        record.leaves_given_up = 0.0  # its leaves are gone: a rejected replace of it
        changed = True  # gives none back
    if owed:  # its fills are on their way: they count until they come
        ledger.owe(record, owed)
        changed = True
    if status in ENDED:  # ended by a snapshot, fills or a replace: now for good
        changed = record.cap_fills() or changed
    return changed


def sync_account(book: Book, ledger: OrderLedger, account: str, equity: float,
                 positions: Iterable[PositionSnapshot], open_orders: Iterable[OpenOrder] | None,
                 now: float, included: Iterable[IncludedFills] = (), left_out: int = 0) -> int:
    """Replace the account's positions (and marks, and equity) with a snapshot. With
    `open_orders` (None: the snapshot says nothing of orders), they are the account's
    working orders: one not listed has ended, one listed reserves the snapshot's
    remaining quantity (an ended one works again), and one the sidecar never allowed is
    adopted so that it counts; its fills still trip the account. `left_out` more were
    listed and not adopted (AccountBook.unadopted: its orders are denied until a snapshot
    leaves none out). `included` says how much
    of each order's fills the positions count (`_count_included`; an order not named:
    the positions count only fills reported, or named by a snapshot, before). Returns the
    number of open positions."""
    snapshot = {(p.strategy, p.symbol): p for p in positions}
    nets: dict[str, float] = {}
    for (_, symbol), position in snapshot.items():
        nets[symbol] = nets.get(symbol, 0.0) + position.quantity
        if abs(nets[symbol]) > MAX_QUANTITY:
            raise InvalidArgument("positions", f"the net position in {symbol} would exceed"
                                  f" ±{MAX_QUANTITY:g}")
    target = book.account(account)
    for leg in target.legs.values():
        leg.set_position(0.0)
    for net in target.nets.values():
        net.set_position(0.0)
    for (strategy, symbol), position in snapshot.items():
        target.leg(strategy, symbol).set_position(position.quantity)
        if position.mark_price:
            target.set_mark(symbol, position.mark_price)
            target.anchors[symbol] = position.mark_price
    for symbol, quantity in nets.items():
        target.net(symbol).set_position(quantity)
    target.equity = equity
    # Fills come before the venue's word on orders: booked first, they go where they went
    # (a replacement the snapshot confirms may have held them). An order the snapshot
    # adopts has its fills counted after it.
    named = list(included)  # in the snapshot's order, as a replay books them
    known = [ledger.exact(account, o.client_order_id) is not None for o in named]
    _count_included(target, ledger, account, [o for o, k in zip(named, known) if k], now)
    if open_orders is not None:
        target.unadopted = left_out
        _sync_orders(ledger, account, list(open_orders), now)
        _count_included(target, ledger, account,
                        [o for o, k in zip(named, known) if not k], now)
    for strategy, symbol in list(target.legs):
        target.tidy(strategy, symbol)
    return sum(1 for leg in target.legs.values() if leg.position)


def _count_included(target: AccountBook, ledger: OrderLedger, account: str,
                    included: Iterable[IncludedFills], now: float) -> None:
    """The snapshot's positions hold these fills of each order (cumulative, under its own
    id). Those not reported yet are booked to their order now, as their fills would be
    but for the position (the snapshot set it); when they are reported, that much of them
    changes nothing more, but if the snapshot held more than the order may fill, they
    trip the account then, as such a fill would have. An adopted order's are not
    booked to it (its reservation is the snapshot's leaves, which exclude them); they
    only move no position. An order the sidecar does not know has none to book: its
    fills trip the account, and move the position. A snapshot that holds fewer than were
    reported here was taken before the rest: they are added to its positions. An order
    with fills booked is remembered for the retention from now: its fills are on their
    way, and forgetting it would count them twice and trip the account."""
    for order in included:
        named = ledger.exact(account, order.client_order_id)
        if named is None:
            continue
        lacking = lacking_fills(named, order)
        if lacking:
            target.leg(named.strategy, named.symbol).move(lacking)
            target.net(named.symbol).move(lacking)
            continue
        unreported = order.filled_quantity - named.reported
        if not unreported > named.quantity * FILL_TOLERANCE:
            continue
        if named.decision_id == ADOPTED:
            named.reported += unreported  # in the position: the next snapshot holds them
            ledger.count_included(account, order.client_order_id, unreported)
            ledger.keep(named, now)
            continue
        record = ledger.get(account, order.client_order_id)
        if record is None:  # its successor is forgotten: its fills trip
            continue
        over_final = max(named.reported + unreported - named.final_filled  # beyond what
                         * (1.0 + FILL_TOLERANCE) - 1e-9, 0.0) \
            if named.final_filled >= 0.0 else 0.0  # the venue said when it ended (41i)
        # More than the order may fill is booked too (it is in the positions: reported
        # again, or owed, it would count twice), and its fills trip the account when
        # they come.
        beyond, parts = 0.0, _parts(ledger, record, named, unreported, one_fill=False)
        for part, quantity in parts:
            if part is None:  # the head of its chain is forgotten: beyond any room
                beyond += quantity
                continue
            room = _room(_judged_by(ledger, part, named, quantity) or part)
            beyond += quantity - max(min(quantity, room), 0.0)
            _book(ledger, part, named, quantity)
            if part is named:  # before the chain's part is judged
                beyond += _charge_late(ledger, part, quantity)
        beyond = max(beyond, over_final)
        ledger.count_included(account, order.client_order_id, unreported,
                              unchecked=beyond > named.quantity * FILL_TOLERANCE)
        ledger.keep(named, now)
        for part, _ in parts:  # where its fills go (itself, or its replacement)
            if part is not None:
                ledger.keep(part, now)


def lacking_fills(named: OrderRecord, order: IncludedFills) -> float:
    """What a snapshot's positions lack of the fills reported here under the order's id
    (it was taken before them), signed as they move the position; 0 if it lacks none."""
    lacking = named.reported - order.filled_quantity
    if not lacking > named.quantity * FILL_TOLERANCE:
        return 0.0
    return lacking if named.side is Side.BUY else -lacking


def _sync_orders(ledger: OrderLedger, account: str, open_orders: list[OpenOrder],
                 now: float) -> None:
    listed = {order.client_order_id: order for order in open_orders}
    # The replacements a word of the venue had said lived before this snapshot: its own
    # listing of one is no word on what the chain held before it (an executor may list
    # what it sent, and the venue reject it yet).
    said = {record.client_order_id for record in ledger.working(account)
            if record.said_live and record.confirmed}
    for record in list(ledger.working(account)):
        if record.client_order_id not in listed \
                and not _replace_in_flight(ledger, record, listed):
            ledger.confirm(record, said=False)  # its fills still owed stay reserved
            ledger.unlist(record)
    superseded = _superseded(ledger, account, listed)
    for coid, order in listed.items():
        known = ledger.exact(account, coid)
        if known is None:
            ledger.adopt(account, order, now, ADOPTED)
            continue
        if coid in superseded:
            continue  # taken after the others (below)
        if ledger.done_since(known):
            continue  # a listing read before the replace: it was done, the chain traded or
            # the venue ended an order of it
        head = ledger.head(known) if known.replaced_by else None
        if head is not None and _replace_in_flight(ledger, head, listed):
            ledger.reprice(known, order.price)  # its price, should it work again
            ledger.restand(head, known, order.remaining_quantity,
                           head.client_order_id in said)
            continue  # the replace stands: its replacement holds the chain's room
        ledger.confirm(known)  # the venue lists it: any replace it made is done
        if not known.working:  # filled, cancelled or replaced, says the sidecar: not so
            ledger.revive(known, order.remaining_quantity)
        else:  # its leaves as listed (live after all), and the fills it is still owed
            known.owed_only = False
            ledger.resize(known, order.remaining_quantity + known.owed)
        ledger.reprice(known, order.price)  # the venue's price values it, if higher
    for coid, order in listed.items():  # in the snapshot's order: a replay does the same
        if coid not in superseded:
            continue
        known = ledger.exact(account, coid)
        assert known is not None  # _superseded holds only orders the sidecar knows
        head = ledger.head(known)
        # The head is the later listed order, or one that replaced it in turn: taken above,
        # it works (an order down the chain that traded makes the listing stale, and a
        # head that ended, filled or cancelled, left nothing for the earlier to cover).
        if head is not None and head.working and not ledger.traded_since(known):
            ledger.reprice(known, order.price)
            ledger.restand(head, known, order.remaining_quantity,
                           head.client_order_id in said)


def _superseded(ledger: OrderLedger, account: str,
                listed: dict[str, OpenOrder]) -> set[str]:
    """The listed orders that another listed order replaced, down their chain. Either
    the listing of the earlier is stale (the replace was done), or the later is on its
    way (an executor lists what it sent): the chain may fill the larger of the two, not
    their sum. Revived beside the later, the earlier filled in full beside it, untripped
    (review 33f's chain fuzz); taken as stale, its leaves went uncounted while the later
    was still on its way. So the replace stands, in flight (OrderLedger.restand), once
    the later listing has been taken. Each order is walked once."""
    superseded: set[str] = set()
    walked: set[str] = set()
    for coid in listed:
        record = ledger.exact(account, coid)
        while record is not None and record.replaces:
            original = ledger.exact(account, record.replaces)
            if original is None or original.replaced_by != record.client_order_id \
                    or original.client_order_id in walked:
                break
            walked.add(original.client_order_id)
            if original.client_order_id in listed:
                superseded.add(original.client_order_id)
            record = original
    return superseded


def _replace_in_flight(ledger: OrderLedger, replacement: OrderRecord | None,
                       listed: dict[str, OpenOrder]) -> bool:
    """Whether a snapshot that lists an order `replacement` replaced (down its chain:
    several replaces may be on their way), and not `replacement` itself, was read while
    the replace was on its way to the venue: the replacement works on, with the room the
    chain was allowed (the original's leaves too, until the venue's word on it), and
    the original stays replaced. Ended as unlisted, with the original working again,
    both could fill in full unseen (reviews 29, 30). A rejection of the replace gives
    the original its leaves back (unreplace); one that never comes leaves a reservation
    that denies, never a wrong allow. So does a confirmation of the replacement, which
    may be an executor's echo: the replace is then in flight again (OrderLedger.restand)."""
    if replacement is None or not replacement.working \
            or replacement.client_order_id in listed:
        return False
    successor = replacement
    while successor.replaces:
        original = ledger.exact(successor.account, successor.replaces)
        if original is None or original.replaced_by != successor.client_order_id:
            return False
        if original.client_order_id in listed:
            return True
        successor = original
    return False


def _same_instrument(record: OrderRecord, fill: Fill) -> bool:
    return (record.strategy, record.symbol, record.side) == \
        (fill.strategy, fill.symbol, fill.side)
