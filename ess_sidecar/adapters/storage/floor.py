"""The version floor: `<state file>.floor`, how far a run of the sidecar numbered what it
told without its store holding it (ports.VersionFloor; docs/design.md, "The version
floor").

A store that failed (a full disk) could not keep the versions the sidecar went on telling:
the fail-closed trip's, a lost trip's. The floor is a seal (seal.py): created at start-up,
while there is room, and after that overwritten in place, which needs no free block, so
the write that a full disk refused the store still goes through here. It names the
store's identity, so a floor left beside a state file deleted since is not taken for the
new one's; one written while the store could not be read names none, and any store takes
it (numbered higher than needed, never lower). Writes run in a thread of their own: the
event loop never waits for them, nor for a disk that hangs.
"""

from __future__ import annotations

import logging
import os
import threading

from ...ports import VersionFloor
from .seal import MOST_VERSION, Seal, SealUnreadable

log = logging.getLogger(__name__)

CLOSE_WAIT_S = 2.0  # a stop waits this long at most for the last write


def floor_path(store_path: str | os.PathLike[str]) -> str:
    return f"{store_path}.floor"


class FileVersionFloor(VersionFloor):
    def __init__(self, store_path: str | os.PathLike[str], identity: bytes | None) -> None:
        """identity: the store's (None: it cannot be read, so any floor beside it is
        taken, and one written names no store)."""
        self._seal = Seal(floor_path(store_path))
        self._identity = identity
        self._asked = self._kept = 0
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    def read(self) -> int:
        try:
            value = self._seal.read()
        except SealUnreadable as error:
            log.warning("the version floor cannot be read (%s): versions a run before this"
                        " one told while failed closed may be given again", error)
            return 0
        if value is None:
            return 0
        version = value.get("version")
        if not isinstance(version, int) or isinstance(version, bool) \
                or not 0 <= version <= MOST_VERSION:
            log.warning("the version floor %s is damaged (%r): versions a run before this"
                        " one told while failed closed may be given again",
                        self._seal.path, value)
            return 0
        named = value.get("identity")
        if self._identity is not None and named and named != self._identity.hex():
            return 0  # another store's: the state file it stood beside is gone
        return version

    def prepare(self, version: int) -> None:
        """Written now, so that the file exists while there is room."""
        version = max(self.read(), version)
        self._write(version)
        self._kept = version
        self._started()  # now, while it can be: a full disk may come with a full process

    def raise_to(self, version: int) -> None:
        with self._changed:
            if version <= max(self._asked, self._kept) or self._closed:
                return
            self._asked = version
            if self._started():
                self._changed.notify()
                return
        self._tried(version)  # no thread to be had: written here, once (review 55c)

    def _started(self) -> bool:
        """Whether the writer's thread runs, started if it did not: False if it cannot be
        (the process has as many threads as it may), logged."""
        if self._thread is None:
            thread = threading.Thread(target=self._keep, name="ess-version-floor",
                                      daemon=True)
            try:
                thread.start()
            except RuntimeError as error:
                log.error("the version floor's thread cannot start (%s): it is written"
                          " in the caller's thread", error)
                return False
            self._thread = thread
        return True

    def close(self) -> None:
        with self._changed:
            self._closed = True
            self._changed.notify()
            thread = self._thread
        if thread is not None:
            thread.join(CLOSE_WAIT_S)
            if thread.is_alive():
                log.warning("the version floor's last write has not finished in %g s",
                            CLOSE_WAIT_S)

    def _keep(self) -> None:
        written = self.read()  # an earlier run's, if not prepared: never lowered
        with self._changed:
            self._kept = max(self._kept, written)
        while True:
            with self._changed:
                while self._asked <= self._kept and not self._closed:
                    self._changed.wait()
                if self._asked <= self._kept:
                    return  # closed, nothing left to write
                version = self._asked
            self._tried(version)

    def _tried(self, version: int) -> None:
        """Write `version`, once: a failure is logged, and not tried again and again."""
        try:
            self._write(version)
        except (OSError, ValueError) as error:
            log.error("the version floor could not be written (%s): versions told while"
                      " failed closed, up to %d, may be given again after a restart",
                      error, version)
        with self._changed:
            self._kept = max(self._kept, version)

    def _write(self, version: int) -> None:
        identity = self._identity.hex() if self._identity is not None else ""
        self._seal.write({"identity": identity, "version": version})
