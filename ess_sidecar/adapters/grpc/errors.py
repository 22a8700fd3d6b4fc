"""Domain errors -> gRPC status codes, in one table."""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import grpc

from ...domain.errors import Busy, CapacityExceeded, DrillRefused, GuardError, \
    InvalidArgument, PermissionDenied, ResetRefused, ResyncRequired, ShuttingDown, \
    StoreUnavailable, SubscriberTooSlow, Unauthenticated

# Most specific first: SubscriberTooSlow is a ResyncRequired.
STATUS: list[tuple[type[GuardError], grpc.StatusCode]] = [
    (InvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (Unauthenticated, grpc.StatusCode.UNAUTHENTICATED),
    (PermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (ResetRefused, grpc.StatusCode.FAILED_PRECONDITION),
    (DrillRefused, grpc.StatusCode.FAILED_PRECONDITION),
    (SubscriberTooSlow, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (CapacityExceeded, grpc.StatusCode.RESOURCE_EXHAUSTED),
    (ResyncRequired, grpc.StatusCode.OUT_OF_RANGE),
    (ShuttingDown, grpc.StatusCode.UNAVAILABLE),
    (Busy, grpc.StatusCode.UNAVAILABLE),
    (StoreUnavailable, grpc.StatusCode.UNAVAILABLE),
]


def status_of(error: GuardError) -> grpc.StatusCode:
    for kind, code in STATUS:
        if isinstance(error, kind):
            return code
    return grpc.StatusCode.INTERNAL


Response = TypeVar("Response")
READS = frozenset({"GetState", "ListEvents"})  # handlers that change nothing
log = logging.getLogger(__name__)


def aborts_on_guard_errors(
        method: Callable[..., Awaitable[Response]]) -> Callable[..., Awaitable[Response]]:
    """Turn a GuardError raised by a unary handler into its status code and message. Any
    other error is a fault of ours: INTERNAL, and the sidecar fails closed if the call
    may have changed memory (all but READS), never gRPC's UNKNOWN."""
    changes = method.__name__ not in READS

    @functools.wraps(method)
    async def handler(self: object, request: object,
                      context: grpc.aio.ServicerContext) -> Response:
        try:
            return await method(self, request, context)
        except GuardError as error:
            if isinstance(error, InvalidArgument):
                self.telemetry.invalid_request(error.field)  # type: ignore[attr-defined]
            elif isinstance(error, PermissionDenied):  # counted and logged as a role's are
                self.refused(  # type: ignore[attr-defined]  # (review 40g: a heartbeat
                    status_of(error), str(error), context.peer())  # of another's, unseen)
            await context.abort(status_of(error), str(error))
            raise  # unreachable: abort raises
        except grpc.aio.AbortError:
            raise
        except Exception as error:
            if not changes:
                log.error("internal error in %s", method.__name__, exc_info=error)
                await context.abort(grpc.StatusCode.INTERNAL, f"internal error in"
                                    f" {method.__name__}: {type(error).__name__}")
            guard = self._guard  # type: ignore[attr-defined]
            await context.abort(grpc.StatusCode.INTERNAL,
                                guard.internal_fault(method.__name__, error))
            raise  # unreachable: abort raises

    return handler
