"""Per-order limits: size, price band, rate (steps 2 to 4 of the check) and working orders
(step 6). Exposure (step 5) has its own module, exposure.py."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from .book import AccountBook
from .decisions import DecisionReason, Denial
from .oldest import expired_run
from .orders import Order, Side
from .working import OrderLedger, OrderRecord


@dataclass(frozen=True)
class SymbolLimits:
    """Order size and price limits; 0 turns a limit off. reference_price (0: none) values
    exposure in a symbol while the account has no mark for it."""

    max_order_quantity: float = 0.0
    max_order_notional: float = 0.0
    price_band_pct: float = 10.0
    reference_price: float = 0.0


@dataclass(frozen=True)
class LimitSettings:
    default: SymbolLimits = SymbolLimits()
    symbols: Mapping[str, SymbolLimits] = field(default_factory=dict)
    max_orders_per_second: int = 100  # per strategy; 0 = off
    exposure_enabled: bool = True
    max_symbol_exposure_pct: float = 30.0
    max_strategy_exposure_pct: float = 60.0
    max_portfolio_exposure_pct: float = 90.0
    max_open_positions: int = 10  # symbols whose net worst case is not zero
    max_working_orders_per_account: int = 1000  # 0 = off
    max_working_orders_per_strategy: int = 500  # per (account, strategy); 0 = off
    duplicate_identical_orders: int = 5  # this many identical orders in the window: 0 = off
    duplicate_window_s: float = 1.0
    order_id_retention_s: float = 86_400.0  # a client_order_id is unique this long
    max_remembered_orders: int = 1_000_000  # order records kept for that retention
    # Positions, open orders and included fills each, in one SyncPositions: it is applied
    # in one piece, holding commands (a Trigger too) for about 15 µs an entry.
    max_snapshot_entries: int = 20_000
    # Breaker evidence of a scope unused this long (and at least its longest window) is
    # forgotten, unless the scope is latched, watches a feed or has a book; at most this
    # many scopes have evidence at once (beyond it GLOBAL trips: none can be ruled out).
    idle_evidence_s: float = 86_400.0
    max_scopes_with_evidence: int = 100_000

    def for_symbol(self, symbol: str) -> SymbolLimits:
        return self.symbols.get(symbol, self.default)


def check_size(order: Order, limits: SymbolLimits, book: AccountBook) -> Denial | None:
    """Step 2. A BUY's notional is at most its quantity at its limit price; a SELL may
    execute above its limit price, at the market (`book.price`: the account's mark, else
    the reference price), so it is valued at the higher of the two, as exposure is, and
    with no market price known its notional cannot be bounded: MARK_UNKNOWN (review 30: a
    SELL at 0.01 passed a notional cap ten times over). The market is looked up only
    then: most checks pass with no cap, or buy."""
    if limits.max_order_quantity and order.quantity > limits.max_order_quantity:
        return Denial(DecisionReason.MAX_ORDER_QUANTITY,
                      f"quantity {order.quantity:g} > max {limits.max_order_quantity:g}")
    if not limits.max_order_notional:
        return None
    price = order.price
    if order.side is Side.SELL:
        market = book.price(order.symbol)
        if not market:
            return Denial(DecisionReason.MARK_UNKNOWN, f"mark unknown for {order.symbol} in"
                          f" account {order.account}: a sell's notional is bounded by the"
                          " market, not its limit price; sync positions with a mark, or"
                          " configure a reference_price")
        price = max(price, market)
    notional = order.quantity * price
    if not notional <= limits.max_order_notional:
        return Denial(DecisionReason.MAX_ORDER_NOTIONAL,
                      f"notional {notional:g} > max {limits.max_order_notional:g}")
    return None


def check_price_band(order: Order, limits: SymbolLimits, mark: float | None) -> Denial | None:
    """`mark`: the account's, else the symbol's reference_price (review 37e: with a
    reference alone, an order at a hundredth of it went unbanded, and its fill became the
    mark); None or 0: none, and the price is not banded."""
    if not limits.price_band_pct or not mark:
        return None
    deviation = abs(order.price - mark) / mark * 100.0
    if deviation > limits.price_band_pct:
        return Denial(DecisionReason.PRICE_BAND,
                      f"price {order.price:.15g} is {deviation:.4g}% from mark {mark:.15g}"
                      f" (band {limits.price_band_pct:g}%)")
    return None


class OrderRate:
    """A sliding one-second window of allowed orders per strategy."""

    def __init__(self, per_second: int) -> None:
        self._per_second = per_second
        self._sent: dict[str, deque[float]] = {}

    def strategies(self) -> Iterable[str]:
        """The strategies whose orders are in the window (or were, until their next)."""
        return self._sent.keys()

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
            sent = self._sent.pop(strategy, None) or deque()  # re-inserted: newest last
            sent.append(now)
            self._sent[strategy] = sent

    def expire(self, now: float) -> int:
        """Forget strategies with no order in the last second (oldest first); how many."""
        sent, cutoff = self._sent, now - 1.0
        idle = expired_run(sent, lambda times: not times or times[-1] <= cutoff)
        for strategy, _ in idle:
            del sent[strategy]
        return len(idle)


def check_working(order: Order, ledger: OrderLedger, limits: LimitSettings,
                  replacing: OrderRecord | None, now: float,
                  unadopted: int = 0) -> Denial | None:
    """Step 6: working-order caps, then duplicates. A replace frees its old order's slot,
    unless that order works on for fills it is owed (OrderLedger.end_but_pending). An
    account whose last snapshot listed `unadopted` open orders the sidecar could not take
    in has working orders it cannot count: none of its orders is allowed (review 38b)."""
    if unadopted:
        return Denial(DecisionReason.MAX_WORKING_ORDERS, f"account {order.account}'s last"
                      f" snapshot listed {unadopted} open orders the sidecar could not adopt"
                      " (limits.max_remembered_orders): what they reserve is unknown until a"
                      " snapshot adopts every order it lists, or an operator clears all of"
                      " the account's orders (essctl orders clear --all)")
    stays = replacing is not None and replacing.working and replacing.pending > 0.0
    freed = 1 if replacing is not None and replacing.working and not stays else 0
    why = f", {replacing.client_order_id} working on for fills it is owed" \
        if stays and replacing is not None else ""
    most = limits.max_working_orders_per_account
    if most and (count := ledger.working_count(order.account) - freed) >= most:
        return Denial(DecisionReason.MAX_WORKING_ORDERS, f"account {order.account} has"
                      f" {count} working orders (max {most}{why})")
    most = limits.max_working_orders_per_strategy
    if most and (count := ledger.per_strategy.get((order.account, order.strategy), 0)
                 - freed) >= most:
        return Denial(DecisionReason.MAX_WORKING_ORDERS, f"strategy {order.strategy} has"
                      f" {count} working orders in account {order.account} (max"
                      f" {most}{why})")
    if ledger.used(order.account, order.client_order_id):
        return Denial(DecisionReason.DUPLICATE_ORDER, f"client_order_id"
                      f" {order.client_order_id!r} was already used by account"
                      f" {order.account}")
    identical = limits.duplicate_identical_orders
    if identical and ledger.identical_count(order, now, limits.duplicate_window_s) + 1 \
            >= identical:
        return Denial(DecisionReason.DUPLICATE_ORDER, f"{identical} identical orders within"
                      f" {limits.duplicate_window_s:g}s")
    if len(ledger.records) >= limits.max_remembered_orders:
        return Denial(DecisionReason.DUPLICATE_ORDER, f"{len(ledger.records)} order ids"
                      f" within their {limits.order_id_retention_s:g}s retention are"
                      " remembered (limits.max_remembered_orders): a duplicate cannot be"
                      " ruled out")
    return None
