"""A state file damaged while the sidecar was down: the restarted sidecar serves with GLOBAL
tripped, the reason naming what it found, and denies every order.

Each case trips ACCOUNT:acc-damage-x, SIGKILLs the sidecar (so the trip is still in the
WAL), damages what is on disk the way the issue lists, and restarts it.
"""

from __future__ import annotations

import json
import re
import resource
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest

from ess.v1 import guard_pb2 as pb
from ess_sidecar.testing import SidecarProcess
from tests.e2e.conftest import guard_stub, open_channel

pytestmark = pytest.mark.e2e

TRIPPED_ID = "acc-damage-x"
TRIPPED = pb.Scope(kind=pb.SCOPE_KIND_ACCOUNT, id=TRIPPED_ID)
GLOBAL = pb.Scope(kind=pb.SCOPE_KIND_GLOBAL)


def wal(state: Path) -> Path:
    return Path(f"{state}-wal")


def delete_wal(state: Path) -> None:
    wal(state).unlink()


def truncate_wal(state: Path) -> None:
    with open(wal(state), "r+b") as file:
        file.truncate(wal(state).stat().st_size // 2)


def garble_wal(state: Path) -> None:
    data = bytearray(wal(state).read_bytes())
    data[-64:] = bytes(b ^ 0xFF for b in data[-64:])  # the frame that commits the trip
    wal(state).write_bytes(bytes(data))


def delete_state_file(state: Path) -> None:
    state.unlink()


def flip_a_bit_in_the_scope_id(state: Path) -> None:
    conn = sqlite3.connect(state)  # the WAL into the file, where its bytes can be found
    try:
        assert conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0
    finally:
        conn.close()
    data = bytearray(state.read_bytes())
    at = data.find(TRIPPED_ID.encode())
    assert at >= 0
    data[at + len(TRIPPED_ID) - 1] ^= 0x01  # acc-damage-x becomes acc-damage-y
    state.write_bytes(bytes(data))


def edit_the_row(state: Path) -> None:
    """Un-trip the scope with the sqlite3 module, consistently: event and latch."""
    conn = sqlite3.connect(state)
    try:
        with conn:
            conn.execute("UPDATE events SET state = 1 WHERE scope_id = ?", (TRIPPED_ID,))
            conn.execute("DELETE FROM scopes WHERE scope_id = ?", (TRIPPED_ID,))
    finally:
        conn.close()


def delete_seal(state: Path) -> None:
    Path(f"{state}.seal").unlink()


def delete_all_but_the_state_file(state: Path) -> None:
    """What copying the state file alone elsewhere leaves: the trip was only in the WAL."""
    for suffix in ("-wal", ".seal", ".journal", ".journal.seal"):
        Path(f"{state}{suffix}").unlink()


LOST = r"has lost acknowledged transitions: the seal says version 1, the file (ends at 0|holds" \
    r" no schema)"
DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "WAL deleted": (delete_wal, LOST),
    "WAL truncated": (truncate_wal, LOST),
    "WAL garbled": (garble_wal, LOST),
    "state file deleted": (delete_state_file, r"is missing but its seal \S+\.seal shows it"
                                              r" was in use \(deleted after the first run\?\)"),
    "bit flipped in a stored scope id": (flip_a_bit_in_the_scope_id,
                                         r"is damaged: SQLite finds it corrupt"),
    "row edited by hand": (edit_the_row,
                           r"is damaged: event 1 does not match its hash chain"),
    "seal deleted": (delete_seal, r"is damaged: its seal \S+\.seal is missing \(deleted\?\)"),
    "WAL, seals and journal deleted": (delete_all_but_the_state_file,
                                       r"its seal \S+\.seal is missing"),
}


def order() -> pb.CheckOrderRequest:
    """An order on another account: only GLOBAL can deny it."""
    return pb.CheckOrderRequest(account="acc-other", strategy="momo", symbol="AAPL",
                                side=pb.SIDE_BUY, quantity=10, price=100,
                                client_order_id="damage-1")


@pytest.mark.parametrize("damage", DAMAGE.keys())
def test_damaged_state_starts_with_global_tripped_naming_it(sidecar_process: SidecarProcess,
                                                            damage: str) -> None:
    damage_state, found = DAMAGE[damage]
    sidecar_process.start()
    with open_channel(sidecar_process, uds=True) as channel:
        stub = guard_stub(channel)
        assert stub.CheckOrder(order()).allowed
        assert stub.Trigger(pb.TriggerRequest(scope=TRIPPED, reason="desk halt")).state_version == 1
    sidecar_process.kill()
    state = sidecar_process.state
    assert wal(state).stat().st_size > 0  # the trip is only in the WAL
    damage_state(state)

    sidecar_process.start()
    with open_channel(sidecar_process, uds=True) as channel:
        stub = guard_stub(channel)
        scopes = stub.GetState(pb.GetStateRequest()).scopes
        [(state_of_global, reason)] = [(s.state, s.reason) for s in scopes if s.scope == GLOBAL]
        assert state_of_global == pb.STATE_TRIPPED
        assert str(state) in reason and re.search(found, reason), reason
        # Review 57a: what the journal replays was told in "", the epoch of stores that
        # have no identity; the file unread, it is this process's own.
        assert all(s.epoch.startswith(("unread-", "volatile-")) for s in scopes), scopes
        decision = stub.CheckOrder(order())
        assert not decision.allowed and decision.reason == pb.DECISION_REASON_SCOPE_TRIPPED
        with pytest.raises(grpc.RpcError) as refused:  # nothing here to resume to
            stub.Reset(pb.ResetRequest(scope=GLOBAL, reason="looks fine", force=True))
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "tripped at start-up" in refused.value.details()


def test_an_undamaged_state_after_sigkill_keeps_the_trip_and_nothing_else(
        sidecar_process: SidecarProcess) -> None:
    sidecar_process.start()
    with open_channel(sidecar_process, uds=True) as channel:
        guard_stub(channel).Trigger(pb.TriggerRequest(scope=TRIPPED, reason="desk halt"))
    sidecar_process.kill()
    sidecar_process.start()
    with open_channel(sidecar_process, uds=True) as channel:
        scopes = guard_stub(channel).GetState(pb.GetStateRequest()).scopes
    assert [(s.scope, s.state, s.reason) for s in scopes] == [
        (TRIPPED, pb.STATE_TRIPPED, "desk halt")]


def trip_and_kill(sidecar_process: SidecarProcess) -> Path:
    sidecar_process.start()
    with open_channel(sidecar_process, uds=True) as channel:
        guard_stub(channel).Trigger(pb.TriggerRequest(scope=TRIPPED, reason="desk halt"))
    sidecar_process.kill()
    return sidecar_process.state


def last_record_start(journal: bytes) -> int:
    """Where the journal's last record starts (records are `length (4) | chain (16) |
    payload`): a cut there leaves whole records that verify."""
    offset = start = 0
    while offset < len(journal):
        start, offset = offset, offset + 20 + int.from_bytes(journal[offset:offset + 4], "big")
    return start


def restarted_scopes(sidecar_process: SidecarProcess) -> dict[str, tuple[int, str]]:
    sidecar_process.start()
    with open_channel(sidecar_process, uds=True) as channel:
        scopes = guard_stub(channel).GetState(pb.GetStateRequest()).scopes
    return {s.scope.id or "GLOBAL": (s.state, s.reason) for s in scopes}


def reseal(sidecar_process: SidecarProcess) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ess_sidecar", "reseal", "--config", str(sidecar_process.config),
         "--state", str(sidecar_process.state)], capture_output=True, text=True, timeout=60)


def test_a_garbled_journal_starts_with_global_tripped_naming_it(
        sidecar_process: SidecarProcess) -> None:
    state = trip_and_kill(sidecar_process)
    journal = Path(f"{state}.journal")
    data = bytearray(journal.read_bytes())
    data[len(data) // 2] ^= 0x10
    journal.write_bytes(bytes(data))
    scopes = restarted_scopes(sidecar_process)
    assert scopes["GLOBAL"][0] == pb.STATE_TRIPPED
    assert re.search(r"journal \S+\.journal is damaged", scopes["GLOBAL"][1]), scopes
    assert scopes[TRIPPED_ID][0] == pb.STATE_TRIPPED  # the store still has it
    with open_channel(sidecar_process, uds=True) as channel:
        stub = guard_stub(channel)  # the store works, but memory lacks the journal's book
        with pytest.raises(grpc.RpcError) as refused:
            stub.Reset(pb.ResetRequest(scope=GLOBAL, reason="resume anyway", force=True))
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "cannot be reset in this process" in refused.value.details()
        assert not stub.CheckOrder(order()).allowed


def test_an_operator_reseals_accepted_damage_and_the_trips_stay(
        sidecar_process: SidecarProcess) -> None:
    state = trip_and_kill(sidecar_process)
    delete_seal(state)
    assert restarted_scopes(sidecar_process)["GLOBAL"][0] == pb.STATE_TRIPPED
    running = reseal(sidecar_process)
    assert running.returncode == 1 and "in use" in running.stderr  # never under a sidecar
    sidecar_process.kill()
    done = reseal(sidecar_process)
    assert done.returncode == 0, done.stderr
    assert "resealed" in done.stdout.lower() or "sealed" in done.stdout, done.stdout
    scopes = restarted_scopes(sidecar_process)
    assert scopes[TRIPPED_ID] == (pb.STATE_TRIPPED, "desk halt")
    # Review 8: without its seal, nothing vouches that the WAL still holds every version
    # acknowledged: the reseal trips GLOBAL for what may be gone, and an operator resets it.
    assert scopes["GLOBAL"][0] == pb.STATE_TRIPPED
    assert "seal was missing or unreadable" in scopes["GLOBAL"][1]


def test_a_reset_naming_what_the_damaged_start_showed_lifts_nothing_after_the_reseal(
        sidecar_process: SidecarProcess) -> None:
    """Review 54c: the damaged start's GLOBAL trip (never stored) and the reseal's trip
    (stored) had one version, and a reset naming what the damaged start had shown lifted
    the reseal's trip, which says to check every scope first. The damaged start left its
    version in the version floor, and the reseal numbers its trip past it: a reset naming
    what was shown is refused, sent with its epoch or, as a client that knows none sends
    it, without."""
    delete_seal(trip_and_kill(sidecar_process))
    sidecar_process.start()
    with open_channel(sidecar_process, uds=True) as channel:
        (shown,) = global_states(guard_stub(channel))
    assert shown.state == pb.STATE_TRIPPED and shown.epoch  # never stored
    sidecar_process.kill()
    assert (done := reseal(sidecar_process)).returncode == 0, done.stderr
    sidecar_process.start()
    with open_channel(sidecar_process, uds=True) as channel:
        stub = guard_stub(channel)
        (resealed,) = global_states(stub)
        assert resealed.version > shown.version and resealed.epoch.startswith("store-")
        assert resealed.reason != shown.reason
        for epoch in (shown.epoch, ""):
            with pytest.raises(grpc.RpcError) as refused:
                stub.Reset(pb.ResetRequest(scope=GLOBAL, reason="disk checked", force=True,
                                           expected_version=shown.version,
                                           expected_epoch=epoch))
            assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION
            assert f"changed since version {shown.version}" in (refused.value.details() or "")
        assert global_states(stub) == [resealed]
        reset = stub.Reset(pb.ResetRequest(scope=GLOBAL, reason="every scope checked",
                                           force=True, expected_version=resealed.version,
                                           expected_epoch=resealed.epoch))
        assert reset.state == pb.STATE_ARMED and global_states(stub) == []


def test_a_reseal_of_a_file_copied_alone_never_gives_a_version_shown_before_again(
        sidecar_process: SidecarProcess) -> None:
    """Review 57a: the state file's WAL, seal and journal lost together (what copying
    ess.db alone leaves), the reseal kept the file's identity, so its epoch, but numbered
    from what the file held: its GLOBAL trip ("check every scope") took version 3, shown
    before the loss as another GLOBAL trip, and a reset naming what the operator had seen
    lifted it; a watcher resumed past it, never told. A reseal that loses tells the
    store's versions in a new epoch."""
    sidecar_process.start()
    with open_channel(sidecar_process, uds=True) as channel:  # v1, written to the file by
        guard_stub(channel).Trigger(pb.TriggerRequest(scope=TRIPPED, reason="desk halt"))
    assert sidecar_process.terminate() == 0  # the clean stop's checkpoint
    sidecar_process.start()
    with open_channel(sidecar_process, uds=True) as channel:
        stub = guard_stub(channel)
        stub.Trigger(pb.TriggerRequest(scope=pb.Scope(kind=pb.SCOPE_KIND_SYMBOL, id="B"),
                                       reason="in the WAL only"))
        stub.Trigger(pb.TriggerRequest(scope=GLOBAL, reason="fat finger"))
        (shown,) = global_states(stub)
    assert shown.version == 3 and shown.epoch.startswith("store-")
    sidecar_process.kill()
    delete_all_but_the_state_file(sidecar_process.state)
    sidecar_process.start()  # damaged: its fail-closed trip told as version 2 (the floor)
    sidecar_process.kill()
    assert reseal(sidecar_process).returncode == 0  # its trip took 3, the lost GLOBAL's
    sidecar_process.start()
    with open_channel(sidecar_process, uds=True) as channel:
        stub = guard_stub(channel)
        (resealed,) = global_states(stub)
        assert resealed.version == shown.version  # numbered again: the number alone
        assert resealed.epoch.startswith("store-") and resealed.epoch != shown.epoch
        with pytest.raises(grpc.RpcError) as refused:
            stub.Reset(pb.ResetRequest(scope=GLOBAL, reason="the fat finger I saw",
                                       force=True, expected_version=shown.version,
                                       expected_epoch=shown.epoch))
        assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION
        assert global_states(stub) == [resealed]
        resumed = stub.WatchState(pb.WatchStateRequest(from_version=shown.version,
                                                       epoch=shown.epoch), timeout=10)
        with pytest.raises(grpc.RpcError) as resync:
            next(iter(resumed))
        assert resync.value.code() is grpc.StatusCode.OUT_OF_RANGE


def test_versions_told_on_a_full_disk_are_never_given_to_other_transitions(
        sidecar_process: SidecarProcess) -> None:
    """Known gap 5, for a client that sends a version without its epoch (review 29's
    `Reset(expected_version, force)`): a sidecar started on a full disk (a file-size limit
    here) cannot open its store, fails closed and tells GLOBAL's trip and a lost trip
    with versions no store holds. Restarted with room, it gave those versions to the next
    transitions, another operator's halts, and a reset naming what had been shown lifted
    them. The version floor, written in place where the disk had no room, is numbered
    past."""
    lost_scope = pb.Scope(kind=pb.SCOPE_KIND_ACCOUNT, id="acc-lost")
    sidecar_process.start()
    with open_channel(sidecar_process, uds=True) as channel:
        guard_stub(channel).Trigger(pb.TriggerRequest(scope=TRIPPED, reason="desk halt"))
    assert sidecar_process.terminate() == 0
    sidecar_process.file_size = 600  # the seal and the floor in place, no page
    sidecar_process.start()
    with open_channel(sidecar_process, uds=True) as channel:
        stub = guard_stub(channel)
        with pytest.raises(grpc.RpcError) as lost:
            stub.Trigger(pb.TriggerRequest(scope=lost_scope, reason="fat finger, resume"))
        assert lost.value.code() is grpc.StatusCode.UNAVAILABLE
        shown = {s.scope.id or "GLOBAL": s for s in stub.GetState(pb.GetStateRequest()).scopes}
    assert shown["GLOBAL"].epoch and shown[lost_scope.id].epoch  # neither stored
    sidecar_process.kill()
    sidecar_process.file_size = None
    sidecar_process.start()
    with open_channel(sidecar_process, uds=True) as channel:
        stub = guard_stub(channel)
        for scope in (GLOBAL, lost_scope):
            stub.Trigger(pb.TriggerRequest(scope=scope, reason="DO NOT RESUME"))
        halts = {s.scope.id or "GLOBAL": s for s in stub.GetState(pb.GetStateRequest()).scopes}
        for name, scope in (("GLOBAL", GLOBAL), (lost_scope.id, lost_scope)):
            assert halts[name].version > max(s.version for s in shown.values())
            with pytest.raises(grpc.RpcError) as refused:
                stub.Reset(pb.ResetRequest(scope=scope, reason="saw it", force=True,
                                           expected_version=shown[name].version))
            assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION
            assert f"changed since version {shown[name].version}" in refused.value.details()
        assert {s.scope.id or "GLOBAL": s for s in stub.GetState(pb.GetStateRequest()).scopes
                } == halts
    assert "told versions up to" in sidecar_process.output()


def global_states(stub) -> list[pb.ScopeState]:  # noqa: ANN001
    return [s for s in stub.GetState(pb.GetStateRequest()).scopes
            if s.scope.kind == pb.SCOPE_KIND_GLOBAL]


def test_a_reseal_cannot_launder_an_untripped_row_past_the_journal(
        sidecar_process: SidecarProcess) -> None:
    """Rows edited by hand to un-trip a scope, then resealed: the reseal trips GLOBAL in
    the store for the events that no longer match their chain (review 37g), and the
    journal still holds the trip, so the two disagree: GLOBAL stays tripped."""
    edit_the_row(trip_and_kill(sidecar_process))
    assert reseal(sidecar_process).returncode == 0
    scopes = restarted_scopes(sidecar_process)
    assert scopes["GLOBAL"][0] == pb.STATE_TRIPPED
    assert "event(s) did not match their chain" in scopes["GLOBAL"][1]
    assert "disagree on the latched state of ACCOUNT:acc-damage-x" in sidecar_process.output()


def test_another_sidecars_journal_beside_the_state_file_is_damage(
        sidecar_process: SidecarProcess, tmp_path: Path) -> None:
    """Review 29: the start compared only the versions of the latched scopes, so a journal
    and seal copied from another sidecar whose trip of the same scope had the same version
    were accepted, and their trip served: a halt became reduce-only and let a sell out."""
    state = trip_and_kill(sidecar_process)  # version 1: ACCOUNT:acc-damage-x, HALT
    (tmp_path / "other").mkdir()
    other = SidecarProcess(tmp_path / "other", sidecar_process.config.read_text())
    other.start()
    try:
        with open_channel(other, uds=True) as channel:
            assert guard_stub(channel).Trigger(pb.TriggerRequest(
                scope=TRIPPED, reason="another desk", mode=pb.TRIGGER_MODE_REDUCE_ONLY,
            )).state_version == 1
    finally:
        other.kill()
    for suffix in (".journal", ".journal.seal"):
        Path(f"{state}{suffix}").write_bytes(Path(f"{other.state}{suffix}").read_bytes())
    scopes = restarted_scopes(sidecar_process)
    assert scopes["GLOBAL"][0] == pb.STATE_TRIPPED
    assert "says it is the journal of another state store" in scopes["GLOBAL"][1]


def test_another_sidecars_journal_is_damage_even_where_the_store_pruned_its_history(
        tmp_path: Path) -> None:
    """Review 31: with `keep_events` set, the store's history no longer covered the
    journal's gap, so the start took the store's latched state on top of a journal copied
    in from another sidecar, and served that sidecar's book: here, a long position that let
    this account's reduce-only sells through. The journal is chained from the store's own
    identity: another store's is damage, and a reseal cuts all of it."""
    config = "[limits]\nexposure_enabled = false\n[store]\nkeep_events = 1\n"
    (tmp_path / "ours").mkdir()
    (tmp_path / "other").mkdir()
    ours = SidecarProcess(tmp_path / "ours", config).start()
    other = SidecarProcess(tmp_path / "other", config).start()
    try:
        with open_channel(other, uds=True) as channel:  # a long of 1,000 on the account
            stub = guard_stub(channel)
            buy = order()
            buy.quantity, buy.client_order_id = 1000, "other-1"
            assert stub.CheckOrder(buy).allowed
            stub.ReportFill(pb.ReportFillRequest(
                account="acc-other", strategy="momo", symbol="AAPL", side=pb.SIDE_BUY,
                quantity=1000, price=100, client_order_id="other-1", fill_id="venue-1"))
            assert stub.CheckOrder(buy).reason == pb.DECISION_REASON_DUPLICATE_ORDER
        other.kill()
        with open_channel(ours, uds=True) as channel:
            stub = guard_stub(channel)
            for reason in ("first", "second", "third"):  # history pruned to the latest
                stub.Trigger(pb.TriggerRequest(scope=TRIPPED, reason=reason))
            stub.Trigger(pb.TriggerRequest(scope=pb.Scope(
                kind=pb.SCOPE_KIND_ACCOUNT, id="acc-other"), reason="flat: reduce only",
                mode=pb.TRIGGER_MODE_REDUCE_ONLY))
        ours.kill()
        for suffix in (".journal", ".journal.seal"):
            Path(f"{ours.state}{suffix}").write_bytes(
                Path(f"{other.state}{suffix}").read_bytes())
        scopes = restarted_scopes(ours)
        assert scopes["GLOBAL"][0] == pb.STATE_TRIPPED
        assert "says it is the journal of another state store" in scopes["GLOBAL"][1]
        with open_channel(ours, uds=True) as channel:
            sell = order()
            sell.side = pb.SIDE_SELL
            assert not guard_stub(channel).CheckOrder(sell).allowed
        ours.kill()
        done = reseal(ours)
        assert done.returncode == 0, done.stderr
        assert "0 records kept and sealed" in done.stdout, done.stdout
        assert "GLOBAL tripped: journal records were lost" in done.stdout, done.stdout
        scopes = restarted_scopes(ours)  # the store's trips, none of the other's book
        assert scopes["GLOBAL"][0] == pb.STATE_TRIPPED
        assert scopes["acc-other"][0] == pb.STATE_REDUCE_ONLY
        with open_channel(ours, uds=True) as channel:
            stub = guard_stub(channel)
            stub.Reset(pb.ResetRequest(scope=GLOBAL, reason="checked every scope", force=True))
            sell = order()
            sell.side = pb.SIDE_SELL  # no long here to reduce: the other's is not ours
            assert stub.CheckOrder(sell).reason == pb.DECISION_REASON_REDUCE_ONLY
    finally:
        other.stop()
        ours.stop()


def whole_records(journal: Path) -> int:
    data, offset, count = journal.read_bytes(), 0, 0
    while len(data) - offset >= 20:
        end = offset + 20 + int.from_bytes(data[offset:offset + 4], "big")
        if end > len(data):
            break
        offset, count = end, count + 1
    return count


def test_what_a_killed_sidecar_wrote_is_sealed_by_its_syncer_so_a_cut_is_found(
        tmp_path: Path) -> None:
    """Adversarial review, stop 32: the records of a sidecar killed within its sync
    interval were acknowledged but sealed by nobody, so a journal cut at a record boundary
    lost them unseen, and a second order on an account was allowed past its cap of one.
    The syncer outlives the kill and seals them, so that cut is damage."""
    config = ("[limits]\nexposure_enabled = false\nmax_working_orders_per_account = 1\n"
              "[store]\njournal_sync_interval_s = 1.0\n")
    sidecar = SidecarProcess(tmp_path, config).start()
    try:
        with open_channel(sidecar, uds=True) as channel:
            stub = guard_stub(channel)
            for n in range(20):
                first = order()
                first.account, first.client_order_id = f"acc-{n}", f"first-{n}"
                assert stub.CheckOrder(first).allowed
        assert len(sidecar.children()) == 1  # the syncer
        sidecar.kill()  # within the interval: and it waits for the syncer to have exited
        journal = Path(f"{sidecar.state}.journal")
        seal = json.loads(Path(f"{journal}.seal").read_text())
        assert seal["records"] == whole_records(journal) == 21  # and the start's ClockRead
        with open(journal, "r+b") as file:  # the last order's record cut off, whole
            file.truncate(last_record_start(journal.read_bytes()))
        scopes = restarted_scopes(sidecar)
        assert scopes["GLOBAL"][0] == pb.STATE_TRIPPED
        assert "seal says" in scopes["GLOBAL"][1], scopes["GLOBAL"][1]
    finally:
        sidecar.stop()


def test_a_reseal_that_finds_acknowledged_transitions_gone_trips_global_in_the_store(
        sidecar_process: SidecarProcess) -> None:
    """The trip lived only in the WAL, which is gone, and the journal that also held it is
    garbled: accepting the damage must not resume trading unseen. The reseal says which
    versions are missing and trips GLOBAL durably; only a Reset lifts it."""
    state = trip_and_kill(sidecar_process)
    delete_wal(state)
    journal = Path(f"{state}.journal")
    data = bytearray(journal.read_bytes())
    data[-8] ^= 0x10  # the trip's record, the last one
    journal.write_bytes(bytes(data))
    done = reseal(sidecar_process)
    assert done.returncode == 0, done.stderr
    assert "versions 1 to 1 were acknowledged and are missing" in done.stdout, done.stdout
    assert "GLOBAL tripped" in done.stdout, done.stdout
    sidecar_process.start()
    with open_channel(sidecar_process, uds=True) as channel:
        stub = guard_stub(channel)
        scopes = {s.scope.id or "GLOBAL": (s.state, s.reason)
                  for s in stub.GetState(pb.GetStateRequest()).scopes}
        assert scopes["GLOBAL"][0] == pb.STATE_TRIPPED, scopes
        assert "versions 1 to 1 were acknowledged but are not in the state file" \
            in scopes["GLOBAL"][1]
        assert not stub.CheckOrder(order()).allowed
        stub.Reset(pb.ResetRequest(scope=GLOBAL, reason="checked every scope", force=True))
        assert stub.CheckOrder(order()).allowed  # an operator resumed, deliberately
    sidecar_process.kill()
    assert restarted_scopes(sidecar_process) == {}  # the reset, like the trip, was stored


def test_a_journal_deleted_with_its_seal_is_damage_not_a_first_run(
        sidecar_process: SidecarProcess) -> None:
    state = trip_and_kill(sidecar_process)
    Path(f"{state}.journal").unlink()
    Path(f"{state}.journal.seal").unlink()
    scopes = restarted_scopes(sidecar_process)
    assert scopes["GLOBAL"][0] == pb.STATE_TRIPPED
    assert "its seal are missing, but the state file beside it was in use" in scopes["GLOBAL"][1]
    assert scopes[TRIPPED_ID][0] == pb.STATE_TRIPPED
    sidecar_process.kill()
    done = reseal(sidecar_process)  # the operator accepts: a fresh journal, an empty book
    assert done.returncode == 0 and "GLOBAL tripped: journal records were lost" in done.stdout
    scopes = restarted_scopes(sidecar_process)
    assert scopes[TRIPPED_ID] == (pb.STATE_TRIPPED, "desk halt")
    assert scopes["GLOBAL"][0] == pb.STATE_TRIPPED  # until an operator resumes, deliberately
    assert "working orders, fills and used order ids in them are forgotten" \
        in scopes["GLOBAL"][1]


@pytest.mark.parametrize("how", ["emptied", "cut at a record"])
def test_a_journal_whose_seal_is_gone_is_damage_and_its_reseal_trips_global(
        sidecar_process: SidecarProcess, how: str) -> None:
    """Review 8: a journal emptied (or cut at a record boundary) with its seal deleted
    started as a first run, and its reseal tripped nothing: the allowed order's id was
    allowed again after it."""
    sidecar_process.start()
    with open_channel(sidecar_process, uds=True) as channel:
        assert guard_stub(channel).CheckOrder(order()).allowed
    sidecar_process.kill()
    journal = Path(f"{sidecar_process.state}.journal")
    data = journal.read_bytes()
    journal.write_bytes(b"" if how == "emptied" else data[:last_record_start(data)])
    Path(f"{journal}.seal").unlink()
    if how == "emptied":
        scopes = restarted_scopes(sidecar_process)
        assert scopes["GLOBAL"][0] == pb.STATE_TRIPPED
        assert "has no seal" in scopes["GLOBAL"][1], scopes
        sidecar_process.kill()
    done = reseal(sidecar_process)
    assert done.returncode == 0 and "GLOBAL tripped: journal records were lost" in done.stdout
    sidecar_process.start()
    with open_channel(sidecar_process, uds=True) as channel:
        decision = guard_stub(channel).CheckOrder(order())  # the forgotten order's id
        assert not decision.allowed and decision.reason == pb.DECISION_REASON_SCOPE_TRIPPED


def test_a_reseal_of_a_state_file_alone_trips_global_for_what_its_wal_held(
        sidecar_process: SidecarProcess) -> None:
    """Review 8: the state file copied alone (WAL, seals and journal gone): the reseal said
    nothing was lost and the sidecar started without the trip that was in the WAL."""
    state = trip_and_kill(sidecar_process)
    conn = sqlite3.connect(state)  # the first trip in the file itself, as a checkpoint does
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()
    sidecar_process.start()
    with open_channel(sidecar_process, uds=True) as channel:  # the second only in the WAL
        guard_stub(channel).Trigger(pb.TriggerRequest(scope=pb.Scope(
            kind=pb.SCOPE_KIND_ACCOUNT, id="acc-other"), reason="second halt"))
    sidecar_process.kill()
    delete_all_but_the_state_file(state)
    done = reseal(sidecar_process)
    assert done.returncode == 0, done.stderr
    assert "seal was missing or unreadable" in done.stdout, done.stdout
    scopes = restarted_scopes(sidecar_process)
    assert "acc-other" not in scopes  # gone with the WAL: what GLOBAL's trip stands for
    assert scopes["GLOBAL"][0] == pb.STATE_TRIPPED, scopes
    assert scopes[TRIPPED_ID] == (pb.STATE_TRIPPED, "desk halt")


def test_a_reseal_that_cuts_journal_records_trips_global_in_the_store(
        sidecar_process: SidecarProcess) -> None:
    """Review 7: a flipped byte in the journal record of an allowed order; the reseal cut
    it and the start was ARMED with that order forgotten (its id allowed again)."""
    sidecar_process.start()
    with open_channel(sidecar_process, uds=True) as channel:
        stub = guard_stub(channel)
        assert stub.CheckOrder(order()).allowed
    sidecar_process.kill()
    journal = Path(f"{sidecar_process.state}.journal")
    data = bytearray(journal.read_bytes())
    data[-3] ^= 0x10  # inside the allowed order's record, the last one
    journal.write_bytes(bytes(data))
    done = reseal(sidecar_process)
    assert done.returncode == 0 and "GLOBAL tripped: journal records were lost" in done.stdout
    sidecar_process.start()
    with open_channel(sidecar_process, uds=True) as channel:
        stub = guard_stub(channel)
        decision = stub.CheckOrder(order())  # the forgotten order's id, again
        assert not decision.allowed and decision.reason == pb.DECISION_REASON_SCOPE_TRIPPED


def test_a_journal_that_cannot_be_written_fails_the_check_unavailable_and_trips(
        sidecar_process: SidecarProcess) -> None:
    """A full disk, as a file-size limit on the served process (writes fail EFBIG): the
    allowed order's record fails, so the check is UNAVAILABLE (unary) or an error for its
    request id (stream, which goes on), never UNKNOWN; GLOBAL trips and denies after."""
    sidecar_process.start()
    with open_channel(sidecar_process, uds=True) as channel:
        stub = guard_stub(channel)
        assert stub.CheckOrder(order()).allowed
        journal = Path(f"{sidecar_process.state}.journal")
        assert sidecar_process.process is not None
        limit = journal.stat().st_size + 16  # room for no further record
        resource.prlimit(sidecar_process.process.pid, resource.RLIMIT_FSIZE, (limit, limit))
        with pytest.raises(grpc.RpcError) as failed:
            stub.CheckOrder(pb.CheckOrderRequest(**_fields(order(), "full-1")))
        assert failed.value.code() == grpc.StatusCode.UNAVAILABLE, failed.value.details()
        # the sidecar failed closed, not unreachable: a fail-open client must not trade
        assert ("ess-failed-closed", "1") in failed.value.trailing_metadata()
        requests = [pb.CheckOrderStreamRequest(
            request_id=n, order=pb.CheckOrderRequest(**_fields(order(), f"full-s{n}")))
            for n in (1, 2)]
        answers = list(stub.CheckOrderStream(iter(requests), timeout=10))
        assert [a.request_id for a in answers] == [1, 2]
        for answer in answers:  # denied by the trip, or failed: never allowed
            assert answer.HasField("error") or not answer.decision.allowed, answer
            if answer.HasField("error"):
                assert answer.error.code == grpc.StatusCode.UNAVAILABLE.value[0], answer
        [scope] = [s for s in stub.GetState(pb.GetStateRequest()).scopes if s.scope == GLOBAL]
        assert scope.state == pb.STATE_TRIPPED and "journal" in scope.reason


def _fields(request: pb.CheckOrderRequest, client_order_id: str) -> dict:
    fields = {f.name: v for f, v in request.ListFields()}
    return {**fields, "client_order_id": client_order_id}
