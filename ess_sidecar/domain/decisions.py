"""What a check answers: allowed or denied, with a stable reason."""

from __future__ import annotations

import enum

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


class Denial:
    """Why one check step refused an order."""

    __slots__ = ("reason", "message", "blocking_scope")

    def __init__(self, reason: DecisionReason, message: str,
                 blocking_scope: Scope | None = None) -> None:
        self.reason, self.message, self.blocking_scope = reason, message, blocking_scope


class Decision:
    """One check's answer. A plain class, not a named tuple: the compiled domain builds one
    per check, and a named tuple's constructor is Python code (about 1 µs)."""

    __slots__ = ("allowed", "reason", "message", "state_version", "blocking_scope",
                 "decision_id")

    def __init__(self, allowed: bool, reason: DecisionReason, message: str,
                 state_version: int, blocking_scope: Scope | None, decision_id: str) -> None:
        self.allowed, self.reason, self.message = allowed, reason, message
        self.state_version, self.blocking_scope = state_version, blocking_scope
        self.decision_id = decision_id

    def __repr__(self) -> str:
        return (f"Decision(allowed={self.allowed}, reason={self.reason.name},"
                f" message={self.message!r}, state_version={self.state_version},"
                f" blocking_scope={self.blocking_scope}, decision_id={self.decision_id!r})")
