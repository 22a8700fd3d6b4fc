"""The SQLite state file is never shared, and never silently started afresh."""

from __future__ import annotations

import logging
import select
import subprocess
import sys
from pathlib import Path

import pytest

from ess_sidecar.adapters.storage import filelock
from ess_sidecar.adapters.storage.filelock import FileLock
from ess_sidecar.adapters.storage.sqlite import SqliteStateStore
from ess_sidecar.domain.errors import StoreUnavailable
from ess_sidecar.domain.scopes import GLOBAL, Scope, ScopeKind
from ess_sidecar.domain.states import Cause, State, Transition
from ess_sidecar.ports import StoredState

REPO = Path(__file__).resolve().parents[2]
ACCOUNT = Scope(ScopeKind.ACCOUNT, "acc-1")


def trip(version: int, scope: Scope = GLOBAL) -> Transition:
    return Transition(version=version, time=1_700_000_000.0 + version, scope=scope,
                      previous=State.ARMED, state=State.TRIPPED, cause=Cause.TRIGGER,
                      reason=f"trip {version}", actor="tester")


# -- one store per file ----------------------------------------------------------------------

def test_a_lock_held_for_a_moment_is_tried_again(tmp_path, monkeypatch):
    """The syncer of a sidecar killed a moment ago holds the state file's lock while it
    seals what that sidecar wrote: a sidecar started meanwhile waits for it, briefly,
    rather than serve with GLOBAL tripped as if another sidecar had the file."""
    path = tmp_path / "ess.db"
    SqliteStateStore(path).close()
    holder = FileLock(Path(f"{path}.lock"))
    holder.acquire()
    waits: list[float] = []

    def released_while_waiting(seconds: float) -> None:
        waits.append(seconds)
        holder.release()  # the syncer is done

    monkeypatch.setattr(filelock.time, "sleep", released_while_waiting)
    store = SqliteStateStore(path)
    assert store.locked and store.load().version == 0
    assert waits == [filelock.RETRY_S]
    store.close()


def test_second_store_on_a_file_in_use_is_unavailable_and_writes_nothing(tmp_path):
    path = tmp_path / "ess.db"
    first = SqliteStateStore(path)
    first.append([trip(1, ACCOUNT)])
    second = SqliteStateStore(path)
    with pytest.raises(StoreUnavailable, match="in use by another ess-sidecar process") as raised:
        second.load()
    assert str(path) in str(raised.value) and f"{path}.lock" in str(raised.value)
    with pytest.raises(StoreUnavailable, match="in use"):
        second.append([trip(2)])
    second.close()  # closing the refused store must not release the first one's lock
    with pytest.raises(StoreUnavailable, match="in use"):
        SqliteStateStore(path).load()
    first.append([trip(2)])  # the first store still works, and alone writes versions
    assert first.load().version == 2
    first.close()


def test_file_can_be_opened_again_once_its_store_is_closed(tmp_path):
    path = tmp_path / "ess.db"
    first = SqliteStateStore(path)
    first.append([trip(1, ACCOUNT)])
    first.close()
    again = SqliteStateStore(path)
    assert again.load() == StoredState(current=[trip(1, ACCOUNT)], version=1)
    again.close()


def test_store_on_another_file_in_the_same_directory_is_not_blocked(tmp_path):
    first = SqliteStateStore(tmp_path / "a.db")
    other = SqliteStateStore(tmp_path / "b.db")
    assert other.load().version == 0
    first.close()
    other.close()


HOLDER = """
import sys
from ess_sidecar.adapters.storage import filelock
from ess_sidecar.adapters.storage.filelock import FileLock
from ess_sidecar.adapters.storage.sqlite import SqliteStateStore
store = SqliteStateStore(sys.argv[1])
print("loaded", store.load().version, flush=True)
sys.stdin.read()  # hold the store until killed
"""


def test_file_held_by_another_process_is_unavailable_until_that_process_dies(tmp_path):
    path = tmp_path / "ess.db"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], cwd=REPO,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE)
    try:
        ready, _, _ = select.select([holder.stdout], [], [], 30)  # a deadline, not a sleep
        line = holder.stdout.readline().decode() if ready else "(nothing within 30 s)"
        assert line == "loaded 0\n", f"holder said {line!r}"
        refused = SqliteStateStore(path)
        with pytest.raises(StoreUnavailable, match="in use by another ess-sidecar process"):
            refused.load()
        refused.close()
    finally:
        holder.kill()  # SIGKILL: no close(); the kernel drops the lock with the process
        holder.communicate()
    after = SqliteStateStore(path)  # the lock file left behind does not block a restart
    assert after.load().version == 0
    after.close()


# -- empty and missing files -----------------------------------------------------------------

def test_empty_state_file_is_unavailable_not_a_fresh_store(tmp_path):
    path = tmp_path / "ess.db"
    path.write_bytes(b"")
    store = SqliteStateStore(path)
    with pytest.raises(StoreUnavailable, match="is empty") as raised:
        store.load()
    assert str(path) in str(raised.value)
    with pytest.raises(StoreUnavailable, match="is empty"):
        store.append([trip(1)])
    store.close()
    assert path.read_bytes() == b""  # left as found: no schema written into it


def test_a_store_that_cannot_be_used_keeps_the_lock_until_it_is_closed(tmp_path):
    """Its process goes on (failed closed) with the journal beside the file: a second
    sidecar must not start on them meanwhile (review 20: both wrote one journal). Once the
    first is closed, the operator's fix (here: the empty file removed) starts afresh."""
    path = tmp_path / "ess.db"
    path.write_bytes(b"")
    refused = SqliteStateStore(path)  # unavailable, kept open
    assert refused.locked
    path.unlink()  # the operator removes the empty file
    _refused_until_closed(path, refused)


def test_a_deleted_lock_file_does_not_let_a_second_store_open_the_file(tmp_path):
    """Review 20: a "stale lock" cleanup deleted `ess.db.lock`, and a second sidecar served
    the same state beside the first: orders past a limit, an id used twice, orders after
    an acknowledged Trigger. The state file itself is locked too."""
    path = tmp_path / "ess.db"
    first = SqliteStateStore(path)
    first.load()
    first.lock_path.unlink()
    _refused_until_closed(path, first)


def _refused_until_closed(path: Path, holder: SqliteStateStore) -> None:
    """A second store on `path` holds no lock and cannot be used while `holder` is open;
    once it is closed, a new one opens afresh and holds the lock."""
    second = SqliteStateStore(path)
    assert not second.locked
    with pytest.raises(StoreUnavailable, match="in use by another"):
        second.load()
    holder.close()
    store = SqliteStateStore(path)
    assert store.load().version == 0 and store.locked
    store.close()


def test_missing_state_file_is_a_fresh_store_that_survives_reopen(tmp_path):
    path = tmp_path / "new" / "ess.db"
    store = SqliteStateStore(path)
    assert store.load() == StoredState(current=[], version=0, registrations=[])
    store.close()
    assert path.stat().st_size > 0  # so the next start is not "empty"
    reopened = SqliteStateStore(path)
    assert reopened.load().version == 0
    reopened.close()


def test_opening_logs_the_absolute_path(tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(tmp_path)
    caplog.set_level(logging.INFO, logger="ess_sidecar.adapters.storage.sqlite")
    store = SqliteStateStore(Path("state") / "ess.db")
    store.close()
    absolute = str((tmp_path / "state" / "ess.db").resolve())
    assert any(absolute in record.getMessage() for record in caplog.records), caplog.text


def test_a_state_file_that_cannot_be_locked_is_unavailable_not_a_crash(tmp_path,
                                                                       monkeypatch):
    """Review 21: on a file system whose flock fails (NFS emulates it, and refuses a
    reader's), the OSError escaped, and `serve` exited instead of starting failed closed."""
    from ess_sidecar.adapters.storage import filelock  # noqa: PLC0415
    real, calls = filelock.fcntl.flock, []

    def flock(fd: int, operation: int) -> None:
        calls.append(fd)
        if len(calls) == 2:  # the state file's, after `.lock`'s
            raise OSError(9, "Bad file descriptor")
        real(fd, operation)

    monkeypatch.setattr(filelock.fcntl, "flock", flock)
    store = SqliteStateStore(tmp_path / "ess.db")
    with pytest.raises(StoreUnavailable, match="cannot be locked"):
        store.load()
    assert not store.locked
    store.close()
