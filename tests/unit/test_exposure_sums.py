"""The exposure sums a check reads are kept by differences (book.py): they must stay within
their rounding bound of sums made afresh from the legs, and a check must decide as a
check over fresh sums would, near a limit above all."""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from ess_sidecar.domain.book import AccountBook, Leg
from ess_sidecar.domain.decisions import DecisionReason
from ess_sidecar.domain.engine import GuardEngine
from ess_sidecar.domain.limits import LimitSettings, SymbolLimits
from ess_sidecar.domain.orders import OrderStatus, OrderUpdate, Side

from .conftest import ACCOUNT, T0, fill, make_engine, order, position, report_fill

LIMITS = LimitSettings(max_symbol_exposure_pct=100, max_strategy_exposure_pct=100,
                       max_portfolio_exposure_pct=100,
                       max_orders_per_second=0, duplicate_identical_orders=0,
                       default=SymbolLimits(price_band_pct=0))
STRATEGIES, SYMBOLS = ("s1", "s2", "s3"), ("X", "Y", "Z")


def tops(engine: GuardEngine, account: str) -> dict[tuple[str, str, Side], float]:
    """Per leg ((strategy, symbol), or ("", symbol) for the net) and side, the highest
    limit price among the account's working orders, or among the orders a working
    replacement holds the price of, found afresh."""
    found: dict[tuple[str, str, Side], float] = {}
    for record in engine.orders.working(account):
        price = max(record.valued, record.held_price)
        for key in ((record.strategy, record.symbol, record.side),
                    ("", record.symbol, record.side)):
            found[key] = max(found.get(key, 0.0), price)
    return found


def worth(leg: Leg, mark: float, buy_top: float, sell_top: float) -> float:
    """Each side's worst position at the larger of the mark and its highest price."""
    return max(abs(leg.position + leg.buying) * max(mark, buy_top),
               abs(leg.position - leg.selling) * max(mark, sell_top))


def fresh(book: AccountBook, top: dict[tuple[str, str, Side], float]
          ) -> tuple[dict[str, float], float, set[tuple[str, str]], int]:
    """Per strategy and in all, the legs' worst cases valued afresh; the legs with a
    worst case and no price; the symbols with a net worst case."""
    values: dict[str, list[float]] = {}
    unpriced = set()
    for (strategy, symbol), leg in book.legs.items():
        price = book.price(symbol)
        if leg.peak and not price:
            unpriced.add((strategy, symbol))
        value = worth(leg, price, top.get((strategy, symbol, Side.BUY), 0.0),
                      top.get((strategy, symbol, Side.SELL), 0.0)) if price else 0.0
        values.setdefault(strategy, []).append(value)
    every = [v for each in values.values() for v in each]
    return ({s: math.fsum(v) for s, v in values.items()}, math.fsum(every), unpriced,
            sum(1 for net in book.nets.values() if net.peak))


def assert_sums_are_current(engine: GuardEngine, account: str = ACCOUNT) -> None:
    book, top = engine.book.account(account), tops(engine, account)
    kept = {(*key, Side.BUY): leg.buy_top for key, leg in book.legs.items()}
    kept |= {(*key, Side.SELL): leg.sell_top for key, leg in book.legs.items()}
    kept |= {("", symbol, Side.BUY): net.buy_top for symbol, net in book.nets.items()}
    kept |= {("", symbol, Side.SELL): net.sell_top for symbol, net in book.nets.items()}
    assert {key: price for key, price in kept.items() if price} == top
    strategies, total, unpriced, held = fresh(book, top)
    bound = book.slack + 1e-9 * max(1.0, total)  # + the fresh sum's own rounding
    assert abs(book.total - total) <= bound
    assert book.strategies.keys() == strategies.keys()
    for strategy, value in strategies.items():
        assert abs(book.strategies[strategy].value - value) <= bound
    assert set(book.unpriced) == unpriced
    assert book.held == held
    for (strategy, symbol), leg in book.legs.items():
        price = book.price(symbol)
        assert leg.value == (worth(leg, price, top.get((strategy, symbol, Side.BUY), 0.0),
                                   top.get((strategy, symbol, Side.SELL), 0.0))
                             if price and leg.peak else 0.0)


step = st.one_of(
    st.tuples(st.just("order"), st.sampled_from(STRATEGIES), st.sampled_from(SYMBOLS),
              st.sampled_from(Side), st.sampled_from([0.001, 1.0, 7.0, 1e4, 1e9]),
              st.sampled_from([0.5, 1.0, 1.5])),
    st.tuples(st.just("fill"), st.integers(0, 99), st.floats(0.01, 1e6)),
    st.tuples(st.just("cancel"), st.integers(0, 99)),
    st.tuples(st.just("sync"), st.sampled_from(SYMBOLS), st.floats(0.01, 1e6)))


@settings(max_examples=200, deadline=None)
@given(st.lists(step, max_size=60))
def test_sums_stay_within_their_bound_of_fresh_sums(steps):
    """Orders at prices around the mark, fills at any price (a fill moves its account's
    mark), cancels and snapshots that move marks: after each, the sums agree with sums
    made afresh, and each leg's highest working price with the working orders'."""
    engine = make_engine(limits=LIMITS, equity=None)
    engine.sync_positions(ACCOUNT, 1e18, [position(0, 100.0, symbol=y) for y in SYMBOLS])
    working: list = []
    for kind, *args in steps:
        book = engine.book.account(ACCOUNT)
        if kind == "order":
            strategy, symbol, side, quantity, away = args
            candidate = order(quantity, book.price(symbol) * away, side, strategy=strategy,
                              symbol=symbol)
            if engine.check(candidate, T0).allowed:
                working.append(candidate)
        elif kind == "fill" and working:
            done = working.pop(args[0] % len(working))
            report_fill(engine, fill(done.quantity, args[1], done.side,
                                     strategy=done.strategy, symbol=done.symbol,
                                     client_order_id=done.client_order_id))
        elif kind == "cancel" and working:
            done = working.pop(args[0] % len(working))
            engine.update_order(OrderUpdate(ACCOUNT, done.client_order_id,
                                            OrderStatus.CANCELLED))
        elif kind == "sync":
            symbol, mark = args
            held = [position(leg.position, book.price(y), strategy=s, symbol=y)
                    for (s, y), leg in book.legs.items() if leg.position]
            held = [p for p in held if p.symbol != symbol]
            held.append(position(0, mark, strategy="s1", symbol=symbol)
                        if ("s1", symbol) not in {(p.strategy, p.symbol) for p in held}
                        else position(book.legs[("s1", symbol)].position, mark,
                                      strategy="s1", symbol=symbol))
            engine.sync_positions(ACCOUNT, 1e18, held, None, T0)
        assert_sums_are_current(engine)


def test_a_check_near_the_limit_decides_on_fresh_sums():
    """Huge orders come and go while one order works, leaving rounding behind in the sums;
    an order that brings the strategy exactly to its limit is then judged on sums made
    again (the slack is gone), so it is allowed exactly when a fresh sum allows it."""
    engine = make_engine(limits=LIMITS, equity=None)
    marks = [position(0, 100.1, symbol=y) for y in SYMBOLS]
    engine.sync_positions(ACCOUNT, 1_000_000.0, marks)
    book = engine.book.account(ACCOUNT)
    resting = order(3330.0, 100.1, symbol="X")  # 33.33 % of equity
    assert engine.check(resting, T0).allowed
    for _ in range(50):  # 1e11 of notional each: allowed only under a vast equity
        engine.sync_positions(ACCOUNT, 1e18, marks)
        big = order(1e9 + 0.3, 100.1, symbol="Y")
        assert engine.check(big, T0).allowed
        engine.update_order(OrderUpdate(ACCOUNT, big.client_order_id, OrderStatus.CANCELLED))
    engine.sync_positions(ACCOUNT, 1_000_000.0, marks)
    drift = book.slack
    assert drift > 1e-6  # far more than the bound of one update at this size
    room = 1_000_000.0 - book.legs[("strat-1", "X")].value  # to exactly 100 %, fresh
    at_limit = order(room / 100.1, 100.1, symbol="Z")
    fresh_pct = (math.fsum([book.legs[("strat-1", "X")].value, at_limit.quantity * 100.1])
                 * 100.0 / 1_000_000.0)
    decision = engine.check(at_limit, T0)
    # The check was within the bound of the limit, so the sums were made again: what is
    # left is the bound of the one update that reserved the order.
    assert book.slack < 1e-6 < drift
    assert decision.allowed is (fresh_pct <= 100.0)
    over = order(0.01, 100.1, symbol="Z")
    assert engine.check(over, T0).reason is DecisionReason.STRATEGY_EXPOSURE
