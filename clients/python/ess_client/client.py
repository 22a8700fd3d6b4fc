"""GuardClient: fail-closed order checks over one long-lived stream, plus thin RPC wrappers."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import math
import numbers
import os
import re
import secrets
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any

import grpc

from ess.v1 import guard_pb2 as pb
from ess.v1 import guard_pb2_grpc as pb_grpc

from .convert import (EnumLike, ScopeLike, order_request, to_enum, to_scope,
                      trigger_request)
from .failures import FailurePolicy, log
from .heartbeat import Heartbeat
from .stream import SETTLE_IDLE_STEPS, SETTLE_STEP_S, CheckStream, failure_of
from .verdict import Failure, Verdict, failed, late, verdict_from_answer

# The sidecar's budget on a Unix socket is p99.9 <= 1 ms. Measured through this client on
# a loaded 2-core host (p50 ~0.37 ms, p99.9 ~0.7-2 ms), about 1 check in 20 000 took over
# 5 ms (a false denial at 5 ms) and about 1 in 60 000 over 10 ms. 10 ms keeps false
# denials rare while a hung sidecar still costs each order at most 10 ms.
DEFAULT_CHECK_TIMEOUT_S = 0.010
# Not the hot path; a Trigger is fsynced before it is acknowledged.
DEFAULT_RPC_TIMEOUT_S = 1.0
MAX_RPC_TIMEOUT_S = 86_400.0  # a day: longer is a typo, and gRPC cannot carry 1e10 s
MAX_HEARTBEAT_TTL_MS = 3_600_000  # the contract's: 1 ms to 1 hour
# After this long without any answer the stream is taken for hung and replaced.
DEFAULT_STALL_AFTER_S = 1.0
# Trailing metadata of a unary check the sidecar answered failing closed: never fail-open.
FAILED_CLOSED = "ess-failed-closed"
# gRPC's default reconnect backoff grows to 120 s; a same-host sidecar restarted by its
# supervisor should be found again within a second.
CHANNEL_OPTIONS = (("grpc.initial_reconnect_backoff_ms", 50),
                   ("grpc.min_reconnect_backoff_ms", 50),
                   ("grpc.max_reconnect_backoff_ms", 1000),
                   # GetState in a storm (thousands of tripped scopes) can exceed 4 MiB
                   ("grpc.max_receive_message_length", 256 << 20),
                   # A connection of this client's own: gRPC shares one per process among
                   # channels alike, so a second client for stops shared the first's calls
                   # and the sidecar's cap on them (server.max_calls_per_connection; review
                   # 44f: its Triggers were refused)
                   ("grpc.use_local_subchannel_pool", 1))


# How many times this process's line has forked since this module was loaded, counted in
# the child, and how many clients it has made. A client made before a fork shares its
# connection, its stream and its order ids with the other process (review 53b: a child
# checking through it took the parent's answers, so the parent's checks waited out their
# deadlines, and a fail-open parent allowed orders the sidecar denied; both made the same
# client_order_ids). Nor does gRPC survive fork(): a new client in a child forked after
# one was made stalled the parent's checks the same way (review 53c), so none is made.
_FORKS = [0]
_MADE = [0]
_FORKED_FROM_GRPC = [False]
_LEFT_IN_THE_PARENT: list[object] = []  # a forked child's closed clients' gRPC objects


def _forked() -> None:
    _FORKS[0] += 1
    _FORKED_FROM_GRPC[0] = _FORKED_FROM_GRPC[0] or _MADE[0] > 0


os.register_at_fork(after_in_child=_forked)
FORKED = "this client was made before the process forked, and gRPC does not survive a" \
    " fork: start child processes with multiprocessing's 'spawn' or 'forkserver' method"
FORKED_FROM_GRPC = "this process was forked from one that had made a client, and gRPC" \
    " does not survive a fork (a client here stalls the parent's checks): start child" \
    " processes with multiprocessing's 'spawn' or 'forkserver' method, or fork first"


class GuardClient:
    """A client of one sidecar. `check` never raises (fail-closed); the other RPCs raise
    grpc.aio.AioRpcError like any gRPC call. Make it in the running event loop that uses
    it, and use it from that loop, in the process that made it: a check from another
    loop or from a forked child is denied unsent (CLIENT_ERROR), and the other RPCs there
    raise RuntimeError; none is made in a process forked after one was (RuntimeError).
    close() when done."""

    def __init__(self, target: str, *, check_timeout_s: float = DEFAULT_CHECK_TIMEOUT_S,
                 rpc_timeout_s: float = DEFAULT_RPC_TIMEOUT_S, fail_open: bool = False,
                 metadata: Sequence[tuple[str, str]] = (), token: str | None = None,
                 credentials: grpc.ChannelCredentials | None = None,
                 stall_after_s: float = DEFAULT_STALL_AFTER_S, log_interval_s: float = 1.0,
                 channel: grpc.aio.Channel | None = None) -> None:
        """`target` is "unix:/path/ess.sock" (fastest) or "host:port"; a ready-made
        `channel` may be given instead and is then not closed by close(). `token` is the
        bearer token of a sidecar with authentication on; `credentials` (e.g.
        grpc.ssl_channel_credentials(ca, key, cert)) make the channel TLS or mutual TLS.
        A `check_timeout_s` or `rpc_timeout_s` that is not a finite number > 0 (at most
        a day, for the other RPCs: gRPC cannot carry 1e10 s, and the call would fail
        unsent, a trigger included) raises TypeError or ValueError; so does a `target`
        gRPC cannot use at all (a Unix socket's path over 107 bytes)."""
        if _FORKED_FROM_GRPC[0]:
            raise RuntimeError(FORKED_FROM_GRPC)
        self.check_timeout_s = valid_timeout(check_timeout_s)
        self.rpc_timeout_s = valid_timeout(rpc_timeout_s, "an RPC timeout", MAX_RPC_TIMEOUT_S)
        bearer = token.strip(ASCII_SPACE) if token else ""  # a file's newline, not U+0085
        self._metadata = _valid_metadata(tuple(metadata) + (
            (("authorization", f"Bearer {bearer}"),) if bearer else ()))
        self._owns_channel = channel is None
        self._channel = channel or _channel(target, credentials)
        self._stub = pb_grpc.GuardServiceStub(self._channel)
        self._stall_after_s = stall_after_s
        self._policy = FailurePolicy(fail_open, log_interval_s)
        self._ids = itertools.count(1)
        # client_order_ids this client makes up: a random prefix per client, then a count,
        # so that no two clients (nor one restarted) repeat one within the sidecar's
        # retention, where a reused id is denied as a duplicate.
        prefix = secrets.token_hex(6)
        self._order_ids = (f"{prefix}-{n}" for n in itertools.count(1))
        self._stream: CheckStream | None = None
        self.streams_opened = 0  # more than one means the stream was replaced after a failure
        self._closed = False
        self._heartbeats: set[Heartbeat] = set()  # close() cancels those still running
        self._forks = _FORKS[0]
        _MADE[0] += 1
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None  # the first check's
        if fail_open:
            log.warning("ess client for %s is FAIL-OPEN: orders are allowed when the sidecar "
                        "cannot be reached", target)

    @property
    def failures(self) -> Counter[Failure]:
        """How many checks failed, by cause, since construction (fail-open ones included)."""
        return self._policy.counts

    @property
    def failed_open(self) -> int:
        """How many failed checks were allowed because of fail_open."""
        return self._policy.failed_open

    async def connect(self, timeout_s: float = 1.0) -> bool:
        """Connect and open the stream (the sidecar answers its headers at once), so the
        first check does not pay for either. Returns whether the sidecar was reached within
        `timeout_s`; never raises."""
        if self._closed or self._unusable():  # review 44i: it opened a stream nothing
            return False  # would close; 53c: from another loop, gRPC raised
        deadline = asyncio.get_running_loop().time() + timeout_s
        try:
            async with asyncio.timeout_at(deadline):
                await self._channel.channel_ready()
        except (TimeoutError, grpc.aio.UsageError):
            return False
        if self._closed:
            return False
        try:  # reached; the stream's headers are a bonus (an older sidecar sends none)
            async with asyncio.timeout_at(deadline):
                await self._current_stream().opened()
        except (TimeoutError, grpc.aio.AioRpcError):
            pass
        return True

    def new_client_order_id(self) -> str:
        """A client_order_id no other order of this client has (nor any other client's)."""
        return next(self._order_ids)

    async def check(self, *, account: str, strategy: str, symbol: str, side: EnumLike,
                    quantity: float, price: float, reduce_only: bool = False,
                    client_order_id: str = "", replaces_client_order_id: str = "",
                    timeout_s: float | None = None) -> Verdict:
        """May this order be sent? Obey `verdict.allowed`; send the order with
        `verdict.client_order_id` (made up here unless given), which its fills and updates
        must carry. An allowed order counts toward the limits until they end it. Never
        raises (except the caller's own cancellation): a missed deadline, an unreachable
        sidecar, a broken stream, a rejected order or a malformed answer is a denial with
        `failure` set, counted and logged; with fail_open only the connectivity causes are
        allowed instead. `replaces_client_order_id`: a cancel/replace of that order."""
        return await self._check(self._ask, account, strategy, symbol, side, quantity, price,
                                 reduce_only, client_order_id, replaces_client_order_id,
                                 timeout_s)

    async def check_unary(self, *, account: str, strategy: str, symbol: str,
                          side: EnumLike, quantity: float, price: float,
                          reduce_only: bool = False, client_order_id: str = "",
                          replaces_client_order_id: str = "",
                          timeout_s: float | None = None) -> Verdict:
        """`check` as one unary CheckOrder call, without the stream (a process that checks
        seldom): the same verdicts, and the same denials when anything fails; an allow
        that comes at or after the deadline is a DEADLINE failure too."""
        return await self._check(self._ask_unary, account, strategy, symbol, side, quantity,
                                 price, reduce_only, client_order_id, replaces_client_order_id,
                                 timeout_s)

    async def _check(self, ask: Callable[[pb.CheckOrderRequest, float], Awaitable[Verdict]],
                     account: str, strategy: str, symbol: str, side: EnumLike,
                     quantity: float, price: float, reduce_only: bool, client_order_id: str,
                     replaces_client_order_id: str, timeout_s: float | None) -> Verdict:
        client_order_id = client_order_id or self.new_client_order_id()
        try:
            order = order_request(account, strategy, symbol, side, quantity, price,
                                  reduce_only, client_order_id, replaces_client_order_id)
            if self._closed:
                verdict = failed(Failure.CLIENT_ERROR, "the client is closed")
            elif (unusable := self._unusable()):
                verdict = failed(Failure.CLIENT_ERROR, unusable)
            else:  # a bad timeout raises before anything is sent
                verdict = await ask(order, valid_timeout(
                    self.check_timeout_s if timeout_s is None else timeout_s))
        except Exception as error:  # fail closed on anything, including a client bug
            verdict = failed(Failure.CLIENT_ERROR, f"could not check the order: {error!r}")
        if verdict.failure is not None:
            verdict = self._policy.apply(verdict)
        return dataclasses.replace(verdict, client_order_id=client_order_id)

    def _unusable(self) -> str:
        """Why this client cannot be used here, or "". From another event loop, gRPC sent
        the order and then failed to await its answer (review 53b: checks from threads
        with loops of their own were denied, and the sidecar counted each as a working
        order); from a forked child, see _FORKS."""
        if self._forks != _FORKS[0]:
            return FORKED
        loop = asyncio.get_running_loop()
        if self._loop is None:
            self._loop = loop
        elif loop is not self._loop:
            return "used from an event loop other than its own: use one client per loop"
        return ""

    async def _ask(self, order: pb.CheckOrderRequest, timeout_s: float) -> Verdict:
        return await self._current_stream().ask(next(self._ids), order, timeout_s)

    async def _ask_unary(self, order: pb.CheckOrderRequest, timeout_s: float) -> Verdict:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        # Fail-open, an answer a little late is still heard: a denial stands (review 43i:
        # a slow sidecar's denials came after the deadline, and fail-open traded).
        settle_s = SETTLE_IDLE_STEPS * SETTLE_STEP_S if self._policy.fail_open else 0.0
        try:
            decision = await self._stub.CheckOrder(order, timeout=timeout_s + settle_s,
                                                   metadata=self._metadata or None)
        except asyncio.CancelledError:
            # grpc.aio raises it too when close() cancels the call: a denial then (review
            # 44i: it escaped the check); only our own task's cancellation propagates.
            if asyncio.current_task().cancelling():  # type: ignore[union-attr]
                raise
            return failed(Failure.CLIENT_ERROR, "the client was closed")
        except grpc.aio.AioRpcError as error:
            code = error.code()
            if code == grpc.StatusCode.DEADLINE_EXCEEDED:
                return failed(Failure.DEADLINE, f"no answer within {timeout_s * 1e3:g} ms")
            if code == grpc.StatusCode.INVALID_ARGUMENT:
                details = error.details() or ""
                return failed(Failure.REQUEST_ERROR, details, details.partition(":")[0])
            heard = code in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN) or any(
                key == FAILED_CLOSED for key, _ in error.trailing_metadata() or ())
            # The sidecar answered, failing closed (a fault of its own, a journal record it
            # could not write: review 37k): fail_open never flips that.
            return failed(Failure.REFUSED if heard else failure_of(code),
                          f"{code.name}: {error.details()}")
        return late(verdict_from_answer(pb.CheckOrderStreamResponse(decision=decision)),
                    loop.time() >= deadline, timeout_s)

    def _current_stream(self) -> CheckStream:
        # A broken stream is never reused: the next check opens a fresh one.
        if self._stream is None or self._stream.broken:
            self._stream = CheckStream(self._stub, self._metadata, self._stall_after_s,
                                       settle=self._policy.fail_open)
            self.streams_opened += 1
        return self._stream

    async def close(self) -> None:
        """Deny checks in flight, end the stream and close our channel; later checks deny.
        In a forked child it only marks the client closed: ending the stream there would
        end the parent's, whose connection it is."""
        self._closed = True
        for heartbeat in self._heartbeats:  # the scope trips at the TTL: stop() deregisters
            heartbeat.cancel()
        self._heartbeats.clear()
        if self._forks != _FORKS[0]:  # kept: gRPC's objects freed in a child crash it
            _LEFT_IN_THE_PARENT.append((self._stream, self._channel, self._stub))
            return
        if self._stream is not None:
            await self._stream.close()
            self._stream = None  # its call held this client's connection open (review 44h)
        if self._owns_channel:
            await self._channel.close()

    async def __aenter__(self) -> GuardClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def report_metric(self, scope: ScopeLike, metric: EnumLike,
                            value: float) -> pb.ReportMetricResponse:
        """One metric sample, e.g. ("STRATEGY:momo", "DAILY_DRAWDOWN_PCT", 6.0); returns the
        scope's state after it, and whether this sample tripped it."""
        return await self._unary(self._stub.ReportMetric, pb.ReportMetricRequest(
            scope=to_scope(scope), metric=to_enum(pb.Metric, "METRIC_", metric), value=value))

    async def report_fill(self, *, account: str, strategy: str, symbol: str, side: EnumLike,
                          quantity: float, price: float, client_order_id: str,
                          fill_id: str) -> pb.ReportFillResponse:
        """An incremental fill of the order `client_order_id`; `fill_id` is the venue's
        execution id (a fill_id already applied is ignored: `duplicate`). Returns the
        signed position after it; `unchecked` if the sidecar never allowed that order (the
        account is then tripped)."""
        return await self._unary(self._stub.ReportFill, pb.ReportFillRequest(
            account=account, strategy=strategy, symbol=symbol,
            side=to_enum(pb.Side, "SIDE_", side), quantity=quantity, price=price,
            client_order_id=client_order_id, fill_id=fill_id))

    async def report_order_update(self, account: str, client_order_id: str, status: EnumLike,
                                  remaining_quantity: float | None = None,
                                  filled_quantity: float | None = None,
                                  ) -> pb.ReportOrderUpdateResponse:
        """A working order ended ("CANCELLED", "REJECTED", "EXPIRED"), or is "OPEN" with
        `remaining_quantity` left: its reservation is released, except what may have been
        filled but not reported yet. `filled_quantity` is the venue's cumulative filled
        quantity (FIX CumQty): give it when fills come by a separate drop copy, so that the
        fills it counts stay reserved until they are reported; without it an "OPEN" update
        releases nothing, and a fill of an ended order that comes after the update trips
        the account. `known` is False if none was working."""
        request = pb.ReportOrderUpdateRequest(
            account=account, client_order_id=client_order_id,
            status=to_enum(pb.OrderStatus, "ORDER_STATUS_", status))
        if remaining_quantity is not None:
            request.remaining_quantity = remaining_quantity
        if filled_quantity is not None:
            request.filled_quantity = filled_quantity
        return await self._unary(self._stub.ReportOrderUpdate, request)

    async def sync_positions(self, account: str, equity: float,
                             positions: Iterable[pb.Position],
                             open_orders: Iterable[pb.OpenOrder] | None = None,
                             included_fills: Mapping[str, float] | None = None,
                             ) -> pb.SyncPositionsResponse:
        """Replace the account's book with this snapshot of positions, equity and marks.
        With `open_orders` (a list, maybe empty), they are all of its working orders.
        `included_fills` maps a client_order_id to the cumulative quantity of its fills
        (the venue's CumQty) that `positions` already count: name every order open or
        filled since the positions were read (0 if none of its fills are in them), or
        fills are counted twice, or go missing."""
        request = pb.SyncPositionsRequest(account=account, equity=equity,
                                          positions=list(positions))
        if open_orders is not None:
            request.open_orders.extend(open_orders)
            request.open_orders_complete = True
        for client_order_id, filled in (included_fills or {}).items():
            request.included_fills.add(client_order_id=client_order_id,
                                       filled_quantity=filled)
        return await self._unary(self._stub.SyncPositions, request)

    async def heartbeat(self, executor_id: str, scope: ScopeLike, ttl_ms: int,
                        deregister: bool = False) -> pb.HeartbeatResponse:
        """Dead-man's switch: `scope` trips if no heartbeat arrives within `ttl_ms`."""
        return await self._unary(self._stub.Heartbeat, pb.HeartbeatRequest(
            executor_id=executor_id, scope=to_scope(scope), ttl_ms=ttl_ms,
            deregister=deregister))

    def start_heartbeat(self, executor_id: str, scope: ScopeLike, ttl_ms: int,
                        interval_s: float | None = None,
                        on_response: Callable[[pb.HeartbeatResponse], object] | None = None,
                        on_error: Callable[[Exception], object] | None = None,
                        alive: Callable[[], bool] | None = None) -> Heartbeat:
        """`heartbeat` every `interval_s` (a third of the TTL by default) until the
        Heartbeat's `stop()`, which deregisters. Call it in a running event loop. An
        interval not shorter than the TTL is a ValueError: the scope would trip. With
        `alive`, each beat is sent only if it returns True then (see the README); not True
        now: RuntimeError, nothing sent."""
        if isinstance(ttl_ms, bool) or not isinstance(ttl_ms, int) \
                or not 1 <= ttl_ms <= MAX_HEARTBEAT_TTL_MS:
            raise ValueError(f"ttl_ms must be 1 to {MAX_HEARTBEAT_TTL_MS} ms, got {ttl_ms!r}")
        interval_s = ttl_ms / 3000 if interval_s is None else valid_timeout(
            interval_s, "a heartbeat interval")
        if interval_s * 1000 >= ttl_ms:
            raise ValueError(f"a heartbeat interval of {interval_s:g} s is not shorter than"
                             f" its TTL of {ttl_ms} ms: the scope would trip")
        scope = to_scope(scope)  # a ValueError now, not a beat that never registers
        if self._closed:
            raise RuntimeError("the client is closed: no heartbeat can be sent with it")
        beat = Heartbeat(lambda deregister: self.heartbeat(executor_id, scope, ttl_ms,
                                                           deregister),
                         interval_s, on_response, on_error, alive, executor_id)
        self._heartbeats = {b for b in self._heartbeats if b.running} | {beat}
        return beat

    async def trigger(self, scope: ScopeLike, reason: str = "",
                      reason_code: EnumLike = pb.TRIGGER_REASON_USER_INITIATED,
                      mode: EnumLike = pb.TRIGGER_MODE_HALT,
                      directives: Iterable[EnumLike] = ()) -> pb.TriggerResponse:
        """Kill switch for `scope`; durable on the sidecar before this returns. Sent once:
        an error does not say the stop was not taken (a sidecar waiting out another
        process's lock on its state file stores it later, and shows it only then), so send
        it again until it is acknowledged, as essctl does; a stop sent twice renews it.

        Never refused here for what comes with the stop (convert.trigger_request): an
        unknown mode halts, an unknown reason code is USER_INITIATED, unknown directives
        are left out, each noted in the reason; the reason is made valid text and cut to
        the sidecar's 1024 characters. Only a scope that cannot be read raises
        ValueError."""
        return await self._unary(self._stub.Trigger, trigger_request(
            scope, reason, reason_code, mode, directives))

    async def get_state(self) -> pb.GetStateResponse:
        """Every scope that is not ARMED, the thresholds in force and the state version."""
        return await self._unary(self._stub.GetState, pb.GetStateRequest())

    async def _unary(self, method: Any, request: Any) -> Any:
        if unusable := self._unusable():
            raise RuntimeError(unusable)
        return await method(request, timeout=self.rpc_timeout_s,
                            metadata=self._metadata or None)


def valid_timeout(timeout_s: object, what: str = "a check timeout",
                  most: float = math.inf) -> float:
    """`timeout_s` if it is a finite number of seconds > 0 (and at most `most`); else
    TypeError or ValueError (infinity would wait for ever; what call_later refuses would
    fail once queued)."""
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, numbers.Real):
        raise TypeError(f"{what} is a number of seconds, not {timeout_s!r}")
    if not 0 < timeout_s < math.inf:  # NaN fails too
        raise ValueError(f"{what} must be finite and > 0, not {timeout_s!r}")
    if timeout_s > most:
        raise ValueError(f"{what} must be at most {most:g} seconds, not {timeout_s!r}")
    return float(timeout_s)


def _channel(target: str, credentials: grpc.ChannelCredentials | None) -> grpc.aio.Channel:
    """The channel to `target`, or ValueError if gRPC cannot use the target at all (a Unix
    socket's path over 107 bytes, an IPv4 address out of range: gRPC logs why). Such a
    channel is failed from its start and never connects: each check would fail closed as
    if the sidecar were down, each allowed on a fail-open client, and waiting for it to
    be ready left gRPC's poller thread stuck, so that the process never exited (review 52c:
    ess-check hung, deaf to SIGINT). A channel not yet used is IDLE otherwise."""
    channel = grpc.aio.insecure_channel(target, options=CHANNEL_OPTIONS) \
        if credentials is None else \
        grpc.aio.secure_channel(target, credentials, options=CHANNEL_OPTIONS)
    if channel.get_state(try_to_connect=False) is grpc.ChannelConnectivity.TRANSIENT_FAILURE:
        raise ValueError(f"target {target!r}: not an address gRPC can connect to")
    return channel


_KEY = re.compile(r"[0-9a-z_.-]+")
ASCII_SPACE = " \t\r\n"
# The sidecar refuses a call with more metadata than 64 KiB (gRPC counts 32 bytes an entry
# beside its key and value), RESOURCE_EXHAUSTED before any handler; gRPC's own headers
# (path, deadline, trace context) take a few hundred bytes of it.
MAX_METADATA_BYTES = 60 << 10


def _valid_metadata(metadata: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    """The call metadata, or ValueError naming what gRPC would refuse to send: a key that is
    not lower-case ASCII, or a value (a token read from a file with its newline) that is not
    printable ASCII. gRPC refuses such a header locally with INTERNAL, which reads as a
    broken stream: a fail-open client allowed every order, GLOBAL tripped or not (review
    36u); or more of it than the sidecar takes (review 43i: its refusal, late, read as no
    answer, and a fail-open client allowed every order)."""
    for key, value in metadata:
        if not _KEY.fullmatch(key) or key.endswith("-bin"):
            raise ValueError(f"metadata key {key!r}: lower-case ASCII letters, digits, '-',"
                             " '_' or '.' (and not a binary '-bin' key)")
        text = value.decode("latin-1") if isinstance(value, bytes) else value
        if not (isinstance(text, str) and text.isascii() and text.isprintable()):
            raise ValueError(f"metadata {key!r}: its value must be printable ASCII")
    size = sum(len(key) + len(value) + 32 for key, value in metadata)
    if size > MAX_METADATA_BYTES:
        raise ValueError(f"metadata: {size} bytes, more than the {MAX_METADATA_BYTES} a"
                         " sidecar takes with gRPC's own headers")
    return metadata

