"""Damage to the SQLite state file is found at start-up, and refused until an operator acts.

Each test damages a real file the way the issue lists (a deleted, truncated or garbled WAL
after a crash, flipped bits, a state file or seal deleted after the first run, rows edited
with the sqlite3 module) and expects load() to raise StoreDamaged naming what it found;
the rest show what must still load with nothing lost.
"""

from __future__ import annotations

import hashlib
import json
import re
import select
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ess_sidecar.adapters.storage import sqlite as sqlite_store
from ess_sidecar.adapters.storage.journal import FileJournal
from ess_sidecar.adapters.storage.sqlite import SCHEMA_VERSION, ResealSummary, \
    SqliteStateStore, StoreDamaged
from ess_sidecar.bootstrap import trip_for_lost_versions
from ess_sidecar.domain.commands import TimersRan
from ess_sidecar.domain.errors import StoredUnsealed, StoreUnavailable
from ess_sidecar.domain.scopes import GLOBAL, Scope, ScopeKind
from ess_sidecar.domain.states import Cause, State, Transition
from ess_sidecar.ports import EventQuery, StoredState
from ess_sidecar.service import store_epoch
from ess_sidecar.settings import load_settings

REPO = Path(__file__).resolve().parents[2]
DATA = Path(__file__).parent / "data"
TAMPERED = Scope(ScopeKind.ACCOUNT, "acc-tamper")
SYMBOL = Scope(ScopeKind.SYMBOL, "BTC-USD")
T0 = 1_700_000_000.0
ALL = EventQuery(limit=1_000_000)


def tr(version: int, scope: Scope = GLOBAL, state: State = State.TRIPPED) -> Transition:
    previous = State.TRIPPED if state is State.ARMED else State.ARMED
    return Transition(version=version, time=T0 + version, scope=scope, previous=previous,
                      state=state, cause=Cause.TRIGGER, reason=f"test {version}",
                      actor="tester")


# GLOBAL tripped then reset, ACCOUNT:acc-tamper tripped (latched), SYMBOL tripped (latched).
HISTORY = [tr(1, GLOBAL), tr(2, TAMPERED), tr(3, GLOBAL, State.ARMED), tr(4, SYMBOL)]


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "ess.db"


def written(path: Path, *batches: list[Transition], keep_events: int = 0) -> Path:
    """A store at `path` that took these appends and was closed cleanly."""
    store = SqliteStateStore(path, keep_events)
    for batch in batches:
        store.append(batch)
    store.close()
    return path


def refusal(path: Path, keep_events: int = 0) -> str:
    """load() must raise StoreDamaged naming the path; its message. Refused again after a
    restart: the store stays refused until an operator acts."""
    messages = []
    for _ in range(2):
        store = SqliteStateStore(path, keep_events)
        with pytest.raises(StoreDamaged) as raised:
            store.load()
        with pytest.raises(StoreUnavailable):  # nothing is written into it either
            store.append([tr(1_000)])
        store.close()
        messages.append(str(raised.value))
    assert str(path) in messages[0]
    assert "restore" in messages[0]  # and says what the operator can do
    return messages[0]


def loaded(path: Path, keep_events: int = 0) -> StoredState:
    store = SqliteStateStore(path, keep_events)
    try:
        return store.load()
    finally:
        store.close()


def edit(path: Path, *statements: str) -> None:
    """Rows edited by hand, as with the sqlite3 shell (foreign keys off, its default)."""
    conn = sqlite3.connect(path)
    try:
        with conn:
            for statement in statements:
                conn.execute(statement)
    finally:
        conn.close()


def checkpoint(path: Path) -> None:
    """Move everything from the WAL into the main file, so its bytes can be found there."""
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0
    finally:
        conn.close()


def seal_of(path: Path) -> dict:
    return json.loads(Path(f"{path}.seal").read_text())


def reseal(path: Path, value: dict) -> None:
    Path(f"{path}.seal").write_text(json.dumps(value))


# -- what must load, with nothing lost -------------------------------------------------------

def test_a_fresh_directory_is_a_first_run_that_leaves_its_seal(path):
    assert loaded(path) == StoredState()
    assert seal_of(path)["version"] == 0  # the marker that a first run happened
    written(path, HISTORY)
    assert [t.version for t in loaded(path).current] == [2, 4]
    assert seal_of(path)["version"] == 4


def test_a_clean_restart_loads_everything(path):
    written(path, HISTORY[:2], HISTORY[2:])
    store = SqliteStateStore(path)
    assert store.load() == StoredState(current=[tr(2, TAMPERED), tr(4, SYMBOL)], version=4)
    assert store.events(ALL) == HISTORY[::-1]
    store.append([tr(5, TAMPERED, State.ARMED)])
    store.close()
    assert loaded(path).current == [tr(4, SYMBOL)]


FIRST = [tr(1, TAMPERED), tr(2, SYMBOL, State.REDUCE_ONLY), tr(3, GLOBAL)]
# keep_events, the append the seal missed: kept, pruned up to the sealed event (its chain is
# then the anchor's), pruned past it.
MISSED = {"kept": (0, [tr(4, GLOBAL, State.ARMED), tr(5, GLOBAL)]),
          "pruned to the seal": (1, [tr(4, GLOBAL, State.ARMED)]),
          "pruned past the seal": (1, [tr(4, GLOBAL, State.ARMED), tr(5, GLOBAL)])}


@pytest.mark.parametrize("case", MISSED.keys())
def test_a_crash_between_commit_and_seal_loses_nothing(path, case):
    """The file is ahead of its seal by one whole transaction whose chain verifies."""
    keep_events, missed = MISSED[case]
    written(path, FIRST, keep_events=keep_events)
    before = seal_of(path)
    written(path, missed, keep_events=keep_events)
    reseal(path, before)  # as if killed after COMMIT, before the seal was replaced
    latched = {t.scope: t for t in FIRST + missed}
    assert loaded(path, keep_events) == StoredState(
        current=sorted((t for t in latched.values() if t.state is not State.ARMED),
                       key=lambda t: t.version),
        version=missed[-1].version)
    assert seal_of(path)["version"] == missed[-1].version  # the seal has caught up


@pytest.mark.parametrize("case", ["kept", "pruned to the seal"])
def test_a_file_ahead_of_a_seal_it_does_not_continue_is_found(path, case):
    keep_events, missed = MISSED[case]
    written(path, FIRST, keep_events=keep_events)
    before = seal_of(path)
    written(path, missed, keep_events=keep_events)
    reseal(path, {**before, "chain": "5a" * 16})
    assert "events up to version 3 are not the ones sealed" in refusal(path, keep_events)


def test_a_store_without_its_seal_is_found_even_if_it_holds_nothing(path):
    """A new store is sealed before its file is created, so a file without a seal has lost
    it, and with it whatever it vouched for: a trip still in a deleted WAL, say, or the
    journal deleted beside it."""
    written(path)
    Path(f"{path}.seal").unlink()
    assert "its seal" in refusal(path) and "is missing (deleted?)" in refusal(path)


def test_a_first_run_seals_the_store_before_it_creates_the_file(path, monkeypatch):
    """Killed before the file exists: the seal is there, and the next start refuses to
    take the missing file for a first run."""
    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed")
    monkeypatch.setattr(sqlite3, "connect", killed)
    with pytest.raises(KeyboardInterrupt):
        SqliteStateStore(path)
    monkeypatch.undo()
    assert seal_of(path)["version"] == 0 and not path.exists()
    assert "a crash while it was being created?" in refusal(path)
    Path(f"{path}.seal").unlink()  # the way out it names
    assert loaded(path) == StoredState()


def test_pruning_keeps_the_chain_verifiable(path):
    store = SqliteStateStore(path, keep_events=2)
    store.append([tr(1, GLOBAL), tr(2, TAMPERED)])  # both stay latched below the prune point
    for version in range(3, 12):
        store.append([tr(version, SYMBOL, State.TRIPPED if version % 2 else State.ARMED)])
    store.close()
    store = SqliteStateStore(path, keep_events=2)
    assert store.load() == StoredState(current=[tr(1), tr(2, TAMPERED), tr(11, SYMBOL)],
                                       version=11)
    assert [t.version for t in store.events(ALL)] == [11, 10, 2, 1]
    store.append([tr(12, TAMPERED, State.ARMED)])  # 2 is no longer latched: pruned
    store.close()
    assert loaded(path, keep_events=2).current == [tr(1), tr(11, SYMBOL)]


def schema_2_file(path: Path) -> None:
    """A state file as the previous release left it: GLOBAL latched below a pruned hole,
    SYMBOL tripped and reset, ACCOUNT latched."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    try:
        conn.executescript((DATA / "schema_v1.sql").read_text())
        conn.executescript("ALTER TABLE events ADD COLUMN approved_by TEXT NOT NULL DEFAULT '';"
                           " ALTER TABLE events ADD COLUMN drill INTEGER NOT NULL DEFAULT 0;")
        with conn:
            conn.executemany(
                "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, 1, ?, 'alice', '', NULL, '', 0,"
                " NULL, '', 0)",
                [(1, T0 + 1, 1, "", 1, 3, "test 1"), (4, T0 + 4, 4, "BTC-USD", 1, 3, "test 4"),
                 (5, T0 + 5, 4, "BTC-USD", 3, 1, "test 5"),
                 (6, T0 + 6, 2, "acc-tamper", 1, 3, "test 6")])
            conn.executemany("INSERT INTO scopes VALUES (?, ?, ?)",
                             [(1, "", 1), (2, "acc-tamper", 6)])
            conn.execute("UPDATE meta SET last_version = 6, pruned_through = 3")
        conn.execute("PRAGMA user_version = 2")
    finally:
        conn.close()


def test_a_schema_2_file_is_chained_and_sealed_by_its_upgrade(path):
    schema_2_file(path)
    store = SqliteStateStore(path)
    loaded_state = store.load()
    assert [(t.version, t.scope, t.state, t.actor) for t in loaded_state.current] == [
        (1, GLOBAL, State.TRIPPED, "alice"), (6, TAMPERED, State.TRIPPED, "alice")]
    assert loaded_state.version == 6
    assert [t.version for t in store.events_after(0, 10)] == [4, 5, 6]  # the hole stays
    assert seal_of(path)["version"] == 6
    store.append([tr(7, SYMBOL)])
    store.close()
    assert [t.version for t in loaded(path).current] == [1, 6, 7]
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    conn.close()
    edit(path, "UPDATE events SET reason = 'rewritten' WHERE version = 1")  # below the hole
    assert "event 1 does not match its hash chain" in refusal(path)


# -- flipped bits ----------------------------------------------------------------------------

def flip_each(path: Path, needle: bytes) -> list[tuple[str, Path]]:
    """Copies of the (checkpointed) file, each with one bit flipped in one occurrence of
    `needle`, named by the table or index whose page holds it."""
    checkpoint(path)
    conn = sqlite3.connect(path)
    try:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        roots = {root: name for name, root in
                 conn.execute("SELECT name, rootpage FROM sqlite_master WHERE rootpage")}
    finally:
        conn.close()
    data = path.read_bytes()
    copies = []
    for n, found in enumerate(re.finditer(re.escape(needle), data)):
        page = found.start() // page_size + 1
        assert page in roots, f"{needle!r} on page {page}, not a root page: too many rows?"
        flipped = bytearray(data)
        flipped[found.end() - 1] ^= 0x01  # one bit of the last character: still valid text
        copy = path.parent / f"flipped-{n}" / path.name
        copy.parent.mkdir()
        copy.write_bytes(bytes(flipped))
        Path(f"{copy}.seal").write_bytes(Path(f"{path}.seal").read_bytes())
        copies.append((roots[page], copy))
    return copies


def test_a_flipped_bit_in_the_schema_text_is_refused_not_a_crash(path):
    """SQLite's error then quotes bytes that are not UTF-8, and Python's sqlite3 raises
    UnicodeDecodeError, not sqlite3.Error (review 31: the sidecar exited at start-up)."""
    written(path, HISTORY)
    checkpoint(path)
    data = bytearray(path.read_bytes())
    data[data.index(b"CREATE TABLE meta (") + 57] ^= 0x80
    path.write_bytes(data)
    store = SqliteStateStore(path)
    with pytest.raises(StoreUnavailable, match=re.escape(str(path))):
        store.load()
    store.close()


def test_a_bit_flipped_in_any_stored_copy_of_a_latched_scope_id_is_found(path):
    """The id is in the event, in the index by scope, in the latch and in its index; a bit
    flipped in any of them would move or lift the trip, and SQLite's quick_check misses it."""
    written(path, HISTORY)
    copies = flip_each(path, TAMPERED.id.encode())
    assert sorted(name for name, _ in copies) == [
        "events", "events_by_scope", "scopes", "sqlite_autoindex_scopes_1"]
    for name, copy in copies:
        assert "is damaged" in refusal(copy), name


@pytest.mark.parametrize(("needle", "found"), [
    (TAMPERED.id.encode(), "event 2 does not match its hash chain"),
    (b"test 2", "event 2 does not match its hash chain"),  # the reason: in no index at all
])
def test_the_hash_chain_finds_a_flipped_bit_that_quick_check_misses(path, monkeypatch,
                                                                     needle, found):
    written(path, HISTORY)
    [(_, copy)] = [(name, copy) for name, copy in flip_each(path, needle) if name == "events"]
    conn = sqlite3.connect(copy)
    assert conn.execute("PRAGMA quick_check").fetchone()[0] == "ok"
    conn.close()
    monkeypatch.setattr(sqlite_store, "INTEGRITY_CHECK", "PRAGMA quick_check")
    assert found in refusal(copy)


def test_integrity_check_finds_a_flipped_bit_in_a_registration(path):
    """Registrations are not chained; an executor id is kept twice (row and index), and
    integrity_check (not quick_check) compares the two."""
    store = SqliteStateStore(path)
    store.append(HISTORY)
    store.save_registration("exec-tamper", TAMPERED, 5.0)
    store.close()
    copies = flip_each(path, b"exec-tamper")
    assert sorted(name for name, _ in copies) == ["executors", "sqlite_autoindex_executors_1"]
    for name, copy in copies:
        assert "SQLite finds it corrupt" in refusal(copy), name


# -- rows edited by hand ---------------------------------------------------------------------

@pytest.mark.parametrize(("statements", "found"), [
    (["UPDATE events SET state = 1 WHERE version = 2",  # un-trip, latch and all
      "DELETE FROM scopes WHERE version = 2"], "event 2 does not match its hash chain"),
    (["UPDATE events SET reason = 'nothing to see' WHERE version = 4"],
     "event 4 does not match its hash chain"),
    (["DELETE FROM scopes WHERE scope_id = 'acc-tamper'"],
     "scope ACCOUNT:acc-tamper latch does not match its events"),
    (["UPDATE scopes SET version = 1 WHERE scope_id = 'acc-tamper'"],
     "scope ACCOUNT:acc-tamper latch does not match its events"),
    (["INSERT INTO scopes VALUES (3, 'momo', 3)"],
     "scope STRATEGY:momo latch does not match its events"),
    (["DELETE FROM events WHERE version = 3"],
     "event 4 does not follow event 2 in its hash chain"),
    (["DELETE FROM events WHERE version = 4", "DELETE FROM scopes WHERE version = 4",
      "UPDATE meta SET last_version = 3"], "has lost acknowledged transitions"),
    (["UPDATE meta SET last_version = 3"], "its last version is 3 but it holds event 4"),
    (["UPDATE meta SET last_version = 4 + 1024"],  # a bit flipped up (review 31)
     "its last version is 1028, past its newest event (4) and its seal's version (4)"),
    (["INSERT INTO events SELECT 5, time, scope_kind, scope_id, previous, state, cause,"
      " reason, actor, breaker, reason_code, directives, forced, rearm_at, approved_by,"
      " drill, chain, chain, latches FROM events WHERE version = 4"],
     "event 5 does not match its hash chain"),
])
def test_a_row_edited_by_hand_is_found(path, statements, found):
    written(path, HISTORY)
    edit(path, *statements)
    assert found in refusal(path)


def test_a_latched_event_removed_below_the_prune_point_is_found_by_the_seal(path):
    """Below the prune point an event has no neighbours to betray its removal; the
    latched set in the seal does."""
    written(path, [tr(1, TAMPERED)], *([tr(v, SYMBOL, State.ARMED)] for v in range(2, 6)),
            keep_events=2)
    edit(path, "DELETE FROM events WHERE version = 1", "DELETE FROM scopes WHERE version = 1")
    assert "latched scopes are not the ones sealed" in refusal(path, keep_events=2)



def listed_latches(path: Path) -> str:
    """The seal's `latched` as versions before stop 46 wrote it: a digest of every latch,
    in order, with its event's chain."""
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT s.scope_kind, s.scope_id, s.version, e.chain FROM scopes s"
                            " LEFT JOIN events e ON e.version = s.version"
                            " ORDER BY s.scope_kind, s.scope_id").fetchall()
    finally:
        conn.close()
    encoded = json.dumps([[kind, ident, version, chain.hex() if chain else None]
                          for kind, ident, version, chain in rows], separators=(",", ":"))
    return hashlib.blake2b(encoded.encode(), digest_size=16).hexdigest()


def test_a_seal_of_an_earlier_version_is_checked_then_written_anew(path):
    """Review 45: each append read every latch to digest the latched set in order (27 ms
    of each write at 20,000 latched scopes); the seal now holds their sum, moved by what
    an append changes. A seal in the earlier form is still checked in full, and the
    first start writes it anew."""
    written(path, [tr(1, TAMPERED)], *([tr(v, SYMBOL, State.ARMED)] for v in range(2, 6)),
            keep_events=2)
    assert seal_of(path)["latched"].startswith("set:")
    reseal(path, {**seal_of(path), "latched": listed_latches(path)})
    assert [t.version for t in loaded(path, keep_events=2).current] == [1]
    assert seal_of(path)["latched"].startswith("set:")
    reseal(path, {**seal_of(path), "latched": listed_latches(path)})
    edit(path, "DELETE FROM events WHERE version = 1", "DELETE FROM scopes WHERE version = 1")
    assert "latched scopes are not the ones sealed" in refusal(path, keep_events=2)


# -- files deleted ---------------------------------------------------------------------------

def test_a_state_file_deleted_after_its_first_run_is_not_a_fresh_start(path):
    written(path, HISTORY)
    path.unlink()
    message = refusal(path)
    assert f"is missing but its seal {path}.seal shows it was in use" in message
    assert not path.exists()  # no fresh store was made in its place


def test_a_wal_without_its_state_file_is_not_a_fresh_start(path):
    wal = crash_after_appending(written(path, HISTORY), 2, "exit")
    path.unlink()
    Path(f"{path}.seal").unlink()
    assert f"is missing but its WAL {wal} shows it was in use" in refusal(path)
    assert not path.exists()


def test_a_deleted_seal_is_found(path):
    written(path, HISTORY)
    Path(f"{path}.seal").unlink()
    assert f"its seal {path}.seal is missing (deleted?)" in refusal(path)


@pytest.mark.parametrize("seal", [b"", b"{not json", b"[]", b'{"version": 4}',
                                  b'{"version": 4, "chain": "zz", "latched": ""}'])
def test_a_garbled_seal_is_found(path, seal):
    written(path, HISTORY)
    Path(f"{path}.seal").write_bytes(seal)
    assert re.search(r"its seal .*(unreadable|garbled)", refusal(path))


@pytest.mark.parametrize("key", ["schema", "version", "chain", "latched", "identity"])
def test_a_bit_flipped_in_a_seals_key_is_found(path, key):
    """Review 58a: "identity" one bit off ("identiti") was taken as a seal with no
    identity, its check skipped, and the start rewrote the seal: the damage left no trace."""
    written(path, HISTORY)
    sealed = seal_of(path)
    sealed[key[:-1] + chr(ord(key[-1]) ^ 1)] = sealed.pop(key)
    reseal(path, sealed)
    assert re.search(r"its seal .* is garbled: .*keys no seal has", refusal(path))


@pytest.mark.parametrize("resealed", [False, True])
def test_a_generation_an_earlier_versions_seal_named_is_kept(path, resealed):
    """Review 58f: versions fdd0747 to 4609a24 wrote a lossy reseal's generation into the
    seal; refused as an unknown key, their files failed closed after the upgrade. Review
    58g: read and dropped, the epoch from before the loss came back, and a stale forced
    reset lifted the reseal's GLOBAL trip. It is kept in meta, by a start or a reseal."""
    written(path, HISTORY)
    reseal(path, {**seal_of(path), "generation": "0123456789abcdef"})
    if resealed:
        assert SqliteStateStore.reseal(path).generation == "0123456789abcdef"
    for _ in range(2):  # the seal written by the first start names it no more
        store = SqliteStateStore(path)
        loaded_state = store.load()
        store.close()
        assert (loaded_state.version, loaded_state.generation) == (4, "0123456789abcdef")
    assert "generation" not in seal_of(path)


@pytest.mark.parametrize("generation", ["", "0123", "0123456789ABCDEF", 7])
def test_a_garbled_generation_in_a_seal_is_found(path, generation):
    written(path, HISTORY)
    reseal(path, {**seal_of(path), "generation": generation})
    assert re.search(r"its seal .* is garbled: .*generation", refusal(path))


def test_a_seal_ahead_of_the_file_is_found(path):
    written(path, HISTORY)
    reseal(path, {**seal_of(path), "version": 7})
    assert "the seal says version 7, the file ends at 4" in refusal(path)


def test_another_stores_file_under_this_seal_is_found(path, tmp_path):
    other = written(tmp_path / "other" / "ess.db", [tr(1, SYMBOL), tr(2), tr(3), tr(4)])
    written(path, HISTORY)
    path.write_bytes(other.read_bytes())
    assert "events up to version 4 are not the ones sealed" in refusal(path)


def test_another_stores_file_is_found_by_its_identity_where_the_events_cannot_tell(
        path, tmp_path):
    """Two stores that never stored a transition have the same chain and latches: only
    the identity in the seal tells them apart."""
    other = written(tmp_path / "other" / "ess.db")
    loaded(other)  # a start seals the identity
    loaded(written(path))
    path.write_bytes(other.read_bytes())
    message = refusal(path)
    assert "its identity (" in message and "is not the one sealed" in message


@pytest.mark.parametrize("damage", [
    "UPDATE meta SET identity = x'00112233445566778899aabbccddeeff'",
    "UPDATE meta SET identity = 'garbled'", "DELETE FROM meta", "the seal's identity"])
def test_a_lost_or_altered_identity_is_found_and_a_reseal_takes_the_sealed_one_back(
        path, damage):
    """Review of stop 32: an identity lost or altered was blamed on the journal ("another
    store's") and the reseal drew a new one, cutting the whole journal chained from the
    old. The seal keeps the identity: the store finds the change, and a reseal restores it."""
    written(path, HISTORY)
    store = SqliteStateStore(path)
    identity = store.load().identity
    store.close()
    journal = FileJournal(f"{path}.journal", 0.0, identity=identity)
    journal.load()
    journal.record(TimersRan(T0))
    journal.close()
    if damage == "the seal's identity":  # a flipped digit: the journal's seal tells
        sealed = seal_of(path)["identity"]
        flipped = ("1" if sealed[0] == "0" else "0") + sealed[1:]
        reseal(path, {**seal_of(path), "identity": flipped})
    else:
        edit(path, damage)
    assert "is damaged" in refusal(path)
    SqliteStateStore.reseal(path, journal_genesis=FileJournal(
        f"{path}.journal").sealed_genesis())  # as `ess-sidecar reseal` does
    assert loaded(path).identity == identity
    kept = FileJournal(f"{path}.journal", identity=identity)
    assert kept.reseal_would_lose() is False and kept.load() == [(TimersRan(T0), ())]


# -- the WAL after a crash -------------------------------------------------------------------

CHILD = """
import os, sys
from ess_sidecar.adapters.storage.sqlite import SqliteStateStore
from ess_sidecar.domain.scopes import Scope, ScopeKind
from ess_sidecar.domain.states import Cause, State, Transition
store = SqliteStateStore(sys.argv[1])
version = store.load().version
for _ in range(int(sys.argv[2])):
    version += 1
    store.append([Transition(version, 1700000000.0 + version, Scope(ScopeKind.SYMBOL,
                  f"S{version}"), State.ARMED, State.TRIPPED, Cause.TRIGGER, "in the WAL",
                  "child")])
print("appended", version, flush=True)
if sys.argv[3] == "exit":
    os._exit(0)  # no close(): the WAL is not checkpointed
sys.stdin.read()  # held until SIGKILLed
"""


def crash_after_appending(path: Path, count: int, how: str) -> Path:
    """A child process appends `count` trips and dies (os._exit or SIGKILL) before
    anything checkpoints its WAL (a new store's schema too); the WAL's path."""
    version = (loaded(path).version if path.exists() else 0) + count
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path), str(count), how],
                             cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    try:
        ready, _, _ = select.select([child.stdout], [], [], 30)  # a deadline, not a sleep
        line = child.stdout.readline().decode() if ready else "(nothing within 30 s)"
    finally:
        if how == "kill":
            child.kill()
        _, stderr = child.communicate(timeout=30)
    assert line == f"appended {version}\n", f"child said {line!r}; stderr: {stderr.decode()}"
    assert child.returncode == (-signal.SIGKILL if how == "kill" else 0)
    wal = Path(f"{path}-wal")
    assert wal.stat().st_size > 32  # its trips are only in the WAL
    return wal


def truncated(size: Callable[[int], int]) -> Callable[[Path], None]:
    def damage(wal: Path) -> None:
        with open(wal, "r+b") as file:
            file.truncate(size(wal.stat().st_size))
    return damage


def garbled(start: Callable[[int], int], length: int) -> Callable[[Path], None]:
    def damage(wal: Path) -> None:
        data = bytearray(wal.read_bytes())
        at = start(len(data))
        data[at:at + length] = bytes(b ^ 0xFF for b in data[at:at + length])
        wal.write_bytes(bytes(data))
    return damage


WAL_DAMAGE = {
    "deleted": Path.unlink,
    "emptied": truncated(lambda size: 0),
    "cut to its header": truncated(lambda size: 32),
    "cut in half": truncated(lambda size: size // 2),
    "last byte cut": truncated(lambda size: size - 1),
    "header garbled": garbled(lambda size: 8, 8),
    "first frame garbled": garbled(lambda size: 32 + 24 + 100, 16),
    "middle garbled": garbled(lambda size: size // 2, 64),
    "last frame garbled": garbled(lambda size: size - 64, 64),
    "last bit flipped": garbled(lambda size: size - 1, 1),
}


@pytest.mark.parametrize("how", ["exit", "kill"])
def test_a_crash_with_an_intact_wal_loses_nothing(path, how):
    crash_after_appending(written(path, HISTORY), 3, how)
    state = loaded(path)
    assert state.version == 7
    assert [t.version for t in state.current] == [2, 4, 5, 6, 7]


@pytest.mark.parametrize("damage", WAL_DAMAGE.values(), ids=WAL_DAMAGE.keys())
def test_a_damaged_wal_after_a_crash_is_found(path, damage):
    wal = crash_after_appending(written(path, HISTORY), 3, "exit")
    damage(wal)
    assert re.search(r"has lost acknowledged transitions: the seal says version 7, the file"
                     r" ends at [4-6] \(a deleted or truncated WAL\?\)", refusal(path))


def test_a_new_stores_damaged_wal_is_left_as_it_is_so_that_it_can_be_repaired(path):
    """Review 37d: the schema and the trips of a store never checkpointed are in its WAL
    alone, and one flipped bit of the WAL's salt makes SQLite ignore it. The start found
    no schema and created one: that write restarted the WAL, and flipping the bit back no
    longer brought the trips back. Nothing is written now."""
    wal = crash_after_appending(path, 3, "kill")
    damage = garbled(lambda size: 16, 1)
    damage(wal)
    message = refusal(path)
    assert "the seal says version 3, the file holds no schema" in message
    assert "-wal.found, for a repair" in message
    shutil.copyfile(f"{wal}.found", wal)  # SQLite deletes a WAL it cannot read, at close
    damage(wal)  # repaired
    assert [t.version for t in loaded(path).current] == [1, 2, 3]
    assert not Path(f"{wal}.found").exists()  # loaded: the copy goes


def test_a_damaged_wal_is_kept_as_the_first_start_found_it(path):
    """The WAL of a store that lost acknowledged transitions is deleted by SQLite when the
    start that found the damage closes: a copy of it as found is kept, for a repair."""
    wal = crash_after_appending(written(path, HISTORY), 3, "kill")
    before = wal.read_bytes()
    garbled(lambda size: 16, 1)(wal)
    assert "kept at" in refusal(path)
    found = Path(f"{wal}.found").read_bytes()
    assert found[:16] == before[:16] and found[17:] == before[17:]
    SqliteStateStore.reseal(path)  # accepted as it is: no repair from the copy now
    assert not Path(f"{wal}.found").exists()


def test_a_wal_that_cannot_be_kept_whole_is_not_opened(path, monkeypatch):
    """Review 37g: a full disk cut the copy short; the store opened anyway (SQLite then
    deleted the damaged WAL) and the half copy was named as the one to repair from."""
    wal = crash_after_appending(path, 3, "kill")
    before = wal.read_bytes()

    def disk_full(source: Path, target: Path) -> None:
        Path(target).write_bytes(Path(source).read_bytes()[:100])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(shutil, "copyfile", disk_full)
    with pytest.raises(StoreUnavailable, match="cannot keep a copy of its WAL"):
        loaded(path)
    assert wal.read_bytes() == before  # not opened: nothing read or deleted
    assert not list(path.parent.glob("*.found*"))
    monkeypatch.undo()
    assert [t.version for t in loaded(path).current] == [1, 2, 3]


def test_a_damaged_schema_version_is_refused_not_a_crash(path):
    """Review 37d: one flipped bit of the header's user_version made it negative, and the
    start (and the reseal) ended in a KeyError."""
    written(path, HISTORY)
    data = bytearray(path.read_bytes())
    data[60] ^= 0x80
    path.write_bytes(bytes(data))
    with pytest.raises(StoreUnavailable, match="which no sidecar writes: its header is"):
        loaded(path)
    with pytest.raises(StoreUnavailable, match="which no sidecar writes"):
        SqliteStateStore.reseal(path)


# -- the operator's way out ------------------------------------------------------------------

def test_reseal_accepts_an_edited_file_as_it_is(path):
    written(path, HISTORY)
    edit(path, "UPDATE events SET reason = 'edited on purpose' WHERE version = 2")
    refusal(path)
    summary = SqliteStateStore.reseal(path)
    assert (summary.events, summary.version, summary.latched, summary.relatched) == (
        4, 4, ("ACCOUNT:acc-tamper", "SYMBOL:BTC-USD"), ())
    assert "4 events up to version 4, 2 scope(s) latched" in str(summary)
    state = loaded(path)
    assert [(t.version, t.reason) for t in state.current] == [(2, "edited on purpose"),
                                                               (4, "test 4")]
    edit(path, "UPDATE events SET reason = 'and again' WHERE version = 2")
    assert "event 2 does not match its hash chain" in refusal(path)  # chained anew


def test_reseal_relatches_from_the_events_and_never_reuses_a_version(path):
    written(path, HISTORY)
    wal = crash_after_appending(path, 2, "exit")  # trips 5 and 6, then lost with the WAL
    wal.unlink()
    edit(path, "DELETE FROM scopes WHERE scope_id = 'acc-tamper'")
    refusal(path)
    summary = SqliteStateStore.reseal(path)
    assert summary.relatched == ("ACCOUNT:acc-tamper",)  # the events say it is tripped
    assert summary.version == 6  # the seal's: versions 5 and 6 were acknowledged once
    state = loaded(path)
    assert ([t.version for t in state.current], state.version) == ([2, 4], 6)


def test_a_reseal_that_would_lift_a_latch_trips_global(path):
    """Review 37d: killed between the store's commit and the journal's record, a trip is in
    the store alone; its event rotted from TRIPPED to ARMED, the chain found it, and the
    reseal took the event's word: the scope resumed, nothing tripped, reported only as a
    changed latch. A latch its newest event does not hold is a loss: GLOBAL is tripped."""
    written(path, HISTORY)
    edit(path, "UPDATE events SET state = 1 WHERE version = 4")  # SYMBOL's trip, ARMED
    refusal(path)
    configured = load_settings(None, store={"path": str(path)})
    summary = SqliteStateStore.reseal(path, trip_for_lost_versions(configured))
    assert summary.unlatched == ("SYMBOL:BTC-USD",) and summary.loses
    assert "latched, but not by their newest event: SYMBOL:BTC-USD" in str(summary)
    tamper, trip = loaded(path).current
    assert (tamper.scope, trip.scope, trip.state) == (TAMPERED, GLOBAL, State.TRIPPED)
    assert "SYMBOL:BTC-USD latched, but not by their newest event" in trip.reason


@pytest.mark.parametrize("damage", [
    "UPDATE events SET state = 2 WHERE version = 4",  # TRIPPED rotted to REDUCE_ONLY
    "UPDATE events SET reason = 'rotted' WHERE version = 2"])  # what an operator reads
def test_a_reseal_of_an_event_that_no_longer_matches_its_chain_trips_global(path, damage):
    """Review 37g: a trip's state rotted from TRIPPED to REDUCE_ONLY (one bit) kept its
    latch at the same event: the reseal resumed the scope half-way, unreported. What an
    event that does not match its chain says cannot be trusted: GLOBAL is tripped."""
    written(path, HISTORY)
    edit(path, damage)
    refusal(path)
    configured = load_settings(None, store={"path": str(path)})
    summary = SqliteStateStore.reseal(path, trip_for_lost_versions(configured))
    assert (summary.rewritten, summary.unlatched, summary.loses) == (1, (), True)
    # review 58a: which one, so the operator knows which scope's trip to look at
    edited = "4 (SYMBOL:BTC-USD)" if "version = 4" in damage else "2 (ACCOUNT:acc-tamper)"
    assert f"1 event(s) did not match their chain (edited or damaged): {edited}" \
        in str(summary)
    assert edited in loaded(path).current[-1].reason
    assert loaded(path).current[-1].scope == GLOBAL


def test_a_reseal_that_moves_a_latch_to_an_older_event_trips_global(path):
    """Review 37g: a scope REDUCE_ONLY at one event, then TRIPPED at the next, whose scope
    id rotted: the latch fell back to the older, looser event, listed only as changed."""
    written(path, [tr(1, SYMBOL, State.REDUCE_ONLY)], [tr(2, SYMBOL)])
    edit(path, "UPDATE events SET scope_id = 'BTC-USE' WHERE version = 2")
    refusal(path)
    configured = load_settings(None, store={"path": str(path)})
    summary = SqliteStateStore.reseal(path, trip_for_lost_versions(configured))
    assert summary.unlatched == ("SYMBOL:BTC-USD",) and summary.loses
    assert loaded(path).current[-1].scope == GLOBAL


def test_a_reseal_accepts_lost_versions_only_together_with_what_it_trips_for_them(path):
    """Review 7: the lost versions were accepted (seal rewritten) before GLOBAL's trip was
    written; when the trip failed, a second reseal found nothing lost and the store started
    ARMED. Now the trip is stored in the reseal's own transaction, or nothing is."""
    written(path, HISTORY)
    crash_after_appending(path, 2, "exit").unlink()  # versions 5 and 6 lost with the WAL
    refusal(path)
    asked: list[tuple[list[int], int, tuple[int, int] | None]] = []

    def full_disk(current: list[Transition], summary: ResealSummary) -> list[Transition]:
        asked.append(([t.version for t in current], summary.version, summary.lost))
        raise StoreUnavailable("disk full")

    with pytest.raises(StoreUnavailable, match="disk full"):
        SqliteStateStore.reseal(path, full_disk)
    assert asked == [([2, 4], 6, (5, 6))]
    refusal(path)  # nothing accepted: the damage is still found

    def trip(current: list[Transition], summary: ResealSummary) -> list[Transition]:
        return [tr(summary.version + 1, GLOBAL)]

    summary = SqliteStateStore.reseal(path, trip)
    assert (summary.lost, summary.version) == ((5, 6), 7)
    state = loaded(path)
    assert ([t.version for t in state.current], state.version) == ([2, 4, 7], 7)
    assert not SqliteStateStore.reseal(path, full_disk).loses  # accepted, with its trip


def test_a_reseal_of_a_file_whose_seal_is_gone_trips_for_what_its_wal_may_have_held(path):
    """Review 8: the WAL, the seal and the journal deleted together; the reseal said nothing
    was lost and the sidecar started without the trip that was in the WAL."""
    written(path, HISTORY)
    crash_after_appending(path, 2, "exit").unlink()
    Path(f"{path}.seal").unlink()
    refusal(path)
    tripped: list[ResealSummary] = []

    def trip(current: list[Transition], summary: ResealSummary) -> list[Transition]:
        tripped.append(summary)
        return [tr(summary.version + 1, GLOBAL)]

    summary = SqliteStateStore.reseal(path, trip)
    assert summary.unsealed and summary.lost is None and len(tripped) == 1
    # Review 57a: versions past what the file holds may have been told (5 and 6, here,
    # lost with the WAL and the seal) and are numbered again: in a new generation.
    assert tripped[0].version == 4 and summary.generation
    assert "told in a new epoch" in str(summary)
    assert loaded(path).generation == summary.generation
    assert summary.latched == ("ACCOUNT:acc-tamper", "SYMBOL:BTC-USD", "GLOBAL")
    assert "its seal was missing or unreadable" in str(summary)
    assert [t.scope for t in loaded(path).current] == [TAMPERED, SYMBOL, GLOBAL]


def test_a_reseals_generation_is_new_when_it_loses_and_kept_by_the_file_after_it(path):
    """Review 57a: a reseal that lost versions kept the file's identity, so its epoch, and
    numbered again versions told before the loss. It draws a new generation, kept in the
    file's meta row (review 57b: kept in the seal, an older sidecar's start rewrote the
    seal without it, and the epoch from before the loss came back); a reseal that loses
    nothing keeps it too. One garbled is damage, and a reseal draws a new one."""
    written(path, HISTORY)
    assert loaded(path).generation == ""  # none until a reseal loses
    crash_after_appending(path, 2, "exit").unlink()  # versions 5 and 6 lost with the WAL
    first = SqliteStateStore.reseal(path, lambda current, summary: [tr(7, GLOBAL)])
    assert first.loses and len(first.generation) == 16
    store = SqliteStateStore(path)
    try:
        assert store.load().generation == first.generation
        store.append([tr(8, SYMBOL, State.ARMED)])  # its seal rewritten
    finally:
        store.close()
    assert loaded(path).generation == first.generation
    seal = json.loads(Path(f"{path}.seal").read_text())
    assert "generation" not in seal  # an older sidecar's seal writes keep nothing of it
    assert not (kept := SqliteStateStore.reseal(path)).loses
    assert kept.generation == first.generation == loaded(path).generation
    for garbled in ("'not a generation'", "''", "upper('0123456789abcdef')"):  # 57c: ''
        edit(path, f"UPDATE meta SET generation = {garbled}")
        assert "generation is garbled" in refusal(path)
    redrawn = SqliteStateStore.reseal(path)
    assert redrawn.generation not in ("", first.generation) and redrawn.drawn
    assert "told in a new epoch" in str(redrawn)
    assert loaded(path).generation == redrawn.generation
    Path(f"{path}.seal").unlink()
    assert SqliteStateStore.reseal(path).generation not in ("", redrawn.generation)


@pytest.mark.parametrize("sealed", [True, False])
def test_a_reseal_of_zeros_keeps_them_and_a_lossy_one_leaves_no_empty_epoch(path, sealed):
    """Review 57a: an identity of zeros (a store upgraded from schema 5, or one damaged so)
    whose seal and journal were lost kept zeros through the reseal, so its epoch stayed
    "", which names any store's versions. Zeros are kept (a journal may be chained from
    them); the reseal, which loses when the seal is gone, draws a generation."""
    written(path, HISTORY)
    edit(path, "UPDATE meta SET identity = zeroblob(16)")
    if sealed:  # as a schema-5 store's upgrade seals it
        seal = json.loads(Path(f"{path}.seal").read_text())
        Path(f"{path}.seal").write_text(json.dumps({**seal, "identity": "00" * 16}))
    else:
        Path(f"{path}.seal").unlink()
    summary = SqliteStateStore.reseal(path)
    assert summary.identity == bytes(16) and summary.loses is not sealed
    state = loaded(path)
    assert state.identity == bytes(16) and bool(state.generation) is not sealed
    assert (store_epoch(state.identity, state.generation) == "") is sealed


@pytest.mark.parametrize("damage", ["versions lost", "seal deleted"])
def test_an_upgrade_from_schema_4_keeps_the_seal_so_damage_is_still_found(path, damage):
    """Diff review 8: the upgrade to schema 5 resealed the file before load() checked it
    against its seal, so a schema-4 file that had lost versions with its WAL (or its
    seal) came out of the upgrade as if nothing had happened."""
    written(path, HISTORY)
    crash_after_appending(path, 2, "exit").unlink()  # versions 5 and 6 lost with the WAL
    if damage == "seal deleted":
        Path(f"{path}.seal").unlink()
    edit(path, "ALTER TABLE meta DROP COLUMN identity")  # as the sidecar before this one
    edit(path, "PRAGMA user_version = 4")  # left it
    message = refusal(path)
    assert "lost acknowledged transitions" in message or "seal" in message, message
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION  # upgraded all the same
    assert SqliteStateStore.reseal(path).loses


def test_reseal_refuses_a_missing_file_and_a_file_in_use(path):
    written(path, HISTORY)
    store = SqliteStateStore(path)
    with pytest.raises(StoreUnavailable, match="in use"):
        SqliteStateStore.reseal(path)
    store.close()
    path.unlink()
    with pytest.raises(StoreDamaged, match="is missing"):
        SqliteStateStore.reseal(path)
    assert not path.exists()


# -- writes after damage ---------------------------------------------------------------------

def test_a_seal_that_cannot_be_written_refuses_appends_until_it_can_be(path):
    store = SqliteStateStore(path)
    store.load()
    store.append([tr(1, TAMPERED)])
    seal = Path(f"{path}.seal")
    seal.unlink()
    seal.mkdir()  # the seal can no longer be replaced
    with pytest.raises(StoredUnsealed, match="cannot write its seal"):
        store.append([tr(2, SYMBOL)])  # stored, as if the process died before its seal
    with pytest.raises(StoreUnavailable, match="cannot write its seal") as refused:
        store.append([tr(3, SYMBOL)])  # nothing written behind a stale seal
    assert not isinstance(refused.value, StoredUnsealed)
    assert [t.version for t in store.events_after(0, 10)] == [1, 2]
    seal.rmdir()
    store.append([tr(3, SYMBOL)])  # the seal 2 is owed, then 3
    store.close()
    assert [t.version for t in SqliteStateStore(path).load().current] == [1, 3]


def test_a_file_that_was_stored_past_its_seal_loads_with_what_it_holds(path):
    store = SqliteStateStore(path)
    store.load()
    store.append([tr(1, TAMPERED)])
    seal = Path(f"{path}.seal")
    sealed = seal.read_bytes()
    seal.unlink()
    seal.mkdir()
    with pytest.raises(StoredUnsealed):
        store.append([tr(2, SYMBOL)])
    store.close()
    seal.rmdir()
    seal.write_bytes(sealed)  # the seal as the failed write left it: behind the file
    assert [t.version for t in SqliteStateStore(path).load().current] == [1, 2]


# -- any single edit, anywhere in any history --------------------------------------------------

SCOPES = [GLOBAL, TAMPERED, SYMBOL, Scope(ScopeKind.STRATEGY, "s")]
batches = st.lists(st.lists(st.tuples(st.sampled_from(SCOPES), st.sampled_from(list(State))),
                            min_size=1, max_size=4), min_size=1, max_size=8)


@settings(max_examples=30, deadline=None)
@given(batches=batches, keep=st.integers(min_value=0, max_value=4), pick=st.integers(0, 99))
def test_every_history_reloads_and_any_edited_event_in_it_is_found(batches, keep, pick):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ess.db"
        version, history = 0, []
        for batch in batches:
            history.append([tr(version + i, scope, state)
                            for i, (scope, state) in enumerate(batch, 1)])
            version += len(batch)
        store = SqliteStateStore(written(path, *history, keep_events=keep), keep)
        before = (store.load(), store.events(ALL))
        store.close()
        store = SqliteStateStore(path, keep)
        assert (store.load(), store.events(ALL)) == before
        kept = [t.version for t in store.events(ALL)]
        store.close()
        edited = kept[pick % len(kept)]
        edit(path, f"UPDATE events SET actor = 'mallory' WHERE version = {edited}")
        assert f"event {edited} does not match its hash chain" in refusal(path, keep)


@settings(max_examples=25, deadline=None)
@given(batches=batches, keep=st.integers(min_value=0, max_value=4),
       clashes=st.sets(st.integers(0, 7)))
def test_the_latched_set_an_open_store_carries_is_the_one_the_file_holds(batches, keep,
                                                                         clashes):
    """One store open across every append (review 46b: reopened each time, the sum was
    read whole before each): after each, the seal's latched set, moved by that append's
    latches alone, is the one read whole from the file; an append refused half way (a
    version stored already) moves nothing; and the file reloads."""
    with tempfile.TemporaryDirectory() as tmp:
        path, version = Path(tmp) / "ess.db", 0
        store = SqliteStateStore(path, keep)
        store.load()
        for number, batch in enumerate(batches):
            if number in clashes and version:  # its second is not after its first
                with pytest.raises(ValueError, match="is not above"):
                    store.append([tr(version + 1, batch[0][0], batch[0][1]), tr(version)])
            store.append([tr(version + i, scope, state)
                          for i, (scope, state) in enumerate(batch, 1)])
            version += len(batch)
            reader = sqlite3.connect(path)
            try:
                whole = sqlite_store._latched_set(reader)
            finally:
                reader.close()
            assert seal_of(path)["latched"] == f"set:{whole:032x}"
        store.close()
        assert loaded(path, keep).version == version


FIRST_START_CUT_SHORT = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (600, 600))  # room for the seal, not a page
from ess_sidecar.adapters.storage.sqlite import SqliteStateStore
try:
    SqliteStateStore(sys.argv[1]).load()
except Exception as error:
    print(error)
"""


def test_a_first_start_that_could_not_write_its_file_is_named_as_such(path):
    """Review 42a, on a real full disk: a first start wrote the new store's seal, then not
    even the file's header, and every later start called the empty file truncated. It is
    still refused (a truncated store looks the same), saying what it may be; and SQLite's
    "disk I/O error" comes with the space left (a file-size limit here, so plenty)."""
    child = subprocess.run([sys.executable, "-c", FIRST_START_CUT_SHORT, str(path)],
                           capture_output=True, text=True, timeout=60, check=True)
    assert re.fullmatch(r"state store .* cannot open: disk I/O error \(its file system has"
                        r" \d+ bytes free\)\n", child.stdout), child.stdout + child.stderr
    assert path.stat().st_size == 0
    with pytest.raises(StoreUnavailable, match=r"is empty \(0 bytes\) and its seal .* is a"
                       " new store's: a first start that could not write it"):
        loaded(path)
    path.unlink()
    path.with_name("ess.db.seal").unlink()
    assert loaded(path).version == 0  # as the refusal says: a new store


@pytest.mark.parametrize("seal", ['{"version": 9223372036854775808, "chain": "%s",'
                                  ' "latched": "set:0"}' % ("00" * 16), "[" * 5000])
def test_a_seal_no_run_could_write_is_damage_and_its_reseal_says_what_it_did(
        path: Path, seal: str) -> None:
    """Review 55e: a seal naming a version past 2^62 made the reseal crash (SQLite's
    INTEGER), and one nested 5,000 deep crashed the start (a RecursionError)."""
    written(path, [tr(1)])
    Path(f"{path}.seal").write_text(seal)
    assert "seal" in refusal(path)
    SqliteStateStore.reseal(path)
    assert loaded(path).version == 1
