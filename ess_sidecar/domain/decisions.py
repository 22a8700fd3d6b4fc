"""What a check answers: allowed or denied, with a stable reason."""

from __future__ import annotations

import enum
from typing import NamedTuple

from .scopes import Scope


class DecisionReason(enum.IntEnum):
    ALLOWED = 1
    SCOPE_TRIPPED = 2
    COOLING_DOWN = 3
    REDUCE_ONLY = 4
    MAX_ORDER_QUANTITY = 5
    MAX_ORDER_NOTIONAL = 6
    PRICE_BAND = 7
    ORDER_RATE = 8
    SYMBOL_EXPOSURE = 9
    STRATEGY_EXPOSURE = 10
    PORTFOLIO_EXPOSURE = 11
    MAX_POSITIONS = 12
    EQUITY_UNKNOWN = 13
    MAX_WORKING_ORDERS = 14
    DUPLICATE_ORDER = 15
    MARK_UNKNOWN = 16
    QUANTITY_UNREPRESENTABLE = 17


class Denial(NamedTuple):
    """Why one check step refused an order."""

    reason: DecisionReason
    message: str
    blocking_scope: Scope | None = None


class Decision(NamedTuple):
    allowed: bool
    reason: DecisionReason
    message: str
    state_version: int
    blocking_scope: Scope | None
    decision_id: str
