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
