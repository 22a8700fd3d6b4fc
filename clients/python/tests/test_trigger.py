"""A stop is never refused for what comes with it (convert.trigger_request); the e2e test
against a real sidecar is tests/clients/test_python_client.py."""

from __future__ import annotations

import pytest

from ess.v1 import guard_pb2 as pb
from ess_client.convert import MAX_REASON_CHARS, to_scope, to_side, trigger_request


def test_unknown_names_halt_are_user_initiated_or_left_out_noted() -> None:
    request = trigger_request("STRATEGY:momo", "why", "RISK", "PANIC",
                              ["CANCEL_ALL", "cancel-open-orders", 1.5])
    assert request.mode == pb.TRIGGER_MODE_HALT
    assert request.reason_code == pb.TRIGGER_REASON_USER_INITIATED
    assert list(request.directives) == [pb.DIRECTIVE_CANCEL_OPEN_ORDERS]
    assert request.reason == ("why (mode PANIC unknown: halted; reason_code RISK unknown:"
                              " user-initiated; directive CANCEL_ALL unknown: left out;"
                              " directive 1.5 unknown: left out)")


@pytest.mark.parametrize("mode", [True, 2**40, -(2**31) - 1, 1.0, None, object()])
def test_a_mode_of_another_type_or_past_int32_halts(mode: object) -> None:
    request = trigger_request("GLOBAL", "", 1, mode, ())
    assert request.mode == pb.TRIGGER_MODE_HALT
    assert "unknown: halted" in request.reason


def test_an_int32_number_passes_through() -> None:
    request = trigger_request("GLOBAL", "", 2**31 - 1, 7, [42, "flatten-positions"])
    assert (request.mode, request.reason_code) == (7, 2**31 - 1)
    assert list(request.directives) == [42, pb.DIRECTIVE_FLATTEN_POSITIONS]
    assert request.reason == ""


def test_lone_surrogates_are_replaced_and_a_huge_reason_cut_notes_kept() -> None:
    bad = b"stop \xff now".decode("utf-8", "surrogateescape")
    assert trigger_request("GLOBAL", bad, 1, 1, ()).reason == "stop \ufffd now"
    request = trigger_request("GLOBAL", "x" * (5 << 20), 1, "PANIC", ())
    assert len(request.reason) <= MAX_REASON_CHARS
    assert request.reason.endswith("(mode PANIC unknown: halted)")
    assert request.ByteSize() < 8 * MAX_REASON_CHARS


def test_the_scope_stays_strict() -> None:
    with pytest.raises(ValueError):
        trigger_request("NOPE:x", "why", 1, 1, ())


@pytest.mark.parametrize("text", ["\u017fymbol:aapl", "\u017ftrategy:momo",
                                  "SCOPE_KIND_\u017fYMBOL:x", "Strategy :momo"])
def test_a_kind_is_read_in_ascii_letters_only(text: str) -> None:
    """Review 53a: Unicode's upper case of the long s is S, so "ſymbol:aapl" was the
    SYMBOL scope here, and "ſell" a sell, where the sidecar and the other clients refuse
    them; a kind with spaces around it is refused too, as Go, Rust and Java do."""
    assert to_scope("symbol:aapl") == pb.Scope(kind=pb.SCOPE_KIND_SYMBOL, id="aapl")
    with pytest.raises(ValueError):
        to_scope(text)
    with pytest.raises(ValueError):
        to_side("\u017fell")


class Unreadable(str):
    def strip(self) -> str:  # type: ignore[override]
        raise RuntimeError("strip")

    def __len__(self) -> int:
        raise RuntimeError("len")


def test_what_cannot_be_read_is_left_out_and_the_stop_goes_on() -> None:
    """Review 49e: a directives iterable that raised part way, or a str subclass whose
    methods raise, refused the stop locally."""
    def failing():  # noqa: ANN202
        yield "cancel-open-orders"
        raise ValueError("mid-way")

    def endless():  # noqa: ANN202
        while True:
            yield "CANCEL_OPEN_ORDERS"

    request = trigger_request("STRATEGY:x", "r", "user_initiated", "halt", failing())
    assert list(request.directives) == [pb.DIRECTIVE_CANCEL_OPEN_ORDERS]
    assert "directives could not all be read" in request.reason
    request = trigger_request("STRATEGY:x", Unreadable("why"), Unreadable("risk"),
                              Unreadable("reduce_only"), endless())
    assert request.mode == pb.TRIGGER_MODE_REDUCE_ONLY
    assert request.reason_code == pb.TRIGGER_REASON_USER_INITIATED
    assert "reason_code risk unknown: user-initiated" in request.reason
    assert request.reason.startswith("why") and "past the first 64 not read" in request.reason
    assert len(request.directives) == 64
