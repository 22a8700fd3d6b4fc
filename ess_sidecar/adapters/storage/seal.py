"""A high-water mark kept beside a state file, outside it: how far the file had got.

A store or journal writes its seal after each durable write; on start-up, a file that is
behind its seal, or missing while its seal exists, has lost what was acknowledged. The
seal is small JSON, replaced atomically (write a temporary file, fsync, rename, fsync the
directory), so a crash leaves the old seal or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


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
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as error:
            raise SealUnreadable(f"{self.path}: {error}") from error
        try:
            value = json.loads(text)
        except ValueError as error:
            raise SealUnreadable(f"{self.path}: not a seal: {error}") from error
        if not isinstance(value, dict):
            raise SealUnreadable(f"{self.path}: not a seal: {text[:80]!r}")
        return value

    def write(self, value: dict[str, Any]) -> None:
        """Replace the seal durably. Raises OSError."""
        data = json.dumps(value, sort_keys=True).encode()
        fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(self._tmp, self.path)
        directory = os.open(self.path.parent, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
