"""WatchState served by the fan-out process (`watch.fanout_uds`): a real sidecar, its
real child, watchers on both, compared message for message; the sidecar's admission
and errors; the child killed, the sidecar killed, the sidecar stopped."""

from __future__ import annotations

import os
import queue
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ess.v1 import guard_pb2 as pb
from ess.v1 import guard_pb2_grpc as pb_grpc
from ess_sidecar.adapters.auth.tokens import new_token, tokens_file_line
from ess_sidecar.adapters.descriptors import ready
from ess_sidecar.adapters.grpc.fanout import SNAPSHOTS_AT_ONCE
from ess_sidecar.domain.access import Role
from ess_sidecar.testing import SERVICE, SidecarProcess, until

HEARTBEAT = pb.WATCH_EVENT_KIND_HEARTBEAT
CURRENT = "(the sidecar's epoch)"  # a request's epoch, filled in by the test


def fanout_config(workdir: Path, extra: str = "") -> str:
    return f'[watch]\nfanout_uds = "{workdir / "fan.sock"}"\nheartbeat_interval_s = 0.2\n{extra}'


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="ess-fanout-e2e-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def sidecar(workdir: Path) -> Iterator[SidecarProcess]:
    process = SidecarProcess(workdir, fanout_config(workdir)).start()
    yield process
    process.stop()


def fanout_target(workdir: Path) -> str:
    return f"unix:{workdir / 'fan.sock'}"


def wait_fanout_serving(target: str, timeout_s: float = 20.0) -> None:
    """Health on the fan-out's socket says SERVING (its feed is up), within a deadline."""
    with grpc.insecure_channel(target) as channel:
        check = health_pb2_grpc.HealthStub(channel).Check

        def serving() -> bool:
            try:
                return check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=1,
                             wait_for_ready=True).status == health_pb2.HealthCheckResponse.SERVING
            except grpc.RpcError:
                return False
        until(serving, f"the fan-out SERVING on {target}", timeout_s)


class Watcher:
    """A WatchState stream read by a thread into a queue; `upto(version)` is what came
    until a message of that version or later (heartbeats left out)."""

    def __init__(self, target: str, request: pb.WatchStateRequest,
                 metadata: tuple[tuple[str, str], ...] = ()) -> None:
        self.channel = grpc.insecure_channel(target)
        self.call = pb_grpc.GuardServiceStub(self.channel).WatchState(request, metadata=metadata)
        self.messages: queue.Queue[pb.WatchStateResponse | grpc.RpcError] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for message in self.call:
                self.messages.put(message)
        except grpc.RpcError as error:
            self.messages.put(error)

    def next(self, timeout_s: float = 20.0) -> pb.WatchStateResponse | grpc.RpcError:
        return self.messages.get(timeout=timeout_s)

    def upto(self, version: int) -> list[tuple]:
        """Until a message says every transition up to `version` was sent (a heartbeat
        included: a watcher of some scopes may have none of that version)."""
        seen = []
        while True:
            message = self.next()
            assert not isinstance(message, grpc.RpcError), message
            if message.kind != HEARTBEAT:
                seen.append((message.kind, message.scope.kind, message.scope.id, message.state,
                             message.version, message.reason, message.epoch))
            if message.version >= version and message.kind != pb.WATCH_EVENT_KIND_SNAPSHOT:
                return seen

    def ended(self) -> grpc.RpcError:
        while not isinstance(message := self.next(), grpc.RpcError):
            pass
        return message

    def close(self) -> None:
        self.call.cancel()
        self.channel.close()


def strategy(name: str) -> pb.Scope:
    return pb.Scope(kind=pb.SCOPE_KIND_STRATEGY, id=name)


def resume_epoch(target: str) -> str:
    """The epoch a watcher resumes with, read as one reads it: from a snapshot's end."""
    watcher = Watcher(target, pb.WatchStateRequest())
    try:
        while (message := watcher.next()).kind != pb.WATCH_EVENT_KIND_SNAPSHOT_END:
            assert not isinstance(message, grpc.RpcError), message
        return message.epoch
    finally:
        watcher.close()


def storm(stub: pb_grpc.GuardServiceStub, names: list[str]) -> int:
    """A Trigger, then a forced Reset, of each; the version after the last."""
    version = 0
    for name in names:
        version = stub.Trigger(pb.TriggerRequest(scope=strategy(name), reason=f"stop {name}"),
                               timeout=10).state_version
        version = stub.Reset(pb.ResetRequest(scope=strategy(name), reason="go", force=True),
                             timeout=10).state_version
    return version


def test_a_watcher_of_the_fanout_gets_what_a_watcher_of_the_sidecar_gets(
        sidecar: SidecarProcess, workdir: Path) -> None:
    with grpc.insecure_channel(sidecar.uds_target) as channel:
        stub = pb_grpc.GuardServiceStub(channel)
        stub.Trigger(pb.TriggerRequest(scope=strategy("before"), reason="latched"), timeout=10)
        wait_fanout_serving(fanout_target(workdir))
        epoch = resume_epoch(sidecar.uds_target)
        requests = [pb.WatchStateRequest(), pb.WatchStateRequest(scopes=[strategy("s3")]),
                    pb.WatchStateRequest(from_version=1, epoch=epoch)]
        pairs = [(Watcher(sidecar.uds_target, r), Watcher(fanout_target(workdir), r))
                 for r in requests]
        try:
            for direct, fanned in pairs:  # each at its SNAPSHOT_END before the storm: the
                assert fanned.upto(1) == direct.upto(1)  # same starting point for both
            last = storm(stub, [f"s{n}" for n in range(6)])
            for direct, fanned in pairs:
                assert fanned.upto(last) == direct.upto(last)
            # A watcher that joins after the storm resumes from the middle of it.
            middle = last - 5
            late = pb.WatchStateRequest(from_version=middle, epoch=epoch)
            direct, fanned = Watcher(sidecar.uds_target, late), Watcher(fanout_target(workdir),
                                                                        late)
            pairs.append((direct, fanned))
            resumed = fanned.upto(last)  # no transition meanwhile: the same replay
            assert resumed == direct.upto(last)
            assert resumed[0][4] == middle + 1
            while (beat := fanned.next()).kind != HEARTBEAT:  # its SNAPSHOT_END
                assert (beat.kind, beat.version) == (pb.WATCH_EVENT_KIND_SNAPSHOT_END, last)
            assert beat.version == last  # nothing more: heartbeats, of the latest version
        finally:
            for direct, fanned in pairs:
                direct.close()
                fanned.close()


@pytest.mark.parametrize("request_, code, says", [
    (pb.WatchStateRequest(scopes=[strategy(" momo")]), grpc.StatusCode.INVALID_ARGUMENT,
     "scopes[0].id"),
    (pb.WatchStateRequest(from_version=10_000, epoch=CURRENT), grpc.StatusCode.OUT_OF_RANGE,
     "ahead of this sidecar's version"),
    (pb.WatchStateRequest(from_version=1, epoch="not-this"), grpc.StatusCode.OUT_OF_RANGE,
     "epoch"),
    (pb.WatchStateRequest(from_version=1), grpc.StatusCode.OUT_OF_RANGE,
     "or was another state file's"),
], ids=["look-alike scope", "version ahead", "another epoch", "no epoch"])
def test_what_the_sidecar_refuses_the_fanout_refuses_alike(
        sidecar: SidecarProcess, workdir: Path, request_, code, says) -> None:
    wait_fanout_serving(fanout_target(workdir))
    if request_.epoch == CURRENT:
        request_ = pb.WatchStateRequest(from_version=request_.from_version,
                                        epoch=resume_epoch(sidecar.uds_target))
    for target in (sidecar.uds_target, fanout_target(workdir)):
        watcher = Watcher(target, request_)
        error = watcher.ended()
        watcher.close()
        assert (error.code(), says in error.details()) == (code, True), (target, error)


def test_the_fanout_serves_watch_state_only(sidecar: SidecarProcess, workdir: Path) -> None:
    wait_fanout_serving(fanout_target(workdir))
    with grpc.insecure_channel(fanout_target(workdir)) as channel:
        stub = pb_grpc.GuardServiceStub(channel)
        for call in (lambda: stub.Trigger(pb.TriggerRequest(scope=strategy("x")), timeout=5),
                     lambda: stub.GetState(pb.GetStateRequest(), timeout=5)):
            with pytest.raises(grpc.RpcError) as raised:
                call()
            assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_with_tokens_a_watcher_of_the_fanout_is_admitted_as_by_the_sidecar(
        workdir: Path) -> None:
    tokens = {role.value: new_token() for role in Role}
    (workdir / "tokens.toml").write_text("[tokens]\n" + "\n".join(
        tokens_file_line(name, Role(name), token) for name, token in tokens.items()) + "\n")
    process = SidecarProcess(workdir, f'[auth]\ntokens_file = "{workdir / "tokens.toml"}"\n'
                             + fanout_config(workdir)).start()
    try:
        wait_fanout_serving(fanout_target(workdir))
        for role, token in tokens.items():
            metadata = (("authorization", f"Bearer {token}"),)
            watcher = Watcher(fanout_target(workdir), pb.WatchStateRequest(), metadata)
            first = watcher.next()
            watcher.close()
            if role == "reconciler":
                assert first.code() == grpc.StatusCode.PERMISSION_DENIED, first
            else:
                assert first.kind == pb.WATCH_EVENT_KIND_SNAPSHOT_END, (role, first)
        for metadata in ((), (("authorization", f"Bearer {new_token()}"),)):
            watcher = Watcher(fanout_target(workdir), pb.WatchStateRequest(), metadata)
            assert watcher.ended().code() == grpc.StatusCode.UNAUTHENTICATED
            watcher.close()
        with grpc.insecure_channel(process.uds_target) as channel:  # the role at the sidecar
            stub = pb_grpc.GuardServiceStub(channel)
            watcher_md = (("authorization", f"Bearer {tokens['watcher']}"),)
            stub.GetState(pb.GetStateRequest(), metadata=watcher_md, timeout=5)
            with pytest.raises(grpc.RpcError) as raised:
                stub.Trigger(pb.TriggerRequest(scope=strategy("x")), metadata=watcher_md,
                             timeout=5)
            assert raised.value.code() == grpc.StatusCode.PERMISSION_DENIED
    finally:
        process.stop()


def test_a_fanout_killed_is_started_again_and_its_watchers_resume(
        sidecar: SidecarProcess, workdir: Path) -> None:
    wait_fanout_serving(fanout_target(workdir))
    watcher = Watcher(fanout_target(workdir), pb.WatchStateRequest())
    assert watcher.next().kind == pb.WATCH_EVENT_KIND_SNAPSHOT_END
    (child,) = sidecar.children_named("grpc.fanout")
    os.kill(child, signal.SIGKILL)
    assert watcher.ended().code() == grpc.StatusCode.UNAVAILABLE
    watcher.close()
    until(lambda: sidecar.children_named("grpc.fanout") not in ([], [child]),
          "a new fan-out process")
    wait_fanout_serving(fanout_target(workdir))
    with grpc.insecure_channel(sidecar.uds_target) as channel:
        last = storm(pb_grpc.GuardServiceStub(channel), ["after", "again"])
    watcher = Watcher(fanout_target(workdir), pb.WatchStateRequest(
        from_version=last - 2, epoch=resume_epoch(sidecar.uds_target)))
    assert [m[4] for m in watcher.upto(last)] == [last - 1, last]
    watcher.close()


def test_watchers_of_the_sidecar_filling_its_places_cut_no_fanout_watcher_off(
        workdir: Path) -> None:
    """The fan-out's feed and snapshots take places the sidecar keeps for them: with
    watch.max_watchers taken by watchers of the sidecar itself (reading, so none is
    stuck), a watcher of the fan-out still joins, and so does a restarted fan-out's feed.
    Before, its snapshot was refused UNAVAILABLE, and a restarted child stayed blind."""
    process = SidecarProcess(workdir, fanout_config(workdir, "max_watchers = 2\n")).start()
    direct: list[Watcher] = []
    try:
        wait_fanout_serving(fanout_target(workdir))
        direct = [Watcher(process.uds_target, pb.WatchStateRequest()) for _ in range(2)]
        for watcher in direct:
            assert watcher.next().kind == pb.WATCH_EVENT_KIND_SNAPSHOT_END
        third = Watcher(process.uds_target, pb.WatchStateRequest())
        assert third.ended().code() == grpc.StatusCode.UNAVAILABLE  # the sidecar's are full
        third.close()
        (child,) = process.children_named("grpc.fanout")
        for round_ in ("first", "restarted"):
            fanned = Watcher(fanout_target(workdir), pb.WatchStateRequest())
            assert fanned.next().kind == pb.WATCH_EVENT_KIND_SNAPSHOT_END, round_
            with grpc.insecure_channel(process.uds_target) as channel:
                last = storm(pb_grpc.GuardServiceStub(channel), [round_])
            assert [m[4] for m in fanned.upto(last)] == [last - 1, last], round_
            for watcher in direct:  # reading all along: still in their places
                assert [m[4] for m in watcher.upto(last)][-2:] == [last - 1, last]
            if round_ == "first":
                os.kill(child, signal.SIGKILL)
                assert fanned.ended().code() == grpc.StatusCode.UNAVAILABLE
                until(lambda: process.children_named("grpc.fanout") not in ([], [child]),
                      "a new fan-out process")
                wait_fanout_serving(fanout_target(workdir))
            fanned.close()
    finally:
        for watcher in direct:
            watcher.close()
        process.stop()


def test_the_fanout_ends_with_its_sidecar_killed(sidecar: SidecarProcess,
                                                 workdir: Path) -> None:
    wait_fanout_serving(fanout_target(workdir))
    (child,) = sidecar.children_named("grpc.fanout")
    exited = os.pidfd_open(child)
    try:
        sidecar.kill()  # SIGKILL: the pipe it held open on the fan-out's stdin ends
        assert ready(exited, 20), "the fan-out outlived its sidecar"
    finally:
        os.close(exited)


def test_a_stopped_sidecar_ends_the_fanouts_watchers_with_where_to_resume(
        workdir: Path) -> None:
    process = SidecarProcess(workdir, fanout_config(workdir)).start()
    try:
        wait_fanout_serving(fanout_target(workdir))
        with grpc.insecure_channel(process.uds_target) as channel:
            last = storm(pb_grpc.GuardServiceStub(channel), ["x"])
        watcher = Watcher(fanout_target(workdir), pb.WatchStateRequest())
        assert watcher.upto(last)[-1][4] == last
        (child,) = process.children_named("grpc.fanout")
        exited = os.pidfd_open(child)
        try:
            assert process.terminate() == 0
            assert ready(exited, 0), "the fan-out outlived its sidecar's stop"
        finally:
            os.close(exited)
        error = watcher.ended()
        watcher.close()
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert f"resubscribe with from_version={last}" in error.details(), error.details()
        assert "shutting down" in error.details()
    finally:
        process.stop()


def test_a_sidecar_gone_quiet_is_not_vouched_for(sidecar: SidecarProcess,
                                                  workdir: Path) -> None:
    """Stopped (SIGSTOP: a hung event loop, a frozen VM), the sidecar sends its watchers
    nothing, heartbeats included; the fan-out must not go on sending its own for it. Its
    watchers are ended once the feed has been quiet two heartbeat intervals and a second
    (1.4 s here), and served again once the sidecar is back."""
    wait_fanout_serving(fanout_target(workdir))
    watcher = Watcher(fanout_target(workdir), pb.WatchStateRequest())
    assert watcher.next().kind == pb.WATCH_EVENT_KIND_SNAPSHOT_END
    assert watcher.next().kind == HEARTBEAT
    assert sidecar.process is not None
    os.kill(sidecar.process.pid, signal.SIGSTOP)
    try:
        error = watcher.ended()
    finally:
        os.kill(sidecar.process.pid, signal.SIGCONT)
    watcher.close()
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert "the sidecar sent nothing for 1.4 s" in error.details(), error.details()
    wait_fanout_serving(fanout_target(workdir))
    watcher = Watcher(fanout_target(workdir), pb.WatchStateRequest())
    assert watcher.next().kind == pb.WATCH_EVENT_KIND_SNAPSHOT_END
    watcher.close()


def test_the_fanouts_cap_refuses_before_any_snapshot_naming_its_setting(
        workdir: Path) -> None:
    """Review 50c: past the cap, each watcher got its whole snapshot, then UNAVAILABLE
    naming the sidecar's watch.max_watchers (the sidecar's work for nothing)."""
    process = SidecarProcess(workdir, fanout_config(workdir, "fanout_max_watchers = 2\n"))
    process.start()
    try:
        wait_fanout_serving(fanout_target(workdir))
        watching = [Watcher(fanout_target(workdir), pb.WatchStateRequest()) for _ in range(2)]
        for watcher in watching:
            assert watcher.next().kind == pb.WATCH_EVENT_KIND_SNAPSHOT_END
        refused = Watcher(fanout_target(workdir), pb.WatchStateRequest())
        first = refused.next()
        assert isinstance(first, grpc.RpcError), first
        assert first.code() == grpc.StatusCode.UNAVAILABLE
        assert "watch.fanout_max_watchers" in first.details(), first.details()
        for watcher in (*watching, refused):
            watcher.close()
    finally:
        process.stop()


def test_a_restarted_fanout_admits_whom_the_sidecar_admits(workdir: Path) -> None:
    """Review 50c: a restarted child read the tokens file again, edited since, and let
    in a token the sidecar refused."""
    tokens = workdir / "tokens.toml"
    tokens.write_text("[tokens]\n" + tokens_file_line("dash", Role.WATCHER, new_token()) + "\n")
    process = SidecarProcess(workdir, f'[auth]\ntokens_file = "{tokens}"\n'
                             + fanout_config(workdir)).start()
    try:
        wait_fanout_serving(fanout_target(workdir))
        late = new_token()
        with tokens.open("a") as f:
            f.write(tokens_file_line("late", Role.WATCHER, late) + "\n")
        (child,) = process.children_named("grpc.fanout")
        os.kill(child, signal.SIGKILL)
        until(lambda: process.children_named("grpc.fanout") not in ([], [child]),
              "a new fan-out process")
        wait_fanout_serving(fanout_target(workdir))
        watcher = Watcher(fanout_target(workdir), pb.WatchStateRequest(),
                          (("authorization", f"Bearer {late}"),))
        assert watcher.ended().code() == grpc.StatusCode.UNAUTHENTICATED
        watcher.close()
    finally:
        process.stop()


def test_watchers_reading_nothing_neither_shut_others_out_nor_hold_the_stop(
        workdir: Path) -> None:
    """Review 50c: sixteen watchers that read nothing of a large snapshot held every
    place of the fan-out's snapshots for good; and a stop waited for the fan-out's grace
    after the sidecar's, past shutdown.timeout_s (exit 70). Here 2,000 trips of 3 KB
    reasons (6 MB of snapshot), SNAPSHOTS_AT_ONCE + 1 watchers that read one message."""
    process = SidecarProcess(workdir, "[server]\ngrace_s = 2.0\n[shutdown]\ntimeout_s = 3.5\n"
                             + fanout_config(workdir)).start()  # one grace fits, two not
    held: list[tuple[grpc.Channel, Any]] = []
    try:
        with grpc.insecure_channel(process.uds_target) as channel:
            stub = pb_grpc.GuardServiceStub(channel)
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda n: stub.Trigger(pb.TriggerRequest(
                    scope=strategy(f"big{n}"), reason="€" * 1024), timeout=60), range(2000)))
        wait_fanout_serving(fanout_target(workdir))
        for target in [fanout_target(workdir)] * (SNAPSHOTS_AT_ONCE + 1) + [process.uds_target]:
            channel = grpc.insecure_channel(target)
            call = pb_grpc.GuardServiceStub(channel).WatchState(pb.WatchStateRequest())
            assert next(call).kind == pb.WATCH_EVENT_KIND_SNAPSHOT  # then nothing is read
            held.append((channel, call))
        watcher = Watcher(fanout_target(workdir), pb.WatchStateRequest(scopes=[strategy("big7")]))
        assert [m[0] for m in watcher.upto(2000)] == [pb.WATCH_EVENT_KIND_SNAPSHOT,
                                                      pb.WATCH_EVENT_KIND_SNAPSHOT_END]
        watcher.close()
        exited = os.pidfd_open(process.children_named("grpc.fanout")[0])
        try:
            assert process.terminate() == 0, process.output()[-2000:]  # 70: overran
            assert ready(exited, 0)
        finally:
            os.close(exited)
        assert "Fatal Python error" not in process.output()  # review 50c: SIGABRT
        for channel, call in held[:SNAPSHOTS_AT_ONCE]:  # what was sent, then why it ended
            with pytest.raises(grpc.RpcError) as raised:
                for _ in call:
                    pass
            assert raised.value.code() == grpc.StatusCode.UNAVAILABLE, raised.value
    finally:
        for channel, call in held:
            call.cancel()
            channel.close()
        process.stop()
