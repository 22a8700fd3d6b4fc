"""The composition root: the only place that chooses implementations."""

from __future__ import annotations

import dataclasses
import enum
import functools
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from .adapters.auth.tokens import Principals, load_principals
from .adapters.storage.floor import FileVersionFloor
from .adapters.storage.journal import FileJournal, journal_path
from .adapters.storage.sqlite import ForLostVersions, ResealSummary, SqliteStateStore
from .adapters.storage.unavailable import UnavailableStateStore
from .domain.commands import ClockRead
from .domain.engine import GuardEngine
from .domain.errors import StoreUnavailable
from .domain.scopes import GLOBAL
from .domain.states import Cause, Transition, TriggerMode
from .ports import AlertSink, Clock, Journal, JournalEntry, NoAlerts, NoFloor, NoJournal, \
    StateStore, SteadyClock, StoredState, SystemClock, VersionFloor
from .recovery import last_clock_read, latest_time, reconcile, replay, respelled, \
    with_horizons, with_horizons_recorded
from .service import Guard, store_epoch
from .settings import Settings
from .timers import Timers
from .watch import FANOUT_PLACES, Subscribers

if TYPE_CHECKING:
    import grpc

    from .adapters.grpc.server import ServerParts
    from .adapters.telemetry.setup import Observability

log = logging.getLogger(__name__)


@dataclass
class App:
    settings: Settings
    guard: Guard
    store: StateStore
    alerts: AlertSink
    principals: Principals | None  # None: authentication off
    credentials: grpc.ServerCredentials | None  # None: server.listen without TLS
    journal: Journal
    timers: Timers  # whatever serves the guard starts and stops them
    observability: Observability | None = None  # None: telemetry.enabled = false


def open_store(settings: Settings) -> StateStore:
    """The configured store: SQLite, the embedded default."""
    return SqliteStateStore(settings.store.path, keep_events=settings.store.keep_events)


def open_journal(settings: Settings, store_was_in_use: bool,
                 identity: bytes | None) -> Journal:
    """The journal beside the SQLite store: `<store.path>.journal`. A store that was in
    use (it has a seal) had a journal: one missing with its seal was deleted. identity:
    the store's, which the journal's chain starts from (None: the store cannot be read)."""
    store = settings.store.path
    return FileJournal(journal_path(store), settings.store.journal_sync_interval_s,
                       required=store_was_in_use, identity=identity,
                       locked=(f"{store}.lock", store))


def described(value: Any) -> Any:
    """A configuration as plain data for a log line: enums as written in the file, scopes
    as `KIND:id`."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: described(getattr(value, field.name))
                for field in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value if isinstance(value, str) else value.name.lower()
    if isinstance(value, dict):
        return {str(described(key) if isinstance(key, enum.Enum) else key): described(item)
                for key, item in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [described(item) for item in value]
    return value


def open_floor(settings: Settings, opened: bool, store: StateStore,
               stored: StoredState | None) -> VersionFloor:
    """The version floor beside the SQLite store (`<store.path>.floor`), if this process
    opened the store and holds its lock (`opened`: not a store given by a test)."""
    if not (opened and store.locked):
        return NoFloor()
    return FileVersionFloor(settings.store.path, stored.identity if stored else None)


def keep_floor(engine: GuardEngine, floor: VersionFloor, stored: StoredState | None) -> None:
    """After the restore: number past every version a run before this one told with no
    store holding it, and make sure the floor can be written on a full disk."""
    told = floor.read()
    if told > engine.version:
        log.warning("a run before this one told versions up to %d that the store does not"
                    " hold (it failed closed): what comes next is numbered past them, so"
                    " no version told names another transition", told)
        engine.numbered_past(told)
    if stored is not None:
        try:
            floor.prepare(engine.version)
        except (OSError, ValueError) as error:
            log.warning("the version floor cannot be written (%s): versions told while"
                        " failed closed may be given again after a restart", error)


def load_journal(journal: Journal) -> tuple[Journal, list[JournalEntry], str]:
    """The journal and its entries, or no journal and why it cannot be read."""
    try:
        return journal, journal.load(), ""
    except StoreUnavailable as error:
        return NoJournal(), [], str(error)


def open_principals(settings: Settings) -> Principals | None:
    """Who may call, when authentication is on. Raises InvalidConfig naming the key."""
    return load_principals(settings.auth.tokens_file) if settings.authenticates() else None


def open_credentials(settings: Settings) -> grpc.ServerCredentials | None:
    """TLS for server.listen, when a certificate is configured. Raises InvalidConfig naming
    the key of a file that cannot be read."""
    if not settings.server.listen:
        return None
    from .adapters.grpc.security import server_credentials  # noqa: PLC0415 - grpc only to serve
    return server_credentials(settings.server)


def open_alerts(settings: Settings) -> AlertSink:
    """apprise, when notification URLs are configured."""
    if not settings.alerts.urls:
        return NoAlerts()
    from .adapters.alerts.apprise_sink import AppriseAlertSink  # noqa: PLC0415 - optional
    return AppriseAlertSink(settings.alerts)


def load(store_factory: Callable[[], StateStore]) -> tuple[StateStore, StoredState | None]:
    """Open the store and read the latched state, or an unavailable store that says why."""
    store: StateStore | None = None
    try:
        store = store_factory()
        return store, store.load()
    except StoreUnavailable as error:  # never written to, but held: see UnavailableStateStore
        return UnavailableStateStore(f"state store unreadable: {error}", store), None


def open_observability(settings: Settings,
                       span_exporters: Sequence[Any] = ()) -> Observability | None:
    """Metrics and traces, unless telemetry.enabled is false."""
    if not settings.telemetry.enabled:
        return None
    from .adapters.telemetry.setup import observability  # noqa: PLC0415 - optional
    return observability(settings.telemetry, span_exporters)


def steady_clock(floor: float, last: ClockRead | None) -> SteadyClock:
    """The serving clock, going on from `last` (or the system's time), never before
    `floor`; said if it starts more than a second from the system's."""
    clock = SteadyClock(floor, last=None if last is None else (last.now, last.wall))
    if clock.floored:
        log.warning("the system clock is %.3f s behind the latest time in the state on disk:"
                    " the sidecar's clock starts from that time instead", clock.ahead)
    elif abs(clock.ahead) > 1.0:
        log.warning("the sidecar's clock starts %+.3f s from the system's: it goes on from"
                    " the time it kept before this start, when the system clock had stepped"
                    " away from it (deadlines, cooldowns and windows do not step)",
                    clock.ahead)
    return clock


def build(settings: Settings, clock: Clock | None = None, store: StateStore | None = None,
          span_exporters: Sequence[Any] = (), journal: Journal | None = None) -> App:
    """Load the latched state, replay the journal and wire the guard and its timers. An
    unreadable or
    damaged store or journal starts the sidecar with GLOBAL tripped (in memory) and the
    reason, rather than not at all. Spans also go to `span_exporters` (tests)."""
    principals = open_principals(settings)  # first: a bad tokens or TLS file opens nothing
    credentials = open_credentials(settings)
    observed = open_observability(settings, span_exporters)
    engine = GuardEngine(settings.guard_config(), decision_prefix=secrets.token_hex(4))
    given = store is not None
    store_was_in_use = store is None and SqliteStateStore.in_use(settings.store.path)
    store, stored = load(lambda: store or open_store(settings))
    if store.locked:
        journal, entries, unreadable = load_journal(journal or open_journal(
            settings, store_was_in_use, stored.identity if stored is not None else None))
    else:  # another sidecar holds the files: its journal is not this process's to write
        journal, entries = NoJournal(), []
        unreadable = "" if stored is None else "this process does not hold the state file's" \
            " lock: it may not write the journal beside it"
    alerts = open_alerts(settings)
    steady = None
    if clock is None:  # serving: a step of the system clock moves no deadline
        written_at = journal.last_written \
            if isinstance(journal, FileJournal) and entries else None
        clock = steady = steady_clock(latest_time(stored, entries),
                                      last_clock_read(entries, written_at))
    watchers = Subscribers(settings.watch.queue_size, settings.watch.max_watchers,
                           2 * settings.watch.heartbeat_interval_s,
                           most_scopes=settings.watch.max_scopes,
                           most_internal=FANOUT_PLACES if settings.watch.fans_out() else 0)
    # What judges from now on, latches already set included (docs/design.md, "A
    # configuration changed across a restart"): the file may change before the next look.
    log.info("configuration in force", extra=described(engine.config))
    floor = open_floor(settings, not given, store, stored)
    guard = Guard(engine, store, clock, watchers, alerts,
                  observed.telemetry if observed else None, journal,
                  principals.is_operator if principals is not None else None, floor,
                  # a store that cannot be read tells what the journal replays in an epoch
                  # of this process's (review 57a: "", as if made before stores had one)
                  store_epoch(stored.identity, stored.generation) if stored is not None
                  else f"unread-{engine.decision_prefix}")
    # The store's trips, even when the journal cannot be read:
    entries, lacking = with_horizons(entries)
    wrong, taken = restore(engine, store, stored, entries, clock.now(), journal)
    keep_floor(engine, floor, stored)
    cap = engine.config.limits.max_remembered_orders
    if len(engine.orders.records) >= cap:  # review 55b: a cap lowered before the restart
        log.warning("%d order ids are remembered, at or past limits.max_remembered_orders"
                    " (%d): every new order is denied DUPLICATE_ORDER until enough of them"
                    " age out (limits.order_id_retention_s) or the cap is raised",
                    len(engine.orders.records), cap)
    problem = unreadable or wrong
    alerts.notify(taken)  # taken from the store: a crash may have come before their alerts
    alerts.still_latched(engine.restricted())  # or one that was waiting to be sent
    if stored is None:
        assert isinstance(store, UnavailableStateStore)
        problem = store.reason
    if problem:  # logged here too: a GLOBAL tripped already (by a reseal) hides it
        log.error("the state on disk cannot be trusted; GLOBAL stays tripped in this"
                  " process: %s", problem)
        guard.fail_closed(problem)
        engine.untrusted = (  # no reset of GLOBAL in this process: plan_reset
            f"it was tripped at start-up because the state on disk could not be trusted"
            f" ({problem}); this process's memory may lack trips, working orders or fills:"
            " repair or restore the state files, or accept them with `ess-sidecar reseal`"
            " (sidecar stopped), then restart")
    try:
        if lacking:  # said on an untrusted start too: its timer runs record them (55h)
            log.warning("the journal's timer runs from before stop 55 did not record what they"
                        " forgot by: they take the horizons of this start (limits."
                        "order_id_retention_s %g s, duplicate_window_s %g s, idle evidence"
                        " %g s), which it records; if this start changed one of these, the"
                        " decisions replayed from them may differ from those of the sidecar"
                        " that ran (change them at a later restart)", *engine.horizons())
        if lacking and not problem:  # after what reconcile journaled, before anything else
            with_horizons_recorded(engine, journal, clock.now())
        journal.start()
        if steady is not None:
            guard.clock_read(*steady.reading())
    except StoreUnavailable as error:  # no syncer: records are refused, so deny them all
        log.error("%s; GLOBAL is tripped in this process", error)
        guard.fail_closed(str(error))
    return App(settings, guard, store, alerts, principals, credentials, journal,
               Timers(guard, settings.timers.interval_s, steady), observed)


def server_parts(app: App) -> ServerParts:
    """What the gRPC server serves with: the authenticator when authentication is on, the
    TLS credentials, the app's timers and, when telemetry is on, the tracing interceptors,
    a span per stream and the Prometheus endpoint (if telemetry.metrics_listen is set)."""
    from .adapters.grpc.auth import Authenticator  # noqa: PLC0415 - grpc only to serve
    from .adapters.grpc.server import ServerParts  # noqa: PLC0415
    parts = ServerParts(
        app.settings, app.guard, app.alerts, app.store, app.journal, app.timers,
        authenticator=Authenticator(app.principals, app.guard.telemetry)
        if app.principals is not None else None,
        credentials=app.credentials)
    observed = app.observability
    if observed is None:
        return parts
    from .adapters.telemetry.prometheus_http import MetricsServer  # noqa: PLC0415 - optional
    from .adapters.telemetry.tracing import server_interceptors, traced_stream  # noqa: PLC0415
    listen = app.settings.telemetry.metrics_listen
    return replace(
        parts, interceptors=server_interceptors(observed.tracers),
        wrap_streams=functools.partial(traced_stream, observed.tracers), observability=observed,
        metrics_server=functools.partial(MetricsServer, listen, observed.registry) if listen
        else None)


def trip_for_what_a_reseal_lost(settings: Settings, reason: str) -> str:
    """After a reseal that accepted a loss of journal records: what they held is unknown,
    so GLOBAL is tripped in the store itself (cause SYSTEM), and trading resumes only by
    an operator's Reset. Raises StoreUnavailable if the store cannot take it. Returns what
    was done. (Versions lost from the store are tripped inside its reseal:
    trip_for_lost_versions.)"""
    store = SqliteStateStore(settings.store.path)
    try:
        stored = store.load()
        transitions = _global_trip(settings, stored.current, stored.version, reason,
                                   stored.identity)
        store.append(transitions)
    finally:
        store.close()
    return f"GLOBAL tripped: {reason}" if transitions else "GLOBAL was tripped already"


def trip_for_lost_versions(settings: Settings) -> ForLostVersions:
    """What SqliteStateStore.reseal stores, in its own transaction, when it accepts that
    acknowledged versions are gone (a lost WAL): GLOBAL tripped, since what they latched
    is unknown. The loss is accepted with its trip or not at all."""
    def trip(current: list[Transition], summary: ResealSummary) -> list[Transition]:
        lost = [f"versions {summary.lost[0]} to {summary.lost[1]} were acknowledged but"
                " are not in the state file (a lost WAL?)"] if summary.lost else []
        if summary.unsealed:
            lost.append("the state file's seal was missing or unreadable, so acknowledged"
                        " versions may be gone with its WAL")
        if summary.unlatched:
            lost.append(f"{', '.join(summary.unlatched)} latched, but not by their newest"
                        " event (a damaged event?)")
        if summary.rewritten:
            lost.append(summary.rewritten_text())
        return _global_trip(settings, current, summary.version,
                            f"{'; '.join(lost)}: what they latched is unknown; check every"
                            " scope before resetting GLOBAL", summary.identity)
    return trip


def _global_trip(settings: Settings, current: list[Transition], version: int,
                 reason: str, identity: bytes | None) -> list[Transition]:
    """GLOBAL's SYSTEM trip on top of the stored state (none if it is tripped already).
    `identity`: the store's, which the journal's records are chained from (None: unknown,
    the journal's seal says)."""
    # No earlier than the state on disk, as a serving clock starts (review 36g: stamped
    # an hour before the journal's latest record, the trip's cooldown was over at start;
    # 36r: with the seal gone, the records are still the store's, as the reseal keeps them).
    last = FileJournal(journal_path(settings.store.path), identity=identity).last_entry()
    now = max(SystemClock().now(), latest_time(StoredState(current), [last] if last else []))
    engine = GuardEngine(settings.guard_config())
    engine.restore(current, version, now)
    # Past what a damaged start told (its fail-closed trip, never stored): review 54c.
    engine.numbered_past(FileVersionFloor(settings.store.path, identity).read())
    plan = engine.plan(now)
    plan.trip(GLOBAL, TriggerMode.HALT, Cause.SYSTEM, f"ess-sidecar reseal: {reason}",
              "ess-sidecar reseal")
    return plan.transitions


def restore(engine: GuardEngine, store: StateStore, stored: StoredState | None,
            entries: list[JournalEntry], now: float, journal: Journal,
            ) -> tuple[str, list[Transition]]:
    """Replay the journal and reconcile it with the store: what is wrong (or ""), and the
    transitions taken from the store because the journal ended before them."""
    restored: list[Transition] = []
    try:
        replay(engine, entries)
        if stored is not None:
            restored = reconcile(engine, store, stored, now, bool(entries), journal)
    except StoreUnavailable as error:
        if stored is not None:  # what the store latched is shown too, where replay stopped
            # short of it (review 36a): GLOBAL is tripped, but status named fewer scopes
            engine.restore([t for t in stored.current if engine.current(t.scope) is None],
                           stored.version, now)
        return str(error), restored
    if respelled_scope := respelled(engine):
        return respelled_scope, restored
    log.info("state loaded: version %d, %d journal entries, %d scope(s) not ARMED",
             engine.version, len(entries), len(engine.restricted()))
    return "", restored
