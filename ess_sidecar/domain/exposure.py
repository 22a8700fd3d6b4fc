"""The exposure model: what REDUCE_ONLY, the exposure limits and max positions measure.

- **Worst case.** A quantity is a position plus every working order that could move it:
  its worst case is the larger of |position + working buys| and |position - working
  sells|. An order is judged as if it were already working.
- **One quantity per limit.** The symbol limit measures the account's net position in the
  order's symbol (across its strategies); the strategy limit, the sum over the strategy's
  symbols of its own worst-case position there; the portfolio limit, that sum over every
  strategy of the account; max positions, how many symbols the account's net worst case is
  non-zero in. Exposure is that quantity times the mark, in % of the account's equity.
- **Exempt only if it does not grow.** A limit never denies an order that does not grow
  the worst case of the quantity it measures. REDUCE_ONLY admits an order only if it
  reduces both the account's net position and the strategy's own position in the symbol,
  counting working orders on its side, without crossing zero.
- **Marks** are per (account, symbol), from that account's SyncPositions marks and its own
  fills, never another account's; else the symbol's configured `reference_price`. With
  exposure limits on, a growing order with no equity known is denied EQUITY_UNKNOWN, with
  no mark MARK_UNKNOWN: the sidecar does not guess. An order is valued at the larger of
  the mark and its own price.
- **Representable.** Quantities stay within orders.MAX_QUANTITY; an order too small to
  change a quantity that large in floating point is denied QUANTITY_UNREPRESENTABLE.
"""

from __future__ import annotations

from .book import AccountBook, Leg
from .decisions import DecisionReason, Denial
from .limits import LimitSettings
from .orders import Order, Side

# An order must move a quantity by its own size within this relative error.
REPRESENTABLE = 1e-6


def sides(order: Order) -> tuple[float, float]:
    """(buy, sell): the order as extra working quantity."""
    return (order.quantity, 0.0) if order.side is Side.BUY else (0.0, order.quantity)


def reduces(order: Order, book: AccountBook) -> bool:
    """REDUCE_ONLY's test: reduces the net and the strategy's position without crossing."""
    net, leg = book.nets.get(order.symbol), book.legs.get((order.strategy, order.symbol))
    return (net is not None and leg is not None and net.reduced_by(order.side, order.quantity)
            and leg.reduced_by(order.side, order.quantity))


def unrepresentable(order: Order, book: AccountBook) -> Denial | None:
    for leg in (book.nets.get(order.symbol), book.legs.get((order.strategy, order.symbol))):
        if leg is None:
            continue
        start = leg.position + leg.buying if order.side is Side.BUY \
            else leg.position - leg.selling
        moved = abs((start + order.signed_quantity) - start)
        if abs(moved - order.quantity) > order.quantity * REPRESENTABLE:
            return Denial(DecisionReason.QUANTITY_UNREPRESENTABLE,
                          f"quantity {order.quantity:g} is too small to change a position"
                          f" of {start:g} in floating point")
    return None


def check_exposure(order: Order, book: AccountBook, settings: LimitSettings) -> Denial | None:
    """Steps 5 of the check: exposure after the order, then max positions."""
    buy, sell = sides(order)
    net = book.nets.get(order.symbol) or Leg()
    leg = book.legs.get((order.strategy, order.symbol)) or Leg()
    grows_net = net.worst(buy, sell) > net.worst()
    grows_leg = leg.worst(buy, sell) > leg.worst()
    if settings.exposure_enabled and (grows_net or grows_leg):
        denial = _exposure(order, book, settings, grows_net, grows_leg)
        if denial is not None:
            return denial
    if grows_net and not net.worst() and settings.max_open_positions:
        held = sum(1 for other in book.nets.values() if other.worst()) + 1
        if held > settings.max_open_positions:
            return Denial(DecisionReason.MAX_POSITIONS, f"would hold a position in {held}"
                          f" symbols (max {settings.max_open_positions})")
    return None


def _exposure(order: Order, book: AccountBook, settings: LimitSettings, grows_net: bool,
              grows_leg: bool) -> Denial | None:
    equity = book.equity
    if equity is None or equity <= 0.0:
        return Denial(DecisionReason.EQUITY_UNKNOWN,
                      f"equity unknown for account {order.account}: sync positions first")
    mark = _mark(book, settings, order.symbol)
    if mark is None:
        return _mark_unknown(order.account, order.symbol)
    price = max(mark, order.price)
    percent = 100.0 / equity
    buy, sell = sides(order)
    if grows_net:
        net = book.nets.get(order.symbol) or Leg()
        pct = net.worst(buy, sell) * price * percent
        if pct > settings.max_symbol_exposure_pct:
            return _too_much(DecisionReason.SYMBOL_EXPOSURE, f"symbol {order.symbol}", pct,
                             settings.max_symbol_exposure_pct)
    if not grows_leg:
        return None
    strategy = portfolio = 0.0
    own = (order.strategy, order.symbol)
    if own not in book.legs:
        strategy = portfolio = Leg().worst(buy, sell) * price
    for (owner, symbol), leg in book.legs.items():
        if (owner, symbol) == own:
            notional = leg.worst(buy, sell) * price
        else:
            other = _mark(book, settings, symbol)
            if other is None:
                if leg.worst():
                    return _mark_unknown(order.account, symbol)
                continue
            notional = leg.worst() * other
        portfolio += notional
        if owner == order.strategy:
            strategy += notional
    if strategy * percent > settings.max_strategy_exposure_pct:
        return _too_much(DecisionReason.STRATEGY_EXPOSURE, f"strategy {order.strategy}",
                         strategy * percent, settings.max_strategy_exposure_pct)
    if portfolio * percent > settings.max_portfolio_exposure_pct:
        return _too_much(DecisionReason.PORTFOLIO_EXPOSURE, f"account {order.account}",
                         portfolio * percent, settings.max_portfolio_exposure_pct)
    return None


def _mark(book: AccountBook, settings: LimitSettings, symbol: str) -> float | None:
    mark = book.marks.get(symbol)
    return mark if mark is not None else settings.for_symbol(symbol).reference_price or None


def _mark_unknown(account: str, symbol: str) -> Denial:
    return Denial(DecisionReason.MARK_UNKNOWN, f"mark unknown for {symbol} in account"
                  f" {account}: sync positions with a mark, or configure a reference_price")


def _too_much(reason: DecisionReason, what: str, pct: float, limit_pct: float) -> Denial:
    return Denial(reason, f"{what} exposure would be {pct:.4g}% of equity"
                  f" (limit {limit_pct:g}%), working orders included")
