"""GuardService's method handlers. Requests are parsed here rather than by gRPC, so a
message that is not even valid protobuf is INVALID_ARGUMENT naming the request, like any
other bad input, instead of gRPC's UNKNOWN (which reads as a crash)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
from google.protobuf.message import DecodeError, Message
from google.protobuf.message_factory import GetMessageClass

from ess.v1 import guard_pb2 as pb

SERVICE = pb.DESCRIPTOR.services_by_name["GuardService"]


async def _parse(raw: bytes, request_type: type[Message],
                 context: grpc.aio.ServicerContext) -> Any:
    try:
        return request_type.FromString(raw)
    except DecodeError:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                            f"request: not a valid {request_type.DESCRIPTOR.full_name}")


def _unary_unary(method: Callable, request_type: type[Message]) -> Callable:
    async def handle(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
        return await method(await _parse(raw, request_type, context), context)
    return handle


def _unary_stream(method: Callable, request_type: type[Message]) -> Callable:
    async def handle(raw: bytes, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        async for response in method(await _parse(raw, request_type, context), context):
            yield response
    return handle


def _raw(method: Callable, request_type: type[Message]) -> Callable:
    """The hot path (CheckOrderStream) parses its own requests: a wrapper here would put
    a generator layer on every message."""
    del request_type
    return method


_KINDS = {(False, False): (_unary_unary, grpc.unary_unary_rpc_method_handler),
          (False, True): (_unary_stream, grpc.unary_stream_rpc_method_handler),
          (True, True): (_raw, grpc.stream_stream_rpc_method_handler)}


def add_guard_service(servicer: object, server: grpc.aio.Server) -> None:
    """Register every GuardService method of `servicer`, as the generated code would."""
    handlers = {}
    for method in SERVICE.methods:
        wrap, make_handler = _KINDS[(method.client_streaming, method.server_streaming)]
        handlers[method.name] = make_handler(
            wrap(getattr(servicer, method.name), GetMessageClass(method.input_type)),
            response_serializer=GetMessageClass(method.output_type).SerializeToString)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE.full_name, handlers),))
    server.add_registered_method_handlers(SERVICE.full_name, handlers)
