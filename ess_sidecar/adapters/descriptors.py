"""Waiting on one file descriptor, with poll(2). Never select(2): it takes no descriptor
past 1,023, and the sidecar raises its open-files limit far above that (grpc/server.py,
`raise_open_files_limit`), so a pipe or a pidfd opened while many connections are held
would be out of its range (ValueError), and a journal waiting on its syncer would fail."""

from __future__ import annotations

import select

READABLE, WRITABLE = select.POLLIN, select.POLLOUT


def ready(fd: int, timeout_s: float | None, events: int = READABLE) -> bool:
    """Whether `fd` is ready for `events`, at its end of file, hung up or in error within
    `timeout_s` (None: no limit), as select(2) would have it ready."""
    poller = select.poll()
    poller.register(fd, events)
    return bool(poller.poll(None if timeout_s is None else max(0.0, timeout_s) * 1000.0))
