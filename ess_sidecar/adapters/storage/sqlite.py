"""SQLite state store: the embedded default; every write is fsynced before it returns."""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from ...domain.errors import StoreUnavailable
from ...domain.scopes import Scope, ScopeKind
from ...domain.states import Cause, Directive, State, Transition, TriggerReason
from ...ports import EventQuery, StateStore, StoredState
from .filelock import FileLock, LockHeld

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2

# Run as one script inside BEGIN IMMEDIATE ... COMMIT, so a new file gets all of it or none.
SCHEMA = """
CREATE TABLE events (
    version     INTEGER PRIMARY KEY,
    time        REAL    NOT NULL,
    scope_kind  INTEGER NOT NULL,
    scope_id    TEXT    NOT NULL,
    previous    INTEGER NOT NULL,
    state       INTEGER NOT NULL,
    cause       INTEGER NOT NULL,
    reason      TEXT    NOT NULL,
    actor       TEXT    NOT NULL,
    breaker     TEXT    NOT NULL,
    reason_code INTEGER,            -- NULL: the transition carried no trigger reason
    directives  TEXT    NOT NULL,   -- Directive values, comma-separated, in order
    forced      INTEGER NOT NULL,
    rearm_at    REAL,
    approved_by TEXT    NOT NULL DEFAULT '',  -- schema 2: four-eyes resets
    drill       INTEGER NOT NULL DEFAULT 0    -- schema 2: drills
);
CREATE INDEX events_by_scope ON events (scope_kind, scope_id, version);
CREATE INDEX events_by_time ON events (time);

-- The latched state: the latest transition of every scope that is not ARMED.
-- The foreign key makes pruning a latched event fail loudly instead of losing a trip.
CREATE TABLE scopes (
    scope_kind INTEGER NOT NULL,
    scope_id   TEXT    NOT NULL,
    version    INTEGER NOT NULL REFERENCES events (version),
    PRIMARY KEY (scope_kind, scope_id)
);

CREATE TABLE executors (
    executor_id TEXT PRIMARY KEY,
    scope_kind  INTEGER NOT NULL,
    scope_id    TEXT    NOT NULL,
    ttl_s       REAL    NOT NULL
);

-- One row. last_version outlives pruning, so versions are never reused; pruned_through is
-- the highest version ever pruned: history at or below it has holes.
CREATE TABLE meta (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    last_version   INTEGER NOT NULL,
    pruned_through INTEGER NOT NULL
);
INSERT INTO meta (id, last_version, pruned_through) VALUES (1, 0, 0);
"""

# Upgrades of an older file, each run in one transaction: MIGRATIONS[n] takes schema n to n+1.
MIGRATIONS = {
    1: "ALTER TABLE events ADD COLUMN approved_by TEXT NOT NULL DEFAULT '';"
       " ALTER TABLE events ADD COLUMN drill INTEGER NOT NULL DEFAULT 0;",
}

COLUMNS = ("version, time, scope_kind, scope_id, previous, state, cause, reason, actor,"
           " breaker, reason_code, directives, forced, rearm_at, approved_by, drill")

INSERT_EVENT = f"INSERT INTO events ({COLUMNS}) VALUES ({', '.join('?' * 16)})"

# The newest keep_events versions stay; older ones go unless they are still latched.
LAST_PRUNABLE = """
SELECT MAX(version) FROM events
 WHERE version < (SELECT version FROM events ORDER BY version DESC LIMIT 1 OFFSET ?)
   AND version NOT IN (SELECT version FROM scopes)
"""

PRUNE = "DELETE FROM events WHERE version <= ? AND version NOT IN (SELECT version FROM scopes)"

# A reader behind a pruned hole gets only the gap-free tail, so the first version it sees
# is not the one it asked for and it knows to resync (a kept latched event would hide it).
EVENTS_AFTER = f"""
SELECT {COLUMNS} FROM events
 WHERE version > MAX(?, (SELECT pruned_through FROM meta))
 ORDER BY version LIMIT ?
"""


class SqliteStateStore(StateStore):
    """State in one SQLite file (WAL, synchronous=FULL).

    The constructor never raises StoreUnavailable: if the file cannot be opened (garbage,
    an empty file, a newer schema, another application's database, an uncreatable
    directory, a file in use by another sidecar) the problem is kept and raised, naming
    the path, by load() and by every later call.

    One store per file: an exclusive flock on the sibling `<path>.lock` is held from
    opening until close(), so a second sidecar on the same file finds it in use instead of
    writing versions of its own into it.
    """

    def __init__(self, path: str | os.PathLike[str], keep_events: int = 0) -> None:
        if keep_events < 0:
            raise ValueError(f"keep_events must be >= 0, not {keep_events}")
        self.path = Path(path)
        self.lock_path = Path(f"{self.path}.lock")
        self._file_lock = FileLock(self.lock_path)
        self._keep_events = keep_events
        self._conn: sqlite3.Connection | None = None
        self._broken: StoreUnavailable | None = None
        try:
            self._conn = self._open()
        except StoreUnavailable as error:
            self._broken = error
            self._unlock()  # a store that cannot be used never writes: nothing to guard

    # -- StateStore -------------------------------------------------------------------------

    def load(self) -> StoredState:
        with self._transaction("BEGIN") as conn:
            problem = conn.execute("PRAGMA quick_check").fetchone()[0]
            if problem != "ok":
                raise StoreUnavailable(f"state store {self.path} is corrupt: {problem}")
            current = conn.execute(f"SELECT {COLUMNS} FROM events WHERE version IN"
                                   " (SELECT version FROM scopes) ORDER BY version").fetchall()
            version = conn.execute("SELECT last_version FROM meta").fetchone()[0]
            executors = conn.execute("SELECT executor_id, scope_kind, scope_id, ttl_s"
                                     " FROM executors ORDER BY executor_id").fetchall()
        self._prove_writable()
        with self._decoding():
            return StoredState(
                current=[_transition(row) for row in current], version=version,
                registrations=[(e, Scope(ScopeKind(k), i), t) for e, k, i, t in executors])

    def _prove_writable(self) -> None:
        """A durable write now, before anything is served: a store that cannot take one
        (read-only file or disk, full disk) would otherwise be found out only by the first
        trip, with orders allowed until then."""
        try:
            with self._transaction("BEGIN IMMEDIATE") as conn:
                conn.execute("UPDATE meta SET last_version = last_version")
        except StoreUnavailable as error:
            raise StoreUnavailable(f"state store {self.path} is not writable: {error}") \
                from error

    def append(self, transitions: Sequence[Transition]) -> None:
        if not transitions:
            return
        with self._transaction("BEGIN IMMEDIATE") as conn:
            last = conn.execute("SELECT last_version FROM meta").fetchone()[0]
            _check_versions(transitions, last)
            conn.executemany(INSERT_EVENT, [_row(t) for t in transitions])
            for t in transitions:
                self._latch(conn, t)
            conn.execute("UPDATE meta SET last_version = ?", (transitions[-1].version,))
            if self._keep_events:
                self._prune(conn)

    def events(self, query: EventQuery) -> list[Transition]:
        if query.limit <= 0:
            return []
        where, params = _event_filter(query)
        return self._select(f"SELECT {COLUMNS} FROM events WHERE {where}"
                            " ORDER BY version DESC LIMIT ?", [*params, query.limit])

    def events_after(self, version: int, limit: int) -> list[Transition]:
        if limit <= 0:
            return []
        return self._select(EVENTS_AFTER, (version, limit))

    def save_registration(self, executor_id: str, scope: Scope, ttl_s: float) -> None:
        with self._transaction("BEGIN IMMEDIATE") as conn:
            conn.execute("INSERT OR REPLACE INTO executors (executor_id, scope_kind, scope_id,"
                         " ttl_s) VALUES (?, ?, ?, ?)",
                         (executor_id, int(scope.kind), scope.id, ttl_s))

    def delete_registration(self, executor_id: str) -> None:
        with self._transaction("BEGIN IMMEDIATE") as conn:
            conn.execute("DELETE FROM executors WHERE executor_id = ?", (executor_id,))

    def close(self) -> None:
        try:
            if self._conn is not None:
                try:
                    self._conn.close()
                except sqlite3.Error as error:
                    raise self._unavailable("cannot close", error) from error
        finally:
            self._unlock()  # only after the connection is closed: no write can follow

    # -- opening ----------------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise self._unavailable("cannot create its directory", error) from error
        self._lock()
        try:
            if self.path.stat().st_size == 0:
                # A fresh store is never left empty (the first PRAGMA below writes the
                # header), so an empty file is a truncated one: adopting it as new would
                # forget every latched trip.
                raise StoreUnavailable(
                    f"state store {self.path} is empty (0 bytes): it may have been truncated;"
                    " restore it, or delete it to start with no latched state")
        except FileNotFoundError:
            pass  # first run: a new store is created
        except OSError as error:
            raise self._unavailable("cannot open", error) from error
        try:
            # isolation_level=None: no implicit transactions; each write says BEGIN itself.
            conn = sqlite3.connect(self.path, isolation_level=None)
        except sqlite3.Error as error:
            raise self._unavailable("cannot open", error) from error
        try:
            self._prepare(conn)
        except BaseException:
            conn.close()
            raise
        log.info("state store opened: %s", self.path.resolve())
        return conn

    def _lock(self) -> None:
        """Take the exclusive lock on `<path>.lock`, or raise StoreUnavailable."""
        try:
            self._file_lock.acquire()
        except LockHeld:
            raise StoreUnavailable(
                f"state file {self.path} is in use by another ess-sidecar process"
                f" (lock {self.lock_path})") from None
        except OSError as error:
            raise self._unavailable(f"cannot lock {self.lock_path}", error) from error

    def __del__(self) -> None:
        # A store dropped without close() must not keep its file locked until exit.
        with contextlib.suppress(Exception):
            if self._conn is not None:
                self._conn.close()
        with contextlib.suppress(Exception):
            self._unlock()

    def _unlock(self) -> None:
        self._file_lock.release()

    def _prepare(self, conn: sqlite3.Connection) -> None:
        try:
            # Read before writing anything: a file we do not understand is left untouched.
            found = conn.execute("PRAGMA user_version").fetchone()[0]
            if found > SCHEMA_VERSION:
                raise StoreUnavailable(
                    f"state store {self.path} has schema version {found}, newer than the"
                    f" {SCHEMA_VERSION} this sidecar understands; upgrade the sidecar")
            if found == 0 and conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                raise StoreUnavailable(f"state store {self.path} is an SQLite database of"
                                       " something else (tables but no schema version)")
            # WAL may be refused (e.g. some network filesystems); FULL sync keeps it durable.
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            if found == 0:
                self._run_script(conn, SCHEMA, SCHEMA_VERSION)
                found = SCHEMA_VERSION
            for version in range(found, SCHEMA_VERSION):
                self._run_script(conn, MIGRATIONS[version], version + 1)
                log.info("state store %s upgraded to schema %d", self.path, version + 1)
        except sqlite3.Error as error:
            raise self._unavailable("cannot open", error) from error

    @staticmethod
    def _run_script(conn: sqlite3.Connection, script: str, version: int) -> None:
        """Create or upgrade the schema: all of it and the new user_version, or none."""
        try:
            conn.executescript(f"BEGIN IMMEDIATE; {script}"
                               f" PRAGMA user_version = {version}; COMMIT;")
        except BaseException:
            conn.rollback()
            raise

    # -- helpers ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _transaction(self, begin: str) -> Iterator[sqlite3.Connection]:
        """One transaction; any sqlite3 error rolls it back and becomes StoreUnavailable."""
        conn = self._connection()
        try:
            conn.execute(begin)
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                conn.rollback()
                raise
        except sqlite3.Error as error:
            raise self._unavailable("cannot read or write", error) from error

    def _select(self, sql: str, params: Iterable[Any]) -> list[Transition]:
        try:
            rows = self._connection().execute(sql, tuple(params)).fetchall()
        except sqlite3.Error as error:
            raise self._unavailable("cannot read", error) from error
        with self._decoding():
            return [_transition(row) for row in rows]

    @contextlib.contextmanager
    def _decoding(self) -> Iterator[None]:
        """A row this code cannot decode (an unknown enum value) makes the store unreadable."""
        try:
            yield
        except (ValueError, TypeError) as error:
            raise self._unavailable("has an unreadable row", error) from error

    def _connection(self) -> sqlite3.Connection:
        if self._broken is not None:
            raise StoreUnavailable(str(self._broken)) from self._broken.__cause__
        assert self._conn is not None
        return self._conn

    def _latch(self, conn: sqlite3.Connection, t: Transition) -> None:
        key = (int(t.scope.kind), t.scope.id)
        if t.state is State.ARMED:
            conn.execute("DELETE FROM scopes WHERE scope_kind = ? AND scope_id = ?", key)
        else:
            conn.execute("INSERT OR REPLACE INTO scopes (scope_kind, scope_id, version)"
                         " VALUES (?, ?, ?)", (*key, t.version))

    def _prune(self, conn: sqlite3.Connection) -> None:
        last = conn.execute(LAST_PRUNABLE, (self._keep_events - 1,)).fetchone()[0]
        if last is not None:
            conn.execute(PRUNE, (last,))
            conn.execute("UPDATE meta SET pruned_through = MAX(pruned_through, ?)", (last,))

    def _unavailable(self, what: str, error: BaseException) -> StoreUnavailable:
        return StoreUnavailable(f"state store {self.path} {what}: {error}")


def _check_versions(transitions: Sequence[Transition], last: int) -> None:
    for t in transitions:
        if t.version <= last:
            raise ValueError(f"transition version {t.version} is not above {last}")
        last = t.version


def _event_filter(query: EventQuery) -> tuple[str, list[Any]]:
    where, params = ["1"], []
    if query.scope is not None:
        where.append("scope_kind = ? AND scope_id = ?")
        params += [int(query.scope.kind), query.scope.id]
    for clause, value in (("time >= ?", query.since), ("time < ?", query.until),
                          ("version < ?", query.before_version)):
        if value is not None:
            where.append(clause)
            params.append(value)
    return " AND ".join(where), params


def _row(t: Transition) -> tuple[Any, ...]:
    return (t.version, t.time, int(t.scope.kind), t.scope.id, int(t.previous), int(t.state),
            int(t.cause), t.reason, t.actor, t.breaker,
            None if t.reason_code is None else int(t.reason_code),
            ",".join(str(int(d)) for d in t.directives), int(t.forced), t.rearm_at,
            t.approved_by, int(t.drill))


def _transition(row: Sequence[Any]) -> Transition:
    (version, time, kind, ident, previous, state, cause, reason, actor, breaker, code,
     directives, forced, rearm_at, approved_by, drill) = row
    return Transition(
        version=version, time=time, scope=Scope(ScopeKind(kind), ident),
        previous=State(previous), state=State(state), cause=Cause(cause), reason=reason,
        actor=actor, breaker=breaker,
        reason_code=None if code is None else TriggerReason(code),
        directives=tuple(Directive(int(d)) for d in directives.split(",") if d),
        forced=bool(forced), rearm_at=rearm_at, approved_by=approved_by, drill=bool(drill))
