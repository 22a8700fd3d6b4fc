"""essctl against answers a served sidecar would not give, or in moments a served test
cannot arrange: `essctl drill`'s reset lifts the drill's own latch, never a real trip that
came meanwhile (docs/design.md, "Drills"); `essctl check` never shows a self-contradictory
answer as ALLOWED. The sidecar here is a recording stand-in for essctl's connection; what
the engine does with the requests is tested in test_four_eyes_and_drills.py and against a
served sidecar in tests/e2e/test_essctl.py."""

from __future__ import annotations

import argparse
import json

import grpc
import pytest

from ess.v1 import guard_pb2 as pb
from ess_sidecar.domain.scopes import Scope
from ess_sidecar.essctl.commands import STOP_AGAIN_S, run_check, run_trigger
from ess_sidecar.essctl.connection import Exit, Failed, describe
from ess_sidecar.essctl.drill import Drill
from ess_sidecar.essctl.heartbeats import run_deregister
from ess_sidecar.essctl.orders import run_clear
from ess_sidecar.essctl.render import Output, to_json
from ess_sidecar.essctl.reset import run as run_reset
from ess_sidecar.essctl.status import latches_text, pending_text


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


def test_a_failed_drills_cleanup_says_to_lift_the_drill_latch_only():
    """Review 36e: a real trip landed during a drill that failed; the drill's reset left it,
    but the cleanup line told the operator to run a reset of every latch: the real one."""
    sidecar = RecordingSidecar(pb.ResetResponse(state=pb.STATE_TRIPPED, state_version=5))
    drill = Drill(sidecar, Scope.parse("strategy:drilled"),
                  argparse.Namespace(timeout_s=1.0), out=Output(json_mode=True))
    drill.step(4, "trip → first denial", lambda: (False, "allowed"))
    drill.resume(watcher=None)
    assert "essctl reset --scope STRATEGY:drilled --latch drill --reason 'failed drill'" \
        in drill.report.cleanup
    assert "not the drill's to lift" in drill.report.cleanup


def test_essctl_check_never_shows_an_answer_that_contradicts_itself_as_allowed():
    """allowed=true with a denial's reason decides nothing: exit 1, not ALLOWED."""
    for reason in (pb.DECISION_REASON_SCOPE_TRIPPED, pb.DECISION_REASON_UNSPECIFIED, 999):
        sidecar = RecordingSidecar(pb.CheckOrderResponse(allowed=True, reason=reason))
        args = argparse.Namespace(account="acc", strategy="momo", symbol="AAPL", side="buy",
                                  qty=1.0, price=100.0, reduce_only=False, coid="c-1")
        with pytest.raises(Failed, match="malformed answer"):
            run_check(args, sidecar, out=None)


class ScriptedSidecar:
    """Answers each call with the next reply scripted for its method (raised if it is an
    error)."""

    options = argparse.Namespace(timeout=5.0, target="unix:/run/ess.sock")

    def __init__(self, **replies: list) -> None:
        self.replies = replies
        self.requests: list[tuple[str, object]] = []
        self.timeouts: list[float | None] = []
        self.waited: list[bool] = []  # wait_for_ready, call by call

    def call(self, method: str, request: object, timeout: float | None = None,
             wait_for_ready: bool = False) -> object:
        self.requests.append((method, request))
        self.timeouts.append(timeout)
        self.waited.append(wait_for_ready)
        reply = self.replies[method].pop(0)
        if isinstance(reply, grpc.RpcError):
            raise reply
        return reply


class Refusal(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str = "") -> None:
        super().__init__(details)
        self._code, self._details = code, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


PANIC = argparse.Namespace(scope=None, reason=None, code=None, reduce_only=False,
                           directive=[], panic=True, parse_scope=Scope.parse)
LATE = Refusal(grpc.StatusCode.DEADLINE_EXCEEDED)
GLOBAL_TRIPPED = pb.GetStateResponse(scopes=[pb.ScopeState(
    scope=pb.Scope(kind=pb.SCOPE_KIND_GLOBAL), state=pb.STATE_TRIPPED, cause=pb.CAUSE_SYSTEM)])


def test_a_stop_with_no_answer_in_time_is_sent_again_and_waited_for_longer(capsys):
    """Review 35: behind a storm of trips to thousands of watchers, a panic whose deadline
    passed before the sidecar read it was dropped unapplied, and essctl only said
    DEADLINE_EXCEEDED. It sends the stop again and waits longer."""
    sidecar = ScriptedSidecar(Trigger=[LATE, pb.TriggerResponse(state=pb.STATE_TRIPPED,
                                                                state_version=7)])
    assert run_trigger(PANIC, sidecar, Output(json_mode=False)) == Exit.DONE
    assert [m for m, _ in sidecar.requests] == ["Trigger", "Trigger"]
    assert sidecar.timeouts == [None, STOP_AGAIN_S]
    said = capsys.readouterr()
    assert "the stop is sent again" in said.err and "GLOBAL is TRIPPED" in said.out


def test_a_stop_that_finds_the_sidecar_unavailable_is_sent_again_waiting_for_it(capsys):
    """Review 49f: a sidecar starting (it loads its state before it listens) or with
    every connection taken refused the stop, and essctl gave up at once: the stop was
    never sent. It is sent again, waiting up to STOP_AGAIN_S for the sidecar."""
    refused = Refusal(grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses")
    sidecar = ScriptedSidecar(Trigger=[refused, pb.TriggerResponse(state=pb.STATE_TRIPPED,
                                                                   state_version=3)])
    assert run_trigger(PANIC, sidecar, Output(json_mode=False)) == Exit.DONE
    assert (sidecar.timeouts, sidecar.waited) == ([None, STOP_AGAIN_S], [False, True])
    said = capsys.readouterr()
    assert "the sidecar is not available (failed to connect" in said.err
    assert "GLOBAL is TRIPPED" in said.out


@pytest.mark.parametrize("refusals, state, told", [
    ([Refusal(grpc.StatusCode.UNAVAILABLE, "state store write failed: disk full")] * 2,
     [GLOBAL_TRIPPED], "the sidecar says GLOBAL is TRIPPED"),
    ([LATE, LATE], [pb.GetStateResponse()], "GLOBAL is ARMED: trading was NOT stopped"),
    ([LATE, LATE], [pb.GetStateResponse(scopes=[pb.ScopeState(
        scope=pb.Scope(kind=pb.SCOPE_KIND_GLOBAL), state=pb.STATE_COOLING_DOWN)])],
     "GLOBAL is COOLING_DOWN: trading was NOT stopped"),
    ([LATE, LATE], [pb.GetStateResponse(scopes=[pb.ScopeState(  # a drill lifts itself
        scope=pb.Scope(kind=pb.SCOPE_KIND_GLOBAL), state=pb.STATE_TRIPPED, drill=True)])],
     "GLOBAL is TRIPPED: trading was NOT stopped"),
    ([LATE, LATE], [LATE], "cannot say whether trading stopped (DEADLINE_EXCEEDED): assume"
                           " it did NOT"),
    ([Refusal(grpc.StatusCode.UNAVAILABLE, "failed to connect")] * 2,
     [Refusal(grpc.StatusCode.UNAVAILABLE)], "cannot say whether trading stopped (UNAVAILABLE)"),
    ([Refusal(grpc.StatusCode.UNAVAILABLE, "failed to connect"), LATE],
     [Refusal(grpc.StatusCode.UNAVAILABLE)], "cannot say whether trading stopped (UNAVAILABLE)"),
    ([Refusal(grpc.StatusCode.UNAVAILABLE, "state store write failed: disk full"), LATE],
     [GLOBAL_TRIPPED], "the sidecar says GLOBAL is TRIPPED"),
], ids=["unstored", "unapplied", "re-arming", "drill", "unknown", "unreachable",
        "never-reached", "unstored-then-late"])
def test_a_stop_not_acknowledged_says_where_trading_stands(capsys, refusals, state, told):
    """Review 35: the operator saw only the error, whether the sidecar halted in memory
    (a full disk) or never applied the stop."""
    sidecar = ScriptedSidecar(Trigger=list(refusals), GetState=list(state))
    with pytest.raises((grpc.RpcError, Failed)) as raised:
        run_trigger(PANIC, sidecar, Output(json_mode=False))
    if refusals == [LATE, LATE]:  # review 35m: it said "within 5 s" after 5 s and 30 s
        assert str(raised.value) == ("DEADLINE_EXCEEDED: the stop was sent twice, and no"
                                     " answer came within 5 s, then 30 s")
    elif refusals[-1] is LATE:  # review 49h: it said "sent twice" of a sidecar never reached
        assert str(raised.value) == describe(refusals[0], ScriptedSidecar.options) + \
            "; sent again, no answer within 30 s more"
        assert "check --target" in str(raised.value) or "disk full" in str(raised.value)
    else:
        assert raised.value is refusals[-1]
    said = capsys.readouterr().err
    assert told in said
    # review 38g: the scope read ARMED while its trip, held in memory, denied its orders;
    # 38i: not said of a sidecar never reached
    assert ("a restart may drop it" in said) == (state[0] is GLOBAL_TRIPPED)


def test_a_stop_refused_outright_is_not_said_to_be_queued(capsys):
    """Review 55f: a stop refused PERMISSION_DENIED (a watcher's token) was said to be
    "still queued there", which "may yet land"."""
    sidecar = ScriptedSidecar(Trigger=[Refusal(grpc.StatusCode.PERMISSION_DENIED, "watcher")],
                              GetState=[pb.GetStateResponse()])
    with pytest.raises(grpc.RpcError):
        run_trigger(PANIC, sidecar, Output(json_mode=False))
    said = capsys.readouterr().err
    assert "trading was NOT stopped as asked" in said and "may yet land" not in said


def working(*coids: str) -> pb.GetStateResponse:
    return pb.GetStateResponse(
        working_orders=[pb.WorkingOrder(account="acc", client_order_id=c) for c in coids],
        working_order_counts=[pb.WorkingOrderCount(account="acc",
                                                   working_orders=len(coids))])


def test_orders_clear_without_ids_clears_the_orders_it_showed_not_all():
    """An order allowed while the operator read the prompt was never shown: it stays."""
    sidecar = ScriptedSidecar(GetState=[working("stuck-1", "stuck-2")],
                              ClearWorkingOrders=[pb.ClearWorkingOrdersResponse(cleared=2)])
    args = argparse.Namespace(account="acc", coid=[], all=False, reason="gone at the venue",
                              yes=True)
    assert run_clear(args, sidecar, Output(json_mode=True)) == Exit.DONE
    [request] = [r for m, r in sidecar.requests if m == "ClearWorkingOrders"]
    assert list(request.client_order_ids) == ["stuck-1", "stuck-2"]


@pytest.mark.parametrize("after, code, told, every", [
    (working(), Exit.DONE, "0 orders it was to end still work in account acc: it landed",
     False),
    (working("stuck-2"), Exit.FAILED, "1 order it was to end still work in account acc: the"
                                      " clear may yet land", False),
    (LATE, Exit.FAILED, "the sidecar cannot say what still works now (DEADLINE_EXCEEDED)",
     False),
    # review 38i: with --all, whether unadopted open orders are cleared cannot be seen
    (working(), Exit.FAILED, "could not adopt are cleared cannot be seen", True),
], ids=["landed", "not-yet", "unknown", "all"])
def test_a_clear_with_no_answer_says_what_still_works(capsys, after, code, told, every):
    """Review 36e: a clear answered too late exited 1, "could not do it", while it had
    been carried out: it looks again and says how many of its orders still work."""
    sidecar = ScriptedSidecar(GetState=[working("stuck-1", "stuck-2"), after],
                              ClearWorkingOrders=[LATE])
    args = argparse.Namespace(account="acc", coid=[], all=every, reason="gone at the venue",
                              yes=True)
    assert run_clear(args, sidecar, Output(json_mode=False)) == code
    said = " ".join(capsys.readouterr().out.split())
    assert "NO ANSWER: no answer to the clear (DEADLINE_EXCEEDED" in said and told in said
    sidecar.replies = {"GetState": [working("stuck-1", "stuck-2"), after],
                       "ClearWorkingOrders": [LATE]}
    assert run_clear(args, sidecar, Output(json_mode=True)) == code
    answer = json.loads(capsys.readouterr().out)
    assert answer["result"] == "no_answer" and told in answer["message"]


def test_a_reset_of_a_scope_that_changed_while_it_waited_resets_nothing():
    """Shown: a maintenance halt. Meanwhile a second operator's panic: never shown."""
    scope = pb.Scope(kind=pb.SCOPE_KIND_STRATEGY, id="momo")
    shown = pb.ScopeState(scope=scope, state=pb.STATE_TRIPPED, version=3,
                          reason="maintenance window")
    panic = pb.ScopeState(scope=scope, state=pb.STATE_TRIPPED, version=4,
                          reason="runaway algo")
    sidecar = ScriptedSidecar(GetState=[pb.GetStateResponse(scopes=[shown]),
                                        pb.GetStateResponse(scopes=[panic])])
    args = argparse.Namespace(scope=Scope.parse("strategy:momo"), reason="window over",
                              force=True, latch=[], yes=True)
    assert run_reset(args, sidecar, Output(json_mode=True)) == Exit.NO
    assert [m for m, _ in sidecar.requests] == ["GetState", "GetState"]  # no Reset sent


def test_a_reset_names_the_version_it_showed_so_a_later_trip_is_refused_by_the_sidecar():
    """Between essctl's second look and its Reset another trip may land: the sidecar
    refuses a Reset whose expected_version the scope has left (tested served in
    tests/integration/test_latches.py)."""
    scope = pb.Scope(kind=pb.SCOPE_KIND_STRATEGY, id="momo")
    shown = pb.ScopeState(scope=scope, state=pb.STATE_TRIPPED, version=3)
    sidecar = ScriptedSidecar(GetState=[pb.GetStateResponse(scopes=[shown])] * 2
                              + [pb.GetStateResponse()],
                              Reset=[pb.ResetResponse(state=pb.STATE_ARMED, state_version=4)])
    args = argparse.Namespace(scope=Scope.parse("strategy:momo"), reason="window over",
                              force=False, latch=[], yes=True)
    assert run_reset(args, sidecar, Output(json_mode=True)) == Exit.DONE
    (reset,) = [request for method, request in sidecar.requests if method == "Reset"]
    assert reset.expected_version == 3


def test_a_done_reset_names_the_look_alikes_restricted_after_it_not_before(capsys):
    """Review 62: algo1 and algol tripped; while the reset of algo1 waited for its `y`,
    another operator reset algol, and the note still said algol stopped algo1's orders.
    Whatever was restricted once the reset landed is named, and only that."""
    kind = pb.SCOPE_KIND_STRATEGY
    shown, algol, alg01 = (pb.ScopeState(scope=pb.Scope(kind=kind, id=name), version=v,
                                         state=pb.STATE_TRIPPED)
                           for name, v in (("algo1", 3), ("algol", 4), ("alg0l", 5)))
    args = argparse.Namespace(scope=Scope.parse("strategy:algo1"), reason="ok", force=False,
                              latch=[], yes=True)
    for after, named in (([], []), ([algol], ["STRATEGY:algol"]), ([alg01], [])):
        sidecar = ScriptedSidecar(
            GetState=[pb.GetStateResponse(scopes=[shown, algol])] * 2
            + [pb.GetStateResponse(scopes=after)],
            Reset=[pb.ResetResponse(state=pb.STATE_ARMED, state_version=6)])
        sidecar.options = argparse.Namespace(same_sidecar=lambda: ["--target", "unix:/s"])
        assert run_reset(args, sidecar, Output(json_mode=True)) == Exit.DONE
        answer = json.loads(capsys.readouterr().out)
        assert (answer["result"], answer["alike"]) == ("reset", named), after


def test_a_reset_sends_the_epoch_it_showed_and_resets_nothing_when_the_trip_shown_is_gone():
    """Review 54c: shown, a fail-closed trip at version 2 (a sidecar whose disk was
    full); while the operator decided, the disk was freed, the sidecar restarted, and
    another operator's halt was stored as version 2. Compared by version alone, the
    halt was lifted. The second look compares what was shown; the Reset carries the
    epoch, so a trip landing after that look is refused by the sidecar."""
    shown = pb.ScopeState(scope=pb.Scope(kind=pb.SCOPE_KIND_GLOBAL), state=pb.STATE_TRIPPED,
                          version=2, epoch="volatile-7f3a", cause=pb.CAUSE_SYSTEM,
                          reason="state store failed: disk I/O error", actor="ess-sidecar")
    halt = pb.ScopeState(scope=shown.scope, state=pb.STATE_TRIPPED, version=2,
                         cause=pb.CAUSE_TRIGGER, reason="unknown fills: DO NOT RESUME",
                         actor="bob")
    args = argparse.Namespace(scope=Scope.parse("global"), reason="disk freed", force=True,
                              latch=[], yes=True)
    sidecar = ScriptedSidecar(GetState=[pb.GetStateResponse(scopes=[shown]),
                                        pb.GetStateResponse(scopes=[halt])])
    assert run_reset(args, sidecar, Output(json_mode=True)) == Exit.NO
    assert [m for m, _ in sidecar.requests] == ["GetState", "GetState"]  # no Reset sent
    sidecar = ScriptedSidecar(GetState=[pb.GetStateResponse(scopes=[shown])] * 2
                              + [pb.GetStateResponse()],
                              Reset=[pb.ResetResponse(state=pb.STATE_ARMED, state_version=3)])
    assert run_reset(args, sidecar, Output(json_mode=True)) == Exit.DONE
    (reset,) = [request for method, request in sidecar.requests if method == "Reset"]
    assert (reset.expected_version, reset.expected_epoch) == (2, "volatile-7f3a")


def test_a_reset_approves_only_the_four_eyes_request_it_showed(capsys):
    """Review 55f: bob's question showed no request; while it was open alice asked for a
    reset ("only resume at 14:00"), and bob's `y` approved what he never read."""
    shown = pb.ScopeState(scope=MOMO, state=pb.STATE_TRIPPED, version=3, reason="halt")
    asked = pb.ScopeState()
    asked.CopyFrom(shown)
    asked.reset_requested_by = "alice"
    asked.reset_request_reason = "checked, but only resume at 14:00"
    args = argparse.Namespace(scope=Scope.parse("strategy:momo"), reason="bob resumes",
                              force=True, latch=[], yes=True)
    sidecar = ScriptedSidecar(GetState=[pb.GetStateResponse(scopes=[shown]),
                                        pb.GetStateResponse(scopes=[asked])])
    assert run_reset(args, sidecar, Output(json_mode=False)) == Exit.NO
    assert [m for m, _ in sidecar.requests] == ["GetState", "GetState"]  # no Reset sent
    assert "a four-eyes request of it changed" in capsys.readouterr().out
    # Review 55g: one that ended while the question was open (expired, void) is approved by
    # no reset: the reset is sent, and is a new request, as before
    sidecar = ScriptedSidecar(GetState=[pb.GetStateResponse(scopes=[asked]),
                                        pb.GetStateResponse(scopes=[shown])],
                              Reset=[pb.ResetResponse(state=pb.STATE_TRIPPED,
                                                      pending_approval=True,
                                                      requested_by="bob")])
    assert run_reset(args, sidecar, Output(json_mode=True)) == Exit.PENDING


def test_a_token_read_from_a_secrets_file_is_stripped_as_the_sidecar_strips_it(monkeypatch):
    """A trailing newline is a header gRPC refuses (INTERNAL): the stop would fail."""
    from ess_sidecar.essctl.main import _options, _parser  # noqa: PLC0415
    monkeypatch.setenv("ESS_TOKEN", "s3cret\n")
    assert _options(_parser().parse_args(["status"])).token == "s3cret"
    assert _options(_parser().parse_args(["--token", " s3cret ", "status"])).token == "s3cret"


def test_a_scope_that_is_not_plain_ascii_is_spelled_out_by_name():
    """ꓮ (Lisu) looks like A: the operator learns that SYMBOL:ꓮAPL is not AAPL."""
    from ess_sidecar.essctl.render import non_ascii_note  # noqa: PLC0415
    note = non_ascii_note(pb.Scope(kind=pb.SCOPE_KIND_SYMBOL, id="\ua4eeAPL"))
    assert "U+A4EE LISU LETTER A" in note and "SYMBOL:\ua4eeAPL" in note
    assert non_ascii_note(pb.Scope(kind=pb.SCOPE_KIND_SYMBOL, id="AAPL")) == ""
    # stop 62: since stop 61 a stop also holds the ids that look like its own; the note
    # said it held only those spelled exactly so
    note = non_ascii_note(pb.Scope(kind=pb.SCOPE_KIND_STRATEGY, id="\u0394-hedge"))
    assert note.endswith("it holds orders whose ids are spelled so or look like it by"
                         " Unicode's confusables, and no others"), note


MOMO = pb.Scope(kind=pb.SCOPE_KIND_STRATEGY, id="momo")
SHOWN = pb.ScopeState(scope=MOMO, state=pb.STATE_TRIPPED, version=3)


@pytest.mark.parametrize("after, code, told", [
    (pb.GetStateResponse(), Exit.DONE, "STRATEGY:momo is now ARMED"),
    (pb.GetStateResponse(scopes=[pb.ScopeState(scope=MOMO, state=pb.STATE_COOLING_DOWN,
                                               version=4)]),
     Exit.DONE, "STRATEGY:momo has changed as the reset asks: it is now COOLING_DOWN"
                " (version 4, was 3"),
    (pb.GetStateResponse(scopes=[pb.ScopeState(scope=MOMO, state=pb.STATE_TRIPPED,
                                               version=4)]),
     Exit.FAILED, "STRATEGY:momo has changed since: it is now TRIPPED (version 4, was 3"),
    (pb.GetStateResponse(scopes=[pb.ScopeState(scope=MOMO, state=pb.STATE_TRIPPED, version=3,
                                               reset_requested_by="alice")]),
     Exit.PENDING, "with a reset request by alice pending"),
    (pb.GetStateResponse(scopes=[SHOWN]), Exit.FAILED,
     "STRATEGY:momo is still TRIPPED (version 3): the reset may yet land"),
    (LATE, Exit.FAILED, "cannot say where STRATEGY:momo stands now (DEADLINE_EXCEEDED)"),
    (pb.GetStateResponse(scopes=[pb.ScopeState(
        scope=MOMO, state=pb.STATE_TRIPPED, version=4,
        latches=[pb.Latch(name="trigger", state=pb.STATE_TRIPPED)])]),
     Exit.DONE, "STRATEGY:momo has changed as the reset asks: it is now TRIPPED (version 4,"
                " was 3, latches trigger (TRIPPED))"),
    (pb.GetStateResponse(scopes=[pb.ScopeState(scope=MOMO, state=pb.STATE_TRIPPED, version=3,
                                               reset_requested_by="alice",
                                               reset_approval_expires_at={"seconds": 9})]),
     Exit.PENDING, "with a reset request by alice pending"),
], ids=["armed", "cooling", "changed", "pending", "unchanged", "unknown", "latch-lifted",
        "renewed"])
def test_a_reset_with_no_answer_says_where_the_scope_stands(request, capsys, after, code,
                                                            told):
    """Review 36e: the sidecar finishes a reset whose caller gave up; essctl said only
    DEADLINE_EXCEEDED and exit 1, "could not do it", while trading had resumed. Review 36g:
    a reset of one latch that landed, with another latch left, is done (exit 0); one that
    renewed the caller's own pending request is pending (exit 3)."""
    shown = pb.ScopeState(scope=MOMO, state=pb.STATE_TRIPPED, version=3,
                          reset_requested_by="alice" if "renewed" in request.node.name
                          else "", latches=[pb.Latch(name="trigger"), pb.Latch(name="drill")])
    sidecar = ScriptedSidecar(GetState=[pb.GetStateResponse(scopes=[shown])] * 2 + [after],
                              Reset=[LATE])
    args = argparse.Namespace(scope=Scope.parse("strategy:momo"), reason="window over",
                              force=False, latch=["drill"] if "latch" in request.node.name
                              else [], yes=True)
    assert run_reset(args, sidecar, Output(json_mode=False)) == code
    said = " ".join(capsys.readouterr().out.split())
    assert "NO ANSWER: no answer to the reset (DEADLINE_EXCEEDED: no answer from" in said
    assert told in said
    sidecar.replies = {"GetState": [pb.GetStateResponse(scopes=[shown])] * 2 + [after],
                       "Reset": [LATE]}
    assert run_reset(args, sidecar, Output(json_mode=True)) == code
    answer = json.loads(capsys.readouterr().out)
    assert (answer["result"], answer["scope"], answer["exit"]) == (
        "no_answer", "STRATEGY:momo", code)
    assert told in answer["message"]


def test_watch_resumes_with_the_epoch_of_the_message_it_resumes_from() -> None:
    """Review 37h: `essctl watch` took the epoch of every message, heartbeats included,
    but its resume version from transitions only: after a fail-closed trip it never saw
    (filtered out), it resumed from a version before it with the new epoch, and was
    replayed a transition the sidecar never took."""
    from ess_sidecar.essctl.watch import Follower  # noqa: PLC0415

    class OneStream:
        def watch(self, request: pb.WatchStateRequest):  # noqa: ANN202
            yield pb.WatchStateResponse(kind=pb.WATCH_EVENT_KIND_SNAPSHOT_END, version=1)
            yield pb.WatchStateResponse(kind=pb.WATCH_EVENT_KIND_HEARTBEAT, version=2,
                                        epoch="volatile-1")

    follower = Follower(OneStream(), [], Output(json_mode=True), None)  # type: ignore[arg-type]
    follower.follow()
    assert (follower.request().from_version, follower.request().epoch) == (1, "")


def test_status_says_no_reset_lifts_a_scope_shown_with_no_reset_time():
    """Review 42j: GLOBAL failed closed at start (or a trip not stored) showed a cooldown
    that ended, then "cooldown over", while every reset was refused."""
    from ess_sidecar.essctl.status import resume_text  # noqa: PLC0415
    tripped = pb.ScopeState(state=pb.STATE_TRIPPED)
    assert resume_text(tripped).startswith("no reset lifts it in this process (")
    tripped.reset_allowed_at.FromSeconds(0)
    assert resume_text(tripped) == "cooldown over (a breaker still holding refuses the reset)"


def test_a_pending_reset_shows_what_the_second_operator_approves():
    """Review 49f: the second operator saw only who asked, not the reason, whether the
    reset is forced, nor the latches it lifts."""
    asked = pb.ScopeState(scope=pb.Scope(kind=pb.SCOPE_KIND_STRATEGY, id="momo"),
                          state=pb.STATE_TRIPPED, reset_requested_by="alice",
                          reset_request_reason="venue confirmed flat",
                          reset_request_force=True, reset_request_latches=["trigger"])
    assert pending_text(asked).startswith(
        "a FORCED reset of latches trigger requested by alice, waiting for a second operator")
    assert pending_text(asked).endswith(": 'venue confirmed flat'")
    asked.reset_request_force = False
    del asked.reset_request_latches[:]
    assert pending_text(asked).startswith("a reset of every latch requested by alice")


def test_a_latch_the_timers_lift_is_said_to_re_arm_by_itself_in_a_scopes_state() -> None:
    latches = [pb.Latch(name="daily_drawdown_pct", state=pb.STATE_TRIPPED),
               pb.Latch(name="trigger", state=pb.STATE_REDUCE_ONLY)]
    state = pb.ScopeState(latches=latches, auto_rearming_latches=["daily_drawdown_pct"])
    assert latches_text(state) == \
        "daily_drawdown_pct (TRIPPED, re-arms by itself), trigger (REDUCE_ONLY)"
    assert latches_text(pb.Event(latches=latches)) == \
        "daily_drawdown_pct (TRIPPED), trigger (REDUCE_ONLY)"  # an event says not


@pytest.mark.parametrize("json_mode", [False, True])
def test_a_deregistration_sent_again_after_a_lost_answer_claims_no_retirement(
        json_mode: bool, capsys) -> None:  # noqa: ANN001
    """Review 57b: the first answer lost, the second said none was removed, and essctl
    printed "deregistered": the first try may have removed it, or there was none (a typo
    past the 1,000 listed)."""
    listed = pb.GetStateResponse(heartbeats=[pb.HeartbeatRegistration(executor_id="other")],
                                 heartbeats_registered=1001)  # x9999 may be past them
    sidecar = ScriptedSidecar(GetState=[listed], Heartbeat=[
        LATE, pb.HeartbeatResponse(state=pb.STATE_ARMED, deregistered=False)])
    args = argparse.Namespace(executor="x9999", scope=Scope.parse("strategy:momo"),
                              yes=True)
    assert run_deregister(args, sidecar, Output(json_mode=json_mode)) == Exit.DONE
    said = capsys.readouterr().out
    if json_mode:
        assert json.loads(said)["result"] == "none_left"
    else:
        assert said.startswith("no heartbeat registration is left for x9999 on"
                               " STRATEGY:momo"), said
        assert "or there was none" in said and "deregistered" not in said


def test_an_optional_field_a_sidecar_did_not_send_is_null_in_json() -> None:
    """Review 57c: an older sidecar never says whether a deregistration removed anything;
    `--json` showed "deregistered": false, as if it had said none was."""
    assert to_json(pb.HeartbeatResponse(state=pb.STATE_ARMED))["deregistered"] is None
    assert to_json(pb.HeartbeatResponse(deregistered=False))["deregistered"] is False
    assert to_json(pb.ScopeState())["since"] is None  # an unset message, as before


@pytest.mark.parametrize("tls, cert, hint", [
    (False, None, "is it serving TLS? then pass --tls"),
    (True, None, "does it ask for a client certificate? then pass --tls-cert and --tls-key"),
    (True, "me.pem", "is it running? check --target / ESS_TARGET)"),
])
def test_a_closed_socket_is_explained_by_what_tls_was_asked(tls, cert, hint):
    """Review 58c: with --tls and no client certificate, a sidecar asking for one closed the
    socket, and essctl said only to check that it was running."""
    from ess_sidecar.essctl.connection import Options  # noqa: PLC0415
    options = Options(target="ess.example:50051", token="", tls=tls, tls_ca=None,
                      tls_cert=cert, tls_key=cert, tls_server_name=None, timeout=5.0)
    said = describe(Refusal(grpc.StatusCode.UNAVAILABLE,
                            "failed to connect to all addresses; Socket closed"), options)
    assert hint in said
    assert ("client certificate" in said) == (tls and cert is None)
