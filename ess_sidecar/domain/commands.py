"""What changed the engine's memory, as values: the journal records them, in order, and a
restart replays them, so the book, working orders, breaker evidence, heartbeats and
pending approvals come back exactly as they were (docs/design.md, "The journal: restart
transparency").

A command holds its inputs after validation and the clock reading it ran at. Replaying one
redoes its effects, never its judgement: an order admitted before the restart is working
again even if the config now in force would deny it. The transitions a command caused are
journaled with it and applied as they were, not planned again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from .breakers import Metric
from .orders import Fill, IncludedFills, OpenOrder, Order, OrderUpdate, PositionSnapshot
from .scopes import Scope
from .states import Directive, TriggerMode, TriggerReason


@dataclass(frozen=True)
class Trigger:
    """An operator's (or executor's) kill switch for a scope, as asked."""

    scope: Scope
    mode: TriggerMode
    reason: str
    reason_code: TriggerReason
    directives: tuple[Directive, ...]
    actor: str
    drill: bool = False  # a drill's trip: only from ARMED, lifted at once


class Admitted(NamedTuple):
    """An allowed CheckOrder: the order is working (and one it replaces has ended). A named
    tuple where the other commands are frozen dataclasses: one is made per allowed order,
    and a frozen dataclass's constructor costs about 1 µs more."""

    order: Order
    now: float
    decision_id: str


@dataclass(frozen=True)
class FillReported:
    fill: Fill
    now: float
    # What the live engine decided, journaled rather than worked out again at replay
    # (review 37n: against a ledger missing a fill whose commit had failed, a replay booked
    # a conflicting fill, and owed a renewal the live process did not): whether it was
    # booked (a conflict or a refused one is journaled, booking nothing), the reason of
    # the latch renewal it is owed, if it came within its latch's second, and the reason
    # of the account's trip it is owed, if it was unchecked (OrderLedger.untripped: it
    # was journaled before the trip, which may have failed to store).
    booked: bool = True
    renewal: str = ""
    untripped: str = ""
    # Whether its price became the account's mark, judged by the price band and reference
    # price in force then (review 55b: a band narrowed before a restart took the mark back
    # to the reference, and an order over the exposure limit was allowed). None in
    # journals before it: the configuration in force at replay judges it again.
    marked: bool | None = None


@dataclass(frozen=True)
class MetricReported:
    scope: Scope
    metric: Metric
    value: float
    now: float
    # Whether its evidence was kept (refused at limits.max_scopes_with_evidence); None in
    # journals before review 38m: the cap in force at replay decides.
    accepted: bool | None = None


@dataclass(frozen=True)
class OrderUpdated:
    update: OrderUpdate
    now: float = 0.0  # when (0 in journals before review 38d): recovery.latest_time


@dataclass(frozen=True)
class PositionsSynced:
    account: str
    equity: float
    positions: tuple[PositionSnapshot, ...]
    open_orders: tuple[OpenOrder, ...] | None  # None: the snapshot did not list them
    now: float
    included: tuple[IncludedFills, ...] = ()  # fills the positions count, per order
    left_out: int = 0  # open orders listed but not adopted (GuardEngine.adoptable)


@dataclass(frozen=True)
class OrdersCleared:
    account: str
    client_order_ids: tuple[str, ...]  # empty: all of the account's
    now: float = 0.0  # when (0 in journals before review 38d): recovery.latest_time


@dataclass(frozen=True)
class HeartbeatSeen:
    executor_id: str
    scope: Scope
    ttl_s: float
    now: float
    deregister: bool = False
    owner: str = ""  # the principal that beat ("" with authentication off)


@dataclass(frozen=True)
class ResetAsked:
    """A reset that was accepted or became a pending four-eyes request."""

    scope: Scope
    reason: str
    force: bool
    actor: str
    now: float
    latches: tuple[str, ...] = ()  # none: all of them
    # The pending request it met was void: its requester was no longer an operator.
    void: bool = False
    credential: str = ""  # which credential of actor's it came with (Principal.credential)
    # The expiry it was given, if it became a pending request (review 55b); None in
    # journals before it, and for a reset that took effect.
    expires_at: float | None = None


@dataclass(frozen=True)
class TimersRan:
    """A timer run that forgot expired order ids or caused transitions (most runs do
    neither, and are not journaled)."""

    now: float
    # What it forgot by (GuardEngine.horizons: the order ids' retention, the identical-order
    # window, how long a scope's evidence is kept idle), so that a replay forgets what this
    # run did (review 55d: a retention shortened before a restart forgot an order whose
    # fill a snapshot had counted, the fill moved the position again, and an order over
    # the exposure limit was allowed). None in journals before it: the configuration in
    # force at replay.
    horizons: tuple[float, float, float] | None = None


@dataclass(frozen=True)
class ClockRead:
    """The serving clock and the system's, read together: at each start, and when the
    system clock stepped away from the serving clock. It changes nothing in memory; the
    next start goes on from the serving clock's time (ports.SteadyClock), so the times
    stamped while it kept its own are not aged by the step (review 43d)."""

    now: float
    wall: float


@dataclass(frozen=True)
class Triggered:
    """An operator's trigger: its transitions are all it changed."""

    now: float


@dataclass(frozen=True)
class Restored:
    """At start-up, the store's transitions that the journal lacked (a crash between the
    state file's COMMIT and the journal's record, or an upgrade from a sidecar without a
    journal), taken from the store and journaled, so that the next start replays what this
    one restored (GuardEngine.catch_up). `version` is the store's at that start."""

    now: float
    version: int


Command = (Admitted | FillReported | MetricReported | OrderUpdated | PositionsSynced
           | OrdersCleared | HeartbeatSeen | ResetAsked | TimersRan | Triggered | Restored
           | ClockRead)
