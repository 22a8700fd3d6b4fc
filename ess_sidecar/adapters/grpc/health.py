"""Health and reflection as probes and tools expect them from a sidecar that drains."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
from google.protobuf import descriptor_pool
from grpc_health.v1 import health, health_pb2


class DrainingHealthServicer(health.aio.HealthServicer):
    """grpc's health servicer, whose Watch streams end with UNAVAILABLE on `close_watches`
    rather than holding the server's stop for its whole grace."""

    def __init__(self) -> None:
        super().__init__()
        self._closed = asyncio.Event()

    async def Watch(self, request: health_pb2.HealthCheckRequest,  # noqa: N802 - grpc's name
                    context: grpc.aio.ServicerContext) -> None:
        watch = asyncio.ensure_future(super().Watch(request, context))
        closed = asyncio.ensure_future(self._closed.wait())
        try:
            done, _ = await asyncio.wait((watch, closed), return_when=asyncio.FIRST_COMPLETED)
        finally:
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
