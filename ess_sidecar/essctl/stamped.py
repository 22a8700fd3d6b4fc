"""A WatchState stream followed on a thread, each message stamped when it arrived."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from types import TracebackType

import grpc

from ess.v1 import guard_pb2 as pb

from .connection import Sidecar


class StampedWatcher:
    """The drill's witness: it must see the trip as any executor would, and the time it
    took is measured on arrival, not when the main thread gets round to looking."""

    def __init__(self, sidecar: Sidecar, scope: pb.Scope) -> None:
        self._arrived: queue.Queue[tuple[float, pb.WatchStateResponse | grpc.RpcError]] = \
            queue.Queue()
        self._call = sidecar.watch(pb.WatchStateRequest(scopes=[scope]))
        self._thread = threading.Thread(target=self._follow, daemon=True)
        self._thread.start()
        self.error: grpc.RpcError | None = None

    def _follow(self) -> None:
        try:
            for message in self._call:
                self._arrived.put((time.perf_counter(), message))
        except grpc.RpcError as error:
            self._arrived.put((time.perf_counter(), error))

    def wait_for(self, wanted: Callable[[pb.WatchStateResponse], bool],
                 timeout_s: float) -> tuple[float, pb.WatchStateResponse] | None:
        """The first message `wanted` accepts and its arrival time, or None by the
        deadline or once the stream has broken (then `error` says why)."""
        deadline = time.perf_counter() + timeout_s
        while self.error is None and (left := deadline - time.perf_counter()) > 0:
            try:
                stamp, item = self._arrived.get(timeout=left)
            except queue.Empty:
                return None
            if isinstance(item, grpc.RpcError):
                self.error = item
            elif wanted(item):
                return stamp, item
        return None

    def __enter__(self) -> StampedWatcher:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._call.cancel()
        self._thread.join(timeout=5)
