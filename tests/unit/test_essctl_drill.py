"""`essctl drill`'s reset lifts the drill's own latch, never a real trip that came meanwhile
(docs/design.md, "Drills"). The sidecar here is a recording stand-in for essctl's
connection; what the engine does with the request is tested in test_four_eyes_and_drills.py
and against a served sidecar in tests/e2e/test_essctl.py."""

from __future__ import annotations

import argparse

from ess.v1 import guard_pb2 as pb
from ess_sidecar.domain.scopes import Scope
from ess_sidecar.essctl.drill import Drill


class RecordingSidecar:
    def __init__(self, reply: pb.ResetResponse) -> None:
        self.reply = reply
        self.requests: list[tuple[str, object]] = []

    def call(self, method: str, request: object) -> pb.ResetResponse:
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
