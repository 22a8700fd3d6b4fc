"""essctl, the operator's command, run as a subprocess against a real sidecar."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
import trustme

from ess.v1 import guard_pb2 as pb
from ess_sidecar.adapters.auth.tokens import load_principals
from ess_sidecar.domain.access import Role
from ess_sidecar.testing import SidecarProcess
from tests.e2e.conftest import guard_stub
from tests.e2e.essctl_helpers import ESSCTL, RunningEssctl, clean_env, essctl, \
    essctl_at_a_terminal, essctl_json, restricted, tokens_file, trip

pytestmark = pytest.mark.e2e

LONG_COOLDOWN = "[policy]\nreset_cooldown_s = 600\n[limits]\nexposure_enabled = false\n"
NO_COOLDOWN = "[policy]\nreset_cooldown_s = 0\n[limits]\nexposure_enabled = false\n"
ORDER = ["--account", "acc-1", "--symbol", "AAPL", "--side", "buy", "--qty", "1",
         "--price", "100"]

StartSidecar = Callable[..., SidecarProcess]


@pytest.fixture
def start_sidecar() -> Iterator[StartSidecar]:
    """start_sidecar(config) -> a running SidecarProcess, stopped after the test."""
    started: list[tuple[SidecarProcess, Path]] = []

    def start(config: str = LONG_COOLDOWN) -> SidecarProcess:
        workdir = Path(tempfile.mkdtemp(prefix="ess-essctl-"))
        sidecar = SidecarProcess(workdir, config)
        started.append((sidecar, workdir))
        return sidecar.start()

    yield start
    for sidecar, workdir in started:
        sidecar.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def test_status_exits_0_when_all_armed_and_2_once_a_scope_is_tripped(
        start_sidecar: StartSidecar) -> None:
    target = start_sidecar().uds_target
    armed = essctl(target, "status")
    assert armed.returncode == 0, armed.stderr
    assert "GLOBAL ARMED, all scopes ARMED" in armed.stdout
    assert "daily_drawdown_pct" in armed.stdout  # the thresholds in force

    tripped = essctl(target, "trigger", "--scope", "Strategy:momo", "--reason",
                     "drawdown breach", "--code", "risk-violation")
    assert tripped.returncode == 0, tripped.stderr
    assert "STRATEGY:momo is TRIPPED (version 1)" in tripped.stdout

    human = essctl(target, "status")
    assert human.returncode == 2
    assert "STRATEGY:momo" in human.stdout and "drawdown breach" in human.stdout
    code, status = essctl_json(target, "status")
    assert code == 2 and status["all_armed"] is False and status["state_version"] == 1
    [momo] = status["scopes"]
    assert (momo["scope"], momo["state"], momo["reason"], momo["reason_code"]) == (
        "STRATEGY:momo", "TRIPPED", "drawdown breach", "RISK_VIOLATION")
    assert momo["actor"].startswith("unauthenticated@")
    assert momo["reset_allowed_at"] is not None


def test_status_says_which_latches_lift_by_themselves(start_sidecar: StartSidecar) -> None:
    """Review 55b: nothing an operator could read said whether a latch waits for a reset
    or is lifted by the timers once its breaker's evidence clears (auto_rearm)."""
    target = start_sidecar(LONG_COOLDOWN + "[breakers.daily_drawdown_pct]\nauto_rearm = true\n"
                           ).uds_target
    with grpc.insecure_channel(target) as channel:
        guard_stub(channel).ReportMetric(pb.ReportMetricRequest(
            scope=pb.Scope(kind=pb.SCOPE_KIND_STRATEGY, id="momo"),
            metric=pb.METRIC_DAILY_DRAWDOWN_PCT, value=6), timeout=10)
    trip(target, "strategy:momo")
    code, status = essctl_json(target, "status")
    [momo] = status["scopes"]
    assert code == 2 and [latch["name"] for latch in momo["latches"]] == [
        "daily_drawdown_pct", "trigger"]
    assert momo["auto_rearming_latches"] == ["daily_drawdown_pct"]
    human = essctl(target, "status")  # the table may wrap the cell (latches_text's own
    assert human.returncode == 2 and human.stdout.count("re-arms by") == 1, human.stdout
    assert "daily_drawdown_pct (TRIPPED, re-arms by" in human.stdout  # test: unit)


def test_trigger_never_waits_for_a_reason_nor_refuses_one_it_cannot_read(
        start_sidecar: StartSidecar) -> None:
    """The kill switch from a terminal: no --reason, or one in Latin-1 bytes (argv keeps
    them as surrogates), still stops."""
    target = start_sidecar().uds_target
    unexplained = essctl(target, "trigger", "--scope", "strategy:momo")
    assert unexplained.returncode == 0, unexplained.stderr
    latin1 = essctl(target, "trigger", "--scope", "strategy:other", "--reason",
                    "Soci\udce9t\udce9 halt")
    assert latin1.returncode == 0, latin1.stderr
    _, status = essctl_json(target, "status")
    reasons = {s["scope"]: s["reason"] for s in status["scopes"]}
    assert reasons == {"STRATEGY:momo": "essctl trigger: no reason given",
                       "STRATEGY:other": "Soci\ufffdt\ufffd halt"}


def test_trigger_with_a_token_no_header_can_carry_still_stops(
        start_sidecar: StartSidecar) -> None:
    """Review 37h: a zero-width space pasted into ESS_TOKEN made `essctl trigger --panic`
    a usage error (exit 64, nothing sent), even on a sidecar with authentication off. The
    stop goes out without the token, with a warning."""
    target = start_sidecar().uds_target
    stopped = essctl(target, "trigger", "--panic", token="ess_abc\u200bdef")
    assert stopped.returncode == 0, stopped.stderr
    assert "U+200B" in stopped.stderr and "sending the stop without it" in stopped.stderr
    assert restricted(target)["GLOBAL"]["state"] == "TRIPPED"


def test_trigger_panic_halts_global_with_cancel_and_flatten(
        start_sidecar: StartSidecar) -> None:
    target = start_sidecar().uds_target
    code, reply = essctl_json(target, "trigger", "--panic")
    assert code == 0
    assert (reply["scope"], reply["state"], reply["mode"]) == ("GLOBAL", "TRIPPED", "HALT")
    glob = restricted(target)["GLOBAL"]
    assert (glob["state"], glob["reason"], glob["reason_code"]) == (
        "TRIPPED", "panic", "USER_INITIATED")
    assert glob["directives"] == ["CANCEL_OPEN_ORDERS", "FLATTEN_POSITIONS"]


def test_trigger_names_the_known_id_a_stop_spelled_otherwise_left_trading(
        start_sidecar: StartSidecar) -> None:
    """Review 55f: accounts and strategies are case-sensitive, so a stop of ACC-2 left
    acc-2 trading, and essctl said only that ACC-2 was tripped. The stop is made as asked
    (exit 0), then essctl names what the sidecar knows under an id spelled alike, with the
    command that stops it, or says that nothing there names the id it stopped."""
    target = start_sidecar().uds_target
    with grpc.insecure_channel(target) as channel:
        stub = guard_stub(channel)
        stub.SyncPositions(pb.SyncPositionsRequest(account="acc-2", equity=1e6))
        assert stub.CheckOrder(pb.CheckOrderRequest(
            account="acc-2", strategy="Momo", symbol="AAPL", side=pb.SIDE_BUY, quantity=1,
            price=100, client_order_id="o-1")).allowed

        wrong = essctl(target, "trigger", "--scope", "account:ACC-2", "--reduce-only",
                       "--directive", "cancel-open-orders", "--reason", "desk: stop acc 2")
        assert wrong.returncode == 0, wrong.stderr
        assert "ACCOUNT:ACC-2 is REDUCE_ONLY" in wrong.stdout
        assert "ACCOUNT:acc-2 is known to the sidecar, trades, and was NOT stopped" \
            in wrong.stderr
        assert f"essctl --target {target} trigger --scope ACCOUNT:acc-2 --reduce-only" \
            " --directive cancel-open-orders --reason 'desk: stop acc 2'" in wrong.stderr
        assert stub.CheckOrder(pb.CheckOrderRequest(  # what the stop was meant for trades
            account="acc-2", strategy="Momo", symbol="AAPL", side=pb.SIDE_BUY, quantity=1,
            price=100, client_order_id="o-2")).allowed

    code, reply = essctl_json(target, "trigger", "--scope", "strategy:momo")
    assert code == 0 and reply["state"] == "TRIPPED"
    assert reply["spelled_alike"] == {"scope": "STRATEGY:momo", "unseen": True,
                                      "alike": ["STRATEGY:Momo"], "partial": False}
    trip(target, "strategy:Momo")  # the one that trades, stopped by its own name
    again = essctl(target, "trigger", "--scope", "strategy:MOMO")
    assert "STRATEGY:Momo, spelled like STRATEGY:MOMO, is TRIPPED already" in again.stderr
    assert "NOT stopped" not in again.stderr
    unseen = essctl(target, "trigger", "--scope", "strategy:nobody")
    assert unseen.returncode == 0, unseen.stderr
    assert "nothing in the sidecar names STRATEGY:nobody yet" in unseen.stderr
    exact = essctl(target, "trigger", "--scope", "account:acc-2")
    assert exact.returncode == 0 and "ACCOUNT:acc-2 is TRIPPED" in exact.stdout
    assert "NOT stopped" not in exact.stderr and "nothing in the sidecar" not in exact.stderr

    wrong_reset = essctl(target, "reset", "--scope", "strategy:MoMo", "--reason", "x", "--yes")
    assert wrong_reset.returncode == 0 and "STRATEGY:MoMo is ARMED; nothing to reset" in \
        wrong_reset.stdout
    assert "STRATEGY:Momo is TRIPPED: it differs from STRATEGY:MoMo" in wrong_reset.stderr
    assert f"essctl --target {target} reset --reason x --scope STRATEGY:Momo" \
        in wrong_reset.stderr
    assert "STRATEGY:MOMO is TRIPPED" in wrong_reset.stderr  # the stops, as asked
    # A reset spelled otherwise names what stays tripped (above: Momo, momo and MOMO).


def test_trigger_stops_whatever_codes_directives_or_flags_come_with_it(
        start_sidecar: StartSidecar) -> None:
    """Review 30: an operator who typed --code risk_violation, a directive essctl does not
    know, or --panic with --scope stopped nothing (exit 64). The stop goes out; what it
    could not carry is said on stderr and in its reason."""
    target = start_sidecar().uds_target
    spelled = essctl(target, "trigger", "--scope", "strategy:a", "--code", "RISK_VIOLATION",
                     "--directive", "Cancel_Open_Orders")
    assert spelled.returncode == 0, spelled.stderr
    assert spelled.stderr.startswith("essctl: nothing in the sidecar names STRATEGY:a"), \
        spelled.stderr  # the only remark: nothing traded under the id yet
    unknown = essctl(target, "trigger", "--scope", "strategy:b", "--reason", "halt b",
                     "--code", "fat-finger", "--directive", "cancel-everything")
    assert unknown.returncode == 0, unknown.stderr
    assert "unknown --code 'fat-finger': sent as user-initiated" in unknown.stderr
    assert "unknown --directive 'cancel-everything': left out" in unknown.stderr
    scopes = restricted(target)
    assert (scopes["STRATEGY:a"]["reason_code"], scopes["STRATEGY:a"]["directives"]) == (
        "RISK_VIOLATION", ["CANCEL_OPEN_ORDERS"])
    assert (scopes["STRATEGY:b"]["state"], scopes["STRATEGY:b"]["reason_code"]) == (
        "TRIPPED", "USER_INITIATED")
    assert scopes["STRATEGY:b"]["reason"].startswith("halt b (essctl: unknown --code")
    panic = essctl(target, "trigger", "--panic", "--scope", "strategy:c", "--reduce-only")
    assert panic.returncode == 0, panic.stderr
    assert "--scope STRATEGY:c: --panic halts GLOBAL" in panic.stderr
    glob = restricted(target)["GLOBAL"]
    assert (glob["state"], glob["directives"]) == (
        "TRIPPED", ["CANCEL_OPEN_ORDERS", "FLATTEN_POSITIONS"])
    assert essctl(target, "trigger", "--panic", "--scope", "global").returncode == 0


def test_trigger_sends_no_stop_it_cannot_place_and_says_so(
        start_sidecar: StartSidecar) -> None:
    """Review 39f: `--panic --scope $UNSET` (no value) sent no stop, and a refused stop
    (`--reason desk halt now` unquoted) never said it sent none. An option given no value
    is left out and said; words it cannot place are refused, saying no stop was sent:
    taken into the reason, a mistyped `--targt` or `—target` sent the stop to another
    sidecar, and a token typed after it went into the reason (reviews 39k, 39n). Nor may
    a repeated --scope or --target leave the last one alone standing, nor an option given
    again with no value drop the one given before it (stop 39 left it)."""
    target = start_sidecar().uds_target
    bare = essctl(target, "trigger", "--panic", "--scope", "--reason", "--code", "--scope",
                  "strategy:x", "--reason", "")
    assert bare.returncode == 0, bare.stderr
    for said in ("--reason given no value", "--code given no value",
                 "--scope STRATEGY:x: --panic halts GLOBAL"):  # two scopes: a panic
        assert said in bare.stderr
    assert restricted(target)["GLOBAL"]["state"] == "TRIPPED"
    again = essctl(target, "trigger", "--scope", "strategy:k", "--reason", "desk halt",
                   "--code", "risk-violation", "--reason", "--code", "--scope")
    assert again.returncode == 0, again.stderr  # a stray option kept what came before it
    kept = restricted(target)["STRATEGY:k"]
    assert (kept["reason"], kept["reason_code"]) == ("desk halt", "RISK_VIOLATION")
    for wrong in (["--reason", "desk", "halt"], ["--targt", "unix:/nowhere"],
                  ["\u2014target", "unix:/nowhere"], ["--tokn", "s3cr3t"],
                  ["--scope", "strategy:c"], ["--target", "unix:/nowhere"],
                  ["--reason", "-h"]):
        unsent = essctl(target, "trigger", "--scope", "strategy:b", *wrong)
        assert unsent.returncode == 64 and "NO STOP WAS SENT" in unsent.stderr, wrong
    for wrong in (["--reason", "\u2014target=unix:/nowhere"], ["--reason", "\u200b--panic"],
                  ["--reason", "\u2e3atarget=B"], ["--reason", "\u2800--target=B"]):
        unsent = essctl(target, "trigger", "--scope", "strategy:b", *wrong)  # review 39p
        assert unsent.returncode == 64 and "NO STOP WAS SENT" in unsent.stderr, wrong
    for wrong in (["--panic", "trigger", "--scope", "strategy:b"], ["Trigger", "--panic"],
                  ["triger", "--panic"], ["--panic", "-h"],
                  ["--targt", "B", "trigger", "--scope", "global"]):  # review 39r
        unsent = essctl(target, *wrong)
        assert unsent.returncode == 64 and "NO STOP WAS SENT" in unsent.stderr, wrong
    assert essctl(target, "reset", "--scope", "global", "--reason", "trigger",
                  "-h").returncode == 0
    assert "STRATEGY:b" not in restricted(target)
    assert essctl(target, "status", "extra").returncode == 64


def test_trigger_sent_while_the_sidecar_starts_waits_for_it_and_stops(tmp_path: Path) -> None:
    """Review 49f: a sidecar starting (it loads its state before it listens) refused the
    stop, and essctl gave up at once: the stop was never sent. It is sent again, waiting
    for the sidecar."""
    sidecar = SidecarProcess(tmp_path)  # not started: its address refuses connections
    stop = subprocess.Popen([*ESSCTL, "--target", sidecar.tcp_target, "trigger", "--panic",
                             "--reason", "sent during a restart"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                            env=clean_env())
    try:
        assert stop.stderr is not None
        said = stop.stderr.readline()  # written before it waits; at its exit if it does not
        assert "the stop is sent again, waiting up to 30 s" in said, said
        sidecar.start()
        out, err = stop.communicate(timeout=60)
        assert stop.returncode == 0, (out, err)
        with grpc.insecure_channel(sidecar.uds_target) as channel:
            [global_] = guard_stub(channel).GetState(pb.GetStateRequest()).scopes
        assert (global_.state, global_.reason) == (pb.STATE_TRIPPED, "sent during a restart")
    finally:
        stop.kill()
        sidecar.stop()


@pytest.mark.parametrize("how", ["an unreadable --scope", "a closed stderr and stdout",
                                 "no stdout or stderr at all"])
def test_trigger_panic_stops_with_an_unreadable_scope_or_nowhere_to_say_so(
        start_sidecar: StartSidecar, how: str) -> None:
    """Review 30: --panic with a --scope that fails the id rules ('strategy: momo') exited
    64 before anything was sent; with stderr a closed pipe, the notes essctl printed first
    ended it before the stop. The stop goes out, and exits 0."""
    target = start_sidecar().uds_target
    args = ["trigger", "--panic", "--scope", "strategy: momo", "--code", "typo"]
    if how == "an unreadable --scope":
        result = essctl(target, *args)
        assert result.returncode == 0, result.stderr
        assert "--scope 'strategy: momo' cannot be read: --panic halts GLOBAL" \
            in result.stderr
    elif how == "a closed stderr and stdout":
        with subprocess.Popen([*ESSCTL, "--target", target, *args], stdin=subprocess.DEVNULL,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              env=clean_env()) as essctl_process:
            essctl_process.stdout.close()  # nobody reads what it says
            essctl_process.stderr.close()
            assert essctl_process.wait(timeout=30) == 0
    else:  # started with both closed (`>&- 2>&-`, a bare daemon): Python has None there
        closed = ["sh", "-c", 'exec "$@" >&- 2>&-', "sh", *ESSCTL, "--target", target, *args]
        assert subprocess.run(closed, stdin=subprocess.DEVNULL, env=clean_env(),
                              timeout=30).returncode == 0
    assert restricted(target)["GLOBAL"]["state"] == "TRIPPED"
    without_panic = essctl(target, "trigger", "--scope", "strategy: momo")
    assert without_panic.returncode == 64 and "argument --scope" in without_panic.stderr


def test_reset_in_cooldown_is_refused_with_the_time_the_cooldown_ends(
        start_sidecar: StartSidecar) -> None:
    target = start_sidecar(LONG_COOLDOWN).uds_target
    trip(target)
    refused = essctl(target, "reset", "--scope", "strategy:momo", "--reason", "ok", "--yes")
    assert refused.returncode == 2, refused.stderr
    assert "REFUSED: STRATEGY:momo is in its reset cooldown until" in refused.stdout
    assert "cooldown ends at" in refused.stdout and "in 9m" in refused.stdout
    code, answer = essctl_json(target, "reset", "--scope", "strategy:momo", "--reason", "ok",
                               "--yes")
    assert code == 2 and answer["result"] == "refused"
    assert answer["cooldown_ends_at"] == restricted(target)["STRATEGY:momo"][
        "reset_allowed_at"]
    assert restricted(target)["STRATEGY:momo"]["state"] == "TRIPPED"


def test_reset_without_yes_and_without_a_terminal_changes_nothing(
        start_sidecar: StartSidecar) -> None:
    target = start_sidecar(NO_COOLDOWN).uds_target
    trip(target)
    result = essctl(target, "reset", "--scope", "strategy:momo", "--reason", "ok")
    assert result.returncode == 1
    assert "not confirmed: pass --yes" in result.stderr
    assert "The reset of STRATEGY:momo will clear" in result.stdout  # what it would clear
    assert "drawdown breach" in result.stdout
    assert restricted(target)["STRATEGY:momo"]["state"] == "TRIPPED"


@pytest.mark.parametrize("answer, code, state", [("y", 0, None), ("n", 1, "TRIPPED")])
def test_reset_at_a_terminal_asks_and_obeys_the_answer(
        start_sidecar: StartSidecar, answer: str, code: int, state: str | None) -> None:
    target = start_sidecar(NO_COOLDOWN).uds_target
    trip(target)
    exit_code, shown = essctl_at_a_terminal(
        target, "reset", "--scope", "strategy:momo", "--reason", "reviewed", answer=answer)
    assert "Reset of STRATEGY:momo: trading resumes. Go ahead?" in shown
    assert exit_code == code, shown
    assert restricted(target).get("STRATEGY:momo", {}).get("state") == state


def test_reset_at_a_terminal_whose_output_goes_nowhere_is_not_done(
        start_sidecar: StartSidecar) -> None:
    """Review 51c: with stdout a closed pipe, what the reset would clear and its question
    went nowhere, essctl waited, and a blind "y" resumed trading. It refuses instead."""
    target = start_sidecar(NO_COOLDOWN).uds_target
    trip(target)
    exit_code, shown = essctl_at_a_terminal(
        target, "reset", "--scope", "strategy:momo", "--reason", "reviewed", answer="y",
        stdout_read=False)
    assert exit_code == 1, shown
    assert "not confirmed: what it would change could not be shown" in shown, shown
    assert restricted(target)["STRATEGY:momo"]["state"] == "TRIPPED"


def test_reset_with_its_output_in_a_file_asks_at_the_terminal(start_sidecar: StartSidecar,
                                                               tmp_path: Path) -> None:
    """Review 51e: with FORCE_COLOR set, rich took a file for a terminal, the question went
    into it, and a blind "y" resumed trading. It is asked where a person sees it."""
    target = start_sidecar(NO_COOLDOWN).uds_target
    trip(target)
    exit_code, shown = essctl_at_a_terminal(
        target, "reset", "--scope", "strategy:momo", "--reason", "reviewed", answer="n",
        stdout_to=tmp_path / "out.txt", env={"FORCE_COLOR": "1"})
    assert exit_code == 1 and "Go ahead?" in shown, shown
    written = (tmp_path / "out.txt").read_text()
    assert "will clear" in written and "Go ahead?" not in written, written
    assert restricted(target)["STRATEGY:momo"]["state"] == "TRIPPED"


def test_reset_of_an_armed_scope_is_a_no_op(start_sidecar: StartSidecar) -> None:
    target = start_sidecar(NO_COOLDOWN).uds_target
    result = essctl(target, "reset", "--scope", "symbol:AAPL", "--reason", "ok")
    assert result.returncode == 0, result.stderr
    assert "SYMBOL:AAPL is ARMED; nothing to reset" in result.stdout
    assert essctl_json(target, "history")[1]["events"] == []
    trip(target)  # review 41c: a look-alike of it (a Cyrillic "о") was ARMED, unexplained
    result = essctl(target, "reset", "--scope", "strategy:m\u00f6mo", "--reason", "ok")
    assert result.returncode == 0 and "is ARMED; nothing to reset" in result.stdout
    assert "U+00F6 LATIN SMALL LETTER O WITH DIAERESIS" in result.stderr, result.stderr
    result = essctl(target, "history", "--scope", "strategy:m\u00f6mo")
    assert "no events" in result.stdout and "U+00F6" in result.stderr, result.stderr
    for command in (("reset", "--reason", "ok"), ("history",)):  # stop 61: refused now
        result = essctl(target, command[0], "--scope", "strategy:m\u043emo", *command[1:])
        assert result.returncode == 64, result
        assert 'reads as "momo" but has "\u043e" (U+043E CYRILLIC SMALL LETTER O)' \
            in result.stderr, result.stderr
    # a canonical look-alike's halt stops it: its reset is named, with the command
    assert essctl(target, "trigger", "--scope", "strategy:\u2206-hedge", "--reason",
                  "x").returncode == 0
    result = essctl(target, "reset", "--scope", "strategy:\u0394-hedge", "--reason", "ok")
    assert result.returncode == 0 and "is ARMED; nothing to reset" in result.stdout
    assert "STRATEGY:\u2206-hedge is TRIPPED: its id looks like STRATEGY:\u0394-hedge's, so it" \
        " stops that one's orders too; to reset it: essctl" in result.stderr, result.stderr
    # both tripped: a reset of one lifts it, and says the other still stops its orders
    assert essctl(target, "trigger", "--scope", "strategy:\u0394-hedge", "--reason",
                  "x").returncode == 0
    result = essctl(target, "reset", "--scope", "strategy:\u0394-hedge", "--reason", "ok",
                    "--yes")
    assert result.returncode == 0 and "STRATEGY:\u0394-hedge is ARMED" in result.stdout, result
    assert "STRATEGY:\u2206-hedge is TRIPPED: its id looks like STRATEGY:\u0394-hedge's, so it" \
        " stops that one's orders too; to reset it: essctl" in result.stderr, result.stderr
    assert restricted(target)["STRATEGY:\u2206-hedge"]["state"] == "TRIPPED"
    trip(target, "strategy:\u0394-hedge")
    code, answer = essctl_json(target, "reset", "--scope", "strategy:\u2206-hedge", "--reason",
                               "ok", "--yes")
    assert (code, answer["result"], answer["alike"]) == (0, "reset", ["STRATEGY:\u0394-hedge"])
    for blank in ("\u2800", "\u3164"):
        result = essctl(target, "reset", "--scope", "strategy:momo", "--reason", blank,
                        "--yes")
        assert result.returncode == 64 and "--reason" in result.stderr, result.stderr
        result = essctl(target, "orders", "clear", "--account", "acc-1", "--all",
                        "--reason", blank, "--yes")
        assert result.returncode == 64 and "--reason" in result.stderr, result.stderr
    assert restricted(target)["STRATEGY:momo"]["state"] == "TRIPPED"


def test_reset_with_yes_resumes_a_scope_once_the_cooldown_allows(
        start_sidecar: StartSidecar) -> None:
    target = start_sidecar(NO_COOLDOWN).uds_target
    trip(target)
    result = essctl(target, "reset", "--scope", "strategy:momo", "--reason", "risk reviewed",
                    "--yes")
    assert result.returncode == 0, result.stderr
    assert "STRATEGY:momo is ARMED (version 2)" in result.stdout
    assert essctl(target, "status").returncode == 0


def test_reset_of_one_latch_leaves_the_others(start_sidecar: StartSidecar) -> None:
    """An operator's REDUCE_ONLY and a breaker's halt on one scope are two latches: status
    lists both, and `reset --latch` lifts one, leaving the scope as the other says."""
    sidecar = start_sidecar(NO_COOLDOWN)
    target = sidecar.uds_target
    assert essctl(target, "trigger", "--scope", "strategy:momo", "--reason", "desk",
                  "--reduce-only").returncode == 0
    with grpc.insecure_channel(target) as channel:
        guard_stub(channel).ReportMetric(pb.ReportMetricRequest(
            scope=pb.Scope(kind=pb.SCOPE_KIND_STRATEGY, id="momo"),
            metric=pb.METRIC_DAILY_DRAWDOWN_PCT, value=6))
    code, state = essctl_json(target, "status")
    assert code == 2 and [(latch["name"], latch["state"]) for latch in
                          state["scopes"][0]["latches"]] == [
        ("trigger", "REDUCE_ONLY"), ("daily_drawdown_pct", "TRIPPED")]
    unknown = essctl(target, "reset", "--scope", "strategy:momo", "--reason", "x",
                     "--latch", "open_loss_pct", "--yes")
    assert unknown.returncode == 1 and "has no latch 'open_loss_pct'" in unknown.stderr
    result = essctl(target, "reset", "--scope", "strategy:momo", "--reason", "desk done",
                    "--latch", "trigger", "--yes")
    assert result.returncode == 0, result.stderr
    assert "STRATEGY:momo is TRIPPED" in result.stdout  # the drawdown's latch stays
    result = essctl(target, "reset", "--scope", "strategy:momo", "--reason", "reviewed",
                    "--latch", "daily_drawdown_pct", "--force", "--yes")
    assert result.returncode == 0 and "STRATEGY:momo is ARMED" in result.stdout, result


def test_history_lists_trigger_and_reset_newest_first_by_scope_and_limit(
        start_sidecar: StartSidecar) -> None:
    target = start_sidecar(NO_COOLDOWN).uds_target
    trip(target, "strategy:momo")
    trip(target, "symbol:AAPL")
    assert essctl(target, "reset", "--scope", "strategy:momo", "--reason", "reviewed",
                  "--yes").returncode == 0
    _, history = essctl_json(target, "history", "--scope", "strategy:momo", "--since", "1h")
    assert [(e["version"], e["previous_state"], e["state"], e["cause"], e["reason"])
            for e in history["events"]] == [
        (3, "TRIPPED", "ARMED", "RESET", "reviewed"),
        (1, "ARMED", "TRIPPED", "TRIGGER", "drawdown breach")]
    _, latest = essctl_json(target, "history", "--limit", "2")
    assert [e["version"] for e in latest["events"]] == [3, 2]
    assert latest["truncated"] is True  # review 36u: version 1 was left out, unsaid
    _, every = essctl_json(target, "history", "--limit", "3")
    assert [e["version"] for e in every["events"]] == [3, 2, 1] and not every["truncated"]
    cut = essctl(target, "history", "--limit", "1")
    assert "showing the newest 1; older events match too" in cut.stderr
    _, future = essctl_json(target, "history", "--since", "2999-01-01T00:00:00")
    assert future["events"] == []
    human = essctl(target, "history")
    assert human.returncode == 0 and "older events" not in human.stderr
    assert "TRIPPED → ARMED" in human.stdout and "TRIGGER (RISK_VIOLATION)" in human.stdout
    year_zero = essctl(target, "history", "--until", "0001-01-01T00:00:00+01:00")
    assert year_zero.returncode == 64 and "out of range in UTC" in year_zero.stderr


def test_status_and_history_mark_look_alike_scopes_and_show_directives_and_latches(
        start_sidecar: StartSidecar) -> None:
    """Review 36u: a halt of SYMBOL:АAPL (Cyrillic A) read as AAPL's in status and
    history, and history showed neither a panic's directives nor the latches left. Since
    stop 61 "АAPL" is refused; "АБВ" reads as no Latin id, but its "А" is still marked."""
    target = start_sidecar().uds_target
    assert essctl(target, "trigger", "--scope", "symbol:АБВ", "--reason", "x").returncode == 0
    assert essctl(target, "trigger", "--panic", "--reason", "desk panic").returncode == 0
    for command in ("status", "history"):
        shown = essctl(target, command)
        assert "SYMBOL:АБВ (not ASCII)" in shown.stdout, shown.stdout
        assert "U+0410 CYRILLIC CAPITAL LETTER A" in shown.stderr
    history = essctl(target, "history").stdout
    assert "CANCEL_OPEN_ORDERS, FLATTEN_POSITIONS" in history and "trigger (TRIPPED)" in history


def test_check_exits_0_when_allowed_and_2_when_denied(start_sidecar: StartSidecar) -> None:
    target = start_sidecar().uds_target
    allowed = essctl(target, "check", "--strategy", "momo", *ORDER)
    assert allowed.returncode == 0, allowed.stderr
    assert allowed.stdout.splitlines()[0].strip() == "ALLOWED"  # review 58c: said twice
    assert "order:           acc-1/momo BUY 1 AAPL @ 100" in allowed.stdout
    precise = essctl(target, "check", "--strategy", "momo", "--account", "acc-1", "--symbol",
                     "AAPL", "--side", "buy", "--qty", "1234567", "--price", "123.456789")
    assert "BUY 1234567 AAPL @ 123.456789" in precise.stdout, precise.stdout
    [coid] = [line.split()[-1] for line in allowed.stdout.splitlines()
              if line.startswith("client order id:")]  # made up, unique, and printed
    reused = essctl(target, "check", "--strategy", "momo", *ORDER, "--coid", coid)
    assert reused.returncode == 2 and "DENIED  DUPLICATE_ORDER" in reused.stdout
    assert f"client order id: {coid}" in reused.stdout
    trip(target)
    denied = essctl(target, "check", "--strategy", "momo", *ORDER)
    assert denied.returncode == 2
    assert "DENIED  SCOPE_TRIPPED" in denied.stdout
    assert "blocking scope:  STRATEGY:momo" in denied.stdout
    for number in ("inf", "nan", "-1"):  # review 55f: inf was sent, refused, exit 1
        unsent = essctl(target, "check", "--strategy", "momo", *ORDER[:-1], number)
        assert unsent.returncode == 64, (number, unsent.stderr)
        assert "must be a finite positive number" in unsent.stderr
    code, decision = essctl_json(target, "check", "--strategy", "momo", *ORDER, "--coid",
                                 "my-order-7")
    assert code == 2
    assert (decision["allowed"], decision["reason"], decision["blocking_scope"],
            decision["client_order_id"]) == (False, "SCOPE_TRIPPED", "STRATEGY:momo",
                                             "my-order-7")
    assert essctl(target, "check", "--strategy", "other", *ORDER).returncode == 0


def test_watch_follows_transitions_until_max_events(start_sidecar: StartSidecar) -> None:
    target = start_sidecar().uds_target
    trip(target, "symbol:OLD")
    watcher = RunningEssctl(target, "watch", "--json", "--max-events", "2")
    human = RunningEssctl(target, "watch", "--scope", "symbol:A")
    try:
        snapshot = watcher.until("snapshot_end")
        assert [(m["kind"], m.get("scope"), m["version"]) for m in snapshot] == [
            ("snapshot", "SYMBOL:OLD", 1), ("snapshot_end", None, 1)]
        assert human.lines.get(timeout=15).startswith("snapshot complete at version 1")
        trip(target, "symbol:A")
        trip(target, "symbol:B")
        moves = [watcher.next_json(), watcher.next_json()]
        assert [(m["kind"], m["version"], m["scope"], m["previous_state"], m["state"])
                for m in moves] == [("transition", 2, "SYMBOL:A", "ARMED", "TRIPPED"),
                                    ("transition", 3, "SYMBOL:B", "ARMED", "TRIPPED")]
        assert moves[0]["reason"] == "drawdown breach" and moves[0]["drill"] is False
        assert watcher.wait() == 0
        line = human.lines.get(timeout=15)
        assert "v2" in line and "SYMBOL:A" in line and "ARMED → TRIPPED" in line
        human.process.send_signal(signal.SIGINT)  # Ctrl-C ends a watch normally
        assert human.wait() == 0
    finally:
        watcher.stop()
        human.stop()


def test_watch_shows_a_transitions_directives(start_sidecar: StartSidecar) -> None:
    """Review 36f: an operator following `essctl watch` through a panic saw the halt but
    not that open orders are to be cancelled and positions flattened."""
    target = start_sidecar().uds_target
    human = RunningEssctl(target, "watch")
    try:
        assert human.lines.get(timeout=15).startswith("snapshot complete at version 0")
        result = essctl(target, "trigger", "--panic", "--reason", "desk panic")
        assert result.returncode == 0, result.stderr
        line = human.lines.get(timeout=15)
        assert "GLOBAL" in line and "CANCEL_OPEN_ORDERS, FLATTEN_POSITIONS" in line
    finally:
        human.stop()


def test_watch_resumes_after_a_sidecar_restart_without_losing_an_event(
        start_sidecar: StartSidecar) -> None:
    sidecar = start_sidecar()
    target = sidecar.uds_target
    watcher = RunningEssctl(target, "watch", "--json", "--max-events", "3")
    try:
        watcher.until("snapshot_end")
        trip(target, "symbol:A")
        seen = [watcher.next_json()]
        assert sidecar.terminate() == 0
        seen += watcher.until("reconnect")
        sidecar.start()
        trip(target, "symbol:B")  # replayed or live, depending on the reconnect's timing
        seen += watcher.until("resumed")
        trip(target, "symbol:C")
        seen += watcher.rest()
        assert watcher.wait() == 0
    finally:
        watcher.stop()
    transitions = [m for m in seen if m["kind"] == "transition"]
    assert [(m["version"], m["scope"]) for m in transitions] == [
        (1, "SYMBOL:A"), (2, "SYMBOL:B"), (3, "SYMBOL:C")]
    resumed = next(m for m in seen if m["kind"] == "resumed")
    assert resumed["from_version"] == 1
    assert "reconnecting" in "".join(watcher.stderr)


def test_watch_resyncs_from_a_fresh_snapshot_when_its_history_is_gone(
        start_sidecar: StartSidecar) -> None:
    """And calls out each scope it showed restricted that the fresh snapshot leaves out
    (review 55f: SYMBOL:A's trip, lost with the state files, went unsaid)."""
    sidecar = start_sidecar()
    target = sidecar.uds_target
    watcher = RunningEssctl(target, "watch", "--json", "--max-events", "2")
    human = RunningEssctl(target, "watch")
    try:
        watcher.until("snapshot_end")
        assert human.lines.get(timeout=15).startswith("snapshot complete at version 0")
        trip(target, "symbol:A")
        assert watcher.next_json()["version"] == 1
        assert "SYMBOL:A" in human.lines.get(timeout=15)
        assert sidecar.terminate() == 0
        for state_file in sidecar.workdir.glob("ess.db*"):  # a sidecar with no history
            state_file.unlink()
        sidecar.start()
        seen = watcher.until("resync")
        seen += watcher.until("snapshot_end")
        assert [(m["kind"], m.get("scope"), m.get("was")) for m in seen[-2:]] == [
            ("gone", "SYMBOL:A", "TRIPPED"), ("snapshot_end", None, None)]
        assert seen[-1]["version"] == 0
        gone = human.lines.get(timeout=15)
        assert gone.startswith("GONE  SYMBOL:A  was TRIPPED, ARMED in the new snapshot"), gone
        assert "essctl history --scope SYMBOL:A" in gone
        assert human.lines.get(timeout=15).startswith("snapshot complete at version 0")
        trip(target, "symbol:B")
        assert [(m["kind"], m["version"], m["scope"]) for m in watcher.rest()] == [
            ("transition", 1, "SYMBOL:B")]
        assert watcher.wait() == 0
    finally:
        watcher.stop()
        human.stop()
    assert "or was another state file's" in seen[-3]["message"]  # its own epoch


def test_watch_and_reset_tell_state_files_made_anew_from_those_they_saw(
        start_sidecar: StartSidecar) -> None:
    """Known gap 23 (review 56c): state files made anew number their versions from 1
    again. A watcher that reconnected once the new history had passed the version it saw
    resumed into it: it was never shown SYMBOL:B's trip, and SYMBOL:A's, lost with the
    old files, was never called out GONE. A reset naming a version shown before lifted
    the new files' trip of that number. Each store tells its versions in its own epoch."""
    sidecar, elsewhere = start_sidecar(), start_sidecar()
    target = sidecar.uds_target
    watcher = RunningEssctl(target, "watch", "--json", "--max-events", "3")
    try:
        watcher.until("snapshot_end")
        trip(target, "strategy:momo")  # v1: the trip an operator looks at
        trip(target, "symbol:A")  # v2
        assert [(m["version"], m["scope"]) for m in (watcher.next_json(),
                                                      watcher.next_json())] == [
            (1, "STRATEGY:momo"), (2, "SYMBOL:A")]
        with grpc.insecure_channel(target) as channel:
            shown = guard_stub(channel).GetState(pb.GetStateRequest(), timeout=10)
        (momo,) = [s for s in shown.scopes if s.scope.id == "momo"]
        assert momo.version == 1 and momo.epoch.startswith("store-"), momo
        for scope in ("strategy:momo", "symbol:B", "symbol:C"):  # versions 1 to 3 there
            trip(elsewhere.uds_target, scope)
        assert elsewhere.terminate() == 0 and sidecar.terminate() == 0
        watcher.until("reconnect")
        for state_file in sidecar.workdir.glob("ess.db*"):  # the files lost, and others
            state_file.unlink()  # put in their place: past the version the watcher saw
        for state_file in elsewhere.workdir.glob("ess.db*"):
            shutil.copy2(state_file, sidecar.workdir / state_file.name)
        sidecar.start()
        seen = watcher.until("resync")
        seen += watcher.until("snapshot_end")
        assert [(m["kind"], m.get("scope"), m.get("version")) for m in seen[-5:]] == [
            ("snapshot", "STRATEGY:momo", 1), ("snapshot", "SYMBOL:B", 2),
            ("snapshot", "SYMBOL:C", 3), ("gone", "SYMBOL:A", None),
            ("snapshot_end", None, 3)], seen
        assert "epoch" in seen[-6]["message"], seen[-6]
        with grpc.insecure_channel(target) as channel:
            stub = guard_stub(channel)
            with pytest.raises(grpc.RpcError) as refused:
                stub.Reset(pb.ResetRequest(
                    scope=momo.scope, reason="the fat finger I looked at", force=True,
                    expected_version=1, expected_epoch=momo.epoch), timeout=10)
            assert refused.value.code() is grpc.StatusCode.FAILED_PRECONDITION
            assert "was not sent with the epoch" in refused.value.details()
            (now,) = [s for s in stub.GetState(pb.GetStateRequest(), timeout=10).scopes
                      if s.scope.id == "momo"]
            assert now.state == pb.STATE_TRIPPED and now.epoch.startswith("store-")
            assert now.epoch != momo.epoch
            lifted = stub.Reset(pb.ResetRequest(
                scope=momo.scope, reason="looked again", force=True,
                expected_version=now.version, expected_epoch=now.epoch), timeout=10)
            assert lifted.state == pb.STATE_ARMED
        assert [m["scope"] for m in watcher.rest()] == ["STRATEGY:momo"]
        assert watcher.wait() == 0
    finally:
        watcher.stop()
    assert "starting from a fresh snapshot" in "".join(watcher.stderr)


def test_drill_passes_with_its_timings_and_is_audited_as_a_drill(
        start_sidecar: StartSidecar) -> None:
    target = start_sidecar(LONG_COOLDOWN).uds_target
    unconfirmed = essctl(target, "drill", "--scope", "global")
    assert unconfirmed.returncode == 1
    assert "halts real trading; pass --yes" in unconfirmed.stderr

    code, report = essctl_json(target, "drill", "--reason", "Q4 drill")
    assert code == 0, report
    assert report["verdict"] == "PASS" and report["scope"] == "STRATEGY:ess-drill"
    assert [s["number"] for s in report["steps"] if s["ok"]] == list(range(9))
    assert report["steps"][8]["detail"] == "2 working orders cancelled"
    assert {"trip_to_first_denial", "trip_to_watcher", "total"} <= set(report["timings_ms"])
    _, history = essctl_json(target, "history", "--scope", "strategy:ess-drill")
    assert [(e["state"], e["reason"], e["drill"]) for e in history["events"]] == [
        ("ARMED", "drill complete", True), ("TRIPPED", "drill: Q4 drill", True)]

    asked = essctl(target, "drill", "--scope", "symbol:DRILL")  # may be a live symbol
    assert asked.returncode == 1 and "halts real trading; pass --yes" in asked.stderr
    human = essctl(target, "drill", "--scope", "symbol:DRILL", "--yes")
    assert human.returncode == 0, human.stdout + human.stderr
    assert "trip → first denial" in human.stdout and "trip → watcher" in human.stdout
    assert "DRILL PASS" in human.stdout
    assert essctl(target, "status").returncode == 0  # nothing left tripped
    assert essctl_json(target, "orders")[1]["total"] == 0  # nor working

    trip(target, "strategy:busy")
    busy = essctl(target, "drill", "--scope", "strategy:busy", "--yes")
    assert busy.returncode == 2
    assert "scope is not ARMED (TRIPPED); drill not started" in busy.stdout
    assert "DRILL FAIL" in busy.stdout


def test_drills_pass_where_a_second_identical_order_is_a_duplicate(
        start_sidecar: StartSidecar) -> None:
    """Review 53a: the drill's three checks were one order (account, strategy, symbol,
    side, quantity, price), so with duplicates at 2 its last check was denied and the drill
    FAILed every time, for a reason that says nothing about the kill switch."""
    target = start_sidecar("[limits]\nduplicate_identical_orders = 2\n"
                           "duplicate_window_s = 600\n").uds_target
    for run in range(2):
        code, report = essctl_json(target, "drill")
        assert code == 0 and report["verdict"] == "PASS", (run, report)


def test_token_new_prints_a_token_once_and_a_line_the_tokens_file_accepts(
        tmp_path: Path) -> None:
    code, token = essctl_json("unix:/nonexistent", "token", "new", "--role", "operator",
                              "--name", "alice")
    assert code == 0 and token["token"].startswith("ess_")
    (tmp_path / "tokens.toml").write_text(f"[tokens]\n{token['line']}\n")
    principals = load_principals(tmp_path / "tokens.toml")
    assert principals.by_token(token["token"]).role is Role.OPERATOR
    human = essctl("unix:/nonexistent", "token", "new", "--role", "executor", "--name", "x1")
    assert human.returncode == 0
    assert "shown once; store it now" in human.stdout and 'role = "executor"' in human.stdout
    bad = essctl("unix:/nonexistent", "token", "new", "--role", "operator", "--name", "a b")
    assert bad.returncode == 64


@pytest.mark.parametrize("args", [
    ["bogus"], ["trigger", "--scope", "x:1", "--reason", "r"],
    ["trigger", "--reason", "no scope"], ["reset", "--scope", "global"],
    ["check", "--account", "a", "--strategy", "s", "--symbol", "X", "--side", "buy",
     "--qty", "0", "--price", "1"], ["history", "--since", "yesterday"],
    ["status", "--tls-ca", "ca.pem"], ["status", "--tls", "--target", "unix:/x.sock"],
    ["orders", "--account", "acc-1 "], ["orders", "clear", "--account", "acc-1"],
    ["orders", "clear", "--account", "acc-1", "--reason", " "],
    ["orders", "clear", "--account", "acc-1", "--coid", "x\u200b", "--reason", "gone"],
    ["check", "--account", "a", "--strategy", "s", "--symbol", "X", "--side", "buy",
     "--qty", "1", "--price", "1", "--coid", ""]])
def test_usage_errors_exit_64(args: list[str]) -> None:
    result = essctl("unix:/nonexistent/ess.sock", *args)
    assert result.returncode == 64, result.stderr
    assert "essctl" in result.stderr


def test_an_unreachable_sidecar_exits_1_with_a_clear_message(tmp_path: Path) -> None:
    result = essctl(f"unix:{tmp_path / 'none.sock'}", "status")
    assert result.returncode == 1
    assert f"essctl: UNAVAILABLE: cannot reach the sidecar at unix:{tmp_path}" in result.stderr
    watch = essctl(f"unix:{tmp_path / 'none.sock'}", "watch")
    assert watch.returncode == 1 and "UNAVAILABLE" in watch.stderr


def test_an_executor_may_trigger_but_not_reset_or_drill(start_sidecar: StartSidecar,
                                                         tmp_path: Path) -> None:
    tokens = tokens_file(tmp_path, alice=Role.OPERATOR, exe=Role.EXECUTOR)
    target = start_sidecar(f'{NO_COOLDOWN}[auth]\ntokens_file = "{tmp_path}/tokens.toml"\n'
                           ).uds_target
    anonymous = essctl(target, "status")
    assert anonymous.returncode == 1 and "UNAUTHENTICATED" in anonymous.stderr
    trip(target, token=tokens["exe"])
    denied = essctl(target, "reset", "--scope", "strategy:momo", "--reason", "ok", "--yes",
                    token=tokens["exe"])
    assert denied.returncode == 1
    assert "essctl: PERMISSION_DENIED: exe (executor) may not reset: needs the operator role" \
        in denied.stderr
    drill = essctl(target, "drill", token=tokens["exe"])
    assert drill.returncode == 1 and "the drill needs the operator role" in drill.stderr
    scopes = restricted(target, token=tokens["alice"])
    assert list(scopes) == ["STRATEGY:momo"]  # unchanged, and no drill left behind
    assert (scopes["STRATEGY:momo"]["state"], scopes["STRATEGY:momo"]["actor"]) == (
        "TRIPPED", "exe")


@pytest.mark.parametrize("args", [["trigger", "--bogus"], ["status", "--bogus"]])
def test_a_usage_error_is_64_with_a_reader_gone(args: list[str]) -> None:
    """Review 58c: `essctl trigger --bogus 2>&1 | head -1` exited 1, not 64: printing the
    usage to a pipe whose reader had gone raised, and the status said something else."""
    reading, writing = os.pipe()
    os.close(reading)
    try:
        result = subprocess.run([*ESSCTL, "--target", "unix:/nonexistent.sock", *args],
                                stdout=writing, stderr=writing, stdin=subprocess.DEVNULL,
                                timeout=30, env=clean_env())
    finally:
        os.close(writing)
    assert result.returncode == 64


def test_an_empty_token_flag_falls_back_to_ess_token(start_sidecar: StartSidecar,
                                                      tmp_path: Path) -> None:
    """Review 58c: `--token "$MISSPELT"` overrode ESS_TOKEN with nothing, and the stop went
    out with no token, refused (UNAUTHENTICATED, exit 1), the hint saying to set ESS_TOKEN,
    which was set. An empty --token is not given: ESS_TOKEN is sent, and essctl says so."""
    tokens = tokens_file(tmp_path, exe=Role.EXECUTOR)
    target = start_sidecar(f'[auth]\ntokens_file = "{tmp_path}/tokens.toml"\n').uds_target
    stopped = subprocess.run(
        [*ESSCTL, "--target", target, "--token", " ", "trigger", "--scope", "strategy:momo"],
        capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
        env={**clean_env(), "ESS_TOKEN": tokens["exe"]})
    assert stopped.returncode == 0, stopped.stderr
    assert "--token is empty: the token in ESS_TOKEN is sent" in stopped.stderr
    anonymous = essctl(target, "--token", "", "trigger", "--scope", "strategy:other")
    assert anonymous.returncode == 1  # no ESS_TOKEN either: refused, and told how
    assert "no token given: pass --token or set ESS_TOKEN" in anonymous.stderr


def test_heartbeats_lists_the_switches_and_deregister_retires_a_gone_executor(
        start_sidecar: StartSidecar, tmp_path: Path) -> None:
    """Review 55f: essctl could neither list nor retire heartbeats, so a forced reset of a
    gone executor's heartbeat_lost trip tripped again a TTL later, and only grpcurl could
    deregister it. Its silence trips the scope; deregistered by an operator, a plain
    reset lifts the latch and nothing trips again."""
    tokens = tokens_file(tmp_path, alice=Role.OPERATOR, exe=Role.EXECUTOR)
    target = start_sidecar(f'{NO_COOLDOWN}[auth]\ntokens_file = "{tmp_path}/tokens.toml"\n'
                           ).uds_target
    momo = pb.Scope(kind=pb.SCOPE_KIND_STRATEGY, id="momo")
    with grpc.insecure_channel(target) as channel:
        guard_stub(channel).Heartbeat(pb.HeartbeatRequest(executor_id="exec-1", scope=momo,
                                                          ttl_ms=200),
                                      metadata=[("authorization", f"Bearer {tokens['exe']}")])
    code, listed = essctl_json(target, "heartbeats", token=tokens["alice"])
    assert code == 0 and len(listed["heartbeats"]) == 1, listed
    [registration] = listed["heartbeats"]
    assert (registration["executor_id"], registration["scope"], registration["ttl_ms"],
            registration["owner"]) == ("exec-1", "STRATEGY:momo", 200, "exe")
    deadline = time.monotonic() + 30  # its silence trips the scope at a timer run
    while restricted(target, token=tokens["alice"]).get("STRATEGY:momo") is None:
        assert time.monotonic() < deadline, "the executor's silence tripped nothing"
    human = essctl(target, "heartbeats", token=tokens["alice"])
    assert human.returncode == 0 and "LAPSED" in human.stdout and "exec-1" in human.stdout
    assert "1 registered, 1 lapsed" in human.stdout

    refused = essctl(target, "reset", "--scope", "strategy:momo", "--reason", "gone",
                     "--yes", token=tokens["alice"])
    assert refused.returncode == 2 and "heartbeat_lost" in refused.stdout + refused.stderr
    unknown = essctl(target, "heartbeats", "deregister", "--executor", "exec-2", "--scope",
                     "strategy:momo", "--yes", token=tokens["alice"])
    assert unknown.returncode == 2 and "nothing to deregister" in unknown.stdout
    unasked = essctl(target, "heartbeats", "deregister", "--executor", "exec-1", "--scope",
                     "strategy:momo", token=tokens["alice"])
    assert unasked.returncode == 1 and "not confirmed: pass --yes" in unasked.stderr
    retired = essctl(target, "heartbeats", "deregister", "--executor", "exec-1", "--scope",
                     "strategy:momo", "--yes", token=tokens["alice"])
    assert retired.returncode == 0, retired.stderr
    assert "deregistered exec-1 for STRATEGY:momo (STRATEGY:momo is TRIPPED)" in retired.stdout
    assert "no heartbeat registrations" in essctl(target, "heartbeats",
                                                  token=tokens["alice"]).stdout
    lifted = essctl(target, "reset", "--scope", "strategy:momo", "--reason", "exec-1 gone",
                    "--yes", token=tokens["alice"])
    assert lifted.returncode == 0, lifted.stdout + lifted.stderr
    _, history = essctl_json(target, "history", "--scope", "strategy:momo",
                             token=tokens["alice"])
    assert [e["state"] for e in history["events"]] == ["ARMED", "TRIPPED"]


def test_heartbeats_deregister_past_those_listed_says_whether_there_was_one(
        start_sidecar: StartSidecar) -> None:
    """Review 56d: with more registrations than essctl lists (1,000), one not listed was
    deregistered, and essctl could only say it could not tell whether it had been
    registered: a typo passed for a retirement. The answer says so now."""
    target = start_sidecar().uds_target
    momo = pb.Scope(kind=pb.SCOPE_KIND_STRATEGY, id="momo")
    with grpc.insecure_channel(target) as channel:
        stub = guard_stub(channel)
        for n in range(1001):  # the least silent, beaten last, is the one not listed
            stub.Heartbeat(pb.HeartbeatRequest(executor_id=f"exec-{n:04}", scope=momo,
                                               ttl_ms=3_600_000), timeout=10)
    code, listed = essctl_json(target, "heartbeats")
    assert code == 0 and listed["registered"] == 1001, {**listed, "heartbeats": "..."}
    assert "exec-1000" not in {r["executor_id"] for r in listed["heartbeats"]}
    retire = ["heartbeats", "deregister", "--scope", "strategy:momo", "--yes", "--executor"]
    typo = essctl(target, *retire, "exec-10000")
    assert typo.returncode == 2, typo.stdout + typo.stderr
    assert "nothing to deregister: exec-10000 had no heartbeat registration" in typo.stdout
    retired = essctl(target, *retire, "exec-1000")
    assert retired.returncode == 0, retired.stdout + retired.stderr
    assert retired.stdout.startswith("deregistered exec-1000 for STRATEGY:momo")
    assert "cannot" not in retired.stdout and "not say" not in retired.stdout
    code, again = essctl_json(target, *retire, "exec-1000")
    assert (code, again["result"]) == (2, "not_registered")


def test_four_eyes_reset_waits_for_a_second_different_operator(
        start_sidecar: StartSidecar, tmp_path: Path) -> None:
    tokens = tokens_file(tmp_path, alice=Role.OPERATOR, bob=Role.OPERATOR)
    target = start_sidecar(f'{NO_COOLDOWN}[auth]\ntokens_file = "{tmp_path}/tokens.toml"\n'
                           "[reset]\nrequire_approvals = 2\n").uds_target
    trip(target, token=tokens["alice"])
    reset = ["reset", "--scope", "strategy:momo", "--reason", "risk reviewed", "--yes"]
    first = essctl(target, *reset, token=tokens["alice"])
    assert first.returncode == 3, first.stdout + first.stderr
    assert "PENDING APPROVAL" in first.stdout and "requested by alice" in first.stdout
    assert "essctl reset --scope STRATEGY:momo --reason 'risk reviewed'" in first.stdout
    assert restricted(target, tokens["alice"])["STRATEGY:momo"]["reset_requested_by"] == "alice"
    pending = restricted(target, tokens["bob"])["STRATEGY:momo"]  # what bob approves (49f)
    assert pending["reset_request_reason"] == "risk reviewed"

    again = essctl(target, *reset, token=tokens["alice"])
    assert again.returncode == 2 and "alice already requested this reset" in again.stdout
    assert restricted(target, tokens["alice"])["STRATEGY:momo"]["state"] == "TRIPPED"

    second = essctl(target, *reset, token=tokens["bob"])
    assert second.returncode == 0, second.stdout + second.stderr
    assert "STRATEGY:momo is ARMED" in second.stdout
    assert "approved alice's request" in second.stdout  # review 35: it said nothing of it
    _, history = essctl_json(target, "history", "--limit", "1", token=tokens["bob"])
    [event] = history["events"]
    assert (event["state"], event["actor"], event["approved_by"]) == ("ARMED", "alice", "bob")
    assert "alice approved by bob" in essctl(target, "history", token=tokens["bob"]).stdout


def test_a_four_eyes_refusal_in_a_cooldown_does_not_blame_the_cooldown(
        start_sidecar: StartSidecar, tmp_path: Path) -> None:
    """Review 35: every refusal printed "cooldown ends at ..." while a cooldown ran, the
    refusal of a forced reset asked twice by one operator too; --json says whose request
    an approving reset carried out."""
    tokens = tokens_file(tmp_path, alice=Role.OPERATOR, bob=Role.OPERATOR)
    target = start_sidecar(f'[auth]\ntokens_file = "{tmp_path}/tokens.toml"\n'
                           "[reset]\nrequire_approvals = 2\n").uds_target
    trip(target, token=tokens["alice"])
    reset = ["reset", "--scope", "strategy:momo", "--reason", "reviewed", "--force", "--yes"]
    assert essctl(target, *reset, token=tokens["alice"]).returncode == 3
    again = essctl(target, *reset, token=tokens["alice"])
    assert again.returncode == 2 and "alice already requested this reset" in again.stdout
    assert "cooldown" not in again.stdout.split("REFUSED", 1)[1], again.stdout
    code, approved = essctl_json(target, *reset, token=tokens["bob"])
    assert (code, approved["result"], approved["requested_by"]) == (0, "reset", "alice")


def test_tls_and_mutual_tls_with_a_server_name(start_sidecar: StartSidecar,
                                               tmp_path: Path) -> None:
    ca = trustme.CA()
    server, client = ca.issue_cert("ess.internal"), ca.issue_cert("ops-1", common_name="ops-1")
    for name, cert in (("server", server), ("client", client)):
        cert.private_key_pem.write_to_path(str(tmp_path / f"{name}.key"))
        cert.cert_chain_pems[0].write_to_path(str(tmp_path / f"{name}.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    (tmp_path / "tokens.toml").write_text('[certificates]\n"ops-1" = { role = "operator" }\n')
    sidecar = start_sidecar(
        f'{NO_COOLDOWN}[server]\ntls_cert = "{tmp_path}/server.pem"\n'
        f'tls_key = "{tmp_path}/server.key"\ntls_client_ca = "{tmp_path}/ca.pem"\n'
        f'[auth]\ntokens_file = "{tmp_path}/tokens.toml"\n')
    tls = ["--tls", "--tls-ca", f"{tmp_path}/ca.pem", "--tls-server-name", "ess.internal"]
    mtls = [*tls, "--tls-cert", f"{tmp_path}/client.pem", "--tls-key", f"{tmp_path}/client.key"]
    trigger = essctl(sidecar.tcp_target, *mtls, "trigger", "--scope", "strategy:momo",
                     "--reason", "over mTLS")
    assert trigger.returncode == 0, trigger.stderr
    code, history = essctl_json(sidecar.tcp_target, *mtls, "history")
    assert code == 0 and history["events"][0]["actor"] == "ops-1"
    assert essctl(sidecar.tcp_target, *tls, "status").returncode == 1  # no client cert
    plaintext = essctl(sidecar.tcp_target, "status")  # to a TLS port: it says what to do
    assert plaintext.returncode == 1 and "pass --tls" in plaintext.stderr, plaintext.stderr


@pytest.mark.parametrize("scope, problem", [
    ("strategy: momo", "'strategy: momo': its id has leading or trailing whitespace"),
    ("strategy:momo\u034f", "'strategy:momo\u034f' (that is 'strategy:momo\\u034f'): its id"
     " has an invisible (default-ignorable) character"),
    ("account:\u3164acc", "(that is 'account:\\u3164acc'): its id has an invisible"),
    ("symbol:aapl\ufe0f", "(that is 'symbol:aapl\\ufe0f'): its id has an invisible"),
    ("strategy:momo\u0308", "(that is 'strategy:momo\\u0308'): its id is not in Unicode NFC"
     " form"),
    ("strategy:alpha  beta", "'strategy:alpha  beta': its id has two spaces in a row")])
def test_an_id_that_is_not_canonical_is_refused_before_anything_is_sent(
        scope: str, problem: str) -> None:
    commands = [["trigger", "--scope", scope, "--reason", "halt"]]
    if scope == "strategy: momo":
        commands += [["reset", "--scope", scope, "--reason", "ok", "--yes"],
                     ["history", "--scope", scope], ["drill", "--scope", scope]]
    for command in commands:
        # No sidecar listens there: exit 64, not 1, shows nothing was sent.
        result = essctl("unix:/nonexistent/ess.sock", *command)
        assert result.returncode == 64, result.stderr
        assert "argument --scope: '" in result.stderr and problem in result.stderr


def test_commands_act_on_and_echo_the_canonical_scope(start_sidecar: StartSidecar) -> None:
    target = start_sidecar(NO_COOLDOWN).uds_target
    tripped = essctl(target, "trigger", "--scope", "symbol:aapl", "--reason", "halt aapl")
    assert tripped.returncode == 0, tripped.stderr
    assert "SYMBOL:AAPL is TRIPPED (version 1)" in tripped.stdout
    assert list(restricted(target)) == ["SYMBOL:AAPL"]
    denied = essctl(target, "check", "--account", "acc-1", "--strategy", "momo", "--symbol",
                    "aapl", "--side", "buy", "--qty", "1", "--price", "100")
    assert denied.returncode == 2
    assert "blocking scope:  SYMBOL:AAPL" in denied.stdout
    assert "acc-1/momo BUY 1 AAPL @ 100" in denied.stdout
    reset = essctl(target, "reset", "--scope", "Symbol:aApl", "--reason", "ok", "--yes")
    assert reset.returncode == 0, reset.stderr
    assert "SYMBOL:AAPL is ARMED (version 2)" in reset.stdout
    case = essctl(target, "trigger", "--scope", "strategy:Momo", "--reason", "halt Momo")
    assert "STRATEGY:Momo is TRIPPED" in case.stdout  # other ids keep their case
    assert essctl(target, "check", "--strategy", "momo", *ORDER).returncode == 0


def checked(target: str, account: str, strategy: str = "momo", token: str | None = None,
            ) -> str:
    """An allowed order (essctl check): its client_order_id."""
    code, decision = essctl_json(target, "check", "--account", account, "--strategy",
                                 strategy, "--symbol", "AAPL", "--side", "buy", "--qty", "1",
                                 "--price", "100", token=token)
    assert code == 0 and decision["allowed"], decision
    return decision["client_order_id"]


def test_orders_lists_working_orders_and_status_counts_them(
        start_sidecar: StartSidecar) -> None:
    target = start_sidecar().uds_target
    assert essctl(target, "orders").stdout.strip() == "no working orders"
    assert "Working orders" not in essctl(target, "status").stdout
    first, second = checked(target, "acc-1"), checked(target, "acc-1", "other")
    third = checked(target, "acc-2")

    human = essctl(target, "orders")
    assert human.returncode == 0, human.stderr
    assert "Working orders, oldest first" in human.stdout
    assert "3 working orders" in human.stdout
    rows = [line for line in human.stdout.splitlines() if "coid" in line or "essctl-" in line]
    assert [next(c for c in (first, second, third) if c in row) for row in rows] == [
        first, second, third]
    code, listed = essctl_json(target, "orders", "--account", "acc-1")
    assert code == 0 and listed["total"] == 2
    assert [(o["account"], o["client_order_id"], o["strategy"], o["symbol"], o["side"],
             o["quantity"], o["remaining_quantity"]) for o in listed["working_orders"]] == [
        ("acc-1", first, "momo", "AAPL", "BUY", 1.0, 1.0),
        ("acc-1", second, "other", "AAPL", "BUY", 1.0, 1.0)]
    assert all(o["since"] and o["decision_id"] for o in listed["working_orders"])
    assert essctl(target, "orders", "--account", "acc-3").stdout.strip() == \
        "no working orders in account acc-3"

    status = essctl(target, "status")
    assert status.returncode == 0  # working orders are not a restriction
    assert "Working orders" in status.stdout
    assert [line.split()[1:4:2] for line in status.stdout.splitlines()
            if "acc-" in line] == [["acc-1", "2"], ["acc-2", "1"]]
    _, state = essctl_json(target, "status")
    assert state["working_order_counts"] == [{"account": "acc-1", "working_orders": 2},
                                             {"account": "acc-2", "working_orders": 1}]


def test_orders_clear_asks_then_ends_the_orders_named_or_all(
        start_sidecar: StartSidecar) -> None:
    target = start_sidecar().uds_target
    first, second, third = (checked(target, "acc-1", f"s{n}") for n in range(3))
    other = checked(target, "acc-2")

    unconfirmed = essctl(target, "orders", "clear", "--account", "acc-1", "--coid", first,
                         "--reason", "cancelled at the venue")
    assert unconfirmed.returncode == 1
    assert "not confirmed: pass --yes" in unconfirmed.stderr
    assert "The clear will end 1 working order of account acc-1" in unconfirmed.stdout
    assert first in unconfirmed.stdout
    assert essctl_json(target, "orders", "--account", "acc-1")[1]["total"] == 3

    one = essctl(target, "orders", "clear", "--account", "acc-1", "--coid", first,
                 "--reason", "cancelled at the venue", "--yes")
    assert one.returncode == 0, one.stderr
    assert "cleared 1 working order of account acc-1" in one.stdout
    assert [o["client_order_id"] for o in essctl_json(
        target, "orders", "--account", "acc-1")[1]["working_orders"]] == [second, third]

    code, partly = essctl_json(target, "orders", "clear", "--account", "acc-1", "--coid",
                               second, "--coid", first, "--reason", "gone", "--yes")
    assert code == 2  # first was not working any more
    assert (partly["cleared"], partly["not_working"]) == (1, [first])
    gone = essctl(target, "orders", "clear", "--account", "acc-1", "--coid", first,
                  "--reason", "gone", "--yes")
    assert gone.returncode == 2
    assert f"nothing to clear: not working orders of account acc-1: {first}" in gone.stdout

    exit_code, shown = essctl_at_a_terminal(target, "orders", "clear", "--account", "acc-1",
                                            "--reason", "venue session ended", answer="y")
    assert exit_code == 0, shown
    assert "Clear 1 working order of account acc-1" in shown and "Go ahead?" in shown
    assert "cleared 1 working order of account acc-1" in shown
    assert [o["client_order_id"] for o in essctl_json(target, "orders")[1][
        "working_orders"]] == [other]
    empty = essctl(target, "orders", "clear", "--account", "acc-1", "--reason", "x")
    assert empty.returncode == 0
    assert "nothing to clear: account acc-1 has no working orders" in empty.stdout


def test_orders_clear_all_ends_what_a_snapshot_could_not_adopt(
        start_sidecar: StartSidecar) -> None:
    """Review 38e: a snapshot's open orders left out at limits.max_remembered_orders deny
    the account's orders until an operator clears all of them; `orders clear` sends the
    ids it shows, which named none of those, and said "cleared" (exit 0)."""
    target = start_sidecar(LONG_COOLDOWN + "max_remembered_orders = 1000\n"
                           "max_orders_per_second = 0\nduplicate_identical_orders = 0\n"
                           "max_working_orders_per_account = 0\n"
                           "max_working_orders_per_strategy = 0\n").uds_target
    with grpc.insecure_channel(target) as channel:
        stub = guard_stub(channel)
        for n in range(1000):  # another account's ids fill the memory of order ids
            assert stub.CheckOrder(pb.CheckOrderRequest(
                account="acc-2", strategy="momo", symbol="AAPL", side=pb.SIDE_BUY,
                quantity=1, price=100, client_order_id=f"fill-{n}")).allowed
        stub.SyncPositions(pb.SyncPositionsRequest(
            account="acc-1", equity=1e6, open_orders_complete=True, open_orders=[
                pb.OpenOrder(client_order_id="venue-1", strategy="momo", symbol="AAPL",
                             side=pb.SIDE_BUY, remaining_quantity=5, price=100)]))

        def denial() -> str:
            return stub.CheckOrder(pb.CheckOrderRequest(
                account="acc-1", strategy="momo", symbol="AAPL", side=pb.SIDE_BUY,
                quantity=1, price=100, client_order_id="next")).message

        assert "could not adopt" in denial()
        shown = essctl(target, "orders", "clear", "--account", "acc-1", "--reason", "x",
                       "--yes")
        assert shown.returncode == 0 and "nothing to clear" in shown.stdout
        assert "could not adopt" in denial()
        cleared = essctl(target, "orders", "clear", "--account", "acc-1", "--all",
                         "--reason", "venue session ended", "--yes")
        assert cleared.returncode == 0, cleared.stderr
        assert "could not adopt" not in denial()  # the memory of ids is still full
        both = essctl(target, "orders", "clear", "--account", "acc-1", "--all", "--coid",
                      "x", "--reason", "x", "--yes")
        assert both.returncode != 0 and "--all" in both.stderr


def test_an_executor_may_not_clear_working_orders(start_sidecar: StartSidecar,
                                                  tmp_path: Path) -> None:
    tokens = tokens_file(tmp_path, alice=Role.OPERATOR, exe=Role.EXECUTOR)
    target = start_sidecar(f'{NO_COOLDOWN}[auth]\ntokens_file = "{tmp_path}/tokens.toml"\n'
                           ).uds_target
    coid = checked(target, "acc-1", token=tokens["exe"])
    listed = essctl(target, "orders", token=tokens["exe"])  # reading the state: executors may
    assert listed.returncode == 0 and coid in listed.stdout
    denied = essctl(target, "orders", "clear", "--account", "acc-1", "--reason", "gone",
                    "--yes", token=tokens["exe"])
    assert denied.returncode == 1
    assert "PERMISSION_DENIED: exe (executor) may not clear working orders" in denied.stderr
    cleared = essctl(target, "orders", "clear", "--account", "acc-1", "--reason", "gone",
                     "--yes", token=tokens["alice"])
    assert cleared.returncode == 0 and "cleared 1 working order" in cleared.stdout


def exit_with_no_reader(target: str, *args: str) -> int:
    """essctl's exit status with its stdout a pipe nobody reads (`essctl ... | head -c0`)."""
    with subprocess.Popen([*ESSCTL, "--target", target, *args], stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          env=clean_env()) as process:
        assert process.stdout is not None
        process.stdout.close()
        return process.wait(timeout=30)


@pytest.mark.parametrize("json_flag", [[], ["--json"]], ids=["text", "json"])
def test_a_reader_gone_changes_no_commands_exit_status(start_sidecar: StartSidecar,
                                                       json_flag: list[str]) -> None:
    """Review 51a: with its reader gone (`essctl status | head -1`), status exited 1
    ("could not do it"), not 2 (tripped), and a reset that was done and a check that was
    allowed exited 1 too. Each exits as it would have; watch, which only prints, ends."""
    target = start_sidecar(NO_COOLDOWN).uds_target
    trip(target)
    assert exit_with_no_reader(target, *json_flag, "status") == 2
    assert exit_with_no_reader(target, *json_flag, "check", "--strategy", "momo",
                               *ORDER) == 2  # denied: its strategy is tripped
    assert exit_with_no_reader(target, *json_flag, "reset", "--scope", "strategy:momo",
                               "--reason", "ok", "--yes") == 0
    assert "STRATEGY:momo" not in restricted(target)  # done, though nobody read so
    assert exit_with_no_reader(target, *json_flag, "status") == 0
    assert exit_with_no_reader(target, *json_flag, "check", "--strategy", "momo",
                               *ORDER) == 0
    assert exit_with_no_reader(target, *json_flag, "watch") == 1
