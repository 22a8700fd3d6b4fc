"""proto <-> domain, in one place. Unknown enum values are bad input, named by field."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from google.protobuf.timestamp_pb2 import Timestamp

from ess.v1 import guard_pb2 as pb

from ...domain.approvals import PendingReset
from ...domain.breakers import Metric
from ...domain.commands import Trigger
from ...domain.decisions import Decision
from ...domain.errors import InvalidArgument
from ...domain.orders import Fill, IncludedFills, OpenOrder, Order, OrderStatus, OrderUpdate, \
    PositionSnapshot, Side
from ...domain.heartbeats import Registration
from ...domain.working import OrderRecord
from ...service import FillReport
from ...domain.scopes import MAX_TEXT_LENGTH, Scope, ScopeKind, check_text, make_scope, \
    sanitized_text
from ...domain.states import SEVERITY, Directive, State, Transition, TriggerMode, TriggerReason

_SIDES = {pb.SIDE_BUY: Side.BUY, pb.SIDE_SELL: Side.SELL}
_ALLOWED_REASON = pb.DECISION_REASON_ALLOWED


def enum_from_proto(enum: type, value: int, field: str, default: object = None):  # noqa: ANN201
    """The domain enum member for a proto value; 0 (UNSPECIFIED) gives `default`."""
    if value == 0 and default is not None:
        return default
    try:
        return enum(value)
    except ValueError:
        raise InvalidArgument(field, f"unknown or unspecified value {value}") from None


def side_from_proto(value: int, field: str = "side") -> Side:
    side = _SIDES.get(value)
    if side is None:
        raise InvalidArgument(field, f"must be SIDE_BUY or SIDE_SELL, got {value}")
    return side


def order_from_proto(m: pb.CheckOrderRequest) -> Order:
    side = _SIDES.get(m.side)
    if side is None:
        side = side_from_proto(m.side)
    # What Order(...) does, without its constructor's Python frame (about 0.5 µs a check).
    return _new_tuple(Order, (m.account, m.strategy, m.symbol, side, m.quantity, m.price,
                              m.reduce_only, m.client_order_id, m.replaces_client_order_id))


_new_tuple = tuple.__new__


def decision_to_proto(d: Decision) -> pb.CheckOrderResponse:
    response = pb.CheckOrderResponse()
    write_decision(response, d)
    return response


def decision_to_stream_bytes(response: pb.CheckOrderStreamResponse, request_id: int,
                             d: Decision) -> bytes:
    """The stream's answer, serialized. `response` is the stream's own message, reused for
    every answer: filled in place and serialized at once (no copy of a nested message)."""
    response.Clear()
    response.request_id = request_id
    write_decision(response.decision, d)
    return response.SerializeToString()


def write_decision(response: pb.CheckOrderResponse, d: Decision) -> None:
    """Fill an empty CheckOrderResponse, field by field (cheaper than keyword arguments)."""
    if d.allowed:
        response.allowed = True
        response.reason = _ALLOWED_REASON
    else:
        response.reason = d.reason
        response.message = d.message
        scope = d.blocking_scope
        if scope is not None:
            blocking = response.blocking_scope
            blocking.kind = scope.kind
            blocking.id = scope.id
    response.state_version = d.state_version
    response.decision_id = d.decision_id


def fill_from_proto(m: pb.ReportFillRequest) -> Fill:
    return Fill(m.account, m.strategy, m.symbol, side_from_proto(m.side), m.quantity, m.price,
                m.client_order_id, m.fill_id)


def fill_to_proto(report: FillReport) -> pb.ReportFillResponse:
    return pb.ReportFillResponse(
        position=report.fill.position, duplicate=report.fill.duplicate,
        unchecked=bool(report.fill.unchecked), account_state=report.account.state,
        state_version=report.account.version)


def update_from_proto(m: pb.ReportOrderUpdateRequest) -> OrderUpdate:
    return OrderUpdate(m.account, m.client_order_id,
                       enum_from_proto(OrderStatus, m.status, "status"),
                       m.remaining_quantity if m.HasField("remaining_quantity") else None,
                       m.filled_quantity if m.HasField("filled_quantity") else None)


def positions_from_proto(m: pb.SyncPositionsRequest) -> list[PositionSnapshot]:
    return [PositionSnapshot(p.strategy, p.symbol, p.quantity, p.mark_price)
            for p in m.positions]


def open_orders_from_proto(m: pb.SyncPositionsRequest) -> list[OpenOrder] | None:
    """None when the snapshot says nothing of orders (none listed, not marked complete)."""
    if not m.open_orders and not m.open_orders_complete:
        return None
    return [OpenOrder(o.client_order_id, o.strategy, o.symbol,
                      side_from_proto(o.side, f"open_orders[{i}].side"),
                      o.remaining_quantity, o.price) for i, o in enumerate(m.open_orders)]


def included_from_proto(m: pb.SyncPositionsRequest) -> list[IncludedFills]:
    return [IncludedFills(c.client_order_id, c.filled_quantity) for c in m.included_fills]


def working_order_to_proto(r: OrderRecord) -> pb.WorkingOrder:
    return pb.WorkingOrder(account=r.account, client_order_id=r.client_order_id,
                           strategy=r.strategy, symbol=r.symbol, side=r.side,
                           quantity=r.quantity - r.crossing_room,  # (review 39a)
                           remaining_quantity=r.remaining, price=r.price,
                           since=timestamp(r.time), decision_id=r.decision_id)


def registration_to_proto(r: Registration, last_beat: float | None,
                          lapsed: bool) -> pb.HeartbeatRegistration:
    registration = pb.HeartbeatRegistration(
        executor_id=r.executor_id, scope=scope_to_proto(r.scope),
        ttl_ms=round(r.ttl_s * 1000), lapsed=lapsed, owner=r.owner)
    if last_beat is not None:
        registration.last_beat.CopyFrom(timestamp(last_beat))
    return registration


def scope_from_proto(m: pb.Scope, field: str = "scope") -> Scope:
    kind = enum_from_proto(ScopeKind, m.kind, f"{field}.kind")
    return make_scope(kind, m.id, field)


def scope_to_proto(scope: Scope) -> pb.Scope:
    return pb.Scope(kind=scope.kind, id=scope.id)


def metric_from_proto(value: int) -> Metric:
    return enum_from_proto(Metric, value, "metric")


def trigger_mode_from_proto(value: int) -> TriggerMode:
    return enum_from_proto(TriggerMode, value, "mode", default=TriggerMode.HALT)


def trigger_reason_from_proto(value: int) -> TriggerReason:
    return enum_from_proto(TriggerReason, value, "reason_code",
                           default=TriggerReason.USER_INITIATED)


# Every kind of directive a Trigger names is taken, found by one pass in C; only the
# first few values are noted one by one if unknown. Mapping and noting each of millions
# held the event loop, and every call, a Trigger of GLOBAL too, waited 20 s (review 34).
DIRECTIVE_VALUES = frozenset(int(directive) for directive in Directive)
NOTED_DIRECTIVES = 16


def trigger_from_proto(m: pb.TriggerRequest, actor: str) -> Trigger:
    """A kill switch never refuses to stop because of what comes with it: only the scope
    must be valid. An unknown mode halts (the stricter), an unknown reason code is
    USER_INITIATED, unknown directives are left out, each said in the reason; the reason
    is sanitised and bounded (sanitized_text)."""
    scope = scope_from_proto(m.scope)
    notes = []
    try:
        mode = trigger_mode_from_proto(m.mode)
    except InvalidArgument:
        mode, notes = TriggerMode.HALT, [*notes, f"unknown mode {m.mode}: HALT"]
    try:
        code = trigger_reason_from_proto(m.reason_code)
    except InvalidArgument:
        code = TriggerReason.USER_INITIATED
        notes.append(f"unknown reason_code {m.reason_code}: USER_INITIATED")
    directives = [Directive(value) for value in sorted(DIRECTIVE_VALUES.intersection(
        m.directives))]
    notes += [f"unknown directive {value} left out" for value in
              dict.fromkeys(m.directives[:NOTED_DIRECTIVES]) if value not in DIRECTIVE_VALUES]
    if len(m.directives) > NOTED_DIRECTIVES:
        notes.append(f"{len(m.directives) - NOTED_DIRECTIVES} more directives: the known"
                     " kinds among them taken, the rest left out")
    reason = m.reason.strip() or code.name.lower().replace("_", " ")
    # The notes are kept whole, the caller's text cut to leave them room (review 51a: a
    # long reason cut them off, and the record no longer said what was substituted).
    said = f" ({'; '.join(notes)})" if notes else ""
    reason = sanitized_text(reason, MAX_TEXT_LENGTH - len(said)) + said
    return Trigger(scope, mode, reason, code, tuple(directives), actor, m.drill)


def timestamp(seconds: float) -> Timestamp:
    stamp = Timestamp()
    stamp.FromNanoseconds(int(seconds * 1e9))
    return stamp


def seconds(stamp: Timestamp, field: str) -> float:
    """Seconds since the epoch; InvalidArgument naming `field` for a Timestamp outside
    its documented range (0001-01-01 to 9999-12-31, nanos in [0, 1e9))."""
    if not _in_range(stamp):
        raise InvalidArgument(field, "is not a valid Timestamp: seconds must be within"
                              " 0001-01-01..9999-12-31 and nanos within [0, 999999999]")
    return stamp.ToNanoseconds() / 1e9


def _in_range(stamp: Timestamp) -> bool:
    return _MIN_SECONDS <= stamp.seconds <= _MAX_SECONDS and 0 <= stamp.nanos < 1_000_000_000


_MIN_SECONDS, _MAX_SECONDS = -62_135_596_800, 253_402_300_799


def transition_to_watch(t: Transition, kind: int, epoch: str) -> pb.WatchStateResponse:
    return pb.WatchStateResponse(
        kind=kind, scope=scope_to_proto(t.scope), state=t.state,
        previous_state=t.previous, version=t.version, reason=t.reason, actor=t.actor,
        time=timestamp(t.time), cause=t.cause, directives=t.directives, epoch=epoch,
        drill=t.drill, latches=latches_to_proto(t))


def transition_to_event(t: Transition) -> pb.Event:
    return pb.Event(
        version=t.version, time=timestamp(t.time), scope=scope_to_proto(t.scope),
        state=t.state, previous_state=t.previous, reason=t.reason, actor=t.actor,
        cause=t.cause, breaker=t.breaker, reason_code=t.reason_code or 0,
        directives=t.directives, forced=t.forced, approved_by=t.approved_by, drill=t.drill,
        latches=latches_to_proto(t))


def latches_to_proto(t: Transition) -> list[pb.Latch]:
    return [pb.Latch(name=latch.name, state=latch.state, since=timestamp(latch.since),
                     version=latch.version) for latch in t.held()]


def latch_names_from_proto(names: Iterable[str]) -> tuple[str, ...]:
    """Latch names as given: each checked as text (bounded, no control characters); one
    the scope does not hold is refused by the engine, naming latches[i]."""
    return tuple(check_text(name, f"latches[{i}]", required=True)
                 for i, name in enumerate(names))


def scope_state_to_proto(t: Transition, reset_allowed_at: float | None,
                         pending: PendingReset | None = None,
                         unstored: Transition | None = None,
                         epoch: str = "", rearming: Sequence[str] = ()) -> pb.ScopeState:
    """`unstored`: a trip of the scope whose write failed; it denies, and no reset lifts
    it in this process (`t` itself when it is all that restricts the scope). `epoch`:
    that of t's version (Guard.epoch_of). `rearming`: the latches time lifts."""
    state = pb.ScopeState(
        scope=scope_to_proto(t.scope), state=t.state, reason=t.reason, since=timestamp(t.time),
        actor=t.actor, cause=t.cause, breaker=t.breaker, reason_code=t.reason_code or 0,
        directives=t.directives, version=t.version, drill=t.drill,
        latches=latches_to_proto(t), epoch=epoch, auto_rearming_latches=rearming)
    if t.rearm_at is not None and unstored is None:  # review 41f: with a trip not stored
        state.rearm_at.CopyFrom(timestamp(t.rearm_at))  # beside it, it re-arms at no time
    if unstored is not None:
        note = (f"a drill's trip not recorded (version {unstored.version}) denies until a"
                " reset of the scope") if unstored.drill else (
            f"a trip not recorded (version {unstored.version}: {unstored.reason})"
            " denies until what tripped it is sent again or the sidecar restarts"
            " (which keeps it if the state file has it); no reset lifts it")
        state.reason = note if unstored == t else f"{t.reason}; also {note}"
        if SEVERITY[unstored.state] > SEVERITY[t.state]:
            state.state = unstored.state
        if unstored.drill and reset_allowed_at is not None:  # a reset lifts a drill's
            state.reset_allowed_at.CopyFrom(timestamp(reset_allowed_at))  # (review 42l)
    elif t.state in (State.TRIPPED, State.REDUCE_ONLY) and reset_allowed_at is not None:
        state.reset_allowed_at.CopyFrom(timestamp(reset_allowed_at))
    if pending is not None:  # what the second operator approves (review 49f)
        state.reset_requested_by = pending.requested_by
        state.reset_approval_expires_at.CopyFrom(timestamp(pending.expires_at))
        state.reset_request_reason = pending.reason
        state.reset_request_force = pending.force
        state.reset_request_latches.extend(pending.latches)
    return state


def heartbeat_to_watch(version: int, now: float, epoch: str) -> pb.WatchStateResponse:
    return pb.WatchStateResponse(kind=pb.WATCH_EVENT_KIND_HEARTBEAT, version=version,
                                 time=timestamp(now), epoch=epoch)
