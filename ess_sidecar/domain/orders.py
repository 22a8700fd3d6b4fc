"""Orders, fills, order updates and snapshots as the domain sees them (validation.py checks
them). Plain named tuples and enums: the journal encodes and decodes them by their fields'
types, so this module stays interpreted when the domain is compiled (setup.py).

Every quantity and price is finite, positive where it must be, and at most MAX_QUANTITY
or MAX_PRICE (an account's equity, MAX_EQUITY); so every quantity the book holds stays
finite and within MAX_QUANTITY, where a double still resolves changes of 1e-4
(docs/design.md, "The exposure model")."""

from __future__ import annotations

import enum
from typing import NamedTuple


MAX_QUANTITY = 1e12
MAX_PRICE = 1e12
MAX_EQUITY = 1e18


class Side(enum.IntEnum):
    BUY = 1
    SELL = 2


class OrderStatus(enum.IntEnum):
    """What the venue said of a working order (ReportOrderUpdate)."""

    CANCELLED = 1
    REJECTED = 2
    EXPIRED = 3
    OPEN = 4  # still working, with remaining_quantity left (which may only shrink)


ENDED = frozenset({OrderStatus.CANCELLED, OrderStatus.REJECTED, OrderStatus.EXPIRED})


class Order(NamedTuple):
    account: str
    strategy: str
    symbol: str
    side: Side
    quantity: float
    price: float
    reduce_only: bool = False
    client_order_id: str = ""
    replaces_client_order_id: str = ""

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
    client_order_id: str = ""
    fill_id: str = ""

    @property
    def signed_quantity(self) -> float:
        return self.quantity if self.side is Side.BUY else -self.quantity


class OrderUpdate(NamedTuple):
    account: str
    client_order_id: str
    status: OrderStatus
    remaining_quantity: float | None = None  # the order's leaves (OPEN only)
    filled_quantity: float | None = None  # the venue's cumulative filled quantity (CumQty)


class OpenOrder(NamedTuple):
    """One of an account's open orders in a SyncPositions snapshot."""

    client_order_id: str
    strategy: str
    symbol: str
    side: Side
    remaining_quantity: float
    price: float


class IncludedFills(NamedTuple):
    """In a SyncPositions snapshot: how much of an order's fills its positions count (the
    venue's cumulative filled quantity under that client_order_id, FIX CumQty): those not
    reported yet are booked to the order when the snapshot comes, and move nothing when
    they are reported (they are in it)."""

    client_order_id: str
    filled_quantity: float


class PositionSnapshot(NamedTuple):
    strategy: str
    symbol: str
    quantity: float
    mark_price: float
