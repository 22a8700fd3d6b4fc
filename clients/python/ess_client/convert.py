"""Plain Python values to ess.v1 messages: scopes as "KIND:id", enums by name or number."""

from __future__ import annotations

from typing import Any

from ess.v1 import guard_pb2 as pb

ScopeLike = pb.Scope | str
EnumLike = int | str


def to_scope(scope: ScopeLike) -> pb.Scope:
    """Accept a pb.Scope, "GLOBAL" or "KIND:id" (e.g. "STRATEGY:momo"); ValueError otherwise."""
    if isinstance(scope, pb.Scope):
        return scope
    kind, _, scope_id = scope.partition(":")
    return pb.Scope(kind=to_enum(pb.ScopeKind, "SCOPE_KIND_", kind), id=scope_id)


def to_enum(enum_type: Any, prefix: str, value: EnumLike) -> int:
    """An enum number passes through; a name is accepted with or without its prefix, in any
    case ("buy", "SIDE_BUY"). An unknown name raises ValueError."""
    if isinstance(value, int):
        return value
    name = value.upper()
    return enum_type.Value(name if name.startswith(prefix) else prefix + name)


def to_side(value: EnumLike) -> int:
    """A check's side, as to_enum reads it; but a number that is no Side, or a bool,
    raises ValueError as an unknown name does, so that the order is denied unsent (as the
    other clients deny it), not sent for the sidecar to refuse."""
    if isinstance(value, bool) or (isinstance(value, int) and value not in pb.Side.values()):
        raise ValueError(f"unknown Side: {value!r}")
    return to_enum(pb.Side, "SIDE_", value)


def order_request(account: str, strategy: str, symbol: str, side: EnumLike, quantity: float,
                  price: float, reduce_only: bool, client_order_id: str,
                  replaces_client_order_id: str = "") -> pb.CheckOrderRequest:
    """The order as the sidecar sees it; the sidecar, not the client, validates the values."""
    return pb.CheckOrderRequest(
        account=account, strategy=strategy, symbol=symbol, side=to_side(side),
        quantity=quantity, price=price, reduce_only=reduce_only,
        client_order_id=client_order_id, replaces_client_order_id=replaces_client_order_id)
