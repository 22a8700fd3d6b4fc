"""Waiting on one file descriptor, with poll(2). Never select(2): it takes no descriptor
past 1,023, and the sidecar raises its open-files limit far above that (grpc/server.py,
`raise_open_files_limit`), so a pipe or a pidfd opened while many connections are held
would be out of its range (ValueError), and a journal waiting on its syncer would fail."""

from __future__ import annotations

import contextlib
import select
import sys

READABLE, WRITABLE = select.POLLIN, select.POLLOUT


def ready(fd: int, timeout_s: float | None, events: int = READABLE) -> bool:
    """Whether `fd` is ready for `events`, at its end of file, hung up or in error within
    `timeout_s` (None: no limit), as select(2) would have it ready."""
    poller = select.poll()
    poller.register(fd, events)
    return bool(poller.poll(None if timeout_s is None else max(0.0, timeout_s) * 1000.0))


def python_stderr() -> int | None:
    """Where this process's Python writes its errors, for a child's (the journal's
    syncer, the fan-out process): serving, a blocking descriptor of stderr, where
    descriptor 2 may be one that drops what finds it full (`logs.descriptor_2_never_waits`:
    a child's traceback would lose its start). None (inherit descriptor 2) where
    sys.stderr has no descriptor (a test's capture)."""
    with contextlib.suppress(AttributeError, OSError, ValueError):
        return sys.stderr.fileno()
    return None
