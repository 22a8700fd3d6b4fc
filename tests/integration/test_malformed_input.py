"""No input, however malformed, crashes a handler or the sidecar."""

from __future__ import annotations

import random

import grpc
from google.protobuf.message_factory import GetMessageClass

from ess.v1 import guard_pb2 as pb
from tests.integration.conftest import Running, order, synced

UNARY_METHODS = ("CheckOrder", "ReportMetric", "ReportFill", "SyncPositions", "Heartbeat",
                 "Trigger", "Reset", "GetState", "ListEvents")
# Random bytes may decode into a valid request; what must never happen is UNKNOWN, which
# is what gRPC answers when a handler raised an exception nobody expected.
EXPECTED = {grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.FAILED_PRECONDITION}


async def test_random_bytes_to_every_method_never_crash_a_handler(sidecar: Running) -> None:
    rng = random.Random(20261121)
    for method in UNARY_METHODS:
        call = sidecar.channel.unary_unary(f"/ess.v1.GuardService/{method}",
                                           request_serializer=lambda raw: raw,
                                           response_deserializer=lambda raw: raw)
        for _ in range(80):
            payload = rng.randbytes(rng.randrange(0, 200))
            try:
                await call(payload, timeout=5)
            except grpc.aio.AioRpcError as error:
                assert error.code() in EXPECTED, (method, payload, error.details())
    state = await sidecar.stub.GetState(pb.GetStateRequest())
    events = (await sidecar.stub.ListEvents(pb.ListEventsRequest(page_size=1000))).events
    assert [e.version for e in events] == list(range(state.state_version, 0, -1))
    assert (await sidecar.stub.CheckOrder(order(strategy="untouched"))).decision_id


async def test_random_bytes_on_the_stream_never_end_it_uncleanly(sidecar: Running) -> None:
    rng = random.Random(7)
    call = sidecar.channel.stream_stream("/ess.v1.GuardService/CheckOrderStream",
                                         request_serializer=lambda raw: raw,
                                         response_deserializer=pb.CheckOrderStreamResponse.FromString)
    stream = call()
    for request_id in range(200):
        await stream.write(rng.randbytes(rng.randrange(0, 120)))
        try:
            answer = await stream.read()
        except grpc.aio.AioRpcError as error:
            # not protobuf at all: no request id to answer, so the call ends, named as such
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
            assert error.details().startswith("request: not a valid")
            stream = call()
            continue
        assert answer.WhichOneof("result") in ("decision", "error"), request_id
    stream.cancel()


# Every RPC may answer OK, or refuse the request as malformed or not allowed now; none may
# answer UNKNOWN or INTERNAL (an unexpected exception) or anything else, to any input.
ANSWERS = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT,
           grpc.StatusCode.FAILED_PRECONDITION}
WATCH_ANSWERS = ANSWERS | {grpc.StatusCode.OUT_OF_RANGE}  # resync
EDGE_INTS = (0, 1, -1, 2**31 - 1, -2**31, 2**63 - 1, -2**63, 253_402_300_800,
             -62_135_596_801, 10**9, 10**18)
EDGE_FLOATS = (0.0, -0.0, 1.0, -1.0, 1e308, -1e308, 5e-324, float("nan"), float("inf"),
               float("-inf"), 1e22, 0.1)
EDGE_TEXT = ("", " ", "momo", " momo", "momo\u034f", "\u3164momo", "a" * 300, "x" * 20_000,
             "\r\n\x1b[31m", "GLOBAL", "acc-1", "\udcff".encode("utf-8", "surrogatepass")
             .decode("utf-8", "replace"))


def random_message(message_type, rng: random.Random, depth: int = 0):  # noqa: ANN001, ANN201
    """A message of `message_type` whose fields are set at random to edge values: every
    field kind, nested messages, repeated fields and unknown enum numbers."""
    message = message_type()
    for field in message.DESCRIPTOR.fields:
        if rng.random() < 0.4:
            continue
        count = rng.randrange(0, 4) if field.is_repeated else 1
        for _ in range(count):
            _set(message, field, rng, depth)
    return message


def _set(message, field, rng: random.Random, depth: int) -> None:  # noqa: ANN001
    kind = field.type
    if kind == field.TYPE_MESSAGE:
        if depth > 3:
            return
        value = random_message(GetMessageClass(field.message_type), rng, depth + 1)
        target = getattr(message, field.name)
        (target.add() if field.is_repeated else target).CopyFrom(value)
        return
    if kind == field.TYPE_ENUM:
        value = rng.choice([v.number for v in field.enum_type.values] + [-1, 999, 2**31 - 1])
    elif kind in (field.TYPE_DOUBLE, field.TYPE_FLOAT):
        value = rng.choice(EDGE_FLOATS + (rng.uniform(-1e6, 1e6),))
        if kind == field.TYPE_FLOAT and abs(value) > 3e38 and value == value:
            value = rng.choice((3e38, -3e38))
    elif kind == field.TYPE_STRING:
        value = rng.choice(EDGE_TEXT)
    elif kind == field.TYPE_BOOL:
        value = rng.random() < 0.5
    elif kind == field.TYPE_BYTES:
        value = rng.randbytes(rng.randrange(0, 40))
    else:  # every integer type: clamp the edges to the field's own range
        value = rng.choice(EDGE_INTS + (rng.randrange(-1000, 1000),))
        unsigned = kind in (field.TYPE_UINT32, field.TYPE_UINT64, field.TYPE_FIXED32,
                            field.TYPE_FIXED64)
        bits = 32 if kind in (field.TYPE_INT32, field.TYPE_UINT32, field.TYPE_SINT32,
                              field.TYPE_FIXED32, field.TYPE_SFIXED32) else 64
        low, high = (0, 2**bits - 1) if unsigned else (-2**(bits - 1), 2**(bits - 1) - 1)
        value = min(max(value, low), high)
    if field.is_repeated:
        getattr(message, field.name).append(value)
    else:
        setattr(message, field.name, value)


async def test_structured_fuzz_of_every_method_gets_only_the_expected_codes(
        sidecar: Running) -> None:
    rng = random.Random(20261201)
    service = pb.DESCRIPTOR.services_by_name["GuardService"]
    seen: dict[str, set[grpc.StatusCode]] = {}
    for method in service.methods:
        request_type = GetMessageClass(method.input_type)
        codes = seen.setdefault(method.name, set())
        for _ in range(150):
            request = random_message(request_type, rng)
            codes.add(await _call(sidecar, method, request))
    for name, codes in seen.items():
        allowed = WATCH_ANSWERS if name == "WatchState" else ANSWERS
        assert codes <= allowed, (name, codes - allowed)
    assert grpc.StatusCode.INVALID_ARGUMENT in seen["ListEvents"]  # the fuzz reaches refusals
    state = await sidecar.stub.GetState(pb.GetStateRequest())
    events = (await sidecar.stub.ListEvents(pb.ListEventsRequest(page_size=1000))).events
    assert [e.version for e in events] == list(range(state.state_version, 0, -1))


async def _call(sidecar: Running, method, request) -> grpc.StatusCode:  # noqa: ANN001
    path = f"/ess.v1.GuardService/{method.name}"
    serialize = type(request).SerializeToString
    try:
        if method.client_streaming:
            call = sidecar.channel.stream_stream(path, request_serializer=serialize)()
            await call.write(request)
            await call.done_writing()
            async for _ in call:
                pass
        elif method.server_streaming:
            call = sidecar.channel.unary_stream(path, request_serializer=serialize)(
                request, timeout=5)
            await call.read()  # the first message, or the refusal; then hang up
            call.cancel()
        else:
            await sidecar.channel.unary_unary(path, request_serializer=serialize)(
                request, timeout=5)
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def test_list_events_outside_the_timestamp_range_is_invalid_naming_the_field(
        sidecar: Running) -> None:
    for field in ("since", "until"):
        for seconds, nanos in ((253_402_300_800, 0), (-62_135_596_801, 0), (0, -1),
                               (0, 1_000_000_000)):
            request = pb.ListEventsRequest()
            stamp = getattr(request, field)
            stamp.seconds, stamp.nanos = seconds, nanos
            try:
                await sidecar.stub.ListEvents(request)
            except grpc.aio.AioRpcError as error:
                assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
                assert error.details().startswith(field), error.details()
            else:
                raise AssertionError(f"{field} {seconds}.{nanos} was accepted")


async def test_an_over_long_watch_epoch_is_invalid_and_not_echoed(sidecar: Running) -> None:
    call = sidecar.stub.WatchState(pb.WatchStateRequest(from_version=1, epoch="e" * 20_000))
    try:
        await call.read()
    except grpc.aio.AioRpcError as error:
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error.details().startswith("epoch") and len(error.details()) < 200
    else:
        raise AssertionError("an over-long epoch was accepted")
    call = sidecar.stub.WatchState(pb.WatchStateRequest(from_version=1, epoch="other"))
    try:
        await call.read()
    except grpc.aio.AioRpcError as error:
        assert error.code() == grpc.StatusCode.OUT_OF_RANGE  # a wrong epoch: resync


async def test_a_trigger_whose_reason_is_not_utf8_still_stops(sidecar: Running) -> None:
    """The kill switch is never refused for what comes with it: a reason in Latin-1 (a
    C++ executor's bytes) is recorded with U+FFFD; only an unreadable scope refuses it."""
    trigger = sidecar.channel.unary_unary("/ess.v1.GuardService/Trigger",
                                          request_serializer=lambda raw: raw,
                                          response_deserializer=pb.TriggerResponse.FromString)
    momo = pb.Scope(kind=pb.SCOPE_KIND_STRATEGY, id="momo")
    latin1 = "Société Générale halt".encode("latin-1")
    raw = pb.TriggerRequest(scope=momo, mode=pb.TRIGGER_MODE_HALT).SerializeToString() \
        + bytes([2 << 3 | 2, len(latin1)]) + latin1  # field 2, reason
    answer = await trigger(raw, timeout=5)
    assert answer.state == pb.STATE_TRIPPED
    [scope] = (await sidecar.stub.GetState(pb.GetStateRequest())).scopes
    assert (scope.scope, scope.reason) == (momo, "Soci\ufffdt\ufffd G\ufffdn\ufffdrale halt")
    scope = bytes([1 << 3 | 2, 6, 1 << 3, pb.SCOPE_KIND_STRATEGY, 2 << 3 | 2, 2]) \
        + b"\xe9\xe9"  # a scope whose id is not UTF-8
    reason = bytes([2 << 3 | 2, len(latin1)]) + latin1
    for unreadable in (scope, reason + scope):  # the reason first: review 47b
        try:
            await trigger(unreadable, timeout=5)
        except grpc.aio.AioRpcError as error:
            assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
            assert error.details() == "scope.id: not valid UTF-8"
        else:
            raise AssertionError("a Trigger whose scope cannot be read was accepted")


def not_utf8(message, placeholder: bytes = b"AAPL~") -> bytes:  # noqa: ANN001
    """`message` on the wire with the string `placeholder` made invalid UTF-8."""
    raw = message.SerializeToString()
    assert raw.count(placeholder) == 1
    return raw.replace(placeholder, placeholder[:-1] + b"\xff")


async def test_a_string_that_is_not_utf8_is_answered_for_its_request_alone(
        sidecar: Running) -> None:
    """Protobuf refuses a whole message for one string that is not UTF-8 (a C++ executor
    can send one): on the stream that request gets an error naming the field and the
    stream goes on, for the checks before and after it; unary names the field too."""
    call = sidecar.channel.stream_stream("/ess.v1.GuardService/CheckOrderStream",
                                         request_serializer=lambda raw: raw,
                                         response_deserializer=pb.CheckOrderStreamResponse.FromString)
    stream = call()
    bad = not_utf8(pb.CheckOrderStreamRequest(request_id=2, order=order(symbol="AAPL~")))
    for raw in (pb.CheckOrderStreamRequest(request_id=1, order=order()).SerializeToString(),
                bad,
                pb.CheckOrderStreamRequest(request_id=3, order=order(client_order_id="c-3"))
                .SerializeToString()):
        await stream.write(raw)
    await stream.write(pb.CheckOrderStreamRequest(request_id=4).SerializeToString())
    await stream.write(pb.CheckOrderStreamRequest(request_id=5, order=order(side=0))
                       .SerializeToString())
    answers = [await stream.read() for _ in range(5)]
    stream.cancel()
    assert (answers[3].request_id, answers[3].error.field) == (4, "order")  # none at all
    # Review 55a: the message named "side", the field "order.side"
    assert (answers[4].error.field, answers[4].error.message) == (
        "order.side", "order.side: must be SIDE_BUY or SIDE_SELL, got 0")
    assert [a.request_id for a in answers] == [1, 2, 3, 4, 5]
    assert answers[0].decision.allowed and answers[2].decision.allowed
    assert (answers[1].error.field, answers[1].error.message) == (
        "order.symbol", "order.symbol: not valid UTF-8")
    assert answers[1].error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    check = sidecar.channel.unary_unary("/ess.v1.GuardService/CheckOrder",
                                        request_serializer=lambda raw: raw,
                                        response_deserializer=pb.CheckOrderResponse.FromString)
    try:
        await check(not_utf8(order(client_order_id="AAPL~")), timeout=5)
    except grpc.aio.AioRpcError as error:
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error.details() == "client_order_id: not valid UTF-8"
    else:
        raise AssertionError("an order whose client_order_id is not UTF-8 was answered")


def test_the_string_that_is_not_utf8_is_named_by_its_own_index_past_a_stray_varint() -> None:
    """Review 36c: a varint under a list's field number (protobuf skips it) was counted as
    an entry, and the error named positions[1] for positions[0]."""
    from ess_sidecar.adapters.grpc.wire import invalid_utf8  # noqa: PLC0415
    request = pb.SyncPositionsRequest.DESCRIPTOR
    number = request.fields_by_name["positions"].number
    raw = pb.SyncPositionsRequest(account="a", positions=[
        pb.Position(strategy="s", symbol="AAPL~")]).SerializeToString().replace(b"~", b"\xff")
    assert invalid_utf8(bytes([number << 3, 5]) + raw, request) == "positions[0].symbol"


async def test_a_snapshot_longer_than_the_cap_is_invalid_naming_the_list_and_changes_nothing(
        sidecar: Running) -> None:
    """A snapshot is applied in one piece, holding every command meanwhile, a Trigger too:
    its length is capped (limits.max_snapshot_entries, 20,000 by default)."""
    flood = synced(equity=1.0)  # an equity this small would deny the order below
    flood.positions.extend(pb.Position(strategy=f"s{i}", symbol="AAPL", quantity=0,
                                       mark_price=100) for i in range(20_000))
    try:
        await sidecar.stub.SyncPositions(flood)
    except grpc.aio.AioRpcError as error:
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert error.details().startswith("positions:"), error.details()
        assert "limits.max_snapshot_entries" in error.details()
    else:
        raise AssertionError("a snapshot of 20,001 positions was accepted")
    assert (await sidecar.stub.CheckOrder(order())).allowed
    del flood.positions[-1]
    assert (await sidecar.stub.SyncPositions(flood)).positions == 0  # 20,000: applied
    assert not (await sidecar.stub.CheckOrder(order())).allowed
