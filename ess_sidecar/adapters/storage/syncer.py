"""The journal's syncer: a child process that makes the journal durable (group commit).

Why a process and not a thread: a Python thread that wakes while the serving thread is
busy waits for the GIL, so under load its fsyncs came late (13.8 ms apart at p50, 17 at
p90 and up to 176 ms with 32 streams in flight, where 10 ms is set), and what a power cut
can take grew with the load. The syncer has its own interpreter: it fsyncs on time
(docs/design.md, "The journal's syncer").

It reads what the serving process appended, counts the whole records and takes the chain
of the last from its header (the serving process wrote and chained them; loading verifies
them), fsyncs, then writes the seal. While it runs it is the seal's only writer.

The serving process talks to it over two pipes. On `commands`:
- `w`: records are being written; a round (read, fsync, seal) follows `interval` later,
  and rounds go on every interval while records come, until one finds nothing new.
- `s`: sync now, and answer `ok <records sealed>` on `replies`.
- `q`: the serving process is stopping (it has sealed, or is about to); end of file
  follows and the syncer exits.
- end of file with no `q` before it: the serving process is gone (killed). Whole records
  it wrote since the last seal were acknowledged, and nothing vouches for them: a cut at
  a record boundary would lose them unseen. Once that process has exited, the syncer
  takes the state file's locks (non-blocking: a sidecar started since, or a reseal, owns
  the seal then, and the syncer leaves it) and seals them, then exits (`seal_orphaned`).
  A round under way when it went, asked or unasked, ends after its fsync without a seal,
  and the orphan's seal follows.

A failure to read, fsync or seal is answered `failed <why>` on `replies`, and the syncer
exits with status 1: the serving process then refuses records (it fails closed). It does
the same when the syncer leaves a wake unread, or a sync unanswered, for journal.STALLED_S
(5 s).

A syncer that dies without a word (killed) is replaced by the serving process, once a
minute at most; the replacement is told how many records the seal is known to hold, and its
first round seals the rest.

Run by FileJournal (`python -I -c`, main's arguments: PARENT_PID JOURNAL_FD COMMANDS_FD
REPLIES_FD SEAL INTERVAL_S OFFSET RECORDS CHAIN_HEX SEALED GENESIS_HEX [LOCKED_PATH...]),
never by hand.
"""

from __future__ import annotations

import errno
import os
import signal
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path

from ..descriptors import ready
from .filelock import FileLock, LockHeld
from .seal import Seal

HEADER = struct.Struct(">I16s")  # a journal record's frame: its length and chain
MAX_RECORD = 64 << 20  # a longer length field is damage, not a record
WAKE, SYNC, QUIT = b"w", b"s", b"q"
ORPHAN_WAIT_S = 2.0  # after end of file with no `q`: how long the serving process may take
# to exit (closing its files, its locks among them) before the syncer gives up sealing


def seal_value(records: int, chain: bytes, genesis: bytes) -> dict[str, object]:
    """A journal's seal: how many records, the chain after the last, and the chain before
    the first (the state store's identity: whose journal it is)."""
    return {"records": records, "chain": chain.hex(), "genesis": genesis.hex()}


def check_in_use(journal: int, path: str | os.PathLike[str], end: int) -> None:
    """Raise OSError unless `path` still names the journal open at `journal` (deleted,
    renamed away as log rotation does, or replaced, it does not) and the file holds the
    `end` bytes known written to it (cut or overwritten, it does not)."""
    status = os.fstat(journal)
    try:
        named = os.path.samestat(os.stat(path), status)
    except FileNotFoundError:
        named = False
    if not named:
        raise OSError(errno.ENOENT, f"{path} no longer names the journal in use (deleted,"
                      " renamed or replaced)")
    if status.st_size < end:
        raise OSError(errno.EIO, f"the journal is {status.st_size} bytes, shorter than the"
                      f" {end} written to it (cut or overwritten while in use)")


class Orphaned(Exception):
    """The serving process is gone: the seal is no longer this syncer's to write."""


class Syncer:
    def __init__(self, parent: int, journal: int, seal: Seal, interval: float, offset: int,
                 records: int, chain: bytes, clock: Callable[[], float] = time.monotonic,
                 sealed: int | None = None, genesis: bytes = bytes(16)) -> None:
        """parent: the serving process's pid; once this process has another parent, it
        seals nothing more. offset, records, chain: where the journal ends, how many
        records it holds and the chain after the last. sealed: how many of them the seal
        is known to hold, if fewer (a replacement's: its first round seals the rest).
        genesis: the chain before the first record, sealed with the rest."""
        self._parent = parent
        self._genesis = genesis
        self._journal = journal
        self._seal = seal
        self._path = seal.path.with_name(seal.path.name.removesuffix(".seal"))  # its journal
        self._interval = interval
        self._clock = clock
        self._end = offset  # of the last whole record read
        self._read = (records, chain)  # records read, and the chain after the last
        self._sealed = records if sealed is None else min(sealed, records)
        self._covered_until = 0.0  # a round at or after this sees every waking record
        self.quit = False  # the serving process said it is stopping: not orphaned

    def serve(self, commands: int, replies: int) -> int:
        """Answer the serving process until it goes; 1 after a failure (already said).
        0 when it has gone, found by a round (asked or unasked) as by end of file: main
        then seals what it wrote."""
        try:
            return self._serve(commands, replies)
        except Orphaned:
            return 0

    def _serve(self, commands: int, replies: int) -> int:
        due: float | None = None  # when the next round is; None while idle
        while True:
            wanted = self._wait(commands, due)
            now = self._clock()  # before a round reads the end: the read comes after it
            if wanted == b"":
                return 0  # closed: the serving process is done or gone
            if wanted is not None:
                self.quit = self.quit or QUIT in wanted
                if SYNC in wanted and not self._answered(replies):
                    return 1
                # The record that woke us may have been written just after a round read
                # the end: a round `interval` after this wake is due whatever happens.
                self._covered_until = max(self._covered_until, now + self._interval)
                if due is None:
                    due = now + self._interval
                continue
            try:
                grew = self._round()
            except (OSError, ValueError) as error:
                _say(replies, f"failed {error}")
                return 1
            if grew:
                due = now + self._interval
            else:  # idle, unless a wake since the last round still needs one
                due = self._covered_until if now < self._covered_until else None

    def _wait(self, commands: int, due: float | None) -> bytes | None:
        """What the serving process sent (b"" once it has gone), or None if `due` (on
        this syncer's clock) came first."""
        timeout = None if due is None else max(0.0, due - self._clock())
        if ready(commands, timeout):
            return os.read(commands, 4096)
        return None

    def _answered(self, replies: int) -> bool:
        try:
            self._round()
        except (OSError, ValueError) as error:
            _say(replies, f"failed {error}")
            return False
        _say(replies, f"ok {self._sealed}")
        return True

    def _round(self) -> bool:
        """Read what was appended, fsync it and seal it; whether there was any. A journal
        deleted, replaced or cut while in use fails (review 40b: deleted while served, it
        went unnoticed until the next start found the acknowledged book gone)."""
        check_in_use(self._journal, self._path, self._end)
        self._count()
        if self._read[0] == self._sealed:
            return False
        records, chain = self._read
        os.fsync(self._journal)  # everything read above is in it
        if os.getppid() != self._parent:  # killed meanwhile: a sidecar started since, or
            raise Orphaned  # a reseal, may own the seal now
        self._seal.write(seal_value(records, chain, self._genesis))
        self._sealed = records
        return True

    def seal_orphaned(self, locked: list[str]) -> bool:
        """Seal the whole records the serving process wrote, once it has exited, if no
        other process holds the locks on `locked` (the state file's) by then; whether it
        did. Their chain is taken from their headers as in any round: the next start
        verifies them all."""
        try:
            exited = os.pidfd_open(self._parent)
        except ProcessLookupError:
            exited = -1  # gone and reaped already
        except OSError:  # no pidfds here (Linux < 5.3): whether it exited cannot be told
            return False
        if exited >= 0:
            try:
                if not ready(exited, ORPHAN_WAIT_S):
                    return False  # alive: it closed the pipe on purpose, and seals itself
            finally:
                os.close(exited)
        lock = FileLock(Path(locked[0]))  # as the store takes them (NFS: writable)
        try:
            lock.acquire()
            for path in locked[1:]:
                lock.add(Path(path))
            self._count()
            if self._read[0] <= self._sealed:
                return False
            records, chain = self._read
            os.fsync(self._journal)
            self._seal.write(seal_value(records, chain, self._genesis))
            self._sealed = records
            return True
        except (LockHeld, OSError):  # held by a sidecar or a reseal, or cannot be: theirs
            return False
        finally:
            lock.release()  # `<state>.lock` last: a store that takes it finds the rest free

    def _count(self) -> None:
        """Count the whole records appended since the last; a record being written shows
        as a prefix of itself (the kernel copies before it grows the file), left for the
        next round."""
        data = os.pread(self._journal, os.fstat(self._journal).st_size - self._end,
                        self._end)
        offset, (records, chain) = 0, self._read
        while len(data) - offset >= HEADER.size:
            length, next_chain = HEADER.unpack_from(data, offset)
            if length > MAX_RECORD:
                raise OSError(f"a record of {length} bytes at byte {self._end + offset}:"
                              " the journal is damaged")
            end = offset + HEADER.size + length
            if end > len(data):
                break
            offset, records, chain = end, records + 1, next_chain
        self._end += offset
        self._read = (records, chain)


def _say(replies: int, line: str) -> None:
    try:
        os.write(replies, f"{line}\n".encode())
    except OSError:
        pass  # the serving process is gone: nobody to tell


def main(argv: list[str]) -> int:
    # A Ctrl-C, SIGTERM or SIGHUP to the process group is for the serving process, which closes
    # the pipe when it has stopped: the syncer must outlive its last sync.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # so does the sidecar (review 41c)
    (parent, journal, commands, replies, seal, interval, offset, records, chain, sealed,
     genesis, *locked) = argv
    syncer = Syncer(int(parent), int(journal), Seal(seal), float(interval), int(offset),
                    int(records), bytes.fromhex(chain), sealed=int(sealed),
                    genesis=bytes.fromhex(genesis))
    code = syncer.serve(int(commands), int(replies))
    if code == 0 and locked and not syncer.quit:
        syncer.seal_orphaned(locked)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
