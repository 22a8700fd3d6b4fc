"""The one place an order is judged: the steps of docs/design.md, "Limits", in order; the
first failure wins. A fill that no reservation held is judged here too, by the same
rules of room (late_fill_denial)."""

from __future__ import annotations

from typing import Final

from .book import AccountBook
from .decisions import DecisionReason, Denial
from .exposure import check_exposure, check_unnamed, reduces
from .limits import LimitSettings, OrderRate, check_price_band, check_size, check_working
from .orders import Order
from .scopes import Scope, ScopeKind
from .states import State, Transition
from .working import OrderLedger, OrderRecord


def first_denial(order: Order, blocking: Transition | None, book: AccountBook,
                 ledger: OrderLedger, limits: LimitSettings, rate: OrderRate, now: float,
                 replacing: OrderRecord | None = None) -> Denial | None:
    """Why this (validated) order must not be sent, or None if it may be. The book must
    already have `replacing`'s reservation taken out (the engine does that)."""
    if blocking is not None:
        denial = state_denial(order, blocking, book)
        if denial is not None:
            return denial
    symbol_limits = limits.for_symbol(order.symbol)
    return (check_size(order, symbol_limits, book)
            or check_price_band(order, symbol_limits,
                                book.marks.get(order.symbol) or symbol_limits.reference_price)
            or rate.check(order.strategy, now)
            or check_unnamed(order, book)
            or check_exposure(order, book, limits)
            or check_working(order, ledger, limits, replacing, now, book.unadopted))


def state_denial(order: Order, blocking: Transition, book: AccountBook) -> Denial | None:
    """Step 1: the most restrictive state among the scopes that cover the order: its
    own, and those whose ids look like its own (GuardEngine._blocking)."""
    scope, state = blocking.scope, blocking.state
    named = f"{scope}{_looking_like(order, scope)}"
    if state is State.TRIPPED:
        return Denial(DecisionReason.SCOPE_TRIPPED, f"{named} is TRIPPED: {blocking.reason}",
                      scope)
    if state is State.COOLING_DOWN:
        return Denial(DecisionReason.COOLING_DOWN, f"{named} is COOLING_DOWN after a reset",
                      scope)
    if state is State.REDUCE_ONLY and not reduces(order, book):
        return Denial(DecisionReason.REDUCE_ONLY,
                      f"{named} is REDUCE_ONLY and this order does not reduce the account's"
                      f" and {order.strategy}'s position in {order.symbol}, working orders"
                      " included", scope)
    return None


def _looking_like(order: Order, scope: Scope) -> str:
    """How a scope that covers the order by the look of its id says so: " (which looks
    like this order's strategy 'Δ-hedge')"; "" for the order's own scope."""
    own = {ScopeKind.ACCOUNT: order.account, ScopeKind.STRATEGY: order.strategy,
           ScopeKind.SYMBOL: order.symbol}.get(scope.kind, scope.id)  # GLOBAL: its own
    if own == scope.id:
        return ""
    return f" (which looks like this order's {scope.kind.name.lower()} {own!r})"


# What a check measures as room: a fill no reservation held (late_fill_denial) may take an
# account past it.
_ROOM: Final = frozenset({DecisionReason.SYMBOL_EXPOSURE, DecisionReason.STRATEGY_EXPOSURE,
                          DecisionReason.PORTFOLIO_EXPOSURE, DecisionReason.MAX_POSITIONS})


def late_fill_denial(order: Order, reducing: Transition | None,
                     book: AccountBook, limits: LimitSettings) -> Denial | None:
    """Why a fill of an order a snapshot ended once (docs/design.md, known gap 13) takes
    the account where no order may go now, judged as `order` (the fill's size and price)
    on the book as if the fill's order held nothing: not reducing the position while
    `reducing`, a scope of it, is REDUCE_ONLY (REDUCE_ONLY's test, whatever else stops it
    beside; a halt or a drill's alone is no reason: fills of orders in flight come after a
    stop), or past an exposure limit or max positions (check_exposure's). None if it
    does not, or if the check cannot tell (no equity or no mark, a quantity it cannot
    represent): the fill happened, and nothing of it is guessed."""
    if reducing is not None and not reduces(order, book):
        return Denial(DecisionReason.REDUCE_ONLY,
                      f"{reducing.scope}{_looking_like(order, reducing.scope)} is"
                      " REDUCE_ONLY, and this fill does not reduce the"
                      f" account's and {order.strategy}'s position in {order.symbol} (the"
                      " working orders on its side included)", reducing.scope)
    denial = check_exposure(order, book, limits)
    return denial if denial is not None and denial.reason in _ROOM else None
