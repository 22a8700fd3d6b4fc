"""Health and reflection as probes and tools expect them from a sidecar that drains."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import Any

import grpc
from google.protobuf import descriptor_pool
from google.protobuf.message import Message
from grpc_health.v1 import health, health_pb2
from grpc_reflection.v1alpha import reflection, reflection_pb2

from .handlers import parse_request


def add_health(servicer: health.aio.HealthServicer, server: grpc.aio.Server) -> None:
    """As grpc_health's add_HealthServicer_to_server, but each request is parsed here
    (`handlers.parse_request`): anyone may call health (review 47b: 3,000 garbage checks with no token
    wrote 4 MB of log, and pushed a stop's line out of it)."""
    request = health_pb2.HealthCheckRequest

    async def check(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
        return await servicer.Check(await parse_request(raw, request, context), context)

    async def watch(raw: bytes, context: grpc.aio.ServicerContext) -> None:
        await servicer.Watch(await parse_request(raw, request, context), context)

    answer = health_pb2.HealthCheckResponse.SerializeToString
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, {
            "Check": grpc.unary_unary_rpc_method_handler(check, response_serializer=answer),
            "Watch": grpc.unary_stream_rpc_method_handler(watch, response_serializer=answer),
        }),))


def add_reflection(names: Iterable[str], server: grpc.aio.Server,
                   pool: MethodResolvingPool) -> None:
    """As grpc_reflection's enable_server_reflection, but each request is parsed here
    (`handlers.parse_request`; review 47f: reflection needs no token under mutual TLS, and 1,000
    garbage requests wrote 1.4 MB of log)."""
    servicer = reflection.aio.ReflectionServicer(tuple(names), pool=pool)
    request = reflection_pb2.ServerReflectionRequest

    async def info(raws: AsyncIterator[bytes],
                   context: grpc.aio.ServicerContext) -> AsyncIterator[Message]:
        async def requests() -> AsyncIterator[Message]:
            async for raw in raws:
                yield await parse_request(raw, request, context)
        async for answer in servicer.ServerReflectionInfo(requests(), context):
            yield answer

    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        reflection.SERVICE_NAME, {"ServerReflectionInfo": grpc.stream_stream_rpc_method_handler(
            info, response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString)
        }),))


class DrainingHealthServicer(health.aio.HealthServicer):
    """grpc's health servicer, whose Watch streams end with UNAVAILABLE on `close_watches`
    rather than holding the server's stop for its whole grace, and of which at most
    `most` are open at once (health needs no credentials: review 36e opened 2,443 with no
    token, 23 KiB each); the next is UNAVAILABLE, as a WatchState beyond its cap is."""

    def __init__(self, most: int) -> None:
        super().__init__()
        self._closed = asyncio.Event()
        self._most, self._watching = most, 0

    @property
    def watching(self) -> int:
        """Health Watch streams open now."""
        return self._watching

    async def Watch(self, request: health_pb2.HealthCheckRequest,  # noqa: N802 - grpc's name
                    context: grpc.aio.ServicerContext) -> None:
        if self._watching >= self._most:
            await context.abort(grpc.StatusCode.UNAVAILABLE, f"{self._most} health watches"
                                " already (watch.max_watchers): use Check, or watch later")
        self._watching += 1
        watch = asyncio.ensure_future(super().Watch(request, context))
        closed = asyncio.ensure_future(self._closed.wait())
        try:
            done, _ = await asyncio.wait((watch, closed), return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._watching -= 1
            watch.cancel()
            closed.cancel()
        if watch in done:  # it only ever ends by raising (e.g. a failed write)
            watch.result()
        await context.abort(grpc.StatusCode.UNAVAILABLE, "ess-sidecar is shutting down")

    def close_watches(self) -> None:
        """End every Watch stream, now and from now on."""
        self._closed.set()


class MethodResolvingPool:
    """A descriptor pool that also finds the file of a method's full name.

    The upb pool behind protobuf's Python package finds services, messages, fields and
    enums by name but not methods, so reflection answered `Symbol not found` to `grpcurl
    describe ess.v1.GuardService.CheckOrder`, and ghz could not call by reflection."""

    def __init__(self, pool: descriptor_pool.DescriptorPool | None = None) -> None:
        self._pool = pool or descriptor_pool.Default()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pool, name)

    def FindFileContainingSymbol(self, full_name: str) -> Any:  # noqa: N802 - the pool's API
        """The file defining `full_name`; KeyError when no symbol has that name."""
        try:
            return self._pool.FindFileContainingSymbol(full_name)
        except KeyError:
            return self._pool.FindMethodByName(full_name).containing_service.file
