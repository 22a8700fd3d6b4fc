"""Contract tests for the state stores: in memory, and SQLite on a real file."""

from __future__ import annotations

import select
import signal
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ess_sidecar.adapters.storage.memory import InMemoryStateStore
from ess_sidecar.adapters.storage.sqlite import SCHEMA_VERSION, SqliteStateStore
from ess_sidecar.domain.errors import StoreUnavailable
from ess_sidecar.domain.scopes import GLOBAL, Scope, ScopeKind
from ess_sidecar.domain.states import Cause, Directive, State, Transition, TriggerReason
from ess_sidecar.ports import EventQuery, StoredState

REPO = Path(__file__).resolve().parents[2]
ACCOUNT = Scope(ScopeKind.ACCOUNT, "acc-1")
SYMBOL = Scope(ScopeKind.SYMBOL, "BTC-USD")
T0 = 1_700_000_000.0
ALL = EventQuery(limit=1_000_000)


def tr(version: int, scope: Scope = GLOBAL, state: State = State.TRIPPED,
       time: float | None = None, **fields) -> Transition:
    previous = State.TRIPPED if state is State.ARMED else State.ARMED
    return Transition(version=version, time=T0 + version if time is None else time,
                      scope=scope, previous=previous, state=state, cause=Cause.TRIGGER,
                      reason=f"test {version}", actor="tester", **fields)


@pytest.fixture(params=["memory", "sqlite"])
def open_store(request, tmp_path):
    """open_store(keep_events) opens the store; calling it again reopens the same state
    (for SQLite: closes the previous store and opens the file anew)."""
    opened: list = []

    def open_(keep_events: int = 0):
        if request.param == "memory":
            if not opened:
                opened.append(InMemoryStateStore(keep_events))
            opened[0].keep_events = keep_events
            return opened[0]
        if opened:
            opened[-1].close()
        opened.append(SqliteStateStore(tmp_path / "state" / "ess.db", keep_events))
        return opened[-1]

    yield open_
    for store in opened:
        store.close()


def versions(transitions: list[Transition]) -> list[int]:
    return [t.version for t in transitions]


# -- latched state ---------------------------------------------------------------------------

def test_empty_store_loads_nothing_at_version_zero(open_store):
    assert open_store().load() == StoredState(current=[], version=0, registrations=[])


def test_latched_trip_survives_reopen(open_store):
    open_store().append([tr(1, ACCOUNT, State.TRIPPED)])
    loaded = open_store().load()
    assert loaded.current == [tr(1, ACCOUNT, State.TRIPPED)]
    assert loaded.version == 1


def test_current_is_the_latest_transition_of_each_restricted_scope(open_store):
    store = open_store()
    store.append([tr(1, GLOBAL, State.TRIPPED), tr(2, ACCOUNT, State.REDUCE_ONLY)])
    store.append([tr(3, GLOBAL, State.COOLING_DOWN), tr(4, SYMBOL, State.TRIPPED),
                  tr(5, ACCOUNT, State.ARMED)])
    loaded = open_store().load()
    assert loaded.current == [tr(3, GLOBAL, State.COOLING_DOWN), tr(4, SYMBOL, State.TRIPPED)]
    assert loaded.version == 5


def test_every_transition_field_round_trips_exactly(open_store):
    full = Transition(
        version=7, time=T0 + 0.123456789, scope=Scope(ScopeKind.STRATEGY, "mean-rev é,1"),
        previous=State.REDUCE_ONLY, state=State.COOLING_DOWN, cause=Cause.RESET,
        reason="ops: «reset», after review", actor="alice", breaker="daily_drawdown",
        reason_code=TriggerReason.REGULATORY_HALT,
        directives=(Directive.FLATTEN_POSITIONS, Directive.CANCEL_OPEN_ORDERS),
        forced=True, rearm_at=T0 + 900.5, approved_by="bob", drill=True)
    bare = tr(8, SYMBOL, State.TRIPPED)
    open_store().append([full, bare])
    store = open_store()
    for got in (store.load().current, store.events_after(0, 10), store.events(ALL)[::-1]):
        assert got == [full, bare]
        assert type(got[0].state) is State and type(got[0].cause) is Cause
        assert type(got[0].reason_code) is TriggerReason and type(got[0].scope.kind) is ScopeKind
        assert all(type(d) is Directive for d in got[0].directives)
        assert got[1].reason_code is None and got[1].rearm_at is None
        assert got[1].directives == () and got[1].forced is False


# -- versions --------------------------------------------------------------------------------

@pytest.mark.parametrize("batch", [[tr(2)], [tr(4), tr(3)], [tr(4), tr(4)], [tr(5), tr(1)]])
def test_append_with_stale_version_records_nothing(open_store, batch):
    store = open_store()
    store.append([tr(1, ACCOUNT), tr(2, ACCOUNT, State.ARMED)])
    before = (store.load(), store.events(ALL))
    with pytest.raises(ValueError):
        store.append(batch)
    assert (store.load(), store.events(ALL)) == before
    store.append([tr(3, SYMBOL)])  # the store still works
    assert open_store().load().version == 3


def test_version_never_goes_backwards_after_pruning(open_store):
    store = open_store(keep_events=2)
    for v in range(1, 7):
        store.append([tr(v, ACCOUNT, State.TRIPPED if v % 2 else State.ARMED)])
    store = open_store(keep_events=2)
    assert versions(store.events(ALL)) == [6, 5]
    assert store.load() == StoredState(current=[], version=6)
    assert store.load().pruned_through == 4
    with pytest.raises(ValueError):
        store.append([tr(6, SYMBOL)])


def test_pruning_keeps_events_that_are_latched(open_store):
    store = open_store(keep_events=2)
    store.append([tr(1, GLOBAL)])
    for v in range(2, 8):
        store.append([tr(v, SYMBOL, State.TRIPPED if v % 2 else State.ARMED)])
    assert versions(store.events(ALL)) == [7, 6, 1]
    assert open_store(keep_events=2).load().current == [tr(1, GLOBAL), tr(7, SYMBOL)]


def test_pruning_never_takes_the_events_of_the_append_just_made(open_store):
    """Review 20: a crash between the store's COMMIT and the journal's record leaves a
    start that takes the command's transitions from the store. An append of more than
    keep_events pruned some of its own, so that start fell back to the latched state,
    could not unlatch what the journal latched, and every start failed closed."""
    store = open_store(keep_events=1)
    store.append([tr(1, SYMBOL)])
    store.append([tr(2, SYMBOL, State.ARMED), tr(3, ACCOUNT), tr(4, ACCOUNT, State.ARMED)])
    assert versions(store.events_after(1, 10)) == [2, 3, 4]
    store.append([tr(5, SYMBOL, State.ARMED)])  # the next append prunes them
    assert versions(store.events(ALL)) == [5]


def test_pruning_takes_an_event_unlatched_since_among_latched_ones(open_store):
    """SQLite does not scan again events it found latched (stop 47): one unlatched since,
    here by ACCOUNT's reset, is pruned all the same."""
    store = open_store(keep_events=1)
    for v, scope in enumerate((ACCOUNT, SYMBOL, GLOBAL), 1):
        store.append([tr(v, scope)])
    store.append([tr(4, ACCOUNT, State.ARMED)])
    assert versions(store.events(ALL)) == [4, 3, 2]


def test_an_event_kept_below_the_prune_point_goes_after_an_append_that_may_not_prune(
        open_store):
    """A stop stored while the journal has failed prunes nothing (review 41f); the latched
    event it unlatched below the prune point goes with the next prune, whatever its
    scopes."""
    store = open_store(keep_events=1)
    store.append([tr(1, ACCOUNT)])
    store.append([tr(2, SYMBOL)])
    store.append([tr(3, SYMBOL, State.ARMED)])  # prunes 2: 1 is kept below, latched
    assert versions(store.events(ALL)) == [3, 1]
    store.append([tr(4, ACCOUNT, State.ARMED)], prune=False)
    store.append([tr(5, GLOBAL)])
    assert versions(store.events(ALL)) == [5]


def test_a_scopes_old_trip_goes_with_its_reset_after_a_restart(open_store):
    """Review 47c: a reset stored unpruned (a stop the journal lacks) lifted ACCOUNT's
    trip kept below the prune point; a restart forgot that, the reset was pruned, the old
    trip stayed as the scope's newest event, unlatched, and the next start called the
    file damaged. A scope's older events go with any of its pruned."""
    store = open_store(keep_events=1)
    for t in (tr(1, ACCOUNT), tr(2, SYMBOL), tr(3, SYMBOL, State.ARMED)):
        store.append([t])
    store.append([tr(4, ACCOUNT, State.ARMED)], prune=False)
    store = open_store(keep_events=1)
    assert store.load().version == 4
    store.append([tr(5, SYMBOL)])
    assert versions(store.events(ALL)) == [5]
    assert open_store(keep_events=1).load() == StoredState(current=[tr(5, SYMBOL)], version=5)


def test_keep_events_zero_keeps_the_whole_audit_trail(open_store):
    store = open_store()
    for v in range(1, 51):
        store.append([tr(v, SYMBOL, State.TRIPPED if v % 2 else State.ARMED)])
    assert versions(store.events(ALL)) == list(range(50, 0, -1))


def test_events_after_a_pruned_hole_show_a_gap(open_store):
    store = open_store(keep_events=2)
    store.append([tr(1, GLOBAL)])  # latched, so kept below the hole
    for v in range(2, 7):
        store.append([tr(v, SYMBOL, State.ARMED)])
    assert versions(store.events_after(0, 10)) == [5, 6]  # not [1, 5, 6]: 2..4 are gone
    assert versions(store.events_after(3, 10)) == [5, 6]
    assert versions(store.events_after(4, 10)) == [5, 6]
    assert versions(store.events_after(5, 10)) == [6]


# -- queries ---------------------------------------------------------------------------------

def test_events_are_newest_first_and_paged_by_version(open_store):
    store = open_store()
    store.append([tr(v, SYMBOL, State.TRIPPED if v % 2 else State.ARMED) for v in range(1, 8)])
    assert versions(store.events(EventQuery(limit=3))) == [7, 6, 5]
    assert versions(store.events(EventQuery(before_version=5, limit=3))) == [4, 3, 2]
    assert versions(store.events(EventQuery(before_version=2, limit=3))) == [1]
    assert store.events(EventQuery(limit=0)) == []


def test_events_filter_by_scope_and_half_open_time_range(open_store):
    store = open_store()
    store.append([tr(1, GLOBAL, time=10.0), tr(2, ACCOUNT, time=20.0),
                  tr(3, GLOBAL, State.ARMED, time=30.0), tr(4, GLOBAL, time=40.0)])
    assert versions(store.events(EventQuery(scope=GLOBAL))) == [4, 3, 1]
    assert versions(store.events(EventQuery(since=20.0, until=40.0))) == [3, 2]
    assert versions(store.events(EventQuery(scope=GLOBAL, since=10.0, until=30.0))) == [1]
    assert store.events(EventQuery(scope=Scope(ScopeKind.ACCOUNT, "other"))) == []


def test_events_after_are_oldest_first_and_limited(open_store):
    store = open_store()
    store.append([tr(v, SYMBOL, State.TRIPPED if v % 2 else State.ARMED) for v in range(1, 6)])
    assert versions(store.events_after(1, 2)) == [2, 3]
    assert versions(store.events_after(3, 10)) == [4, 5]
    assert store.events_after(5, 10) == [] and store.events_after(0, 0) == []


# -- registrations ---------------------------------------------------------------------------

def test_registrations_survive_reopen_one_per_executor_and_scope(open_store):
    """An executor may watch over several scopes (the engine keys them so): deregistering
    it from one keeps the others' dead-man's switches across a restart."""
    store = open_store()
    store.save_registration("exec-b", ACCOUNT, 5.0, "desk-b")
    store.save_registration("exec-a", GLOBAL, 2.5)
    store.save_registration("exec-c", SYMBOL, 1.0)
    store.save_registration("exec-b", SYMBOL, 8.0, "desk-b")
    store.save_registration("exec-b", SYMBOL, 9.0, "desk-b")  # replaces its SYMBOL row
    store.delete_registration("exec-c", SYMBOL)
    store.delete_registration("exec-a", SYMBOL)  # not registered for it: ignored
    store.delete_registration("never-registered", GLOBAL)
    assert open_store().load().registrations == [
        ("exec-a", GLOBAL, 2.5, ""), ("exec-b", ACCOUNT, 5.0, "desk-b"),
        ("exec-b", SYMBOL, 9.0, "desk-b")]


# -- feeds -----------------------------------------------------------------------------------

def test_feeds_survive_reopen_once_each_in_the_order_first_saved(open_store):
    """Every scope whose feed ticked (known gap 21): a start whose journal lacks its ticks
    still watches it."""
    store = open_store()
    assert store.load().feeds == []
    store.save_feeds([SYMBOL])
    store.save_feeds([ACCOUNT, SYMBOL, GLOBAL])
    store.save_feeds([])
    assert open_store().load().feeds == [SYMBOL, ACCOUNT, GLOBAL]


def test_feeds_are_kept_by_a_reseal(tmp_path):
    path = tmp_path / "ess.db"
    store = SqliteStateStore(path)
    store.load()
    store.append([tr(1)])
    store.save_feeds([SYMBOL])
    store.close()
    Path(f"{path}.seal").unlink()  # a reseal that loses: the file is taken as it is
    assert SqliteStateStore.reseal(path).loses
    again = SqliteStateStore(path)
    assert again.load().feeds == [SYMBOL]
    again.close()


@pytest.mark.parametrize("edit", [
    "UPDATE feeds SET scope_kind = 99",
    "UPDATE feeds SET scope_id = x'4242'",  # review 58d: crashed the start
    "UPDATE executors SET scope_id = x'4242'",
    "UPDATE executors SET executor_id = x'4242'",
    "UPDATE executors SET ttl_s = 'long'",
    "UPDATE executors SET owner = x'00'"])
def test_a_row_this_code_cannot_read_makes_the_store_unreadable(tmp_path, edit):
    path = tmp_path / "ess.db"
    store = SqliteStateStore(path)
    store.load()
    store.save_feeds([SYMBOL])
    store.save_registration("exec-1", ACCOUNT, 5.0, "desk")
    store.close()
    with sqlite3.connect(path) as conn:
        conn.execute(edit)
    again = SqliteStateStore(path)
    with pytest.raises(StoreUnavailable, match="unreadable row"):
        again.load()
    again.close()


def test_closed_store_is_unavailable(open_store):
    store = open_store()
    store.close()
    with pytest.raises(StoreUnavailable):
        store.append([tr(1)])


# -- failures --------------------------------------------------------------------------------

def test_memory_store_failed_append_records_nothing():
    store = InMemoryStateStore()
    store.fail_next_append = True
    with pytest.raises(StoreUnavailable):
        store.append([tr(1)])
    assert store.load() == StoredState() and store.events(ALL) == []
    store.append([tr(1)])  # the switch fires once
    assert store.load().version == 1
    store.fail_load = True
    with pytest.raises(StoreUnavailable):
        store.load()


@pytest.mark.parametrize("table", ["events", "scopes", "meta"])
def test_sqlite_error_mid_append_is_unavailable_and_records_nothing(tmp_path, table):
    path = tmp_path / "ess.db"
    store = SqliteStateStore(path)
    store.append([tr(1, ACCOUNT)])
    with sqlite3.connect(path) as other:  # a fault injected into the step after `table`
        action = "UPDATE" if table == "meta" else "INSERT"
        other.execute(f"CREATE TRIGGER fault AFTER {action} ON {table}"
                      " BEGIN SELECT RAISE(ABORT, 'disk on fire'); END")
    with pytest.raises(StoreUnavailable, match="disk on fire") as raised:
        store.append([tr(2, GLOBAL), tr(3, SYMBOL)])
    assert isinstance(raised.value.__cause__, sqlite3.Error)
    assert versions(store.events(ALL)) == [1]
    if table == "meta":  # every write fails: loading it proves it is not writable
        with pytest.raises(StoreUnavailable, match="not writable"):
            store.load()
    with sqlite3.connect(path) as other:
        other.execute("DROP TRIGGER fault")
    assert store.load() == StoredState(current=[tr(1, ACCOUNT)], version=1)
    store.close()


def test_garbage_file_is_reported_unavailable(tmp_path):
    path = tmp_path / "ess.db"
    garbage = b"these are not the pages you are looking for\n" * 200
    path.write_bytes(garbage)
    store = SqliteStateStore(path)  # does not raise: load() reports it
    with pytest.raises(StoreUnavailable, match="not a database") as raised:
        store.load()
    assert str(path) in str(raised.value)
    with pytest.raises(StoreUnavailable):
        store.append([tr(1)])
    store.close()
    assert path.read_bytes() == garbage  # the evidence is left as it was


def test_corrupt_audit_trail_is_reported_unavailable(tmp_path):
    path = tmp_path / "ess.db"
    store = SqliteStateStore(path)
    store.append([tr(v, SYMBOL, State.ARMED) for v in range(1, 200)])
    store.close()
    with sqlite3.connect(path) as conn:  # ruin only pages load() has no reason to read
        page = conn.execute("PRAGMA page_size").fetchone()[0]
        spared = {1} | {r[0] for r in conn.execute("SELECT rootpage FROM sqlite_master"
                                                    " WHERE tbl_name != 'events'")}
    data = bytearray(path.read_bytes())
    ruined = [n for n in range(1, len(data) // page + 1) if n not in spared]
    assert len(ruined) >= 3
    for n in ruined:
        data[(n - 1) * page:n * page] = b"\xa5" * page
    path.write_bytes(data)
    with pytest.raises(StoreUnavailable, match="corrupt") as raised:
        SqliteStateStore(path).load()
    assert str(path) in str(raised.value)


def test_newer_schema_version_is_reported_unavailable(tmp_path):
    path = tmp_path / "ess.db"
    SqliteStateStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA user_version = 99")
    with pytest.raises(StoreUnavailable, match="schema version 99") as raised:
        SqliteStateStore(path).load()
    assert str(path) in str(raised.value)


def test_a_schema_1_file_is_upgraded_keeping_its_trips_and_history(tmp_path):
    path = tmp_path / "ess.db"
    with sqlite3.connect(path) as conn:
        conn.executescript((Path(__file__).parent / "data" / "schema_v1.sql").read_text())
        conn.execute("INSERT INTO events VALUES (1, ?, 3, 'momo', 1, 3, 1, 'stop', 'alice',"
                     " '', 1, '1', 0, NULL)", (T0,))
        conn.execute("INSERT INTO scopes VALUES (3, 'momo', 1)")
        conn.execute("UPDATE meta SET last_version = 1")
        conn.execute("INSERT INTO executors VALUES ('exec-1', 3, 'momo', 2.5)")
        conn.execute("PRAGMA user_version = 1")
    store = SqliteStateStore(path)
    try:
        loaded = store.load()
        assert loaded.version == 1
        assert loaded.registrations == [("exec-1", Scope(ScopeKind.STRATEGY, "momo"), 2.5, "")]
        [trip] = loaded.current
        assert (trip.scope, trip.state, trip.actor, trip.approved_by, trip.drill) == \
            (Scope(ScopeKind.STRATEGY, "momo"), State.TRIPPED, "alice", "", False)
        store.append([tr(2, approved_by="bob", drill=True)])
        assert store.events_after(0, 10)[1].approved_by == "bob"
    finally:
        store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


def test_another_applications_database_is_not_adopted(tmp_path):
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE orders (id INTEGER)")
    with pytest.raises(StoreUnavailable, match="something else"):
        SqliteStateStore(path).load()
    with sqlite3.connect(path) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master")]
    assert tables == ["orders"]


def test_uncreatable_directory_is_reported_unavailable(tmp_path):
    (tmp_path / "a-file").write_text("")
    path = tmp_path / "a-file" / "ess.db"
    with pytest.raises(StoreUnavailable, match="directory") as raised:
        SqliteStateStore(path).load()
    assert str(path) in str(raised.value)


def test_sqlite_file_is_wal_with_full_sync(tmp_path):
    path = tmp_path / "ess.db"
    store = SqliteStateStore(path)
    with sqlite3.connect(path) as other:  # WAL is a property of the file
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    # synchronous is per connection, so only the store's own connection can tell: 2 = FULL.
    assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 2
    store.close()


CHILD = """
import sys
from ess_sidecar.adapters.storage.sqlite import SqliteStateStore
from ess_sidecar.domain.scopes import GLOBAL
from ess_sidecar.domain.states import Cause, State, Transition
store = SqliteStateStore(sys.argv[1])
version = store.load().version + 1
store.append([Transition(version, 1700000000.5, GLOBAL, State.ARMED, State.TRIPPED,
                         Cause.TRIGGER, "crash drill", "child")])
print("appended", version, flush=True)
sys.stdin.read()  # block until killed
"""


def test_trip_survives_sigkill_right_after_append(tmp_path):
    path = tmp_path / "ess.db"
    before = SqliteStateStore(path)
    before.append([tr(1, ACCOUNT)])
    before.close()
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(path)], cwd=REPO,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        ready, _, _ = select.select([child.stdout], [], [], 30)  # wait for the line, not a sleep
        line = child.stdout.readline().decode() if ready else "(nothing within 30 s)"
    finally:
        child.kill()  # SIGKILL: no close(), no checkpoint, no atexit
        _, stderr = child.communicate()
    assert line == "appended 2\n", f"child said {line!r}; stderr: {stderr.decode()}"
    assert child.returncode == -signal.SIGKILL
    wal = Path(f"{path}-wal")
    assert wal.exists() and wal.stat().st_size > 0  # the trip is only in the WAL
    store = SqliteStateStore(path)
    loaded = store.load()
    assert loaded.version == 2
    assert [(t.version, t.scope, t.state, t.reason) for t in loaded.current] == [
        (1, ACCOUNT, State.TRIPPED, "test 1"), (2, GLOBAL, State.TRIPPED, "crash drill")]
    store.close()


# -- both stores against the contract's invariants ----------------------------------------

SCOPES = [GLOBAL, ACCOUNT, SYMBOL, Scope(ScopeKind.STRATEGY, "s")]
batches = st.lists(st.lists(st.tuples(st.sampled_from(SCOPES), st.sampled_from(list(State))),
                            min_size=1, max_size=4), min_size=1, max_size=8)


@settings(max_examples=40, deadline=None)
@given(batches=batches, keep=st.integers(min_value=0, max_value=5))
def test_stores_agree_and_keep_what_the_contract_promises(batches, keep):
    with tempfile.TemporaryDirectory() as tmp:
        stores = [InMemoryStateStore(keep), SqliteStateStore(Path(tmp) / "ess.db", keep)]
        latest: dict[Scope, Transition] = {}
        version = 0
        for batch in batches:
            appended = [tr(version + i, scope, state) for i, (scope, state) in enumerate(batch, 1)]
            version += len(batch)
            latest.update((t.scope, t) for t in appended)
            for store in stores:
                store.append(appended)
        results = [(s.load(), s.events(ALL), s.events_after(0, 10_000)) for s in stores]
        for store in stores:
            store.close()
    assert results[0] == results[1]
    loaded, kept, after = results[0]
    latched = sorted((t for t in latest.values() if t.state is not State.ARMED),
                     key=lambda t: t.version)
    assert loaded.current == latched and loaded.version == version
    assert versions(kept) == sorted(versions(kept), reverse=True)
    assert set(versions(latched)) <= set(versions(kept))
    # the newest keep, and every event of the last append however many (review 20)
    kept_at_least = max(keep, len(batches[-1])) if keep else version
    newest = range(version, max(version - kept_at_least, 0), -1)
    assert set(newest) <= set(versions(kept))
    assert len(kept) <= kept_at_least + len(latched)
    # events_after(0) is a gap-free tail; it starts at 1 only if nothing was ever pruned
    assert versions(after) == list(range(after[0].version, version + 1))
    assert (after[0].version == 1) == (versions(kept) == list(range(version, 0, -1)))


def test_a_new_state_file_is_said_with_where_it_is(tmp_path, monkeypatch, caplog):
    """Review 42f: the default store.path is relative, so a sidecar started from another
    directory made a new, empty store there and served with no latched state, said only
    at INFO like any other start. A new store is a warning naming its absolute path;
    opening an existing one is not."""
    monkeypatch.chdir(tmp_path)
    SqliteStateStore(Path("state/ess.db")).close()
    said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert said == [f"a new state store, with no latched state, is created at"
                    f" {tmp_path / 'state' / 'ess.db'}: if this sidecar has served before,"
                    " its state file is elsewhere (a relative store.path is taken from the"
                    " working directory)"]
    caplog.clear()
    SqliteStateStore(Path("state/ess.db")).close()
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


@settings(max_examples=40, deadline=None)
@given(steps=st.lists(st.tuples(batches.map(lambda b: b[0]), st.booleans(), st.booleans()),
                      min_size=1, max_size=16), keep=st.integers(min_value=1, max_value=4))
def test_the_stores_prune_alike_after_every_append_and_restart(steps, keep):
    """Stop 47: SQLite prunes reading only what may go (what no prune has passed, and the
    versions whose latches appends have lifted since), knowing that in memory. The
    in-memory store prunes by reading everything. After every append, appends that may
    not prune (a stop the journal lacks), and restarts, both keep the same events, but
    that a restart forgets what appends that did not prune lifted: those events stay
    until their scope's next is pruned. A start never finds damage (review 47c)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ess.db"
        memory, sqlite = InMemoryStateStore(keep), SqliteStateStore(path, keep)
        version, forgot = 0, False
        try:
            for batch, prune, restart in steps:
                appended = [tr(version + i, scope, state)
                            for i, (scope, state) in enumerate(batch, 1)]
                version += len(batch)
                for store in (memory, sqlite):
                    store.append(appended, prune=prune)
                if restart:
                    forgot = forgot or not prune
                    sqlite.close()
                    sqlite = SqliteStateStore(path, keep)
                    loaded, expected = sqlite.load(), memory.load()
                    assert loaded == expected
                    assert forgot or loaded.pruned_through == expected.pruned_through
                kept, model = sqlite.events(ALL), memory.events(ALL)
                if not forgot:
                    assert kept == model
                else:  # more kept, each older than its scope's newest, itself kept
                    assert set(model) <= set(kept)
                    newest = {t.scope: t.version for t in reversed(kept)}
                    assert all(t.version < newest[t.scope] for t in set(kept) - set(model))
        finally:
            sqlite.close()
