"""configure_logging: one JSON object per line on stderr, with extras and trace ids."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
from typing import IO, Any

import pytest
from opentelemetry import propagate
from opentelemetry.sdk.trace import TracerProvider

from ess_sidecar.adapters.telemetry.logs import (MalformedTraceHeaders, _SidecarHandler,
                                                 configure_logging, flush)
from ess_sidecar.testing import full_pipe, read_in_background

log = logging.getLogger("ess_sidecar.service")


@pytest.fixture(autouse=True)
def restore_root_logger() -> Any:
    """configure_logging changes the process's root logger: put it back for other tests."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    apprise_level = logging.getLogger("apprise").level
    throttled = ("grpc._cython.cygrpc", *MalformedTraceHeaders.LOGGERS)
    filters = {name: list(logging.getLogger(name).filters) for name in throttled}
    yield
    for name, kept in filters.items():
        logging.getLogger(name).filters[:] = kept
    root.handlers[:] = handlers
    root.setLevel(level)
    logging.getLogger("apprise").setLevel(apprise_level)


def lines(capsys: pytest.CaptureFixture[str]) -> list[str]:
    assert flush()
    return capsys.readouterr().err.splitlines()


def test_a_transition_is_one_json_line_with_time_level_event_and_extras(
        capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("json", "INFO")
    log.warning("transition", extra={"scope": "STRATEGY:momo", "state": "TRIPPED",
                                     "previous": "ARMED", "version": 7, "actor": "ops"})
    [line] = lines(capsys)
    record = json.loads(line)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", record.pop("time"))
    assert record == {"level": "WARNING", "event": "transition",
                      "logger": "ess_sidecar.service", "scope": "STRATEGY:momo",
                      "state": "TRIPPED", "previous": "ARMED", "version": 7, "actor": "ops"}


def test_trace_ids_are_present_inside_a_span_and_absent_outside(
        capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("json", "INFO")
    with TracerProvider().get_tracer(__name__).start_as_current_span("check") as span:
        log.info("inside")
    log.info("outside")
    inside, outside = (json.loads(line) for line in lines(capsys))
    assert inside["trace_id"] == f"{span.get_span_context().trace_id:032x}"
    assert inside["span_id"] == f"{span.get_span_context().span_id:016x}"
    assert "trace_id" not in outside and "span_id" not in outside


def test_a_line_says_what_its_arguments_were_when_it_was_logged(
        capsys: pytest.CaptureFixture[str]) -> None:
    """The writer thread formats a record after it was logged: its message is fixed
    where it is made, so an argument that changes later does not change the line."""
    configure_logging("json", "INFO")
    held = ["STRATEGY:momo"]
    blocked = threading.Event()
    handler = next(h for h in logging.getLogger().handlers if isinstance(h, _SidecarHandler))
    handler.queue.put_nowait(_Waits(blocked))  # the writer waits: nothing formatted yet
    log.warning("latched: %s", held, extra={"count": 1})
    held.append("ACCOUNT:acct-1")
    blocked.set()
    [line] = lines(capsys)
    record = json.loads(line)
    assert (record["event"], record["count"]) == ("latched: ['STRATEGY:momo']", 1)


def test_a_line_that_cannot_be_formatted_is_said_where_it_would_have_been(
        capsys: pytest.CaptureFixture[str]) -> None:
    """Review 62: formatted by the writer, its gap line came after later lines."""

    class Unprintable:
        def __str__(self) -> str:
            raise RuntimeError("no")

    configure_logging("text", "INFO")
    log.warning("first")
    log.warning("second", extra={"value": Unprintable()})
    log.warning("third")
    first, dropped, third = lines(capsys)
    assert first.endswith("first") and third.endswith("third"), (first, third)
    assert "a log line of ess_sidecar.service could not be formatted: dropped" in dropped


class _Waits(threading.Event):
    """Queued to the writer: it waits there (its handle of an Event sets it) until set."""

    def __init__(self, until: threading.Event) -> None:
        super().__init__()
        self.until = until

    def set(self) -> None:
        assert self.until.wait(10), "never released"
        super().set()


def test_an_exception_is_a_string_field(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("json", "INFO")
    try:
        raise ValueError("store gone")
    except ValueError:
        log.exception("timer run failed")
    [line] = lines(capsys)
    record = json.loads(line)
    assert record["event"] == "timer run failed"
    assert isinstance(record["exception"], str) and "ValueError: store gone" in record["exception"]


def test_records_below_the_level_and_apprise_chatter_are_dropped(
        capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("json", "WARNING")
    log.info("an allowed order")
    logging.getLogger("apprise").warning("sending")
    assert lines(capsys) == []


def test_text_format_is_one_human_line(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("text", "INFO")
    log.warning("GLOBAL tripped (%s)", "drill")
    [line] = lines(capsys)
    assert line.endswith(" WARNING ess_sidecar.service: GLOBAL tripped (drill)")


def test_text_format_keeps_the_fields_and_quotes_their_values(
        capsys: pytest.CaptureFixture[str]) -> None:
    """Review 42j: the text log said "transition" with no scope, state or reason (they are
    `extra=` fields); a value with a newline must not forge a line."""
    configure_logging("text", "INFO")
    log.warning("transition", extra={"scope": "STRATEGY:momo", "state": "TRIPPED",
                                     "version": 3, "reason": 'stop\nERROR forged "x"'})
    [line] = lines(capsys)
    assert line.endswith(' WARNING ess_sidecar.service: transition scope="STRATEGY:momo"'
                         ' state="TRIPPED" version=3 reason="stop\\nERROR forged \\"x\\""')


def test_configuring_twice_keeps_one_handler(capsys: pytest.CaptureFixture[str]) -> None:
    before = len(logging.getLogger().handlers)
    configure_logging("text", "INFO")
    configure_logging("json", "INFO")
    assert len(logging.getLogger().handlers) == before + 1
    log.warning("once")
    [line] = lines(capsys)
    assert json.loads(line)["event"] == "once"


def test_a_basic_config_handler_on_stderr_is_replaced(
        capsys: pytest.CaptureFixture[str]) -> None:
    logging.getLogger().addHandler(logging.StreamHandler(sys.stderr))  # as basicConfig does
    configure_logging("json", "INFO")
    log.warning("once")
    [line] = lines(capsys)
    assert json.loads(line)["event"] == "once"


def drained(read_end: int, stream: IO[str]) -> list[str]:
    """The lines written to a pipe (its read end; `stream`, its write end, logged to), read
    until every line logged is written; the writer then taken off it, and both ends
    closed."""
    reader, received = read_in_background(read_end)
    try:
        assert flush(60)
    finally:
        configure_logging("json", "INFO")  # the writer off the pipe, then its end closed
        stream.close()
        reader.join(10)
        os.close(read_end)
    return received.decode().splitlines()


def test_every_line_is_written_to_a_stderr_left_non_blocking() -> None:
    """Review 43j: a stderr left non-blocking by whoever started the process lost every
    line past a full pipe, unsaid: the writer waits for it instead."""
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    stream = os.fdopen(write_end, "w")
    configure_logging("json", "INFO", stream)
    for number in range(3_000):  # about 300 KB: past the pipe's 64 KB before it is read
        log.warning("line %d", number)
    events = [json.loads(line)["event"] for line in drained(read_end, stream)]
    assert events == [f"line {number}" for number in range(3_000)]


def test_a_record_being_formatted_holds_no_other_threads_log_call(
        capsys: pytest.CaptureFixture[str]) -> None:
    """Review 43g: the handler's lock was held while a record was formatted and queued;
    the loop thread, holding it, waited for the queue's lock, which the writer thread held
    while a finalizer there logged, waiting for the handler's: the loop stopped for good.
    No lock is held while a record is formatted or queued."""
    configure_logging("json", "INFO")
    root = logging.getLogger()  # ours alone: pytest's capture handler formats under a lock
    root.handlers[:] = [h for h in root.handlers if isinstance(h, _SidecarHandler)]
    formatting, release = threading.Event(), threading.Event()

    class Slow:
        def __str__(self) -> str:
            formatting.set()
            release.wait(30)
            return "slow"

    slow = threading.Thread(target=lambda: log.warning("%s", Slow()), daemon=True)
    slow.start()
    assert formatting.wait(10)
    other = threading.Thread(target=lambda: log.warning("other"), daemon=True)
    other.start()
    other.join(10)
    held = other.is_alive()
    release.set()
    slow.join(10)
    assert not held, "a log call waited for another thread's record to be formatted"
    assert {json.loads(line)["event"] for line in lines(capsys)} == {"slow", "other"}


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="json"):
        configure_logging("xml", "INFO")


def test_grpcs_undecodable_metadata_lines_never_show_the_value_and_are_rate_limited(
        capsys: pytest.CaptureFixture[str]) -> None:
    """Review 36c: gRPC logged each metadata value that is not UTF-8 at ERROR with a
    traceback (167 KB for 200 calls), a bearer token with a stray byte in clear."""
    configure_logging("json", "INFO")
    grpc_core = logging.getLogger("grpc._cython.cygrpc")
    for _ in range(3):
        try:
            b"Bearer s3cret\x85".decode("utf8")
        except UnicodeDecodeError:
            grpc_core.exception("Invalid encoding on %s", b"Bearer s3cret\x85")
    grpc_core.error("another line")
    first, other = (json.loads(line) for line in lines(capsys))
    assert (first["level"], first["event"]) == (
        "WARNING", "a call's metadata held a value that is not UTF-8 (not logged): 1 such"
        " value(s) since the last line")
    assert "exception" not in first and other["event"] == "another line"


def test_malformed_trace_headers_never_show_the_value_and_are_rate_limited(
        capsys: pytest.CaptureFixture[str]) -> None:
    """Review 39d: OpenTelemetry's propagators logged a 900 KB `baggage` header whole, at
    WARNING, for every call carrying it (a peer with no token wrote 90 MB a second)."""
    configure_logging("json", "INFO")
    carriers = [{"baggage": "k=" + "v" * 100_000}, {"baggage": "no-equals-sign-" * 1000},
                {"traceparent": "00-" + "f" * 600},
                {"traceparent": f"00-{'1' * 32}-{'2' * 16}-01", "tracestate": "B@D=" * 40}]
    for carrier in carriers * 3:
        propagate.extract(carrier)
    [line] = lines(capsys)
    first = json.loads(line)
    assert (first["level"], first["event"]) == (
        "WARNING", "a call's trace-context or baggage header was malformed or too long (not"
        " logged): 1 such since the last line")
    assert len(line) < 1000


def test_a_flood_of_other_lines_leaves_room_for_the_sidecars_own_warnings() -> None:
    """Review 47b: a flood of gRPC's errors, on a stderr read slowly, filled the queue,
    and the line of a stop acknowledged meanwhile was dropped."""
    read_end, write_end = full_pipe()
    stream = os.fdopen(write_end, "w")
    configure_logging("json", "INFO", stream)
    for number in range(_SidecarHandler.LINES + 100):
        logging.getLogger("grpc._cython.cygrpc").error("flood %d", number)
    log.warning("transition", extra={"scope": "STRATEGY:momo", "state": "TRIPPED"})
    lines = [json.loads(line) for line in drained(read_end, stream) if line.startswith("{")]
    assert [line["scope"] for line in lines if line["event"] == "transition"] == \
        ["STRATEGY:momo"]
    assert any("dropped" in line["event"] for line in lines)


def test_a_stderr_nobody_reads_holds_no_log_call_and_the_lines_dropped_are_counted() -> None:
    """Review 43b: log lines were written where they were made, on the event loop; once a
    stderr nobody read (a hung log shipper, a terminal on hold) was full, the next line
    froze the loop, every check and the kill switch with it. A line that finds the
    writer's queue full is dropped and counted, and the count is written once it can,
    where the lines went missing (review 43g: 10,000 lines before)."""
    read_end, write_end = full_pipe()
    stream = os.fdopen(write_end, "w")
    configure_logging("json", "INFO", stream)
    logged = threading.Event()
    total = _SidecarHandler.LINES + _SidecarHandler.OWN + 500

    def log_them() -> None:
        for number in range(total):
            log.warning("line %d", number)
        logged.set()

    threading.Thread(target=log_them, daemon=True).start()
    assert logged.wait(60), "a log call waited on the stream"
    events = [json.loads(line)["event"] for line in drained(read_end, stream)
              if line.startswith("{")]
    [notice] = [event for event in events if "dropped" in event]
    dropped = int(notice.split()[0])
    assert notice == f"{dropped} log line(s) dropped from here on: stderr was not read"
    written = [event for event in events if event.startswith("line ")]
    assert dropped > 0 and len(written) + dropped == total
    assert written == [f"line {number}" for number in range(len(written))]
    assert events.index(notice) == events.index(written[-1]) + 1  # where the gap is (43g)
