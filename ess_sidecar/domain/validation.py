"""Validation of what comes in: an order, a fill, an order update, a snapshot. A malformed
field is InvalidArgument naming it (a denial is something else); what passes has
canonical ids (ids.py) and numbers within the bounds of orders.py."""

from __future__ import annotations

import math
from typing import Final

from .errors import InvalidArgument
from .ids import canonical_id, canonical_symbol
from .orders import ENDED, MAX_PRICE, MAX_QUANTITY, Fill, IncludedFills, OpenOrder, Order, \
    OrderStatus, OrderUpdate, PositionSnapshot, Side


def check_positive(value: float, field: str, most: float = math.inf) -> float:
    """Return value if it is a finite number greater than zero and at most `most` (NaN
    fails the test)."""
    if not 0.0 < value < math.inf:
        raise InvalidArgument(field, f"must be a finite number > 0, got {value!r}")
    if value > most:
        raise InvalidArgument(field, f"must be at most {most:g}, got {value:g}")
    return value


def check_finite(value: float, field: str) -> float:
    if not math.isfinite(value):
        raise InvalidArgument(field, f"must be a finite number, got {value!r}")
    return value


def check_filled(value: float, field: str) -> float:
    """A cumulative filled quantity: finite, within 0..MAX_QUANTITY."""
    check_finite(value, field)
    if not 0.0 <= value <= MAX_QUANTITY:
        raise InvalidArgument(field, f"must be within 0..{MAX_QUANTITY:g}")
    return value


def check_side(side: object) -> Side:
    # signed_quantity tests identity, so a raw int (even 1) would read as a sell
    if side is not Side.BUY and side is not Side.SELL:
        raise InvalidArgument("side", f"must be Side.BUY or Side.SELL, got {side!r}")
    return side


def validate_order(order: Order, journaled: bool = False) -> Order:
    """The order with canonical ids; InvalidArgument for a malformed field (a denial is
    something else). client_order_id is required: it keys the working order. `journaled`:
    replayed from the journal (ids.py: two spaces in a row are taken there)."""
    side = order.side
    if side is not _BUY and side is not _SELL:
        check_side(side)
    quantity, price = order.quantity, order.price
    if not (0.0 < quantity <= _MAX_QUANTITY and 0.0 < price <= _MAX_PRICE):  # NaN fails too
        check_positive(quantity, "quantity", MAX_QUANTITY)
        check_positive(price, "price", MAX_PRICE)
    key = (order.account, order.strategy, order.symbol)
    symbol = _routes.get(key)
    if symbol is None:
        symbol = _route(key, journaled)
    canonical_id(order.client_order_id, "client_order_id", journaled)
    replaces = order.replaces_client_order_id
    if replaces:
        canonical_id(replaces, "replaces_client_order_id", journaled)
        if replaces == order.client_order_id:
            raise InvalidArgument("replaces_client_order_id", "must differ from"
                                  " client_order_id")
    # Canonical ids are taken as they are; only a symbol may be folded.
    return order if symbol == order.symbol else order._replace(symbol=symbol)


# (account, strategy, symbol) found canonical -> the symbol folded. A few routes carry
# nearly every order, so most checks validate their three ids with one lookup. Bounded:
# emptied when full. Only routes a request may name: none taken from the journal alone.
# Final: the compiled domain reads these as C statics, not from the module's dict.
_routes: Final[dict[tuple[str, str, str], str]] = {}
MAX_ROUTES: Final = 4096
_BUY: Final = Side.BUY
_SELL: Final = Side.SELL
_MAX_QUANTITY: Final = MAX_QUANTITY
_MAX_PRICE: Final = MAX_PRICE


def _route(key: tuple[str, str, str], journaled: bool) -> str:
    account, strategy, symbol = key
    canonical_id(account, "account", journaled)
    canonical_id(strategy, "strategy", journaled)
    folded = canonical_symbol(symbol, "symbol", journaled)
    if not journaled:
        if len(_routes) >= MAX_ROUTES:
            _routes.clear()
        _routes[key] = folded
    return folded


def validate_fill(fill: Fill, journaled: bool = False) -> Fill:
    """The fill with canonical ids; client_order_id and fill_id are required."""
    check_side(fill.side)
    check_positive(fill.quantity, "quantity", MAX_QUANTITY)
    check_positive(fill.price, "price", MAX_PRICE)
    return fill._replace(
        account=canonical_id(fill.account, "account", journaled),
        strategy=canonical_id(fill.strategy, "strategy", journaled),
        symbol=canonical_symbol(fill.symbol, "symbol", journaled),
        client_order_id=canonical_id(fill.client_order_id, "client_order_id", journaled),
        fill_id=canonical_id(fill.fill_id, "fill_id", journaled))


def validate_update(update: OrderUpdate, journaled: bool = False) -> OrderUpdate:
    if not isinstance(update.status, OrderStatus):
        raise InvalidArgument("status", f"unknown order status {update.status!r}")
    remaining = update.remaining_quantity
    if remaining is not None:
        check_finite(remaining, "remaining_quantity")
        if not 0.0 <= remaining <= MAX_QUANTITY:
            raise InvalidArgument("remaining_quantity", f"must be within 0..{MAX_QUANTITY:g}")
    elif update.status is OrderStatus.OPEN:
        raise InvalidArgument("remaining_quantity", "is required with ORDER_STATUS_OPEN")
    if update.filled_quantity is not None:
        check_filled(update.filled_quantity, "filled_quantity")
    return update._replace(account=canonical_id(update.account, "account", journaled),
                           client_order_id=canonical_id(update.client_order_id,
                                                        "client_order_id", journaled))


def check_ended_without_leaves(update: OrderUpdate) -> None:
    """An ended status has no leaves: `remaining_quantity` above 0 with one contradicts it,
    and would be dropped (review 39a: a CANCELLED "100 left" of 290 released all 290, and
    the 190 filled tripped the account when they came). Fills go in `filled_quantity`."""
    if update.status in ENDED and update.remaining_quantity:
        raise InvalidArgument("remaining_quantity", f"is {update.remaining_quantity:g} with"
                              f" {update.status.name}: an ended order has no leaves (send 0"
                              " or none; its fills go in filled_quantity)")


def check_one_mark(marks: dict[str, tuple[float, int]], position: PositionSnapshot,
                   index: int) -> None:
    """A snapshot gives each symbol one mark (marks are kept per account and symbol):
    positions of several strategies in it that give different ones are refused (review
    39a: the last row's won, and a SELL valued at 1 where the other said 100 passed the
    exposure limits)."""
    mark, first = marks.setdefault(position.symbol, (position.mark_price, index))
    if mark != position.mark_price:
        raise InvalidArgument(f"positions[{index}].mark_price", f"{position.mark_price!r}"
                              f" differs from the mark {mark!r} that positions[{first}]"
                              f" gives {position.symbol}: one snapshot gives a symbol one"
                              " mark")


def validate_snapshot(position: PositionSnapshot, field: str,
                      journaled: bool = False) -> PositionSnapshot:
    check_finite(position.quantity, f"{field}.quantity")
    if abs(position.quantity) > MAX_QUANTITY:
        raise InvalidArgument(f"{field}.quantity", f"must be within ±{MAX_QUANTITY:g}")
    if position.mark_price:
        check_positive(position.mark_price, f"{field}.mark_price", MAX_PRICE)
    elif position.quantity:
        raise InvalidArgument(f"{field}.mark_price", "is required for an open position")
    # Built, not _replace'd: a snapshot may list tens of thousands (limits.max_snapshot_entries).
    return PositionSnapshot(canonical_id(position.strategy, f"{field}.strategy", journaled),
                            canonical_symbol(position.symbol, f"{field}.symbol", journaled),
                            position.quantity, position.mark_price)


def validate_open_order(order: OpenOrder, field: str, journaled: bool = False) -> OpenOrder:
    check_side(order.side)
    check_positive(order.remaining_quantity, f"{field}.remaining_quantity", MAX_QUANTITY)
    check_positive(order.price, f"{field}.price", MAX_PRICE)
    return OpenOrder(canonical_id(order.client_order_id, f"{field}.client_order_id",
                                  journaled),
                     canonical_id(order.strategy, f"{field}.strategy", journaled),
                     canonical_symbol(order.symbol, f"{field}.symbol", journaled),
                     order.side, order.remaining_quantity, order.price)


def validate_included(included: IncludedFills, field: str,
                      journaled: bool = False) -> IncludedFills:
    check_filled(included.filled_quantity, f"{field}.filled_quantity")
    return IncludedFills(canonical_id(included.client_order_id, f"{field}.client_order_id",
                                      journaled),
                         included.filled_quantity)
