"""GuardService's method handlers. Requests are parsed here rather than by gRPC, so a
message that is not even valid protobuf is INVALID_ARGUMENT naming the request, like any
other bad input, instead of gRPC's UNKNOWN (which reads as a crash). With authentication
on, each call is admitted (principal and role) before its request is even parsed.

The kill switch is the exception: a Trigger is never refused for what comes with it, and
protobuf refuses a whole message whose string holds bytes that are not UTF-8 (a C++ or
Go executor can send them). So a Trigger that fails to parse is parsed again with its
reason read as bytes, decoded with U+FFFD for what is not UTF-8; only a scope that
cannot be read, or bytes that are not protobuf at all (a truncated field, say), refuse it,
INVALID_ARGUMENT naming the request."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Callable
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from google.protobuf.descriptor import Descriptor
from google.protobuf.message import DecodeError, Message
from google.protobuf.message_factory import GetMessageClass

from ess.v1 import guard_pb2 as pb

from ...domain.access import Permission
from ...domain.errors import PermissionDenied, Unauthenticated
from .auth import PERMISSIONS, PRINCIPAL, Authenticator
from .errors import status_of
from .wire import invalid_utf8

SERVICE = pb.DESCRIPTOR.services_by_name["GuardService"]
log = logging.getLogger(__name__)


async def parse_request(raw: bytes, request_type: type[Message], context: grpc.aio.ServicerContext,
                 strings: Descriptor | None = None) -> Any:
    """The request, or an abort naming the first field in `strings` (a descriptor; the
    request's own by default) that is not UTF-8."""
    try:
        return request_type.FromString(raw)
    except DecodeError:
        field = invalid_utf8(raw, strings or request_type.DESCRIPTOR)
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                            f"{field}: not valid UTF-8" if field else
                            f"request: not a valid {request_type.DESCRIPTOR.full_name}")


def _unary_unary(method: Callable, request_type: type[Message]) -> Callable:
    if request_type is pb.TriggerRequest:
        async def trigger(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
            try:
                request = pb.TriggerRequest.FromString(raw)
            except DecodeError:
                request = _trigger_with_any_reason(raw) or await parse_request(
                    raw, pb.TriggerRequest, context,  # aborts, naming no reason: any
                    _TRIGGER_WITH_BYTES.DESCRIPTOR)  # is taken (review 47b)
            return await method(request, context)
        return trigger

    async def handle(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
        return await method(await parse_request(raw, request_type, context), context)
    return handle


def _as_bytes(message: type[Message], fields: tuple[str, ...]) -> type[Message]:
    """A message of the same wire format as `message`, but whose string `fields` are
    bytes: protobuf does not check that they are UTF-8."""
    shape = descriptor_pb2.DescriptorProto()
    message.DESCRIPTOR.CopyToProto(shape)
    shape.name = f"{shape.name}WithBytes"
    for field in shape.field:
        if field.name in fields:
            field.type = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES
    source = message.DESCRIPTOR.file
    file = descriptor_pb2.FileDescriptorProto(
        name=f"ess_sidecar/{shape.name}.proto", package=f"{source.package}.lenient",
        dependency=[source.name], syntax="proto3")
    file.message_type.append(shape)
    pool = descriptor_pool.Default()
    pool.Add(file)
    return GetMessageClass(pool.FindMessageTypeByName(f"{file.package}.{shape.name}"))


_TRIGGER_WITH_BYTES = _as_bytes(pb.TriggerRequest, ("reason",))


def _trigger_with_any_reason(raw: bytes) -> pb.TriggerRequest | None:
    """The Trigger in `raw` with its reason decoded leniently; None if it is not a
    Trigger even so (its scope, say, is not valid)."""
    try:
        lenient = _TRIGGER_WITH_BYTES.FromString(raw)
    except DecodeError:
        return None
    return pb.TriggerRequest(
        scope=lenient.scope,  # the real ess.v1.Scope: its id was checked as UTF-8
        reason=lenient.reason.decode("utf-8", errors="replace"),
        reason_code=lenient.reason_code, mode=lenient.mode,
        directives=list(lenient.directives), drill=lenient.drill)


def _unary_stream(method: Callable, request_type: type[Message]) -> Callable:
    """A server stream (WatchState) writes through the context rather than being an async
    generator: a generator whose client hung up is closed later, from another context,
    where OpenTelemetry cannot detach the context it attached to the span. `method` yields
    the answers, or is a coroutine that writes them itself (the fan-out's, which bounds
    some writes in time). An answer that cannot be written because the client went
    meanwhile ends the stream, logged at INFO as CheckOrderStream's is (review 50c: each
    fan-out join, cancelled as the sidecar wrote, logged an ERROR with a traceback)."""
    async def handle(raw: bytes, context: grpc.aio.ServicerContext) -> None:
        request = await parse_request(raw, request_type, context)
        try:
            answers = method(request, context)
            if inspect.iscoroutine(answers):
                await answers
                return
            async with contextlib.aclosing(answers) as responses:
                async for response in responses:
                    await context.write(response)
        except grpc.aio.InternalError as error:
            log.info("%s ended: an answer could not be sent (%s)",
                     method.__name__, error)
    return handle


def _raw(method: Callable, request_type: type[Message]) -> Callable:
    """The hot path (CheckOrderStream) parses its own requests: a wrapper here would put
    a layer on every message."""
    del request_type
    return method


# A refused client stream is ended after its first request, or after this long without one.
REFUSE_AFTER_S = 1.0
REFLECTION = "/grpc.reflection."  # its v1alpha and v1 services


async def _admit(authenticator: Authenticator, permission: Permission,
                 context: grpc.aio.ServicerContext, client_streaming: bool) -> None:
    """Authenticate and authorize the call, or abort it; the principal becomes the actor."""
    try:  # RefusedAsItStarts may have authenticated it already, in this call's task
        principal = PRINCIPAL.get() or authenticator.authenticate(context)
        try:
            principal.authorize(permission)
        except PermissionDenied:  # a token of a weaker role, over a connection whose
            # certificate alone would have been accepted: the certificate's (review 40g:
            # an operator's stop refused for the reconciler token beside it)
            certified = authenticator.by_certificate(context)[0]
            if certified is None or permission not in certified.role.permissions:
                raise
            principal = certified
    except (Unauthenticated, PermissionDenied) as error:
        await _refuse(authenticator, error, context, client_streaming)
    PRINCIPAL.set(principal)


class RefusedAsItStarts(grpc.aio.ServerInterceptor):
    """Authentication by token alone (no client certificates taken): a GuardService call
    with a single request and no valid token, or one whose role may not call its method,
    is refused as it starts, before gRPC reads its request. gRPC calls such a handler (and
    so `_admit`) only once the request has come, so a call that never sent one was held
    with no limit and no credentials (review 36c: 20,000 held, 19 KB each), and a weak
    role's calls, each holding a 4 MiB request but its last byte, pinned about 1 GB on
    one connection (review 45). Refused as a client stream is: after its request, or
    after REFUSE_AFTER_S without one. The health service's Check, open to all, is ended
    after REFUSE_AFTER_S without its request (`_bounded`). Server reflection takes a
    token too (review 43c: 15,000 of its streams opened with none were held with no limit,
    and 300 MB with them)."""

    def __init__(self, authenticator: Authenticator) -> None:
        self._authenticator = authenticator
        self._prefix = f"/{SERVICE.full_name}/"

    async def intercept_service(self, continuation: Callable, details: Any) -> Any:
        handler = await continuation(details)
        reflection = details.method.startswith(REFLECTION)  # a client stream, with a token
        if handler is None or handler.request_streaming and not reflection:
            return handler
        if not reflection and not details.method.startswith(self._prefix):  # health: open
            return _bounded(handler)  # to all, but no call held with no request (40g)
        try:  # the principal is kept for _admit, in this call's own task: one lookup
            principal = self._authenticator.by_token(details.invocation_metadata or ())
            if not reflection:  # and its role, before its request is read
                principal.authorize(PERMISSIONS[details.method[len(self._prefix):]])
            PRINCIPAL.set(principal)
            return handler
        except (Unauthenticated, PermissionDenied) as error:
            refusal = error

        async def refuse(requests: Any, context: grpc.aio.ServicerContext) -> None:
            await _refuse(self._authenticator, refusal, context, True)
        return grpc.stream_stream_rpc_method_handler(refuse) if handler.response_streaming \
            else grpc.stream_unary_rpc_method_handler(refuse)


def _bounded(handler: Any) -> Any:
    """A single-request handler whose call is ended if its request has not come within
    REFUSE_AFTER_S (gRPC would hold it for ever, with no credentials: review 40g, 10,000
    health checks held took 114 MB). Its answer may be a stream, written through the
    context (health's Watch: review 43j, wrapped as a single answer it failed UNKNOWN)."""
    streaming = handler.response_streaming
    answer = handler.unary_stream if streaming else handler.unary_unary

    async def bounded(requests: Any, context: grpc.aio.ServicerContext) -> Any:
        try:
            request = await asyncio.wait_for(context.read(), REFUSE_AFTER_S)
        except asyncio.TimeoutError:
            request = grpc.aio.EOF
        if request is grpc.aio.EOF:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT,
                                f"no request within {REFUSE_AFTER_S:g} s")
        answered = answer(request, context)
        return await answered if inspect.isawaitable(answered) else answered
    wrap = grpc.stream_stream_rpc_method_handler if streaming \
        else grpc.stream_unary_rpc_method_handler
    return wrap(bounded, request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)


async def _refuse(authenticator: Authenticator, error: Unauthenticated | PermissionDenied,
                  context: grpc.aio.ServicerContext, client_streaming: bool) -> None:
    """Count and log the refusal, and end the call with its status."""
    authenticator.refused(status_of(error), str(error), context.peer())
    if client_streaming:
        # Refused while the client is still sending its first request, about 1 stream
        # in 10 ends for grpcio's client with INTERNAL "Internal error from Core"
        # instead of this status, which reads like a broken connection.
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(context.read(), REFUSE_AFTER_S)
    await context.abort(status_of(error), str(error))


def _guarded(handle: Callable, permission: Permission, authenticator: Authenticator,
             client_streaming: bool) -> Callable:
    async def guarded(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await _admit(authenticator, permission, context, client_streaming)
        return await handle(request, context)
    return guarded


# Unary methods that may answer with their message already serialized (GetState: its
# scopes' parts joined); the others, CheckOrder among them, pay no test for it.
ANSWERED_IN_BYTES = frozenset({"GetState"})


def _serializer(response_type: type[Message], passes_bytes: bool) -> Callable[[Any], bytes]:
    """`passes_bytes`: the method may answer with a message already serialized
    (WatchState: one transition's bytes to every watcher; CheckOrderStream: each answer
    from one reused message; ANSWERED_IN_BYTES), sent as it is; anything else is
    serialized as usual."""
    serialize = response_type.SerializeToString
    if not passes_bytes:
        return serialize

    def serialized(message: Any) -> bytes:
        return message if type(message) is bytes else serialize(message)
    return serialized


_KINDS = {(False, False): (_unary_unary, grpc.unary_unary_rpc_method_handler),
          (False, True): (_unary_stream, grpc.unary_stream_rpc_method_handler),
          (True, True): (_raw, grpc.stream_stream_rpc_method_handler)}


def add_guard_service(servicer: object, server: grpc.aio.Server,
                      authenticator: Authenticator | None = None,
                      wrap_streams: Callable[[str, Callable], Callable] | None = None,
                      methods: frozenset[str] | None = None) -> None:
    """Register every GuardService method of `servicer` (or those named in `methods`: the
    others are UNIMPLEMENTED), as the generated code would;
    with an authenticator, each method admits only the roles its permission allows.
    `wrap_streams(method path, handle)` wraps each streaming method (its span: the
    instrumentation's interceptor would make a generator of it), inside the authenticator,
    as the interceptor runs after it for unary calls: a call refused is traced nowhere,
    and its trace headers are never read (review 39d)."""
    handlers = {}
    for method in SERVICE.methods:
        if methods is not None and method.name not in methods:
            continue
        wrap, make_handler = _KINDS[(method.client_streaming, method.server_streaming)]
        handle = wrap(getattr(servicer, method.name), GetMessageClass(method.input_type))
        if wrap_streams is not None and method.server_streaming:
            handle = wrap_streams(f"/{SERVICE.full_name}/{method.name}", handle)
        if authenticator is not None:
            handle = _guarded(handle, PERMISSIONS[method.name], authenticator,
                              method.client_streaming)
        handlers[method.name] = make_handler(
            handle, response_serializer=_serializer(
                GetMessageClass(method.output_type),
                method.server_streaming or method.name in ANSWERED_IN_BYTES))
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE.full_name, handlers),))
    server.add_registered_method_handlers(SERVICE.full_name, handlers)
