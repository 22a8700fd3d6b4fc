"""Roles and permissions: each permission is its own, and a refusal names the right one."""

from __future__ import annotations

import enum

import pytest

from ess_sidecar.domain import access
from ess_sidecar.domain.access import Permission, Principal, Role, parse_role
from ess_sidecar.domain.errors import PermissionDenied


def test_every_enum_in_the_domain_has_distinct_values() -> None:
    enums = [value for value in vars(access).values()
             if isinstance(value, type) and issubclass(value, enum.Enum)]
    for kind in enums:
        assert len({member.value for member in kind}) == len(kind), kind


def test_an_executor_reading_the_audit_trail_is_told_that_not_that_it_may_not_reset() -> None:
    executor = Principal("exe", Role.EXECUTOR)
    with pytest.raises(PermissionDenied) as raised:
        executor.authorize(Permission.READ_HISTORY)
    assert "may not read the audit trail" in str(raised.value)
    assert "reset" not in str(raised.value)
    with pytest.raises(PermissionDenied, match="may not reset: needs the operator role"):
        executor.authorize(Permission.RESET)


def test_operators_may_do_everything_executors_may_and_reset() -> None:
    assert Role.EXECUTOR.permissions < Role.OPERATOR.permissions
    for permission in Permission:
        Principal("alice", Role.OPERATOR).authorize(permission)


def test_roles_are_executor_and_operator_only() -> None:
    assert parse_role(" Operator ") is Role.OPERATOR
    with pytest.raises(ValueError, match="known: executor, operator"):
        parse_role("admin")
