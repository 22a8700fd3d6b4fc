"""The journal's syncer (adapters/storage/syncer.py): its rounds, on a clock the test moves,
and the real child process: what it seals, asked and unasked, and what the journal does
when it dies, fails, is sent Ctrl-C, or outlives the process that started it."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import os
import queue
import resource
import select
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import pytest

from ess_sidecar.adapters.storage.journal import GENESIS, FileJournal
from ess_sidecar.adapters.storage.seal import Seal
from ess_sidecar.adapters.storage.syncer import Syncer, seal_value
from ess_sidecar.adapters.storage.syncer import main as syncer_main
from ess_sidecar.domain.errors import StoreUnavailable
from tests.integration.test_journal import EVERY_COMMAND

INTERVAL = 0.01
TIME = None  # a step: the time the syncer waits for comes


class Stepped(Syncer):
    """A syncer whose time passes only when the test says. Each wait shows the test what
    it waits for (`waits`: the time a round is due, None to sleep until woken) and takes
    the next step from `steps`: what the serving process sent, or TIME; a step may also
    set the clock first (`(at, sent)`)."""

    def __init__(self, journal: FileJournal, parent: int) -> None:
        self.now = 0.0
        self.waits: queue.Queue[float | None] = queue.Queue()
        self.steps: queue.Queue[bytes | tuple[float, bytes] | None] = queue.Queue()
        self.reader = os.open(journal.path, os.O_RDONLY)
        super().__init__(parent, self.reader, journal.seal, INTERVAL, 0, 0, GENESIS,
                         clock=lambda: self.now)

    def _wait(self, commands: int, due: float | None) -> bytes | None:
        self.waits.put(due)
        step = self.steps.get(timeout=10)
        if step is TIME:
            assert due is not None, "time cannot wake a syncer that waits for a record"
            self.now = due
            return None
        if isinstance(step, tuple):
            self.now, step = step
        return step

    def next_wait(self) -> float | None:
        return self.waits.get(timeout=10)


class Served:
    """A fresh journal (not started: no process, no wakes) and a Stepped syncer serving it
    on a thread; `replies`: the pipe it answers on."""

    def __init__(self, tmp_path: Path, parent: int | None = None) -> None:
        self.journal = FileJournal(tmp_path / "ess.db.journal", INTERVAL)
        assert self.journal.load() == []
        # In this process, the parent the syncer sees is this process's parent.
        self.syncer = Stepped(self.journal, os.getppid() if parent is None else parent)
        self.replies, self._answers = os.pipe()
        self._ended: list[int] = []
        self._thread = threading.Thread(
            target=lambda: self._ended.append(self.syncer.serve(-1, self._answers)))
        self._thread.start()

    def recorded_and_round(self) -> None:
        """From asleep: a record, its wake, and the round due an interval later."""
        assert self.syncer.next_wait() is None
        self.journal.record(*EVERY_COMMAND[0])
        self.syncer.steps.put(b"w")
        assert self.syncer.next_wait() == INTERVAL
        self.syncer.steps.put(TIME)

    def end(self) -> int:
        """What serve() returned, after the serving process went if it had not ended."""
        if self._thread.is_alive():
            self.syncer.steps.put(b"")  # the serving process is gone
        self._thread.join(10)
        assert not self._thread.is_alive(), "the syncer did not end"
        for fd in (self.replies, self._answers, self.syncer.reader):
            os.close(fd)
        return self._ended[0]


@pytest.fixture
def served(tmp_path: Path):  # noqa: ANN201
    served = Served(tmp_path)
    yield served
    if served._thread.is_alive():
        served.end()


def sealed(journal: FileJournal) -> int:
    seal = Seal(journal.seal.path).read()
    assert seal is not None
    return seal["records"]


def test_a_wake_brings_rounds_until_one_finds_nothing_then_it_sleeps(served: Served) -> None:
    """Records are fsynced and sealed unasked, an interval after a wake; then rounds go
    on every interval while records come, and after one that finds nothing the syncer
    waits for a wake, with no timeout: an idle sidecar's journal costs nothing."""
    journal, syncer, replies = served.journal, served.syncer, served.replies
    assert syncer.next_wait() is None  # nothing written: asleep
    journal.record(*EVERY_COMMAND[0])
    journal.record(*EVERY_COMMAND[1])
    syncer.steps.put(b"w")
    assert syncer.next_wait() == INTERVAL
    assert sealed(journal) == 0  # not before its time
    syncer.steps.put(TIME)
    assert syncer.next_wait() == 2 * INTERVAL
    assert Seal(journal.seal.path).read() == seal_value(2, journal._written[1], GENESIS)
    journal.record(*EVERY_COMMAND[2])  # while rounds go on: no wake needed
    syncer.steps.put(TIME)
    assert syncer.next_wait() == 3 * INTERVAL
    assert sealed(journal) == 3
    syncer.steps.put(TIME)
    assert syncer.next_wait() is None  # a round found nothing: asleep again
    journal.record(*EVERY_COMMAND[3])
    syncer.steps.put(b"s")  # asked: sealed at once, and answered
    assert os.read(replies, 100) == b"ok 4\n"
    assert sealed(journal) == 4
    assert served.end() == 0


def test_a_record_that_woke_it_just_after_a_round_read_the_end_is_still_sealed(
        served: Served) -> None:
    """A record's wake comes after its write. If a round that was due anyway reads the end
    just before the write, it finds nothing new; going to sleep then would leave that
    record unsynced for as long as nothing else is written. The wake asks for a round an
    interval after it came, whatever the rounds before it found."""
    journal, syncer = served.journal, served.syncer
    served.recorded_and_round()
    assert syncer.next_wait() == 2 * INTERVAL  # it found the record: another round is due
    syncer.steps.put((1.5 * INTERVAL, b"w"))  # a wake whose record is not in the file yet
    assert syncer.next_wait() == 2 * INTERVAL
    syncer.steps.put(TIME)  # the round at 2 intervals finds nothing...
    assert syncer.next_wait() == 2.5 * INTERVAL  # ...and the wake still wants one
    journal.record(*EVERY_COMMAND[1])  # the waking record lands
    syncer.steps.put(TIME)
    assert syncer.next_wait() == 3.5 * INTERVAL
    assert sealed(journal) == 2
    assert served.end() == 0


def test_a_failure_to_seal_is_answered_and_ends_the_syncer(served: Served) -> None:
    journal, syncer, replies = served.journal, served.syncer, served.replies
    assert syncer.next_wait() is None
    journal.record(*EVERY_COMMAND[0])
    journal.seal.path.unlink()
    journal.seal.path.mkdir()  # where the seal goes, a directory: it cannot be written
    syncer.steps.put(b"s")
    answer = os.read(replies, 1000)
    assert answer.startswith(b"failed ") and b"Is a directory" in answer
    assert served.end() == 1


def test_a_syncer_whose_serving_process_is_gone_fsyncs_but_writes_no_seal(
        tmp_path: Path) -> None:
    """Its parent killed during a round: a sidecar started since (or a reseal) may own the
    seal by then, and a seal written late could claim records a reseal has cut."""
    served = Served(tmp_path, parent=os.getppid() + 1_000_000)  # not its parent: gone
    served.recorded_and_round()
    assert served.end() == 0  # ended at the round, without a seal
    assert sealed(served.journal) == 0


def test_a_sync_asked_when_the_serving_process_was_killed_still_ends_in_the_orphans_seal(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Adversarial review, stop 33: a sidecar killed mid-Trigger (its `s` sent, the round
    under way) left its acknowledged records unsealed: the asked round that found it gone
    ended the syncer as a failure, and main() seals an orphan's records only after a
    clean end. A journal cut at a record boundary was then accepted, and an order past
    its account's working-order cap allowed after the restart."""
    journal = FileJournal(tmp_path / "ess.db.journal", INTERVAL)
    assert journal.load() == []
    journal.record(*EVERY_COMMAND[0])  # acknowledged, never sealed: the syncer was late
    gone = subprocess.Popen(["true"])
    gone.wait(10)  # the serving process: killed and reaped
    reader = os.open(journal.path, os.O_RDONLY)
    commands, asked = os.pipe()
    answers, replies = os.pipe()
    os.write(asked, b"s")  # the sync it asked for...
    os.close(asked)  # ...and its end, as the kill left them
    monkeypatch.setattr(signal, "signal", lambda *_: None)  # main() ignores Ctrl-C: not ours
    try:
        code = syncer_main([str(gone.pid), str(reader), str(commands), str(replies),
                            str(journal.seal.path), repr(INTERVAL), "0", "0", GENESIS.hex(),
                            "0", GENESIS.hex(), str(tmp_path / "ess.db.lock")])
        os.close(replies)
        assert os.read(answers, 100) == b""  # nothing said: nobody is left to hear it
    finally:
        for fd in (reader, commands, answers):
            os.close(fd)
    assert code == 0
    assert Seal(journal.seal.path).read() == seal_value(1, journal._written[1], GENESIS)


# -- the child process --------------------------------------------------------------------

IN_MODIFY, IN_CLOSE_WRITE, IN_ATTRIB = 0x2, 0x8, 0x4


class Watched:
    """inotify on one file: wait for it to change, with a deadline, not by polling."""

    def __init__(self, path: Path) -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        self.fd = libc.inotify_init1(os.O_CLOEXEC)
        assert self.fd >= 0, os.strerror(ctypes.get_errno())
        watch = libc.inotify_add_watch(self.fd, str(path).encode(),
                                       IN_MODIFY | IN_CLOSE_WRITE | IN_ATTRIB)
        assert watch >= 0, os.strerror(ctypes.get_errno())

    def until(self, holds, timeout_s: float = 10.0) -> bool:  # noqa: ANN001
        deadline = time.monotonic() + timeout_s
        while not holds():
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                return holds()
            os.read(self.fd, 4096)
        return True

    def close(self) -> None:
        os.close(self.fd)


def started(tmp_path: Path, interval: float = INTERVAL) -> FileJournal:
    journal = FileJournal(tmp_path / "ess.db.journal", interval)
    journal.load()
    journal.start()
    assert journal._syncer is not None and journal._syncer.poll() is None
    return journal


def test_the_syncer_is_a_child_process_that_seals_asked_and_unasked_and_ends_with_close(
        tmp_path: Path) -> None:
    journal = started(tmp_path)
    syncer = journal._syncer
    assert syncer is not None and syncer.pid != os.getpid()
    watched = Watched(journal.seal.path)
    try:
        journal.record(*EVERY_COMMAND[0])  # its wake: sealed an interval later, unasked
        assert watched.until(lambda: sealed(journal) == 1), "never sealed unasked"
        # An interval has passed since that wake, and the syncer has gone to sleep (or
        # will, after a round that finds nothing): this record must wake it again.
        journal.record(*EVERY_COMMAND[1])
        assert watched.until(lambda: sealed(journal) == 2), "a later record never sealed"
        for command, transitions in EVERY_COMMAND[2:5]:
            journal.record(command, transitions)
        journal.sync()  # asked: sealed when it returns
        assert Seal(journal.seal.path).read() == seal_value(5, journal._written[1], GENESIS)
        journal.record(*EVERY_COMMAND[5])
    finally:
        watched.close()
        journal.close()
    assert syncer.returncode == 0
    assert sealed(journal) == 6
    assert FileJournal(journal.path).load() == EVERY_COMMAND[:6]


def test_a_journal_whose_descriptors_are_past_1023_still_seals(tmp_path: Path) -> None:
    """The sidecar raises its open-files limit (grpc/server.py): with a thousand
    connections held, a journal started (or its syncer replaced) then has pipes past
    1,023, where select(2) cannot wait (ValueError: every record refused). Its waits,
    and its syncer's, are poll(2)s."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    journal = FileJournal(tmp_path / "ess.db.journal", INTERVAL)
    journal.load()
    watched = Watched(journal.seal.path)  # its inotify descriptor below 1,024
    # A hard limit below 1,200 is raised too: root may (CI runs as root); else this fails.
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard if hard ==
                                                resource.RLIM_INFINITY else max(hard, 1200)))
    fillers = [os.open(os.devnull, os.O_RDONLY)]
    try:
        while fillers[-1] < 1100:
            fillers.append(os.open(os.devnull, os.O_RDONLY))
        journal.start()  # its pipes: past 1,100
        syncer = journal._syncer
        assert min(journal._commands, journal._replies) > 1023
        try:
            journal.record(*EVERY_COMMAND[0])  # its wake: sealed unasked, by the syncer
            assert watched.until(lambda: sealed(journal) == 1), "never sealed unasked"
            journal.record(*EVERY_COMMAND[1])
            journal.sync()  # asked: its answer read from a pipe past 1,023
            assert sealed(journal) == 2
        finally:
            journal.close()
        assert syncer is not None and syncer.returncode == 0
    finally:
        watched.close()
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert FileJournal(journal.path).load() == EVERY_COMMAND[:2]


def moved(tmp_path: Path, now: list[float]) -> FileJournal:
    """A started journal whose clock (when to wake, when a syncer was replaced) is now[0]."""
    journal = FileJournal(tmp_path / "ess.db.journal", INTERVAL, clock=lambda: now[0])
    journal.load()
    journal.start()
    return journal


def killed(journal: FileJournal) -> subprocess.Popen[bytes]:
    syncer = journal._syncer
    assert syncer is not None
    syncer.kill()
    syncer.wait(10)
    return syncer


def test_a_killed_syncer_is_replaced_by_the_next_wake_and_the_new_one_seals_unasked(
        tmp_path: Path) -> None:
    """Killed (an operator's kill, the OOM killer), the syncer said nothing: the next wake
    finds its pipe broken and starts another. The replacement is told what the seal is
    known to hold, so its first round, unasked, seals the records written while no syncer
    ran, the one that found it gone included."""
    now = [100.0]
    journal = moved(tmp_path, now)
    watched = Watched(journal.seal.path)
    try:
        journal.record(*EVERY_COMMAND[0])
        journal.sync()
        first = killed(journal)
        now[0] = 100.001  # before the next wake is due: written, nothing finds it gone
        journal.record(*EVERY_COMMAND[1])
        assert journal._syncer is first
        now[0] = 100.02  # a wake: its pipe is broken; replaced, and woken
        journal.record(*EVERY_COMMAND[2])
        second = journal._syncer
        assert second is not None and second is not first and second.poll() is None
        assert watched.until(lambda: sealed(journal) == 3), "the replacement never sealed"
        journal.record(*EVERY_COMMAND[3])
        journal.sync()  # asked, and answered, by the replacement
        assert sealed(journal) == 4
    finally:
        watched.close()
        journal.close()
    assert second.returncode == 0
    assert FileJournal(journal.path).load() == EVERY_COMMAND[:4]


def test_a_sync_that_finds_the_syncer_killed_seals_itself_and_the_next_record_replaces_it(
        tmp_path: Path) -> None:
    """A Trigger's transition is stored after a sync: with the syncer killed and no order
    since, the sync finds it gone, reaps it and seals in this process, so the kill switch
    is still answered, durably. The next record starts a new syncer."""
    now = [100.0]
    journal = moved(tmp_path, now)
    try:
        journal.record(*EVERY_COMMAND[0])
        first = killed(journal)
        journal.sync()
        assert sealed(journal) == 1
        journal.record(*EVERY_COMMAND[1])  # no wake due; the syncer is replaced all the same
        assert journal._syncer is not first and journal._syncer.poll() is None
        journal.sync()
        assert sealed(journal) == 2
    finally:
        journal.close()
    assert FileJournal(journal.path).load() == EVERY_COMMAND[:2]


def test_a_syncer_killed_again_within_a_minute_of_its_replacement_fails_the_journal(
        tmp_path: Path) -> None:
    """Replaced at most once a minute: a syncer that cannot stay up must not be started
    a hundred times a second on the decisions' thread. Then records are refused (the
    sidecar fails closed) and a sync says why."""
    now = [100.0]
    journal = moved(tmp_path, now)
    try:
        for at in (100.0, 161.0):  # killed, replaced; killed 61 s later, replaced again
            killed(journal)
            now[0] = at
            journal.record(*EVERY_COMMAND[0])
            assert journal._syncer is not None and journal._syncer.poll() is None
        last = killed(journal)
        now[0] = 220.0  # 59 s after the last replacement: found gone, and not replaced
        journal.record(*EVERY_COMMAND[0])
        assert journal._syncer is last
        with pytest.raises(StoreUnavailable, match="exited with status -9, again within 60 s"):
            journal.record(*EVERY_COMMAND[1])
        with pytest.raises(StoreUnavailable, match="again within 60 s of its replacement"):
            journal.sync()
    finally:
        journal.close()  # seals what was written, itself: no syncer is left
    assert sealed(journal) == 3
    assert FileJournal(journal.path).load() == EVERY_COMMAND[:1] * 3


def test_a_replacement_that_cannot_be_started_fails_the_journal(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    journal = moved(tmp_path, now)
    try:
        killed(journal)
        monkeypatch.setattr(sys, "executable", str(tmp_path / "no-python-here"))
        journal.record(*EVERY_COMMAND[0])  # finds it gone; its replacement cannot start
        with pytest.raises(StoreUnavailable, match="no-python-here"):
            journal.record(*EVERY_COMMAND[1])
        with pytest.raises(StoreUnavailable, match="no-python-here"):
            journal.sync()
    finally:
        journal.close()
    assert FileJournal(journal.path).load() == EVERY_COMMAND[:1]


# Scripted syncers (journal.SYNCER replaced): argv[4] and argv[5] are its pipes. This one
# waits for a command that holds `on`, writes `says` and exits 1.
SAYS_AND_EXITS = """
import os, sys
commands, replies = int(sys.argv[4]), int(sys.argv[5])
while wanted := os.read(commands, 4096):
    if %r in wanted:
        os.write(replies, %r)
        sys.exit(1)
"""
FAILED = b"failed [Errno 5] Input/output error\n"
EXITS_SILENTLY = SAYS_AND_EXITS % (b"", b"")  # an exception's exit: it did not say why
# Read late, the answer and a later round's failure come together.
ANSWERS_THEN_FAILS = SAYS_AND_EXITS % (b"s", b"ok 99\n" + FAILED)


@pytest.mark.parametrize("fails_on", [b"w", b"s"], ids=["found-by-a-wake", "asked"])
def test_a_syncer_that_failed_is_never_replaced(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fails_on: bytes) -> None:
    """A failed fsync must not be retried by a new syncer (whose file, opened after the
    error was reported, would not see it, and would seal records that may be lost):
    found by a wake or by a sync, the failure fails the journal, and says why."""
    from ess_sidecar.adapters.storage import journal as module  # noqa: PLC0415
    monkeypatch.setattr(module, "SYNCER", SAYS_AND_EXITS % (fails_on, FAILED))
    now = [100.0]
    journal = moved(tmp_path, now)
    first = journal._syncer
    assert first is not None
    try:
        journal.record(*EVERY_COMMAND[0])  # its wake
        if fails_on == b"s":
            with pytest.raises(StoreUnavailable, match="Input/output error"):
                journal.sync()
        else:
            assert first.wait(10) == 1
            now[0] = 101.0
            journal.record(*EVERY_COMMAND[1])  # a wake: its pipe is broken
        assert journal._syncer is first, "a syncer that failed was replaced"
        with pytest.raises(StoreUnavailable, match="syncer stopped: .*Input/output error"):
            journal.record(*EVERY_COMMAND[2])
        with pytest.raises(StoreUnavailable, match="Input/output error"):
            journal.sync()
    finally:
        journal.close()


def test_a_syncer_that_exited_by_itself_without_a_word_is_not_replaced(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only a signal's kill is replaced: an exit of its own (an exception) may have taken
    an fsync's error with it."""
    from ess_sidecar.adapters.storage import journal as module  # noqa: PLC0415
    monkeypatch.setattr(module, "SYNCER", EXITS_SILENTLY)
    now = [100.0]
    journal = moved(tmp_path, now)
    first = journal._syncer
    assert first is not None
    try:
        journal.record(*EVERY_COMMAND[0])  # its wake: it exits
        assert first.wait(10) == 1
        now[0] = 101.0
        journal.record(*EVERY_COMMAND[1])
        assert journal._syncer is first
        with pytest.raises(StoreUnavailable, match="exited with status 1"):
            journal.record(*EVERY_COMMAND[2])
    finally:
        journal.close()


def test_a_failure_read_with_an_answer_fails_the_journal_after_that_answer(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Review 29: a reader held back (the GIL) reads an answer and a later round's failure
    at once. The answer stands; the failure is not dropped with the rest of the read, nor
    taken for a kill at the next wake: records are refused from then on."""
    from ess_sidecar.adapters.storage import journal as module  # noqa: PLC0415
    monkeypatch.setattr(module, "SYNCER", ANSWERS_THEN_FAILS)
    now = [100.0]
    journal = moved(tmp_path, now)
    first = journal._syncer
    try:
        journal.record(*EVERY_COMMAND[0])
        journal.sync()  # answered: ok
        now[0] = 101.0
        with pytest.raises(StoreUnavailable, match="syncer stopped: .*Input/output error"):
            journal.record(*EVERY_COMMAND[1])
        assert journal._syncer is first
    finally:
        journal.close()


def test_an_fsync_error_the_killed_syncer_took_with_it_is_reported_before_a_replacement(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A syncer killed during an fsync that failed takes the error with it, and a new
    syncer's file, opened after, would not see it. So the serving process fsyncs through
    its own file before it starts one; an error there fails the journal. (The error is
    injected into this process's fsync: a disk that fails on demand needs a device
    mapper target this machine does not have.)"""
    now = [100.0]
    journal = moved(tmp_path, now)
    try:
        first = killed(journal)

        def failing(fd: int) -> None:
            raise OSError(errno.EIO, "Input/output error")
        monkeypatch.setattr(os, "fsync", failing)
        journal.record(*EVERY_COMMAND[0])  # finds it gone; the fsync before a new one fails
        assert journal._syncer is first
        with pytest.raises(StoreUnavailable, match="Input/output error"):
            journal.record(*EVERY_COMMAND[1])
        monkeypatch.undo()
    finally:
        journal.close()


def test_a_record_wakes_the_syncer_once_an_interval_has_passed_since_the_last_wake(
        tmp_path: Path) -> None:
    """The serving side of the protocol, on a clock the test moves: the syncer is stopped,
    so the wakes stay in its pipe to be counted. Fewer wakes would leave a record written
    after the syncer's last round unsynced for as long as the sidecar then idles; more
    would cost the decisions a system call each."""
    now = [100.0]
    journal = FileJournal(tmp_path / "ess.db.journal", INTERVAL, clock=lambda: now[0])
    journal.load()
    journal.start()
    assert journal._syncer is not None
    journal._syncer.send_signal(signal.SIGSTOP)
    try:
        wakes = []
        for at in (100.0, 100.005, 100.0099, 100.01, 100.0101, 100.5, 100.5, 100.51):
            now[0] = at
            journal.record(*EVERY_COMMAND[0])
            wakes.append(struct.unpack("i", fcntl.ioctl(journal._commands, termios.FIONREAD,
                                                        b"\0\0\0\0"))[0])
        assert wakes == [1, 1, 1, 2, 2, 3, 3, 4]
    finally:
        journal._syncer.send_signal(signal.SIGCONT)
        journal.close()


def test_a_stopped_syncer_is_found_by_time_however_sparse_the_orders(tmp_path: Path) -> None:
    """A syncer alive but making no progress (stopped here; a hung disk does the same)
    makes nothing durable. Once a wake has stayed unread for `stalled_s`, records are
    refused, so the sidecar fails closed rather than allow orders a power cut would take:
    judged by time (the test's clock), not by how many orders came meanwhile."""
    now = [100.0]
    journal = FileJournal(tmp_path / "ess.db.journal", INTERVAL, clock=lambda: now[0])
    journal.load()
    journal.start()
    syncer = journal._syncer
    assert syncer is not None
    syncer.send_signal(signal.SIGSTOP)
    try:
        for second in range(7):  # an order a second: wakes at 100 .. 106
            now[0] = 100.0 + second
            journal.record(*EVERY_COMMAND[0])  # the one at 106 finds it stalled
        with pytest.raises(StoreUnavailable, match="left its wakes unread for 6.0 s: stalled"):
            journal.record(*EVERY_COMMAND[0])
        with pytest.raises(StoreUnavailable, match="left its wakes unread"):
            journal.sync()  # at once: asking a stalled syncer would hang the store
    finally:
        syncer.send_signal(signal.SIGCONT)
        journal.close()
    assert syncer.returncode == 0
    assert FileJournal(journal.path).load() == EVERY_COMMAND[:1] * 7


def test_a_syncer_that_reads_its_wakes_is_not_stalled_however_far_apart_they_are(
        tmp_path: Path) -> None:
    now = [100.0]
    journal = FileJournal(tmp_path / "ess.db.journal", INTERVAL, clock=lambda: now[0])
    journal.load()
    journal.start()
    try:
        for at in (100.0, 1000.0, 5000.0, 5006.0):
            now[0] = at
            journal.record(*EVERY_COMMAND[0])
            journal.sync()  # the syncer has read the wake when it answers
        journal.record(*EVERY_COMMAND[1])
    finally:
        journal.close()
    assert FileJournal(journal.path).load() == EVERY_COMMAND[:1] * 4 + EVERY_COMMAND[1:2]


def test_a_sync_the_syncer_leaves_unanswered_fails_within_the_stall_time(
        tmp_path: Path) -> None:
    """The store's thread asks before each transition is stored; a syncer that never
    answers must not hang it (and with it every Trigger, Reset and stop)."""
    journal = FileJournal(tmp_path / "ess.db.journal", INTERVAL, stalled_s=0.2)
    journal.load()
    journal.start()
    syncer = journal._syncer
    assert syncer is not None
    journal.sync()  # it is up
    syncer.send_signal(signal.SIGSTOP)
    try:
        journal.record(*EVERY_COMMAND[0])
        with pytest.raises(StoreUnavailable, match="did not answer within 0.2 s: stalled"):
            journal.sync()
        with pytest.raises(StoreUnavailable, match="stalled"):
            journal.record(*EVERY_COMMAND[1])
    finally:
        syncer.send_signal(signal.SIGCONT)
        journal.close()  # seals what was written, itself, once the syncer has ended
    assert sealed(journal) == 1


def test_a_syncer_that_cannot_seal_says_why_and_records_are_refused(tmp_path: Path) -> None:
    journal = started(tmp_path, interval=3600.0)  # no round but the one asked for
    journal.record(*EVERY_COMMAND[0])
    journal.seal.path.unlink()
    journal.seal.path.mkdir()
    with pytest.raises(StoreUnavailable, match="cannot be synced: .*Is a directory"):
        journal.sync()
    assert journal._syncer is not None and journal._syncer.wait(10) == 1
    with pytest.raises(StoreUnavailable, match="Is a directory"):
        journal.record(*EVERY_COMMAND[1])
    journal.seal.path.rmdir()
    journal.close()  # seals what was written, itself: the syncer is gone
    assert FileJournal(journal.path).load() == EVERY_COMMAND[:1]


def _mishandled(journal: FileJournal, how: str) -> None:
    """What a person or a tool may do to a journal in use."""
    path = journal.path
    if how == "deleted":
        path.unlink()
    elif how == "renamed":  # log rotation: renamed away, a new empty file at the name
        path.rename(path.with_name("ess.db.journal.1"))
        path.touch()
    elif how == "linked then unlinked":
        os.link(path, path.with_name("kept"))
        path.unlink()
    elif how == "replaced":
        other = path.with_name("other")
        other.write_bytes(path.read_bytes())
        other.replace(path)
    else:
        os.truncate(path, 10)


HOW = ["deleted", "renamed", "linked then unlinked", "replaced", "cut"]


@pytest.mark.parametrize("how", HOW)
def test_a_journal_deleted_renamed_replaced_or_cut_while_in_use_fails_at_the_next_sync(
        tmp_path: Path, how: str) -> None:
    """Review 40b: the sidecar went on allowing orders into a journal deleted (or copied
    over) while it served, and the next start found them gone; review 40f: renamed away
    (as log rotation does), too. The syncer's next round fails, so the journal refuses
    records: the sidecar fails closed now."""
    journal = started(tmp_path, interval=3600.0)  # no round but the one asked for
    journal.record(*EVERY_COMMAND[0])
    journal.sync()
    _mishandled(journal, how)
    journal.record(*EVERY_COMMAND[1])
    with pytest.raises(StoreUnavailable, match="in use|is damaged"):  # cut: what was
        journal.sync()  # appended since reads as damage
    with pytest.raises(StoreUnavailable):
        journal.record(*EVERY_COMMAND[2])
    with contextlib.suppress(StoreUnavailable):  # nor is a seal written for a file gone
        journal.close()


@pytest.mark.parametrize("how", HOW)
def test_a_journal_mishandled_while_in_use_without_a_syncer_refuses_the_next_record(
        tmp_path: Path, how: str) -> None:
    """The same, with records synced as they are written (journal_sync_interval_s = 0;
    review 40f: a cut went unseen there)."""
    journal = FileJournal(tmp_path / "ess.db.journal", 0.0)
    journal.load()
    journal.start()
    journal.record(*EVERY_COMMAND[0])
    _mishandled(journal, how)
    with pytest.raises(StoreUnavailable, match="in use"):
        journal.record(*EVERY_COMMAND[1])
    with contextlib.suppress(StoreUnavailable):
        journal.close()


def test_ctrl_c_and_sigterm_do_not_stop_the_syncer_before_the_sidecar(tmp_path: Path) -> None:
    """A terminal's Ctrl-C and systemd's SIGTERM go to every process of the group: the
    syncer must still seal what the sidecar writes while it drains."""
    journal = started(tmp_path)
    try:
        journal.sync()  # nothing to seal: but the syncer is up once it answers
        journal.record(*EVERY_COMMAND[0])
        journal.sync()
        assert journal._syncer is not None
        journal._syncer.send_signal(signal.SIGINT)
        journal._syncer.send_signal(signal.SIGTERM)
        journal.record(*EVERY_COMMAND[1])
        journal.sync()
        assert sealed(journal) == 2 and journal._syncer.poll() is None
    finally:
        journal.close()


SERVING = """
import sys
from ess_sidecar.adapters.storage.journal import FileJournal
journal = FileJournal(sys.argv[1], 0.01)
journal.load()
journal.start()
print(journal._syncer.pid, flush=True)
sys.stdin.read()
"""


def test_the_syncer_ends_when_the_process_that_started_it_is_killed(tmp_path: Path) -> None:
    serving = subprocess.Popen([sys.executable, "-c", SERVING, str(tmp_path / "j")],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert serving.stdout is not None
        pid = int(serving.stdout.readline())
        exited = os.pidfd_open(pid)
    finally:
        serving.kill()
        serving.wait(10)
    try:
        assert select.select([exited], [], [], 10)[0], "the syncer outlived its sidecar"
    finally:
        os.close(exited)


def test_a_syncer_that_cannot_be_started_leaves_the_sidecar_failed_closed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No syncer, no durability: the sidecar starts (an operator can see why, and stop
    trading), with GLOBAL tripped in memory, rather than allow orders it cannot keep."""
    from ess_sidecar.bootstrap import build  # noqa: PLC0415
    from ess_sidecar.domain.decisions import DecisionReason  # noqa: PLC0415
    from ess_sidecar.domain.orders import Order, Side  # noqa: PLC0415
    from ess_sidecar.settings import load_settings  # noqa: PLC0415
    settings = load_settings(None, server={"listen": ""}, telemetry={"enabled": False},
                             store={"path": str(tmp_path / "ess.db")})
    monkeypatch.setattr(sys, "executable", str(tmp_path / "no-python-here"))
    app = build(settings)
    try:
        decision = app.guard.check(Order("acc-1", "momo", "AAPL", Side.BUY, 1.0, 10.0,
                                         client_order_id="c-1"))
        assert not decision.allowed and decision.reason == DecisionReason.SCOPE_TRIPPED
        [trip] = app.guard.restricted()
        assert "its syncer cannot be started" in trip.reason and "no-python-here" in trip.reason
    finally:
        app.journal.close()
        app.store.close()


ANSWERS_TWO_LINES = """
import os, sys
commands, replies = int(sys.argv[4]), int(sys.argv[5])
while wanted := os.read(commands, 4096):
    if b"s" in wanted:  # an answer and, in the same read, a later round's failure
        os.write(replies, b"ok 0\\nfailed [Errno 5] a later round\\n")
"""


def test_only_the_first_line_of_what_the_syncer_said_is_its_answer(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Review 28b: an answer and a failure line read together were parsed as one number
    (ValueError, not a store failure). Here a scripted syncer answers that it sealed none
    of the one record written: a failure to sync, named as such."""
    from ess_sidecar.adapters.storage import journal as module  # noqa: PLC0415
    monkeypatch.setattr(module, "SYNCER", ANSWERS_TWO_LINES)
    journal = started(tmp_path)
    try:
        journal.record(*EVERY_COMMAND[0])
        with pytest.raises(StoreUnavailable, match="sealed 0 records, 1 were written"):
            journal.sync()
    finally:
        journal.close()
