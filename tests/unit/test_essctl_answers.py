"""essctl against answers a served sidecar would not give, or in moments a served test
cannot arrange: `essctl drill`'s reset lifts the drill's own latch, never a real trip that
came meanwhile (docs/design.md, "Drills"); `essctl check` never shows a self-contradictory
answer as ALLOWED. The sidecar here is a recording stand-in for essctl's connection; what
the engine does with the requests is tested in test_four_eyes_and_drills.py and against a
served sidecar in tests/e2e/test_essctl.py."""

from __future__ import annotations

import argparse

import pytest

from ess.v1 import guard_pb2 as pb
from ess_sidecar.domain.scopes import Scope
from ess_sidecar.essctl.commands import run_check
from ess_sidecar.essctl.connection import Failed
from ess_sidecar.essctl.drill import Drill


class RecordingSidecar:
    def __init__(self, reply: object) -> None:
        self.reply = reply
        self.requests: list[tuple[str, object]] = []

    def call(self, method: str, request: object) -> object:
        self.requests.append((method, request))
        return self.reply


def test_the_drills_reset_lifts_only_the_drill_latch_and_a_real_trip_fails_the_drill():
    sidecar = RecordingSidecar(pb.ResetResponse(state=pb.STATE_TRIPPED, state_version=3))
    drill = Drill(sidecar, Scope.parse("account:acc"), argparse.Namespace(timeout_s=1.0),
                  out=None)
    ok, detail = drill.reset(watcher=None)
    [(method, request)] = sidecar.requests
    assert method == "Reset" and list(request.latches) == ["drill"]
    assert not ok and "TRIPPED" in detail


def test_essctl_check_never_shows_an_answer_that_contradicts_itself_as_allowed():
    """allowed=true with a denial's reason decides nothing: exit 1, not ALLOWED."""
    for reason in (pb.DECISION_REASON_SCOPE_TRIPPED, pb.DECISION_REASON_UNSPECIFIED, 999):
        sidecar = RecordingSidecar(pb.CheckOrderResponse(allowed=True, reason=reason))
        args = argparse.Namespace(account="acc", strategy="momo", symbol="AAPL", side="buy",
                                  qty=1.0, price=100.0, reduce_only=False, coid="c-1")
        with pytest.raises(Failed, match="malformed answer"):
            run_check(args, sidecar, out=None)
