"""An exclusive, non-blocking lock on a file, held for a store's lifetime."""

from __future__ import annotations

import errno
import fcntl
import os
import time
from pathlib import Path

RETRY_S = 0.01  # how often a held lock is tried again, while acquire() may wait


class LockHeld(Exception):
    """Another process holds the lock."""


class FileLock:
    """flock(LOCK_EX | LOCK_NB) on `path`, then on other files it guards (`add`). The file
    itself is never deleted: deleting it could let two processes each lock a different
    file of the same name; and if someone deletes it all the same, the lock on a guarded
    file (one that is never replaced while in use) still keeps a second process out."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fds: list[int] = []

    @property
    def held(self) -> bool:
        return bool(self._fds)

    def acquire(self, wait_s: float = 0.0) -> None:
        """Raises LockHeld if another process holds it (still, after trying again for
        `wait_s`), OSError if it cannot be taken."""
        give_up = time.monotonic() + wait_s
        while True:
            try:
                self._fds.append(_locked(self.path, os.O_RDWR | os.O_CREAT))
                return
            except LockHeld:
                if time.monotonic() >= give_up:
                    raise
                time.sleep(RETRY_S)

    def add(self, path: Path) -> None:
        """Lock an existing file too, with the lock held (LockHeld, OSError as acquire)."""
        assert self._fds, "acquire() first"
        try:
            fd = _locked(path, os.O_RDWR)  # NFS emulates flock: it needs a writer
        except OSError as error:
            if error.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise
            fd = _locked(path, os.O_RDONLY)  # a file this process may not write (the
            # store finds that, and says so): still locked, for a local file system
        self._fds.append(fd)

    def release(self) -> None:
        """Closing the descriptors releases the locks; idempotent."""
        fds, self._fds = self._fds, []
        for fd in reversed(fds):
            os.close(fd)


def _locked(path: Path, flags: int) -> int:
    fd = os.open(path, flags | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise LockHeld(str(path)) from None
    except OSError:
        os.close(fd)
        raise
    return fd
