"""Plain Python values to ess.v1 messages: scopes as "KIND:id", enums by name or number."""

from __future__ import annotations

import re
from collections.abc import Sequence
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
    case of ASCII letters ("buy", "SIDE_BUY"), as the sidecar and the other clients read
    it (review 53a: Unicode's upper case read "ſymbol" as SYMBOL, "ſell" as SELL). An
    unknown name raises ValueError."""
    if isinstance(value, int):
        return value
    if not value.isascii():
        raise ValueError(f"unknown {enum_type.DESCRIPTOR.name}: {value!r}")
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


# The sidecar's bound on a reason (ess_sidecar/domain/scopes.py MAX_TEXT_LENGTH): it cuts
# one longer itself, but a reason over 4 MiB never reaches it (RESOURCE_EXHAUSTED).
MAX_REASON_CHARS = 1024
INT32 = range(-(1 << 31), 1 << 31)
NOTED_DIRECTIVES = 16  # as many unknown directives as the sidecar notes
MAX_DIRECTIVES = 64  # more are not read (a generator may never end)
_SURROGATES = re.compile("[\ud800-\udfff]")


def trigger_request(scope: ScopeLike, reason: object, reason_code: object, mode: object,
                    directives: object) -> pb.TriggerRequest:
    """The kill switch never refuses to stop because of what comes with it: only the scope
    is strict (ValueError, as the sidecar refuses it). A mode, reason code or directive is
    matched loosely (name or number, any case, with or without its prefix, `-` for `_`);
    an int32 number passes through (the sidecar notes one it does not know); an unknown
    name, another number or type is HALT, USER_INITIATED or left out, noted in the
    reason. The reason's invalid text (lone surrogates, bad UTF-8 bytes) becomes U+FFFD
    and it is cut to the sidecar's bound, notes included."""
    notes: list[str] = []
    mode_number = _trigger_enum(pb.TriggerMode, "TRIGGER_MODE_", mode)
    if mode_number is None:
        mode_number = pb.TRIGGER_MODE_HALT
        notes.append(f"mode {_shown(mode)} unknown: halted")
    code_number = _trigger_enum(pb.TriggerReason, "TRIGGER_REASON_", reason_code)
    if code_number is None:
        code_number = pb.TRIGGER_REASON_USER_INITIATED
        notes.append(f"reason_code {_shown(reason_code)} unknown: user-initiated")
    if directives is None:
        directives = ()
    elif isinstance(directives, (str, bytes, int)):
        directives = (directives,)  # one directive, not a list of them
    try:
        each = iter(directives)  # type: ignore[call-overload]
    except Exception:  # noqa: BLE001 - not a list of them: one directive
        each = iter((directives,))
    given: list[object] = []
    try:  # what came before an error is taken; a generator may never end
        for directive in each:
            if len(given) == MAX_DIRECTIVES:
                notes.append(f"directives past the first {MAX_DIRECTIVES} not read")
                break
            given.append(directive)
    except Exception:  # noqa: BLE001 - the stop goes on with what was read
        notes.append("directives could not all be read: the rest left out")
    numbers: list[int] = []
    unknown = 0
    for directive in given:
        number = _trigger_enum(pb.Directive, "DIRECTIVE_", directive)
        if number is not None:
            numbers.append(number)
        else:
            unknown += 1
            if unknown <= NOTED_DIRECTIVES:
                notes.append(f"directive {_shown(directive)} unknown: left out")
    if unknown > NOTED_DIRECTIVES:
        notes.append(f"{unknown - NOTED_DIRECTIVES} more unknown directives left out")
    return pb.TriggerRequest(scope=to_scope(scope), reason=bounded_reason(reason, notes),
                             reason_code=code_number, mode=mode_number, directives=numbers)


def bounded_reason(reason: object, notes: Sequence[str] = ()) -> str:
    """`reason` as valid text (U+FFFD for what is not), cut so that it and `notes` (in
    parentheses after it) fit MAX_REASON_CHARS."""
    try:
        if isinstance(reason, (bytes, bytearray)):
            reason = bytes(reason[:4 * MAX_REASON_CHARS]).decode("utf-8", "replace")
        elif isinstance(reason, str):
            reason = str.__str__(reason)  # a subclass's own methods are not trusted
        else:
            reason = "" if reason is None else _shown(reason, MAX_REASON_CHARS)
    except Exception:  # noqa: BLE001 - a reason that cannot be read: the stop goes on
        reason = f"<a reason of type {type(reason).__name__} that could not be read>"
    note = f" ({'; '.join(notes)})" if notes else ""
    note = _SURROGATES.sub("\ufffd", note[:MAX_REASON_CHARS // 2])
    room = MAX_REASON_CHARS - len(note)
    text = reason
    if len(reason) > room:
        cut = f" [… cut; {len(reason)} characters given]"
        text = reason[:room - len(cut)] + cut
    return _SURROGATES.sub("\ufffd", text) + note


def _trigger_enum(enum_type: Any, prefix: str, value: object) -> int | None:
    """The enum's number for a name (loosely) or an int32 number; None if neither, or if
    reading the value fails (a subclass of str or int whose methods raise)."""
    try:
        if isinstance(value, bool):
            return None
        if isinstance(value, int):
            return int(value) if int(value) in INT32 else None
        if isinstance(value, str) and str.__len__(value) <= 100:
            name = str.__str__(value).strip().upper().replace("-", "_").replace(" ", "_")
            for candidate in (name, prefix + name):
                if candidate in enum_type.keys():
                    return int(enum_type.Value(candidate))
    except Exception:  # noqa: BLE001 - unreadable is unknown: the stop goes on
        return None
    return None


def _shown(value: object, limit: int = 40) -> str:
    """A given value in a note: a name as it is, else its repr; at most `limit`
    characters."""
    try:
        text = value[:limit] if isinstance(value, str) else repr(value)
    except Exception:  # noqa: BLE001 - a note must not fail the stop
        text = f"<{type(value).__name__}>"
    return text if len(text) <= limit else text[:limit - 1] + "…"
