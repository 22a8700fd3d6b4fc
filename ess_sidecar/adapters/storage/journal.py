"""The journal: every command that changed the engine's memory, appended to one file.

Beside the SQLite store (`<store>.journal`), because an allowed order must be on record
before its answer goes out, and one `write(2)` of a pre-encoded record costs a few
microseconds where an SQLite transaction costs tens. Durability, in two steps:

- `record` writes the record to the kernel before returning: it survives SIGKILL.
- A child process, the syncer (syncer.py), fsyncs every `sync_interval_s` what was written
  in it (group commit), then replaces the seal (`<journal>.seal`: how many records, and
  the chain's head). A process, not a thread: a thread of this process waits for the GIL
  under load, and its fsyncs come late (syncer.py says how late). A
  record wakes it once per interval, with a byte down a pipe; after an interval with
  nothing written it sleeps until woken: an idle sidecar's journal costs no CPU. If it
  is killed, the next wake or sync finds it gone: a sync then seals in this process,
  and the next record starts a new syncer, whose first round seals what was written
  since. If it fails (an fsync or a seal it could not make, or an exit it did not
  explain), stalls, or is killed again within REPLACED_EVERY_S of a replacement,
  records are refused from then on (fail closed). With `sync_interval_s`
  0 there is no syncer: `record` fsyncs itself before returning, power-loss durable, at
  the cost of an fsync per record. `sync` makes everything written durable at once (it
  asks the syncer, which answers when it has sealed); the service calls it before each
  transition is stored, so the journal is never behind the store on disk.

Each record is framed as `length (4 bytes) | chain (16) | payload`, where chain is
BLAKE2b-128 of the previous record's chain and this payload, the first record's from the
state store's identity (StoredState.identity; the seal keeps it too): a flipped bit, a torn
or missing record, a journal shorter than its seal, or another store's journal is found on
load and raises JournalDamaged. Payloads are JSON: `[command name, fields, transitions]`,
decoded by the field types of the command's dataclass (domain/commands.py), never by
evaluating them;
but for the one record of the hot path, an allowed order (`Admitted`), which is binary:
0x01 (JSON starts with "["), then side, reduce_only, quantity, price and time packed
(`<BBddd`), then the six ids joined by NUL (a canonical id holds no control character),
in UTF-8. Encoding it takes about a fifth of what its JSON took (float reprs).
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import errno
import fcntl
import hashlib
import json
import logging
import os
import struct
import subprocess
import sys
import termios
import threading
import time
import typing
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from types import NoneType, UnionType
from typing import Any, Union

from ...domain import commands
from ...domain.commands import Admitted, Command
from ...domain.errors import StoreDamaged, StoreUnavailable
from ...domain.orders import Order, Side
from ...domain.states import Transition
from ...ports import Journal, JournalEntry
from ..descriptors import python_stderr, ready
from .seal import Seal, SealUnreadable, read_regular
from .syncer import HEADER, MAX_RECORD, QUIT, SYNC, WAKE, check_in_use, \
    seal_value  # the frame: both read

log = logging.getLogger(__name__)

GENESIS = bytes(16)  # the chain before the first record of a store made before schema 6
COMMANDS = {cls.__name__: cls for cls in typing.get_args(commands.Command)}
ADMITTED = b"\x01"  # the first byte of a binary Admitted record
ADMITTED_NUMBERS = struct.Struct("<BBddd")  # side, reduce_only, quantity, price, now
STALLED_S = 5.0  # a syncer that has left a wake unread, or a sync unanswered, this long
REPLACED_EVERY_S = 60.0  # a syncer killed this soon after a replacement is not replaced
PAGE = os.sysconf("SC_PAGE_SIZE")  # a write(2) a kill cuts short ends at a multiple of it
_PACKAGES = Path(__file__).resolve().parents[3]  # where ess_sidecar is, for the syncer
SYNCER = ("import sys; sys.path.insert(0, sys.argv.pop(1));"
          " from ess_sidecar.adapters.storage.syncer import main; sys.exit(main(sys.argv[1:]))")


def journal_path(store_path: str | os.PathLike[str]) -> str:
    """The journal of the SQLite store at `store_path`."""
    return f"{store_path}.journal"


class JournalDamaged(StoreDamaged):
    """The journal is not what was written: replaying it could forget or invent state."""


class NewerRecord(ValueError):
    """A record of a kind this version does not know: a newer ess-sidecar wrote it (its
    kind is the message). Review 43h: called damage, its start failed closed naming a
    reseal, which kept the record, and the next start failed closed the same."""

    def __str__(self) -> str:
        return (f"of a kind this version does not know ({self.args[0]}): a newer ess-sidecar"
                " wrote it; run that version (an earlier one can neither read nor reseal"
                " its journal)")


class _Gone(Exception):
    """The syncer's pipe broke, or it closed its end: it has exited. `said`: what it had
    written of an answer."""

    def __init__(self, said: bytes = b"") -> None:
        super().__init__(said)
        self.said = said


class FileJournal(Journal):
    def __init__(self, path: str | os.PathLike[str], sync_interval_s: float = 0.01,
                 required: bool = False, stalled_s: float = STALLED_S,
                 clock: Callable[[], float] = time.monotonic,
                 identity: bytes | None = GENESIS,
                 locked: Sequence[str | os.PathLike[str]] = ()) -> None:
        """required: the state file beside it was in use, so a journal that is missing
        along with its seal was deleted, not never written. stalled_s: a syncer that
        leaves a wake unread, or a sync unanswered, this long fails the journal. clock:
        when to wake it. identity: the state store's (StoredState.identity), the chain
        before the first record: a journal chained from another is another store's, and
        is damage. None: unknown (the store cannot be read), the seal's is taken. locked:
        the files the state's lock is held on (FileLock): a syncer whose serving process
        was killed seals what it wrote if it can take them (syncer.Syncer.seal_orphaned)."""
        self._clock = clock
        self._locked = [str(path) for path in locked]
        self._identity = identity
        self._genesis = GENESIS if identity is None else identity
        self.path = Path(path)
        self._required = required
        self.seal = Seal(f"{self.path}.seal")
        self._interval = sync_interval_s
        self._stalled_s = stalled_s
        self._unread_since = 0.0  # the oldest wake the syncer may not have read yet
        self._fd: int | None = None
        # Records in the file and the chain after the last, as one value: sync() reads it
        # from other threads, and must never see a count and a chain that do not match.
        self._written = (0, self._genesis)
        self._synced = (0, self._genesis)  # what the seal says
        self._syncer: subprocess.Popen[bytes] | None = None  # started by start()
        self._commands = -1  # the pipe to the syncer (non-blocking), while it runs
        self._replies = -1  # the pipe from it
        self._next_wake = 0.0  # monotonic: a record from then on wakes the syncer
        # Held by sync() while it asks the syncer or seals, and by the serving thread
        # while it replaces a dead syncer: one seal writer at a time.
        self._sync_lock = threading.Lock()
        self._failure: OSError | None = None
        self._end = 0  # bytes the journal holds, as this process wrote them
        self._gone = False  # the syncer was found gone and is not replaced yet
        self._buried: OSError | None = None  # the gone syncer reaped: how it ended
        self._said_after = b""  # what the syncer wrote after an answer, in the same read
        self._replaced_at: float | None = None  # when a syncer was last replaced (clock)
        self._torn: int | None = None  # where a record a kill cut short starts (load)
        # When the file was last written (its mtime) as load() found it, before a cut of a
        # torn record (which keeps it where it can: _keep_times) (review 53d: an earlier
        # version's journal holds no ClockRead, and the cut made the start take its
        # downtime for none).
        self.last_written: float | None = None

    # -- Journal ----------------------------------------------------------------------------

    def load(self) -> list[JournalEntry]:
        """Read and verify every record, then open the file for appending."""
        try:
            seal = self.seal.read()
        except SealUnreadable as error:
            raise JournalDamaged(f"journal seal unreadable: {error}") from error
        if seal is not None:
            self._genesis = self._whose(seal)
            self._written = self._synced = (0, self._genesis)
        try:
            data = read_regular(self.path)
            self.last_written = os.stat(self.path).st_mtime
        except FileNotFoundError:
            if seal is not None:
                raise JournalDamaged(f"journal {self.path} is missing but its seal"
                                     f" {self.seal.path} shows {seal.get('records')} records"
                                     " were written (deleted?)") from None
            if self._required:
                raise JournalDamaged(f"journal {self.path} and its seal are missing, but the"
                                     " state file beside it was in use (deleted?)") from None
            data = b""
        except OSError as error:
            raise StoreUnavailable(f"journal {self.path} cannot be read: {error}") from error
        if seal is None and self._required:  # a first run seals at once: this was emptied
            raise JournalDamaged(f"journal {self.path} has no seal ({self.seal.path} is"
                                 " missing), but the state file beside it was in use: it"
                                 " was deleted or emptied")
        entries = list(self._verified(data, seal))
        self._open()
        if self._torn is not None:
            self._cut_torn(len(data))
        assert self._fd is not None
        self._end = os.fstat(self._fd).st_size  # what this process knows the file holds
        return entries

    @property
    def failed(self) -> bool:
        return self._failure is not None

    def record(self, command: Command | None, transitions: Sequence[Transition] = ()) -> None:
        if type(command) is Admitted and not transitions:  # the hot path, in binary
            payload = _admitted(command)
        else:
            payload = json.dumps([type(command).__name__ if command else "", command,
                                  transitions], default=_plain, separators=(",", ":")).encode()
        count, head = self._written
        chain = _chain(head, payload)
        try:
            if self._failure is not None:
                raise self._failure
            if len(payload) > MAX_RECORD:  # load would call it damage: refused, never written
                raise OSError(errno.EFBIG, f"a {len(payload)}-byte record is over the"
                              f" journal's {MAX_RECORD}-byte limit")
            assert self._fd is not None, "load() opens the journal"
            record = HEADER.pack(len(payload), chain) + payload
            written = os.write(self._fd, record)
            if written != len(record):  # a full disk or a file-size limit: a torn record
                _cut(self._fd, written)
                raise OSError(errno.ENOSPC, f"wrote {written} of a {len(record)}-byte record")
        except OSError as error:
            self._failure = error  # a record lost between kept ones would replay wrong
            raise StoreUnavailable(f"journal {self.path} cannot be written: {error}") \
                from error
        self._written = (count + 1, chain)
        self._end += written
        if self._interval == 0:
            self.sync()
        elif self._syncer is not None:  # once per interval under load: it is awake then
            now = self._clock()
            if now >= self._next_wake and not self._gone:
                self._next_wake = now + self._interval
                self._wake(now)
            if self._gone:  # now, or when a sync() in progress is done
                self._replace(now)

    def sync(self, force: bool = False) -> None:
        """Make what was recorded durable, and seal it. `force`: even when nothing is new
        (start-up proves the seal writable)."""
        head = self._written  # taken before the fsync: all of it is on disk after
        if head == self._synced and not force:
            return
        with self._sync_lock:
            if head[0] <= self._synced[0] and not force:
                return
            said = b""
            try:
                if self._syncer is not None and not self._gone:
                    if self._failure is not None:  # failed or stalled: asking would hang
                        raise self._failure
                    try:  # it is the seal's only writer while it runs
                        self._ask_syncer(head[0])
                    except _Gone as gone:
                        self._gone, said = True, gone.said
                if self._syncer is None or self._gone:  # none, or gone: seal it here
                    if self._syncer is not None:
                        self._bury(said)  # reaped: no other writer of the seal
                        if self._failure is not None:
                            raise self._failure
                    assert self._fd is not None
                    check_in_use(self._fd, self.path, self._end)
                    os.fsync(self._fd)
                    self.seal.write(seal_value(*head, self._genesis))
            except OSError as error:
                self._failure = error  # later records are refused: fail closed
                raise StoreUnavailable(f"journal {self.path} cannot be synced: {error}") \
                    from error
            self._synced = head

    def start(self) -> None:
        """Seal the end as loaded, then start the syncer from it. Raises StoreUnavailable
        if either cannot be done; then records are refused. The seal is written even when
        nothing is new: a seal that cannot be written (a read-only or immutable file)
        is found before anything is served, not by the first record (review 30)."""
        if self._syncer is not None or self._fd is None:
            return
        self.sync(force=True)  # none runs yet: sealed here
        if self._interval == 0:
            return
        try:
            self._spawn()
        except OSError as error:
            self._failure = error
            raise StoreUnavailable(f"journal {self.path}: its syncer cannot be started:"
                                   f" {error}") from error

    def close(self) -> None:
        self._stop_syncer()
        if self._fd is not None:
            try:
                self.sync()
            finally:
                os.close(self._fd)
                self._fd = None

    def reseal(self) -> tuple[str, bool]:
        """For an operator who has looked at a damaged journal and accepts it: keep the
        records that verify, up to the first that does not, cut the rest, and seal what
        is kept. The sidecar must not be running. Returns what was done, and whether
        records were lost: bytes cut, or fewer kept than the old seal counted."""
        data, offset, head, count, sealed = self._kept()
        with open(self.path, "ab") as journal:
            if offset < len(data):  # something to cut
                written = os.fstat(journal.fileno())
                journal.truncate(offset)
                journal.flush()
                _keep_times(journal.fileno(), written)
            os.fsync(journal.fileno())
        self.seal.write(seal_value(count, head, self._genesis))
        cut = len(data) - offset
        lost = sealed is not None and sealed > count
        return (f"journal {self.path}: {count} records kept and sealed"
                + (f", {cut} bytes after them cut" if cut else "")
                + (f", {sealed - count} of the {sealed} sealed lost" if lost else "")
                + (", its seal was missing, unreadable or not of these records: how many"
                   " were written is unknown" if sealed is None else "")), \
            bool(cut) or lost or sealed is None

    def sealed_genesis(self) -> bytes | None:
        """The genesis its seal names, if it can be read: which identity the records are
        chained from, for a reseal of the store that has two to choose from."""
        try:
            seal = self.seal.read()
            return _genesis(seal, self.seal.path) if seal is not None else None
        except (SealUnreadable, JournalDamaged):
            return None

    def last_entry(self) -> JournalEntry | None:
        """The last record that verifies (the chain, as a reseal keeps them), decoded; None
        if there is none or it does not decode. Its time is the latest the journal holds (a
        serving clock never goes back): a one-off command's trip is stamped no earlier
        (bootstrap._global_trip). Never a damaged tail's (review 36q: a rotted digit made
        the floor year 2280)."""
        data, end, *_ = self._kept()
        offset, last = 0, None
        while offset < end:
            start = offset + HEADER.size
            offset = start + HEADER.unpack_from(data, offset)[0]
            last = data[start:offset]
        try:
            return _entry(last) if last is not None else None
        except (ValueError, KeyError, TypeError, IndexError):
            return None

    def reseal_would_lose(self) -> bool:
        """Whether reseal() would cut or lose records, or cannot tell (the seal that
        counted them is missing or unreadable): asked before it, so that what the loss
        calls for (GLOBAL tripped in the store) is done before anything is cut."""
        data, offset, _, count, sealed = self._kept()
        return offset < len(data) or sealed is None or sealed > count

    def _kept(self) -> tuple[bytes, int, bytes, int, int | None]:
        """The file, the end, chain and number of the records that verify, and how many
        the seal counted (None if it cannot say: missing or unreadable). The chain starts
        from the store's identity, else from the seal's genesis: records chained from
        another are not this store's, and are cut. A seal whose chain is not that of the
        record at its count cannot say how many were written either (review 39c: its count
        rotted from 218 to 208 and 210 records left, the reseal reported nothing lost, and
        the next start forgot acknowledged orders), as load() finds it damaged."""
        sealed: int | None
        chained = b""
        try:
            seal = self.seal.read()
            sealed, chained = _sealed(seal, self.seal.path) if seal is not None else (None, b"")
            if seal is not None and self._identity is None:
                self._genesis = _genesis(seal, self.seal.path)
        except (SealUnreadable, JournalDamaged):
            sealed = None  # what it counted is unknown
        data = read_regular(self.path) if self.path.exists() else b""
        offset, head, count = 0, self._genesis, 0
        at_seal = head if sealed == 0 else None
        while len(data) - offset >= HEADER.size:
            length, chain = HEADER.unpack_from(data, offset)
            end = offset + HEADER.size + length
            if length > MAX_RECORD or end > len(data) \
                    or _chain(head, data[offset + HEADER.size:end]) != chain:
                break
            offset, head, count = end, chain, count + 1
            if count == sealed:
                at_seal = head
            _refuse_newer(data[end - length:end], count, self.path)
        if sealed is not None and sealed <= count and at_seal != chained:
            sealed = None  # the seal is not of these records: what it counted is unknown
        return data, offset, head, count, sealed

    # -- inside -----------------------------------------------------------------------------

    def _open(self) -> None:
        try:
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC,
                               0o644)
        except OSError as error:
            raise StoreUnavailable(f"journal {self.path} cannot be opened: {error}") from error
        if self._written[0] == 0 and not self.seal.exists():  # a first run leaves its marker
            try:
                os.fsync(self._fd)
                self.seal.write(seal_value(0, self._genesis, self._genesis))
            except OSError as error:
                raise StoreUnavailable(f"journal {self.path} cannot be sealed: {error}") \
                    from error

    def _cut_torn(self, size: int) -> None:
        """Take off the record a kill cut short (`_cut_short`) before anything follows it."""
        assert self._fd is not None and self._torn is not None
        try:
            written = os.fstat(self._fd)
            os.ftruncate(self._fd, self._torn)
            _keep_times(self._fd, written)
            os.fsync(self._fd)
        except OSError as error:
            raise StoreUnavailable(f"journal {self.path}: the record a kill cut short at byte"
                                   f" {self._torn} cannot be cut: {error}") from error
        log.warning("journal %s: the last record, never acknowledged, was cut short at byte"
                    " %d by a kill during its write; its %d bytes were cut", self.path,
                    size, size - self._torn)
        self._torn = None

    def _spawn(self, sealed: int | None = None) -> None:
        """Start a syncer from the journal's end as written; `sealed`: how many records
        the seal is known to hold, if fewer (its first round seals the rest)."""
        assert self._fd is not None
        theirs: list[int] = []  # the syncer's ends: its own once it runs
        try:
            reader = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            theirs.append(reader)
            if not os.path.samestat(os.fstat(reader), os.fstat(self._fd)):
                raise OSError(errno.ESTALE, f"{self.path} was replaced since it was opened")
            commands, self._commands = os.pipe()
            theirs.append(commands)
            self._replies, replies = os.pipe()
            theirs.append(replies)
            os.set_blocking(self._commands, False)  # a wake never blocks a decision
            count, chain = self._written
            self._unread_since = self._clock()
            # In this process group: a supervisor's kill of the group ends it too (it
            # ignores SIGINT and SIGTERM, and ends when this process closes its pipe).
            self._syncer = subprocess.Popen(
                [sys.executable, "-I", "-c", SYNCER, str(_PACKAGES), str(os.getpid()),
                 str(reader), str(commands), str(replies), str(self.seal.path),
                 repr(self._interval), str(os.fstat(self._fd).st_size), str(count),
                 chain.hex(), str(count if sealed is None else sealed), self._genesis.hex(),
                 *self._locked],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=python_stderr(),
                pass_fds=theirs)
        except BaseException:
            for fd in (self._commands, self._replies):
                if fd >= 0:
                    os.close(fd)
            self._commands = self._replies = -1
            raise
        finally:
            for fd in theirs:
                os.close(fd)

    def _wake(self, now: float) -> None:
        """One byte down the pipe. A syncer gone (EPIPE) is to be replaced; one that has
        left a wake unread for `stalled_s` (a hung disk, a stopped process) fails the
        journal: from then on nothing written would become durable."""
        try:
            with contextlib.suppress(BlockingIOError):  # full: wakes enough are waiting
                os.write(self._commands, WAKE)
            unread = struct.unpack("i", fcntl.ioctl(self._commands, termios.FIONREAD,
                                                    b"\0\0\0\0"))[0]
        except BrokenPipeError:  # it has exited: _replace says how, and what follows
            self._gone = True
            return
        except OSError as error:  # not a pipe any more?
            self._failure = error
            log.error("the journal's syncer cannot be woken; records are refused from now"
                      " on: %s", error)
            return
        if unread <= 1:  # it had read every wake before this one
            self._unread_since = now
        elif now - self._unread_since > self._stalled_s:
            self._failure = self._stalled(f"has left its wakes unread for"
                                          f" {now - self._unread_since:.1f} s")
            log.error("%s; records are refused from now on", self._failure)

    def _stalled(self, what: str) -> OSError:
        return OSError(errno.ETIMEDOUT, f"the journal's syncer {what}: stalled (a hung disk,"
                       " or a stopped process?), so nothing written is made durable")

    def _ask_syncer(self, records: int) -> None:
        """Have the syncer seal everything written; raises OSError if it cannot, or if it
        has not answered within `stalled_s`."""
        answer, deadline = b"", time.monotonic() + self._stalled_s
        try:
            os.write(self._commands, SYNC)
            while b"\n" not in answer:
                left = deadline - time.monotonic()
                if left <= 0 or not ready(self._replies, left):
                    raise self._stalled(f"did not answer within {self._stalled_s:g} s")
                more = os.read(self._replies, 4096)
                if not more:
                    raise _Gone(answer)
                answer += more
        except BlockingIOError:  # a pipe full of unread wakes
            raise self._stalled("has left its pipe full") from None
        except BrokenPipeError:
            raise _Gone(answer) from None
        # One ask at a time: the answer is the first line. What follows it in the same read
        # is a later round's failure: the answer stands, and the journal fails after it.
        line, _, self._said_after = answer.partition(b"\n")
        if not line.startswith(b"ok "):  # "failed <why>", and it has exited
            raise _Gone(answer)
        try:
            sealed = int(line[3:])
        except ValueError:
            raise OSError(errno.EIO, f"the journal's syncer answered {line!r}") from None
        if sealed < records:
            raise OSError(errno.EIO, f"the journal's syncer sealed {sealed} records,"
                          f" {records} were written")
        if b"failed " in self._said_after:  # it has exited: the journal fails from now on
            self._bury()

    def _bury(self, said: bytes = b"") -> None:
        """With the sync lock held, once the syncer is found gone: reap it and read what
        it said. Only a syncer killed by a signal without a word is replaced
        (`_replace`, its seal written here meanwhile), and only if the last replacement
        is REPLACED_EVERY_S old. One that said why it failed (a read, fsync or seal), or
        exited by itself without saying (an exception: an fsync's error may have gone
        with it), fails the journal: a failed fsync must never be retried as if it had
        not happened (a second can succeed with the data lost)."""
        if self._buried is not None or self._failure is not None:
            return
        syncer = self._syncer
        assert syncer is not None
        try:  # it has exited, or it is exiting after saying why
            code = syncer.wait(timeout=self._stalled_s)
        except subprocess.TimeoutExpired:
            syncer.kill()
            code = syncer.wait()
        said = (said + self._said_after + _drained(self._replies)).strip()
        self._said_after = b""
        reason = said[said.find(b"failed "):] if b"failed " in said else b""
        why = reason.removeprefix(b"failed ").strip().decode(errors="replace") if reason \
            else f"it exited with status {code}"
        self._buried = OSError(errno.EIO, f"the journal's syncer stopped: {why}")
        now = self._clock()
        if reason or code >= 0:
            self._failure = self._buried
        elif self._replaced_at is not None and now - self._replaced_at < REPLACED_EVERY_S:
            self._failure = OSError(errno.EIO, f"{self._buried.strerror}, again within"
                                    f" {REPLACED_EVERY_S:g} s of its replacement")
        if self._failure is not None:
            log.error("%s; records are refused from now on", self._failure.strerror)
        else:
            log.error("%s; a new syncer takes over", self._buried.strerror)

    def _replace(self, now: float) -> None:
        """In the serving thread (the only one that records, so the end, the count and
        the chain agree): start a new syncer in place of the gone one, unless a sync()
        holds the lock (then the next record does it), or the journal has failed. The new
        one is woken at once: its first round seals what was written since the last
        seal. Before it starts, this process fsyncs the journal through its own file,
        which has not fsynced since it was opened: an fsync error the dead syncer's
        fsync saw and took with it (killed during it) is reported here, once, and fails
        the journal. That fsync holds this record, once a minute at most."""
        if not self._sync_lock.acquire(blocking=False):
            return
        try:
            if self._failure is not None:
                return
            self._bury()
            if self._failure is not None:
                return
            assert self._fd is not None
            os.fsync(self._fd)
            self._close_pipes()
            self._spawn(sealed=self._synced[0])
            assert self._syncer is not None
            pid, self._gone, self._buried, self._replaced_at = self._syncer.pid, False, None, now
        except OSError as error:
            self._failure = error
            log.error("the journal's syncer cannot be replaced; records are refused from"
                      " now on: %s", error)
            return
        finally:
            self._sync_lock.release()
        log.warning("the journal's syncer was replaced (pid %d)", pid)
        self._next_wake = now + self._interval
        self._wake(now)

    def _close_pipes(self) -> None:
        for fd in (self._commands, self._replies):
            if fd >= 0:
                os.close(fd)
        self._commands = self._replies = -1

    def _stop_syncer(self) -> None:
        """Close its pipe, so that it ends, and wait for it (it may be sealing). Called
        once nothing else records or syncs (the service has drained its store thread)."""
        syncer = self._syncer
        if syncer is None:
            return
        commands, self._commands = self._commands, -1  # a wake now fails, and no other
        if commands >= 0:  # file opened meanwhile under this number gets a byte
            with contextlib.suppress(OSError):  # full, or it is gone: it ends all the same
                os.write(commands, QUIT)  # stopping: not killed, nothing for it to seal
            os.close(commands)  # (-1: closed by a replacement that could not start)
        try:
            code = syncer.wait(timeout=self._stalled_s)
        except subprocess.TimeoutExpired:
            log.error("the journal's syncer did not end in %g s; killed", self._stalled_s)
            syncer.kill()
            code = syncer.wait()
        try:
            if code != 0 and self._buried is None:  # a failure nobody saw yet: say it
                log.error("the journal's syncer ended with status %s: %s", code,
                          _drained(self._replies).decode(errors="replace").strip())
        finally:
            self._close_pipes()
            self._syncer, self._gone, self._buried = None, False, None

    def _whose(self, seal: dict[str, Any]) -> bytes:
        """The seal's genesis, if it is the store's: a journal copied in with its seal
        from another sidecar would replay that sidecar's book and working orders (review
        31), and its trips would pass for this store's once the store has pruned the
        history they are checked against."""
        genesis = _genesis(seal, self.seal.path)
        if self._identity is not None and genesis != self._identity:
            raise self._damaged(f"its seal {self.seal.path} says it is the journal of another"
                                f" state store (genesis {genesis.hex()}, this store's identity"
                                f" is {self._identity.hex()}): copied from another sidecar?")
        return genesis

    def _verified(self, data: bytes, seal: dict[str, Any] | None) -> Iterator[JournalEntry]:
        sealed = _sealed(seal, self.seal.path, self._genesis)
        if data and seal is None:
            raise self._damaged(f"its seal {self.seal.path} is missing (deleted?)")
        offset, head, count = 0, self._genesis, 0
        while offset < len(data):
            if len(data) - offset < HEADER.size:
                if self._cut_short(data, offset, count, sealed[0]):
                    break
                raise self._damaged(f"a torn record at byte {offset}")
            length, chain = HEADER.unpack_from(data, offset)
            start = offset + HEADER.size
            if length > MAX_RECORD or start + length > len(data):
                if length <= MAX_RECORD and self._cut_short(data, offset, count, sealed[0]):
                    break
                raise self._damaged(f"a torn or garbled record at byte {offset}")
            payload = data[start:start + length]
            if _chain(head, payload) != chain:
                raise self._damaged(f"record {count + 1} (byte {offset}) does not match its"
                                    " hash chain: altered or corrupt")
            head, count, offset = chain, count + 1, start + length
            if count == sealed[0] and head != sealed[1]:
                raise self._damaged(f"record {count} differs from the one sealed")
            try:
                yield _entry(payload)
            except NewerRecord as error:
                raise JournalDamaged(f"journal {self.path}: record {count} is {error}") \
                    from error
            except (ValueError, TypeError, KeyError, IndexError) as error:
                raise self._damaged(f"record {count} cannot be decoded: {error!r}") from error
        if count < sealed[0]:
            raise self._damaged(f"it ends at record {count} but its seal says {sealed[0]} were"
                                " written (truncated?)")
        self._written = (count, head)
        self._synced = (count, head) if count == sealed[0] else sealed

    def _cut_short(self, data: bytes, offset: int, count: int, sealed: int) -> bool:
        """Whether the bytes from `offset` on are a record whose write a kill cut short:
        past the seal, and ending the file at a page boundary, where the kernel stops a
        write(2) for a fatal signal (a record crossing one, review 31). Such a record was
        never acknowledged (its answer waits for the whole write), so load() cuts it
        (`_torn`) instead of failing every order until a reseal; transitions it carried
        were stored first, and reconcile takes them back from the store. A torn end
        anywhere else (below the seal, or not at a page boundary) is damage."""
        if count < sealed or len(data) % PAGE:
            return False
        self._torn = offset
        return True

    def _damaged(self, what: str) -> JournalDamaged:
        return JournalDamaged(f"journal {self.path} is damaged: {what}")


def _cut(fd: int, written: int) -> None:
    """Take a torn record's bytes off the end again, so that the next start finds the
    journal whole (review 22: a full disk left them, and the start found it damaged, and
    its reseal said records were lost). If that fails too, the start finds the damage."""
    with contextlib.suppress(OSError):
        os.ftruncate(fd, os.lseek(fd, 0, os.SEEK_END) - written)


SEAL_KEYS = frozenset({"records", "chain", "genesis"})  # every one syncer.seal_value writes


def _known_keys(seal: dict[str, Any]) -> None:
    """ValueError for a key no version wrote (review 58a: one bit flipped in the store's
    seal made "identity" another key, taken as absent; here "genesis" would be)."""
    if unknown := seal.keys() - SEAL_KEYS:
        raise ValueError(f"keys no seal has: {sorted(unknown)!r}"[:200])


def _sealed(seal: dict[str, Any] | None, path: Path,
            genesis: bytes = GENESIS) -> tuple[int, bytes]:
    if seal is None:
        return 0, genesis
    try:
        _known_keys(seal)
        records, chain = seal["records"], bytes.fromhex(seal["chain"])
        if type(records) is not int or records < 0:  # 1e999 is a float (inf), not a count
            raise ValueError(f"records is {records!r}, not a count")
        return records, chain
    except (KeyError, ValueError, TypeError) as error:
        raise JournalDamaged(f"journal seal {path} is garbled: {error!r}") from error


def _genesis(seal: dict[str, Any], path: Path) -> bytes:
    """The chain before the first record: the seal's, or zeros in a seal from before it
    was kept (schema 6), whose journal was chained from them."""
    try:
        _known_keys(seal)
        genesis = bytes.fromhex(seal.get("genesis", GENESIS.hex()))
        if len(genesis) != len(GENESIS):
            raise ValueError(f"genesis is {len(genesis)} bytes, not {len(GENESIS)}")
        return genesis
    except (ValueError, TypeError) as error:
        raise JournalDamaged(f"journal seal {path} is garbled: {error!r}") from error


def _drained(fd: int) -> bytes:
    """What a pipe whose writer has exited holds."""
    said = b""
    with contextlib.suppress(OSError):
        while more := os.read(fd, 4096):
            said += more
    return said


def _chain(head: bytes, payload: bytes) -> bytes:
    return hashlib.blake2b(head + payload, digest_size=16).digest()


# -- the codec: dataclasses and named tuples as JSON arrays, decoded by their field types --

def _plain(value: Any) -> list[Any]:
    """A dataclass as the list of its fields, for `json.dumps(default=)`. The encoder does
    the rest in C: a named tuple is a tuple (a list of its fields, in order), an IntEnum an
    int; a snapshot of 60,000 entries is encoded in about 0.1 s, half of what it took."""
    if not dataclasses.is_dataclass(value):
        raise TypeError(f"cannot journal a {type(value).__name__}")
    return [getattr(value, name) for name in _fields(type(value))]


def _admitted(admitted: Admitted) -> bytes:
    """An Admitted as its binary record (the module docstring gives the layout)."""
    o = admitted.order
    return (ADMITTED + ADMITTED_NUMBERS.pack(o.side, o.reduce_only, o.quantity, o.price,
                                             admitted.now)
            + "\x00".join((o.account, o.strategy, o.symbol, o.client_order_id,
                            o.replaces_client_order_id, admitted.decision_id)).encode())


def _admitted_from(payload: bytes) -> JournalEntry:
    try:
        side, reduce_only, quantity, price, now = ADMITTED_NUMBERS.unpack_from(payload, 1)
    except struct.error as error:
        raise ValueError(f"a binary Admitted record of {len(payload)} bytes") from error
    account, strategy, symbol, client_order_id, replaces, decision_id = \
        payload[1 + ADMITTED_NUMBERS.size:].decode().split("\x00")
    if reduce_only > 1:
        raise ValueError(f"reduce_only {reduce_only} is not a boolean")
    order = Order(account, strategy, symbol, Side(side), quantity, price, bool(reduce_only),
                  client_order_id, replaces)
    return Admitted(order, now, decision_id), ()


def _kind(payload: bytes) -> str | None:
    """The kind of a record that verifies, if this version does not know it (a newer
    one's): a JSON record's command name, or a binary record's first byte."""
    if payload[:1] == ADMITTED or not payload:
        return None
    if payload[:1] != b"[":
        return f"binary record 0x{payload[0]:02x}"
    try:
        name = json.loads(payload)[0]
    except (ValueError, IndexError, KeyError, TypeError):
        return None  # garbled, not newer: load() finds it damaged
    return name if isinstance(name, str) and name and name not in COMMANDS else None


def _refuse_newer(payload: bytes, number: int, path: Path) -> None:
    """StoreUnavailable if the record is of a kind a newer ess-sidecar wrote: a reseal by
    this one would keep what it cannot read (review 43h)."""
    if (kind := _kind(payload)) is not None:
        raise StoreUnavailable(f"journal {path}: record {number} is {NewerRecord(kind)}")


def _entry(payload: bytes) -> JournalEntry:
    if payload[:1] == ADMITTED:
        return _admitted_from(payload)
    if (kind := _kind(payload)) is not None:
        raise NewerRecord(kind)
    name, fields, transitions = json.loads(payload)
    command = _decode(COMMANDS[name], fields) if name else None
    return command, tuple(_decode(Transition, t) for t in transitions)


def _decode(kind: Any, value: Any) -> Any:
    origin = typing.get_origin(kind)
    if origin in (Union, UnionType):
        options = typing.get_args(kind)
        if value is None and NoneType in options:
            return None
        return _decode(next(o for o in options if o is not NoneType), value)
    if origin is tuple:
        item = typing.get_args(kind)[0]
        return tuple(_decode(item, v) for v in value)
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return kind(value)
    if kind in (str, int, bool):
        if type(value) is not kind:
            raise TypeError(f"expected {kind.__name__}, got {value!r}")
        return value
    if kind is float:
        if type(value) not in (int, float):
            raise TypeError(f"expected a number, got {value!r}")
        return float(value)
    hints = _hints(kind)
    names = _fields(kind)
    if len(value) > len(names):  # fewer: written before trailing fields with defaults
        raise ValueError(f"{kind.__name__} has {len(names)} fields, not {len(value)}")
    return kind(*(_decode(hints[n], v) for n, v in zip(names, value)))


_FIELDS: dict[type, tuple[str, ...]] = {}
_HINTS: dict[type, dict[str, Any]] = {}


def _fields(kind: type) -> tuple[str, ...]:
    names = _FIELDS.get(kind)
    if names is None:
        names = getattr(kind, "_fields", None) or tuple(f.name for f in dataclasses.fields(kind))
        _FIELDS[kind] = names
    return names


def _hints(kind: type) -> dict[str, Any]:
    hints = _HINTS.get(kind)
    if hints is None:
        hints = _HINTS[kind] = typing.get_type_hints(kind)
    return hints


def _keep_times(fd: int, written: os.stat_result) -> None:
    """Put back the file's times as `written` had them: a cut is no write. A journal an
    earlier version wrote holds no clock reading, and its last write stands in for when
    the sidecar stopped (recovery.last_clock_read); a cut that moved it to now lost the
    downtime, at the start that cut it or, failed before its first reading, at the next
    (reviews 53d, 53e), and so did a reseal. Best effort: setting a file's times needs its
    owner, where cutting needs only write permission (review 53f: a journal another user
    owns made the cut a failure, and every reseal)."""
    try:
        os.utime(fd, ns=(written.st_atime_ns, written.st_mtime_ns))
    except OSError as error:
        log.warning("the journal's last write time could not be kept across a cut (%s): a"
                    " journal an earlier version wrote, with no clock reading, now looks"
                    " written just now, and the next start counts no downtime before it",
                    error)
