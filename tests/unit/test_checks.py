"""CheckOrder in the domain: covering scopes, then the limits in order (docs/design.md)."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from ess_sidecar.domain.breakers import Metric
from ess_sidecar.domain.config import ResumePolicy
from ess_sidecar.domain import exposure
from ess_sidecar.domain.decisions import DecisionReason
from ess_sidecar.domain.errors import InvalidArgument
from ess_sidecar.domain.limits import LimitSettings, SymbolLimits
from ess_sidecar.domain.orders import IncludedFills, OpenOrder, OrderStatus, OrderUpdate, Side
from ess_sidecar.domain.scopes import GLOBAL, ScopeKind
from ess_sidecar.domain.states import State, TriggerMode

from .conftest import ACCOUNT, STRATEGY, SYMBOL, T0, account, fill, fill_order, make_engine, \
    order, position, report, report_fill, reset, strategy, symbol, trip

R = DecisionReason


def test_armed_engine_allows_an_ordinary_order(engine):
    decision = engine.check(order(), T0)
    assert decision.allowed and decision.reason is R.ALLOWED
    assert decision.blocking_scope is None and decision.message == ""


def test_decisions_carry_the_state_version_and_a_unique_id(engine):
    first = engine.check(order(), T0)
    trip(engine, symbol("ETH-USD"))
    second = engine.check(order(), T0)
    assert (first.state_version, second.state_version) == (0, 1)
    assert first.decision_id != second.decision_id


@pytest.mark.parametrize("scope", [GLOBAL, account(), strategy(), symbol()], ids=str)
def test_tripped_scope_denies_everything_it_covers(engine, scope):
    fill_order(engine, 5)
    trip(engine, scope)
    for candidate in (order(1, side=Side.BUY), order(1, side=Side.SELL)):
        decision = engine.check(candidate, T0)
        assert not decision.allowed
        assert decision.reason is R.SCOPE_TRIPPED and decision.blocking_scope == scope


@pytest.mark.parametrize("scope", [account("other"), strategy("other"), symbol("ETH-USD")],
                         ids=str)
def test_scopes_that_do_not_cover_the_order_do_not_block_it(engine, scope):
    trip(engine, scope)
    assert engine.check(order(), T0).allowed


def test_cooling_down_scope_denies_even_a_reducing_order():
    engine = make_engine(policy={ScopeKind.STRATEGY: ResumePolicy(0, rearm_delay_s=60)})
    fill_order(engine, 5)
    trip(engine, strategy())
    reset(engine, strategy(), T0 + 1)
    assert engine.state_of(strategy()) is State.COOLING_DOWN
    decision = engine.check(order(1, side=Side.SELL), T0 + 2)
    assert decision.reason is R.COOLING_DOWN and decision.blocking_scope == strategy()


def test_reduce_only_scope_denies_growing_order(engine):
    fill_order(engine, 5)
    trip(engine, symbol(), mode=TriggerMode.REDUCE_ONLY)
    decision = engine.check(order(1, side=Side.BUY), T0)
    assert decision.reason is R.REDUCE_ONLY and decision.blocking_scope == symbol()


def test_reduce_only_scope_denies_opening_a_position(engine):
    trip(engine, symbol(), mode=TriggerMode.REDUCE_ONLY)
    assert engine.check(order(1, side=Side.SELL), T0).reason is R.REDUCE_ONLY


@pytest.mark.parametrize("held, side, quantity, allowed", [
    (5, Side.SELL, 1, True), (5, Side.SELL, 5, True), (5, Side.SELL, 6, False),
    (-5, Side.BUY, 2, True), (-5, Side.SELL, 1, False),
])
def test_reduce_only_scope_allows_only_orders_toward_flat(engine, held, side, quantity,
                                                          allowed):
    fill_order(engine, abs(held), side=Side.BUY if held > 0 else Side.SELL)
    trip(engine, GLOBAL, mode=TriggerMode.REDUCE_ONLY)
    assert engine.check(order(quantity, side=side), T0).allowed is allowed


def test_order_is_judged_by_most_restrictive_covering_scope(engine):
    fill_order(engine, 5)
    trip(engine, GLOBAL, mode=TriggerMode.REDUCE_ONLY)
    trip(engine, strategy())
    reducing = order(1, side=Side.SELL)
    decision = engine.check(reducing, T0)
    assert decision.reason is R.SCOPE_TRIPPED and decision.blocking_scope == strategy()
    assert engine.check(reducing._replace(strategy="other"), T0).reason is R.REDUCE_ONLY


def test_limits_are_checked_in_design_order_first_failure_wins():
    limits = LimitSettings(default=SymbolLimits(max_order_quantity=10, max_order_notional=5000,
                                                price_band_pct=10),
                           max_orders_per_second=1)
    engine = make_engine(limits=limits, equity=3000)
    engine.sync_positions(ACCOUNT, 3000, [position(0, mark=100)])
    assert engine.check(order(1, 100), T0).allowed  # uses up this second's order rate
    # each order below fails its own step and every later one; the earliest step answers
    trip(engine, strategy(), T0 + 0.1)
    assert engine.check(order(60, 200), T0 + 0.1).reason is R.SCOPE_TRIPPED
    reset(engine, strategy(), T0 + 0.2, force=True)
    steps = [(order(60, 200), R.MAX_ORDER_QUANTITY), (order(10, 600), R.MAX_ORDER_NOTIONAL),
             (order(10, 120), R.PRICE_BAND), (order(10, 105), R.ORDER_RATE)]
    for candidate, reason in steps:
        assert engine.check(candidate, T0 + 0.3).reason is reason
    assert engine.check(order(10, 105), T0 + 1.5).reason is R.SYMBOL_EXPOSURE
    assert engine.check(order(5, 105), T0 + 1.5).allowed


def test_max_order_quantity_and_notional_per_symbol_or_default():
    limits = LimitSettings(default=SymbolLimits(max_order_quantity=10),
                           symbols={"ETH-USD": SymbolLimits(max_order_notional=1000)})
    engine = make_engine(limits=limits)
    assert engine.check(order(10), T0).allowed
    assert engine.check(order(11), T0).reason is R.MAX_ORDER_QUANTITY
    eth = order(11, 90, symbol="ETH-USD")  # the symbol's own limits replace the default
    engine.sync_positions(ACCOUNT, 1e6, [position(0, 90, symbol="ETH-USD")])
    assert engine.check(eth, T0).allowed
    assert engine.check(order(11, 91, symbol="ETH-USD"), T0).reason is R.MAX_ORDER_NOTIONAL


@pytest.mark.parametrize("known", ["mark", "reference price", "nothing"])
def test_a_sells_notional_is_valued_at_the_market_when_its_price_is_below(known):
    """Review 30: a SELL limit below the market executes at the market, yet its notional
    was its own price's: SELL 1000 @ 0.01 passed a cap of 10,000 with the market at 100.
    It is valued at the higher of its price and the market; unbounded with no market price
    known, it is MARK_UNKNOWN. A BUY's limit price bounds it."""
    reference = 100.0 if known == "reference price" else 0.0
    limits = LimitSettings(default=SymbolLimits(max_order_notional=10_000, price_band_pct=0,
                                                reference_price=reference),
                           exposure_enabled=False)
    engine = make_engine(limits=limits, equity=1e6 if known == "mark" else None)  # mark 100
    low = order(1000, 0.01, Side.SELL)
    if known == "nothing":
        assert engine.check(low, T0).reason is R.MARK_UNKNOWN
    else:
        denied = engine.check(low, T0)
        assert denied.reason is R.MAX_ORDER_NOTIONAL and "notional 100000" in denied.message
        assert engine.check(order(100, 0.01, Side.SELL), T0).allowed  # 10,000 at 100
    assert engine.check(order(1000, 0.01, Side.BUY), T0).allowed


def test_price_band_uses_last_mark(engine):
    engine.sync_positions(ACCOUNT, 1e6, [position(0, mark=100)])  # flat, but it carries a mark
    assert engine.check(order(1, 109), T0).allowed
    assert engine.check(order(1, 91), T0).allowed
    denied = engine.check(order(1, 111), T0)
    assert denied.reason is R.PRICE_BAND and "mark 100" in denied.message
    placed = order(1, 105)
    assert engine.check(placed, T0).allowed
    report_fill(engine, fill(1, price=95, client_order_id=placed.client_order_id))
    assert engine.book.mark(ACCOUNT, SYMBOL) == 95  # the account's last fill moves its mark
    assert engine.check(order(1, 105), T0).reason is R.PRICE_BAND
    assert engine.check(order(1, 86), T0).allowed


def test_a_price_band_denial_names_the_price_and_mark_as_sent():
    """Review 58c: :g said "price 200000 is 62% from mark 123457" of 200000.5 and 123456.7."""
    engine = make_engine()
    engine.sync_positions(ACCOUNT, 1e6, [position(0, mark=123456.7)])
    denied = engine.check(order(1, 200000.5), T0)
    assert "price 200000.5 is 62" in denied.message and "from mark 123456.7" in denied.message


def test_price_band_is_skipped_while_no_mark_is_known():
    engine = make_engine(limits=LimitSettings(exposure_enabled=False,
                                              duplicate_identical_orders=0))
    assert engine.check(order(1, 12345, symbol="NEW"), T0).allowed


def test_marks_are_kept_per_account_never_taken_from_another():
    engine = make_engine()
    engine.sync_positions("acc-2", 1e6, [position(0, mark=0.0001)])
    assert engine.book.mark(ACCOUNT, SYMBOL) == 100
    assert engine.check(order(1, 0.0001, account="acc-2"), T0).allowed
    assert engine.check(order(1, 0.0001), T0).reason is R.PRICE_BAND


def test_a_growing_order_with_no_mark_is_denied_mark_unknown():
    engine = make_engine()
    denied = engine.check(order(1_000_000, 0.01, symbol="PENNY"), T0)
    assert denied.reason is R.MARK_UNKNOWN and "PENNY" in denied.message


def test_an_order_that_may_raise_a_worth_with_no_mark_is_denied_mark_unknown():
    """Review 35: with no mark for W, a snapshot's adopted sell of 290 at 100 made a buy of
    290 at 1,000 grow no worst case (290 either way), and it was allowed: 290 % of equity
    if it fills. Its own price raises the worth; with no mark it is MARK_UNKNOWN."""
    engine = make_engine(equity=100_000, limits=UNIQUE)
    engine.sync_positions(ACCOUNT, 100_000, [], [OpenOrder("adopted", STRATEGY, "W", Side.SELL,
                                                           290, 100)], T0)
    denied = engine.check(order(290, 1000, symbol="W"), T0)
    assert denied.reason is R.MARK_UNKNOWN and "W" in denied.message
    assert engine.check(order(290, 100, Side.SELL, symbol="W", strategy="s-2"), T0).reason \
        is R.MARK_UNKNOWN  # the net's sells grow (580)


@pytest.mark.parametrize("restricted", [False, True], ids=["armed", "reduce-only"])
def test_with_equity_reported_zero_an_order_that_only_reduces_is_allowed(restricted):
    """Review 35, of the first version of the rule above: with equity reported 0, a sell
    of half a long at 99 was denied EQUITY_UNKNOWN (the formula values the long left at
    the sell's price), in REDUCE_ONLY too: de-risking was held up when it matters most."""
    engine = marked(held=100)
    report(engine, account(), Metric.EQUITY, 0.0, T0)
    if restricted:
        trip(engine, symbol(), T0, TriggerMode.REDUCE_ONLY)
    allow(engine, order(50, 99, Side.SELL))
    assert engine.check(order(10, 99), T0).reason in (R.EQUITY_UNKNOWN, R.REDUCE_ONLY)


@pytest.mark.parametrize("held, side", [(100, Side.SELL), (-100, Side.BUY)], ids=["long", "short"])
@pytest.mark.parametrize("restricted", [False, True], ids=["armed", "reduce-only"])
def test_an_order_that_only_reduces_is_never_denied_for_its_price(held, side, restricted):
    """Review 35: with 29 % of equity held, a sell of 5 of a long of 100 at 110 (the
    formula values the 95 left at 110: 30.3 %) was denied SYMBOL_EXPOSURE, in REDUCE_ONLY
    too, and a buy to cover a short the same; with equity reported 0 it was allowed."""
    engine = make_engine(equity=34_483, limits=UNIQUE)
    engine.sync_positions(ACCOUNT, 34_483, [position(held, 100)])
    if restricted:
        trip(engine, symbol(), T0, TriggerMode.REDUCE_ONLY)
    allow(engine, order(5, 110, side))
    grows = Side.BUY if side is Side.SELL else Side.SELL  # the other way is judged
    assert not engine.check(order(5, 110, grows), T0).allowed


def test_a_sell_of_exactly_what_is_left_reduces_whatever_the_sums_round_to():
    """Review 35k: a long of 14.30146 (as a float, 14.301459999999999) with sells of
    1.322 and 9.501 working: a sell of the 3.47846 left summed past the position in
    floating point, was not reducing, and REDUCE_ONLY denied closing the position."""
    engine = make_engine(equity=1_000_000, limits=UNIQUE)
    engine.sync_positions(ACCOUNT, 1_000_000, [position(14.301459999999999, 100)])
    allow(engine, order(1.322, 100, Side.SELL), order(9.501, 100, Side.SELL))
    trip(engine, symbol(), T0, TriggerMode.REDUCE_ONLY)
    allow(engine, order(3.47846, 100, Side.SELL))
    assert engine.check(order(0.001, 100, Side.SELL), T0).reason is R.REDUCE_ONLY


def test_an_unpriced_leg_elsewhere_leaves_a_worth_judged_on_what_is_known():
    """Review 35: a leg of another strategy in a symbol with no price turned off the
    strategy and portfolio limits for an order that grows a worth and no worst case. The
    unpriced leg counts 0, so the known sums are what the account holds at least. Here a
    buy of 5 at 109.9 leaves the strategy's short of 100 at 95, worth more at the buy's
    price: 60.44 % of equity against 60 (stop 47: review 35's own case, a buy against
    the strategy's working sell, now grows its side and is MARK_UNKNOWN; so does a buy
    that takes the short across zero)."""
    engine = make_engine(equity=100_000, limits=UNIQUE)  # strategy limit 60 %
    held = [position(500, 100, symbol="Y"), position(-100, 100, symbol="X"),
            position(100, 100, strategy="s-2", symbol="X")]
    engine.sync_positions(ACCOUNT, 100_000, held, [
        OpenOrder("adopted", "s-3", "W", Side.BUY, 1, 5)], T0)  # no mark for W
    assert engine.book.peek(ACCOUNT).unpriced
    denied = engine.check(order(5, 109.9, symbol="X"), T0)
    assert denied.reason is R.STRATEGY_EXPOSURE and "60.44%" in denied.message, denied
    grows = engine.check(order(195, 100, symbol="X"), T0)  # a long of 95: grows
    assert grows.reason is R.MARK_UNKNOWN, grows


def test_a_reference_price_values_a_symbol_with_no_mark():
    limits = LimitSettings(symbols={"PENNY": SymbolLimits(reference_price=2.0)},
                           duplicate_identical_orders=0)
    engine = make_engine(limits=limits)
    assert engine.check(order(100_000, 1.9, symbol="PENNY"), T0).allowed  # 20 % at 2.0
    assert engine.check(order(100_000, 1.9, symbol="PENNY"), T0).reason is \
        R.SYMBOL_EXPOSURE  # 40 %: the working order counts


def test_a_reference_price_bands_prices_and_the_marks_fills_set():
    """Review 37e: with a reference price and no mark, an order at a hundredth of it was
    not banded (no mark), and its fill at that price became the mark: a SELL of 3,000 %
    of equity at that price was then valued at 30 %. The reference bands the order, and a
    fill beyond its band (a BUY at 50 reported filled at 0.5: better than its limit, so
    no trip) moves no mark."""
    limits = LimitSettings(symbols={"Z": SymbolLimits(reference_price=50.0)},
                           duplicate_identical_orders=0)
    engine = make_engine(limits=limits)
    assert engine.check(order(1, 0.5, symbol="Z"), T0).reason is R.PRICE_BAND
    for price, mark in ((0.5, None), (51.0, 51.0)):
        allowed = order(1, 50.0, symbol="Z")
        assert engine.check(allowed, T0).allowed
        report_fill(engine, fill(1, price, symbol="Z", client_order_id=allowed.client_order_id))
        assert engine.book.mark(ACCOUNT, "Z") == mark


def test_a_fill_of_an_order_never_allowed_sets_no_mark_nothing_bands():
    """Review 37e: a drop copy's fill of a desk trade at 0.02, in a symbol the account had
    no mark for, became the mark (nothing banded it); once the account's unchecked_order
    trip was reset, a SELL of 2,000 % of equity at that price passed as 2 %."""
    engine = make_engine()
    outcome = report_fill(engine, fill(1, 0.02, symbol="Y", client_order_id="desk-1"))
    assert outcome.unchecked and engine.book.mark(ACCOUNT, "Y") is None
    assert engine.check(order(100_000, 0.021, side=Side.SELL, symbol="Y"), T0 + 1).reason \
        in (R.SCOPE_TRIPPED, R.MARK_UNKNOWN)


def test_order_rate_per_strategy(engine):
    for i in range(100):
        assert engine.check(order(), T0 + i * 0.001).allowed
    assert engine.check(order(), T0 + 0.5).reason is R.ORDER_RATE
    assert engine.check(order(strategy="strat-2"), T0 + 0.5).allowed
    assert engine.check(order(), T0 + 1.0005).allowed  # the first order left the window
    assert engine.check(order(), T0 + 1.0006).reason is R.ORDER_RATE


def test_denied_orders_do_not_count_toward_the_order_rate():
    engine = make_engine(limits=LimitSettings(default=SymbolLimits(max_order_quantity=5),
                                              max_orders_per_second=2))
    for _ in range(5):
        assert engine.check(order(6), T0).reason is R.MAX_ORDER_QUANTITY
    assert engine.check(order(), T0).allowed
    assert engine.check(order(), T0).allowed
    assert engine.check(order(), T0).reason is R.ORDER_RATE


def test_exposure_denied_when_equity_unknown():
    engine = make_engine(equity=None)
    denied = engine.check(order(), T0)
    assert denied.reason is R.EQUITY_UNKNOWN and ACCOUNT in denied.message


def test_equity_reported_as_a_metric_makes_exposure_checkable():
    limits = LimitSettings(symbols={SYMBOL: SymbolLimits(reference_price=100)})
    engine = make_engine(equity=None, limits=limits)
    report(engine, account(), Metric.EQUITY, 1e6)
    assert engine.check(order(), T0).allowed


def test_an_equity_so_small_that_exposure_cannot_be_computed_denies():
    """Review 20: with a subnormal equity, 100 / equity is inf, and an order valued at 0
    (its quantity times its price underflows) gave 0 x inf = NaN, which passed every
    limit: ten symbols allowed at 40 % of equity each."""
    engine = make_engine(equity=None)
    engine.sync_positions(ACCOUNT, 5e-324, [position(0.0, mark=2e-162)], None, T0)
    denied = engine.check(order(1e-162, 2e-162), T0)
    assert not denied.allowed and denied.reason is R.SYMBOL_EXPOSURE


def test_exposure_limits_off_allow_orders_without_equity():
    engine = make_engine(limits=LimitSettings(exposure_enabled=False), equity=None)
    assert engine.check(order(1e6, 100), T0).allowed


@pytest.mark.parametrize("held, allowed, denied, reason", [
    ([], 29, 31, R.SYMBOL_EXPOSURE),
    ([position(20, 1000, strategy="s-a")], 9, 11, R.SYMBOL_EXPOSURE),  # summed over strategies
    ([position(250, 100, symbol="ETH"), position(250, 100, symbol="SOL")], 9, 11,
     R.STRATEGY_EXPOSURE),
    ([position(250, 100, strategy="s-a", symbol="ETH"),
      position(250, 100, strategy="s-b", symbol="SOL"),
      position(250, 100, strategy="s-c", symbol="XRP")], 14, 16, R.PORTFOLIO_EXPOSURE),
], ids=["symbol", "symbol-across-strategies", "strategy", "portfolio"])
def test_symbol_strategy_portfolio_exposure_limits(held, allowed, denied, reason):
    engine = make_engine(equity=100_000)  # limits: symbol 30 %, strategy 60 %, portfolio 90 %
    engine.sync_positions(ACCOUNT, 100_000, held + [position(0, 1000)])  # 1000 a unit
    assert engine.check(order(allowed, 1000), T0).allowed
    assert engine.check(order(denied, 1000), T0).reason is reason


UNIQUE = LimitSettings(duplicate_identical_orders=0)  # the defaults: 30 / 60 / 90 %


def marked(held: float = 0.0):  # noqa: ANN201
    """An engine with equity 100,000, the mark 100 and the default limits (symbol 30 %)."""
    engine = make_engine(equity=100_000, limits=UNIQUE)
    engine.sync_positions(ACCOUNT, 100_000, [position(held, 100)])
    return engine


def allow(engine, *orders) -> None:  # noqa: ANN001
    for each in orders:
        assert engine.check(each, T0).allowed, each


@pytest.mark.parametrize("limits, held, quantity, reason", [
    (UNIQUE, [], 100, R.SYMBOL_EXPOSURE),  # 32.85 %, and 30 % at 100 together
    # 10 % held elsewhere, then 29.57 % (27 % at 100 together): 39.57 % against 38
    (replace(UNIQUE, max_strategy_exposure_pct=38), [position(100, 100, symbol="ETH")], 90,
     R.STRATEGY_EXPOSURE),
    (replace(UNIQUE, max_strategy_exposure_pct=30, max_portfolio_exposure_pct=38),
     [position(100, 100, strategy="s-other", symbol="ETH")], 90, R.PORTFOLIO_EXPOSURE),
], ids=["symbol", "strategy", "portfolio"])
@pytest.mark.parametrize("prices", [(109, 109.5, 100), (100, 109, 109.5), (109.5, 100, 109)],
                         ids=str)
def test_working_orders_keep_their_own_price_whatever_order_they_came_in(
        prices, limits, held, quantity, reason):
    """Adversarial review, stop 33: a worst case was valued at the checked order's price,
    so a buy at the mark checked after buys at 109 and 109.5 valued all three at 100: 30 %
    of equity against a 30 % symbol limit, where at their own prices they are 31.85 %. A
    worst case is valued at the highest limit price among the orders it counts (or the
    mark): the third is denied whatever order they came in, and allowed once the dearest
    of the working two has ended."""
    engine = make_engine(equity=100_000, limits=limits)
    engine.sync_positions(ACCOUNT, 100_000, held + [position(0, 100)])  # the mark: 100
    first, second, third = (order(quantity, price) for price in prices)
    assert engine.check(first, T0).allowed and engine.check(second, T0).allowed
    assert engine.check(third, T0).reason is reason
    dearest = max(first, second, key=lambda working: working.price)
    engine.update_order(OrderUpdate(ACCOUNT, dearest.client_order_id, OrderStatus.CANCELLED))
    assert engine.check(third, T0).allowed  # two working, at 109.5 at most


def test_a_replace_in_flight_keeps_the_originals_price_until_the_venue_confirms_it():
    """Review 33: a replace down to 100 of a buy at 109 took 109 out of the prices at
    once, though the original's leaves may fill at 109 until the venue takes the replace;
    an order then fitted under the limit that the leaves, filled, put over it."""
    engine, original = marked(), order(275, 109)  # 29.975 %
    replacement = order(1, 100, replaces=original.client_order_id)
    allow(engine, original, replacement)  # its room covers the 275 in flight
    denied = engine.check(order(25, 100), T0)  # 300 at 109, not at 100
    assert denied.reason is R.SYMBOL_EXPOSURE and "32.7%" in denied.message, denied.message
    engine.update_order(OrderUpdate(ACCOUNT, replacement.client_order_id, OrderStatus.OPEN, 1))
    assert engine.check(order(25, 100), T0).allowed  # the venue's word: 26 at 100


def test_a_snapshot_listing_the_original_of_a_replace_in_flight_at_a_higher_price_counts_it():
    """Review 33: the replace stands while a snapshot lists only its original, but the
    price the snapshot gave that original (whose leaves may fill at it) was dropped."""
    engine, original = marked(), order(280, 100, Side.SELL)
    allow(engine, original, order(280, 95, Side.SELL, replaces=original.client_order_id))
    listed = OpenOrder(original.client_order_id, STRATEGY, SYMBOL, Side.SELL, 280, 109)
    engine.sync_positions(ACCOUNT, 100_000, [position(0, 100)], [listed])
    denied = engine.check(order(5, 100, Side.SELL), T0)  # 285 at 109: 31.07 %
    assert denied.reason is R.SYMBOL_EXPOSURE and "31.07%" in denied.message, denied.message


def test_a_snapshot_listing_the_original_of_a_confirmed_replacement_puts_it_in_flight_again():
    """Review 33d: a snapshot that listed the original of a replacement the venue's word
    had confirmed (an OPEN: maybe an executor's echo) left the original's 270 leaves
    counted nowhere, and a buy of 180 was allowed to 49 % of equity. Taking the snapshot
    at its word instead (33e) let both orders fill in full untripped. The replace is in
    flight again: the replacement covers the leaves and holds their price."""
    engine, original = marked(), order(270, 109)
    replacement = order(10, 100, replaces=original.client_order_id)
    allow(engine, original, replacement)
    engine.update_order(OrderUpdate(ACCOUNT, replacement.client_order_id, OrderStatus.OPEN, 10))
    listed = OpenOrder(original.client_order_id, STRATEGY, SYMBOL, Side.BUY, 270, 109)
    engine.sync_positions(ACCOUNT, 100_000, [position(0, 100)], [listed])
    assert {r.client_order_id: r.remaining for r in engine.orders.working(ACCOUNT)} \
        == {replacement.client_order_id: 270}
    assert engine.check(order(180, 100), T0).reason is R.SYMBOL_EXPOSURE
    denied = engine.check(order(6, 100), T0)  # 276 at 109 (at 100: 27.6 %)
    assert denied.reason is R.SYMBOL_EXPOSURE and "30.08%" in denied.message, denied.message


@pytest.mark.parametrize("confirmed_by", ["open", "fill"])
def test_a_stale_snapshot_after_a_confirmed_replace_lets_no_more_fill_than_the_chain(
        confirmed_by):
    """Review 33e: with the snapshot taken at its word, the original (listed) and its
    confirmed replacement (unlisted, ended) both filled in full, untripped: 58 % of
    equity where the chain was allowed 29 %. The chain fills no more than it was allowed
    without a trip."""
    engine, original = marked(), order(290, 100)
    replacement = order(290, 100, replaces=original.client_order_id)
    allow(engine, original, replacement)
    if confirmed_by == "open":
        engine.update_order(OrderUpdate(ACCOUNT, replacement.client_order_id,
                                        OrderStatus.OPEN, 290))
    else:
        report_fill(engine, fill(10, 100, client_order_id=replacement.client_order_id))
    listed = OpenOrder(original.client_order_id, STRATEGY, SYMBOL, Side.BUY, 280, 100)
    engine.sync_positions(ACCOUNT, 100_000, [position(0, 100)], [listed])
    report_fill(engine, fill(280, 100, client_order_id=original.client_order_id))
    assert engine.state_of(account()) is State.ARMED  # the chain's own room
    assert engine.check(order(290, 100), T0).reason is R.SYMBOL_EXPOSURE  # 290 held
    report_fill(engine, fill(280, 100, client_order_id=replacement.client_order_id))
    assert engine.state_of(account()) is State.TRIPPED  # beyond what the chain allowed


def replaced_and_traded(own_fills: float):  # noqa: ANN201
    """A 290 replaced by B 290, which filled `own_fills` under its own id."""
    engine, original = marked(), order(290, 100)
    replacement = order(290, 100, replaces=original.client_order_id)
    allow(engine, original, replacement)
    report_fill(engine, fill(own_fills, 100, client_order_id=replacement.client_order_id))
    return engine, original, replacement


@pytest.mark.parametrize("own_fills", [145, 289, 290])
def test_a_stale_listing_of_an_original_whose_replacement_traded_gives_it_no_room(own_fills):
    """Review 33f: once B traded under its own id the replace is done; a snapshot still
    listing A (read before it) regrew B's room (B part filled) or revived A (B filled),
    and A then filled its 290 as well, untripped: up to 58 % of equity."""
    engine, original, replacement = replaced_and_traded(own_fills)
    listed = OpenOrder(original.client_order_id, STRATEGY, SYMBOL, Side.BUY, 290, 100)
    engine.sync_positions(ACCOUNT, 100_000, [position(own_fills, 100)], [listed], T0,
                          [IncludedFills(replacement.client_order_id, own_fills)])
    report_fill(engine, fill(290, 100, client_order_id=original.client_order_id))
    assert engine.state_of(account()) is State.TRIPPED


def test_clearing_a_replacement_that_traded_gives_its_original_nothing_back():
    """Review 33f: an operator's clear of a replacement the venue had not confirmed
    unreplaced it even though it had filled under its own id, and its original came back
    with all its leaves: 390 filled where the chain was allowed 290, untripped."""
    engine, original, replacement = replaced_and_traded(100)
    listed = OpenOrder(original.client_order_id, STRATEGY, SYMBOL, Side.BUY, 190, 100)
    engine.sync_positions(ACCOUNT, 100_000, [position(100, 100)], [listed])
    engine.clear_working_orders(ACCOUNT, [replacement.client_order_id])
    report_fill(engine, fill(290, 100, client_order_id=original.client_order_id))
    assert engine.state_of(account()) is State.TRIPPED


def chain_of_three():  # noqa: ANN201
    """A 290 replaced by B 290, replaced by C 290, both replaces in flight."""
    engine, a = marked(), order(290, 100)
    b = order(290, 100, replaces=a.client_order_id)
    c = order(290, 100, replaces=b.client_order_id)
    allow(engine, a, b, c)
    return engine, a, b, c


def test_a_rejection_in_the_middle_of_a_chain_rejects_the_orders_that_replaced_it():
    """Review 33f: B rejected gave A its leaves back while C, which replaced B (an order
    that never lived), kept its room: A and C both filled in full, untripped (58 %)."""
    engine, a, b, c = chain_of_three()
    engine.update_order(OrderUpdate(ACCOUNT, b.client_order_id, OrderStatus.REJECTED))
    assert {r.client_order_id: r.remaining for r in engine.orders.working(ACCOUNT)} \
        == {a.client_order_id: 290}
    report_fill(engine, fill(290, 100, client_order_id=c.client_order_id))
    assert engine.state_of(account()) is State.TRIPPED


def test_a_rejection_contradicted_by_a_later_replacements_fill_gives_nothing_back():
    """Review 33f: C traded under its own id, so the replaces were done; B's rejection
    must not give A its leaves back beside C's."""
    engine, a, b, c = chain_of_three()
    report_fill(engine, fill(100, 100, client_order_id=c.client_order_id))
    engine.update_order(OrderUpdate(ACCOUNT, b.client_order_id, OrderStatus.REJECTED))
    report_fill(engine, fill(290, 100, client_order_id=a.client_order_id))
    assert engine.state_of(account()) is State.TRIPPED  # 390 where the chain had 290


def test_stale_listings_of_an_original_cover_the_most_listed_in_any_order():
    """Review 33f: a first stale listing of A (10 left) put the replace back in flight
    without room, and a second (270 left) then grew nothing: a buy of 180 was allowed to
    46 %. The replacement covers the most any listing gave."""
    engine, original = marked(), order(270, 109)
    replacement = order(10, 100, replaces=original.client_order_id)
    allow(engine, original, replacement)
    engine.update_order(OrderUpdate(ACCOUNT, replacement.client_order_id, OrderStatus.OPEN, 10))
    for leaves in (10, 270):
        listed = OpenOrder(original.client_order_id, STRATEGY, SYMBOL, Side.BUY, leaves, 109)
        engine.sync_positions(ACCOUNT, 100_000, [position(0, 100)], [listed])
    assert engine.check(order(180, 100), T0).reason is R.SYMBOL_EXPOSURE


def test_an_original_listed_at_another_price_while_replaced_keeps_it_when_it_works_again():
    """Review 33e: a snapshot listed the original of a replace in flight at 109; the
    replacement held 109, but once the venue rejected the replace the original worked
    again valued at its checked 100."""
    engine, original = marked(), order(270, 100)
    replacement = order(10, 100, replaces=original.client_order_id)
    allow(engine, original, replacement)
    listed = OpenOrder(original.client_order_id, STRATEGY, SYMBOL, Side.BUY, 270, 109)
    engine.sync_positions(ACCOUNT, 100_000, [position(0, 100)], [listed])
    engine.update_order(OrderUpdate(ACCOUNT, replacement.client_order_id,
                                    OrderStatus.REJECTED))
    denied = engine.check(order(29, 100), T0)  # 299 at 109: 32.59 %
    assert denied.reason is R.SYMBOL_EXPOSURE and "32.59%" in denied.message, denied.message


def test_a_snapshots_price_values_an_order_but_widens_no_fill():
    """Review 33e: a snapshot listing a sell at 1 (checked at 100) made it the order's
    limit, and its fill at 1 (a units bug, or a lie) no longer tripped the account."""
    engine, working = marked(), order(100, 100, Side.SELL)
    allow(engine, working)
    listed = OpenOrder(working.client_order_id, STRATEGY, SYMBOL, Side.SELL, 100, 1)
    engine.sync_positions(ACCOUNT, 100_000, [position(0, 100)], [listed])
    report_fill(engine, fill(100, 1, Side.SELL, client_order_id=working.client_order_id))
    assert engine.state_of(account()) is State.TRIPPED


def test_a_rejected_replace_of_an_unconfirmed_replacement_keeps_the_price_it_held():
    """Review 33: z at 109 replaced by a at 100 (unconfirmed: a holds 109), a replaced by
    b, b rejected: a worked again at 100 alone, though z's leaves may still fill at 109."""
    engine, z = marked(), order(270, 109)
    a = order(10, 100, replaces=z.client_order_id)
    b = order(10, 100, replaces=a.client_order_id)
    allow(engine, z, a, b)
    engine.update_order(OrderUpdate(ACCOUNT, b.client_order_id, OrderStatus.REJECTED))
    denied = engine.check(order(30, 100), T0)  # 300 at 109: 32.7 %
    assert denied.reason is R.SYMBOL_EXPOSURE and "32.7%" in denied.message, denied.message


def test_each_side_is_valued_at_its_own_orders_prices():
    """Review 33: one highest price for both sides let a take-profit sell above the mark
    value the long it can only shrink: a buy within the limit was denied. A sell's
    price values the short side, a buy's the long."""
    # A take-profit sell (it reduces), then a buy to 290 at 100: 29 %.
    allow(marked(280), order(280, 109, Side.SELL), order(10, 100))
    engine = marked()
    allow(engine, order(250, 109, Side.SELL))  # short 27.25 %
    denied = engine.check(order(30, 100, Side.SELL), T0)  # 280 at 109
    assert denied.reason is R.SYMBOL_EXPOSURE and "30.52%" in denied.message, denied.message


def test_an_order_that_grows_no_quantity_is_judged_when_it_raises_the_worth():
    """Review 33: with a sell of 290 at 100 working, a buy of 290 grows neither side's
    quantity, so no limit judged it, though at 109.9 it takes the long side to 31.87 %
    of equity. An order dearer than its side is valued at is judged on the worth."""
    engine = marked()
    allow(engine, order(290, 100, Side.SELL))  # 29 %
    denied = engine.check(order(290, 109.9), T0)
    assert denied.reason is R.SYMBOL_EXPOSURE and "31.87%" in denied.message, denied.message
    allow(engine, order(290, 100), order(10, 100))  # at the mark no worth grows; then 30 %


def test_a_snapshot_gives_a_working_order_the_venues_price():
    """Review 33: a working order listed by a snapshot at another price (amended at the
    venue) kept the price it was checked at, and was valued under the price it may fill
    at."""
    engine, working = marked(), order(200, 100)
    allow(engine, working)
    listed = OpenOrder(working.client_order_id, STRATEGY, SYMBOL, Side.BUY, 200, 109)
    engine.sync_positions(ACCOUNT, 100_000, [position(0, 100)], [listed])
    denied = engine.check(order(80, 100), T0)  # 280 at 109: 30.52 %, at 100 it was 28 %
    assert denied.reason is R.SYMBOL_EXPOSURE and "30.52%" in denied.message, denied.message


def test_max_open_positions_counts_symbols_with_working_orders(engine):
    held = [position(1, 100, symbol=f"SYM-{i}") for i in range(8)]
    marks = [position(0, 100, symbol=f"NEW-{i}") for i in range(3)]
    engine.sync_positions(ACCOUNT, 1e6, held + marks)  # SYMBOL is flat
    assert engine.check(order(1, 100, symbol="NEW-1"), T0).allowed  # the ninth
    assert engine.check(order(1, 100, symbol="NEW-2"), T0).allowed  # the tenth, working
    denied = engine.check(order(1, 100, symbol="NEW-0"), T0)
    assert denied.reason is R.MAX_POSITIONS
    assert engine.check(order(1, 100, symbol="SYM-3"), T0).allowed  # adds to an open one
    assert engine.check(order(1, 100, symbol="NEW-1"), T0).allowed


def test_max_open_positions_holds_with_exposure_limits_off():
    engine = make_engine(limits=LimitSettings(exposure_enabled=False, max_open_positions=1,
                                              duplicate_identical_orders=0))
    assert engine.check(order(1, 100, symbol="A"), T0).allowed
    assert engine.check(order(1, 100, symbol="B"), T0).reason is R.MAX_POSITIONS


def test_order_that_does_not_grow_the_position_is_never_denied_by_exposure():
    engine = make_engine(equity=100_000)
    engine.sync_positions(ACCOUNT, 100_000, [position(500, 1000)])  # 500 % of equity
    assert engine.check(order(1, 1000), T0).reason is R.SYMBOL_EXPOSURE
    assert engine.check(order(100, 1000, Side.SELL), T0).allowed
    assert engine.check(order(400, 1000, Side.SELL), T0).allowed  # to flat, at worst
    # A flip to a short as large as the long grows its own side, the short: judged on
    # it (review 47b: the larger side's size was taken as room for the other), and the
    # long, which it leaves as it is, does not deny a short within the limit (47d)
    assert engine.check(order(500, 1000, Side.SELL), T0).reason is R.SYMBOL_EXPOSURE
    assert engine.check(order(1, 1000, Side.SELL), T0).allowed  # a short of 1: 1 %
    assert engine.check(order(1, 1000), T0).reason is R.SYMBOL_EXPOSURE  # the long grows


def test_a_close_of_what_is_left_does_not_cross_zero_by_its_rounding():
    """Review 47g: 0.7 - 0.4 left 0.29999999999999993, and a sell of 0.3 closing it
    "crossed zero" by 5.6e-17: judged on the strategy's sums (65 % against 60, its other
    symbol past the cap), where a close of 0.3 exactly was not. As REDUCE_ONLY allows
    (book.PAST_ZERO), that is no new position."""
    limits = LimitSettings(max_portfolio_exposure_pct=200.0, duplicate_identical_orders=0)
    engine = make_engine(equity=100_000, limits=limits)
    engine.sync_positions(ACCOUNT, 100_000, [
        position(0.7, 100), position(650, 100, symbol="ETH"),
        position(-1.0, 100, strategy="s-2")])  # the net is short: no REDUCE_ONLY exemption
    fill_order(engine, 0.4, 100, Side.SELL)
    assert engine.book.peek(ACCOUNT).legs[(STRATEGY, SYMBOL)].position == 0.29999999999999993
    assert engine.check(order(0.3, 100, Side.SELL), T0).allowed


def test_a_side_across_zero_is_found_by_its_sign_however_small():
    """Review 47i: start * end underflowed to -0.0 for sides of 1e-170, and a sell taking
    a long of 1e-170 to a short of 5e-171 grew nothing."""
    engine = make_engine(equity=100_000)
    engine.sync_positions(ACCOUNT, 100_000, [position(1e-170, 100)])
    leg = engine.book.peek(ACCOUNT).legs[(STRATEGY, SYMBOL)]
    assert exposure._grows(leg, False, 1.5e-170) is True
    assert exposure._grows(leg, False, 1e-170) is False  # to flat


def test_a_huge_other_side_does_not_round_the_sums_under_a_limit():
    """Review 47g: the order's leg counts its side in the sums in place of its larger one
    (`after - own`); with the other side 10**16 times equity, the difference rounded the
    other legs away and a sell taking the strategy to 75 % against 60 was allowed."""
    engine = make_engine(equity=1.0, limits=UNIQUE)
    engine.sync_positions(ACCOUNT, 1.0, [position(0.0055, 100, symbol="Y"),
                                         position(0.0, 1e6, symbol="X")],
                          [OpenOrder("big", STRATEGY, "X", Side.BUY, 1e10, 1e6)], T0)
    denied = engine.check(order(2e-7, 1e6, Side.SELL, symbol="X"), T0)
    assert denied.reason is R.STRATEGY_EXPOSURE and "75%" in denied.message, denied


def test_no_order_takes_a_side_across_zero_as_if_it_were_room():
    """Review 47d: a long of 400 past a 30 % limit (the mark rose) was a side of 400 a
    sell of 800 could take across zero unjudged, "growing" nothing: a short of 400, 40 %,
    where the same short sent as two orders was denied; a replace of the long's exit
    did the same. The part across zero is judged as a new position."""
    engine = make_engine(equity=100_000)
    engine.sync_positions(ACCOUNT, 100_000, [position(400, 100)])  # 40 %
    denied = engine.check(order(800, 100, Side.SELL), T0)
    assert denied.reason is R.SYMBOL_EXPOSURE and "40%" in denied.message, denied
    allow(engine, order(400, 100, Side.SELL, client_order_id="exit"))  # to flat
    denied = engine.check(order(800, 100, Side.SELL, replaces="exit"), T0)
    assert denied.reason is R.SYMBOL_EXPOSURE and "40%" in denied.message, denied
    assert engine.check(order(700, 100, Side.SELL, replaces="exit"), T0).allowed  # 30 %


def test_room_on_one_side_is_never_room_on_the_other():
    """Review 47b: an order was exempt when it grew its own side no further than the
    other side's worst case, so a reservation the venue no longer held (a check the
    executor gave up on) let a sell take the account to 60 % against a 30 % limit once
    equity halved; the same sell on a fresh account was denied. An order that grows its
    own side keeps that side within every limit, whatever the other side holds."""
    engine = make_engine(equity=100_000)
    engine.sync_positions(ACCOUNT, 100_000, [position(0, 100)])
    assert engine.check(order(300, 100), T0).allowed  # 30 %, then never sent
    engine.sync_positions(ACCOUNT, 50_000, [position(0, 100)])
    denied = engine.check(order(300, 100, Side.SELL), T0)
    assert denied.reason is R.SYMBOL_EXPOSURE and "60%" in denied.message, denied.message
    # The strategy's limit too: another strategy's long makes the sell reduce the net
    engine = make_engine(equity=100_000)
    engine.sync_positions(ACCOUNT, 100_000, [position(0, 100)])
    assert engine.check(order(300, 100), T0).allowed  # never sent
    engine.sync_positions(ACCOUNT, 40_000, [position(0, 100),
                                            position(300, 100, strategy="s-2")])
    denied = engine.check(order(300, 100, Side.SELL), T0)  # the strategy short 75 %
    assert denied.reason is R.STRATEGY_EXPOSURE and "75%" in denied.message, denied


VALID_ID = "x" * 128
BAD_NUMBERS = [math.nan, math.inf, -math.inf, -1.0, 0.0]
BAD_IDS = ["", "x" * 129, "tab\there", " momo", "momo ", "momo\u034f", "momo\ufe0f",
           "\u3164momo", "\u0301momo", "mo\u200bmo", "mom\u006f\u0308"]
INVALID = ([("quantity", v) for v in BAD_NUMBERS] + [("price", v) for v in BAD_NUMBERS]
           + [(f, v) for f in ("account", "strategy", "symbol") for v in BAD_IDS]
           + [("client_order_id", v) for v in BAD_IDS] + [("side", 3), ("side", 1)])


@pytest.mark.parametrize("field, value", INVALID, ids=repr)
def test_invalid_order_fields_are_rejected_and_change_nothing(field, value):
    engine = make_engine(limits=LimitSettings(max_orders_per_second=1))
    before = (engine.version, engine.restricted())
    with pytest.raises(InvalidArgument) as raised:
        engine.check(order()._replace(**{field: value}), T0)
    assert raised.value.field == field
    assert (engine.version, engine.restricted()) == before
    first = engine.check(order(), T0)
    assert first.allowed and first.decision_id.endswith("-1")  # no id or rate slot was used


def test_ids_of_128_characters_are_accepted(engine):
    candidate = order(account=VALID_ID, strategy=VALID_ID, symbol=VALID_ID,
                      client_order_id=VALID_ID)
    engine.sync_positions(VALID_ID, 1e6, [position(0, symbol=VALID_ID)])
    assert engine.check(candidate, T0).allowed


@pytest.mark.parametrize("field, value", INVALID[:10] + [
    ("account", ""), ("side", 0), ("client_order_id", ""), ("fill_id", ""),
    ("fill_id", " f-1"), ("quantity", 2e12), ("price", 2e12)], ids=repr)
def test_invalid_fills_are_rejected_and_leave_the_book_alone(engine, field, value):
    bad = fill(1)._replace(**{field: value})
    with pytest.raises(InvalidArgument) as raised:
        engine.plan_fill(bad, T0)
    assert raised.value.field == field
    assert engine.book.position(ACCOUNT, STRATEGY, SYMBOL) == 0.0
    assert engine.book.mark(ACCOUNT, SYMBOL) == 100 and engine.version == 0


@pytest.mark.parametrize("snapshot, equity, field", [
    ([], 0.0, "equity"), ([], math.nan, "equity"),
    ([position(math.nan)], 1e6, "positions[0].quantity"),
    ([position(1, mark=0.0)], 1e6, "positions[0].mark_price"),
    ([position(1, mark=-5.0)], 1e6, "positions[0].mark_price"),
    ([position(1, symbol="")], 1e6, "positions[0].symbol"),
])
def test_invalid_position_snapshots_are_rejected_and_leave_the_book_alone(engine, snapshot,
                                                                          equity, field):
    with pytest.raises(InvalidArgument) as raised:
        engine.sync_positions(ACCOUNT, equity, snapshot)
    assert raised.value.field == field
    assert engine.book.equity(ACCOUNT) == 1e6 and engine.book.positions(ACCOUNT) == {}


def test_denial_messages_print_huge_numbers_compactly(engine):
    engine.sync_positions(ACCOUNT, 1e6, [position(0, mark=100)])
    denied = engine.check(order(1e-6, 1e12), T0)
    assert denied.reason is R.PRICE_BAND
    assert "1e+12% from mark 100" in denied.message and len(denied.message) < 100


def test_a_snapshot_listing_an_original_beside_its_replacement_reserves_one_not_both():
    """Review 33f's chain fuzz: a snapshot listing A beside B, which replaced it, revived
    A beside B: either the listing of A was stale, or B was on its way (an executor lists
    what it sent), so the chain may fill the larger, not the sum; both filled, untripped,
    past what the chain was allowed. B covers A's listed leaves, A stays replaced."""
    engine, original = marked(), order(290, 100)
    replacement = order(290, 100, replaces=original.client_order_id)
    allow(engine, original, replacement)
    engine.sync_positions(ACCOUNT, 100_000, [position(0, 100)], [
        OpenOrder(original.client_order_id, STRATEGY, SYMBOL, Side.BUY, 200, 100),
        OpenOrder(replacement.client_order_id, STRATEGY, SYMBOL, Side.BUY, 100, 100)])
    assert {r.client_order_id: r.remaining for r in engine.orders.working(ACCOUNT)} \
        == {replacement.client_order_id: 200}
    report_fill(engine, fill(200, 100, client_order_id=original.client_order_id))
    assert engine.state_of(account()) is State.ARMED  # crossed the replace
    report_fill(engine, fill(100, 100, client_order_id=replacement.client_order_id))
    assert engine.state_of(account()) is State.TRIPPED  # 300 where the chain had 290


def listed_beyond_its_check_then_replaced():  # noqa: ANN201
    """A allowed 10, listed by a snapshot with 50 left, then replaced by B 10."""
    engine, original = marked(), order(10, 100)
    allow(engine, original)
    listed = OpenOrder(original.client_order_id, STRATEGY, SYMBOL, Side.BUY, 50, 100)
    engine.sync_positions(ACCOUNT, 100_000, [position(0, 100)], [listed])
    replacement = order(10, 100, replaces=original.client_order_id)
    allow(engine, replacement)
    return engine, original, replacement


def test_a_replace_of_an_order_listed_with_more_than_it_was_allowed_fills_no_more():
    """Review 34: a snapshot listed A (allowed 10) with 50 left; a replace of it by 10
    reserved the 50 (the venue's word) but also let the chain fill them, untripped."""
    engine, original, replacement = listed_beyond_its_check_then_replaced()
    assert {r.client_order_id: r.remaining for r in engine.orders.working(ACCOUNT)} \
        == {replacement.client_order_id: 50}
    report_fill(engine, fill(30, 100, client_order_id=original.client_order_id))
    assert engine.state_of(account()) is State.TRIPPED


def test_a_replacement_reserving_listed_leaves_beyond_its_room_frees_them_when_confirmed():
    """Review 34f: the leaves beyond what the original was allowed, reserved but not
    fillable, stayed reserved once the venue's word on the replacement came, though
    nothing could fill them: a working order with nothing left to fill."""
    engine, _, replacement = listed_beyond_its_check_then_replaced()
    report_fill(engine, fill(10, 100, client_order_id=replacement.client_order_id))
    assert engine.state_of(account()) is State.ARMED
    assert not list(engine.orders.working(ACCOUNT))


def test_a_stale_listing_regrows_no_room_that_fills_crossing_the_replace_took():
    """Review 34: A 50 replaced by B 100, B by C 50 (C may fill 100: B's leaves), both in
    flight; A filled its 50, which crossed to C. A snapshot still listing B with 100
    left grew C's room to 150 (B's leaves on top of the fills that came out of them), and
    B's 100 filled as well, untripped."""
    engine, a = marked(), order(50, 100)
    b = order(100, 100, replaces=a.client_order_id)
    c = order(50, 100, replaces=b.client_order_id)
    allow(engine, a, b, c)
    report_fill(engine, fill(50, 100, client_order_id=a.client_order_id))
    engine.sync_positions(ACCOUNT, 100_000, [position(50, 100)], [
        OpenOrder(b.client_order_id, STRATEGY, SYMBOL, Side.BUY, 100, 100)])
    assert engine.state_of(account()) is State.ARMED
    report_fill(engine, fill(100, 100, client_order_id=b.client_order_id))
    assert engine.state_of(account()) is State.TRIPPED  # 150 where the chain had 100


def test_a_listing_after_an_echoed_confirmation_down_a_chain_gives_the_head_the_room_back():
    """Review 34c: A 100 replaced by B 10, B's OPEN an executor's echo (its room for A's
    leaves let go), then B replaced by C 10; a snapshot lists A live and B, C on their
    way. C covered A's 100 but could fill only its own 10: A's first fill tripped. What
    the echo let go passes down the chain with the leaves it was for."""
    engine, a = marked(), order(100, 100)
    b = order(10, 100, replaces=a.client_order_id)
    allow(engine, a, b)
    engine.update_order(OrderUpdate(ACCOUNT, b.client_order_id, OrderStatus.OPEN, 10))
    c = order(10, 100, replaces=b.client_order_id)
    allow(engine, c)
    engine.sync_positions(ACCOUNT, 100_000, [position(0, 100)], [
        OpenOrder(coid, STRATEGY, SYMBOL, Side.BUY, leaves, 100)
        for coid, leaves in ((a.client_order_id, 100), (b.client_order_id, 10),
                             (c.client_order_id, 10))])
    for _ in range(4):
        report_fill(engine, fill(25, 100, client_order_id=a.client_order_id))
    assert engine.state_of(account()) is State.ARMED
    report_fill(engine, fill(10, 100, client_order_id=c.client_order_id))
    assert engine.state_of(account()) is State.TRIPPED  # 110 where the chain had 100


def test_a_listing_gives_back_no_room_that_the_head_still_has():
    """Review 34 (chain fuzz): A 100 replaced by B 100, B by C 50 (its crossing covers
    B's leaves); a snapshot listing A with 50 and C confirms C (its crossing let go).
    D 100 replaces C, and a snapshot lists A with 100 beside D with 50: D may already
    fill 100, yet what C let go was added to it, and the chain filled 105 untripped."""
    engine, a = marked(), order(100, 100)
    b = order(100, 100, replaces=a.client_order_id)
    c = order(50, 100, replaces=b.client_order_id)
    allow(engine, a, b, c)

    def listing(*orders: tuple[str, float]) -> None:
        engine.sync_positions(ACCOUNT, 100_000, [position(0, 100)], [
            OpenOrder(coid, STRATEGY, SYMBOL, Side.BUY, leaves, 100) for coid, leaves in orders])

    listing((a.client_order_id, 50), (c.client_order_id, 5))
    d = order(100, 100, replaces=c.client_order_id)
    allow(engine, d)
    listing((a.client_order_id, 100), (d.client_order_id, 50))
    report_fill(engine, fill(5, 100, client_order_id=a.client_order_id))
    assert engine.state_of(account()) is State.ARMED  # within the chain's room
    report_fill(engine, fill(100, 100, client_order_id=d.client_order_id))
    assert engine.state_of(account()) is State.TRIPPED


def test_an_original_working_again_after_its_replace_is_rejected_lets_go_of_its_crossing():
    """Review 34g: A 100 replaced by B 50 (its crossing covers A's leaves), B by C 10, C
    rejected: B worked again without its crossing, so once B traded (the A -> B replace
    done) it still reserved, and could fill, A's leaves: 100 filled under B's own id,
    untripped, where B was checked for 50."""
    engine, a = marked(), order(100, 100)
    b = order(50, 100, replaces=a.client_order_id)
    c = order(10, 100, replaces=b.client_order_id)
    allow(engine, a, b, c)
    engine.update_order(OrderUpdate(ACCOUNT, c.client_order_id, OrderStatus.REJECTED))
    report_fill(engine, fill(10, 100, client_order_id=b.client_order_id))
    assert {r.client_order_id: r.remaining for r in engine.orders.working(ACCOUNT)} \
        == {b.client_order_id: 40}
    report_fill(engine, fill(40, 100, client_order_id=b.client_order_id))
    assert engine.state_of(account()) is State.ARMED
    report_fill(engine, fill(10, 100, client_order_id=b.client_order_id))
    assert engine.state_of(account()) is State.TRIPPED
