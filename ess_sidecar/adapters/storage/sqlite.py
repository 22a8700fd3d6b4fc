"""SQLite state store: the embedded default; every write is fsynced before it returns.

Tamper evidence. SQLite finds a structurally broken file (integrity_check) but not a bit
flipped inside a value, a row edited with the sqlite3 shell, a WAL that lost its last
transactions, or a state file deleted after the first run (that would be a fresh start).
So, since schema 3:

- **Hash chain.** Every event stores `prev_chain` and `chain` = BLAKE2b-128(prev_chain +
  its other columns as canonical JSON: fixed column order, exact floats, ASCII). An
  appended event's prev_chain is the chain of the event before it; the first one's is 16
  zero bytes. Pruning deletes old events but never latched ones, so the kept events are an
  unbroken run above `meta.pruned_through` plus latched events at or below it:
  `meta.chain_anchor` keeps the chain of the newest event pruned (the one at
  pruned_through), the run is checked link by link from it, and each latched event kept
  below it is checked against its own prev_chain (its predecessors are gone; its latch is
  still checked against the events, and the set of latches against the seal).
- **Seal.** `<path>.seal` (seal.Seal, outside the SQLite file): the last version, the
  chain of the newest event, the latched set and the schema. The latched set is the sum,
  modulo 2**128, of each latch's digest with its event's chain ("set:<hex>"), so that an
  append moves it by the latches it changes instead of reading them all; a seal written
  before that (a digest of every latch in order) is checked in that form, once, and the
  start writes it anew. It is written when a store is created (the marker that a first
  run happened), by an upgrade, and after every append commits, before append returns.
- **load()** checks integrity_check, then every event against the chain, meta.last_version
  against the newest event (and the seal's version: only a lossy reseal leaves it past the
  newest event), every latch against its scope's newest event (and that every
  scope whose newest event is not ARMED is latched), then the seal: missing while the file
  was used, ahead of the file (acknowledged transitions lost: a deleted or truncated WAL),
  a chain or latched set other than the one sealed. A file ahead of its seal by whole
  transactions whose chain verifies is a crash between COMMIT and the seal's write: it is
  accepted and the seal brought up to date. `_open` refuses a missing file whose seal or
  WAL exists, instead of starting afresh.
- **Identity.** `meta.identity` (schema 6): 16 random bytes drawn at creation (all zeros
  after an upgrade from schema 5). The journal beside the file chains its records from
  it (journal.py), so another store's journal is damage. The seal keeps it from the first
  start on; a reseal takes the sealed one back if the file's is lost or altered.

Damage raises StoreDamaged from load() (bootstrap then serves with GLOBAL tripped, the
reason naming what was found) and the store stays refused until an operator acts: restore
the file from a backup, or, having inspected it, accept it as it is with `ess-sidecar
reseal --config FILE`, i.e. SqliteStateStore.reseal(path), which re-chains the events,
re-derives the latches from them, never lowers last_version below the sealed one (versions
are not reused), and rewrites the seal. A reseal that loses may number again versions told
before the loss (nothing says how far they went), so it draws a new generation
(meta.generation, a column added by the first such reseal: no schema change, which any
version of the sidecar leaves as it is), and the store's versions are told in a new epoch
(StoredState.generation, service.store_epoch). To start with no latched state instead,
delete the state file with its seal and WAL.

Limits: the hash has no key, so it stands against damage and careless edits, not against
someone who recomputes the chain and the seal; registrations (executors) are not chained;
a seal older than the prune point (a crash right after an append that pruned past it) is
checked for its version only.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import re
import shutil
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...domain.errors import StoreBusy, StoreDamaged, StoredUnsealed, StoreUnavailable
from ...domain.scopes import Scope, ScopeKind
from ...domain.states import Cause, Directive, Latch, State, Transition, TriggerReason
from ...ports import EventQuery, StateStore, StoredRegistration, StoredState
from .filelock import FileLock, LockHeld
from .seal import MOST_INTEGER, MOST_VERSION, Seal, SealUnreadable

# What a query may raise: sqlite3's errors, and UnicodeDecodeError when SQLite's message
# quotes bytes of a damaged file that are not UTF-8 (a flipped bit in the schema text).
FAILURES = (sqlite3.Error, UnicodeDecodeError)
# How long a write waits for another process's lock on the state file (SQLite's busy
# timeout; its default): then StoreBusy, which a stop tries again (Guard._store_stop).
BUSY_TIMEOUT_S = 5.0

log = logging.getLogger(__name__)

SCHEMA_VERSION = 6
LOCK_WAIT_S = 0.5  # a held lock is tried again this long (a killed sidecar's syncer)
GENESIS = bytes(16)  # the chain before the first event

# What load() asks SQLite. integrity_check, unlike quick_check, also finds an index that
# disagrees with its table (a bit flipped in an indexed id). On 100k events (16 MB, 2-core
# VM) it takes 0.23-0.34 s where quick_check takes 0.05-0.07 s; the whole load() 1.3-1.8 s.
INTEGRITY_CHECK = "PRAGMA integrity_check(1)"

ACCEPT = "; restore it from a backup, or accept it as it is with `ess-sidecar reseal`"


# Given the latched scopes' transitions and what a reseal found lost, what to store with
# the reseal that accepts the loss (SqliteStateStore.reseal).
ForLostVersions = Callable[[list[Transition], "ResealSummary"], list[Transition]]


@dataclass(frozen=True)
class ResealSummary:
    """What an operator accepted with reseal."""

    path: Path
    version: int  # last_version from now on
    events: int  # events kept, now chained
    latched: tuple[str, ...]  # scopes latched, as the next start will load them
    relatched: tuple[str, ...]  # scopes whose latch changed to agree with their events
    # Versions the seal vouched for that the file no longer holds (a lost WAL), if any:
    # what they latched is unknown, so the reseal trips GLOBAL (bootstrap.reseal).
    lost: tuple[int, int] | None = None
    # The seal was missing or unreadable: what the file held when it was last sealed is
    # unknown (its WAL may have gone with the seal), so the reseal trips GLOBAL too.
    unsealed: bool = False
    identity: bytes | None = None  # the store's (meta.identity), if it can be read
    # Scopes latched in the file that their newest event, as the file holds it, does not
    # latch at the same event: an event that lifts or moves a latch is written with it,
    # so only damage does this (review 37d: a trip's event rotted to ARMED, its journal
    # record not written yet; 37g: to REDUCE_ONLY, or the latch fell back to an older,
    # looser event). Lifting or moving them is a loss: the reseal trips GLOBAL.
    unlatched: tuple[str, ...] = ()
    # Events whose content no longer matches their chain (edited or damaged: what they
    # say, a latch's state among it, may not be what was stored), chained anew: a loss.
    rewritten: int = 0
    # The first of them, "version (scope)" (review 58a: the reseal told how many, and the
    # operator not which scope's trip an edit may have lifted).
    rewritten_events: tuple[str, ...] = ()
    # The store's generation from now on (StoredState.generation): a new one when the
    # reseal loses, as versions told before the loss may be numbered again, or finds it
    # garbled (`drawn`).
    generation: str = ""
    drawn: bool = False

    @property
    def loses(self) -> bool:
        """Whether accepting the file may lose acknowledged transitions."""
        return self.lost is not None or self.unsealed or bool(self.unlatched) \
            or bool(self.rewritten)

    def rewritten_text(self) -> str:
        """How many events did not match their chain, and the first of them."""
        more = " …" if self.rewritten > len(self.rewritten_events) else ""
        return (f"{self.rewritten} event(s) did not match their chain (edited or damaged):"
                f" {', '.join(self.rewritten_events)}{more}")

    def __str__(self) -> str:
        changed = f"; latches changed: {', '.join(self.relatched)}" if self.relatched else ""
        lost = f"; versions {self.lost[0]} to {self.lost[1]} were acknowledged and are" \
            " missing" if self.lost else ""
        if self.unsealed:
            lost += "; its seal was missing or unreadable: what it vouched for is unknown"
        if self.unlatched:
            lost += f"; latched, but not by their newest event: {', '.join(self.unlatched)}"
        if self.rewritten:
            lost += f"; {self.rewritten_text()}: chained as they are now"
        if self.drawn:
            lost += "; its versions are told in a new epoch from now on (a new generation):" \
                " one shown before names no transition after it"
        return (f"{self.path}: {self.events} events up to version {self.version},"
                f" {len(self.latched)} scope(s) latched ({', '.join(self.latched) or 'none'})"
                f"{changed}{lost}")


# Run as one script inside BEGIN IMMEDIATE ... COMMIT, so a new file gets all of it or none.
SCHEMA = f"""
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
    drill       INTEGER NOT NULL DEFAULT 0,   -- schema 2: drills
    prev_chain  BLOB    NOT NULL,             -- schema 3: the hash chain (module docstring)
    chain       BLOB    NOT NULL,
    latches     TEXT    NOT NULL DEFAULT ''   -- schema 4: the scope's latches after it (JSON)
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
    executor_id TEXT    NOT NULL,
    scope_kind  INTEGER NOT NULL,
    scope_id    TEXT    NOT NULL,
    ttl_s       REAL    NOT NULL,
    owner       TEXT    NOT NULL DEFAULT '',  -- schema 5: the principal it is bound to
    PRIMARY KEY (executor_id, scope_kind, scope_id)  -- schema 5: one row per scope
);

-- One row. last_version outlives pruning, so versions are never reused; pruned_through is
-- the highest version ever pruned: history at or below it has holes. chain_anchor is the
-- chain of the event at pruned_through, where the kept run's chain starts. identity (schema
-- 6): random, this store's own; the journal beside it chains its records from it.
CREATE TABLE meta (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    last_version   INTEGER NOT NULL,
    pruned_through INTEGER NOT NULL,
    chain_anchor   BLOB    NOT NULL,
    identity       BLOB    NOT NULL
);
INSERT INTO meta (id, last_version, pruned_through, chain_anchor, identity)
VALUES (1, 0, 0, x'{GENESIS.hex()}', randomblob(16));
"""

# Upgrades of an older file, each run in one transaction: MIGRATIONS[n] takes schema n to
# n+1. The upgrade to 3 then chains the events as they are (an upgrade is trusted).
MIGRATIONS = {
    1: ("ALTER TABLE events ADD COLUMN approved_by TEXT NOT NULL DEFAULT ''",
        "ALTER TABLE events ADD COLUMN drill INTEGER NOT NULL DEFAULT 0"),
    2: ("ALTER TABLE events ADD COLUMN prev_chain BLOB NOT NULL DEFAULT x''",
        "ALTER TABLE events ADD COLUMN chain BLOB NOT NULL DEFAULT x''",
        f"ALTER TABLE meta ADD COLUMN chain_anchor BLOB NOT NULL DEFAULT x'{GENESIS.hex()}'"),
    3: ("ALTER TABLE events ADD COLUMN latches TEXT NOT NULL DEFAULT ''",),
    4: ("CREATE TABLE executors_5 (executor_id TEXT NOT NULL, scope_kind INTEGER NOT NULL,"
        " scope_id TEXT NOT NULL, ttl_s REAL NOT NULL, owner TEXT NOT NULL DEFAULT '',"
        " PRIMARY KEY (executor_id, scope_kind, scope_id))",
        "INSERT INTO executors_5 (executor_id, scope_kind, scope_id, ttl_s)"
        " SELECT executor_id, scope_kind, scope_id, ttl_s FROM executors",
        "DROP TABLE executors",
        "ALTER TABLE executors_5 RENAME TO executors"),
    # All zeros: the journal of an older store was chained from zeros (journal.GENESIS).
    5: (f"ALTER TABLE meta ADD COLUMN identity BLOB NOT NULL DEFAULT x'{GENESIS.hex()}'",),
}
CHAINED_SINCE = 3
SEALED_AS_NOW = 4  # since schema 4 a seal covers what it covers now

COLUMNS = ("version, time, scope_kind, scope_id, previous, state, cause, reason, actor,"
           " breaker, reason_code, directives, forced, rearm_at, approved_by, drill, latches")

# Each latched scope's current transition.
CURRENT = (f"SELECT {COLUMNS} FROM events WHERE version IN (SELECT version FROM scopes)"
           " ORDER BY version")

INSERT_EVENT = (f"INSERT INTO events ({COLUMNS}, prev_chain, chain)"
                f" VALUES ({', '.join('?' * 19)})")

# Pruning reads the latches by version: an index no other query needs, made by the first
# prune of a file (it is no schema change: any version of the sidecar keeps it up to date).
# Without it each prune read every latch, and SQLite checked each event it deleted against
# every latch for the foreign key (review 46b: 6 ms an append at 20,000 latched scopes).
LATCHES_BY_VERSION = "CREATE INDEX IF NOT EXISTS scopes_by_version ON scopes (version)"

# Every scope whose data feed has ticked, in the order first seen (known gap 21: a start
# whose journal lacked a feed's ticks never watched it, and a dead feed never went stale).
# Made by the first save of one: no schema change, as meta.generation (a version before it
# neither reads nor writes it). Not chained, as the executors' registrations are not.
FEEDS = ("CREATE TABLE IF NOT EXISTS feeds (scope_kind INTEGER NOT NULL,"
         " scope_id TEXT NOT NULL, PRIMARY KEY (scope_kind, scope_id))")

UNLATCHED = "NOT EXISTS (SELECT 1 FROM scopes WHERE scopes.version = events.version)"

# The newest event that may go: at or below ?2, above what was pruned before (?1: every
# event kept at or below it is latched), not latched; found from the top of that range.
LAST_PRUNABLE = f"""
SELECT version FROM events WHERE version > ?1 AND version <= ?2 AND {UNLATCHED}
 ORDER BY version DESC LIMIT 1
"""

# The chain of the newest event about to be pruned anchors the run kept above it.
ANCHOR = """
UPDATE meta SET pruned_through = ?1, chain_anchor = (SELECT chain FROM events WHERE version = ?1)
 WHERE pruned_through < ?1
"""

PRUNE = (f"DELETE FROM events WHERE version > ? AND version <= ? AND {UNLATCHED}"
         " RETURNING scope_kind, scope_id")
PRUNE_FREED = f"DELETE FROM events WHERE version = ? AND {UNLATCHED} RETURNING scope_kind, scope_id"

# The events of a scope older than one of its pruned, at or below ?3: none is latched (a
# scope's latch is its newest event), so none is kept once that one goes (review 47c: an
# old trip left below the prune point was then the scope's newest event, unlatched, and
# the next start called the file damaged).
PRUNE_OLDER_OF_SCOPE = (f"DELETE FROM events WHERE scope_kind = ? AND scope_id = ?"
                        f" AND version <= ? AND {UNLATCHED}")

# A reader behind a pruned hole gets only the gap-free tail, so the first version it sees
# is not the one it asked for and it knows to resync (a kept latched event would hide it).
EVENTS_AFTER = f"""
SELECT {COLUMNS} FROM events
 WHERE version > MAX(?, (SELECT pruned_through FROM meta))
 ORDER BY version LIMIT ?
"""

# The chain after the newest event of the kept run (or the anchor, when there is none).
HEAD = """
SELECT IFNULL((SELECT chain FROM events WHERE version > meta.pruned_through
                ORDER BY version DESC LIMIT 1), meta.chain_anchor)
  FROM meta
"""

# Every scope's newest event and its state (SQLite takes bare columns from the MAX row).
NEWEST_PER_SCOPE = ("SELECT scope_kind, scope_id, MAX(version), state FROM events"
                    " GROUP BY scope_kind, scope_id")


@dataclass(frozen=True)
class Pruning:
    """What the last prune of this process knew of the events above pruned_through, so
    that the next reads only what may go: up to `latched_to` every one was latched but
    the `freed` versions, whose latches appends have lifted or moved since (a latch names
    one version: once freed, never latched again). In memory, set when an append commits;
    a start scans once, and a scope's older events go with any of its pruned."""
    latched_to: int = 0
    freed: frozenset[int] = frozenset()
    indexed: bool = False  # LATCHES_BY_VERSION made (or found)


class SqliteStateStore(StateStore):
    """State in one SQLite file (WAL, synchronous=FULL), tamper-evident (module docstring).

    The constructor never raises StoreUnavailable: if the file cannot be opened (garbage,
    an empty file, a newer schema, another application's database, an uncreatable
    directory, a file in use by another sidecar, a file deleted after its first run) the
    problem is kept and raised, naming the path, by load() and by every later call; so is
    damage found by load().

    One store per file: an exclusive flock on the sibling `<path>.lock` is held from
    opening until close(), so a second sidecar on the same file finds it in use instead of
    writing versions of its own into it.
    """

    def __init__(self, path: str | os.PathLike[str], keep_events: int = 0,
                 resealing: bool = False) -> None:
        if keep_events < 0:
            raise ValueError(f"keep_events must be >= 0, not {keep_events}")
        self.path = Path(path)
        self.lock_path = Path(f"{self.path}.lock")
        self.wal_path = Path(f"{self.path}-wal")
        # A copy of the WAL a crash left, while this start has not loaded it: SQLite deletes
        # or restarts a WAL it cannot read when it closes or writes (review 37d: a WAL one
        # flipped bit from repairable was lost by the start that found the damage).
        self.found_wal = Path(f"{self.path}-wal.found")
        self.seal = _seal_of(self.path)
        self._file_lock = FileLock(self.lock_path)
        self._keep_events = keep_events
        self._pruning = Pruning()  # what the last committed prune knew
        self._resealing = resealing  # an operator accepts the file: a lost schema too
        self._conn: sqlite3.Connection | None = None
        self._reader: sqlite3.Connection | None = None  # reads' own: see _reading
        self._broken: StoreUnavailable | None = None
        self._owed_seal: dict[str, Any] | None = None  # an append's, not written (append)
        # The latched set's digest as the file holds it (`_latched_set`), kept by each
        # append from the latches it changed: None until load() computed it.
        self._latched: int | None = None
        try:
            self._conn = self._open()
        except StoreUnavailable as error:
            # The lock stays (if it was taken): this process goes on with the journal beside
            # the file, so no second sidecar, and no reseal, may touch either until close().
            self._broken = error

    @property
    def locked(self) -> bool:
        """Whether this process holds the state file's lock (so it may write its journal)."""
        return self._file_lock.held

    # -- StateStore -------------------------------------------------------------------------

    def load(self) -> StoredState:
        try:
            with self._transaction("BEGIN") as conn:
                found = self._verify(conn)
                current = conn.execute(CURRENT).fetchall()
                version, pruned, identity = conn.execute(
                    "SELECT last_version, pruned_through, identity FROM meta").fetchone()
                executors = conn.execute("SELECT executor_id, scope_kind, scope_id, ttl_s,"
                                         " owner FROM executors ORDER BY executor_id,"
                                         " scope_kind, scope_id").fetchall()
                feeds = conn.execute("SELECT scope_kind, scope_id FROM feeds ORDER BY rowid"
                                     ).fetchall() if _has_table(conn, "feeds") else []
                self._latched = _latched_set(conn)
                seal = _seal_value(conn, self._latched)
                generation = self._generation(conn)
        except StoreDamaged as error:
            self._broken = error  # nothing is written into a file that is not what was
            raise self._with_the_wal_found(error) from error
        # The seals of versions fdd0747 to 4609a24 held a lossy reseal's generation, kept
        # nowhere else: taken into meta, or the epoch from before the loss would come back
        # (review 58g: a stale forced reset lifted the reseal's GLOBAL trip).
        adopted = found.get("generation", "") if found is not None and not generation else ""
        self._prove_writable(seal, adopted)
        generation = generation or adopted
        with contextlib.suppress(OSError):
            self.found_wal.unlink(missing_ok=True)  # loaded: the WAL was as it should be
        with self._decoding():
            return StoredState(
                current=[_transition(row) for row in current], version=version,
                pruned_through=pruned, identity=identity, generation=generation,
                registrations=[_registration(*row) for row in executors],
                feeds=[_stored_scope(k, i) for k, i in feeds])

    def _prove_writable(self, seal: dict[str, Any], generation: str = "") -> None:
        """A durable write now, before anything is served: a store that cannot take one
        (read-only file or disk, full disk) would otherwise be found out only by the first
        trip, with orders allowed until then. Then the seal is written, even unchanged: a
        seal that cannot be written is found here too (review 31), and one behind the file
        catches up with it (a crash between COMMIT and the seal). `generation`: one to
        keep in meta (load)."""
        try:
            with self._transaction("BEGIN IMMEDIATE") as conn:
                conn.execute("UPDATE meta SET last_version = last_version")
                if generation:
                    _set_generation(conn, generation)
            self._write_seal(seal)
        except StoreUnavailable as error:
            raise StoreUnavailable(f"state store {self.path} is not writable: {error}") \
                from error

    def append(self, transitions: Sequence[Transition], prune: bool = True) -> None:
        """As StateStore.append; the seal is written after COMMIT. If that fails, the
        transitions are stored (as after a crash right after COMMIT: a start accepts
        them) and the append raises StoredUnsealed; the seal they are owed is written
        before the next append writes anything, which is refused while it cannot be:
        nothing is written behind a stale seal. Once it can, appends go on (review 49a:
        the store refused every call, every stop included, until a restart, though the
        seal had become writable)."""
        if not transitions:
            return
        if self._owed_seal is not None:
            self._write_seal(self._owed_seal)
            self._owed_seal = None
        with self._transaction("BEGIN IMMEDIATE") as conn:
            # The latched set's digest moved by the latches this append changes, not read
            # whole (review 45: at 20,000 latched scopes that took 27 ms of every write).
            scopes = {(t.scope.kind, t.scope.id) for t in transitions}
            latched = _latched_set(conn) if self._latched is None else self._latched
            lifted = _latch_rows(conn, scopes)  # every one is replaced or deleted
            latched -= _latches_sum(lifted)
            pruning = self._insert(conn, transitions, prune,
                                   frozenset(version for _, _, version, _ in lifted))
            latched = (latched + _latches_sum(_latch_rows(conn, scopes))) % LATCHED_MODULUS
            seal = _seal_value(conn, latched)
        self._latched, self._pruning = latched, pruning  # committed
        try:
            self._write_seal(seal)
        except StoreUnavailable as error:
            self._owed_seal = seal
            raise StoredUnsealed(f"{error}; the transitions were stored, and a restart"
                                 " keeps them") from error

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

    def save_registration(self, executor_id: str, scope: Scope, ttl_s: float,
                          owner: str = "") -> None:
        with self._transaction("BEGIN IMMEDIATE") as conn:
            conn.execute("INSERT OR REPLACE INTO executors (executor_id, scope_kind, scope_id,"
                         " ttl_s, owner) VALUES (?, ?, ?, ?, ?)",
                         (executor_id, int(scope.kind), scope.id, ttl_s, owner))

    def delete_registration(self, executor_id: str, scope: Scope) -> None:
        with self._transaction("BEGIN IMMEDIATE") as conn:
            conn.execute("DELETE FROM executors WHERE executor_id = ? AND scope_kind = ?"
                         " AND scope_id = ?", (executor_id, int(scope.kind), scope.id))

    def save_feeds(self, scopes: Sequence[Scope]) -> None:
        with self._transaction("BEGIN IMMEDIATE") as conn:
            conn.execute(FEEDS)
            conn.executemany("INSERT OR IGNORE INTO feeds (scope_kind, scope_id)"
                             " VALUES (?, ?)", [(int(s.kind), s.id) for s in scopes])

    def close(self) -> None:
        try:
            for conn in (self._reader, self._conn):
                if conn is not None:
                    try:
                        conn.close()
                    except FAILURES as error:
                        raise self._unavailable("cannot close", error) from error
        finally:
            self._unlock()  # only after the connection is closed: no write can follow

    # -- the operator's way out -------------------------------------------------------------

    @staticmethod
    def in_use(path: str | os.PathLike[str]) -> bool:
        """Whether a store at `path` was ever opened by this sidecar: its seal or the file
        exists (a seal may have been deleted with the journal)."""
        return _seal_of(path).exists() or Path(path).exists()

    @classmethod
    def reseal(cls, path: str | os.PathLike[str], if_lost: ForLostVersions | None = None,
               journal_genesis: bytes | None = None) -> ResealSummary:
        """Accept the state file as it is, after an operator has inspected the damage load()
        reported: re-chain its events, re-derive every latch from its scope's newest event,
        keep last_version at or above the sealed one, rewrite the seal. Takes the file's
        lock, so never under a running sidecar. Raises StoreUnavailable if the file cannot
        be opened (missing, in use, not this store's), SQLite finds it corrupt, or a row
        cannot be read: those need a backup, not a reseal.

        When versions the seal vouched for are gone (summary.lost), `if_lost` is given the
        scopes' current transitions, the version and the lost range, and the transitions
        it returns (bootstrap's GLOBAL trip) are stored in the same transaction: the loss
        is accepted with its trip or not at all, so a trip that cannot be written leaves
        the damage for the next start or reseal to find."""
        store = cls(path, resealing=True)
        try:
            with store._transaction("BEGIN IMMEDIATE") as conn:
                summary = store._accept(conn, journal_genesis)
                if summary.loses and if_lost is not None:
                    with store._decoding():
                        current = [_transition(row) for row in conn.execute(CURRENT)]
                    tripped = if_lost(current, summary)
                    if tripped:
                        store._insert(conn, tripped)
                        scopes = {str(t.scope) for t in tripped} - set(summary.latched)
                        summary = dataclasses.replace(summary, version=tripped[-1].version,
                                                      latched=(*summary.latched, *scopes))
                seal = _seal_value(conn, _latched_set(conn))
            store._write_seal(seal)
            # accepted as it is: the copy of a WAL found damaged is no repair of it now, and
            # would stand in for the next crash's (review 37k)
            store.found_wal.unlink(missing_ok=True)
        finally:
            store.close()
        log.warning("state store resealed by an operator: %s", summary)
        return summary

    def _accept(self, conn: sqlite3.Connection,
                journal_genesis: bytes | None = None) -> ResealSummary:
        problem = conn.execute(INTEGRITY_CHECK).fetchone()[0]
        if problem != "ok":
            raise StoreUnavailable(f"state store {self.path} is corrupt and cannot be"
                                   f" resealed: {problem}; restore it from a backup")
        # The identity the journal is chained from. Where the file's and the seal's differ
        # (one of them damaged), the one the journal's seal names (`journal_genesis`)
        # wins, else the sealed one; with none left, a new one: the journal chained from
        # the old one no longer verifies (the journal's reseal cuts it all).
        found, seal = _identity(conn), self._readable_seal()
        sealed_identity = seal[3] if seal is not None else None
        candidates = [i for i in (found, sealed_identity) if i is not None]
        identity = journal_genesis if journal_genesis in candidates else \
            sealed_identity or found or os.urandom(16)
        conn.execute("INSERT OR IGNORE INTO meta (id, last_version, pruned_through,"
                     " chain_anchor, identity) VALUES (1, 0, 0, ?, ?)", (GENESIS, identity))
        conn.execute("UPDATE meta SET identity = ?", (identity,))
        before = _latches(conn)
        with self._decoding():  # every row must be one this code can serve
            events = [_transition(row) for row in
                      conn.execute(f"SELECT {COLUMNS} FROM events ORDER BY version")]
            rewritten, rewritten_events = _rechain(conn)
        conn.execute("DELETE FROM scopes")
        conn.executemany("INSERT INTO scopes (scope_kind, scope_id, version) VALUES (?, ?, ?)",
                         [(kind, ident, version) for kind, ident, version, state
                          in conn.execute(NEWEST_PER_SCOPE).fetchall()
                          if state != State.ARMED])
        after = _latches(conn)
        last = max(conn.execute("SELECT last_version FROM meta").fetchone()[0],
                   events[-1].version if events else 0)  # a lagging meta row lost nothing
        unsealed = seal is None
        sealed = seal[0] if seal is not None else 0  # a reseal never lowers its version
        conn.execute("UPDATE meta SET last_version = MAX(last_version, ?, ?)",
                     (events[-1].version if events else 0, sealed))
        summary = ResealSummary(
            path=self.path, version=conn.execute("SELECT last_version FROM meta").fetchone()[0],
            events=len(events),
            latched=tuple(_scope_name(*key) for key in sorted(after, key=after.__getitem__)),
            relatched=tuple(_scope_name(*key) for key in sorted(before.keys() | after.keys())
                            if before.get(key) != after.get(key)),
            lost=(last + 1, sealed) if sealed > last else None, unsealed=unsealed,
            identity=_identity(conn),
            unlatched=tuple(_scope_name(*key) for key in sorted(before)
                            if after.get(key) != before[key]),
            rewritten=rewritten, rewritten_events=rewritten_events)
        # A reseal that loses cannot know how far versions were told before the loss (the
        # seal that said so may be gone too), and the file keeps its identity: its versions
        # are told in a new epoch (review 57a: the reseal's trip took a number a lost trip
        # had been shown with, and a reset naming what the operator saw lifted it).
        try:
            kept: str | None = self._generation(conn)
        except StoreDamaged:  # garbled: drawn anew, as after a loss
            kept = None
        if not summary.loses and kept is not None:
            if not kept and (kept := self._sealed_generation()):  # as load() keeps it
                _set_generation(conn, kept)
            return dataclasses.replace(summary, generation=kept)
        generation = os.urandom(8).hex()
        _set_generation(conn, generation)
        return dataclasses.replace(summary, generation=generation, drawn=True)

    def _sealed_generation(self) -> str:
        """The generation a seal of versions fdd0747 to 4609a24 names (load() keeps it);
        "" for none, or a seal that cannot be read."""
        try:
            seal = self.seal.read()
        except SealUnreadable:
            return ""
        found = seal.get("generation") if seal is not None else None
        return found if isinstance(found, str) and GENERATION.fullmatch(found) else ""

    def _readable_seal(self) -> tuple[int, bytes, str, bytes | None] | None:
        """The seal as _parse_seal reads it; None if it is missing or unreadable, or names
        a version past MOST_VERSION: what a reseal numbers past it must fit (review 55g)."""
        try:
            seal = self.seal.read()
            parsed = _parse_seal(seal) if seal is not None else None
        except (SealUnreadable, LookupError, TypeError, ValueError):
            return None
        return parsed if parsed is None or parsed[0] <= MOST_VERSION else None

    # -- verifying --------------------------------------------------------------------------

    def _verify(self, conn: sqlite3.Connection) -> dict[str, Any] | None:
        """Raise StoreDamaged naming the first sign that the file is not what was written.
        Returns the seal as found."""
        problem = conn.execute(INTEGRITY_CHECK).fetchone()[0]
        if problem != "ok":
            raise self._damaged(f"is damaged: SQLite finds it corrupt: {problem}")
        seal = self._read_seal()
        sealed = self._parsed(seal)
        meta = conn.execute("SELECT last_version, pruned_through, chain_anchor, identity"
                            " FROM meta").fetchone()
        if meta is None or not (type(meta[0]) is type(meta[1]) is int
                                and isinstance(meta[2], bytes)
                                and isinstance(meta[3], bytes) and len(meta[3]) == 16):
            raise self._damaged(f"is damaged: its meta row is missing or garbled: {meta!r}")
        last, pruned, anchor, identity = meta
        newest, at_seal = self._verify_chain(conn, pruned, anchor, sealed[0] if sealed else 0)
        if newest > last:
            raise self._damaged(f"is damaged: its last version is {last} but it holds"
                                f" event {newest}")
        self._verify_latches(conn)
        if sealed is None:  # a new store is sealed before its file exists
            raise self._damaged(f"is damaged: its seal {self.seal.path} is missing"
                                " (deleted?)")
        version, chain, latched, sealed_identity = sealed
        if last > max(newest, version):  # only a lossy reseal leaves it past the newest
            raise self._damaged(f"is damaged: its last version is {last}, past its newest"
                                f" event ({newest}) and its seal's version ({version})")
        if last < version:
            raise self._damaged(f"has lost acknowledged transitions: the seal says version"
                                f" {version}, the file ends at {last}"
                                " (a deleted or truncated WAL?)")
        if at_seal is not None and at_seal != chain:
            raise self._damaged(f"is damaged: its events up to version {version} are not the"
                                f" ones sealed in {self.seal.path} (altered, or another"
                                " store's file?)")
        if last == version and _latched_digest_as(conn, latched) != latched:
            raise self._damaged(f"is damaged: its latched scopes are not the ones sealed in"
                                f" {self.seal.path} (a latch altered or removed?)")
        # Last: a file that lost its WAL with the schema in it was made anew, with another
        # identity, and the loss is the better diagnosis.
        if sealed_identity is not None and sealed_identity != identity:
            raise self._damaged(f"is damaged: its identity ({identity.hex()}) is not the one"
                                f" sealed in {self.seal.path} ({sealed_identity.hex()}):"
                                " altered, or another store's file?")
        return seal

    def _verify_chain(self, conn: sqlite3.Connection, pruned: int, anchor: bytes,
                      sealed: int) -> tuple[int, bytes | None]:
        """Check every event against the chain. Returns the newest version and the chain
        as it was at version `sealed` (None if that point was pruned away)."""
        expected = anchor
        follows = f"the events pruned through {pruned}" if pruned else "the start"
        at_seal = anchor if sealed >= pruned else None
        newest = 0
        for *row, prev_chain, chain in conn.execute(
                f"SELECT {COLUMNS}, prev_chain, chain FROM events ORDER BY version"):
            version = newest = row[0]
            try:
                intact = _link(prev_chain, row) == chain
            except (TypeError, ValueError):  # a column of the wrong type
                intact = False
            if not intact:
                raise self._damaged(f"is damaged: event {version} does not match its hash"
                                    " chain (altered or corrupt)")
            if version <= pruned:
                continue  # a latched event kept below the hole: its predecessors are gone
            if prev_chain != expected:
                raise self._damaged(f"is damaged: event {version} does not follow {follows}"
                                    " in its hash chain (an event deleted or inserted?)")
            expected, follows = chain, f"event {version}"
            if version <= sealed:
                at_seal = chain
        return newest, at_seal

    def _verify_latches(self, conn: sqlite3.Connection) -> None:
        """Every scope whose newest event is not ARMED is latched, to that event; no other."""
        newest = {(kind, ident): (version, state) for kind, ident, version, state
                  in conn.execute(NEWEST_PER_SCOPE)}
        latched = _latches(conn)
        for key in sorted(newest.keys() | latched.keys(), key=repr):
            version, state = newest.get(key, (None, State.ARMED))
            if latched.get(key) != (None if state == State.ARMED else version):
                raise self._damaged(f"is damaged: scope {_scope_name(*key)} latch does not"
                                    " match its events")

    def _read_seal(self) -> dict[str, Any] | None:
        try:
            return self.seal.read()
        except SealUnreadable as error:
            raise self._damaged(f"is damaged: its seal is unreadable: {error}") from error

    def _parsed(self, seal: dict[str, Any] | None
                ) -> tuple[int, bytes, str, bytes | None] | None:
        try:
            return None if seal is None else _parse_seal(seal)
        except (LookupError, TypeError, ValueError) as error:
            raise self._damaged(f"is damaged: its seal {self.seal.path} is garbled:"
                                f" {error!r}") from error

    def _generation(self, conn: sqlite3.Connection) -> str:
        """meta.generation: "" where no reseal lost anything (the column is made, and
        filled, by the first that did); anything but 16 hex digits in it is damage (review
        57b: a generation edited to nonsense was taken as none, and the epoch from before
        the loss came back; 57c: so did one emptied)."""
        if GENERATION_COLUMN not in _columns(conn, "meta"):
            return ""
        found = conn.execute(f"SELECT {GENERATION_COLUMN} FROM meta").fetchone()
        if found is None or not (isinstance(found[0], str)
                                 and GENERATION.fullmatch(found[0])):
            raise self._damaged(f"is damaged: its meta row's generation is garbled:"
                                f" {found!r}"[:200])
        return found[0]

    def _write_seal(self, seal: dict[str, Any]) -> None:
        try:
            self.seal.write(seal)
        except OSError as error:
            raise self._unavailable(f"cannot write its seal {self.seal.path}", error) \
                from error

    def _damaged(self, what: str) -> StoreDamaged:
        return StoreDamaged(f"state store {self.path} {what}{ACCEPT}")

    # -- opening ----------------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise self._unavailable("cannot create its directory", error) from error
        self._lock()
        try:
            if self.path.stat().st_size == 0:
                # A fresh store is never left empty by a start that succeeded (the first
                # PRAGMA below writes the header), so an empty file is a truncated one, or
                # a first start's that failed: adopting it as new could forget every
                # latched trip.
                raise StoreUnavailable(f"state store {self.path} is empty (0 bytes)" + (
                    f" and its seal {self.seal.path} is a new store's: a first start that"
                    " could not write it (a full disk?): if no sidecar served with it,"
                    " delete both to start with no latched state; else restore it from a"
                    " backup" if self._sealed_fresh() else
                    ": it may have been truncated; restore it, or delete it and"
                    f" {self.seal.path} to start with no latched state"))
        except FileNotFoundError:
            self._refuse_a_lost_file()  # or a first run: a new store is created,
            # sealed first, so that a state file without its seal is never a legitimate
            # state (a crash before the file exists leaves a seal and no file: refused)
            self._write_seal(FRESH_SEAL)
            log.warning("a new state store, with no latched state, is created at %s: if"  # 42f
                        " this sidecar has served before, its state file is elsewhere (a"
                        " relative store.path is taken from the working directory)",
                        self.path.resolve())
        except OSError as error:
            raise self._unavailable("cannot open", error) from error
        try:
            # isolation_level=None: no implicit transactions; each write says BEGIN itself.
            # Opened here, used while serving by the guard's store thread alone (one thread
            # at a time: Guard.run_async): hence check_same_thread=False.
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None,
                                   check_same_thread=False)
        except FAILURES as error:
            raise self._unavailable("cannot open", error) from error
        try:
            # The state file itself is locked too, before anything reads or upgrades it: a
            # deleted `.lock` (a "stale lock" cleanup) must not let a second sidecar serve
            # this file beside this one. (flock, not fcntl: SQLite's own locks are POSIX
            # ones, another kind, and our descriptor is closed only after its connection,
            # so closing it drops none of them.)
            self._file_lock.add(self.path)
        except LockHeld:
            conn.close()
            self._unlock()  # the other process holds the files: this one holds nothing
            raise StoreUnavailable(f"state file {self.path} is in use by another ess-sidecar"
                                   f" process (it holds the file's lock; {self.lock_path}"
                                   " was deleted?)") from None
        except OSError as error:  # a file system with no flock (keep the state local)
            conn.close()
            self._unlock()
            raise self._unavailable("cannot be locked", error) from error
        try:
            self._keep_the_wal_found()  # locked, and before SQLite reads the WAL
            self._prepare(conn)
        except StoreDamaged as error:
            conn.close()
            raise self._with_the_wal_found(error) from error
        except BaseException:
            conn.close()
            raise
        log.info("state store opened: %s", self.path.resolve())
        return conn

    def _keep_the_wal_found(self) -> None:
        """Copy a WAL a crash left (`found_wal`), whole or not at all, unless a copy is
        there already: the first start after the crash saw it as it was. One that cannot
        be kept is StoreUnavailable: SQLite would delete the only copy (review 37g: a full
        disk left half a copy, named as the one to repair from)."""
        try:
            if self.found_wal.exists() or not self.wal_path.stat().st_size:
                return
        except FileNotFoundError:
            return
        except OSError as error:
            raise self._unavailable("cannot look at its WAL", error) from error
        copying = Path(f"{self.found_wal}.part")
        try:
            shutil.copyfile(self.wal_path, copying)
            with open(copying, "rb+") as copy:
                os.fsync(copy.fileno())
            copying.replace(self.found_wal)
        except OSError as error:
            with contextlib.suppress(OSError):
                copying.unlink(missing_ok=True)
            raise self._unavailable("cannot keep a copy of its WAL before opening it (SQLite"
                                    " may delete a WAL it cannot read)", error) from error

    def _with_the_wal_found(self, error: StoreDamaged) -> StoreDamaged:
        said = f"(the WAL as the first start after a crash found it is kept at" \
            f" {self.found_wal}, for a repair)"
        if not self.found_wal.exists() or said in str(error):
            return error
        return StoreDamaged(f"{error} {said}")

    def _refuse_a_lost_file(self) -> None:
        """No state file is a first run, unless its seal or its WAL is there: then it was
        in use and has been deleted, and starting afresh would forget its latched trips."""
        if not self.wal_path.exists() and self._sealed_fresh():
            raise StoreDamaged(
                f"state store {self.path} is missing and its seal {self.seal.path} is that of"
                " a new, empty store: a crash while it was being created? If no sidecar ever"
                f" served with it, delete {self.seal.path} to start with no latched state;"
                " otherwise restore the file from a backup (a reseal cannot: there is no file)")
        for what, evidence in (("seal", self.seal.path), ("WAL", self.wal_path)):
            if evidence.exists():
                raise StoreDamaged(
                    f"state store {self.path} is missing but its {what} {evidence} shows it"
                    " was in use (deleted after the first run?); restore it from a backup, or"
                    f" delete {self.seal.path} and {self.wal_path}, and move the journal"
                    f" ({self.path}.journal) and its seal aside, to start with no latched"
                    " state, no working orders and no book")

    def _refuse_a_schema_lost(self) -> None:
        """A file with no schema is new, if its seal is a new store's (written before the
        file); else its schema and latched state were in a WAL that is gone or that SQLite
        ignores (a damaged header or first frame): nothing is written, so that the WAL, if
        it is still there, can be repaired (review 37d: the schema created over it
        restarted the WAL, and a one-byte repair became a loss)."""
        if not self.seal.exists():  # written before the file: it was deleted
            raise StoreDamaged(
                f"state store {self.path} holds no schema and its seal {self.seal.path} is"
                " missing: its schema and latched state may have been in a deleted WAL;"
                " restore it from a backup, or delete it to start with no latched state")
        if not self._sealed_fresh() and not self._resealing:
            sealed = self._readable_seal()
            raise StoreDamaged(
                f"state store {self.path} has lost acknowledged transitions: the seal says"
                f" version {sealed[0] if sealed else '(unreadable)'}, the file holds no"
                f" schema: its WAL ({self.wal_path}) is gone, or SQLite cannot read it (a"
                " damaged header or first frame); nothing was written: restore the files"
                " from a backup, or accept the loss with `ess-sidecar reseal`")

    def _sealed_fresh(self) -> bool:
        try:
            seal = self.seal.read()
        except SealUnreadable:
            return False
        found = None if seal is None else {
            **{key: value for key, value in seal.items() if key != "identity"},
            "schema": SCHEMA_VERSION}
        return found in (FRESH_SEAL, FRESH_SEAL_LISTED)

    def _lock(self) -> None:
        """Take the exclusive lock on `<path>.lock`, or raise StoreUnavailable. A lock held
        is tried again for LOCK_WAIT_S: the syncer of a sidecar killed a moment ago holds
        it for the milliseconds it takes to seal what that sidecar wrote (syncer.py)."""
        try:
            self._file_lock.acquire(LOCK_WAIT_S)
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
            if found < 0:  # review 37d: one flipped bit of the header was a KeyError
                raise StoreUnavailable(f"state store {self.path} has schema version {found},"
                                       " which no sidecar writes: its header is damaged")
            if found == 0 and conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                raise StoreUnavailable(f"state store {self.path} is an SQLite database of"
                                       " something else (tables but no schema version)")
            if found == 0:
                self._refuse_a_schema_lost()
            # WAL may be refused (e.g. some network filesystems); FULL sync keeps it durable.
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            if found == 0:
                self._run_script(conn, SCHEMA, SCHEMA_VERSION)
                found = SCHEMA_VERSION
            if found < SCHEMA_VERSION:
                self._upgrade(conn, found)
                log.info("state store %s upgraded from schema %d to %d", self.path, found,
                         SCHEMA_VERSION)
        except FAILURES as error:
            raise self._unavailable("cannot open", error) from error

    @staticmethod
    def _run_script(conn: sqlite3.Connection, script: str, version: int) -> None:
        """Create the schema: all of it and the new user_version, or none."""
        try:
            conn.executescript(f"BEGIN IMMEDIATE; {script}"
                               f" PRAGMA user_version = {version}; COMMIT;")
        except BaseException:
            conn.rollback()
            raise

    def _upgrade(self, conn: sqlite3.Connection, found: int) -> None:
        """Take schema `found` to SCHEMA_VERSION in one transaction. An upgrade from before
        the chain chains the events as they are, and one from before SEALED_AS_NOW seals
        the file before its COMMIT: a crash in between repeats it, computing the same
        chain and seal. A later one keeps the seal it finds, for load() to check."""
        conn.execute("BEGIN IMMEDIATE")
        try:
            for version in range(found, SCHEMA_VERSION):
                for statement in MIGRATIONS[version]:
                    conn.execute(statement)
            if found < CHAINED_SINCE:
                _rechain(conn)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            if found < SEALED_AS_NOW:
                self._write_seal(_seal_value(conn, _latched_set(conn)))
            # From SEALED_AS_NOW on, what a seal vouches for is unchanged by the upgrade:
            # the old seal stays, and load() checks the file against it (a file that lost
            # versions, or lost its seal, must not come out of an upgrade resealed).
            conn.execute("COMMIT")
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
        except FAILURES as error:
            raise self._unavailable("cannot read or write", error) from error

    def _select(self, sql: str, params: Iterable[Any]) -> list[Transition]:
        try:
            rows = self._reading().execute(sql, tuple(params)).fetchall()
        except FAILURES as error:
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

    def _reading(self) -> sqlite3.Connection:
        """The connection reads use (the audit trail, a watcher's resume): their own, so
        that the guard runs them in a thread beside its writes' rather than ahead of them
        (review 45b: audit queries queued before a Trigger kept it unacknowledged for 30 s
        and more). In WAL mode a read sees what was committed when it began, and neither
        waits for the other. Opened at the first read, read-only."""
        self._connection()  # a broken store is read no more either
        if self._reader is None:
            try:
                reader = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S,
                                         isolation_level=None, check_same_thread=False)
                reader.execute("PRAGMA query_only = ON")
            except FAILURES as error:
                raise self._unavailable("cannot open for reading", error) from error
            self._reader = reader
        return self._reader

    def _connection(self) -> sqlite3.Connection:
        if self._broken is not None:
            raise type(self._broken)(str(self._broken)) from self._broken.__cause__
        assert self._conn is not None
        return self._conn

    def _insert(self, conn: sqlite3.Connection, transitions: Sequence[Transition],
                prune: bool = True, freed: frozenset[int] = frozenset()) -> Pruning:
        """Chain, store and latch transitions, inside the caller's transaction; `freed`,
        the versions of the latches they lift or move. Returns what pruning knows once
        the transaction commits."""
        last = conn.execute("SELECT last_version FROM meta").fetchone()[0]
        _check_versions(transitions, last)
        previous = conn.execute(HEAD).fetchone()[0]
        rows = []
        for t in transitions:
            row = _row(t)
            chain = _link(previous, row)
            rows.append((*row, previous, chain))
            previous = chain
        conn.executemany(INSERT_EVENT, rows)
        for t in transitions:
            self._latch(conn, t)
        conn.execute("UPDATE meta SET last_version = ?", (transitions[-1].version,))
        if not self._keep_events:
            return self._pruning
        freed |= self._pruning.freed
        if not prune:  # what it freed goes with the next prune
            return dataclasses.replace(self._pruning, freed=freed)
        return self._prune(conn, transitions, freed)

    def _latch(self, conn: sqlite3.Connection, t: Transition) -> None:
        key = (int(t.scope.kind), t.scope.id)
        if t.state is State.ARMED:
            conn.execute("DELETE FROM scopes WHERE scope_kind = ? AND scope_id = ?", key)
        else:
            conn.execute("INSERT OR REPLACE INTO scopes (scope_kind, scope_id, version)"
                         " VALUES (?, ?, ?)", (*key, t.version))

    def _prune(self, conn: sqlite3.Connection, transitions: Sequence[Transition],
               freed: frozenset[int]) -> Pruning:
        """Drop the events of versions older than the newest keep_events but the latched
        ones, reading only what may go: the events a prune has not passed yet, and the
        `freed` ones, once latched, whose latches appends have lifted or moved since. Never
        the events of the append just made, however many: a crash before the journal
        records their command leaves a start that must find them all (review 20: pruned,
        it fell back to the latched state, and every start failed closed)."""
        if not self._pruning.indexed:
            conn.execute(LATCHES_BY_VERSION)
        before = conn.execute("SELECT pruned_through FROM meta").fetchone()[0]
        through = min(transitions[-1].version - self._keep_events, transitions[0].version - 1)
        # Up to `passed` every event above `before` is latched but the freed ones: a
        # burst of trips is not read again by every append until the versions kept pass
        # it (review 47c: lifting its latches oldest first read it all each time)
        passed = max(before, self._pruning.latched_to)
        found = conn.execute(LAST_PRUNABLE, (passed, through)).fetchone()
        last = max([v for v in freed if before < v <= through] + [found[0] if found else 0],
                   default=0)
        scopes: set[tuple[int, str]] = set()
        if last > before:
            conn.execute(ANCHOR, (last,))
            scopes.update(conn.execute(PRUNE, (passed, last)).fetchall())
        below = max(before, last)
        for version in sorted(v for v in freed if v <= below):
            scopes.update(conn.execute(PRUNE_FREED, (version,)).fetchall())
        for kind, ident in scopes:
            conn.execute(PRUNE_OLDER_OF_SCOPE, (kind, ident, below))
        latched_to = max(passed, through)
        return Pruning(latched_to, frozenset(v for v in freed if below < v <= latched_to),
                       indexed=True)

    def _unavailable(self, what: str, error: BaseException) -> StoreUnavailable:
        """With the space its file system has left: SQLite says "disk I/O error" for a
        full disk and for a file-size limit alike (review 42a). StoreBusy when another
        process held the file's lock past BUSY_TIMEOUT_S: nothing was written."""
        if getattr(error, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_BUSY:
            return StoreBusy(f"state store {self.path} {what}: {error} (another process"
                             f" held its lock for {BUSY_TIMEOUT_S:g} s)")
        try:
            room = os.statvfs(self.path.parent)
        except OSError:
            return StoreUnavailable(f"state store {self.path} {what}: {error}")
        return StoreUnavailable(f"state store {self.path} {what}: {error} (its file system"
                                f" has {room.f_bavail * room.f_frsize} bytes free)")


CANONICAL = json.JSONEncoder(separators=(",", ":"))  # one encoder: load() runs it per event


def _link(previous: bytes, row: Sequence[Any]) -> bytes:
    """The chain after `row` (an event's columns, prev_chain and chain excepted). An
    event with no latches recorded (every one before schema 4) is hashed without that
    column, so chains written before it still verify."""
    encoded = CANONICAL.encode(list(row[:-1] if row[-1] == "" else row)).encode()
    return hashlib.blake2b(previous + encoded, digest_size=16).digest()


def _rechain(conn: sqlite3.Connection) -> tuple[int, tuple[str, ...]]:
    """Chain the events as they are, oldest first, and anchor the run above pruned_through
    to the chain just below it: an upgrade, or an operator's reseal, vouches for them.
    How many events did not match the link they had (edited, damaged, or never chained),
    and the first REWRITTEN_NAMED of them, "version (scope)"."""
    pruned = conn.execute("SELECT pruned_through FROM meta").fetchone()[0]
    previous, anchor, links, unmatched = GENESIS, None, [], 0
    named: list[str] = []
    for row in conn.execute(f"SELECT {COLUMNS}, prev_chain, chain FROM events"
                            " ORDER BY version").fetchall():
        if anchor is None and row[0] > pruned:
            anchor = previous
        *fields, had_previous, had = row
        if not had_previous or _link(had_previous, tuple(fields)) != had:
            unmatched += 1
            if len(named) < REWRITTEN_NAMED:
                named.append(f"{row[0]} ({_scope_name(row[2], row[3])})")
        chain = _link(previous, tuple(fields))
        links.append((previous, chain, row[0]))
        previous = chain
    conn.executemany("UPDATE events SET prev_chain = ?, chain = ? WHERE version = ?", links)
    conn.execute("UPDATE meta SET chain_anchor = ?", (previous if anchor is None else anchor,))
    return unmatched, tuple(named)


REWRITTEN_NAMED = 10


def _latches(conn: sqlite3.Connection) -> dict[tuple[int, str], int]:
    return {(kind, ident): version for kind, ident, version
            in conn.execute("SELECT scope_kind, scope_id, version FROM scopes")}


LATCHES = ("SELECT s.scope_kind, s.scope_id, s.version, e.chain FROM scopes s"
           " LEFT JOIN events e ON e.version = s.version")
LATCHED_MODULUS = 1 << 128


def _latched_set(conn: sqlite3.Connection) -> int:
    """The seal's record of what is latched (its `latched`, written "set:<hex>"): the
    sum, modulo 2**128, of each latch's digest with its event's chain. A sum, so that an
    append moves it by the latches it changes (`_latch_rows`), and no order is needed."""
    return _latches_sum(conn.execute(LATCHES)) % LATCHED_MODULUS


def _latch_rows(conn: sqlite3.Connection,
                scopes: Iterable[tuple[int, str]]) -> list[tuple[int, str, int, bytes | None]]:
    return [row for kind, ident in scopes for row in conn.execute(
        LATCHES + " WHERE s.scope_kind = ? AND s.scope_id = ?", (kind, ident))]


def _latches_sum(rows: Iterable[tuple[int, str, int, bytes | None]]) -> int:
    return sum(int.from_bytes(_digest([kind, ident, version, chain.hex() if chain else None]),
                              "big") for kind, ident, version, chain in rows)


def _latched_list(conn: sqlite3.Connection) -> str:
    """The latched set as seals before the sum recorded it (their `latched`): a digest of
    every latch in order. Read once, to check such a seal; the next one is a sum."""
    rows = conn.execute(LATCHES + " ORDER BY s.scope_kind, s.scope_id").fetchall()
    return _digest([[kind, ident, version, chain.hex() if chain else None]
                    for kind, ident, version, chain in rows]).hex()


def _latched_digest_as(conn: sqlite3.Connection, sealed: str) -> str:
    """The file's latched set in the form `sealed` is in (`set:` a sum, else a list)."""
    if sealed.startswith(LATCHED_SET):
        return f"{LATCHED_SET}{_latched_set(conn):032x}"
    return _latched_list(conn)


def _digest(value: Any) -> bytes:
    encoded = json.dumps(value, separators=(",", ":"))
    return hashlib.blake2b(encoded.encode(), digest_size=16).digest()


LATCHED_SET = "set:"
GENERATION_COLUMN = "generation"  # meta's: a lossy reseal's, 8 random bytes in hex
GENERATION = re.compile(r"[0-9a-f]{16}")


def _columns(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}


def _stored_scope(kind: Any, ident: Any) -> Scope:
    """A row's scope; ValueError for one this code cannot read (review 58d: a BLOB id
    crashed the start, where an unknown kind failed it closed)."""
    if type(ident) is not str:
        raise ValueError(f"scope id {ident!r} is not text"[:200])
    return Scope(ScopeKind(kind), ident)


def _registration(executor_id: Any, kind: Any, ident: Any, ttl_s: Any,
                  owner: Any) -> StoredRegistration:
    """An `executors` row; ValueError for one this code cannot read."""
    if type(executor_id) is not str or type(owner) is not str \
            or type(ttl_s) not in (int, float):
        raise ValueError(f"registration {(executor_id, ttl_s, owner)!r} is not of its"
                         " columns' types"[:200])
    return StoredRegistration(executor_id, _stored_scope(kind, ident), float(ttl_s), owner)


def _set_generation(conn: sqlite3.Connection, generation: str) -> None:
    if GENERATION_COLUMN not in _columns(conn, "meta"):  # no schema change: module docstring
        conn.execute(f"ALTER TABLE meta ADD COLUMN {GENERATION_COLUMN} TEXT NOT NULL"
                     " DEFAULT ''")
    conn.execute(f"UPDATE meta SET {GENERATION_COLUMN} = ?", (generation,))


def _has_table(conn: sqlite3.Connection, table: str) -> bool:
    return conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                        (table,)).fetchone() is not None


# The seal of a new, empty store (what _seal_value finds in one): written before the file.
FRESH_SEAL = {"schema": SCHEMA_VERSION, "version": 0, "chain": GENESIS.hex(),
              "latched": f"{LATCHED_SET}{0:032x}"}
# The same, as written before the latched set was a sum (a seal written, then the file
# never made, by an earlier version).
FRESH_SEAL_LISTED = {**FRESH_SEAL, "latched": _digest([]).hex()}


def _seal_value(conn: sqlite3.Connection, latched: int) -> dict[str, Any]:
    """What the seal says of the file as it is now, its latched set's sum given."""
    return {"schema": SCHEMA_VERSION,
            "version": conn.execute("SELECT last_version FROM meta").fetchone()[0],
            "chain": conn.execute(HEAD).fetchone()[0].hex(),
            "latched": f"{LATCHED_SET}{latched:032x}",
            "identity": conn.execute("SELECT identity FROM meta").fetchone()[0].hex()}


def _identity(conn: sqlite3.Connection) -> bytes | None:
    """meta.identity, if the row is there and the value is one."""
    row = conn.execute("SELECT identity FROM meta").fetchone()
    identity = row[0] if row is not None else None
    return identity if isinstance(identity, bytes) and len(identity) == 16 else None


# Every key a seal was ever written with: "generation" by the versions from fdd0747 to
# 4609a24, after a reseal that lost (review 58f: left out, their seals were refused).
SEAL_KEYS = frozenset({"schema", "version", "chain", "latched", "identity", "generation"})


def _parse_seal(seal: dict[str, Any]) -> tuple[int, bytes, str, bytes | None]:
    """(version, chain, latched digest, identity: None in a seal made before a store had
    one, schema 6, or before the file, FRESH_SEAL). Raises LookupError, TypeError or
    ValueError. A key no version wrote is damage (review 58a: one bit flipped made
    "identity" another key, the identity was taken as absent and its check skipped)."""
    if unknown := seal.keys() - SEAL_KEYS:
        raise ValueError(f"keys no seal has: {sorted(unknown)!r}"[:200])
    if "generation" in seal and not (isinstance(seal["generation"], str)
                                     and GENERATION.fullmatch(seal["generation"])):
        raise ValueError(f"generation is {seal['generation']!r}"[:200])
    version, chain, latched = seal["version"], bytes.fromhex(seal["chain"]), seal["latched"]
    identity = bytes.fromhex(seal["identity"]) if "identity" in seal else None
    if type(version) is not int or not 0 <= version <= MOST_INTEGER or len(chain) != 16 \
            or not isinstance(latched, str) or identity is not None and len(identity) != 16:
        raise ValueError(f"not a seal of this store: {seal!r}"[:200])
    return version, chain, latched, identity


def _scope_name(kind: int, ident: str) -> str:
    try:
        return str(Scope(ScopeKind(kind), ident))
    except ValueError:
        return f"{kind}:{ident}"


def _seal_of(path: str | os.PathLike[str]) -> Seal:
    """The seal beside a state file: `<path>.seal`."""
    return Seal(f"{path}.seal")


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
    return (t.version, _real(t.time), int(t.scope.kind), t.scope.id, int(t.previous),
            int(t.state), int(t.cause), t.reason, t.actor, t.breaker,
            None if t.reason_code is None else int(t.reason_code),
            ",".join(str(int(d)) for d in t.directives), int(t.forced),
            None if t.rearm_at is None else _real(t.rearm_at), t.approved_by, int(t.drill),
            CANONICAL.encode([_latch_values(latch) for latch in t.latches]) if t.latches else "")


def _latch_values(latch: Latch) -> list[Any]:
    """A latch as its row stores it: [name, state, since, version], and whether it re-arms
    by itself (0 or 1) where that was recorded (since stop 56): older rows are hashed as
    they were written."""
    values = [latch.name, int(latch.state), _real(latch.since), latch.version]
    return values if latch.auto_rearm is None else [*values, int(latch.auto_rearm)]


def _latch_from(values: list[Any]) -> Latch:
    if len(values) not in (4, 5) or (len(values) == 5 and values[4] not in (0, 1)):
        raise ValueError(f"a latch stored as {values!r}")
    name, state, since, set_by, *rearms = values
    return Latch(name, State(state), since, set_by, bool(rearms[0]) if rearms else None)


def _real(value: float) -> float:
    """A REAL as SQLite reads it back (an int as a float, -0.0 as 0.0): the chain computed
    on append must be the one recomputed on load."""
    return float(value) + 0.0


def _transition(row: Sequence[Any]) -> Transition:
    (version, time, kind, ident, previous, state, cause, reason, actor, breaker, code,
     directives, forced, rearm_at, approved_by, drill, latches) = row
    return Transition(
        version=version, time=time, scope=Scope(ScopeKind(kind), ident),
        previous=State(previous), state=State(state), cause=Cause(cause), reason=reason,
        actor=actor, breaker=breaker,
        reason_code=None if code is None else TriggerReason(code),
        directives=tuple(Directive(int(d)) for d in directives.split(",") if d),
        forced=bool(forced), rearm_at=rearm_at, approved_by=approved_by, drill=bool(drill),
        latches=tuple(_latch_from(values) for values in (json.loads(latches) if latches
                                                          else ())))
