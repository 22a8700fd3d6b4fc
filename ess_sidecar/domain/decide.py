"""The one place an order is judged: the steps of docs/design.md, "Limits", in order; the
first failure wins."""

from __future__ import annotations

from .decisions import DecisionReason, Denial
from .limits import LimitSettings, OrderRate, check_exposure, check_price_band, check_size
from .orders import Order
from .positions import PositionBook
from .states import State, Transition


def first_denial(order: Order, blocking: Transition | None, book: PositionBook,
                 limits: LimitSettings, rate: OrderRate, now: float) -> Denial | None:
    """Why this (validated) order must not be sent, or None if it may be."""
    if blocking is not None:
        denial = state_denial(order, blocking, book)
        if denial is not None:
            return denial
    symbol_limits = limits.for_symbol(order.symbol)
    return (check_size(order, symbol_limits)
            or check_price_band(order, symbol_limits, book.mark(order.symbol))
            or rate.check(order.strategy, now)
            or check_exposure(order, book, limits))


def state_denial(order: Order, blocking: Transition, book: PositionBook) -> Denial | None:
    """Step 1: the most restrictive state among the scopes that cover the order."""
    scope, state = blocking.scope, blocking.state
    if state is State.TRIPPED:
        return Denial(DecisionReason.SCOPE_TRIPPED, f"{scope} is TRIPPED: {blocking.reason}", scope)
    if state is State.COOLING_DOWN:
        return Denial(DecisionReason.COOLING_DOWN, f"{scope} is COOLING_DOWN after a reset", scope)
    if state is State.REDUCE_ONLY and not reduces(order, book):
        return Denial(DecisionReason.REDUCE_ONLY,
                      f"{scope} is REDUCE_ONLY and this order does not reduce the position"
                      f" of {order.strategy}/{order.symbol} in the sidecar's book", scope)
    return None


def reduces(order: Order, book: PositionBook) -> bool:
    """True if the order moves the position toward zero without crossing it."""
    current = book.position(order.account, order.strategy, order.symbol)
    after = current + order.signed_quantity
    return abs(after) < abs(current) and after * current >= 0.0
