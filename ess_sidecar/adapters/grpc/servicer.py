"""ess.v1.GuardService over grpc.aio: proto in, use case, proto out. No decisions here."""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncIterator, Callable, Generator
from typing import TypeVar

import grpc
from google.protobuf.message import DecodeError

from ess.v1 import guard_pb2 as pb
from ess.v1 import guard_pb2_grpc as pb_grpc

from ...domain.decisions import Decision
from ...domain.errors import GuardError, InvalidArgument, SubscriberTooSlow
from ...domain.heartbeats import MAX_TTL_S
from ...domain.ids import canonical_id
from ...domain.scopes import Scope, check_text
from ...domain.orders import Order
from ...domain.states import Transition
from ...ports import EventQuery, NoTelemetry
from ...service import Guard, Outcome, ScopeView
from .auth import PRINCIPAL, actor_of
from .errors import aborts_on_guard_errors, status_of
from .mapping import decision_to_proto, decision_to_stream_bytes, fill_from_proto, \
    fill_to_proto, heartbeat_to_watch, included_from_proto, latch_names_from_proto, \
    metric_from_proto, open_orders_from_proto, order_from_proto, positions_from_proto, \
    registration_to_proto, scope_from_proto, scope_state_to_proto, scope_to_proto, seconds, \
    timestamp, transition_to_event, transition_to_watch, trigger_from_proto, \
    update_from_proto, working_order_to_proto
from . import wire
from .thresholds import thresholds_to_proto

log = logging.getLogger(__name__)

INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT.value[0]
# On a unary check the sidecar answers with an error because it failed closed (GLOBAL is
# tripped): the sidecar was heard, so a client's fail_open must not take the error for an
# unreachable sidecar (review 37k: UNAVAILABLE, a journal record that failed, was traded on).
FAILED_CLOSED = (("ess-failed-closed", "1"),)
STREAM_REQUEST = pb.CheckOrderStreamRequest.DESCRIPTOR
MAX_PAGE_SIZE = 1000
MAX_WORKING_LISTED = 10_000  # GetState lists at most this many working orders
MAX_HEARTBEATS_LISTED = 1_000  # and heartbeat registrations (review 56c: 10,000 of 100,000
# held the loop 113 ms)
T = TypeVar("T")
STATE_CHUNK = 500  # GetState gives the event loop back after mapping this many scopes
# A walk's work (a spelled-alike walk, a heartbeat listing: _walked), then its rest
WALK_SLICE_S, WALK_REST_S = 0.0005, 0.001


class GuardServicer(pb_grpc.GuardServiceServicer):
    def __init__(self, guard: Guard, watch_heartbeat_s: float,
                 refused: Callable[[grpc.StatusCode, str, str], None] | None = None,
                 fanout: Callable[[grpc.aio.ServicerContext], bool] | None = None) -> None:
        """`refused(code, why, peer)`: a call the domain refused to its caller (another
        executor's heartbeat), counted and logged as the authenticator's refusals are.
        `fanout(context)`: whether a WatchState is the fan-out process's own (its feed or
        a snapshot), which takes one of the places kept for it."""
        self._guard = guard
        self._fanout = fanout or (lambda context: False)
        self.telemetry = guard.telemetry
        self.refused = refused or (lambda code, why, peer: None)
        self._check = guard.check if isinstance(guard.telemetry, NoTelemetry) \
            else _timed(guard.check, guard.telemetry.decided)
        self._watch_heartbeat_s = watch_heartbeat_s
        # One transition goes to every watcher: built and serialized once (about 20 µs),
        # not once per watcher. Keyed by version, kind and epoch; the transition is kept
        # with its bytes and compared, so a hit is always the very same transition.
        self._watch_messages: dict[tuple[int, int, str], tuple[Transition, bytes]] = {}
        # GetState: one answer built at a time, and each scope's serialized part of the
        # last answer, with the view it was made of (see GetState).
        self._state_answers = asyncio.Lock()
        self._walks = asyncio.Lock()  # spelled-alike walks, one at a time
        self._scope_parts: dict[Scope, tuple[ScopeView, bytes]] = {}

    async def CheckOrder(self, request: pb.CheckOrderRequest,
                         context: grpc.aio.ServicerContext) -> pb.CheckOrderResponse:
        if not self._guard.deciding:
            await context.abort(grpc.StatusCode.UNAVAILABLE, STOPPED_DECIDING)
        if self._guard.unplanned:  # a command came first: judge after it, as it came
            await self._guard.until_planned()
        try:
            decision = self._check(order_from_proto(request))
        except InvalidArgument as error:
            self.telemetry.invalid_request(error.field)
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error))
            raise
        except GuardError as error:  # its journal record failed: GLOBAL is tripped already
            context.set_trailing_metadata(FAILED_CLOSED)
            await context.abort(status_of(error), str(error))
            raise
        except Exception as error:  # a fault of ours: never gRPC's UNKNOWN, never trusted
            context.set_trailing_metadata(FAILED_CLOSED)
            await context.abort(grpc.StatusCode.INTERNAL,
                                self._guard.internal_fault("CheckOrder", error))
            raise
        self.telemetry.annotate(decision)
        return decision_to_proto(decision)

    async def CheckOrderStream(self, request_iterator: object,
                               context: grpc.aio.ServicerContext) -> None:
        try:
            await self._check_stream(context)
        except grpc.aio.InternalError as error:  # an answer grpc could not send: the
            # client went with it held by flow control (review 43c: grpc logged an ERROR
            # with a traceback for each such stream, which any client could cause)
            log.info("CheckOrderStream ended: an answer could not be sent (%s)", error)

    async def _check_stream(self, context: grpc.aio.ServicerContext) -> None:
        """The hot path. Registered to receive raw bytes and driven by read/write rather
        than async generators: one await per message each way, nothing stacked between.
        A request that is bad input is answered with an error for its request id and the
        stream goes on, a string that is not UTF-8 included (protobuf refuses the whole
        message for it: wire.py names the field); bytes that are not protobuf end the
        stream.
        Headers go out at once: a client can tell the stream is open before its first
        check, so that check pays for a message, not for setting the stream up."""
        check, read, write, invalid = self._check, context.read, context.write, \
            self.telemetry.invalid_request
        guard = self._guard
        answer = pb.CheckOrderStreamResponse()  # this stream's, filled anew for each answer
        await context.send_initial_metadata(())
        while (raw := await read()) is not grpc.aio.EOF:
            try:
                request = pb.CheckOrderStreamRequest.FromString(raw)
            except DecodeError:
                if (field := wire.invalid_utf8(raw, STREAM_REQUEST)) is None:
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                        "request: not a valid ess.v1.CheckOrderStreamRequest")
                invalid(field)
                await write(pb.CheckOrderStreamResponse(
                    request_id=wire.request_id(raw), error=pb.RequestError(
                        code=INVALID_ARGUMENT, field=field,
                        message=f"{field}: not valid UTF-8")))
                continue
            if not guard.deciding:  # the server stopped taking calls, Triggers included
                await context.abort(grpc.StatusCode.UNAVAILABLE, STOPPED_DECIDING)
            if guard.unplanned:  # a command came first: judge after it, as it came
                await guard.until_planned()
            try:
                decision = check(order_from_proto(request.order))
                # Serialized here, before the await: the message is reused for the next
                # answer. A fault in it is ours, answered as one (review 40a: the stream
                # ended UNKNOWN, which a fail-open client took for a network fault).
                data = decision_to_stream_bytes(answer, request.request_id, decision)
            except InvalidArgument as error:
                field, message = (f"order.{error.field}", f"order.{error}") \
                    if request.HasField("order") else ("order", "order: required")
                invalid(field)
                await write(pb.CheckOrderStreamResponse(
                    request_id=request.request_id, error=pb.RequestError(
                        code=INVALID_ARGUMENT, field=field, message=message)))
                continue
            except GuardError as error:  # its journal record failed: GLOBAL tripped already
                await write(pb.CheckOrderStreamResponse(
                    request_id=request.request_id, error=pb.RequestError(
                        code=status_of(error).value[0], message=str(error))))
                continue
            except Exception as error:  # a fault of ours: never trusted
                await write(pb.CheckOrderStreamResponse(
                    request_id=request.request_id, error=pb.RequestError(
                        code=grpc.StatusCode.INTERNAL.value[0],
                        message=guard.internal_fault("CheckOrderStream", error))))
                continue
            await write(data)

    @aborts_on_guard_errors
    async def ReportMetric(self, request: pb.ReportMetricRequest,
                           context: grpc.aio.ServicerContext) -> pb.ReportMetricResponse:
        guard = self._guard
        outcome = await guard.run_async(guard.report_metric_steps(
            scope_from_proto(request.scope), metric_from_proto(request.metric), request.value,
            actor_of(context)))
        return pb.ReportMetricResponse(state=outcome.state, tripped=outcome.tripped,
                                       state_version=outcome.version)

    @aborts_on_guard_errors
    async def ReportFill(self, request: pb.ReportFillRequest,
                         context: grpc.aio.ServicerContext) -> pb.ReportFillResponse:
        guard = self._guard
        return fill_to_proto(await guard.run_async(guard.report_fill_steps(
            fill_from_proto(request), actor_of(context))))

    @aborts_on_guard_errors
    async def ReportOrderUpdate(self, request: pb.ReportOrderUpdateRequest,
                                context: grpc.aio.ServicerContext,
                                ) -> pb.ReportOrderUpdateResponse:
        update = update_from_proto(request)
        known = await self._guard.call_async(lambda: self._guard.report_order_update(update))
        return pb.ReportOrderUpdateResponse(known=known)

    @aborts_on_guard_errors
    async def SyncPositions(self, request: pb.SyncPositionsRequest,
                            context: grpc.aio.ServicerContext) -> pb.SyncPositionsResponse:
        guard = self._guard
        lengths = len(request.positions), len(request.open_orders), len(request.included_fills)
        guard.check_snapshot_length(*lengths)  # before mapping them
        room = guard.snapshot_room(sum(lengths))
        try:
            positions = positions_from_proto(request)
            open_orders, included = open_orders_from_proto(request), included_from_proto(request)
        except BaseException:
            room()
            raise
        count = await guard.call_async(lambda: guard.sync_positions(
            request.account, request.equity, positions, open_orders, included), finished=room)
        working = guard.working_count(request.account)
        return pb.SyncPositionsResponse(positions=count, working_orders=working)

    @aborts_on_guard_errors
    async def ClearWorkingOrders(self, request: pb.ClearWorkingOrdersRequest,
                                 context: grpc.aio.ServicerContext,
                                 ) -> pb.ClearWorkingOrdersResponse:
        guard, actor = self._guard, actor_of(context)
        guard.check_list_length("client_order_ids", len(request.client_order_ids))  # first:
        # a list of millions was built on the loop before the cap refused it (review 43c)
        cleared = await guard.call_async(lambda: guard.clear_working_orders(
            request.account, list(request.client_order_ids), request.reason, actor))
        return pb.ClearWorkingOrdersResponse(cleared=cleared)

    @aborts_on_guard_errors
    async def Heartbeat(self, request: pb.HeartbeatRequest,
                        context: grpc.aio.ServicerContext) -> pb.HeartbeatResponse:
        scope = scope_from_proto(request.scope)
        ttl_s = request.ttl_ms / 1000.0
        if not request.deregister and not 0 < ttl_s <= MAX_TTL_S:
            raise InvalidArgument("ttl_ms", f"must be from 1 to {int(MAX_TTL_S * 1000)}")
        guard = self._guard
        outcome = await guard.run_async(guard.heartbeat_steps(request.executor_id, scope, ttl_s,
                                                              request.deregister,
                                                              PRINCIPAL.get()))
        response = pb.HeartbeatResponse(state=outcome.state, state_version=outcome.version)
        if request.deregister:  # whether there was one to remove (review 56d)
            response.deregistered = outcome.deregistered
        return response

    @aborts_on_guard_errors
    async def Trigger(self, request: pb.TriggerRequest,
                      context: grpc.aio.ServicerContext) -> pb.TriggerResponse:
        guard = self._guard
        outcome = await guard.run_async(guard.trigger_steps(
            trigger_from_proto(request, actor_of(context))))
        return _state_response(pb.TriggerResponse, outcome)

    @aborts_on_guard_errors
    async def Reset(self, request: pb.ResetRequest,
                    context: grpc.aio.ServicerContext) -> pb.ResetResponse:
        scope = scope_from_proto(request.scope)
        reason = check_text(request.reason, "reason", required=True)
        guard = self._guard
        guard.check_list_length("latches", len(request.latches))
        latches = latch_names_from_proto(request.latches)
        principal = PRINCIPAL.get()
        outcome = await guard.run_async(guard.reset_steps(
            scope, reason, request.force, actor_of(context), latches, request.expected_version,
            principal.credential if principal is not None else "", request.expected_epoch))
        response = _state_response(pb.ResetResponse, outcome)
        if outcome.pending_reset is not None:
            response.pending_approval = True
            response.requested_by = outcome.pending_reset.requested_by
            response.approval_expires_at.CopyFrom(timestamp(outcome.pending_reset.expires_at))
        else:
            response.requested_by = outcome.requested_by
        return response

    @aborts_on_guard_errors
    async def GetState(self, request: pb.GetStateRequest,
                       context: grpc.aio.ServicerContext) -> bytes:
        """Every restricted scope, as of one moment. An answer can be tens of megabytes
        (20,000 tripped scopes with 1 KB reasons: 22 MB, 0.8 s to map), so it is built
        one at a time, giving the event loop back every STATE_CHUNK scopes, and each
        scope's part is kept from the last answer while its view is the same: a Trigger
        waits for the state to be read (Guard.scope_views: about 20 ms at 20,000 scopes)
        and a chunk, not for every answer asked before it (review 49a: 8 calls in flight
        held one 1.5 s, 64 held one 11 to 17 s). The state is read at once, immutable
        transitions, so what is mapped later is still that moment's."""
        guard = self._guard
        account = canonical_id(request.working_orders_account, "working_orders_account") \
            if request.working_orders_account else None
        alike = await self._spelled_alike(scope_from_proto(request.spelled_like,
                                                           "spelled_like")) \
            if request.HasField("spelled_like") else None
        listed = await self._walked(guard.heartbeats(MAX_HEARTBEATS_LISTED)) \
            if request.include_heartbeats else None
        async with self._state_answers:
            views = guard.scope_views()
            rest = pb.GetStateResponse(
                state_version=guard.state_version(),
                thresholds=thresholds_to_proto(guard.config),
                working_order_counts=[pb.WorkingOrderCount(account=a, working_orders=n)
                                      for a, n in sorted(guard.working_counts().items())])
            if request.include_working_orders:
                working = itertools.islice(guard.working_orders(account), MAX_WORKING_LISTED)
                rest.working_orders.extend(working_order_to_proto(r) for r in working)
            if listed is not None:
                rest.heartbeats.extend(registration_to_proto(*each) for each in listed)
                rest.heartbeats_registered = guard.heartbeats_registered()
            if alike is not None:
                rest.spelled_alike.CopyFrom(alike)
            parts, kept, fresh = [rest.SerializeToString()], self._scope_parts, {}
            for index, view in enumerate(views, 1):
                scope = view.current.scope
                part = kept.get(scope)
                if part is None or part[0] != view:
                    part = (view, _scope_part(view))
                fresh[scope] = part
                parts.append(part[1])
                if index % STATE_CHUNK == 0:
                    await asyncio.sleep(0)
            self._scope_parts = fresh  # only what this answer held: bounded by the state
        return b"".join(parts)

    async def _spelled_alike(self, scope: Scope) -> pb.SpelledAlike:
        """What the sidecar knows spelled like `scope` (GuardEngine.spelled_alike), walked
        as `_walked` walks (review 56a: walked in the Trigger's answer, 100,000 long ids
        held stops and checks up to 3 s; review 56c: walked in slices of 250 ids with no
        rest, and many at once, they still did)."""
        known, alike, partial = await self._walked(self._guard.spelled_alike(scope))
        return pb.SpelledAlike(scope=scope_to_proto(scope), unseen=not known,
                               alike=[scope_to_proto(s) for s in alike], partial=partial)

    async def _walked(self, walk: Generator[None, None, T]) -> T:
        """What a walk over large state returns (a spelled-alike walk, a heartbeat
        listing): one walk at a time, in slices of WALK_SLICE_S, each followed by
        WALK_REST_S in which the event loop idles (gRPC's threads and the store's get the
        GIL), so a check or a stop waits for a slice at most, and many askers wait for
        each other, not the loop."""
        async with self._walks:
            while True:
                ends = time.perf_counter() + WALK_SLICE_S
                try:
                    next(walk)  # a step at least, however short a slice
                    while time.perf_counter() < ends:
                        next(walk)
                except StopIteration as done:
                    return done.value
                await asyncio.sleep(WALK_REST_S)

    @aborts_on_guard_errors
    async def ListEvents(self, request: pb.ListEventsRequest,
                         context: grpc.aio.ServicerContext) -> pb.ListEventsResponse:
        query = _event_query(request)
        events = await self._guard.events_async(query)
        more = len(events) == query.limit and events[-1].version > 1
        return pb.ListEventsResponse(events=[transition_to_event(t) for t in events],
                                     next_page_token=str(events[-1].version) if more else "")

    def _watch_message(self, transition: Transition, kind: int, epoch: str) -> bytes:
        """The serialized WatchStateResponse for a transition (handlers.py sends bytes as
        they are)."""
        key = (transition.version, kind, epoch)
        kept = self._watch_messages.get(key)
        if kept is not None and kept[0] is transition:
            return kept[1]
        message = transition_to_watch(transition, kind, epoch).SerializeToString()
        messages = self._watch_messages
        messages[key] = (transition, message)
        if len(messages) > WATCH_MESSAGES_KEPT:
            del messages[next(iter(messages))]  # the oldest
        return message

    async def WatchState(self, request: pb.WatchStateRequest,
                         context: grpc.aio.ServicerContext,
                         ) -> AsyncIterator[pb.WatchStateResponse | bytes]:
        subscription = None
        try:
            guard, internal = self._guard, self._fanout(context)
            guard.check_list_length("scopes", len(request.scopes))
            guard.admit_watcher(len(request.scopes), internal)  # before its scopes are mapped
            scopes = [scope_from_proto(s, f"scopes[{i}]") for i, s in enumerate(request.scopes)]
            start = await guard.watch_async(scopes, request.from_version, request.epoch,
                                            internal)
            subscription = start.subscription
            kind = pb.WATCH_EVENT_KIND_SNAPSHOT if start.is_snapshot \
                else pb.WATCH_EVENT_KIND_TRANSITION
            # Each message in the epoch of the version it brings the watcher to, not the
            # epoch when it is sent: a fail-closed trip may have come between (review 36f).
            epoch = guard.epoch_of(start.version)
            for transition in start.initial:
                yield self._watch_message(transition, kind, epoch)
            yield pb.WatchStateResponse(kind=pb.WATCH_EVENT_KIND_SNAPSHOT_END,
                                        version=start.version, epoch=epoch)
            while True:
                transition = await subscription.next(self._watch_heartbeat_s)
                if transition is None:
                    version = guard.state_version()
                    yield heartbeat_to_watch(version, guard.now(), guard.epoch_of(version))
                else:
                    yield self._watch_message(transition, pb.WATCH_EVENT_KIND_TRANSITION,
                                              guard.epoch_of(transition.version))
        except GuardError as error:
            if isinstance(error, SubscriberTooSlow):
                self.telemetry.subscriber_dropped()
            elif isinstance(error, InvalidArgument):
                self.telemetry.invalid_request(error.field)
            await context.abort(status_of(error), str(error))
        finally:
            if subscription is not None:
                self._guard.unsubscribe(subscription)


WATCH_MESSAGES_KEPT = 1024  # the most recent transitions' WatchState messages
STOPPED_DECIDING = "the sidecar is stopping: it takes no new call, not even a Trigger, so it" \
    " answers no check either; treat the order as denied"


def _timed(check: Callable[[Order], Decision],
           decided: Callable[[Decision, int], None]) -> Callable[[Order], Decision]:
    """check, telling telemetry each decision and how long it took (telemetry on only)."""
    clock = time.perf_counter_ns

    def timed_check(order: Order) -> Decision:
        start = clock()
        decision = check(order)
        decided(decision, clock() - start)
        return decision
    return timed_check


def _scope_part(view: ScopeView) -> bytes:
    """A GetStateResponse holding this one scope, serialized: answers joined byte to byte
    are one answer holding all their scopes (protobuf merges a repeated field's parts)."""
    return pb.GetStateResponse(scopes=[scope_state_to_proto(
        view.current, view.reset_allowed_at, view.pending_reset, view.unstored, view.epoch,
        view.rearming)],
    ).SerializeToString()


def _state_response(response_type: type, outcome: Outcome):  # noqa: ANN202
    return response_type(state=outcome.state, state_version=outcome.version)


def _event_query(request: pb.ListEventsRequest) -> EventQuery:
    page_size = request.page_size or 100
    if page_size > MAX_PAGE_SIZE:
        raise InvalidArgument("page_size", f"must be at most {MAX_PAGE_SIZE}")
    token = request.page_token
    # isascii: "²".isdigit() is true but int() refuses it; the bounds: SQLite integers are
    # 64-bit, and a larger one would fail the query rather than the request; int() refuses
    # more than 4,300 digits (review 34: ValueError, answered UNKNOWN).
    if token and not (len(token) <= 19 and token.isascii() and token.isdigit()
                      and int(token) < 2**63):
        raise InvalidArgument("page_token", "is not a token from a previous page")
    return EventQuery(
        scope=scope_from_proto(request.scope) if request.HasField("scope") else None,
        since=seconds(request.since, "since") if request.HasField("since") else None,
        until=seconds(request.until, "until") if request.HasField("until") else None,
        before_version=int(token) if token else None,
        limit=page_size)
