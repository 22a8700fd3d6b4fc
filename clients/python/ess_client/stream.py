"""One CheckOrderStream call: many requests in flight, answers matched back by request_id."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Sequence

import grpc

from ess.v1 import guard_pb2 as pb
from ess.v1 import guard_pb2_grpc as pb_grpc

from .verdict import Failure, Verdict, failed, late, verdict_from_answer

log = logging.getLogger("ess_client")

# Codes that mean "the sidecar could not be heard from"; any other status is the sidecar
# refusing the stream (auth, unimplemented, ...), which fail-open must never override.
CONNECTIVITY_CODES = {
    grpc.StatusCode.UNAVAILABLE: Failure.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED: Failure.DEADLINE,
    grpc.StatusCode.CANCELLED: Failure.STREAM_BROKEN,
    # gRPC's core ends a stream whose peer died with INTERNAL ("Internal error from Core");
    # the sidecar answers its own faults in the stream, request by request, never so.
    grpc.StatusCode.INTERNAL: Failure.STREAM_BROKEN,
    grpc.StatusCode.UNKNOWN: Failure.STREAM_BROKEN,
}


# A fail-open check past its deadline: how often it looks for answers read, and how many
# looks finding none fail it (_expire).
SETTLE_STEP_S = 0.001
SETTLE_IDLE_STEPS = 5


# Codes a stream refused by the sidecar can also end with (the core's own INTERNAL): taken
# for connectivity only once the stream has answered.
UNCLEAR_CODES = frozenset({grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN})


def failure_of(code: grpc.StatusCode) -> Failure:
    """The failure cause of a stream that ended with `code`."""
    return CONNECTIVITY_CODES.get(code, Failure.REFUSED)


class CheckStream:
    """A single long-lived stream. Once `broken` it stays broken: the client opens a new one.

    Requests go through a queue that gRPC drains, because a call accepts one write at a
    time. The sidecar answers in request order, so every answer must be for the oldest
    unanswered request: anything else means the stream cannot be trusted and is replaced."""

    def __init__(self, stub: pb_grpc.GuardServiceStub, metadata: Sequence[tuple[str, str]],
                 stall_after_s: float, settle: bool = False) -> None:
        self.broken = False
        self._loop = asyncio.get_running_loop()
        self._stall_after_s = stall_after_s
        self._settle = settle  # see _expire
        self._answers = 0  # read so far
        self._outbox: asyncio.Queue[pb.CheckOrderStreamRequest | None] = asyncio.Queue()
        self._pending: dict[int, asyncio.Future[Verdict]] = {}
        self._unanswered: deque[tuple[int, float]] = deque()  # (request_id, sent at)
        self._call = stub.CheckOrderStream(self._requests(), metadata=metadata or None)
        self._reader = self._loop.create_task(self._read())

    async def opened(self) -> None:
        """Wait until the sidecar has answered the stream's headers (it sends them as soon
        as the stream starts). Raises grpc.aio.AioRpcError if the stream failed."""
        await self._call.initial_metadata()

    async def ask(self, request_id: int, order: pb.CheckOrderRequest, timeout: float) -> Verdict:
        """The verdict for `order`: the sidecar's answer, or a failure at the latest after
        `timeout` seconds. Never raises, except CancelledError when the caller cancels."""
        if self.broken:
            return failed(Failure.STREAM_BROKEN, "the stream is already broken")
        future: asyncio.Future[Verdict] = self._loop.create_future()
        self._pending[request_id] = future
        sent = self._loop.time()
        self._unanswered.append((request_id, sent))
        self._outbox.put_nowait(pb.CheckOrderStreamRequest(request_id=request_id, order=order))
        timer = self._loop.call_later(timeout, self._expire, request_id, timeout)
        try:
            verdict = await future
        finally:
            timer.cancel()
            self._pending.pop(request_id, None)  # a late answer then finds nobody waiting
        # An answer read in the loop turn where the timer is also due can beat it: once the
        # deadline has passed, an allow is a failure; a denial stands (review 40a).
        return late(verdict, self._loop.time() - sent >= timeout, timeout)

    async def close(self) -> None:
        """Deny everything in flight (CLIENT_ERROR: closing is our doing) and end the call."""
        self._break(Failure.CLIENT_ERROR, "the client was closed")
        await asyncio.gather(self._reader, return_exceptions=True)

    async def _requests(self) -> AsyncIterator[pb.CheckOrderStreamRequest]:
        while (request := await self._outbox.get()) is not None:
            yield request

    async def _read(self) -> None:
        try:
            async for answer in self._call:
                if answer is None:
                    # grpc.aio reads a message it cannot decode as None, and goes on: the
                    # answers no longer match their requests, so the stream ends here.
                    self._break(Failure.MALFORMED, "an answer that cannot be decoded; "
                                "stream replaced")
                    return
                self._on_answer(answer)
                if self.broken:
                    return
            self._break(Failure.STREAM_BROKEN, "the sidecar ended the stream")
        except grpc.aio.AioRpcError as error:
            cause = failure_of(error.code())
            if error.code() in UNCLEAR_CODES and not self._answers:
                # Refused while its first request was on the way, a stream can end so in
                # grpcio's core (review 54e: a fail-open client with a revoked token
                # allowed 1 check in 6): a stream that never answered proves no sidecar
                # that could not be heard from, so it is not one fail-open may flip.
                cause = Failure.REFUSED
            self._break(cause, f"{error.code().name}: {error.details()}")
        except asyncio.CancelledError:
            # A cancelled call also raises CancelledError here; only our own task's
            # cancellation is propagated.
            self._break(Failure.STREAM_BROKEN, "the stream was cancelled")
            if asyncio.current_task().cancelling():  # type: ignore[union-attr]
                raise
        except Exception as error:  # a waiting check must never be left hanging
            log.exception("ess stream reader failed")
            self._break(Failure.CLIENT_ERROR, f"stream reader failed: {error!r}")

    def _on_answer(self, answer: pb.CheckOrderStreamResponse) -> None:
        self._answers += 1
        if not self._unanswered:
            self._break(Failure.MALFORMED, f"answer to request {answer.request_id} never sent")
            return
        expected, _ = self._unanswered.popleft()
        if answer.request_id != expected:
            self._resolve(expected, failed(
                Failure.MALFORMED, f"answer to request {answer.request_id}, expected {expected}"))
            self._break(Failure.MALFORMED, "answers out of order; the stream is replaced")
            return
        self._resolve(expected, verdict_from_answer(answer))

    def _resolve(self, request_id: int, verdict: Verdict) -> None:
        future = self._pending.pop(request_id, None)
        if future is not None and not future.done():
            future.set_result(verdict)

    def _expire(self, request_id: int, timeout: float, answers: int = -1,
                idle: int = 0) -> None:
        # With `settle` (fail_open only): the timer runs before the reader in a loop busy
        # past the deadline (asyncio's ready queue; uvloop's timers before its I/O poll),
        # and grpc.aio reads an answer over several loop turns, so answers already
        # received may not have been read: the check fails only once SETTLE_IDLE_STEPS
        # looks, SETTLE_STEP_S apart, found no answer read since the last. Answers come in
        # request order, so while they are read this one's comes nearer; a denial read
        # meanwhile stands (reviews 42e, 42h, 42i: fail_open allowed a tripped sidecar's
        # denials). Fail-closed, a late denial and no answer both deny: no wait.
        future = self._pending.get(request_id)
        if future is None or future.done():
            return
        idle = idle + 1 if answers == self._answers else 0
        if self._settle and idle < SETTLE_IDLE_STEPS:
            self._loop.call_later(SETTLE_STEP_S, self._expire, request_id, timeout,
                                  self._answers, idle)
            return
        self._resolve(request_id, failed(Failure.DEADLINE,
                                         f"no answer within {timeout * 1e3:g} ms"))
        # One late answer is jitter; no answer at all for stall_after_s is a hung stream.
        if self._unanswered and self._loop.time() - self._unanswered[0][1] > self._stall_after_s:
            self._break(Failure.DEADLINE,
                        f"no answer for {self._stall_after_s:g} s; stream replaced")

    def _break(self, cause: Failure, message: str) -> None:
        if self.broken:
            return
        self.broken = True
        self._outbox.put_nowait(None)
        self._call.cancel()
        pending, self._pending = self._pending, {}
        self._unanswered.clear()
        for future in pending.values():
            if not future.done():
                future.set_result(failed(cause, message))
