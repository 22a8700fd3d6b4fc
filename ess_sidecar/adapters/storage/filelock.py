"""An exclusive, non-blocking lock on a file, held for a store's lifetime."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path


class LockHeld(Exception):
    """Another process holds the lock."""


class FileLock:
    """flock(LOCK_EX | LOCK_NB) on `path`. The file itself is never deleted: deleting it
    could let two processes each lock a different file of the same name."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> None:
        """Raises LockHeld if another process holds it, OSError if it cannot be taken."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LockHeld(str(self.path)) from None
        except OSError:
            os.close(fd)
            raise
        self._fd = fd

    def release(self) -> None:
        """Closing the descriptor releases the lock; idempotent."""
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)
