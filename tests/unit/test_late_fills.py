"""A fill of an order a snapshot ended (docs/design.md, known gap 13): its room was free
for the orders allowed after the snapshot, so a fill of it that takes the account past a
limit with them trips the account (unchecked_order); one that does not, or that came with
no order allowed since, is booked as before."""

from __future__ import annotations

import pytest

from ess_sidecar.domain.breakers import Breaker
from ess_sidecar.domain.decisions import DecisionReason
from ess_sidecar.domain.engine import GuardEngine
from ess_sidecar.domain.limits import LimitSettings
from ess_sidecar.domain.orders import IncludedFills, OrderStatus, OrderUpdate, Side
from ess_sidecar.domain.states import State, TriggerMode

from .conftest import ACCOUNT, T0, account, fill, make_engine, order, position, \
    report_fill, trip

R = DecisionReason


def _allowed(engine: GuardEngine, candidate) -> str:  # noqa: ANN001
    decision = engine.check(candidate, T0)
    assert decision.allowed, decision
    return candidate.client_order_id


def _left_out(engine: GuardEngine, quantity: float = 0.0, **included: float) -> None:
    """A snapshot listing no open order: every working order ends, unlisted."""
    engine.sync_positions(ACCOUNT, engine.book.equity(ACCOUNT) or 0.0, [position(quantity)],
                          [], T0, [IncludedFills(coid, q) for coid, q in included.items()])


def _tripped(engine: GuardEngine) -> bool:
    return engine.state_of(account()) is State.TRIPPED


def test_a_late_fill_past_the_limit_with_an_order_allowed_into_its_room_trips():
    """Review 58b: equity 100,000 at a mark of 100, 30 %: 300 units. A (290) was allowed,
    a snapshot read before A reached the venue left it out, B (290) was allowed into the
    room that freed, and A filled: 580 worst case, untripped, each fill within its own
    check. Now A's fill trips the account, and is booked (it happened)."""
    engine = make_engine(equity=100_000)
    a = _allowed(engine, order(290, client_order_id="A"))
    _left_out(engine)
    b = _allowed(engine, order(290, client_order_id="B"))
    outcome = report_fill(engine, fill(290, client_order_id=a))
    assert "which a snapshot left out" in outcome.unchecked
    assert "symbol BTC-USD exposure would be 58% of equity (limit 30%)" in outcome.unchecked
    assert outcome.position == 290
    assert _tripped(engine)
    assert engine.current(account()).breaker == Breaker.UNCHECKED_ORDER
    assert not report_fill(engine, fill(290, client_order_id=b)).unchecked  # B's own room


def test_the_late_fill_trips_when_the_later_order_filled_first():
    engine = make_engine(equity=100_000)
    a = _allowed(engine, order(290, client_order_id="A"))
    _left_out(engine)
    b = _allowed(engine, order(290, client_order_id="B"))
    assert not report_fill(engine, fill(290, client_order_id=b)).unchecked
    assert report_fill(engine, fill(290, client_order_id=a)).unchecked
    assert _tripped(engine)


def test_a_late_fill_with_no_order_allowed_since_is_booked_untripped():
    """Honest: the snapshot was read before A reached the venue, and nothing took its
    room. Even past the limit (the equity fell meanwhile) it is booked as before: only
    room given to a later order makes it a trip."""
    engine = make_engine(equity=100_000)
    a = _allowed(engine, order(290, client_order_id="A"))
    engine.sync_positions(ACCOUNT, 50_000, [position(0)], [], T0)  # 290 is now 58 %
    outcome = report_fill(engine, fill(290, client_order_id=a))
    assert not outcome.unchecked and outcome.position == 290
    assert not _tripped(engine)


def test_a_late_fill_within_the_limits_with_the_later_orders_is_booked_untripped():
    engine = make_engine(equity=100_000)
    a = _allowed(engine, order(100, client_order_id="A"))
    _left_out(engine)
    _allowed(engine, order(100, client_order_id="B"))
    assert not report_fill(engine, fill(100, client_order_id=a)).unchecked  # 200 of 300
    assert not _tripped(engine)


def test_fills_a_snapshot_held_or_that_were_owed_are_not_judged_again():
    """What the snapshot's positions hold (included_fills) moves nothing when it comes;
    fills the venue said the order was owed stayed reserved: neither took room from the
    orders allowed since. What is beyond them is judged."""
    engine = make_engine(equity=100_000)
    a = _allowed(engine, order(290, client_order_id="A"))
    _left_out(engine, 290, A=290)  # A filled, and the snapshot holds its fill
    _allowed(engine, order(10, client_order_id="B"))
    assert not report_fill(engine, fill(290, client_order_id=a)).unchecked
    engine = make_engine(equity=100_000)
    a = _allowed(engine, order(290, client_order_id="A"))
    engine.update_order(OrderUpdate(ACCOUNT, a, OrderStatus.OPEN, 190.0, 100.0))
    _left_out(engine)  # 100 owed stay reserved
    _allowed(engine, order(190, client_order_id="B"))  # 100 + 190 of 300
    assert not report_fill(engine, fill(100, client_order_id=a)).unchecked
    assert not _tripped(engine)
    outcome = report_fill(engine, fill(190, client_order_id=a))
    assert "exposure would be 48% of equity" in outcome.unchecked  # 100 + 190 + 190
    assert _tripped(engine)


@pytest.mark.parametrize("later, late, tripped", [(100, 100, True), (40, 60, False)])
def test_a_late_reducing_fill_that_crosses_zero_under_reduce_only_trips(
        later: float, late: float, tripped: bool):
    """REDUCE_ONLY on a long of 100: sell A (100) allowed, a snapshot left it out, sell B
    (100) allowed as reducing, and A filled: the account went short. A's fill trips; with
    an order allowed since that leaves room for it (B 40, A's 60), it does not."""
    engine = make_engine(equity=1_000_000)
    engine.sync_positions(ACCOUNT, 1_000_000, [position(100)])
    trip(engine, account(), mode=TriggerMode.REDUCE_ONLY)
    a = _allowed(engine, order(100, side=Side.SELL, client_order_id="A"))
    _left_out(engine, 100)
    _allowed(engine, order(later, side=Side.SELL, client_order_id="B"))
    outcome = report_fill(engine, fill(late, side=Side.SELL, client_order_id=a))
    assert outcome.position == 100 - late
    assert _tripped(engine) is tripped
    assert ("is REDUCE_ONLY, and it takes the account's or strat-1's position in BTC-USD"
            " across zero" in outcome.unchecked) is tripped


def test_a_late_fill_opening_a_symbol_past_max_positions_trips():
    engine = make_engine(equity=100_000, limits=LimitSettings(
        duplicate_identical_orders=0, max_open_positions=1))
    engine.sync_positions(ACCOUNT, 100_000, [position(0), position(0, symbol="ETH-USD")])
    a = _allowed(engine, order(1, client_order_id="A"))
    _left_out(engine)
    _allowed(engine, order(1, symbol="ETH-USD", client_order_id="B"))  # A's symbol is free
    outcome = report_fill(engine, fill(1, client_order_id=a))
    assert "would hold a position in 2 symbols (max 1)" in outcome.unchecked
    assert _tripped(engine)


def test_the_late_fill_repeated_is_a_duplicate_and_its_revival_ends_the_judging():
    engine = make_engine(equity=100_000)
    a = _allowed(engine, order(290, client_order_id="A"))
    _left_out(engine)
    _allowed(engine, order(290, client_order_id="B"))
    late = fill(290, client_order_id=a)
    assert report_fill(engine, late).unchecked
    assert report_fill(engine, late).duplicate
    engine = make_engine(equity=100_000)
    a = _allowed(engine, order(100, client_order_id="A"))
    _left_out(engine)
    engine.update_order(OrderUpdate(ACCOUNT, a, OrderStatus.OPEN, 100.0, 0.0))  # live: it
    assert engine.check(order(250), T0).reason is R.SYMBOL_EXPOSURE  # reserves again
    assert not report_fill(engine, fill(100, client_order_id=a)).unchecked
