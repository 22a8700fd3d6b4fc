"""The product as a user runs it: `ess-sidecar serve` driven through the generated stub."""

from __future__ import annotations

import itertools
import json
import os
import queue
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from collections.abc import Callable
from typing import TypeVar

import grpc
import pytest

from ess.v1 import guard_pb2 as pb
from ess_sidecar.testing import SidecarProcess
from tests.e2e.conftest import CONFIG, guard_stub, open_channel

pytestmark = pytest.mark.e2e

MOMO = pb.Scope(kind=pb.SCOPE_KIND_STRATEGY, id="momo")
ORDER_IDS = (f"e2e-{n}" for n in itertools.count(1))
T = TypeVar("T")


def order() -> pb.CheckOrderRequest:
    """The same order each time, under a client_order_id of its own (a reused one is a
    duplicate, and the state file keeps none across the restart these tests make)."""
    return pb.CheckOrderRequest(account="acc-1", strategy="momo", symbol="AAPL",
                                side=pb.SIDE_BUY, quantity=10, price=100,
                                client_order_id=f"{next(ORDER_IDS)}")


def watch_in_background(stub, request: pb.WatchStateRequest) -> queue.Queue:  # noqa: ANN001
    """Follow WatchState on a thread; messages (not heartbeats) arrive on the queue."""
    messages: queue.Queue = queue.Queue()

    def follow() -> None:
        try:
            for message in stub.WatchState(request):
                if message.kind != pb.WATCH_EVENT_KIND_HEARTBEAT:
                    messages.put(message)
        except grpc.RpcError as error:
            messages.put(error)

    threading.Thread(target=follow, daemon=True).start()
    return messages


def eventually(attempt: Callable[[], T], timeout: float = 10.0) -> T:
    """Retry `attempt` until it stops raising grpc.RpcError, within a deadline."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return attempt()
        except grpc.RpcError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_trip_deny_watch_reset_and_survive_sigkill(sidecar_process: SidecarProcess) -> None:
    sidecar_process.start()
    with open_channel(sidecar_process, uds=True) as channel:
        stub = guard_stub(channel)
        watched = watch_in_background(stub, pb.WatchStateRequest())
        assert watched.get(timeout=10).kind == pb.WATCH_EVENT_KIND_SNAPSHOT_END
        assert stub.CheckOrder(order()).allowed

        report = stub.ReportMetric(pb.ReportMetricRequest(
            scope=MOMO, metric=pb.METRIC_DAILY_DRAWDOWN_PCT, value=6))
        assert report.tripped and report.state == pb.STATE_TRIPPED
        decision = stub.CheckOrder(order())
        assert not decision.allowed and decision.reason == pb.DECISION_REASON_SCOPE_TRIPPED
        seen = watched.get(timeout=10)
        assert (seen.kind, seen.scope, seen.state, seen.version) == (
            pb.WATCH_EVENT_KIND_TRANSITION, MOMO, pb.STATE_TRIPPED, report.state_version)

        with pytest.raises(grpc.RpcError) as refused:
            stub.Reset(pb.ResetRequest(scope=MOMO, reason="drawdown understood"))
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "cooldown" in refused.value.details()
        stub.ReportMetric(pb.ReportMetricRequest(scope=MOMO, metric=pb.METRIC_DAILY_DRAWDOWN_PCT,
                                                 value=2))  # the condition clears
        reset = eventually(lambda: stub.Reset(pb.ResetRequest(scope=MOMO, reason="fixed")))
        assert reset.state == pb.STATE_ARMED
        assert watched.get(timeout=10).state == pb.STATE_ARMED
        assert stub.CheckOrder(order()).allowed

        trip = stub.Trigger(pb.TriggerRequest(scope=MOMO, reason="latched"))
    sidecar_process.kill()
    sidecar_process.start()
    with open_channel(sidecar_process) as channel:
        stub = guard_stub(channel)
        state = stub.GetState(pb.GetStateRequest())
        assert [(s.scope, s.state, s.reason) for s in state.scopes] == [
            (MOMO, pb.STATE_TRIPPED, "latched")]
        assert state.state_version == trip.state_version == 3
        assert stub.CheckOrder(order()).reason == pb.DECISION_REASON_SCOPE_TRIPPED
        events = stub.ListEvents(pb.ListEventsRequest()).events
        assert [e.version for e in events] == [3, 2, 1]
        after = stub.Trigger(pb.TriggerRequest(scope=pb.Scope(kind=pb.SCOPE_KIND_GLOBAL)))
        assert after.state_version == 4


def test_no_acknowledged_trip_is_lost_when_killed_mid_stream(
        sidecar_process: SidecarProcess) -> None:
    sidecar_process.start()
    acknowledged: list[tuple[str, int]] = []
    enough = threading.Event()

    def trigger_until_killed() -> None:
        with open_channel(sidecar_process, uds=True) as channel:
            stub = guard_stub(channel)
            for n in range(10_000):
                scope = pb.Scope(kind=pb.SCOPE_KIND_SYMBOL, id=f"S{n}")
                try:
                    reply = stub.Trigger(pb.TriggerRequest(scope=scope), timeout=5)
                except grpc.RpcError:
                    return
                acknowledged.append((scope.id, reply.state_version))
                if n == 40:
                    enough.set()

    client = threading.Thread(target=trigger_until_killed)
    client.start()
    assert enough.wait(timeout=30)
    sidecar_process.kill()  # while triggers are in flight
    client.join(timeout=30)
    sidecar_process.start()
    with open_channel(sidecar_process) as channel:
        state = guard_stub(channel).GetState(pb.GetStateRequest())
    latched = {s.scope.id: s.version for s in state.scopes if s.state == pb.STATE_TRIPPED}
    assert len(acknowledged) > 40
    for scope_id, version in acknowledged:
        assert latched.get(scope_id) == version, f"acknowledged trip {scope_id} was lost"
    assert state.state_version >= acknowledged[-1][1]


def test_sigterm_drains_and_exits_cleanly(sidecar_process: SidecarProcess) -> None:
    sidecar_process.start()
    with open_channel(sidecar_process) as channel:
        assert guard_stub(channel).CheckOrder(order()).allowed
    assert sidecar_process.terminate() == 0, sidecar_process.output()
    assert "ess-sidecar stopped" in sidecar_process.output()


def test_sighup_is_said_and_ignored(sidecar_process: SidecarProcess) -> None:
    """Review 41c: a SIGHUP (the usual reload, or a closed terminal) ended the sidecar at
    once, with no drain and no word; there is no reload."""
    sidecar_process.start()
    children = sidecar_process.children()
    for pid in (sidecar_process.process.pid, *children):  # a hangup reaches the syncer
        os.kill(pid, signal.SIGHUP)  # too
    deadline = time.monotonic() + 10
    while "SIGHUP ignored" not in sidecar_process.output():
        assert time.monotonic() < deadline and sidecar_process.process.poll() is None, \
            sidecar_process.output()
        time.sleep(0.01)
    with open_channel(sidecar_process) as channel:
        assert guard_stub(channel).CheckOrder(order()).allowed
    assert sidecar_process.children() == children  # the journal's syncer kept
    assert sidecar_process.terminate() == 0, sidecar_process.output()


def test_the_log_is_one_json_object_per_line_with_each_transition(
        sidecar_process: SidecarProcess) -> None:
    sidecar_process.start()
    with open_channel(sidecar_process) as channel:
        stub = guard_stub(channel)
        stub.CheckOrder(order())
        stub.Trigger(pb.TriggerRequest(scope=pb.Scope(kind=pb.SCOPE_KIND_STRATEGY, id="momo"),
                                       reason="desk halt"))
    assert sidecar_process.terminate() == 0
    lines = [json.loads(line) for line in sidecar_process.output().splitlines()]
    assert all({"time", "level", "event"} <= set(line) for line in lines)
    [transition] = [line for line in lines if line["event"] == "transition"]
    assert (transition["scope"], transition["state"], transition["version"],
            transition["reason"]) == ("STRATEGY:momo", "TRIPPED", 1, "desk halt")
    assert transition["actor"].startswith("unauthenticated@")


def test_check_config_names_the_bad_key(tmp_path) -> None:  # noqa: ANN001
    bad = tmp_path / "bad.toml"
    bad.write_text("[breakers.weekly_drawdown_pct]\nthreshold = 3\n")
    result = subprocess.run([sys.executable, "-m", "ess_sidecar", "check-config", str(bad)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "breakers.weekly_drawdown_pct.threshold" in result.stderr
    good = tmp_path / "good.toml"
    good.write_text("[breakers.daily_drawdown_pct]\nthreshold = 3\n")
    result = subprocess.run([sys.executable, "-m", "ess_sidecar", "check-config", str(good)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_serve_refuses_to_start_on_invalid_config(sidecar_process: SidecarProcess) -> None:
    sidecar_process.config.write_text("[limits]\nmax_symbol_exposure_pct = 70\n")
    result = subprocess.run([sys.executable, "-m", "ess_sidecar", "serve", "--config",
                             str(sidecar_process.config)], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2
    assert "limits.max_symbol_exposure_pct" in result.stderr


@pytest.mark.parametrize("event_loop", ["uvloop", "asyncio"])
def test_serves_on_the_event_loop_configured(tmp_path: Path, event_loop: str) -> None:
    """uvloop by default, the standard library's asyncio when asked: either answers checks
    and commands, over both sockets, and says which it runs on."""
    config = CONFIG if event_loop == "uvloop" \
        else f'{CONFIG}[server]\nevent_loop = "{event_loop}"\n'
    sidecar = SidecarProcess(tmp_path, config).start()
    try:
        for target in (sidecar.uds_target, sidecar.tcp_target):
            with grpc.insecure_channel(target) as channel:
                assert guard_stub(channel).CheckOrder(order(), timeout=10).allowed
        with open_channel(sidecar) as channel:
            stub = guard_stub(channel)
            stub.Trigger(pb.TriggerRequest(scope=MOMO, reason="loop test"), timeout=10)
            denied = stub.CheckOrder(order(), timeout=10)
            assert not denied.allowed and denied.blocking_scope == MOMO
        assert sidecar.terminate() == 0
        assert f"(event loop: {event_loop})" in sidecar.output()
    finally:
        sidecar.stop()


def test_a_standard_descriptor_closed_at_start_is_not_taken_by_a_file(tmp_path: Path) -> None:
    """Review 43k: started with `2>&-`, the state file's lock took descriptor 2, and gRPC's
    core, which writes its errors there itself, would write into it. It is /dev/null."""
    sidecar = SidecarProcess(tmp_path, CONFIG)
    sidecar.process = subprocess.Popen(
        [sys.executable, "-m", "ess_sidecar", "serve", "--config", str(sidecar.config),
         "--listen", sidecar.tcp_target, "--uds", str(sidecar.uds), "--state",
         str(sidecar.state)], stdout=subprocess.DEVNULL, preexec_fn=lambda: os.close(2))
    try:
        sidecar.wait_serving(20)
        assert os.readlink(f"/proc/{sidecar.process.pid}/fd/2") == os.devnull
        with open_channel(sidecar, uds=True) as channel:
            assert guard_stub(channel).CheckOrder(order(), timeout=10).allowed
        assert sidecar.terminate() == 0
    finally:
        sidecar.stop()


def test_a_uvloop_that_cannot_be_imported_refuses_to_start_naming_the_setting(
        tmp_path: Path) -> None:
    """Review 27: the ImportError escaped as a traceback (exit 1)."""
    blocked = tmp_path / "blocked" / "uvloop"
    blocked.mkdir(parents=True)
    (blocked / "__init__.py").write_text('raise ImportError("blocked by the test")\n')
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(blocked.parent), os.environ.get("PYTHONPATH", "")])}
    result = subprocess.run([sys.executable, "-m", "ess_sidecar", "serve", "--listen", "",
                             "--uds", str(tmp_path / "ess.sock"), "--state",
                             str(tmp_path / "ess.db")], capture_output=True, text=True,
                            timeout=60, env=environment)
    assert result.returncode == 2, result.stderr
    assert "server.event_loop" in result.stderr and "Traceback" not in result.stderr


def test_a_metrics_port_taken_refuses_to_start_naming_the_setting(tmp_path: Path) -> None:
    """Review 44d: the error named no setting, and a traceback followed it (the gRPC server
    was left started). The metrics port is claimed before anything starts."""
    import socket  # noqa: PLC0415
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "ess_sidecar", "serve", "--listen", "",
             "--uds", str(tmp_path / "ess.sock"), "--state", str(tmp_path / "ess.db"),
             "--metrics-listen", f"127.0.0.1:{port}"],
            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert f"telemetry.metrics_listen: cannot serve metrics on 127.0.0.1:{port}" \
        in result.stderr
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr


def test_example_config_is_valid() -> None:
    example = Path(__file__).resolve().parents[2] / "config" / "ess.example.toml"
    result = subprocess.run([sys.executable, "-m", "ess_sidecar", "check-config", str(example)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def test_watches_cancelled_by_their_clients_log_no_error(tmp_path: Path) -> None:
    """Every WatchState traced: a stream whose client hangs up used to be closed in another
    context, and OpenTelemetry logged "Failed to detach context" for each."""
    sidecar = SidecarProcess(tmp_path, "[telemetry]\ndefault_sample_ratio = 1.0\n").start()
    try:
        for target in (sidecar.uds_target, sidecar.tcp_target):
            with grpc.insecure_channel(target) as channel:
                stub = guard_stub(channel)
                for _ in range(5):
                    call = stub.WatchState(pb.WatchStateRequest())
                    next(call)
                    call.cancel()
                open_watch = stub.WatchState(pb.WatchStateRequest())
                next(open_watch)  # then the channel closes under it
        assert sidecar.terminate() == 0  # a clean stop: every cancelled call was handled
    finally:
        sidecar.stop()
    lines = [json.loads(line) for line in sidecar.output().splitlines()]
    errors = [line for line in lines if line["level"] in ("ERROR", "CRITICAL")]
    assert errors == [], errors[:2]


@pytest.mark.parametrize("which", ["state file", "state file seal", "journal seal"])
def test_a_state_file_that_cannot_be_written_is_found_before_serving(
        tmp_path: Path, which: str) -> None:
    """An immutable file (chattr +i: even root cannot write it) stands for a read-only or
    full disk: the sidecar must serve with GLOBAL tripped from the start, not find out at
    its first trip (review 30: with the journal's seal immutable it served, and allowed,
    until its first record failed; review 31: the same with the state file's seal)."""
    first = SidecarProcess(tmp_path, CONFIG).start()
    assert first.terminate() == 0
    assert shutil.which("chattr"), "chattr (e2fsprogs) is needed for this test"
    path = {"state file": first.state, "state file seal": Path(f"{first.state}.seal"),
            "journal seal": Path(f"{first.state}.journal.seal")}[which]
    assert path.exists()
    subprocess.run(["chattr", "+i", str(path)], check=True)
    try:
        sidecar = SidecarProcess(tmp_path, CONFIG).start()
        try:
            with open_channel(sidecar, uds=True) as channel:
                stub = guard_stub(channel)
                [scope] = stub.GetState(pb.GetStateRequest()).scopes
                assert scope.scope.kind == pb.SCOPE_KIND_GLOBAL
                assert scope.state == pb.STATE_TRIPPED, scope.reason
                assert ("cannot be synced" if which == "journal seal" else "not writable") \
                    in scope.reason
                decision = stub.CheckOrder(order())
                assert decision.reason == pb.DECISION_REASON_SCOPE_TRIPPED
        finally:
            sidecar.stop()
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


def kill_and_wait(pid: int) -> None:
    """SIGKILL a process that is not this one's child, and wait until it has exited."""
    exited = os.pidfd_open(pid)
    try:
        os.kill(pid, signal.SIGKILL)
        assert select.select([exited], [], [], 10)[0], f"{pid} outlived a SIGKILL"
    finally:
        os.close(exited)


def test_a_killed_journal_syncer_is_replaced_and_a_second_kill_within_a_minute_fails_closed(
        sidecar_process: SidecarProcess) -> None:
    """The syncer (a child process) makes the journal durable. Killed, it is replaced:
    the kill switch is still answered, durably (the Trigger's sync seals in the sidecar
    itself), and orders go on. Killed again within a minute of its replacement, it is not:
    the sidecar fails closed (its next wake finds the syncer gone, within one sync
    interval while orders flow), GLOBAL trips in memory and every order is denied. A
    restart starts a new syncer and replays the journal: the Trigger and every order
    allowed are there."""
    sidecar_process.start()
    [first] = sidecar_process.children()
    with open_channel(sidecar_process, uds=True) as channel:
        stub = guard_stub(channel)
        request = order()
        assert stub.CheckOrder(request).allowed
        allowed = [request.client_order_id]
        kill_and_wait(first)
        stop = pb.Scope(kind=pb.SCOPE_KIND_STRATEGY, id="other")
        assert stub.Trigger(pb.TriggerRequest(scope=stop, reason="after the kill")).state \
            == pb.STATE_TRIPPED
        request = order()
        assert stub.CheckOrder(request).allowed  # its record starts the replacement
        allowed.append(request.client_order_id)
        [second] = sidecar_process.children()
        assert second != first
        kill_and_wait(second)
        deadline = time.monotonic() + 10
        for n in itertools.count(1):  # an RPC a turn, no sleep; each order unlike the last
            request = order()
            request.quantity = n
            try:
                decision = stub.CheckOrder(request)
            except grpc.RpcError as error:  # the one whose record was refused
                assert error.code() == grpc.StatusCode.UNAVAILABLE, error
                break
            assert decision.allowed, "denied before the sidecar failed closed"
            allowed.append(request.client_order_id)
            assert time.monotonic() < deadline, "orders still allowed with no syncer"
        global_ = [s for s in stub.GetState(pb.GetStateRequest()).scopes
                   if s.scope.kind == pb.SCOPE_KIND_GLOBAL]
        assert [s.state for s in global_] == [pb.STATE_TRIPPED]
        assert "again within 60 s of its replacement" in global_[0].reason
        for _ in range(3):
            assert stub.CheckOrder(order()).reason == pb.DECISION_REASON_SCOPE_TRIPPED
    sidecar_process.kill()
    sidecar_process.start()
    with open_channel(sidecar_process, uds=True) as channel:
        stub = guard_stub(channel)
        state = stub.GetState(pb.GetStateRequest(include_working_orders=True))
        assert [(s.scope.id, s.state, s.reason) for s in state.scopes] == \
            [("other", pb.STATE_TRIPPED, "after the kill")]
        # Every order allowed, before the syncers died and after, was recorded before its
        # answer (a write(2): SIGKILL cannot take it), so it is working again.
        assert [w.client_order_id for w in state.working_orders] == allowed
        assert stub.CheckOrder(order()).allowed


def test_a_trigger_with_large_metadata_still_stops_trading(
        sidecar_process: SidecarProcess) -> None:
    """Review 29: gRPC's default refused calls whose metadata passed 8 KiB (some) and 16
    KiB (all) before any handler ran: a Trigger with a large W3C baggage, or a proxy's
    headers, was RESOURCE_EXHAUSTED and tripped nothing."""
    sidecar_process.start()
    with open_channel(sidecar_process, uds=True) as channel:
        stub = guard_stub(channel)
        for size in (16_000, 64_000):
            scope = pb.Scope(kind=pb.SCOPE_KIND_STRATEGY, id=f"big-{size}")
            reply = stub.Trigger(pb.TriggerRequest(scope=scope, reason="stop"),
                                 metadata=(("baggage", "a" * size),), timeout=10)
            assert reply.state == pb.STATE_TRIPPED


def test_metadata_of_many_entries_is_refused_before_any_handler(
        sidecar_process: SidecarProcess) -> None:
    """Review 43c: with 1 MiB of metadata allowed, HPACK's one-byte repeats of an indexed
    header made a 25 KB call decode to 25,000 entries: a client with no token grew the
    sidecar by gigabytes and held every check for up to a second. Past 64 KiB of metadata
    (gRPC counts 32 bytes an entry), a call is refused by the transport."""
    sidecar_process.start()
    with open_channel(sidecar_process, uds=True) as channel:
        stub = guard_stub(channel)
        with pytest.raises(grpc.RpcError) as refused:
            stub.Trigger(pb.TriggerRequest(scope=pb.Scope(kind=pb.SCOPE_KIND_GLOBAL)),
                         metadata=(("x-many", "1"),) * 3_000, timeout=10)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        state = stub.GetState(pb.GetStateRequest(), timeout=10)
        assert not state.scopes and state.state_version == 0
