"""The order's lifecycle: reservations, working-order caps, duplicates, fills tied to the
orders the sidecar allowed, replaces and snapshots of open orders (docs/design.md)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ess_sidecar.domain.commands import PositionsSynced
from ess_sidecar.domain.decisions import DecisionReason
from ess_sidecar.domain.approvals import ApprovalPolicy
from ess_sidecar.domain.breakers import Breaker
from ess_sidecar.domain.config import GuardConfig
from ess_sidecar.domain.engine import GuardEngine
from ess_sidecar.domain.errors import InvalidArgument, ResetRefused
from ess_sidecar.domain.limits import LimitSettings, SymbolLimits
from ess_sidecar.domain.orders import ENDED, IncludedFills, OpenOrder, OrderStatus, OrderUpdate, \
    Side
from ess_sidecar.domain.scopes import GLOBAL
from ess_sidecar.domain.states import State, TriggerMode

from .conftest import ACCOUNT, EQUITY, STRATEGY, SYMBOL, T0, account, fill, make_engine, order, \
    position, report_fill, reset, rules, run, timers, trip

R = DecisionReason
DAY = 86_400.0


def test_orders_in_flight_count_toward_the_limits_at_once():
    engine = make_engine(equity=100_000)  # 30 % symbol limit = 300 units at 100
    assert engine.check(order(290), T0).allowed  # 29 %
    for _ in range(4):
        assert engine.check(order(290), T0).reason is R.SYMBOL_EXPOSURE


def test_reduce_only_counts_working_orders_on_the_reducing_side(engine):
    report_fill(engine, fill(100, client_order_id=_allowed(engine, order(100))))
    trip(engine, GLOBAL, mode=TriggerMode.REDUCE_ONLY)
    assert engine.check(order(100, side=Side.SELL), T0).allowed
    assert engine.check(order(100, side=Side.SELL), T0).reason is R.REDUCE_ONLY
    assert engine.check(order(1, side=Side.SELL), T0).reason is R.REDUCE_ONLY


def test_reduce_only_judges_the_account_net_not_only_the_strategy(engine):
    """A hedged strategy flipping must not grow the account's net position."""
    engine.sync_positions(ACCOUNT, 1e6, [position(100), position(-100, strategy="hedge")])
    trip(engine, account(), mode=TriggerMode.REDUCE_ONLY)
    assert engine.check(order(50, side=Side.SELL), T0).reason is R.REDUCE_ONLY  # net 0 → -50


def test_symbol_limit_measures_the_account_net_even_when_the_strategy_shrinks():
    engine = make_engine(equity=100_000)
    engine.sync_positions(ACCOUNT, 100_000, [position(200), position(-200, strategy="hedge")])
    # "hedge" buys 400: its own position goes -200 → +200 (no growth), the net 0 → +400
    denied = engine.check(order(400, strategy="hedge"), T0)
    assert denied.reason is R.SYMBOL_EXPOSURE


def test_a_working_order_ends_on_cancel_reject_or_expiry_and_frees_its_reservation():
    engine = make_engine(equity=100_000)
    for status in (OrderStatus.CANCELLED, OrderStatus.REJECTED, OrderStatus.EXPIRED):
        coid = _allowed(engine, order(290))
        assert engine.check(order(290), T0).reason is R.SYMBOL_EXPOSURE
        assert engine.update_order(OrderUpdate(ACCOUNT, coid, status))
        assert not engine.update_order(OrderUpdate(ACCOUNT, coid, status))  # ended already
    assert engine.check(order(290), T0).allowed


def test_an_open_update_releases_only_what_can_no_longer_fill():
    """An OPEN update's leaves may have shrunk by fills not reported yet: alone it releases
    nothing. With the venue's filled_quantity, what it counts beyond the fills reported
    stays reserved, and only the rest (a venue's restatement) is released; never more."""
    engine = make_engine(equity=100_000)
    coid = _allowed(engine, order(290))
    assert engine.update_order(OrderUpdate(ACCOUNT, coid, OrderStatus.OPEN, 10))
    assert engine.update_order(OrderUpdate(ACCOUNT, coid, OrderStatus.OPEN, 10, 280))
    assert [r.remaining for r in engine.orders.working(ACCOUNT)] == [290]
    assert engine.check(order(20), T0).reason is R.SYMBOL_EXPOSURE
    engine = make_engine(equity=100_000)
    restated = _allowed(engine, order(290))
    assert engine.update_order(OrderUpdate(ACCOUNT, restated, OrderStatus.OPEN, 90, 0))
    assert engine.check(order(200), T0).allowed
    engine.update_order(OrderUpdate(ACCOUNT, restated, OrderStatus.OPEN, 500, 0))  # no growing
    [working] = [r for r in engine.orders.working(ACCOUNT) if r.client_order_id == restated]
    assert (working.remaining, working.quantity) == (90, 90)  # it may fill 90 more, no more
    assert engine.check(order(20), T0).reason is R.SYMBOL_EXPOSURE  # 90 + 200 + 20 > 300
    with pytest.raises(InvalidArgument, match="remaining_quantity"):
        engine.update_order(OrderUpdate(ACCOUNT, restated, OrderStatus.OPEN, None))
    for bad in (float("nan"), -1.0, float("inf")):
        with pytest.raises(InvalidArgument, match="filled_quantity"):
            engine.update_order(OrderUpdate(ACCOUNT, restated, OrderStatus.CANCELLED, None, bad))


@pytest.mark.parametrize("update", ["open, 10 left", "cancelled, 280 filled"])
def test_an_update_before_its_fills_frees_nothing_they_take(update):
    """Review 6: the venue fills 280 of 290 and the executor's update comes before the drop
    copy's fills. Another 280 is denied meanwhile; the fills then draw the order down; the
    account holds 28 %, where it reached 56 % against its 30 % limit."""
    engine = make_engine(equity=100_000)
    coid = _allowed(engine, order(290))
    engine.update_order(OrderUpdate(ACCOUNT, coid, OrderStatus.OPEN, 10) if update.startswith(
        "open") else OrderUpdate(ACCOUNT, coid, OrderStatus.CANCELLED, filled_quantity=280))
    assert engine.check(order(280), T0).reason is R.SYMBOL_EXPOSURE
    assert not report_fill(engine, fill(280, client_order_id=coid)).unchecked
    left = [r.remaining for r in engine.orders.working(ACCOUNT)]
    assert left == ([10] if update.startswith("open") else [])
    assert engine.book.position(ACCOUNT, STRATEGY, SYMBOL) == 280
    assert engine.check(order(30), T0).reason is R.SYMBOL_EXPOSURE  # 280 + 10|0 + 30 > 300
    if not update.startswith("open"):  # a fill beyond what the venue counted: not checked
        assert report_fill(engine, fill(5, client_order_id=coid)).unchecked


@pytest.mark.parametrize("update", [
    OrderUpdate(ACCOUNT, "", OrderStatus.EXPIRED, None, 4),  # 4 filled in all, ended
    OrderUpdate(ACCOUNT, "", OrderStatus.OPEN, 4, 0)])  # none filled, 4 may fill
def test_the_venues_word_caps_an_order_a_snapshot_listed_with_those_leaves(update):
    """Review 38h: a snapshot listed 4 left of 29; the venue's word that the order may
    fill 4 more at most capped nothing, since it reserved no more than that already, and
    25 more filled unseen beside the order allowed in its room (54 % against 30 %)."""
    engine = make_engine(equity=10_000)  # 30 % symbol limit = 30 units at 100
    coid = _allowed(engine, order(29))
    engine.sync_positions(ACCOUNT, 10_000, [position(0.0, mark=100.0)],
                          [OpenOrder(coid, STRATEGY, SYMBOL, Side.BUY, 4, 100)], T0)
    engine.update_order(update._replace(client_order_id=coid))
    assert not report_fill(engine, fill(4, client_order_id=coid)).unchecked
    assert report_fill(engine, fill(25, client_order_id=coid)).unchecked


def test_an_update_that_counted_a_fill_before_it_came_keeps_what_is_left_reserved():
    """The venue filled 8 of 10; the executor says "2 left" before the fill of 8 arrives:
    2 still work, so another 10 is over the 18-unit symbol limit either way round."""
    for update_first in (True, False):
        engine = make_engine(equity=6_000)  # 30 % symbol limit = 18 units at 100
        coid = _allowed(engine, order(10))
        open_two = OrderUpdate(ACCOUNT, coid, OrderStatus.OPEN, remaining_quantity=2)
        eight = fill(8, client_order_id=coid)
        if update_first:
            engine.update_order(open_two)
            assert not report_fill(engine, eight).unchecked
        else:
            assert not report_fill(engine, eight).unchecked
            engine.update_order(open_two)
        assert [r.remaining for r in engine.orders.working(ACCOUNT)] == [2]
        assert engine.check(order(10), T0).reason is R.SYMBOL_EXPOSURE  # 8 + 2 + 10 > 18
        assert not report_fill(engine, fill(2, client_order_id=coid)).unchecked
        assert list(engine.orders.working(ACCOUNT)) == []


def test_no_timer_ends_a_working_order():
    engine = make_engine(equity=100_000)
    _allowed(engine, order(290))
    for later in (60, 3600, 2 * DAY, 30 * DAY):
        timers(engine, T0 + later)
        assert engine.check(order(290), T0 + later).reason is R.SYMBOL_EXPOSURE
    assert engine.orders.per_account == {ACCOUNT: 1}


def test_a_fill_draws_down_its_order_and_a_replayed_fill_id_counts_once(engine):
    coid = _allowed(engine, order(10))
    first = report_fill(engine, fill(4, client_order_id=coid, fill_id="exec-1"))
    again = report_fill(engine, fill(4, client_order_id=coid, fill_id="exec-1"))
    assert (first.position, first.duplicate, again.position, again.duplicate) == \
        (4, False, 4, True)
    [working] = engine.orders.working(ACCOUNT)
    assert working.remaining == 6
    report_fill(engine, fill(6, client_order_id=coid, fill_id="exec-2"))
    assert list(engine.orders.working(ACCOUNT)) == []
    assert engine.state_of(account()) is State.ARMED


@pytest.mark.parametrize("first, again", [
    (dict(price=100.1), dict(price=100.10000000001)),  # printed otherwise
    (dict(quantity=0.1 + 0.2), dict(quantity=0.3)),  # partials added otherwise
    (dict(client_order_id="O"), dict(client_order_id="R"))],  # the latest id of its chain
    ids=["price", "quantity", "replaced"])
def test_a_fill_reported_again_as_two_feeds_print_it_counts_once(first, again):
    """The executor and a drop copy report one execution: not always byte for byte the
    same (review 29's reviewer: each of these tripped the account falsely)."""
    engine = make_engine()
    _allowed(engine, order(10, client_order_id="O"))
    _allowed(engine, order(10, client_order_id="R", replaces="O"))
    fields = {"quantity": 0.3, "price": 100.0, "client_order_id": "O", "fill_id": "e-1"}
    report_fill(engine, fill(**{**fields, **first}))
    outcome = report_fill(engine, fill(**{**fields, **again}))
    assert (outcome.duplicate, outcome.unchecked) == (True, "")
    assert engine.state_of(account()) is State.ARMED


@pytest.mark.parametrize("other", [
    dict(client_order_id="never-checked"), dict(quantity=3), dict(side=Side.SELL),
    dict(symbol="ETH-USD"), dict(strategy="other")], ids=str)
def test_a_fill_id_applied_before_to_another_fill_trips_the_account_and_books_nothing(
        engine, other):
    """Review 29: a fill under a fill_id already applied was ignored as a duplicate
    whatever it was: an order the sidecar never allowed, filled under a reused id, left
    no trace, and its position was never booked."""
    coid = _allowed(engine, order(10))
    report_fill(engine, fill(4, client_order_id=coid, fill_id="exec-1"))
    book_before = engine.book.position(ACCOUNT, STRATEGY, SYMBOL)
    plan, outcome = engine.plan_fill(
        fill(**{"quantity": 4, "client_order_id": coid, "fill_id": "exec-1", **other}), T0)
    assert not outcome.duplicate and outcome.conflict
    assert "exec-1 was applied before to another fill" in outcome.unchecked
    [trip_] = plan.transitions
    assert (trip_.scope, trip_.state, trip_.breaker) == (account(), State.TRIPPED,
                                                         Breaker.UNCHECKED_ORDER)
    run(engine, plan)
    assert engine.book.position(ACCOUNT, STRATEGY, SYMBOL) == book_before == 4
    assert engine.book.position(ACCOUNT, "other", "ETH-USD") == 0
    # the fill first applied under that id is still a duplicate, and trips nothing more
    assert report_fill(engine, fill(4, client_order_id=coid, fill_id="exec-1")).duplicate


@pytest.mark.parametrize("bad", [
    dict(client_order_id="never-checked"), dict(quantity=11), dict(side=Side.SELL),
    dict(symbol="ETH-USD"), dict(strategy="other")], ids=str)
def test_a_fill_the_sidecar_cannot_tie_to_what_it_allowed_trips_the_account(engine, bad):
    coid = _allowed(engine, order(10))
    unchecked = fill(**{"quantity": 10, "client_order_id": coid, **bad})
    plan, outcome = engine.plan_fill(unchecked, T0)
    assert outcome.unchecked
    [trip_] = plan.transitions
    assert (trip_.scope, trip_.state, trip_.breaker) == (account(), State.TRIPPED,
                                                         Breaker.UNCHECKED_ORDER)


def test_the_retry_of_an_unchecked_fill_whose_trip_was_not_stored_trips(engine):
    """Review 8: the store failed while the trip was written (UNAVAILABLE); the fill was in
    the book and its fill_id known, so the retry passed as a duplicate and the account was
    never tripped. A retry trips until the account's trip is stored; then it is a
    duplicate again (a drop copy reporting it after an operator's reset trips nothing)."""
    unchecked = fill(5, client_order_id="never-checked", fill_id="exec-9")
    plan, outcome = engine.plan_fill(unchecked, T0)
    assert outcome.unchecked and plan.transitions  # ... and the store fails: not applied
    retry, again = engine.plan_fill(unchecked, T0 + 1)
    assert again.duplicate and again.unchecked and again.position == 5  # booked once
    [trip_] = run(engine, retry)
    assert (trip_.scope, trip_.breaker) == (account(), Breaker.UNCHECKED_ORDER)
    reset(engine, account(), T0 + 2, force=True)
    late, copy = engine.plan_fill(unchecked, T0 + 3)
    assert copy.duplicate and not copy.unchecked and not late.transitions


def test_a_second_unchecked_fill_renews_the_trip_so_a_reset_made_before_it_lifts_nothing():
    """Review 31: a second fill of an order the sidecar never allowed, on an account that
    the first had tripped, was dropped: the operator's reset, made with the version seen
    before it, then resumed an account that had just sent another order past the guard."""
    engine = make_engine()
    first = report_fill(engine, fill(1, client_order_id="never-checked", fill_id="x-1"))
    seen = engine.version
    assert first.unchecked and engine.state_of(account()) is State.TRIPPED
    plan, again = engine.plan_fill(fill(2, client_order_id="also-unchecked", fill_id="x-2"),
                                   T0 + 10)
    [renewed] = run(engine, plan)
    assert again.unchecked and renewed.version > seen
    assert (renewed.state, renewed.breaker) == (State.TRIPPED, Breaker.UNCHECKED_ORDER)
    assert "also-unchecked" in renewed.reason
    with pytest.raises(ResetRefused, match="changed since version"):
        run(engine, engine.plan_reset(account(), "reconciled", True, "operator", T0 + DAY,
                                      expected_version=seen))
    duplicate, copy = engine.plan_fill(fill(2, client_order_id="also-unchecked",
                                            fill_id="x-2"), T0 + 11)
    assert copy.duplicate and not duplicate.transitions  # a drop copy of it: nothing new


def test_unchecked_fills_in_a_storm_renew_the_trip_once_a_second_or_when_a_reset_is_asked():
    """Review 37c: each unchecked fill renewed the account's trip: a drop copy's 300 a
    second made 300 durable writes and alerts, checks waiting behind them. Renewed once
    a second at most (a reset is allowed only after the cooldown, so it finds the
    evidence before it), and at once when a reset is asked meanwhile (a request made
    before the evidence is void: a forced one may come within that second)."""
    engine = GuardEngine(GuardConfig(approvals=ApprovalPolicy(required=2)))
    report_fill(engine, fill(1, client_order_id="never-checked", fill_id="x-0"))
    first = engine.version
    for n in range(1, 300):
        plan, outcome = engine.plan_fill(fill(1, client_order_id="never-checked",
                                              fill_id=f"x-{n}"), T0 + n / 1000)
        assert outcome.unchecked and run(engine, plan) == []
    assert engine.version == first and engine.state_of(account()) is State.TRIPPED
    plan, _ = engine.plan_fill(fill(1, client_order_id="also-unchecked", fill_id="x-300"),
                               T0 + 1)
    [renewed] = run(engine, plan)
    assert renewed.version == first + 1 and "also-unchecked" in renewed.reason
    asked = engine.plan_reset(account(), "reconciled", True, "alice", T0 + 1.2)
    assert asked.pending_reset is not None
    plan, _ = engine.plan_fill(fill(1, client_order_id="never-checked", fill_id="x-301"),
                               T0 + 1.3)
    assert [t.version for t in run(engine, plan)] == [first + 2]  # alice's request is void
    approval = engine.plan_reset(account(), "agreed", True, "bob", T0 + 1.4)
    assert approval.pending_reset.requested_by == "bob" and not run(engine, approval)
    assert engine.state_of(account()) is State.TRIPPED


def test_unchecked_evidence_the_trip_did_not_renew_for_is_renewed_by_the_next_timer_run():
    """Review 37f: an unchecked fill within a second of the trip's last renewal left no
    trace an operator sees, and a reset naming the version seen lifted the trip hours
    later. The next timer run a second after the renewal renews it with that evidence;
    checks need not wait for that run (it restricts nothing more)."""
    engine = make_engine()
    report_fill(engine, fill(1, client_order_id="rogue-1", fill_id="f1"))
    seen = engine.version
    plan, outcome = engine.plan_fill(fill(500, client_order_id="rogue-2", fill_id="f2"),
                                     T0 + 0.5)
    assert outcome.unchecked and run(engine, plan) == []
    assert timers(engine, T0 + 0.9) == [] and not engine.timers_would_trip(T0 + 1)
    [renewed] = timers(engine, T0 + 1)
    assert renewed.version == seen + 1 and "rogue-2" in renewed.reason
    assert renewed.state is State.TRIPPED and renewed.breaker == Breaker.UNCHECKED_ORDER
    with pytest.raises(ResetRefused, match="changed since version"):
        run(engine, engine.plan_reset(account(), "reconciled", False, "operator", T0 + DAY,
                                      expected_version=seen))
    assert timers(engine, T0 + 2) == []  # once


def test_another_latchs_transition_keeps_the_evidence_waiting_for_its_renewal():
    """Review 37g: any transition of the scope (a Trigger, a lost heartbeat) dropped the
    evidence waiting for the next timer run, though it renewed another latch."""
    engine = make_engine()
    report_fill(engine, fill(1, client_order_id="rogue-1", fill_id="f1"))
    run(engine, engine.plan_fill(fill(500, client_order_id="rogue-2", fill_id="f2"),
                                 T0 + 0.5)[0])
    trip(engine, account(), T0 + 0.6)
    [renewed] = timers(engine, T0 + 1)
    assert renewed.breaker == Breaker.UNCHECKED_ORDER and "rogue-2" in renewed.reason


def test_a_day_old_fill_sent_again_under_a_reused_order_id_counts_once():
    """Review 37c: an order's id is free to use again a retention after it was allowed,
    and its fills' ids were forgotten with it: a drop copy's repeat of yesterday's fill
    was booked to today's order of that id (a position of 20 for 10 bought, today's order
    no longer reserved, and a REDUCE_ONLY sell of 20 allowed as reducing). A fill id
    outlives its order by a retention: the repeat is a duplicate."""
    limits = LimitSettings(duplicate_identical_orders=0, order_id_retention_s=3)
    engine = make_engine(equity=100_000, limits=limits)
    yesterday = fill(10, client_order_id=_allowed(engine, order(10, client_order_id="c1")),
                     fill_id="exec-1")
    assert not report_fill(engine, yesterday, T0 + 1).unchecked
    timers(engine, T0 + 3.5)  # c1 forgotten: its id may be used again
    timers(engine, T0 + 4.5)  # exec-1 a retention old
    _allowed(engine, order(10, client_order_id="c1"), T0 + 5)
    again = report_fill(engine, yesterday, T0 + 5)
    assert again.duplicate and not again.unchecked
    assert engine.book.position(ACCOUNT, STRATEGY, SYMBOL) == 10
    assert _reserved(engine) == {"c1": 10}


def test_an_order_replaced_twice_stays_counted_while_it_works_for_fills_it_is_owed():
    """Review 37b: A -> B -> C, B replaced before the venue's word on it. B's cancel with
    5 filled, sent twice (executor and drop copy): the second took B's crossing (kept for
    a rejection of C) off the 5 it is owed and ended it, then reserved the 5 again
    uncounted. An order past the cap was allowed, B was in no list, and its fill raised
    KeyError after moving the position: retried, it was booked twice."""
    engine = make_engine(limits=LimitSettings(max_working_orders_per_strategy=2,
                                              duplicate_identical_orders=0))
    for quantity, coid, replaces in ((100, "A", ""), (90, "B", "A"), (80, "C", "B")):
        _allowed(engine, order(quantity, client_order_id=coid, replaces=replaces))
    for _ in range(2):
        assert engine.update_order(OrderUpdate(ACCOUNT, "B", OrderStatus.CANCELLED, None, 5))
        assert _reserved(engine) == {"C": 100, "B": 5}
        assert engine.check(order(1), T0).reason is R.MAX_WORKING_ORDERS
    assert not report_fill(engine, fill(5, client_order_id="B", fill_id="x1")).unchecked
    assert report_fill(engine, fill(5, client_order_id="B", fill_id="x1")).duplicate
    assert _reserved(engine) == {"C": 100}
    assert engine.book.position(ACCOUNT, STRATEGY, SYMBOL) == 5
    assert engine.check(order(1), T0).allowed


def test_a_fill_id_used_again_after_the_retention_by_another_order_is_a_new_fill():
    """Review 37f: fill ids are unique per account for the retention. One kept past its
    order (above) was taken for a conflict when the venue used it again, a retention
    later, for another order's execution: the account tripped, the fill unbooked."""
    limits = LimitSettings(duplicate_identical_orders=0, order_id_retention_s=3)
    engine = make_engine(equity=100_000, limits=limits)
    first = fill(5, client_order_id=_allowed(engine, order(5, client_order_id="o1")),
                 fill_id="x1")
    report_fill(engine, first, T0 + 1)
    timers(engine, T0 + 3.5)  # o1 forgotten
    timers(engine, T0 + 4.5)  # x1 a retention old
    _allowed(engine, order(3, client_order_id="o2"), T0 + 5)
    again = report_fill(engine, fill(3, client_order_id="o2", fill_id="x1"), T0 + 5)
    assert not again.unchecked and not again.duplicate
    assert engine.book.position(ACCOUNT, STRATEGY, SYMBOL) == 8


def test_a_fill_id_used_again_keeps_no_later_id_past_its_retention():
    """Review 40c: x1's reuse (above) kept its old place in the table, with its new time,
    and the expiry stops at the first id not due: x2 behind it outlived its retention
    unmarked, and the venue's later reuse of x2 for another order tripped the account."""
    limits = LimitSettings(duplicate_identical_orders=0, order_id_retention_s=3)
    engine = make_engine(equity=100_000, limits=limits)

    def filled(coid: str, fill_id: str, now: float) -> None:
        _allowed(engine, order(1, client_order_id=coid), now)
        assert not report_fill(engine, fill(1, client_order_id=coid, fill_id=fill_id),
                               now).unchecked

    filled("o1", "x1", T0)
    timers(engine, T0 + 3.5)  # o1 forgotten, x1 kept for it
    filled("o2", "x2", T0 + 4)
    filled("o3", "x1", T0 + 5)  # the venue uses x1 again, a retention later
    timers(engine, T0 + 7.5)  # o2 forgotten; x2 a retention old: kept for o2's fills only
    _allowed(engine, order(1, client_order_id="o4"), T0 + 7.6)
    again = report_fill(engine, fill(1, client_order_id="o4", fill_id="x2"), T0 + 7.6)
    assert not again.unchecked and not again.duplicate
    assert engine.state_of(account()) is State.ARMED
    assert engine.book.position(ACCOUNT, STRATEGY, SYMBOL) == 4


def test_a_fill_worse_than_its_limit_beyond_the_band_trips_and_moves_no_mark():
    """Review of stop 32: a SELL limit 100 reported filled at 1 (an executor's units bug)
    took the account's mark to 1, and a sell 40 times the notional cap was allowed. No
    venue fills a limit that far on the wrong side of it: the account trips, and the mark
    stays where the market is."""
    engine = make_engine(limits=LimitSettings(default=SymbolLimits(
        max_order_notional=500_000), max_orders_per_second=0))
    big = order(200_000, 1.0, Side.SELL)
    assert engine.check(big, T0).reason is R.MAX_ORDER_NOTIONAL
    sold = _allowed(engine, order(1, 100.0, Side.SELL))
    outcome = report_fill(engine, fill(1, 1.0, Side.SELL, client_order_id=sold))
    assert "worse than its limit 100" in outcome.unchecked
    assert engine.state_of(account()) is State.TRIPPED
    assert engine.book.mark(ACCOUNT, SYMBOL) == 100.0
    reset(engine, account(), T0 + DAY, force=True)
    assert engine.check(order(200_000, 1.0, Side.SELL), T0 + DAY).reason \
        is R.MAX_ORDER_NOTIONAL


def test_a_fill_price_beyond_the_band_of_the_mark_moves_no_mark():
    """A BUY reported filled at a hundredth of its limit is a price improvement no venue
    gives: it does not trip (slippage the other way is possible), but its price is not
    taken as the market's, so a SELL at that price is still valued at the market."""
    engine = make_engine(limits=LimitSettings(default=SymbolLimits(
        max_order_notional=500_000), max_orders_per_second=0))
    bought = _allowed(engine, order(1, 100.0))
    assert not report_fill(engine, fill(1, 1.0, client_order_id=bought)).unchecked
    assert engine.book.mark(ACCOUNT, SYMBOL) == 100.0
    assert engine.check(order(200_000, 1.0, Side.SELL), T0).reason is not R.ALLOWED
    within = _allowed(engine, order(1, 100.0))
    report_fill(engine, fill(1, 95.0, client_order_id=within))  # within the 10 % band
    assert engine.book.mark(ACCOUNT, SYMBOL) == 95.0


def test_fills_each_within_the_band_cannot_walk_the_mark_beyond_it():
    """Each fill within 10 % of the one before would take the mark from 100 to 1 in 45
    steps: fills move it within the band of the last snapshot's mark, and only a snapshot
    moves it further."""
    engine = make_engine(limits=LimitSettings(max_orders_per_second=0))
    price = 100.0
    for _ in range(45):  # each sell priced at the last fill, each fill 9 % below it
        sell = order(1, price, Side.SELL)
        if engine.check(sell, T0).allowed:
            price *= 0.91
            report_fill(engine, fill(1, price, Side.SELL,
                                     client_order_id=sell.client_order_id))
    assert engine.book.mark(ACCOUNT, SYMBOL) >= 90.0
    assert engine.state_of(account()) is State.ARMED  # each fill was one a venue may give
    engine.sync_positions(ACCOUNT, EQUITY, [position(0, mark=50.0)])  # the broker says
    report_fill(engine, fill(1, 46.0, client_order_id=_allowed(engine, order(1, 50.0))))
    assert engine.book.mark(ACCOUNT, SYMBOL) == 46.0


def test_with_no_mark_a_fill_price_far_from_its_order_sets_none():
    engine = make_engine(limits=LimitSettings(exposure_enabled=False,
                                              max_orders_per_second=0))
    engine.book.account(ACCOUNT).marks.clear()
    bought = _allowed(engine, order(1, 100.0))
    report_fill(engine, fill(1, 0.01, client_order_id=bought))
    assert engine.book.mark(ACCOUNT, SYMBOL) is None
    report_fill(engine, fill(1, 98.0, client_order_id=_allowed(engine, order(1, 100.0))))
    assert engine.book.mark(ACCOUNT, SYMBOL) == 98.0


def test_with_the_price_band_off_a_fill_sets_the_mark_whatever_its_price():
    engine = make_engine(limits=LimitSettings(default=SymbolLimits(price_band_pct=0.0),
                                              max_orders_per_second=0))
    sold = _allowed(engine, order(1, 100.0, Side.SELL))
    assert not report_fill(engine, fill(1, 1.0, Side.SELL, client_order_id=sold)).unchecked
    assert engine.book.mark(ACCOUNT, SYMBOL) == 1.0


@pytest.mark.parametrize("status", sorted(ENDED), ids=lambda status: status.name)
def test_a_fill_after_the_venue_ended_its_order_without_word_on_fills_trips(status):
    """Review 12: x 290 is cancelled with no word on fills, so its room is free and y 290
    is allowed in it; then x's fill comes. The two took the account to 58 % against 30 %:
    the fill must trip, not pass as x's own (here x filled 40 first, so y is 250)."""
    engine = make_engine(equity=100_000)  # 30 % symbol limit = 300 units at 100
    x = _allowed(engine, order(290))
    report_fill(engine, fill(40, client_order_id=x))
    engine.update_order(OrderUpdate(ACCOUNT, x, status))
    y = _allowed(engine, order(250))
    assert report_fill(engine, fill(1, client_order_id=x)).unchecked  # beyond the 40 reported
    assert engine.state_of(account()) is State.TRIPPED
    assert not report_fill(engine, fill(250, client_order_id=y)).unchecked  # y's own


def test_a_fill_the_venue_counted_when_it_ended_the_order_is_its_own():
    """With filled_quantity, fills on their way stay reserved and are the order's own; one
    beyond them trips."""
    engine = make_engine(equity=100_000)
    x = _allowed(engine, order(290))
    engine.update_order(OrderUpdate(ACCOUNT, x, OrderStatus.CANCELLED, filled_quantity=100))
    assert engine.check(order(250), T0).reason is R.SYMBOL_EXPOSURE  # 100 still reserved
    assert not report_fill(engine, fill(100, client_order_id=x)).unchecked
    assert engine.state_of(account()) is State.ARMED
    assert report_fill(engine, fill(1, client_order_id=x)).unchecked


def test_a_cancel_of_a_replaced_order_leaves_its_fills_to_the_chain():
    """Some executors report the venue's "replaced" for the original as CANCELLED: its
    fills that crossed the replace still go to the chain, beyond the 200 it was owed."""
    engine = make_engine(equity=100_000)
    x = _allowed(engine, order(290))
    engine.update_order(OrderUpdate(ACCOUNT, x, OrderStatus.OPEN, 90, 200))
    _allowed(engine, order(100, replaces=x))
    engine.update_order(OrderUpdate(ACCOUNT, x, OrderStatus.CANCELLED))
    assert not report_fill(engine, fill(250, client_order_id=x)).unchecked


def test_a_cancel_of_an_order_a_snapshot_left_out_is_final():
    """A snapshot left x out (it may have been on its way); the venue's CANCELLED is final:
    x's fills beyond those reported trip, and an older OPEN update that comes after it
    does not make x work again."""
    engine = make_engine(equity=100_000)
    x = _allowed(engine, order(290))
    engine.sync_positions(ACCOUNT, 100_000, [position(0)], [])
    assert engine.update_order(OrderUpdate(ACCOUNT, x, OrderStatus.CANCELLED))
    assert not engine.update_order(OrderUpdate(ACCOUNT, x, OrderStatus.CANCELLED))
    assert not engine.update_order(OrderUpdate(ACCOUNT, x, OrderStatus.OPEN, 290, 0))
    assert list(engine.orders.working(ACCOUNT)) == []
    assert report_fill(engine, fill(1, client_order_id=x)).unchecked


def test_a_reused_client_order_id_is_a_duplicate_for_the_retention_then_forgotten(engine):
    coid = _allowed(engine, order(1))
    engine.update_order(OrderUpdate(ACCOUNT, coid, OrderStatus.CANCELLED))
    assert engine.check(order(1, client_order_id=coid), T0 + 10).reason is R.DUPLICATE_ORDER
    assert engine.check(order(1, client_order_id=coid, account="acc-2"), T0).reason \
        is not R.DUPLICATE_ORDER  # ids are per account
    timers(engine, T0 + DAY + 1)
    assert engine.check(order(1, client_order_id=coid), T0 + DAY + 1).allowed


def test_a_resent_order_is_denied_by_the_first_check_it_fails_in_the_contracts_order():
    """The contract's order (docs/design.md, "Limits"): the used id is step 6, after the
    limits, and the first failure wins. Review 44a read issue 9 as saying a resent order
    is always DUPLICATE_ORDER; the contract says otherwise, and a resend is denied either
    way (its own reservation counts toward the exposure it is judged against)."""
    engine = make_engine(equity=100_000)
    big, small = order(290, client_order_id="big-1"), order(1, client_order_id="small-1")
    assert engine.check(big, T0).allowed and engine.check(small, T0).allowed
    for at in (T0, T0 + 10):
        assert engine.check(big, at).reason is R.SYMBOL_EXPOSURE  # step 5 first
        assert engine.check(small, at).reason is R.DUPLICATE_ORDER  # step 6
    trip(engine, account(), T0 + 12)
    assert engine.check(small, T0 + 12).reason is R.SCOPE_TRIPPED  # the state comes first


def test_n_identical_orders_within_the_window_are_duplicates():
    engine = make_engine(limits=LimitSettings(duplicate_identical_orders=3,
                                              duplicate_window_s=1.0))
    assert engine.check(order(1), T0).allowed
    assert engine.check(order(1), T0 + 0.1).allowed
    assert engine.check(order(1), T0 + 0.2).reason is R.DUPLICATE_ORDER
    assert engine.check(order(2), T0 + 0.2).allowed  # not identical
    # The first left the window, before any timer run forgot it (review 40c: denied
    # until the timers' next run).
    assert engine.check(order(1), T0 + 1.05).allowed


def test_working_order_caps_per_account_and_per_strategy():
    engine = make_engine(limits=LimitSettings(max_working_orders_per_account=3,
                                              max_working_orders_per_strategy=2,
                                              duplicate_identical_orders=0))
    assert engine.check(order(1), T0).allowed
    assert engine.check(order(1), T0).allowed
    assert engine.check(order(1), T0).reason is R.MAX_WORKING_ORDERS  # strategy
    assert engine.check(order(1, strategy="other"), T0).allowed
    assert engine.check(order(1, strategy="third"), T0).reason is R.MAX_WORKING_ORDERS


def test_a_replace_of_an_order_owed_fills_frees_no_slot_while_it_works_for_them():
    """Review 30: the replace freed the original's slot, but the original works on for
    the fills it is owed: three working orders against a cap of two."""
    engine = make_engine(limits=LimitSettings(max_working_orders_per_account=2,
                                              duplicate_identical_orders=0))
    a = _allowed(engine, order(20))
    assert engine.update_order(OrderUpdate(ACCOUNT, a, OrderStatus.OPEN, 10, 10))
    _allowed(engine, order(10))
    assert engine.check(order(10, replaces=a), T0).reason is R.MAX_WORKING_ORDERS
    assert not report_fill(engine, fill(10, client_order_id=a)).unchecked  # owed no more
    assert engine.check(order(10, replaces=a), T0).allowed  # so it ends: its slot is free


def test_a_replace_is_judged_without_the_old_reservation_and_takes_its_place():
    engine = make_engine(equity=100_000)
    old = _allowed(engine, order(290))
    assert engine.check(order(295), T0).reason is R.SYMBOL_EXPOSURE
    new = engine.check(order(295, client_order_id="new", replaces=old), T0)
    assert new.allowed
    assert [r.client_order_id for r in engine.orders.working(ACCOUNT)] == ["new"]
    assert not report_fill(engine, fill(5, client_order_id=old)).unchecked  # now the new one's
    [working] = engine.orders.working(ACCOUNT)
    assert working.remaining == 290
    denied = engine.check(order(400, client_order_id="newer", replaces="new"), T0)
    assert denied.reason is R.SYMBOL_EXPOSURE  # a denied replace leaves the old one
    assert [r.remaining for r in engine.orders.working(ACCOUNT)] == [290]


def test_a_snapshot_of_open_orders_ends_the_unlisted_and_counts_the_unknown():
    engine = make_engine(equity=100_000)
    listed, gone = _allowed(engine, order(100)), _allowed(engine, order(100))
    stranger = OpenOrder("venue-1", STRATEGY, SYMBOL, Side.BUY, 150, 100)
    engine.sync_positions(ACCOUNT, 100_000, [position(0)], [
        OpenOrder(listed, STRATEGY, SYMBOL, Side.BUY, 40, 100), stranger], T0)
    working = {r.client_order_id: r.remaining for r in engine.orders.working(ACCOUNT)}
    assert working == {listed: 40, "venue-1": 150}
    assert gone not in working
    assert engine.check(order(120), T0).reason is R.SYMBOL_EXPOSURE  # 40 + 150 + 120 > 300
    engine.sync_positions(ACCOUNT, 100_000, [position(0)])  # says nothing of orders
    assert len(list(engine.orders.working(ACCOUNT))) == 2
    engine.sync_positions(ACCOUNT, 100_000, [position(0)], [], T0)  # complete: none open
    assert list(engine.orders.working(ACCOUNT)) == []


def test_an_operator_clears_working_orders(engine):
    keep, drop = _allowed(engine, order(1)), _allowed(engine, order(1))
    assert engine.clear_working_orders(ACCOUNT, [drop]) == 1
    assert [r.client_order_id for r in engine.orders.working(ACCOUNT)] == [keep]
    assert engine.clear_working_orders(ACCOUNT, []) == 1


def test_clearing_a_replacement_the_venue_has_not_confirmed_gives_the_original_back(engine):
    """Review 11: B replaces A (100 leaves); the venue rejects B, and the operator, seeing B
    gone, clears it before the rejection reaches the sidecar. A is live with its 100: it
    works again, as the rejection would leave it, unless the operator names it too. B
    confirmed by the venue, A is gone: clearing B ends B alone."""
    a = _allowed(engine, order(100, client_order_id="A"))
    engine.update_order(OrderUpdate(ACCOUNT, a, OrderStatus.OPEN, 100, 0))
    b = _allowed(engine, order(50, client_order_id="B", replaces=a))
    assert engine.clear_working_orders(ACCOUNT, [b]) == 1
    assert _reserved(engine) == {a: 100}
    engine.update_order(OrderUpdate(ACCOUNT, b, OrderStatus.REJECTED, None, 0))
    assert _reserved(engine) == {a: 100}
    c = _allowed(engine, order(50, client_order_id="C", replaces=a))
    assert engine.clear_working_orders(ACCOUNT, [a, c]) == 1
    assert _reserved(engine) == {}
    d = _allowed(engine, order(10, client_order_id="D"))
    e = _allowed(engine, order(5, client_order_id="E", replaces=d))
    engine.update_order(OrderUpdate(ACCOUNT, e, OrderStatus.OPEN, 5, 0))
    assert engine.clear_working_orders(ACCOUNT, [e]) == 1
    assert _reserved(engine) == {}
    f = _allowed(engine, order(10, client_order_id="F"))
    _allowed(engine, order(5, client_order_id="G", replaces=f))
    assert engine.clear_working_orders(ACCOUNT, []) == 1  # all: nothing works
    assert _reserved(engine) == {}


def test_positions_stay_within_the_documented_magnitude(engine):
    engine = make_engine(limits=LimitSettings(exposure_enabled=False,
                                              duplicate_identical_orders=0))
    first = _allowed(engine, order(9e11))
    report_fill(engine, fill(9e11, client_order_id=first))
    # Its fill could not be applied: the check denies what the book cannot hold.
    assert engine.check(order(2e11), T0).reason is R.QUANTITY_UNREPRESENTABLE
    assert engine.check(order(1e11), T0).allowed  # exactly 1e12 is within
    assert engine.check(order(1e-6), T0).reason is R.QUANTITY_UNREPRESENTABLE
    assert engine.check(order(5e11, side=Side.SELL), T0).allowed  # reduces: representable


def test_a_fill_the_book_cannot_hold_is_not_booked_and_trips_the_account():
    """Review 20: it was refused and tripped nothing, so the next orders were judged on a
    position that lacked it (9e11 booked, 1.4e12 true). No order the sidecar allowed can
    take a position beyond ±1e12: it was sent past the guard, or over-filled."""
    engine = make_engine(limits=LimitSettings(exposure_enabled=False,
                                              duplicate_identical_orders=0))
    first = _allowed(engine, order(9e11))
    report_fill(engine, fill(9e11, client_order_id=first))
    plan, outcome = engine.plan_fill(fill(5e11, client_order_id="past-the-guard"), T0)
    assert "beyond ±1e+12" in outcome.refused
    assert engine.book.position(ACCOUNT, STRATEGY, SYMBOL) == 9e11  # not booked
    (trip,) = plan.transitions
    assert (trip.scope, trip.state, trip.breaker) == (account(), State.TRIPPED,
                                                      Breaker.UNCHECKED_ORDER)
    engine.apply(plan.transitions)
    assert engine.check(order(1, side=Side.SELL), T0).reason is R.SCOPE_TRIPPED


def _allowed(engine, candidate, now: float = T0) -> str:
    decision = engine.check(candidate, now)
    assert decision.allowed, decision
    return candidate.client_order_id


def test_an_unchecked_order_trip_resets_after_its_cooldown_even_after_a_restart():
    engine = make_engine()
    plan, _ = engine.plan_fill(fill(1, client_order_id="never-checked"), T0)
    [tripped] = plan.transitions
    engine.apply(plan.transitions)
    restarted = make_engine()
    restarted.restore([tripped], tripped.version, T0 + 1)
    assert restarted.holding(account(), T0 + 1) == []
    later = T0 + 3600
    transitions = restarted.plan_reset(account(), "reconciled", False, "operator", later)
    assert transitions.transitions[-1].state is State.ARMED


def test_replacing_an_order_that_already_ended_takes_nothing_over(engine):
    old = _allowed(engine, order(10))
    engine.update_order(OrderUpdate(ACCOUNT, old, OrderStatus.CANCELLED))
    assert engine.check(order(10, client_order_id="new", replaces=old), T0).allowed
    report_fill(engine, fill(4, client_order_id=old))  # a late fill of the old order
    [new] = engine.orders.working(ACCOUNT)
    assert (new.client_order_id, new.remaining) == ("new", 10)


# -- replaces name one order, and keep its strategy, symbol and side --------------------------


def test_an_update_of_a_replaced_order_leaves_its_replacement_working():
    engine = make_engine(equity=100_000)  # 30 % symbol limit = 300 units at 100
    old = _allowed(engine, order(290))
    new = _allowed(engine, order(290, replaces=old))
    # Taken (its leaves are gone: a rejected replace would give none back), but it ends
    # nothing: the replacement works on.
    assert engine.update_order(OrderUpdate(ACCOUNT, old, OrderStatus.CANCELLED))
    assert [r.client_order_id for r in engine.orders.working(ACCOUNT)] == [new]
    assert engine.check(order(290), T0).reason is R.SYMBOL_EXPOSURE


def test_replacing_an_order_already_replaced_is_judged_as_a_new_order():
    engine = make_engine(equity=100_000)
    first = _allowed(engine, order(290))
    second = _allowed(engine, order(290, replaces=first))
    third = engine.check(order(290, replaces=first), T0)  # names the first again
    assert third.reason is R.SYMBOL_EXPOSURE  # second's 290 still counts
    assert [r.client_order_id for r in engine.orders.working(ACCOUNT)] == [second]


def test_a_replace_keeps_the_strategy_symbol_and_side_of_the_order_it_replaces():
    engine = make_engine(limits=LimitSettings(max_working_orders_per_strategy=2,
                                              duplicate_identical_orders=0))
    other = _allowed(engine, order(1, strategy="s2"))
    _allowed(engine, order(1, strategy="s1"))
    _allowed(engine, order(1, strategy="s1"))
    assert engine.check(order(1, strategy="s1"), T0).reason is R.MAX_WORKING_ORDERS
    for wrong in (order(1, strategy="s1", replaces=other),  # frees s2's slot, not s1's
                  order(1, strategy="s2", symbol="ETH-USD", replaces=other),
                  order(1, side=Side.SELL, strategy="s2", replaces=other)):
        with pytest.raises(InvalidArgument) as raised:
            engine.check(wrong, T0)
        assert raised.value.field == "replaces_client_order_id"
    assert engine.orders.per_strategy == {(ACCOUNT, "s1"): 2, (ACCOUNT, "s2"): 1}
    assert not engine.orders.used(ACCOUNT, wrong.client_order_id)  # nothing changed
    assert engine.check(order(2, strategy="s2", replaces=other), T0).allowed


def test_a_rejected_replacement_leaves_the_original_working_as_it_was(engine):
    original = _allowed(engine, order(10))
    report_fill(engine, fill(4, client_order_id=original))
    replacement = _allowed(engine, order(20, replaces=original))
    assert engine.update_order(OrderUpdate(ACCOUNT, replacement, OrderStatus.REJECTED))
    [working] = engine.orders.working(ACCOUNT)
    assert (working.client_order_id, working.remaining) == (original, 6)
    assert not report_fill(engine, fill(6, client_order_id=original)).unchecked
    assert list(engine.orders.working(ACCOUNT)) == []
    # A replacement cancelled after the venue's word on it leaves the original ended.
    original = _allowed(engine, order(10))
    replacement = _allowed(engine, order(10, replaces=original))
    assert engine.update_order(OrderUpdate(ACCOUNT, replacement, OrderStatus.OPEN, 10))
    assert engine.update_order(OrderUpdate(ACCOUNT, replacement, OrderStatus.CANCELLED))
    assert list(engine.orders.working(ACCOUNT)) == []


def test_a_replacement_cancelled_before_any_word_of_the_venue_gives_the_original_back():
    """Review 41b: a replace allowed after its check's deadline was never sent, and the
    executor reported it cancelled, as told; taken as the venue's confirmation, the
    original's leaves (still live at the venue) were reserved nowhere, and an order was
    allowed past the symbol limit. Then the original's fill tripped the account."""
    engine = make_engine(equity=1e6)  # 30 % symbol limit = 3,000 units at 100
    original = _allowed(engine, order(2000))
    replacement = _allowed(engine, order(500, replaces=original))
    assert engine.update_order(OrderUpdate(ACCOUNT, replacement, OrderStatus.CANCELLED))
    assert _reserved(engine) == {original: 2000}
    assert engine.check(order(2900), T0).reason is DecisionReason.SYMBOL_EXPOSURE
    assert not report_fill(engine, fill(2000, client_order_id=original)).unchecked
    # With fills said (filled_quantity), it traded: the replace was done.
    original = _allowed(engine, order(10))
    replacement = _allowed(engine, order(10, replaces=original))
    assert engine.update_order(OrderUpdate(ACCOUNT, replacement, OrderStatus.CANCELLED,
                                           None, 4))
    assert _reserved(engine) == {replacement: 4}


def test_a_fill_under_a_rejected_replacements_id_trips_the_account():
    """Review 29: rejecting replacements one after another gave the original its room back
    each time while each rejected replacement could still fill all it was allowed, unseen:
    the account went to 120 % of equity against a 30 % limit, a reduce-only long ended
    short. A rejected replacement never traded: a fill under its id is an order the
    sidecar does not know of."""
    engine = make_engine(equity=100_000)  # 30 % symbol limit = 300 units at 100
    original = _allowed(engine, order(300))
    rejected = []
    for _ in range(3):
        rejected.append(_allowed(engine, order(300, replaces=original)))
        assert engine.update_order(OrderUpdate(ACCOUNT, rejected[-1], OrderStatus.REJECTED))
    outcome = report_fill(engine, fill(300, client_order_id=rejected[0]))
    assert "exceeds" in outcome.unchecked
    assert engine.state_of(account()) is State.TRIPPED
    # The original still may fill what it was allowed; its fills were never in question.
    assert not report_fill(engine, fill(300, client_order_id=original)).unchecked


def test_a_reduce_only_long_cannot_end_short_through_a_rejected_replacement(engine):
    report_fill(engine, fill(100, client_order_id=_allowed(engine, order(100))))
    trip(engine, account(), mode=TriggerMode.REDUCE_ONLY)
    sell = _allowed(engine, order(100, side=Side.SELL))
    replacement = _allowed(engine, order(100, side=Side.SELL, replaces=sell))
    assert engine.update_order(OrderUpdate(ACCOUNT, replacement, OrderStatus.REJECTED))
    outcome = report_fill(engine, fill(100, side=Side.SELL, client_order_id=replacement))
    assert "exceeds" in outcome.unchecked


def test_a_fill_of_an_adopted_order_trips_even_after_a_checked_order_replaced_it(engine):
    """Review 29: a checked order of 1 replacing an order a snapshot listed (never allowed)
    took that order's fill of 250 down the chain, and the account never tripped."""
    rogue = OpenOrder("rogue", STRATEGY, SYMBOL, Side.BUY, 250, 100)
    engine.sync_positions(ACCOUNT, 1e6, [position(0)], [rogue], T0)
    assert engine.check(order(1, replaces="rogue"), T0).allowed
    outcome = report_fill(engine, fill(250, client_order_id="rogue"))
    assert "never allowed" in outcome.unchecked
    assert engine.state_of(account()) is State.TRIPPED


@pytest.mark.parametrize("filled", [300, 100])
def test_a_rejection_of_a_replacement_that_filled_under_its_own_id_gives_nothing_back(filled):
    """Review 29: R replaced O, filled under its own id, then was 'rejected': O came back
    with all its leaves and filled them too, 600 (or 400) against a 300 limit, unseen. A
    fill under its own id says the venue had R; the rejection ends R like a cancel."""
    engine = make_engine(equity=100_000)  # 30 % = 300 units
    o = _allowed(engine, order(300, client_order_id="O"))
    r = _allowed(engine, order(300, client_order_id="R", replaces=o))
    assert not report_fill(engine, fill(filled, client_order_id=r)).unchecked
    engine.update_order(OrderUpdate(ACCOUNT, r, OrderStatus.REJECTED))
    assert "exceeds" in report_fill(engine, fill(300, client_order_id=o)).unchecked
    assert engine.state_of(account()) is State.TRIPPED


def _snapshot_during_a_replace(replacement: float) -> tuple[GuardEngine, str, str]:
    """O (300, the symbol limit) replaced by R, and a snapshot that lists O alone."""
    engine = make_engine(equity=100_000)  # 30 % = 300 units
    o = _allowed(engine, order(300, client_order_id="O"))
    r = _allowed(engine, order(replacement, client_order_id="R", replaces=o))
    engine.sync_positions(ACCOUNT, 100_000, [position(0)],
                          [OpenOrder(o, STRATEGY, SYMBOL, Side.BUY, 300, 100)], T0)
    return engine, o, r


def test_a_replacement_rejected_after_a_snapshot_listed_only_the_original_fills_no_more():
    engine, _, r = _snapshot_during_a_replace(300)
    engine.update_order(OrderUpdate(ACCOUNT, r, OrderStatus.REJECTED))
    assert "exceeds" in report_fill(engine, fill(300, client_order_id=r)).unchecked


@pytest.mark.parametrize("first", ["O", "R"])
def test_a_snapshot_read_while_a_replace_was_in_flight_leaves_the_replace_standing(first):
    """Review 29: a snapshot listing the original but not its replacement ended the
    replacement, uncapped, and revived the original: the venue filled both, 600 against
    a 300 limit, and nothing tripped. The replace stands; the chain may fill 300."""
    engine, o, r = _snapshot_during_a_replace(300)
    assert [w.client_order_id for w in engine.orders.working(ACCOUNT)] == [r]  # its room
    assert not engine.check(order(1, client_order_id="more"), T0).allowed
    second = {"O": r, "R": o}[first]
    assert not report_fill(engine, fill(300, client_order_id=first)).unchecked
    assert "exceeds" in report_fill(engine, fill(300, client_order_id=second)).unchecked
    assert engine.state_of(account()) is State.TRIPPED


def test_a_snapshot_read_while_two_replaces_were_in_flight_leaves_both_standing():
    """Review 30: A -> B -> C, both replaces on their way, the venue still showing A: a
    snapshot listing A alone ended C, uncapped, and revived A. The chain may fill 300."""
    engine = make_engine(equity=100_000)
    a = _allowed(engine, order(300, client_order_id="A"))
    b = _allowed(engine, order(300, client_order_id="B", replaces=a))
    c = _allowed(engine, order(300, client_order_id="C", replaces=b))
    engine.sync_positions(ACCOUNT, 100_000, [position(0)],
                          [OpenOrder(a, STRATEGY, SYMBOL, Side.BUY, 300, 100)], T0)
    assert [w.client_order_id for w in engine.orders.working(ACCOUNT)] == [c]
    assert not report_fill(engine, fill(300, client_order_id=a)).unchecked
    assert "exceeds" in report_fill(engine, fill(300, client_order_id=c)).unchecked


def test_a_replace_in_flight_at_a_snapshot_then_rejected_gives_the_original_back():
    engine, o, r = _snapshot_during_a_replace(100)
    assert engine.update_order(OrderUpdate(ACCOUNT, r, OrderStatus.REJECTED))
    assert [w.client_order_id for w in engine.orders.working(ACCOUNT)] == [o]
    assert not report_fill(engine, fill(300, client_order_id=o)).unchecked
    assert engine.state_of(account()) is State.ARMED


@pytest.mark.parametrize("side", [Side.BUY, Side.SELL])
def test_fills_of_an_order_owed_fills_that_cross_its_replace_go_down_the_chain(side):
    """Review 30: A (150) owed 10 (filled_quantity) is replaced by B (140). A fill of A
    of 140 went all to A, judged against A's whole 150, and took nothing off B: with
    A's 10 and B's 130 the chain filled 280 against 150 (a REDUCE_ONLY long of 100 ended
    short 80). Past A's 10 owed, A's fill crossed the replace: it is B's."""
    engine = make_engine(equity=100_000)  # 30 % = 300 units
    a = _allowed(engine, order(150, side=side))
    assert engine.update_order(OrderUpdate(ACCOUNT, a, OrderStatus.OPEN, 140, 10))
    b = _allowed(engine, order(140, side=side, replaces=a))
    assert not report_fill(engine, fill(140, side=side, client_order_id=a)).unchecked
    assert not report_fill(engine, fill(10, side=side, client_order_id=a)).unchecked
    assert "exceeds" in report_fill(engine, fill(130, side=side, client_order_id=b)).unchecked
    assert engine.state_of(account()) is State.TRIPPED


@pytest.mark.parametrize("how", ["snapshot", "fills"])
def test_a_snapshots_count_of_an_owed_orders_fills_crossing_its_replace_goes_down_the_chain(
        how):
    """Review 30: A (150) owed 10 and replaced by B (140); a snapshot holding A's 150
    booked all of them to A, and B could still fill 140 unseen. A's owed 10 are A's, the
    other 140 crossed the replace: B has no room left, as when they are reported."""
    engine = make_engine(equity=100_000)
    a = _allowed(engine, order(150))
    assert engine.update_order(OrderUpdate(ACCOUNT, a, OrderStatus.OPEN, 140, 10))
    b = _allowed(engine, order(140, replaces=a))
    if how == "snapshot":
        engine.sync_positions(ACCOUNT, 100_000, [position(150)], None, T0,
                              [IncludedFills(a, 150)])
    else:
        for quantity in (10, 140):
            assert not report_fill(engine, fill(quantity, client_order_id=a)).unchecked
    assert "exceeds" in report_fill(engine, fill(140, client_order_id=b)).unchecked


def test_an_execution_crossing_a_replace_is_not_the_owed_one_an_update_says_again():
    """Review 30: A (300) owed 100, replaced by B (200). An execution of 150 of A is not
    the 100 owed (split, it took them, and an update with the venue's CumQty of 250 made
    them owed again: 400 filled against 300). It crossed: B has 50 left."""
    engine = make_engine(equity=100_000)
    a = _allowed(engine, order(300))
    assert engine.update_order(OrderUpdate(ACCOUNT, a, OrderStatus.OPEN, 200, 100))
    b = _allowed(engine, order(200, replaces=a))
    assert not report_fill(engine, fill(150, client_order_id=a)).unchecked
    engine.update_order(OrderUpdate(ACCOUNT, a, OrderStatus.OPEN, 50, 250))
    assert not report_fill(engine, fill(100, client_order_id=a)).unchecked  # the owed
    assert "exceeds the 50 left" in \
        report_fill(engine, fill(150, client_order_id=b)).unchecked


def _worst_case(engine: GuardEngine) -> float:
    net = engine.book.account(ACCOUNT).nets[SYMBOL]
    return net.position + net.buying


def test_an_owed_fill_delivered_after_another_around_a_replace_stays_in_the_worst_case():
    """Review 30 (its model): o1 filled 0.5 (owed: the update said so) then 0.25 at the
    venue; the drop copy brought the 0.25 first, then o1 was replaced by o2 (10), then the
    0.5 came: larger than what o1 was still owed, it all went down the chain, and o2
    reserved 9.5 where the venue had 9.75 to fill. No larger than what o1 was said to be
    owed, it may be that fill: only the rest crosses."""
    engine = make_engine(equity=1e7)
    o1 = _allowed(engine, order(1, client_order_id="o1"))
    assert engine.update_order(OrderUpdate(ACCOUNT, o1, OrderStatus.OPEN, 0.5, 0.5))
    assert not report_fill(engine, fill(0.25, client_order_id=o1, fill_id="fB")).unchecked
    _allowed(engine, order(10, client_order_id="o2", replaces=o1))
    assert not report_fill(engine, fill(0.5, client_order_id=o1, fill_id="fA")).unchecked
    engine.update_order(OrderUpdate(ACCOUNT, o1, OrderStatus.OPEN, 0.25, 0.75))
    assert _worst_case(engine) >= 0.75 + 10 - 0.25  # the venue: o2's leaves are 9.75


def test_a_cleared_original_owed_fills_trips_when_they_come_not_off_its_replacement():
    """Review 30 (its model): o1, replaced, worked for 0.5 owed; cleared, its owed fill
    went down the chain to o3, whose leaves already left it out: the worst case fell
    below the truth, untripped. It comes to o1 still, and trips: its room was freed."""
    engine = make_engine(equity=1e7)
    o1 = _allowed(engine, order(1, client_order_id="o1"))
    o2 = _allowed(engine, order(1, client_order_id="o2", replaces=o1))
    assert engine.update_order(OrderUpdate(ACCOUNT, o1, OrderStatus.OPEN, 0.5, 0.5))
    assert engine.clear_working_orders(ACCOUNT, [o1]) == 1
    _allowed(engine, order(15, client_order_id="o3", replaces=o2))
    assert "exceeds" in report_fill(engine, fill(0.5, client_order_id=o1)).unchecked
    assert _worst_case(engine) >= 15.5


def test_a_cleared_original_owed_fills_gets_its_leaves_back_if_its_replace_is_rejected():
    """Review 30 (its fix reviewed): O, owed 10 and replaced by R (in flight), was cleared;
    the venue then rejected R, so O is live with its 190 leaves: they are reserved again,
    and their fills trip nothing (capped at the fills counted, O tripped on its first)."""
    engine = make_engine(equity=100_000)
    o = _allowed(engine, order(200, client_order_id="O"))
    assert engine.update_order(OrderUpdate(ACCOUNT, o, OrderStatus.OPEN, 190, 10))
    r = _allowed(engine, order(150, client_order_id="R", replaces=o))
    assert engine.clear_working_orders(ACCOUNT, [o]) == 1
    assert engine.update_order(OrderUpdate(ACCOUNT, r, OrderStatus.REJECTED))
    assert [w.remaining for w in engine.orders.working(ACCOUNT)] == [190]
    assert not report_fill(engine, fill(190, client_order_id=o)).unchecked
    assert "exceeds" in report_fill(engine, fill(10, client_order_id=o)).unchecked


def test_a_snapshots_fills_of_an_order_whose_chain_head_is_forgotten_trip_when_they_come():
    """Review 30 (its fix reviewed): O (10) owed 5, replaced by R (5), which filled and was
    forgotten while O worked on for its 5. A snapshot holding 10 of O's booked the 5
    beyond its owed nowhere, yet counted them: reported, they moved nothing and tripped
    nothing, 15 filled against 10 allowed."""
    limits = LimitSettings(duplicate_identical_orders=0, order_id_retention_s=10)
    engine = make_engine(equity=100_000, limits=limits)
    o = _allowed(engine, order(10, client_order_id="O"))
    assert engine.update_order(OrderUpdate(ACCOUNT, o, OrderStatus.OPEN, 5, 5))
    r = _allowed(engine, order(5, client_order_id="R", replaces=o))
    assert engine.update_order(OrderUpdate(ACCOUNT, r, OrderStatus.OPEN, 5, 0))
    assert not report_fill(engine, fill(5, client_order_id=r)).unchecked
    engine.expire(T0 + 30)
    assert engine.orders.exact(ACCOUNT, r) is None and engine.orders.exact(ACCOUNT, o)
    engine.sync_positions(ACCOUNT, 100_000, [position(15)], None, T0 + 31,
                          [IncludedFills(o, 10)])
    assert report_fill(engine, fill(10, client_order_id=o), T0 + 32).unchecked


def test_an_original_back_from_a_rejected_replace_has_its_fills_down_the_chain_counted():
    """Review 30: A -> B -> C; A's fill of 60 went to C; B is rejected and A works again
    with its 40 leaves, but may fill 100 more: its room counted the fills against it
    (none) rather than those reported under its id (60)."""
    engine = make_engine(equity=100_000)
    a = _allowed(engine, order(100, client_order_id="A"))
    b = _allowed(engine, order(100, client_order_id="B", replaces=a))
    _allowed(engine, order(100, client_order_id="C", replaces=b))
    assert not report_fill(engine, fill(60, client_order_id=a)).unchecked
    assert engine.update_order(OrderUpdate(ACCOUNT, b, OrderStatus.REJECTED))
    assert "exceeds the 40 left" in report_fill(engine, fill(100, client_order_id=a)).unchecked


@pytest.mark.parametrize("named", [True, False])
def test_a_cleared_order_may_fill_no_more_than_when_it_was_cleared(named):
    """Review 30: an operator's clear freed A's room (an order of 300 was then allowed in
    it) but left A free to fill its 300 too, unseen: 60 % against 30 %."""
    engine = make_engine(equity=100_000)
    a = _allowed(engine, order(300))
    assert not report_fill(engine, fill(100, client_order_id=a)).unchecked
    assert engine.clear_working_orders(ACCOUNT, [a] if named else []) == 1
    b = _allowed(engine, order(200))
    assert not report_fill(engine, fill(200, client_order_id=b)).unchecked
    assert "exceeds the 0 left" in report_fill(engine, fill(1, client_order_id=a)).unchecked
    assert engine.state_of(account()) is State.TRIPPED


def test_a_fill_of_an_adopted_order_replaced_and_counted_by_a_snapshot_trips(engine):
    rogue = OpenOrder("rogue", STRATEGY, SYMBOL, Side.BUY, 250, 100)
    engine.sync_positions(ACCOUNT, 1e6, [position(0)], [rogue], T0)
    assert engine.check(order(1, replaces="rogue"), T0).allowed
    engine.sync_positions(ACCOUNT, 1e6, [position(250)], None, T0,
                          [IncludedFills("rogue", 250)])
    report_fill(engine, fill(250, client_order_id="rogue"))
    assert engine.state_of(account()) is State.TRIPPED


# -- a snapshot reserves what it lists, and allows nothing --------------------------------


def test_fills_of_an_order_a_snapshot_listed_but_the_sidecar_never_allowed_trip(engine):
    stranger = OpenOrder("venue-1", STRATEGY, SYMBOL, Side.BUY, 1e6, 100)
    engine.sync_positions(ACCOUNT, 1e6, [position(0)], [stranger], T0)
    assert [r.remaining for r in engine.orders.working(ACCOUNT)] == [1e6]  # it counts
    outcome = report_fill(engine, fill(1e6, client_order_id="venue-1"))
    assert "never allowed" in outcome.unchecked
    assert engine.state_of(account()) is State.TRIPPED


def test_a_snapshot_that_lists_more_than_was_allowed_reserves_it_but_allows_nothing(engine):
    filled = _allowed(engine, order(10))
    report_fill(engine, fill(10, client_order_id=filled))
    working = _allowed(engine, order(10))
    engine.sync_positions(ACCOUNT, 1e6, [position(10)], [
        OpenOrder(filled, STRATEGY, SYMBOL, Side.BUY, 500, 100),  # ended, says the sidecar
        OpenOrder(working, STRATEGY, SYMBOL, Side.BUY, 900, 100)], T0)
    remaining = {r.client_order_id: r.remaining for r in engine.orders.working(ACCOUNT)}
    assert remaining == {filled: 500, working: 900}
    assert "exceeds" in report_fill(engine, fill(500, client_order_id=filled)).unchecked
    assert "exceeds" in report_fill(engine, fill(900, client_order_id=working)).unchecked


@pytest.mark.parametrize("how", ["rejected", "cleared"])
def test_a_rejected_replace_gives_back_the_leaves_a_snapshot_listed_beyond_the_check(how):
    """Review 36b: allowed 50, listed by the venue with 290 leaves (amended past the guard),
    replaced, and the replace rejected (or the replacement cleared by an operator): the
    original reserved only its 50 again, and a buy of 240 was allowed into the room of
    leaves the venue still had (53 % against a 30 % limit once both filled)."""
    engine = make_engine(equity=100_000)
    coid = _allowed(engine, order(50))
    engine.sync_positions(ACCOUNT, 100_000, [position(0)], [
        OpenOrder(coid, STRATEGY, SYMBOL, Side.BUY, 290, 100)], T0)
    replacement = _allowed(engine, order(50, replaces=coid))
    if how == "rejected":
        engine.update_order(OrderUpdate(ACCOUNT, replacement, OrderStatus.REJECTED))
    else:
        engine.clear_working_orders(ACCOUNT, [replacement])
    assert [(r.client_order_id, r.remaining) for r in engine.orders.working(ACCOUNT)] == [
        (coid, 290)]
    assert engine.check(order(240), T0).reason is R.SYMBOL_EXPOSURE
    assert "exceeds" in report_fill(engine, fill(51, client_order_id=coid)).unchecked


@pytest.mark.parametrize("update_first", [True, False])
def test_an_open_update_of_a_replaced_order_before_its_fill_takes_the_fill_off_once(
        update_first):
    """Review 36q: O (100) replaced by R (100) in flight; O fills 30, its OPEN update (70
    left, no filled_quantity) coming before the fill or after; R rejected. A fix of stop
    36 capped O's leaves at the update's 70 and the fill took 30 off again: 40 reserved,
    and a buy of 230 allowed (30 + 70 + 230 = 330 against 300)."""
    engine = make_engine(equity=100_000)
    original = _allowed(engine, order(100))
    replacement = _allowed(engine, order(100, replaces=original))
    steps = [lambda: engine.update_order(OrderUpdate(ACCOUNT, original, OrderStatus.OPEN, 70)),
             lambda: report_fill(engine, fill(30, client_order_id=original))]
    for step in steps if update_first else steps[::-1]:
        step()
    engine.update_order(OrderUpdate(ACCOUNT, replacement, OrderStatus.REJECTED))
    assert [(r.client_order_id, r.remaining) for r in engine.orders.working(ACCOUNT)] == [
        (original, 70)]
    assert engine.check(order(230), T0).reason is R.SYMBOL_EXPOSURE


def test_a_snapshot_that_contradicts_an_allowed_order_is_refused_and_changes_nothing(engine):
    allowed = _allowed(engine, order(10))
    with pytest.raises(InvalidArgument) as raised:
        engine.sync_positions(ACCOUNT, 2e6, [position(50)], [
            OpenOrder(allowed, STRATEGY, "ETH-USD", Side.BUY, 10, 100)], T0)
    assert raised.value.field == "open_orders[0]"
    # Quoted (review 60b: "alpha  beta" printed bare read as the "alpha beta" listed)
    assert str(raised.value) == f"open_orders[0]: order {allowed!r} is BUY {SYMBOL!r} for" \
        f" strategy {STRATEGY!r}"
    assert engine.book.position(ACCOUNT, STRATEGY, SYMBOL) == 0
    assert [r.remaining for r in engine.orders.working(ACCOUNT)] == [10]


def test_a_snapshot_with_a_position_twice_is_refused_naming_it_and_changes_nothing(engine):
    """Which of the two would win is arbitrary. (Review 17: the check compared every
    position with every earlier one, so 12,000 positions held the event loop, and a
    Trigger sent meanwhile, for 25 s; it is a set now.)"""
    engine.sync_positions(ACCOUNT, 2e6, [position(5)], None, T0)
    book = [position(i, symbol=f"S{i}") for i in range(1, 3000)]
    with pytest.raises(InvalidArgument) as raised:
        engine.sync_positions(ACCOUNT, 2e6, [*book, position(50), position(60)], None, T0)
    assert raised.value.field == "positions[3000]"
    assert engine.book.position(ACCOUNT, STRATEGY, SYMBOL) == 5
    assert engine.sync_positions(ACCOUNT, 2e6, [*book, position(50)], None, T0) == 3000


@pytest.mark.parametrize("field", ["positions", "open_orders", "included_fills"])
def test_a_snapshot_longer_than_the_cap_is_refused_naming_the_list_and_changes_nothing(field):
    """A snapshot is applied in one piece, holding every command (a Trigger too) while it
    runs: `limits.max_snapshot_entries` bounds that wait."""
    engine = make_engine(limits=LimitSettings(duplicate_identical_orders=0,
                                              max_snapshot_entries=3))
    working = _allowed(engine, order(10))
    positions = [position(i, symbol=f"S{i}") for i in range(1, 4)]
    orders = [OpenOrder(working, STRATEGY, SYMBOL, Side.BUY, 10, 100)]
    included = [IncludedFills(working, 0)]
    if field == "positions":
        positions.append(position(4, symbol="S4"))
    elif field == "open_orders":
        orders += [OpenOrder(f"o{i}", STRATEGY, SYMBOL, Side.BUY, 1, 100) for i in range(3)]
    else:
        included += [IncludedFills(f"o{i}", 0) for i in range(3)]
    with pytest.raises(InvalidArgument) as raised:
        engine.sync_positions(ACCOUNT, 2e6, positions, orders, T0, included)
    assert raised.value.field == field
    assert "limits.max_snapshot_entries" in str(raised.value)
    assert engine.book.position(ACCOUNT, STRATEGY, "S1") == 0
    assert engine.book.account(ACCOUNT).equity == EQUITY
    assert _reserved(engine) == {working: 10}
    assert engine.sync_positions(ACCOUNT, 2e6, positions[:3], orders[:3], T0,
                                 included[:3]) == 3  # at the cap: applied


def test_a_replayed_snapshot_is_applied_whatever_the_cap_is_now():
    """It was accepted when it came: a restart with a lower cap must book it, not refuse
    to start or leave the book as it was before it."""
    engine = make_engine()
    engine.sync_positions(ACCOUNT, 2e6, [position(i, symbol=f"S{i}") for i in range(1, 5)],
                          None, T0)
    record = PositionsSynced(ACCOUNT, 2e6, tuple(position(i, symbol=f"S{i}")
                                                  for i in range(1, 5)), None, T0, ())
    restarted = make_engine(limits=LimitSettings(duplicate_identical_orders=0,
                                                 max_snapshot_entries=2))
    restarted.replay(record, ())
    assert [restarted.book.position(ACCOUNT, STRATEGY, f"S{i}") for i in range(1, 5)] == \
        [1, 2, 3, 4]


@pytest.mark.parametrize("how", ["replace", "snapshot", "replace rejected"])
def test_fills_the_venue_counted_stay_reserved_through_a_replace_or_a_snapshot(how):
    """Review 7: 290 allowed; the venue says 200 filled and 90 left (filled_quantity), the
    fills not reported yet. A replace with those 90 leaves, or a snapshot that lists the
    order with 90 and no position yet, must not free the 200: another 200 is denied until
    they come; when they come, nothing trips and 90 still work."""
    engine = make_engine(equity=100_000)
    coid = _allowed(engine, order(290))
    engine.update_order(OrderUpdate(ACCOUNT, coid, OrderStatus.OPEN, 90, 200))
    if how.startswith("replace"):
        replacement = _allowed(engine, order(90, replaces=coid))
        if how == "replace rejected":  # the venue refused it: the original's 90 work on
            engine.update_order(OrderUpdate(ACCOUNT, replacement, OrderStatus.REJECTED))
    else:
        engine.sync_positions(ACCOUNT, 100_000, [position(0)], [
            OpenOrder(coid, STRATEGY, SYMBOL, Side.BUY, 90, 100.0)])
    assert engine.check(order(200), T0).reason is R.SYMBOL_EXPOSURE  # 200 + 90 + 200 > 300
    assert not report_fill(engine, fill(200, client_order_id=coid)).unchecked
    assert engine.book.position(ACCOUNT, STRATEGY, SYMBOL) == 200
    assert [r.remaining for r in engine.orders.working(ACCOUNT)] == [90]
    assert engine.check(order(20), T0).reason is R.SYMBOL_EXPOSURE  # 200 + 90 + 20 > 300
    assert engine.check(order(10), T0).allowed


def test_an_ended_status_without_word_on_fills_keeps_those_an_earlier_update_said_are_owed():
    engine = make_engine(equity=100_000)
    coid = _allowed(engine, order(290))
    engine.update_order(OrderUpdate(ACCOUNT, coid, OrderStatus.OPEN, 90, 200))
    engine.update_order(OrderUpdate(ACCOUNT, coid, OrderStatus.CANCELLED))
    assert [r.remaining for r in engine.orders.working(ACCOUNT)] == [200]
    assert engine.check(order(200), T0).reason is R.SYMBOL_EXPOSURE
    assert not report_fill(engine, fill(200, client_order_id=coid)).unchecked
    assert list(engine.orders.working(ACCOUNT)) == []


@pytest.mark.parametrize("owed_first", [True, False])
def test_a_rejected_replace_gives_back_the_leaves_the_original_gave_up(owed_first):
    """Diff review: A 290, the venue counts 200 filled and 90 left; B replaces A with 40;
    the venue rejects B. A's own 90 leaves work again, whether its owed fills came before
    or after the rejection, never B's 40 instead, nor nothing."""
    engine = make_engine(equity=100_000)
    coid = _allowed(engine, order(290))
    engine.update_order(OrderUpdate(ACCOUNT, coid, OrderStatus.OPEN, 90, 200))
    replacement = _allowed(engine, order(40, replaces=coid))
    if owed_first:
        assert not report_fill(engine, fill(200, client_order_id=coid)).unchecked
    engine.update_order(OrderUpdate(ACCOUNT, replacement, OrderStatus.REJECTED))
    if not owed_first:
        assert not report_fill(engine, fill(200, client_order_id=coid)).unchecked
    assert [r.remaining for r in engine.orders.working(ACCOUNT)] == [90]
    assert engine.check(order(20), T0).reason is R.SYMBOL_EXPOSURE  # 200 + 90 + 20 > 300
    assert not report_fill(engine, fill(90, client_order_id=coid)).unchecked  # its own


def test_an_order_a_snapshot_no_longer_lists_may_still_fill_what_its_check_allowed():
    """Diff review: owed 200 of 290, the last 90 filled too; the snapshot lists no open
    order; the drop copy reports 200, then 90: both are the order's own, nothing trips."""
    engine = make_engine(equity=100_000)
    coid = _allowed(engine, order(290))
    engine.update_order(OrderUpdate(ACCOUNT, coid, OrderStatus.OPEN, 90, 200))
    engine.sync_positions(ACCOUNT, 100_000, [position(0)], [])
    assert [r.remaining for r in engine.orders.working(ACCOUNT)] == [200]
    for quantity in (200, 90):
        assert not report_fill(engine, fill(quantity, client_order_id=coid)).unchecked
    assert list(engine.orders.working(ACCOUNT)) == []


# -- review 8: fills that cross a replace, and fills of another instrument ----------------


def test_a_replace_rejected_after_the_originals_fills_ended_it_gives_the_original_back():
    """A 100; B replaces it with 30; A fills 30 while the replace is in flight (those fills
    go to B); the venue rejects B. A works on with its 70 leaves: it was never replaced.
    (Before the review B had ended, filled by what crossed it, and the rejection was
    ignored: nothing was reserved for A's 70.)"""
    engine = make_engine(equity=100_000)  # a 30 % symbol limit is 300 at mark 100
    a = _allowed(engine, order(100, client_order_id="A"))
    b = _allowed(engine, order(30, client_order_id="B", replaces=a))
    assert not report_fill(engine, fill(30, client_order_id=a)).unchecked
    assert [r.remaining for r in engine.orders.working(ACCOUNT)] == [70]  # A's may fill
    assert engine.update_order(OrderUpdate(ACCOUNT, b, OrderStatus.REJECTED))
    assert [(r.client_order_id, r.remaining) for r in engine.orders.working(ACCOUNT)] == \
        [(a, 70)]
    engine.update_order(OrderUpdate(ACCOUNT, a, OrderStatus.OPEN, 70, 30))  # agrees
    assert engine.check(order(201), T0).reason is R.SYMBOL_EXPOSURE  # 30 + 70 + 201 > 300
    assert not report_fill(engine, fill(70, client_order_id=a)).unchecked  # its own
    assert list(engine.orders.working(ACCOUNT)) == []


@pytest.mark.parametrize("original_first", [True, False])
def test_an_update_of_a_replaced_order_keeps_the_fills_it_counts_reserved(original_first):
    """A 100; B replaces it with 100 (a price change); A fills 60 before the venue takes
    the replace, so B has 40 left. The executor reports each order's own filled_quantity.
    Once A's update says 60 filled, those 60 count until their fills come."""
    engine = make_engine(equity=100_000)
    a = _allowed(engine, order(100, client_order_id="A"))
    b = _allowed(engine, order(100, client_order_id="B", replaces=a))
    updates = [OrderUpdate(ACCOUNT, a, OrderStatus.OPEN, 0, 60),
               OrderUpdate(ACCOUNT, b, OrderStatus.OPEN, 40, 0)]
    for update in updates if original_first else updates[::-1]:
        engine.update_order(update)
    assert sorted((r.client_order_id, r.remaining) for r in engine.orders.working(ACCOUNT)) \
        == [(a, 60), (b, 40)]
    assert engine.check(order(201), T0).reason is R.SYMBOL_EXPOSURE  # 100 + 201 > 300
    assert not report_fill(engine, fill(60, client_order_id=a)).unchecked  # the drop copy
    assert [(r.client_order_id, r.remaining) for r in engine.orders.working(ACCOUNT)] == \
        [(b, 40)]
    assert engine.check(order(201), T0).reason is R.SYMBOL_EXPOSURE  # 60 + 40 + 201 > 300
    assert engine.check(order(200), T0).allowed


@pytest.mark.parametrize("enabled", [True, False])
def test_a_fill_of_another_side_or_instrument_leaves_the_order_it_names_working(enabled):
    """A buy of 100 works; a SELL fill names it. The fill is real (booked, and it trips
    the account when the breaker is on), but it is no evidence about the buy: the buy
    still reserves its 100."""
    engine = make_engine(equity=100_000,
                         breakers=rules(unchecked_order={"enabled": enabled}))
    a = _allowed(engine, order(100))
    outcome = report_fill(engine, fill(100, side=Side.SELL, client_order_id=a))
    assert "the order allowed was BUY" in outcome.unchecked
    assert engine.book.position(ACCOUNT, STRATEGY, SYMBOL) == -100
    assert [(r.client_order_id, r.remaining) for r in engine.orders.working(ACCOUNT)] == \
        [(a, 100)]
    assert (engine.state_of(account()) is State.TRIPPED) is enabled


@pytest.mark.parametrize("word", ["update", "own fill", "snapshot"])
def test_a_smaller_replacement_holds_the_originals_leaves_until_the_venue_confirms_it(word):
    """Fuzzing (review 8): A 50; B replaces it with 10; A fills 22 while the replace is in
    flight. Those fills are A's own within what A was allowed: nothing trips, and until
    the venue's word on B, the chain reserves what A's leaves could still fill."""
    engine = make_engine(equity=100_000)
    a = _allowed(engine, order(50, client_order_id="A"))
    b = _allowed(engine, order(10, client_order_id="B", replaces=a))
    assert [r.remaining for r in engine.orders.working(ACCOUNT)] == [50]  # the larger
    assert not report_fill(engine, fill(22, client_order_id=a)).unchecked
    assert engine.check(order(251), T0).reason is R.SYMBOL_EXPOSURE  # 22 + 28 + 251 > 300
    if word == "update":
        engine.update_order(OrderUpdate(ACCOUNT, b, OrderStatus.OPEN, 0, 0))
        assert list(engine.orders.working(ACCOUNT)) == []  # the venue: B has nothing left
    elif word == "own fill":
        assert not report_fill(engine, fill(5, client_order_id=b)).unchecked
        assert [r.remaining for r in engine.orders.working(ACCOUNT)] == [5]  # B's 10, less 5
        assert "exceeds" in report_fill(engine, fill(11, client_order_id=b)).unchecked
    else:
        engine.sync_positions(ACCOUNT, 100_000, [position(22)], [
            OpenOrder(b, STRATEGY, SYMBOL, Side.BUY, 3, 100.0)])
        assert [r.remaining for r in engine.orders.working(ACCOUNT)] == [3]


# -- review 8, the diff review: a replace rejected too late, and what a replay must redo ----


@pytest.mark.parametrize("fill_at", ["before the updates", "between them", "after them"])
def test_a_replace_rejected_too_late_leaves_nothing_reserved_once_the_original_filled(fill_at):
    """The commonest rejection: A filled whole while the replace was in flight. Whatever
    order the fill and the updates come in, nothing stays reserved after them."""
    engine = make_engine()
    a = _allowed(engine, order(10, client_order_id="A"))
    b = _allowed(engine, order(5, client_order_id="B", replaces=a))
    whole = fill(10, client_order_id=a, fill_id="f1")
    if fill_at == "before the updates":
        report_fill(engine, whole)
    engine.update_order(OrderUpdate(ACCOUNT, a, OrderStatus.OPEN, 0, 10))
    if fill_at == "between them":
        report_fill(engine, whole)
    engine.update_order(OrderUpdate(ACCOUNT, b, OrderStatus.REJECTED, None, 0))
    if fill_at == "after them":
        assert not report_fill(engine, whole).unchecked
    assert engine.book.position(ACCOUNT, STRATEGY, SYMBOL) == 10
    assert list(engine.orders.working(ACCOUNT)) == []


def test_fills_reported_under_the_original_while_its_replace_is_in_flight_trip_nothing():
    """A 10, B replaces it with 5; A fills 2, 2, 5, 1 (10 in all) as the venue reports
    them, the replace rejected in between: every fill within what A was allowed."""
    engine = make_engine()
    a = _allowed(engine, order(10, client_order_id="A"))
    b = _allowed(engine, order(5, client_order_id="B", replaces=a))
    engine.update_order(OrderUpdate(ACCOUNT, a, OrderStatus.OPEN, 8, 2))
    engine.update_order(OrderUpdate(ACCOUNT, a, OrderStatus.OPEN, 6, 4))
    for quantity, fill_id in ((2, "f1"), (2, "f2"), (5, "f3")):
        assert not report_fill(engine, fill(quantity, client_order_id=a,
                                            fill_id=fill_id)).unchecked
    engine.update_order(OrderUpdate(ACCOUNT, a, OrderStatus.OPEN, 1, 9))
    engine.update_order(OrderUpdate(ACCOUNT, b, OrderStatus.REJECTED, None, 0))
    assert [(r.client_order_id, r.remaining) for r in engine.orders.working(ACCOUNT)] == \
        [(a, 1)]
    assert not report_fill(engine, fill(1, client_order_id=a, fill_id="f4")).unchecked
    assert engine.state_of(account()) is State.ARMED


def test_an_update_of_an_order_an_operator_cleared_changes_nothing_a_replay_would_not():
    """An update answered 'changed nothing' is not journaled: it must change nothing."""
    engine = make_engine()
    a = _allowed(engine, order(10, client_order_id="A"))
    b = _allowed(engine, order(4, client_order_id="B", replaces=a))  # holds 6 for A's leaves
    engine.clear_working_orders(ACCOUNT, [b])  # as its rejection: B may fill no more
    record = engine.orders.exact(ACCOUNT, b)
    before = repr(record), record.quantity, record.cap, record.venue_ended
    assert (record.cap, record.venue_ended) == (0, True)
    cancelled = OrderUpdate(ACCOUNT, b, OrderStatus.CANCELLED, None, 0)
    assert engine.update_order(cancelled)  # it lived at the venue (review 38i): journaled
    assert record.confirmed
    assert (repr(record), record.quantity, record.cap, record.venue_ended) == before
    assert not engine.update_order(cancelled)  # the venue's end again: nothing new


# -- review 9: snapshots of orders in flight, chains of replaces, late updates --------------


def _reserved(engine) -> dict[str, float]:
    return {r.client_order_id: r.remaining for r in engine.orders.working(ACCOUNT)}


def test_an_order_a_snapshot_left_out_while_in_flight_works_again_on_its_open_update():
    """A snapshot taken while N was on its way to the venue ends N; the venue's OPEN for
    it says it is live: it counts again (it counted nothing, and the next order was
    allowed past the limit)."""
    engine = make_engine(equity=100_000)
    n = _allowed(engine, order(290, client_order_id="N"))
    engine.sync_positions(ACCOUNT, 100_000, [position(0)], [], T0)
    assert _reserved(engine) == {}
    assert engine.update_order(OrderUpdate(ACCOUNT, n, OrderStatus.OPEN, 290, 0))
    assert _reserved(engine) == {n: 290}
    assert engine.check(order(20), T0).reason is R.SYMBOL_EXPOSURE


def test_an_original_the_venue_cancelled_is_not_revived_by_its_replacements_rejection():
    engine = make_engine()
    a = _allowed(engine, order(10, client_order_id="A"))
    b = _allowed(engine, order(6, client_order_id="B", replaces=a))
    assert engine.update_order(OrderUpdate(ACCOUNT, a, OrderStatus.CANCELLED, None, 0))
    assert engine.update_order(OrderUpdate(ACCOUNT, b, OrderStatus.REJECTED, None, 0))
    assert _reserved(engine) == {}  # nothing is live at the venue


def test_a_chain_of_rejected_replaces_revives_only_the_order_that_lived():
    """A live; B replaces A, C replaces B, both in flight; the venue rejects B, then C."""
    engine = make_engine()
    a = _allowed(engine, order(10, client_order_id="A"))
    b = _allowed(engine, order(6, client_order_id="B", replaces=a))
    c = _allowed(engine, order(4, client_order_id="C", replaces=b))
    engine.update_order(OrderUpdate(ACCOUNT, b, OrderStatus.REJECTED))
    engine.update_order(OrderUpdate(ACCOUNT, c, OrderStatus.REJECTED))
    assert _reserved(engine) == {a: 10}
    engine.update_order(OrderUpdate(ACCOUNT, a, OrderStatus.CANCELLED, None, 0))
    assert _reserved(engine) == {}


def test_fills_that_went_down_a_chain_are_off_the_leaves_a_rejection_gives_back():
    """A 4; B replaces A, C replaces B; A fills 4 (the fill goes to C); B and C rejected."""
    engine = make_engine()
    a = _allowed(engine, order(4, client_order_id="A"))
    b = _allowed(engine, order(6, client_order_id="B", replaces=a))
    c = _allowed(engine, order(7, client_order_id="C", replaces=b))
    assert not report_fill(engine, fill(4, client_order_id=a)).unchecked
    engine.update_order(OrderUpdate(ACCOUNT, a, OrderStatus.OPEN, 0, 4))
    engine.update_order(OrderUpdate(ACCOUNT, b, OrderStatus.REJECTED, None, 0))
    engine.update_order(OrderUpdate(ACCOUNT, c, OrderStatus.REJECTED, None, 0))
    assert _reserved(engine) == {}


def test_a_late_older_update_lowers_no_fills_an_earlier_one_counted():
    """OPEN 0/2 said two fills are owed; one came; a redelivered OPEN 1/1 (older) must not
    free the other."""
    engine = make_engine()
    a = _allowed(engine, order(2, client_order_id="A"))
    engine.update_order(OrderUpdate(ACCOUNT, a, OrderStatus.OPEN, 0, 2))
    report_fill(engine, fill(1, client_order_id=a))
    engine.update_order(OrderUpdate(ACCOUNT, a, OrderStatus.OPEN, 1, 1))
    assert _reserved(engine) == {a: 1}
    report_fill(engine, fill(1, client_order_id=a))
    assert _reserved(engine) == {}


# -- a snapshot's positions that already count fills not reported yet ----------------------


def _sold_then_flat(included: Callable[[str], list[IncludedFills]] | None
                    ) -> tuple[GuardEngine, str]:
    """REDUCE_ONLY on a long of 100; a sell of 100 is allowed and fills at the venue; a
    snapshot (flat, no open order) comes before the fill is reported, then the fill."""
    engine = make_engine()
    report_fill(engine, fill(100, client_order_id=_allowed(engine, order(100))))
    trip(engine, account(), mode=TriggerMode.REDUCE_ONLY)
    sell = _allowed(engine, order(100, side=Side.SELL, client_order_id="S"))
    engine.sync_positions(ACCOUNT, EQUITY, [position(0)], [], T0,
                          included(sell) if included else None)
    outcome = report_fill(engine, fill(100, side=Side.SELL, client_order_id=sell))
    # Counted twice, the fill does not reduce: it trips, judged as the fill of an order the
    # snapshot left out (stop 59)
    assert bool(outcome.unchecked) is (included is None)
    return engine, sell


def test_fills_a_snapshot_counted_move_no_position_when_they_are_reported():
    """Review 8's A3: counted twice, the long of 100 read short 100, and a REDUCE_ONLY buy
    of 100 was allowed as reducing it. Named in included_fills, the fill is in the flat
    position already: the buy grows it and is denied."""
    engine, _ = _sold_then_flat(lambda sell: [IncludedFills(sell, 100)])
    assert engine.book.position(ACCOUNT, STRATEGY, SYMBOL) == 0
    assert engine.check(order(100), T0).reason is R.REDUCE_ONLY
    counted_twice, _ = _sold_then_flat(None)  # the contract without it, as documented
    assert counted_twice.book.position(ACCOUNT, STRATEGY, SYMBOL) == -100


def test_only_the_fills_a_snapshot_counted_beyond_those_reported_are_in_it():
    """Cumulative, under the order's own id: 30 reported before the snapshot, 80 in its
    positions, so of the fills reported after it the first 50 are in them, the rest move
    the position."""
    engine = make_engine()
    coid = _allowed(engine, order(100))
    report_fill(engine, fill(30, client_order_id=coid))
    engine.sync_positions(ACCOUNT, EQUITY, [position(80)], [OpenOrder(
        coid, STRATEGY, SYMBOL, Side.BUY, 20, 100.0)], T0, [IncludedFills(coid, 80)])
    report_fill(engine, fill(40, client_order_id=coid))
    assert engine.book.position(ACCOUNT, STRATEGY, SYMBOL) == 80
    report_fill(engine, fill(30, client_order_id=coid))  # 10 in the snapshot, 20 after it
    assert engine.book.position(ACCOUNT, STRATEGY, SYMBOL) == 100
    assert list(engine.orders.working(ACCOUNT)) == []


def test_what_a_snapshot_counted_stays_counted_until_those_fills_come():
    """A later snapshot that does not name the order holds those fills too (they were
    booked): when they come they change nothing more. What a snapshot counted goes with
    the order's record when it is forgotten."""
    engine = make_engine()
    coid = _allowed(engine, order(100))
    engine.sync_positions(ACCOUNT, EQUITY, [position(100)], [], T0, [IncludedFills(coid, 100)])
    assert engine.orders.included == {ACCOUNT: {coid: 100}}
    engine.sync_positions(ACCOUNT, EQUITY, [position(100)], [], T0)
    assert engine.orders.included == {ACCOUNT: {coid: 100}}
    late = report_fill(engine, fill(100, client_order_id=coid))
    assert (late.position, late.unchecked) == (100, "")
    assert engine.orders.included == {}
    report_fill(engine, fill(1, client_order_id=_allowed(engine, order(1))))  # reported
    other = _allowed(engine, order(1))
    engine.sync_positions(ACCOUNT, EQUITY, [position(102)], [], T0, [IncludedFills(other, 1)])
    assert engine.orders.included == {ACCOUNT: {other: 1}}
    timers(engine, T0 + 2 * DAY)
    assert engine.orders.included == {}


def test_what_a_snapshot_counts_of_an_order_it_does_not_know_changes_nothing():
    """An order the sidecar never allowed has no fills to come but unchecked ones: they
    trip the account and move the position, as the fill of any such order does."""
    engine = make_engine()
    engine.sync_positions(ACCOUNT, EQUITY, [position(5)], None, T0,
                          [IncludedFills("never", 5)])
    assert engine.orders.included == {}
    assert report_fill(engine, fill(5, client_order_id="never")).unchecked
    assert engine.book.position(ACCOUNT, STRATEGY, SYMBOL) == 10


@pytest.mark.parametrize(("included", "field"), [
    ([IncludedFills("c", float("nan"))], "included_fills[0].filled_quantity"),
    ([IncludedFills("c", -1.0)], "included_fills[0].filled_quantity"),
    ([IncludedFills("c", 2e12)], "included_fills[0].filled_quantity"),
    ([IncludedFills(" c", 1.0)], "included_fills[0].client_order_id"),
    ([IncludedFills("", 1.0)], "included_fills[0].client_order_id"),
    ([IncludedFills("c", 1.0), IncludedFills("c", 2.0)], "included_fills"),
])
def test_a_malformed_included_fills_is_refused_naming_the_field_and_changes_nothing(
        engine, included, field):
    coid = _allowed(engine, order(10, client_order_id="c"))
    with pytest.raises(InvalidArgument) as refused:
        engine.sync_positions(ACCOUNT, EQUITY, [position(50)], [], T0, included)
    assert refused.value.field == field
    assert engine.book.position(ACCOUNT, STRATEGY, SYMBOL) == 0
    assert _reserved(engine) == {coid: 10} and engine.orders.included == {}


def test_fills_a_snapshot_counted_are_booked_to_their_order_not_to_its_replacement():
    """Review 10: A 100, 30 filled before the snapshot (which lists A with 70 and counts
    the 30); A is replaced by B; the 30 then come, under A's id. They were booked to A
    when the snapshot came: B keeps all it reserves, nothing trips."""
    engine = make_engine()
    a = _allowed(engine, order(100, client_order_id="A"))
    engine.sync_positions(ACCOUNT, EQUITY, [position(30)], [OpenOrder(
        a, STRATEGY, SYMBOL, Side.BUY, 70, 100.0)], T0, [IncludedFills(a, 30)])
    b = _allowed(engine, order(60, client_order_id="B", replaces=a))
    assert _reserved(engine) == {b: 70}  # 60, and A's 10 more leaves while in flight
    late = report_fill(engine, fill(30, client_order_id=a))
    assert (late.position, late.unchecked) == (30, "")
    assert _reserved(engine) == {b: 70}
    assert engine.orders.exact(ACCOUNT, a).filled == 30


def test_fills_that_crossed_a_replace_are_booked_before_the_snapshot_confirms_it():
    """The venue filled 2 of A (4) before it took A's replacement B (1): B's leaves are
    none, and the snapshot lists no open order. The 2 are A's, within what A was allowed:
    booked as they came (crossing the replace), before the snapshot's word on B, they are
    all counted. Booked after it, B (1) took 1 of them, and the fill, when it came, moved
    the position to 3 and tripped the account (found by the venue model)."""
    engine = make_engine()
    a = _allowed(engine, order(4, client_order_id="A"))
    b = _allowed(engine, order(1, client_order_id="B", replaces=a))
    engine.sync_positions(ACCOUNT, EQUITY, [position(2)], [], T0, [IncludedFills(a, 2)])
    late = report_fill(engine, fill(2, client_order_id=a))
    assert (late.position, late.unchecked) == (2, "")
    assert _reserved(engine) == {} and engine.orders.included == {}
    assert engine.orders.exact(ACCOUNT, b).filled == 2


def test_a_snapshot_taken_before_fills_reported_since_has_them_added():
    """It holds fewer of the order's fills than were reported (it was on its way while
    they came): the rest are added to its positions, not lost."""
    engine = make_engine()
    a = _allowed(engine, order(100, client_order_id="A"))
    report_fill(engine, fill(100, client_order_id=a))
    engine.sync_positions(ACCOUNT, EQUITY, [position(0)], [OpenOrder(
        a, STRATEGY, SYMBOL, Side.BUY, 100, 100.0)], T0, [IncludedFills(a, 0)])
    assert engine.book.position(ACCOUNT, STRATEGY, SYMBOL) == 100
    with pytest.raises(InvalidArgument) as refused:  # beyond the magnitude: nothing changes
        engine.sync_positions(ACCOUNT, EQUITY, [position(1e12 - 50)], [], T0,
                              [IncludedFills(a, 0)])
    assert refused.value.field == "included_fills[0]"
    assert engine.book.position(ACCOUNT, STRATEGY, SYMBOL) == 100


def test_an_adopted_orders_counted_fills_leave_its_reservation_as_listed():
    engine = make_engine()
    engine.sync_positions(ACCOUNT, EQUITY, [position(30)], [OpenOrder(
        "R", STRATEGY, SYMBOL, Side.BUY, 70, 100.0)], T0, [IncludedFills("R", 30)])
    stray = report_fill(engine, fill(30, client_order_id="R"))
    assert stray.unchecked and stray.position == 30  # it trips, and is in the position
    assert _reserved(engine) == {"R": 70}


def test_an_order_a_snapshot_booked_fills_of_is_remembered_until_they_can_come():
    """Review 11: a resting order allowed two days ago is replaced; a snapshot books its
    fill that raced the replace. Retention then counts from the snapshot, not from the
    allow: the timer keeps it, and its fill trips nothing and counts once."""
    engine = make_engine()
    a = _allowed(engine, order(100, client_order_id="A"))
    later = T0 + 2 * DAY
    b = _allowed(engine, order(100, client_order_id="B", replaces=a), later)
    engine.sync_positions(ACCOUNT, EQUITY, [position(30)], None, later, [IncludedFills(a, 30)])
    timers(engine, later + 1)
    late = report_fill(engine, fill(30, client_order_id=a), later + 2)
    assert (late.position, late.unchecked) == (30, "")
    assert _reserved(engine) == {b: 70}


# -- review 13: what the venue's end of an order leaves it, through snapshots and replaces --


def test_fills_a_snapshot_holds_beyond_what_an_ended_order_may_fill_count_once_and_trip():
    """x is cancelled with no word on fills, so it may fill no more; a snapshot then holds
    100 of its fills. The position is the snapshot's, and x's fill, when it comes, moves
    it no further (it was counted twice) but trips the account."""
    engine = make_engine(equity=100_000)
    x = _allowed(engine, order(290))
    engine.update_order(OrderUpdate(ACCOUNT, x, OrderStatus.CANCELLED))
    engine.sync_positions(ACCOUNT, 100_000, [position(100)], None, T0,
                          [IncludedFills(x, 100)])
    late = report_fill(engine, fill(100, client_order_id=x))
    assert late.unchecked and late.position == 100
    assert engine.state_of(account()) is State.TRIPPED


@pytest.mark.parametrize("cum_first", [True, False])
def test_fills_a_snapshot_held_beyond_what_an_order_may_fill_are_booked_once(cum_first):
    """Review 13: held beyond the cap, they were not booked to x, so every later snapshot
    holding them counted them again, and the CumQty 100 update reserved them for ever."""
    engine = make_engine(equity=100_000)
    x = _allowed(engine, order(290))
    engine.update_order(OrderUpdate(ACCOUNT, x, OrderStatus.CANCELLED))
    cum = OrderUpdate(ACCOUNT, x, OrderStatus.CANCELLED, filled_quantity=100)
    if cum_first:
        engine.update_order(cum)
    for _ in range(3):
        engine.sync_positions(ACCOUNT, 100_000, [position(100)], [], T0,
                              [IncludedFills(x, 100)])
    if not cum_first:
        engine.update_order(cum)
    assert report_fill(engine, fill(100, client_order_id=x)).unchecked
    assert _reserved(engine) == {}
    assert report_fill(engine, fill(150, client_order_id=x)).position == 250  # not swallowed


def test_a_snapshot_that_lists_a_cancelled_order_keeps_what_it_was_allowed():
    """x is cancelled, then a snapshot lists it open: it reserves again. Replaced by c and
    c rejected, x works again with its leaves (what it was allowed, not its cap), so y is
    denied in its room; its fills still trip (the venue said it ended)."""
    engine = make_engine(equity=100_000)
    x = _allowed(engine, order(290))
    engine.update_order(OrderUpdate(ACCOUNT, x, OrderStatus.CANCELLED))
    engine.sync_positions(ACCOUNT, 100_000, [position(0)],
                          [OpenOrder(x, STRATEGY, SYMBOL, Side.BUY, 290, 100.0)], T0)
    c = _allowed(engine, order(290, replaces=x))
    assert engine.update_order(OrderUpdate(ACCOUNT, c, OrderStatus.REJECTED))
    assert _reserved(engine) == {x: 290}
    assert engine.check(order(290), T0).reason is R.SYMBOL_EXPOSURE
    assert report_fill(engine, fill(10, client_order_id=x)).unchecked


@pytest.mark.parametrize("rejected_first", [True, False])
def test_an_order_cancelled_while_its_replace_was_rejected_may_fill_no_more(rejected_first):
    """x is replaced by b; the venue rejects b, and cancels x. Whichever report comes
    first, x's room is free once both are in, and its late fill trips."""
    engine = make_engine(equity=100_000)
    x = _allowed(engine, order(290))
    b = _allowed(engine, order(290, replaces=x))
    updates = [OrderUpdate(ACCOUNT, b, OrderStatus.REJECTED),
               OrderUpdate(ACCOUNT, x, OrderStatus.CANCELLED)]
    for update in updates if rejected_first else updates[::-1]:
        assert engine.update_order(update)
    assert _reserved(engine) == {}
    _allowed(engine, order(290))
    assert report_fill(engine, fill(290, client_order_id=x)).unchecked


def test_a_timer_run_that_keeps_a_working_order_past_its_retention_is_journaled():
    """Review 13: the run that kept o1 (working past its retention) moved it behind o3 and
    was not journaled, so a replay kept them in another order and a later run forgot o1
    there: after a restart, o1 was no longer a duplicate."""
    limits = LimitSettings(duplicate_identical_orders=0)
    retention = limits.order_id_retention_s
    engine = make_engine(limits=limits)
    _allowed(engine, order(1, client_order_id="o1"))
    o3 = _allowed(engine, order(1, client_order_id="o3"), T0 + retention - 5)
    engine.update_order(OrderUpdate(ACCOUNT, o3, OrderStatus.CANCELLED))
    engine.expire(T0 + retention - 2)
    assert engine.expire(T0 + retention + 0.5)  # kept o1: the journal must record the run
    engine.update_order(OrderUpdate(ACCOUNT, "o1", OrderStatus.CANCELLED))
    engine.expire(T0 + retention + 3)
    assert engine.check(order(1, client_order_id="o1"), T0 + retention + 4).reason \
        is R.DUPLICATE_ORDER


# -- review 15: a chain of unconfirmed replaces cleared at once; an old order replaced -----


def test_clearing_a_chain_of_unconfirmed_replacements_gives_the_first_order_back():
    """y replaces x and z replaces y before the venue answers; the venue rejects both and
    the operator clears y and z in one call. x is live: it reserves again, as it does
    when they are cleared one at a time."""
    for batches in ([["y", "z"]], [["z"], ["y"]]):
        engine = make_engine(equity=100_000)
        x = _allowed(engine, order(290, client_order_id="x"))
        _allowed(engine, order(290, client_order_id="y", replaces=x))
        _allowed(engine, order(290, client_order_id="z", replaces="y"))
        for batch in batches:
            engine.clear_working_orders(ACCOUNT, batch)
        assert _reserved(engine) == {x: 290}, batches
        assert engine.check(order(290), T0).reason is R.SYMBOL_EXPOSURE


def test_an_order_older_than_the_retention_is_remembered_while_its_replace_is_in_flight():
    """x rested for more than the retention and was replaced by y; the next timer run
    forgot x, so when the venue rejected y, x (live) reserved nothing."""
    limits = LimitSettings(duplicate_identical_orders=0)
    day = limits.order_id_retention_s
    engine = make_engine(equity=100_000, limits=limits)
    x = _allowed(engine, order(290, client_order_id="x"))
    engine.expire(T0 + day + 1)  # x rests: kept
    _allowed(engine, order(290, client_order_id="y", replaces=x), T0 + 2 * day + 0.9)
    engine.expire(T0 + 2 * day + 1.1)
    assert engine.update_order(OrderUpdate(ACCOUNT, "y", OrderStatus.REJECTED))
    assert _reserved(engine) == {x: 290}
    assert engine.check(order(290), T0 + 2 * day + 1.2).reason is R.SYMBOL_EXPOSURE


# -- review 16: an unlisted order owed fills, fills that crossed a replace the venue sized --


def _worst_long(engine) -> float:
    net = engine.book.account(ACCOUNT).nets[SYMBOL]
    return net.position + net.buying


def test_an_order_left_out_of_a_snapshot_while_owed_fills_works_again_on_its_open_update():
    """x had filled 90 at the venue (not reported yet) when a stale snapshot left it out:
    it worked on for those 90 alone. The venue's OPEN (leaves 200, filled 90) says it is
    live: its leaves count again beside the 90, with filled_quantity or without."""
    for filled in (90.0, None):
        engine = make_engine(equity=100_000)  # 30 % symbol limit: 300 at 100
        x = _allowed(engine, order(290, client_order_id="x"))
        engine.update_order(OrderUpdate(ACCOUNT, x, OrderStatus.OPEN, 200, 90))
        engine.sync_positions(ACCOUNT, 100_000, [position(0)], [], T0 + 1)
        assert _reserved(engine) == {x: 90}
        assert engine.update_order(OrderUpdate(ACCOUNT, x, OrderStatus.OPEN, 200, filled))
        assert _reserved(engine) == {x: 290}, filled
        assert engine.check(order(20), T0 + 2).reason is R.SYMBOL_EXPOSURE
        assert not report_fill(engine, fill(90, client_order_id=x, fill_id="f1")).unchecked
        assert _reserved(engine) == {x: 200}


@pytest.mark.parametrize("fill_first", [False, True])
def test_a_fill_that_crossed_a_replace_is_off_no_leaves_the_venue_gave_the_replacement(
        fill_first):
    """x (290) filled 100 before its replace by y reached the venue, which gave y leaves
    of 190. Reported after y's OPEN, that fill took another 100 off y (it reserved 90),
    and a BUY 110 was allowed past the limit; y's own 190 then tripped. In either order
    the chain reserves the venue's 190, and y may fill them."""
    engine = make_engine(equity=100_000)
    x = _allowed(engine, order(290, client_order_id="x"))
    engine.update_order(OrderUpdate(ACCOUNT, x, OrderStatus.OPEN, 290, 0))
    y = _allowed(engine, order(290, client_order_id="y", replaces=x))
    crossing = fill(100, client_order_id=x, fill_id="f1")
    if fill_first:
        assert not report_fill(engine, crossing).unchecked
    engine.update_order(OrderUpdate(ACCOUNT, y, OrderStatus.OPEN, 190, 0))
    if not fill_first:
        assert not report_fill(engine, crossing).unchecked
    engine.update_order(OrderUpdate(ACCOUNT, x, OrderStatus.CANCELLED, None, 100))
    assert _reserved(engine) == {y: 190}
    assert _worst_long(engine) == 290
    assert engine.check(order(20), T0).reason is R.SYMBOL_EXPOSURE
    assert not report_fill(engine, fill(190, client_order_id=y, fill_id="g1")).unchecked
    assert _reserved(engine) == {}


def _replaced(stated: float | None = None, filled: float = 0.0):  # noqa: ANN202
    """x (290) replaced by y (290) on a 300 symbol limit; y's OPEN with `stated` leaves
    (and `filled` as its filled_quantity) if given. The engine, x and y."""
    engine = make_engine(equity=100_000)
    x = _allowed(engine, order(290, client_order_id="x"))
    y = _allowed(engine, order(290, client_order_id="y", replaces=x))
    if stated is not None:
        engine.update_order(OrderUpdate(ACCOUNT, y, OrderStatus.OPEN, stated, filled))
    return engine, x, y


def test_a_fill_that_crossed_a_sized_replace_is_judged_against_the_original():
    """x (290) filled 250 before its replace by y landed; the venue gave y leaves of 40.
    The 250 are within what x was allowed, so they trip nothing; a fill of x beyond its
    290 does."""
    engine, x, y = _replaced(40, 0)
    assert not report_fill(engine, fill(250, client_order_id=x, fill_id="f1")).unchecked
    assert _reserved(engine) == {y: 40}
    assert report_fill(engine, fill(41, client_order_id=x, fill_id="f2")).unchecked


def test_the_fills_of_a_replaced_order_are_remembered_while_its_replacement_works():
    """x filled 100 (f1) and was amended into y. f1 was forgotten a retention after it
    came, though y still worked: sent again by a drop copy, it counted a second time.
    x itself is remembered while y works (review 30: forgotten a retention after its
    replace, x took f1's id with it). Once both are forgotten, such a fill trips."""
    limits = LimitSettings(duplicate_identical_orders=0)
    day = limits.order_id_retention_s
    engine = make_engine(equity=100_000, limits=limits)
    x = _allowed(engine, order(290, client_order_id="x"))
    f1 = fill(100, client_order_id=x, fill_id="f1")
    report_fill(engine, f1, T0 + 1)
    _allowed(engine, order(190, client_order_id="y", replaces=x), T0 + day / 2)
    engine.expire(T0 + day + 2)  # f1 a retention old, x remembered, y works
    assert report_fill(engine, f1, T0 + day + 3).duplicate
    assert engine.book.position(ACCOUNT, STRATEGY, SYMBOL) == 100
    engine.expire(T0 + 2 * day + 2)
    assert engine.orders.exact(ACCOUNT, x) is not None
    assert report_fill(engine, f1, T0 + 2 * day + 3).duplicate
    assert engine.update_order(OrderUpdate(ACCOUNT, "y", OrderStatus.EXPIRED))
    for days in (4, 6):
        engine.expire(T0 + days * day)
    assert engine.orders.exact(ACCOUNT, x) is None
    assert report_fill(engine, f1, T0 + 6 * day).unchecked  # never silently twice


def test_a_fill_id_is_remembered_while_its_order_is():
    """Review 30: a snapshot kept A's record for another retention, but f1's id was
    forgotten a retention after it came: sent again, f1 counted twice."""
    limits = LimitSettings(duplicate_identical_orders=0, order_id_retention_s=2)
    engine = make_engine(equity=100_000, limits=limits)
    a = _allowed(engine, order(100))
    f1 = fill(20, client_order_id=a, fill_id="f1")
    report_fill(engine, f1, T0)
    engine.sync_positions(ACCOUNT, 100_000, [position(30)], [], T0 + 1,
                          [IncludedFills(a, 30)])
    engine.expire(T0 + 2.5)  # f1 a retention old; A kept by the snapshot
    assert engine.orders.exact(ACCOUNT, a) is not None
    assert report_fill(engine, f1, T0 + 2.6).duplicate


# -- review 18: what review 16's fixes let through, and an older fill routing -------------


def test_a_fill_of_an_order_replaced_twice_goes_past_an_order_owed_its_own():
    """x -> y -> z. y, cancelled (replaced) with 40 filled, works for those 40; x's own
    fill of 30 went to y (owed) and took 30 of y's 40 off: a BUY past the limit was
    allowed until y's fills came. It goes to the head of the chain."""
    engine = make_engine(equity=100_000)
    x = _allowed(engine, order(100, client_order_id="x"))
    y = _allowed(engine, order(100, client_order_id="y", replaces=x))
    z = _allowed(engine, order(100, client_order_id="z", replaces=y))
    engine.update_order(OrderUpdate(ACCOUNT, z, OrderStatus.OPEN, 30, 0))
    engine.update_order(OrderUpdate(ACCOUNT, y, OrderStatus.CANCELLED, None, 40))
    assert not report_fill(engine, fill(30, client_order_id=x, fill_id="f1")).unchecked
    assert _reserved(engine) == {z: 30, y: 40}
    assert _worst_long(engine) == 100  # truth: 30 filled, y's 40 on their way, z's 30
    assert engine.check(order(220), T0).reason is R.SYMBOL_EXPOSURE


@pytest.mark.parametrize("stated", [290, 190])
def test_a_rejected_replacement_passes_no_room_on_for_the_originals_own_fills(stated):
    """y's OPEN came before the venue rejected it, then x's fill of 100: the rejection
    made x's allowed 390, so a fill of x beyond its 290 tripped nothing."""
    engine, x, y = _replaced(stated, 0)
    assert not report_fill(engine, fill(100, client_order_id=x, fill_id="f1")).unchecked
    engine.update_order(OrderUpdate(ACCOUNT, y, OrderStatus.REJECTED))
    assert _reserved(engine) == {x: 190}
    assert not report_fill(engine, fill(190, client_order_id=x, fill_id="f2")).unchecked
    assert _reserved(engine) == {}
    assert report_fill(engine, fill(100, client_order_id=x, fill_id="f3")).unchecked


def test_fills_before_leaves_never_let_a_chain_fill_more_than_its_checks_allowed():
    """The venue (or an executor echoing its request) said y's leaves are all 290 it was
    allowed: x's fill of 290 cannot have come before them too. It is y's, and y's own
    290 after it trip."""
    engine, x, y = _replaced(290, 0)
    assert not report_fill(engine, fill(290, client_order_id=x, fill_id="f1")).unchecked
    assert report_fill(engine, fill(290, client_order_id=y, fill_id="g1")).unchecked


def test_a_replacements_open_counting_the_chains_fills_leaves_nothing_stuck():
    """y's OPEN gave leaves 190 and the chain's CumQty (100, x's fill) as its own
    filled_quantity; x's fill then came. y reserved 290, and after its 190 still 100."""
    engine, x, y = _replaced(190, 100)
    assert not report_fill(engine, fill(100, client_order_id=x, fill_id="f1")).unchecked
    assert _reserved(engine) == {y: 190}
    assert not report_fill(engine, fill(190, client_order_id=y, fill_id="g1")).unchecked
    assert _reserved(engine) == {}
    assert report_fill(engine, fill(100, client_order_id=y, fill_id="g2")).unchecked


def test_a_fill_before_leaves_uses_none_of_what_a_replacement_holds_for_them():
    """Review 19: x -> y (OPEN 80: x's 20 unreported) -> z (50, holding 30 more for y's
    leaves while in flight). x's 20, before y's leaves, used up z's 30 held for them, so
    z's OPEN counted the surplus as a cut and fills beyond every check tripped nothing."""
    engine = make_engine(equity=100_000)
    x = _allowed(engine, order(100, client_order_id="x"))
    y = _allowed(engine, order(100, client_order_id="y", replaces=x))
    engine.update_order(OrderUpdate(ACCOUNT, y, OrderStatus.OPEN, 80, 0))
    z = _allowed(engine, order(50, client_order_id="z", replaces=y))
    assert not report_fill(engine, fill(20, client_order_id=x, fill_id="f1")).unchecked
    engine.update_order(OrderUpdate(ACCOUNT, z, OrderStatus.OPEN, 30, 0))
    assert _reserved(engine) == {z: 30}
    assert report_fill(engine, fill(40, client_order_id=y, fill_id="g1")).unchecked


def test_a_clear_of_a_replacement_the_venue_spoke_of_ends_it_as_a_cancel():
    """Review 38i: o1 -> o2 -> o3, o3 sent while o2 was on its way. The venue took o2 and
    said so (o2 OPEN, 0.25 filled, reported after o3 had replaced it here); the operator
    then cleared o2, gone at the venue: the clear took o2 for a replacement the venue had
    rejected, and ended o3, live, with it: o3's room was free for another order."""
    engine = make_engine(equity=10_000_000)
    for coid, replaces in (("o1", ""), ("o2", "o1"), ("o3", "o2")):
        _allowed(engine, order(1, client_order_id=coid, replaces=replaces))
    for coid, status, leaves, filled in (("o1", OrderStatus.OPEN, 0.5, 0.5),
                                         ("o1", OrderStatus.CANCELLED, None, 0.5)):
        engine.update_order(OrderUpdate(ACCOUNT, coid, status, leaves, filled))
    assert engine.update_order(OrderUpdate(ACCOUNT, "o2", OrderStatus.OPEN, 0.5, 0))  # kept
    engine.clear_working_orders(ACCOUNT, ["o1", "o2"])
    assert _reserved(engine) == {"o3": 1}
    assert not report_fill(engine, fill(0.25, client_order_id="o3")).unchecked


def test_an_originals_fills_said_owed_while_its_replace_is_in_flight_take_the_chains_room():
    """Review 38j (known gap 15 until stop 39): o5 (8) replaced by o17 (8); before the
    venue's word on o17, o5's OPEN says 4 left, 4 filled. The chain was allowed 8; o5's 4
    and o17's 8 filled untripped (without the update, or with it after o5's fill, o17's 8
    trips): the 4 were reserved apart, and o17 kept its whole room."""
    engine = make_engine(equity=100_000)
    _allowed(engine, order(8, client_order_id="o5"))
    _allowed(engine, order(8, client_order_id="o17", replaces="o5"))
    engine.update_order(OrderUpdate(ACCOUNT, "o5", OrderStatus.OPEN, 4, 4))
    assert _reserved(engine) == {"o5": 4, "o17": 8}  # reserved until they come
    assert not report_fill(engine, fill(4, client_order_id="o5")).unchecked
    assert _reserved(engine) == {"o17": 8}  # until the venue's word on o17 (review 39j)
    assert report_fill(engine, fill(8, client_order_id="o17")).unchecked


def test_a_fill_said_owed_once_replaced_is_charged_before_its_chains_part_is_judged():
    """Sim seed 8785 (stop 39): o5 (8) replaced by o12 (7), 4 of o5's crossing to o12;
    then o5 is said to be owed 1 more, and its fill of 5 splits: 1 owed, 4 down the
    chain. Judged before the 1 was charged, the 4 fitted o12's room; the chain filled 9."""
    engine = make_engine(equity=100_000)
    _allowed(engine, order(8, client_order_id="o5"))
    _allowed(engine, order(7, client_order_id="o12", replaces="o5"))
    assert not report_fill(engine, fill(4, client_order_id="o5", fill_id="f4")).unchecked
    engine.update_order(OrderUpdate(ACCOUNT, "o5", OrderStatus.OPEN, 3, 5))
    assert report_fill(engine, fill(5, client_order_id="o5", fill_id="f2")).unchecked


def test_fills_said_owed_once_replaced_and_held_by_a_snapshot_take_the_chains_room():
    """The same charge when a snapshot's `included_fills` books o5's owed fills."""
    engine = make_engine(equity=100_000)
    _allowed(engine, order(8, client_order_id="o5"))
    _allowed(engine, order(8, client_order_id="o17", replaces="o5"))
    engine.update_order(OrderUpdate(ACCOUNT, "o5", OrderStatus.OPEN, 4, 4))
    engine.sync_positions(ACCOUNT, 100_000, [position(4)], None, T0 + 1,
                          [IncludedFills("o5", 4)])
    assert _reserved(engine) == {"o17": 8}
    assert report_fill(engine, fill(8, client_order_id="o17"), T0 + 2).unchecked


def test_a_charge_of_late_fills_releases_nothing_the_venue_may_still_fill():
    """Review 39j: B said live with its 8 leaves; A's 2 said owed and filled were charged
    to B's room and released from B's reservation: a buy of 2 was allowed past the
    limit, and B's 8 filled. B's room is cut (its 8 trip); what it reserves stays."""
    engine = make_engine(equity=3_400)  # 30 % = 10.2 units
    _allowed(engine, order(8, client_order_id="A"))
    _allowed(engine, order(8, client_order_id="B", replaces="A"))
    engine.update_order(OrderUpdate(ACCOUNT, "B", OrderStatus.OPEN, 8, 0))
    engine.update_order(OrderUpdate(ACCOUNT, "A", OrderStatus.CANCELLED, None, 2))
    assert not report_fill(engine, fill(2, client_order_id="A")).unchecked
    assert _reserved(engine) == {"B": 8}
    assert engine.check(order(2), T0).reason is R.SYMBOL_EXPOSURE


def test_late_fills_of_an_order_take_no_room_released_for_another_ones_leaves():
    """Review 39j: A 8 -> B 4, B confirmed (its confirmation freed the room it held for
    A's leaves), B -> C 8; B's 2 said owed and filled took that room, passed down to C,
    and C's 8 filled untripped: 10 where no check allowed more than 8."""
    engine = make_engine(equity=100_000)
    _allowed(engine, order(8, client_order_id="A"))
    _allowed(engine, order(4, client_order_id="B", replaces="A"))
    engine.update_order(OrderUpdate(ACCOUNT, "B", OrderStatus.OPEN, 4, 0))
    _allowed(engine, order(8, client_order_id="C", replaces="B"))
    engine.update_order(OrderUpdate(ACCOUNT, "B", OrderStatus.CANCELLED, None, 2))
    assert not report_fill(engine, fill(2, client_order_id="B")).unchecked
    assert report_fill(engine, fill(8, client_order_id="C")).unchecked


def test_room_a_stale_snapshot_holds_again_is_not_released_twice():
    """Review 39m: A 8 -> B 4 -> C 2, each confirmed; a stale snapshot listing B made C
    hold B's leaves again, and C's second confirmation counted the room it released a
    second time: B's 4 said owed took room released for A's leaves, and D's 8 passed."""
    engine = make_engine(equity=100_000)
    for quantity, coid, before in ((8, "A", ""), (4, "B", "A"), (2, "C", "B")):
        _allowed(engine, order(quantity, client_order_id=coid, replaces=before))
        if before:
            engine.update_order(OrderUpdate(ACCOUNT, coid, OrderStatus.OPEN, quantity, 0))
    engine.sync_positions(ACCOUNT, 100_000, [position(0.0)],
                          [OpenOrder("B", STRATEGY, SYMBOL, Side.BUY, 4, 100.0)], T0,
                          [IncludedFills(c, 0.0) for c in "ABC"])
    engine.update_order(OrderUpdate(ACCOUNT, "C", OrderStatus.OPEN, 2, 0))
    _allowed(engine, order(8, client_order_id="D", replaces="C"))
    engine.update_order(OrderUpdate(ACCOUNT, "B", OrderStatus.CANCELLED, None, 4))
    assert not report_fill(engine, fill(4, client_order_id="B")).unchecked
    assert report_fill(engine, fill(8, client_order_id="D")).unchecked


@pytest.mark.parametrize("stale", [False, True])
def test_room_a_stale_listing_of_the_first_order_holds_again_is_not_a_later_ones(stale):
    """Review 39q: A 12 -> B 4 (confirmed: 8 of A's leaves released) -> C 8; a snapshot
    read before B's replace listed A. C held 4 of that room again, and its next
    confirmation counted them as its own: B's 2 said owed took them, and the chain
    filled 14 untripped where its checks allowed 12 (without the listing, the 13th
    trips)."""
    engine = make_engine(equity=100_000)
    _allowed(engine, order(12, client_order_id="A"))
    _allowed(engine, order(4, client_order_id="B", replaces="A"))
    engine.update_order(OrderUpdate(ACCOUNT, "B", OrderStatus.OPEN, 4, 0))
    _allowed(engine, order(8, client_order_id="C", replaces="B"))
    if stale:
        engine.sync_positions(ACCOUNT, 100_000, [position(0.0)],
                              [OpenOrder("A", STRATEGY, SYMBOL, Side.BUY, 12, 100.0)], T0,
                              [IncludedFills(c, 0.0) for c in "ABC"])
    engine.update_order(OrderUpdate(ACCOUNT, "A", OrderStatus.CANCELLED, None, 4))
    engine.update_order(OrderUpdate(ACCOUNT, "B", OrderStatus.CANCELLED, None, 2))
    filled = 0.0
    for quantity, coid in ((1, "C"), (4, "A"), (2, "B")) + ((1, "C"),) * 6:
        if report_fill(engine, fill(quantity, client_order_id=coid)).unchecked:
            break
        filled += quantity
    assert filled <= 12


def test_room_a_stale_listing_made_the_head_hold_again_is_its_own_once_confirmed():
    """Review 39r: B 12 -> C 4, C confirmed (8 of B's leaves released); a snapshot read
    before the replace listed B, then C was confirmed again: the room it released again
    was no longer its own, and B's 4 said owed, then C's honest 4, tripped the account."""
    engine = make_engine(equity=100_000)
    _allowed(engine, order(12, client_order_id="B"))
    _allowed(engine, order(4, client_order_id="C", replaces="B"))
    engine.update_order(OrderUpdate(ACCOUNT, "C", OrderStatus.OPEN, 4, 0))
    engine.sync_positions(ACCOUNT, 100_000, [position(0.0)],
                          [OpenOrder("B", STRATEGY, SYMBOL, Side.BUY, 12, 100.0)], T0,
                          [IncludedFills(c, 0.0) for c in "BC"])
    engine.update_order(OrderUpdate(ACCOUNT, "C", OrderStatus.OPEN, 4, 0))
    engine.update_order(OrderUpdate(ACCOUNT, "B", OrderStatus.CANCELLED, None, 4))
    assert not report_fill(engine, fill(4, client_order_id="B")).unchecked
    assert not report_fill(engine, fill(4, client_order_id="C")).unchecked


def test_fills_said_owed_before_a_replace_was_judged_are_not_its_rooms():
    """Review 39e (seed 4624, honest): A -> B, A said to have 2 filled, then C replaces B
    judged with those 2 reserved apart; A's fill was charged to C, whose 10 leaves the
    venue still had: 2 of C's room freed (a buy past the limit allowed), C's fill tripped."""
    engine = make_engine(equity=10_000)  # 30 % = 30 units
    _allowed(engine, order(4, client_order_id="A"))
    _allowed(engine, order(8, client_order_id="B", replaces="A"))
    engine.update_order(OrderUpdate(ACCOUNT, "A", OrderStatus.OPEN, 2, 2))
    _allowed(engine, order(10, client_order_id="C", replaces="B"))
    assert not report_fill(engine, fill(2, client_order_id="A")).unchecked
    assert _reserved(engine) == {"C": 10}
    assert engine.check(order(20), T0).reason is R.SYMBOL_EXPOSURE
    assert not report_fill(engine, fill(10, client_order_id="C")).unchecked


@pytest.mark.parametrize("rejected", [False, True])
def test_fills_said_owed_once_replaced_past_the_chains_room_trip(rejected):
    """Review 39e: o5 -> o17 (8 each), o5 said to have 4 filled; o17's 8 came first and
    o5's 4 were charged to no room: 12 filled untripped, where without the update o5's 4
    tripped. A -> B -> C: A's 4 charged to C, C rejected: B came back with its 8."""
    engine = make_engine(equity=100_000)
    chain = ["o5", "o17", "o20"] if rejected else ["o5", "o17"]
    for before, coid in zip([""] + chain, chain):
        _allowed(engine, order(8, client_order_id=coid, replaces=before))
    engine.update_order(OrderUpdate(ACCOUNT, "o5", OrderStatus.OPEN, 4, 4))
    if rejected:
        assert not report_fill(engine, fill(4, client_order_id="o5")).unchecked
        engine.update_order(OrderUpdate(ACCOUNT, "o20", OrderStatus.REJECTED))
        assert _reserved(engine) == {"o17": 4}
        assert report_fill(engine, fill(8, client_order_id="o17")).unchecked
        return
    assert not report_fill(engine, fill(8, client_order_id="o17")).unchecked
    assert "past what its chain of replaces was allowed" in \
        report_fill(engine, fill(4, client_order_id="o5")).unchecked


def test_fills_said_owed_once_replaced_are_off_leaves_the_venue_gave_the_replacement():
    """The venue's leaves for o17 (4 of 8) leave out o5's fills said owed once it was
    replaced, whichever word comes first: they are reserved apart until they come, and
    o17 may still fill its 4 (taken off its room a second time, they tripped it)."""
    for first in ("o5", "o17"):
        engine = make_engine(equity=100_000)
        _allowed(engine, order(8, client_order_id="o5"))
        _allowed(engine, order(8, client_order_id="o17", replaces="o5"))
        updates = {"o5": OrderUpdate(ACCOUNT, "o5", OrderStatus.CANCELLED, None, 4),
                   "o17": OrderUpdate(ACCOUNT, "o17", OrderStatus.OPEN, 4, 0)}
        for coid in (first, "o17" if first == "o5" else "o5"):
            engine.update_order(updates[coid])
        assert _reserved(engine) == {"o5": 4, "o17": 4}
        assert not report_fill(engine, fill(4, client_order_id="o5")).unchecked
        assert _reserved(engine) == {"o17": 4}
        assert not report_fill(engine, fill(4, client_order_id="o17")).unchecked
        assert report_fill(engine, fill(1, client_order_id="o17")).unchecked


def test_a_clear_of_a_replacement_revived_by_a_rejection_gives_its_original_back():
    """Review 38n: o1 -> o2 -> o3, o3 sent before the venue's word on o2. The executor's
    echo of o2 (OPEN) came after o3 had replaced it here, and marked it as having lived;
    the venue rejected o2, o3 with it; o3's rejection revived o2, and the operator's clear
    of o2 ended it as a cancel: o1, live at the venue, reserved nothing."""
    engine = make_engine(equity=10_000_000)
    for coid, replaces in (("o1", ""), ("o2", "o1"), ("o3", "o2")):
        _allowed(engine, order(1, client_order_id=coid, replaces=replaces))
    engine.update_order(OrderUpdate(ACCOUNT, "o1", OrderStatus.OPEN, 1, 0))
    engine.update_order(OrderUpdate(ACCOUNT, "o2", OrderStatus.OPEN, 1, 0))  # an echo
    engine.update_order(OrderUpdate(ACCOUNT, "o3", OrderStatus.REJECTED))
    assert _reserved(engine) == {"o2": 1}
    engine.clear_working_orders(ACCOUNT, ["o2"])
    assert _reserved(engine) == {"o1": 1}


def test_a_replacement_the_venue_spoke_of_as_the_head_stays_confirmed_once_revived():
    """Review 38p: o2, confirmed by the venue while it was the head, then revived by the
    rejection of o3, was doubted as an echo: the operator's clear of o2 (replaced since
    by o4, live) unreplaced it and ended o4, and 100 more were allowed past the limit."""
    for late in (False, True):  # 38q: o2's word came once o3 had replaced it
        engine = make_engine(equity=100_000)  # 30 % = 300 units
        _allowed(engine, order(10, client_order_id="o1"))
        _allowed(engine, order(10, client_order_id="o2", replaces="o1"))
        if not late:
            engine.update_order(OrderUpdate(ACCOUNT, "o2", OrderStatus.OPEN, 8, 2))
        _allowed(engine, order(10, client_order_id="o3", replaces="o2"))
        if late:
            engine.update_order(OrderUpdate(ACCOUNT, "o2", OrderStatus.OPEN, 8, 2))
        engine.update_order(OrderUpdate(ACCOUNT, "o3", OrderStatus.REJECTED))
        _cleared_after_a_live_replace(engine)


def _cleared_after_a_live_replace(engine) -> None:
    _allowed(engine, order(280, client_order_id="o4", replaces="o2"))
    engine.update_order(OrderUpdate(ACCOUNT, "o4", OrderStatus.OPEN, 280, 0))
    engine.clear_working_orders(ACCOUNT, ["o2"])
    assert "o4" in _reserved(engine)
    assert engine.check(order(100), T0).reason is R.SYMBOL_EXPOSURE


@pytest.mark.parametrize("named", [["o2"], ["o2", "o5"], ["o5", "o2"]])
def test_a_word_that_came_once_replaced_proves_no_order_before_it_lived(named):
    """Review 38r: o4's only word came once o5 had replaced it (an echo, maybe), and it
    kept the clear of o2 from giving o1, live, its leaves back; with two orders named the
    outcome followed the hash of their ids, so a replay could differ from the live one."""
    engine = make_engine(equity=100_000)  # 30 % = 300 units
    _allowed(engine, order(100, client_order_id="o1"))
    engine.update_order(OrderUpdate(ACCOUNT, "o1", OrderStatus.OPEN, 100, 0))
    _allowed(engine, order(100, client_order_id="o2", replaces="o1"))
    _allowed(engine, order(100, client_order_id="o3", replaces="o2"))
    engine.update_order(OrderUpdate(ACCOUNT, "o2", OrderStatus.OPEN, 98, 2))  # late
    engine.update_order(OrderUpdate(ACCOUNT, "o3", OrderStatus.REJECTED))
    _allowed(engine, order(10, client_order_id="o4", replaces="o2"))
    _allowed(engine, order(10, client_order_id="o5", replaces="o4"))
    engine.update_order(OrderUpdate(ACCOUNT, "o4", OrderStatus.OPEN, 10, 0))  # late
    engine.clear_working_orders(ACCOUNT, named)
    assert _reserved(engine) == {"o1": 100}


@pytest.mark.parametrize("drop_copy", [False, True])
def test_an_order_a_rejected_replace_made_the_head_keeps_every_fill_it_is_owed(drop_copy):
    """Review 41e: c1 -> c2 -> c3, c2 cancelled with 5 filled (not reported yet), c3's
    replace rejected: c2 works for its 5 owed fills alone. Its first fill of 2 released
    all 5 (the crossing it got back was released at its confirmation), so an order was
    allowed into their room and the other 3 came untripped. With the drop copy's copy of
    the cancel, c2 was left reserving but not counted, and its fill ended in a KeyError:
    GLOBAL failed closed, and again at every fill after a restart."""
    engine = make_engine(equity=10_000, limits=LimitSettings(duplicate_identical_orders=0,
                                                             max_orders_per_second=0))
    for coid, quantity, before in (("c1", 25, ""), ("c2", 10, "c1"), ("c3", 25, "c2")):
        _allowed(engine, order(quantity, client_order_id=coid, replaces=before))
    engine.update_order(OrderUpdate(ACCOUNT, "c2", OrderStatus.CANCELLED, None, 5.0))
    engine.update_order(OrderUpdate(ACCOUNT, "c3", OrderStatus.REJECTED, None, 0.0))
    if drop_copy:
        engine.update_order(OrderUpdate(ACCOUNT, "c2", OrderStatus.CANCELLED, None, 5.0))
    assert _reserved(engine) == {"c2": 5}
    assert not report_fill(engine, fill(2, client_order_id="c2")).unchecked
    assert _reserved(engine) == {"c2": 3}
    denied = engine.check(order(28), T0)  # 2 held, 3 owed: 28 more is 33 % of equity
    assert denied.reason is DecisionReason.SYMBOL_EXPOSURE, denied
    assert not report_fill(engine, fill(3, client_order_id="c2")).unchecked
    assert _reserved(engine) == {}
    assert report_fill(engine, fill(1, client_order_id="c2")).unchecked


def test_a_listing_of_an_order_whose_replacement_the_venue_ended_revives_nothing():
    """Review 41e: Z -> A (40) -> B, A's fill of 20 crossing to B, B expired; a stale
    snapshot listing A with 20 left revived it, its crossing fills counted apart from
    what it filled after, and the chain filled 60 untripped where 40 were allowed. The
    venue had B: the replace was done, and the listing was read before it."""
    engine = make_engine(equity=1e6)
    for coid, quantity, before in (("Z", 10, ""), ("A", 40, "Z"), ("B", 25, "A")):
        _allowed(engine, order(quantity, client_order_id=coid, replaces=before))
    assert not report_fill(engine, fill(20, client_order_id="A")).unchecked
    engine.update_order(OrderUpdate(ACCOUNT, "B", OrderStatus.EXPIRED))
    engine.sync_positions(ACCOUNT, 1e6, [position(20)],
                          [OpenOrder("A", STRATEGY, SYMBOL, Side.BUY, 20, 100)], T0,
                          [IncludedFills("A", 20)])
    assert _reserved(engine) == {}
    assert report_fill(engine, fill(20, client_order_id="A")).unchecked


def test_a_replacement_of_an_order_a_snapshot_adopted_may_fill_only_its_own_quantity():
    """Review 41e: a snapshot adopted X-ext (100, never checked); C (10) replacing it was
    allowed, and a fill of 100 under C passed, untripped: a snapshot reserves, it never
    allows. C holds X-ext's leaves until the venue's word, and may fill its own 10."""
    engine = make_engine(equity=1e6)
    engine.sync_positions(ACCOUNT, 1e6, [position(0)],
                          [OpenOrder("X-ext", STRATEGY, SYMBOL, Side.BUY, 100, 100)], T0)
    _allowed(engine, order(10, client_order_id="C", replaces="X-ext"))
    assert _reserved(engine) == {"C": 100}
    assert "exceeds" in report_fill(engine, fill(100, client_order_id="C")).unchecked


@pytest.mark.parametrize("left_out", [False, True])
def test_an_open_update_cuts_what_an_order_may_fill_even_one_a_snapshot_left_out(left_out):
    """Review 41e: c6 (40) filled 1, a snapshot left it out, the venue's OPEN said 1 left
    (filled 1): it worked again reserving 1, yet 38 more filled untripped; the same OPEN
    on a working order cuts what it may fill."""
    engine = make_engine(equity=1e6)
    _allowed(engine, order(40, client_order_id="c6"))
    assert not report_fill(engine, fill(1, client_order_id="c6")).unchecked
    if left_out:
        engine.sync_positions(ACCOUNT, 1e6, [position(1)], [], T0)
    engine.update_order(OrderUpdate(ACCOUNT, "c6", OrderStatus.OPEN, 1.0, 1.0))
    assert _reserved(engine) == {"c6": 1}
    assert report_fill(engine, fill(38, client_order_id="c6")).unchecked


@pytest.mark.parametrize("original_end", [None, "unsaid fills", 0.0])
def test_a_fill_naming_the_original_after_its_replacement_ended_trips(original_end):
    """Review 41g: A -> B, B live then cancelled with 0 filled: the room was free and C
    allowed into it, yet a fill of 290 naming A passed, judged within A's own room: 580
    held against a 300 limit, untripped. Review 41i: so it did with A's end unreported
    (FIX gives one report for a replace), or said without filled_quantity; B's end took
    the leaves its OPEN had stated as cut before A's fills."""
    engine = make_engine(equity=100_000)  # 30 % symbol limit = 300 units at 100
    _allowed(engine, order(290, client_order_id="A"))
    _allowed(engine, order(290, client_order_id="B", replaces="A"))
    if original_end is not None:
        engine.update_order(OrderUpdate(ACCOUNT, "A", OrderStatus.CANCELLED, None,
                                        original_end if original_end == 0.0 else None))
    engine.update_order(OrderUpdate(ACCOUNT, "B", OrderStatus.OPEN, 290.0, 0.0))
    engine.update_order(OrderUpdate(ACCOUNT, "B", OrderStatus.CANCELLED, None, 0.0))
    _allowed(engine, order(290, client_order_id="C"))
    assert report_fill(engine, fill(290, client_order_id="A")).unchecked


def test_an_end_saying_what_an_order_filled_is_journaled_and_bounds_a_snapshots_fills():
    """Review 41i: the drop copy's copy of A's cancel, with filled_quantity 0 after the
    executor's without, changed memory (the bound on A's fills) but answered "changed
    nothing", so it was not journaled and a restart let the fill pass; and a snapshot's
    included_fills naming A beyond that bound were booked unjudged."""
    engine = make_engine(equity=100_000)
    _allowed(engine, order(290, client_order_id="A"))
    _allowed(engine, order(290, client_order_id="B", replaces="A"))
    engine.update_order(OrderUpdate(ACCOUNT, "A", OrderStatus.CANCELLED))
    assert engine.update_order(OrderUpdate(ACCOUNT, "A", OrderStatus.CANCELLED, None, 0.0))
    engine.update_order(OrderUpdate(ACCOUNT, "B", OrderStatus.OPEN, 290.0, 0.0))
    engine.update_order(OrderUpdate(ACCOUNT, "B", OrderStatus.CANCELLED, None, 0.0))
    _allowed(engine, order(290, client_order_id="C"))
    engine.sync_positions(ACCOUNT, 100_000, [position(290)],
                          [OpenOrder("C", STRATEGY, SYMBOL, Side.BUY, 290, 100)], T0,
                          [IncludedFills("A", 290)])
    assert report_fill(engine, fill(290, client_order_id="A")).unchecked


@pytest.mark.parametrize("cleared_first", [False, True])
@pytest.mark.parametrize("filled_quantity", [None, 0.0])
def test_a_listing_of_the_original_after_the_venue_ended_its_replacement_revives_nothing(
        cleared_first, filled_quantity):
    """Review 41i: Z -> A (200) -> B (120), A's 100 crossing to B, B live with 20 then
    expired; C allowed into the room; a snapshot read before the replace listed A with
    100 left and revived it, and its fill of 100 passed: 400 against 300. B's end with
    filled_quantity was not taken as the venue's (done_since), nor was the venue's end
    after an operator had cleared B."""
    engine = make_engine(equity=100_000)
    for coid, quantity, before in (("Z", 10, ""), ("A", 200, "Z"), ("B", 120, "A")):
        _allowed(engine, order(quantity, client_order_id=coid, replaces=before))
    assert not report_fill(engine, fill(100, client_order_id="A")).unchecked
    engine.update_order(OrderUpdate(ACCOUNT, "B", OrderStatus.OPEN, 20.0, 0.0))
    if cleared_first:
        engine.clear_working_orders(ACCOUNT, ["B"])
    engine.update_order(OrderUpdate(ACCOUNT, "B", OrderStatus.EXPIRED, None,
                                    filled_quantity))
    _allowed(engine, order(200, client_order_id="C"))
    engine.sync_positions(ACCOUNT, 100_000, [position(100)],
                          [OpenOrder("A", STRATEGY, SYMBOL, Side.BUY, 100, 100),
                           OpenOrder("C", STRATEGY, SYMBOL, Side.BUY, 200, 100)], T0,
                          [IncludedFills("A", 100)])
    assert report_fill(engine, fill(100, client_order_id="A")).unchecked


def test_a_listing_of_an_order_whose_replacement_an_operator_cleared_revives_it():
    """Review 41g: an executor's echo confirmed B (replacing A), the venue rejected the
    replace unsaid, and an operator cleared B: the snapshot listing A live was taken as
    stale (the clear looked like the venue ending B), and C was allowed into A's room."""
    engine = make_engine(equity=100_000)
    _allowed(engine, order(290, client_order_id="A"))
    engine.update_order(OrderUpdate(ACCOUNT, "A", OrderStatus.OPEN, 290.0, 0.0))
    _allowed(engine, order(100, client_order_id="B", replaces="A"))
    engine.update_order(OrderUpdate(ACCOUNT, "B", OrderStatus.OPEN, 100.0, 0.0))
    engine.clear_working_orders(ACCOUNT, ["B"])
    engine.sync_positions(ACCOUNT, 100_000, [position(0)],
                          [OpenOrder("A", STRATEGY, SYMBOL, Side.BUY, 290, 100)], T0)
    assert _reserved(engine) == {"A": 290}
    assert engine.check(order(290), T0).reason is DecisionReason.SYMBOL_EXPOSURE


def test_an_open_without_filled_quantity_reviving_a_left_out_order_releases_nothing():
    """Review 41g: an OPEN with no filled_quantity says nothing of fills not reported yet;
    reviving an order a snapshot left out, it cut what the order may fill to its leaves,
    and the drop copy's honest fills tripped the account. Review 41i: and it reserved its
    leaves alone, so an order allowed beside those fills went past the limit."""
    engine = make_engine(equity=100_000)
    _allowed(engine, order(290, client_order_id="A"))
    engine.sync_positions(ACCOUNT, 100_000, [position(0)], [], T0)
    engine.update_order(OrderUpdate(ACCOUNT, "A", OrderStatus.OPEN, 90.0, None))
    assert _reserved(engine) == {"A": 290}
    assert engine.check(order(200), T0).reason is DecisionReason.SYMBOL_EXPOSURE
    assert not report_fill(engine, fill(200, client_order_id="A")).unchecked
    assert not report_fill(engine, fill(90, client_order_id="A")).unchecked


def test_an_echoed_open_of_a_replacement_keeps_room_for_the_fills_its_original_was_said_to_have():
    """Review 41k: A (1) -> B (15), the executor echoing B's request as an OPEN (leaves 15,
    no cut); the venue had filled A 0.75 before the replace, said by A's cancel; B's
    cancel kept the echo's cut of 0, and the drop copy's late fill of A tripped."""
    engine = make_engine(equity=100_000)
    _allowed(engine, order(1, client_order_id="A"))
    _allowed(engine, order(15, client_order_id="B", replaces="A"))
    engine.update_order(OrderUpdate(ACCOUNT, "B", OrderStatus.OPEN, 15.0, 0.0))
    assert not report_fill(engine, fill(0.25, client_order_id="A")).unchecked
    engine.update_order(OrderUpdate(ACCOUNT, "A", OrderStatus.CANCELLED, None, 0.75))
    engine.update_order(OrderUpdate(ACCOUNT, "B", OrderStatus.CANCELLED, None, 0.0))
    assert not report_fill(engine, fill(0.5, client_order_id="A")).unchecked
    assert report_fill(engine, fill(0.5, client_order_id="A")).unchecked  # past 0.75


def test_a_replacements_end_keeps_no_spare_cut_for_fills_an_earlier_cut_explains():
    """Review 41l: A -> B -> C, A said to have filled 50 (unreported), B's OPEN stating its
    real leaves (its cut explains A's 50), C echoed and cancelled: C's end also kept A's
    50 as its cut, so after D took the freed room and A's 50 came, a fill of 50 naming B
    passed in B's own room: 350 against the 300 limit, untripped."""
    engine = make_engine(equity=100_000)
    _allowed(engine, order(100, client_order_id="A"))
    _allowed(engine, order(100, client_order_id="B", replaces="A"))
    engine.update_order(OrderUpdate(ACCOUNT, "A", OrderStatus.CANCELLED, None, 50.0))
    engine.update_order(OrderUpdate(ACCOUNT, "B", OrderStatus.OPEN, 50.0, 0.0))
    _allowed(engine, order(100, client_order_id="C", replaces="B"))
    engine.update_order(OrderUpdate(ACCOUNT, "C", OrderStatus.OPEN, 100.0, 0.0))
    engine.update_order(OrderUpdate(ACCOUNT, "C", OrderStatus.CANCELLED, None, 0.0))
    _allowed(engine, order(250, client_order_id="D"))
    assert not report_fill(engine, fill(250, client_order_id="D")).unchecked
    assert not report_fill(engine, fill(50, client_order_id="A")).unchecked
    assert report_fill(engine, fill(50, client_order_id="B")).unchecked


def test_an_open_of_a_replacement_says_the_replace_is_done_and_the_original_may_not_fill_past_it():
    """The contract of ORDER_STATUS_OPEN for a replacement (stop 42): it is the venue's word
    that the replace is done, so the original's leaves beyond the replacement's are free for
    other orders. An executor that echoes its replace request as OPEN before the venue took
    it frees room the original may still fill: the original's fill beyond the replacement's
    room then trips the account, never passes."""
    engine = make_engine(equity=100_000)
    _allowed(engine, order(290, client_order_id="A"))
    _allowed(engine, order(100, client_order_id="B", replaces="A"))
    assert _reserved(engine) == {"B": 290}
    engine.update_order(OrderUpdate(ACCOUNT, "B", OrderStatus.OPEN, 100.0, 0.0))
    assert _reserved(engine) == {"B": 100}
    _allowed(engine, order(190, client_order_id="C"))
    assert report_fill(engine, fill(290, client_order_id="A")).unchecked


def test_a_rejection_after_an_echoed_open_gives_the_original_its_leaves_reserved_not_filled():
    """Review 42d: B replacing A was echoed OPEN (the replace's room let C in), then the
    venue rejected B; A came back with its 290 leaves beside C's 190, and both filled,
    untripped, past the 30 % limit. The leaves beyond the room B held come back reserved,
    and a fill of A into them trips, as a fill of A would have before the rejection."""
    engine = make_engine(equity=100_000)
    _allowed(engine, order(290, client_order_id="A"))
    _allowed(engine, order(100, client_order_id="B", replaces="A"))
    engine.update_order(OrderUpdate(ACCOUNT, "B", OrderStatus.OPEN, 100.0, 0.0))
    _allowed(engine, order(190, client_order_id="C"))
    engine.update_order(OrderUpdate(ACCOUNT, "B", OrderStatus.REJECTED))
    assert _reserved(engine) == {"A": 290, "C": 190}
    assert not report_fill(engine, fill(100, client_order_id="A")).unchecked
    assert report_fill(engine, fill(1, client_order_id="A")).unchecked


def test_a_rejection_of_an_unconfirmed_replacement_lets_the_original_fill_its_leaves():
    """The same without the OPEN: the room B held covered A's leaves (its crossing), so A,
    working again, may fill them all."""
    engine = make_engine(equity=100_000)
    _allowed(engine, order(290, client_order_id="A"))
    _allowed(engine, order(100, client_order_id="B", replaces="A"))
    engine.update_order(OrderUpdate(ACCOUNT, "B", OrderStatus.REJECTED))
    assert _reserved(engine) == {"A": 290}
    assert not report_fill(engine, fill(290, client_order_id="A")).unchecked


@pytest.mark.parametrize("rejected", ["BC", "CB"])
def test_a_rejection_after_an_echo_one_replace_further_down_keeps_the_cap(rejected: str):
    """Review 42h: A -> B -> C, C echoed OPEN, D allowed into the room that freed, then
    the venue rejected B and C: C's rejection capped B, and B's gave A all its leaves
    back, uncapped; D and A filled past the limit, untripped."""
    engine = make_engine(equity=100_000)
    _allowed(engine, order(200, client_order_id="A"))
    engine.update_order(OrderUpdate(ACCOUNT, "A", OrderStatus.OPEN, 200.0, 0.0))
    _allowed(engine, order(100, client_order_id="B", replaces="A"))
    _allowed(engine, order(100, client_order_id="C", replaces="B"))
    engine.update_order(OrderUpdate(ACCOUNT, "C", OrderStatus.OPEN, 100.0, 0.0))
    _allowed(engine, order(200, client_order_id="D"))
    for coid in rejected:
        engine.update_order(OrderUpdate(ACCOUNT, coid, OrderStatus.REJECTED, None, 0.0))
    assert not report_fill(engine, fill(200, client_order_id="D")).unchecked
    assert report_fill(engine, fill(200, client_order_id="A")).unchecked


def test_a_rejection_after_a_snapshot_left_the_replace_out_lets_the_original_fill():
    """Review 42h: honest, no echo: a snapshot read before A was live left A and B out
    (B, replacing A, confirmed by being left out), then the venue rejected B; A, live with
    its 10, filled them and tripped the account. A snapshot that ends an order frees its
    room itself (known gap 13): no cap from it."""
    engine = make_engine(equity=100_000)
    _allowed(engine, order(10, client_order_id="A"))
    engine.update_order(OrderUpdate(ACCOUNT, "A", OrderStatus.OPEN, 10.0, 0.0))
    _allowed(engine, order(4, client_order_id="B", replaces="A"))
    engine.sync_positions(ACCOUNT, 100_000, [position(0)], [], T0,
                          [IncludedFills("A", 0), IncludedFills("B", 0)])
    engine.update_order(OrderUpdate(ACCOUNT, "B", OrderStatus.REJECTED, None, 0.0))
    assert not report_fill(engine, fill(10, client_order_id="A")).unchecked


@pytest.mark.parametrize("filled_quantity", [0.0, None])
def test_a_rejection_capping_nothing_the_venue_said_lets_the_original_fill(filled_quantity):
    """Review 42i: honest, no echo: A -> B -> C, C never sent (told no), a snapshot read
    before A was live left them all out, C reported CANCELLED; the venue took A and
    rejected B, and A's fill of its own 10 tripped: C's cancel had capped it, and that cap
    went up the chain. Only a replacement a word of the venue said lived (or one capped
    so) caps the order it replaced."""
    engine = make_engine(equity=100_000)
    _allowed(engine, order(10, client_order_id="A"))
    _allowed(engine, order(15, client_order_id="B", replaces="A"))
    _allowed(engine, order(1, client_order_id="C", replaces="B"))
    engine.sync_positions(ACCOUNT, 100_000, [position(0)], [], T0, [])
    engine.update_order(OrderUpdate(ACCOUNT, "C", OrderStatus.CANCELLED, None, filled_quantity))
    engine.update_order(OrderUpdate(ACCOUNT, "A", OrderStatus.OPEN, 10.0, 0.0))
    engine.update_order(OrderUpdate(ACCOUNT, "B", OrderStatus.REJECTED, None, 0.0))
    assert not report_fill(engine, fill(10, client_order_id="A")).unchecked


def test_a_rejection_after_an_echo_and_a_stale_snapshot_keeps_the_cap():
    """Review 42k: B replacing A echoed OPEN, D allowed into the room that freed, then a
    venue snapshot read before B reached it listed A (the replace in flight again: B covered
    A's leaves once more), then the venue rejected B: A came back uncapped beside D, and
    both filled past the 30 % limit, untripped. The room B held between the echo and the
    snapshot caps A still."""
    engine = make_engine(equity=100_000)
    _allowed(engine, order(200, client_order_id="A"))
    engine.update_order(OrderUpdate(ACCOUNT, "A", OrderStatus.OPEN, 200.0, 0.0))
    _allowed(engine, order(100, client_order_id="B", replaces="A"))
    engine.update_order(OrderUpdate(ACCOUNT, "B", OrderStatus.OPEN, 100.0, 0.0))
    _allowed(engine, order(200, client_order_id="D"))
    engine.sync_positions(ACCOUNT, 100_000, [position(0)], [
        OpenOrder("A", STRATEGY, SYMBOL, Side.BUY, 200, 100),
        OpenOrder("D", STRATEGY, SYMBOL, Side.BUY, 200, 100)], T0,
        [IncludedFills("A", 0), IncludedFills("D", 0)])
    assert _reserved(engine) == {"B": 200, "D": 200}
    engine.update_order(OrderUpdate(ACCOUNT, "B", OrderStatus.REJECTED, None, 0.0))
    assert not report_fill(engine, fill(200, client_order_id="D")).unchecked
    assert not report_fill(engine, fill(100, client_order_id="A")).unchecked
    assert report_fill(engine, fill(1, client_order_id="A")).unchecked


def test_a_rejection_after_a_snapshot_listing_the_replace_as_sent_lets_the_original_fill():
    """The same snapshot's listing of B is no word on what the chain held before it (an
    executor lists what it sent): B listed beside A, then rejected, leaves A all its
    leaves."""
    engine = make_engine(equity=100_000)
    _allowed(engine, order(200, client_order_id="A"))
    engine.update_order(OrderUpdate(ACCOUNT, "A", OrderStatus.OPEN, 200.0, 0.0))
    _allowed(engine, order(100, client_order_id="B", replaces="A"))
    engine.sync_positions(ACCOUNT, 100_000, [position(0)], [
        OpenOrder("A", STRATEGY, SYMBOL, Side.BUY, 200, 100),
        OpenOrder("B", STRATEGY, SYMBOL, Side.BUY, 100, 100)], T0,
        [IncludedFills("A", 0), IncludedFills("B", 0)])
    engine.update_order(OrderUpdate(ACCOUNT, "B", OrderStatus.REJECTED, None, 0.0))
    assert not report_fill(engine, fill(200, client_order_id="A")).unchecked
