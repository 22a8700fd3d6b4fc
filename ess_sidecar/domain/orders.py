"""Orders and fills as the domain sees them, and their validation."""

from __future__ import annotations

import enum
import math
from typing import NamedTuple

from .errors import InvalidArgument
from .scopes import check_id


class Side(enum.IntEnum):
    BUY = 1
    SELL = 2


class Order(NamedTuple):
    account: str
    strategy: str
    symbol: str
    side: Side
    quantity: float
    price: float
    reduce_only: bool = False
    client_order_id: str = ""

    @property
    def signed_quantity(self) -> float:
        return self.quantity if self.side is Side.BUY else -self.quantity


class Fill(NamedTuple):
    account: str
    strategy: str
    symbol: str
    side: Side
    quantity: float
    price: float


class PositionSnapshot(NamedTuple):
    strategy: str
    symbol: str
    quantity: float
    mark_price: float


def check_positive(value: float, field: str) -> float:
    """Return value if it is a finite number greater than zero (NaN fails the test)."""
    if not 0.0 < value < math.inf:
        raise InvalidArgument(field, f"must be a finite number > 0, got {value!r}")
    return value


def check_finite(value: float, field: str) -> float:
    if not math.isfinite(value):
        raise InvalidArgument(field, f"must be a finite number, got {value!r}")
    return value


def validate_order(order: Order | Fill) -> None:
    """Reject an order or fill whose fields are malformed; a denial is something else."""
    check_id(order.account, "account")
    check_id(order.strategy, "strategy")
    check_id(order.symbol, "symbol")
    if order.side is not Side.BUY and order.side is not Side.SELL:
        # signed_quantity tests identity, so a raw int (even 1) would read as a sell
        raise InvalidArgument("side", f"must be Side.BUY or Side.SELL, got {order.side!r}")
    check_positive(order.quantity, "quantity")
    check_positive(order.price, "price")
    client_order_id = getattr(order, "client_order_id", "")
    if client_order_id:
        check_id(client_order_id, "client_order_id")


def validate_snapshot(position: PositionSnapshot, field: str) -> None:
    check_id(position.strategy, f"{field}.strategy")
    check_id(position.symbol, f"{field}.symbol")
    check_finite(position.quantity, f"{field}.quantity")
    if position.mark_price:
        check_positive(position.mark_price, f"{field}.mark_price")
    elif position.quantity:
        raise InvalidArgument(f"{field}.mark_price", "is required for an open position")
