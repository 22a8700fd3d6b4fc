"""Per-order limits (steps 2 to 5 of the check): size, price band, rate, exposure."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from .decisions import DecisionReason, Denial
from .orders import Order
from .positions import PositionBook


@dataclass(frozen=True)
class SymbolLimits:
    """Order size and price limits; 0 turns a limit off."""

    max_order_quantity: float = 0.0
    max_order_notional: float = 0.0
    price_band_pct: float = 10.0


@dataclass(frozen=True)
class LimitSettings:
    default: SymbolLimits = SymbolLimits()
    symbols: Mapping[str, SymbolLimits] = field(default_factory=dict)
    max_orders_per_second: int = 100  # per strategy; 0 = off
    exposure_enabled: bool = True
    max_symbol_exposure_pct: float = 30.0
    max_strategy_exposure_pct: float = 60.0
    max_portfolio_exposure_pct: float = 90.0
    max_open_positions: int = 10

    def for_symbol(self, symbol: str) -> SymbolLimits:
        return self.symbols.get(symbol, self.default)


def check_size(order: Order, limits: SymbolLimits) -> Denial | None:
    if limits.max_order_quantity and order.quantity > limits.max_order_quantity:
        return Denial(DecisionReason.MAX_ORDER_QUANTITY,
                      f"quantity {order.quantity:g} > max {limits.max_order_quantity:g}")
    notional = order.quantity * order.price
    if limits.max_order_notional and notional > limits.max_order_notional:
        return Denial(DecisionReason.MAX_ORDER_NOTIONAL,
                      f"notional {notional:g} > max {limits.max_order_notional:g}")
    return None


def check_price_band(order: Order, limits: SymbolLimits, mark: float | None) -> Denial | None:
    if not limits.price_band_pct or mark is None:
        return None
    deviation = abs(order.price - mark) / mark * 100.0
    if deviation > limits.price_band_pct:
        return Denial(DecisionReason.PRICE_BAND,
                      f"price {order.price:g} is {deviation:.4g}% from mark {mark:g}"
                      f" (band {limits.price_band_pct:g}%)")
    return None


class OrderRate:
    """A sliding one-second window of allowed orders per strategy."""

    def __init__(self, per_second: int) -> None:
        self._per_second = per_second
        self._sent: dict[str, deque[float]] = {}

    def check(self, strategy: str, now: float) -> Denial | None:
        if not self._per_second:
            return None
        sent = self._sent.get(strategy)
        if sent is None:
            return None
        while sent and sent[0] <= now - 1.0:
            sent.popleft()
        if len(sent) >= self._per_second:
            return Denial(DecisionReason.ORDER_RATE,
                          f"strategy {strategy} reached {self._per_second} orders/s")
        return None

    def record(self, strategy: str, now: float) -> None:
        if self._per_second:
            self._sent.setdefault(strategy, deque()).append(now)


def check_exposure(order: Order, book: PositionBook, settings: LimitSettings) -> Denial | None:
    """Exposure after the order as % of equity; never denies an order that does not grow
    the absolute position it changes."""
    current = book.position(order.account, order.strategy, order.symbol)
    after = current + order.signed_quantity
    if not settings.exposure_enabled or abs(after) <= abs(current):
        return None
    equity = book.equity(order.account)
    if equity is None or equity <= 0.0:
        return Denial(DecisionReason.EQUITY_UNKNOWN,
                      f"equity unknown for account {order.account}: sync positions first")
    return _exposure_after(order, book, settings, equity, after)


def _exposure_after(order: Order, book: PositionBook, settings: LimitSettings,
                    equity: float, after: float) -> Denial | None:
    """One pass over the account's positions, the order's own position taken as `after`
    and priced at the order's price."""
    own_key = (order.strategy, order.symbol)
    net: dict[str, float] = {order.symbol: after}
    symbol_before = strategy_notional = 0.0
    portfolio_notional = abs(after) * order.price
    for key, quantity in book.positions(order.account).items():
        strategy, symbol = key
        if symbol == order.symbol:
            symbol_before += quantity
        if key == own_key:
            continue
        net[symbol] = net.get(symbol, 0.0) + quantity
        notional = abs(quantity) * (order.price if symbol == order.symbol
                                    else book.mark(symbol) or 0.0)
        portfolio_notional += notional
        if strategy == order.strategy:
            strategy_notional += notional
    strategy_notional += abs(after) * order.price
    percent = 100.0 / equity
    if abs(net[order.symbol]) * order.price * percent > settings.max_symbol_exposure_pct:
        return _exposure_denial(DecisionReason.SYMBOL_EXPOSURE, f"symbol {order.symbol}",
                                abs(net[order.symbol]) * order.price * percent,
                                settings.max_symbol_exposure_pct)
    if strategy_notional * percent > settings.max_strategy_exposure_pct:
        return _exposure_denial(DecisionReason.STRATEGY_EXPOSURE, f"strategy {order.strategy}",
                                strategy_notional * percent, settings.max_strategy_exposure_pct)
    if portfolio_notional * percent > settings.max_portfolio_exposure_pct:
        return _exposure_denial(DecisionReason.PORTFOLIO_EXPOSURE, f"account {order.account}",
                                portfolio_notional * percent, settings.max_portfolio_exposure_pct)
    open_positions = sum(1 for quantity in net.values() if quantity)
    if not symbol_before and open_positions > settings.max_open_positions:
        return Denial(DecisionReason.MAX_POSITIONS,
                      f"would open position {open_positions}"
                      f" (max {settings.max_open_positions})")
    return None


def _exposure_denial(reason: DecisionReason, what: str, pct: float, limit_pct: float) -> Denial:
    return Denial(reason, f"{what} exposure would be {pct:.4g}% of equity (limit {limit_pct:g}%)")
