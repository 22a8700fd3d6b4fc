"""Scope states, transitions between them, and what a transition records."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .scopes import Scope


class State(enum.IntEnum):
    ARMED = 1
    REDUCE_ONLY = 2
    TRIPPED = 3
    COOLING_DOWN = 4


# How much a state restricts trading; the most restrictive covering scope decides.
SEVERITY = {State.ARMED: 0, State.REDUCE_ONLY: 1, State.COOLING_DOWN: 2, State.TRIPPED: 3}


class Cause(enum.IntEnum):
    TRIGGER = 1
    BREAKER = 2
    HEARTBEAT_LOST = 3
    RESET = 4
    REARM = 5
    SYSTEM = 6


class TriggerReason(enum.IntEnum):
    USER_INITIATED = 1
    RISK_VIOLATION = 2
    SYSTEM_ERROR = 3
    MARKET_CONDITION = 4
    CONNECTIVITY_ISSUE = 5
    REGULATORY_HALT = 6


class TriggerMode(enum.IntEnum):
    HALT = 1
    REDUCE_ONLY = 2


class Directive(enum.IntEnum):
    CANCEL_OPEN_ORDERS = 1
    FLATTEN_POSITIONS = 2
    PAUSE_STRATEGIES = 3


SYSTEM_ACTOR = "system"

class LatchKind(enum.StrEnum):
    """Latches that are not a breaker's (a breaker's latch is named after it)."""

    TRIGGER = "trigger"  # an operator's (or executor's) Trigger
    DRILL = "drill"  # a drill's trip: lifted at once, no cooldown or second approver
    SYSTEM = "system"  # the sidecar failing closed (a store it cannot trust, a cap)


@dataclass(frozen=True, slots=True)
class Latch:
    """One restriction on a scope, held until a reset names it (or an auto re-arm of
    its breaker lifts it). A scope's state is its most severe latch."""

    name: str  # a LatchKind or a breaker's name (breakers.Breaker)
    state: State  # TRIPPED or REDUCE_ONLY
    since: float  # when it was set or last made stricter (a state or directives): its
    # reset cooldown counts from it
    version: int  # the transition that set it
    # Whether its breaker re-armed by itself when it was set or made stricter (the rule's
    # auto_rearm then): one set under a manual re-arm waits for a reset though the rule
    # was switched before a restart (known gap 22 until stop 56). None: set before this
    # was kept, or by no breaker's rule (the rule in force decides).
    auto_rearm: bool | None = None


def latch_name(cause: Cause, breaker: str, drill: bool) -> str:
    """The latch a trip sets, as plain text (what is stored, journaled and sent)."""
    if breaker:
        return str(breaker)
    if drill:
        return str(LatchKind.DRILL)
    return str(LatchKind.TRIGGER if cause is Cause.TRIGGER else LatchKind.SYSTEM)


@dataclass(frozen=True, slots=True)
class Transition:
    """One state change of one scope: the unit that is persisted, audited and published.

    The latest transition of a scope is also its current state: `time` is when the
    scope entered `state`, which is where cooldowns count from.
    """

    version: int
    time: float
    scope: Scope
    previous: State
    state: State
    cause: Cause
    reason: str
    actor: str
    breaker: str = ""
    reason_code: TriggerReason | None = None
    directives: tuple[Directive, ...] = ()
    forced: bool = False
    rearm_at: float | None = None
    approved_by: str = ""  # four-eyes: the second operator; `actor` requested the reset
    drill: bool = False  # part of a drill (essctl drill), not a real trip
    # The scope's latches after this transition (empty when it is ARMED or COOLING_DOWN).
    latches: tuple[Latch, ...] = ()

    def held(self) -> tuple[Latch, ...]:
        """The latches in force after this transition. A transition stored before
        latches were recorded stands for one latch: its own."""
        if self.latches or self.state not in (State.TRIPPED, State.REDUCE_ONLY):
            return self.latches
        return (Latch(latch_name(self.cause, self.breaker, self.drill), self.state, self.time,
                      self.version),)
