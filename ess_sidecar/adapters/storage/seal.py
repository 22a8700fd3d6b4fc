"""A high-water mark kept beside a state file, outside it: how far the file had got.

A store or journal writes its seal after each durable write; on start-up, a file that is
behind its seal, or missing while its seal exists, has lost what was acknowledged.

The seal is small JSON padded with spaces to SIZE bytes (JSON allows trailing white
space). It is created once atomically (a temporary file, fsync, rename, fsync of the
directory); after that each write overwrites those SIZE bytes in place and fdatasyncs
them: one flush, not three, because the journal's seal is written with every group
commit (every 10 ms under load). SIZE is within one disk sector, whose write a crash
leaves old or new (the same assumption SQLite makes of its own header), so a crash
leaves the old seal or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import stat
from pathlib import Path
from typing import Any

SIZE = 256  # bytes; within one 512-byte sector
MAX_READ = 64 << 10  # a longer seal is damage: read() stops there and fails to parse it
# The highest version a seal may name (SQLite's INTEGER: review 55c, 2^63 failed every write,
# and the reseal); and the highest a run numbers past (a floor's, a reseal's from a seal),
# leaving room for what comes next (review 55g), and for reading back what it numbered
# past one at that bound (review 55h: a bound of 2^62 made 2^62 + 1 damage).
MOST_INTEGER = (1 << 63) - 1
MOST_VERSION = MOST_INTEGER - (1 << 32)


class SealUnreadable(Exception):
    """The seal exists but cannot be read or parsed."""


class Seal:
    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._tmp = Path(f"{self.path}.tmp")

    def exists(self) -> bool:
        return self.path.exists()

    def read(self) -> dict[str, Any] | None:
        """The last seal written, or None if there is none. Raises SealUnreadable."""
        try:
            text = read_regular(self.path, MAX_READ).decode("utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as error:
            raise SealUnreadable(f"{self.path}: {error}") from error
        try:
            value = json.loads(text)
        except (ValueError, RecursionError) as error:  # review 55e: "[" * 5000
            raise SealUnreadable(f"{self.path}: not a seal: {error}") from error
        if not isinstance(value, dict):
            raise SealUnreadable(f"{self.path}: not a seal: {text[:80]!r}")
        return value

    def write(self, value: dict[str, Any]) -> None:
        """Replace the seal durably. Raises OSError (ValueError if it is over SIZE)."""
        data = json.dumps(value, sort_keys=True).encode()
        if len(data) > SIZE:
            raise ValueError(f"a seal is at most {SIZE} bytes: {data[:80]!r}")
        data = data.ljust(SIZE)
        try:  # never blocking (a FIFO put in its place is refused, not waited on), nor
            # following a symlink put there (replaced: review 55c)
            fd = os.open(self.path, os.O_WRONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOFOLLOW)
        except OSError as error:
            if not isinstance(error, FileNotFoundError) and error.errno != errno.ELOOP:
                raise
            self._create(data)
            return
        try:
            found = os.fstat(fd)
            if not stat.S_ISREG(found.st_mode):
                raise OSError(errno.EINVAL, f"{self.path}: not a regular file")
            whole = found.st_size != SIZE  # not one this class wrote: replace it
            if not whole:
                _all_written(os.pwrite(fd, data, 0), data)
                os.fdatasync(fd)
        finally:
            os.close(fd)
        if whole:
            self._create(data)

    def _create(self, data: bytes) -> None:
        # A new file, never one found there: a FIFO held the open for good, a symlink had
        # the file it names overwritten (review 55c).
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._tmp)
        fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                     | os.O_CLOEXEC, 0o644)
        try:
            _all_written(os.write(fd, data), data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(self._tmp, self.path)
        directory = os.open(self.path.parent, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def read_regular(path: str | os.PathLike[str], limit: int | None = None) -> bytes:
    """A regular file's bytes (at most `limit`), never blocking: a FIFO, a device
    (`/dev/zero`) or a directory put in its place is an OSError, not a hang or a read
    without end (review 31). FileNotFoundError if there is nothing there."""
    with os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC), "rb") as file:
        if not stat.S_ISREG(os.fstat(file.fileno()).st_mode):
            raise OSError(errno.EINVAL, f"{path}: not a regular file")
        return file.read(-1 if limit is None else limit)


def _all_written(count: int, data: bytes) -> None:
    """A short write (a full disk, a file-size limit) is a failed one."""
    if count != len(data):
        raise OSError(errno.ENOSPC, f"wrote {count} of the seal's {len(data)} bytes")
