"""Who may do what: roles, principals and the permission each command needs.

Stopping is cheap, resuming is guarded: executors may trigger, only operators reset.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .errors import PermissionDenied


class Role(enum.IntEnum):
    """Each role may do everything the roles below it may."""

    EXECUTOR = 1  # check, report, heartbeat, read state, watch, trigger
    OPERATOR = 2  # + reset (and approve resets), read the audit trail
    ADMIN = 3  # + change thresholds


class Permission(enum.Enum):
    CHECK = Role.EXECUTOR
    REPORT = Role.EXECUTOR
    READ_STATE = Role.EXECUTOR
    TRIGGER = Role.EXECUTOR
    RESET = Role.OPERATOR
    READ_HISTORY = Role.OPERATOR

    @property
    def role(self) -> Role:
        return self.value


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: its name is the actor in the audit trail."""

    name: str
    role: Role

    def authorize(self, permission: Permission) -> None:
        """Raise PermissionDenied unless this principal's role grants the permission."""
        if self.role < permission.role:
            raise PermissionDenied(
                f"{self.name} ({self.role.name.lower()}) may not"
                f" {permission.name.lower().replace('_', ' ')}: needs the"
                f" {permission.role.name.lower()} role")


def parse_role(text: str) -> Role:
    """"operator" -> Role.OPERATOR; ValueError naming the known roles otherwise."""
    try:
        return Role[text.strip().upper()]
    except KeyError:
        known = ", ".join(r.name.lower() for r in Role)
        raise ValueError(f"unknown role {text!r}; known: {known}") from None
