"""The version floor (`<state file>.floor`, docs/design.md "The version floor"): versions
told with no store holding them are never given to another transition, by this run or the
next, on a real file, and written where a file may not grow."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from ess_sidecar.adapters.storage import seal
from ess_sidecar.adapters.storage.floor import FileVersionFloor, floor_path
from ess_sidecar.adapters.storage.memory import InMemoryStateStore
from ess_sidecar.adapters.storage.sqlite import SqliteStateStore
from ess_sidecar.bootstrap import keep_floor
from ess_sidecar.domain.commands import Trigger
from ess_sidecar.domain.config import GuardConfig
from ess_sidecar.domain.engine import GuardEngine
from ess_sidecar.domain.errors import ResetRefused, StoreUnavailable
from ess_sidecar.domain.scopes import GLOBAL, Scope, ScopeKind
from ess_sidecar.domain.states import State, TriggerMode, TriggerReason
from ess_sidecar.service import Guard
from ess_sidecar.watch import Subscribers
from tests.fakes import FakeClock

ONE, OTHER = bytes(range(16)), bytes(16)
ACCOUNT = Scope(ScopeKind.ACCOUNT, "acc-1")


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "ess.db"


def kept(store_path: Path, version: int, identity: bytes | None = ONE) -> None:
    floor = FileVersionFloor(store_path, identity)
    floor.raise_to(version)
    floor.close()  # waits for the write


def test_a_floor_raised_is_read_by_the_next_run_and_never_lowered(store_path: Path) -> None:
    assert FileVersionFloor(store_path, ONE).read() == 0  # none yet
    kept(store_path, 7)
    kept(store_path, 5)
    assert FileVersionFloor(store_path, ONE).read() == 7
    assert Path(floor_path(store_path)).stat().st_size == seal.SIZE


def test_another_stores_floor_is_not_taken_and_one_naming_no_store_is(store_path: Path) -> None:
    """A state file deleted and made anew keeps nothing of the old one's floor; a floor
    written while the store could not be read (its identity unknown) is taken by any."""
    kept(store_path, 9)
    assert FileVersionFloor(store_path, OTHER).read() == 0
    assert FileVersionFloor(store_path, None).read() == 9
    kept(store_path, 12, identity=None)
    assert FileVersionFloor(store_path, OTHER).read() == 12


@pytest.mark.parametrize("damage", [b"\x00" * seal.SIZE, b'{"version": -3}', b"[1]",
                                    b'{"version": true}', b'{"version": "9"}',
                                    # review 55c: SQLite's INTEGER could not hold it, and
                                    # every write failed
                                    b'{"version": 9223372036854775807}',
                                    b'{"version": 1000000000000000000000000000000}'])
def test_a_damaged_floor_reads_as_none_and_says_so(store_path: Path, damage: bytes,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    Path(floor_path(store_path)).write_bytes(damage)
    with caplog.at_level(logging.WARNING):
        assert FileVersionFloor(store_path, ONE).read() == 0
    assert "version floor" in caplog.text and "may be given again" in caplog.text


WHERE_NO_FILE_MAY_GROW = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (600, 600))  # the floor in place, no more
from ess_sidecar.adapters.storage.floor import FileVersionFloor
try:
    with open(sys.argv[1] + ".grows", "wb", buffering=0) as grows:
        grows.write(bytes(4096))  # 600 of them
        grows.write(bytes(1))
except OSError as error:
    print("full:", error.strerror)
floor = FileVersionFloor(sys.argv[1], bytes(range(16)))
floor.raise_to(41)
floor.close()
"""


def test_the_floor_is_written_in_place_where_no_file_may_grow(store_path: Path) -> None:
    """Prepared at start-up, the floor is written over its own bytes: a disk with no room
    left (a file-size limit here, SIGXFSZ ignored) refuses the store, not it."""
    FileVersionFloor(store_path, ONE).prepare(3)
    child = subprocess.run([sys.executable, "-c", WHERE_NO_FILE_MAY_GROW, str(store_path)],
                           capture_output=True, text=True, timeout=60, check=True)
    assert child.stdout.startswith("full: File too large"), child.stdout + child.stderr
    assert "could not be written" not in child.stderr, child.stderr
    assert FileVersionFloor(store_path, ONE).read() == 41


def restarted(store: InMemoryStateStore, floor: FileVersionFloor) -> Guard:
    """A new process's guard over the store, restored as bootstrap.build does."""
    guard = Guard(GuardEngine(GuardConfig()), store, FakeClock(), Subscribers(16), floor=floor)
    stored = store.load()
    guard.engine.restore(stored.current, stored.version, 0.0)
    keep_floor(guard.engine, floor, stored)
    return guard


def halt(guard: Guard, scope: Scope, reason: str) -> None:
    guard.trigger(Trigger(scope, TriggerMode.HALT, reason, TriggerReason.USER_INITIATED, (),
                          "bob"))


def test_a_lost_trip_told_is_numbered_past_after_a_restart(store_path: Path) -> None:
    """A trip whose write failed is shown with its version (and GLOBAL's fail-closed trip
    with the next): the next run stores another operator's halt past them, so a reset
    naming what was shown, with no epoch, lifts nothing (known gap 5, review 29)."""
    store = InMemoryStateStore()
    guard = restarted(store, FileVersionFloor(store_path, ONE))
    halt(guard, Scope(ScopeKind.STRATEGY, "momo"), "first")  # v1, stored
    store.fail_next_append = True
    with pytest.raises(StoreUnavailable):
        halt(guard, ACCOUNT, "fat finger, fine to resume")  # v2 lost, GLOBAL v3
    shown = {view.current.scope: view.current.version for view in guard.scope_views()}
    assert shown[ACCOUNT] == 2 and shown[GLOBAL] == 3
    guard._floor.close()  # the process ends: its floor written  # noqa: SLF001
    again = restarted(store, FileVersionFloor(store_path, ONE))
    for scope in (ACCOUNT, GLOBAL):
        halt(again, scope, "DO NOT RESUME")
        assert again.engine.current(scope).version > 3
        with pytest.raises(ResetRefused, match=f"changed since version {shown[scope]}"):
            again.reset(scope, "saw it", force=True, actor="alice",
                        expected_version=shown[scope])
        assert again.engine.denying_state(scope) is State.TRIPPED


def test_without_a_lost_version_a_restart_numbers_on_from_the_store(store_path: Path) -> None:
    store = InMemoryStateStore()
    guard = restarted(store, FileVersionFloor(store_path, ONE))
    halt(guard, ACCOUNT, "first")
    guard._floor.close()  # noqa: SLF001
    again = restarted(store, FileVersionFloor(store_path, ONE))
    halt(again, GLOBAL, "second")
    assert again.engine.current(GLOBAL).version == 2


def test_a_fifo_in_the_floors_place_is_refused_not_waited_on(
        store_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A start reads and then writes the floor: a FIFO put in its place (no writer, no
    reader) would hold either for good. Both refuse it, and the floor reads as none."""
    os.mkfifo(floor_path(store_path))
    floor = FileVersionFloor(store_path, ONE)
    with caplog.at_level(logging.WARNING):
        assert floor.read() == 0
    assert "cannot be read" in caplog.text
    with pytest.raises(OSError, match="not a regular file|No such device"):
        floor.prepare(5)


def test_what_is_put_in_place_of_the_floor_or_its_temporary_file_is_never_followed(
        store_path: Path, tmp_path: Path) -> None:
    """Review 55c: a FIFO at `<floor>.tmp` held a start for good, and a symlink there had
    the file it names overwritten with the floor; a symlink at the floor itself had its
    in-place writes go to the file it names."""
    victim = tmp_path / "victim.txt"
    victim.write_text("precious" * 100)
    floor = Path(floor_path(store_path))
    Path(f"{floor}.tmp").symlink_to(victim)
    FileVersionFloor(store_path, ONE).prepare(4)
    os.mkfifo(f"{floor}.tmp")
    floor.unlink()
    FileVersionFloor(store_path, ONE).prepare(5)  # the FIFO is removed, not opened
    floor.unlink()
    floor.symlink_to(victim)
    kept(store_path, 6)
    assert victim.read_text() == "precious" * 100
    assert not floor.is_symlink() and FileVersionFloor(store_path, ONE).read() == 6


def test_a_floor_whose_thread_cannot_start_is_written_by_its_caller(
        store_path: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """Review 55c: with no thread to be had (a process at its limit), the floor was never
    written again in that run, nothing said so, and its close raised."""
    def refused(_: threading.Thread) -> None:
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(threading.Thread, "start", refused)
    floor = FileVersionFloor(store_path, ONE)
    with caplog.at_level(logging.ERROR):
        floor.raise_to(8)
    floor.close()
    assert "thread cannot start" in caplog.text
    assert FileVersionFloor(store_path, ONE).read() == 8


def test_a_floor_at_its_highest_is_numbered_past_and_the_store_still_trusted(
        tmp_path: Path) -> None:
    """Review 55g: a floor of exactly 2^62 was taken, the next trip stored as 2^62 + 1,
    and the store's seal naming it was called garbled at every start after (a reseal
    wrote it again)."""
    from ess_sidecar.bootstrap import App, build  # noqa: PLC0415
    from ess_sidecar.settings import load_settings  # noqa: PLC0415
    settings = load_settings(None, server={"listen": ""}, telemetry={"enabled": False},
                             store={"path": str(tmp_path / "ess.db"),
                                    "journal_sync_interval_s": 0.0})

    def stopped(app: App) -> None:
        app.journal.close()
        app.store.close()

    stopped(build(settings, clock=FakeClock()))
    store = SqliteStateStore(tmp_path / "ess.db")
    identity = store.load().identity
    store.close()
    high = 1 << 62  # review 55h: a bound there made what was numbered past it damage
    kept(tmp_path / "ess.db", high, identity)
    app = build(settings, clock=FakeClock())
    halt(app.guard, ACCOUNT, "at the top")
    assert app.guard.engine.current(ACCOUNT).version == high + 1
    stopped(app)
    kept(tmp_path / "ess.db", high + 3, identity)  # told, not stored, in a run since
    assert FileVersionFloor(tmp_path / "ess.db", identity).read() == high + 3
    app = build(settings, clock=FakeClock())
    try:
        assert not app.guard.engine.untrusted
        assert app.guard.engine.denying_state(GLOBAL) is State.ARMED
        assert app.guard.engine.current(ACCOUNT).version == high + 1
        halt(app.guard, GLOBAL, "past what was told")
        assert app.guard.engine.current(GLOBAL).version == high + 4
    finally:
        stopped(app)
    summary = SqliteStateStore.reseal(tmp_path / "ess.db")  # a healthy store: nothing lost
    assert (summary.unsealed, summary.lost) == (False, None)
