"""Who may do what: roles, principals and the permissions each role grants.

Stopping is cheap, resuming is guarded: executors may trigger, only operators reset.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .errors import PermissionDenied


@enum.unique
class Permission(enum.Enum):
    CHECK = "check orders"
    REPORT = "report metrics, positions and heartbeats"
    REPORT_EXECUTION = "report fills and order updates"
    READ_STATE = "read and watch the state"
    TRIGGER = "trigger"
    RESET = "reset"
    READ_HISTORY = "read the audit trail"
    CLEAR_WORKING_ORDERS = "clear working orders"


@enum.unique
class Role(enum.Enum):
    EXECUTOR = "executor"
    OPERATOR = "operator"
    RECONCILER = "reconciler"  # a drop-copy feed: fills and order updates, nothing else
    WATCHER = "watcher"  # a dashboard, the fan-out process: reads the state, nothing else

    @property
    def permissions(self) -> frozenset[Permission]:
        return ROLE_PERMISSIONS[self]


_EXECUTOR = frozenset({Permission.CHECK, Permission.REPORT, Permission.REPORT_EXECUTION,
                       Permission.READ_STATE, Permission.TRIGGER})
ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.EXECUTOR: _EXECUTOR,
    Role.OPERATOR: _EXECUTOR | {Permission.RESET, Permission.READ_HISTORY,
                                Permission.CLEAR_WORKING_ORDERS},
    Role.RECONCILER: frozenset({Permission.REPORT_EXECUTION}),
    Role.WATCHER: frozenset({Permission.READ_STATE}),
}


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: its name is the actor in the audit trail. `credential`
    says which of the name's credentials it came with (a token's fingerprint; four-eyes
    voids a request whose credential is gone)."""

    name: str
    role: Role
    credential: str = ""

    def authorize(self, permission: Permission) -> None:
        """Raise PermissionDenied unless this principal's role grants the permission."""
        if permission not in self.role.permissions:
            needs = " or ".join(r.value for r in Role if permission in r.permissions)
            raise PermissionDenied(f"{self.name} ({self.role.value}) may not"
                                   f" {permission.value}: needs the {needs} role")


def parse_role(text: str) -> Role:
    """"operator" -> Role.OPERATOR; ValueError naming the known roles otherwise."""
    try:
        return Role(text.strip().lower())
    except ValueError:
        known = ", ".join(r.value for r in Role)
        raise ValueError(f"unknown role {text!r}; known: {known}") from None
