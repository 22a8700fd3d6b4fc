"""What the service logs: every transition and every refused reset, as structured fields;
nothing per allowed order."""

from __future__ import annotations

import logging

import pytest

from ess_sidecar.domain.errors import ResetRefused
from ess_sidecar.domain.orders import Order, PositionSnapshot, Side
from tests.unit.test_service import MOMO, make_guard, trigger

SERVICE_LOG = "ess_sidecar.service"


def records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == SERVICE_LOG]


def test_a_transition_is_logged_with_its_fields(caplog) -> None:
    caplog.set_level(logging.INFO, logger=SERVICE_LOG)
    guard, _ = make_guard()
    trigger(guard)
    [record] = records(caplog)
    assert record.getMessage() == "transition"
    assert (record.scope, record.previous, record.state, record.version, record.actor,
            record.cause, record.reason) == ("STRATEGY:momo", "ARMED", "TRIPPED", 1, "alice",
                                             "TRIGGER", "stop")


def test_a_refused_reset_is_logged_with_who_and_why(caplog) -> None:
    caplog.set_level(logging.INFO, logger=SERVICE_LOG)
    guard, _ = make_guard()
    trigger(guard)
    with pytest.raises(ResetRefused):
        guard.reset(MOMO, "looks fine", False, "bob")
    refused = records(caplog)[-1]
    assert refused.getMessage() == "reset refused"
    assert (refused.scope, refused.actor, refused.reason) == ("STRATEGY:momo", "bob",
                                                              "looks fine")
    assert "cooldown" in refused.refusal


def test_orders_are_not_logged(caplog) -> None:
    caplog.set_level(logging.DEBUG)
    guard, _ = make_guard()
    guard.engine.sync_positions("acc", 1e6, [PositionSnapshot("momo", "AAPL", 0, 100)])
    for i in range(200):
        if i == 100:
            trigger(guard)
        guard.check(Order("acc", "momo", "AAPL", Side.BUY, 1, 100, client_order_id=f"o-{i}"))
    assert [r.getMessage() for r in caplog.records] == ["transition"]
