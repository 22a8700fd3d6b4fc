"""No input, however malformed, crashes a handler or the sidecar."""

from __future__ import annotations

import random

import grpc

from ess.v1 import guard_pb2 as pb
from tests.integration.conftest import Running, order

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
