"""The dead-man's switch kept alive: a Heartbeat RPC every interval until stopped."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import grpc

from ess.v1 import guard_pb2 as pb

from .failures import log

Send = Callable[[bool], Awaitable[pb.HeartbeatResponse]]


class Heartbeat:
    """A running heartbeat (`GuardClient.start_heartbeat`). `sent` counts answered beats,
    `failures` failed ones (the scope trips if they keep failing past the TTL);
    `last_response` is the scope's state at the last answer. One the sidecar refuses
    (INVALID_ARGUMENT, PERMISSION_DENIED, UNAUTHENTICATED) stops: `refused` says why,
    `running` is False. A callback that raises is logged and the beats go on: one bad
    callback must not trip the executor's scope. With `alive`, a beat is sent only when it
    returns True; one withheld is counted in `skipped`, and the scope trips at the TTL."""

    def __init__(self, send: Send, interval_s: float,
                 on_response: Callable[[pb.HeartbeatResponse], object] | None = None,
                 on_error: Callable[[Exception], object] | None = None,
                 alive: Callable[[], bool] | None = None, name: str = "") -> None:
        self.sent = 0
        self.failures = 0
        self.skipped = 0  # beats withheld: `alive` did not return True
        self.refused: Exception | None = None  # why the sidecar refused it: it stopped
        self.last_response: pb.HeartbeatResponse | None = None
        self._send, self._interval_s = send, interval_s
        self._on_response, self._on_error = on_response, on_error
        self._alive, self._name, self._was_alive = alive, name, True
        self._cancelled = False
        if not self._asked()[0]:  # the first beat registers: withheld, nothing would trip
            raise RuntimeError(f"ess heartbeat not started: alive() is not True for {name!r}")
        self._task = asyncio.get_running_loop().create_task(self._run())

    @property
    def running(self) -> bool:
        return not self._task.done()

    async def stopped(self) -> None:
        """Until it stops by itself (refused) or is stopped; cancelling the wait stops
        nothing."""
        await asyncio.wait((self._task,))

    async def stop(self) -> pb.HeartbeatResponse | None:
        """Stop beating and deregister (the scope does not trip); raises if deregistering
        failed, when the scope trips at the TTL as if the executor had died. After its
        client closed (`cancel`), it only stops: None."""
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        return None if self._cancelled else await self._send(True)

    def cancel(self) -> None:
        """Its client is closing: stop beating without deregistering, so that the scope
        trips at the TTL as for an executor that died (as TypeScript's and Java's; review
        54b: it beat on through a closed channel, a failure logged every interval)."""
        self._cancelled = True
        self._task.cancel()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        first = True  # asked at start: sent whatever alive() says now, so that the
        # executor is registered (review 54e: a loop that died before the task's first
        # turn was never registered, its scope never to trip, and nothing said so)
        while True:
            started = loop.time()
            if not first and not self._is_alive():
                self.skipped += 1
                await asyncio.sleep(max(0.0, self._interval_s - (loop.time() - started)))
                continue
            first = False
            try:
                response = await self._send(False)
            except Exception as error:  # noqa: BLE001 - every failure is counted and said
                self.failures += 1
                self._call(self._on_error, error)
                if _refused(error):  # sent again, it would be refused again, and the
                    self.refused = error  # scope is not registered: it trips for nothing
                    log.error("ess heartbeat refused, not sent again: %r", error)
                    return  # review 40e: a misspelled scope beat on, never registered
                if self._on_error is None:
                    log.warning("ess heartbeat failed: %r", error)
            else:
                self.sent += 1
                self.last_response = response
                self._call(self._on_response, response)
            await asyncio.sleep(max(0.0, self._interval_s - (loop.time() - started)))

    def _asked(self) -> tuple[bool, str]:
        """`alive()` (True when unset), an exception counting as not alive, and why not."""
        if self._alive is None:
            return True, ""
        try:
            return self._alive() is True, "it returned something other than True"
        except Exception as error:  # noqa: BLE001 - a predicate that fails is not alive
            return False, f"it raised {error!r}"

    def _is_alive(self) -> bool:
        """As `_asked`, said once each way it changes."""
        alive, why = self._asked()
        if alive != self._was_alive:
            self._was_alive = alive
            if alive:
                log.warning("ess heartbeat: alive() is True again for %r: beats resume",
                            self._name)
            else:
                log.warning("ess heartbeat: alive() is not True for %r (%s): beats withheld,"
                            " the scope trips at its TTL", self._name, why)
        return alive

    @staticmethod
    def _call(callback: Callable[[object], object] | None, value: object) -> None:
        if callback is None:
            return
        try:
            callback(value)
        except Exception:  # the beats go on (review 40a: TypeScript's stopped for good)
            log.exception("ess heartbeat callback failed")


def _refused(error: Exception) -> bool:
    """The sidecar refused the heartbeat itself (a scope, executor id or token it does not
    take): no retry can succeed."""
    return isinstance(error, grpc.aio.AioRpcError) and error.code() in (
        grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED)  # as TypeScript's (review 54b: it beat on)
