"""Structured logs: one JSON object per line on stderr, with the current trace's ids,
written by a thread of their own: a log line never waits on stderr; nor, while serving,
does a line gRPC's core writes to file descriptor 2 (`descriptor_2_never_waits`)."""

from __future__ import annotations

import contextlib
import faulthandler
import json
import logging
import logging.handlers
import os
import queue
import stat
import sys
import threading
import time
from collections.abc import Iterator
from typing import IO

from opentelemetry import trace
from pythonjsonlogger.json import JsonFormatter

from ..descriptors import WRITABLE, ready

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# LogRecord attribute -> key in the JSON line; `extra=` fields keep their own names.
JSON_KEYS = {"asctime": "time", "levelname": "level", "message": "event", "name": "logger",
             "exc_info": "exception", "stack_info": "stack"}


class TraceIds(logging.Filter):
    """Adds trace_id and span_id (hex) to a record made while a valid span is current, so
    a log line can be found from its trace and back."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            record.trace_id = trace.format_trace_id(context.trace_id)
            record.span_id = trace.format_span_id(context.span_id)
        return True


class _Throttled(logging.Filter):
    """The records it `matches` become one WARNING that never shows their values, at most
    one every `every_s`, saying how many came since (`SUMMARY`, with that count)."""

    SUMMARY = ""

    def __init__(self, every_s: float = 1.0) -> None:
        super().__init__()
        self._every_s, self._logged_at, self._unlogged = every_s, -every_s, 0

    def matches(self, record: logging.LogRecord) -> bool:
        return True

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.matches(record):
            return True
        self._unlogged += 1
        now = time.monotonic()
        if now - self._logged_at < self._every_s:
            return False
        record.msg, record.args = self.SUMMARY, (self._unlogged,)
        record.exc_info, record.exc_text = None, None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        self._logged_at, self._unlogged = now, 0
        return True


class UndecodableMetadata(_Throttled):
    """gRPC logs each metadata value that is not UTF-8 at ERROR, with the value and a
    traceback, for every call (review 36c: 200 calls with a stray byte wrote 167 KB, and a
    bearer token with one in its value was logged in clear)."""

    MESSAGE = "Invalid encoding on %s"  # grpc/_cython/_cygrpc/grpc_string.pyx.pxi
    SUMMARY = "a call's metadata held a value that is not UTF-8 (not logged): %d such" \
        " value(s) since the last line"

    def matches(self, record: logging.LogRecord) -> bool:
        return record.msg == self.MESSAGE


class MalformedTraceHeaders(_Throttled):
    """OpenTelemetry's propagators log a malformed or over-long `traceparent`, `tracestate`
    or `baggage` header at WARNING, with its value, once per call that carries it (review
    39d: a 900 KB `baggage` on calls with no token wrote 90 MB of log a second). Installed
    on the loggers that do (`LOGGERS`), every record of theirs is throttled."""

    LOGGERS = ("opentelemetry.baggage", "opentelemetry.baggage.propagation",
               "opentelemetry.trace.propagation.tracecontext", "opentelemetry.trace.span")
    SUMMARY = "a call's trace-context or baggage header was malformed or too long (not" \
        " logged): %d such since the last line"


def _install(logger: logging.Logger, throttle: _Throttled) -> None:
    """`throttle` on `logger`, in place of one of its kind that a previous set-up added."""
    for previous in [f for f in logger.filters if type(f) is type(throttle)]:
        logger.removeFilter(previous)
    logger.addFilter(throttle)


class UtcJsonFormatter(JsonFormatter):
    """time as ISO 8601 UTC with milliseconds: 2025-01-31T12:00:00.123Z."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{seconds}.{int(record.msecs):03d}Z"


class TextFormatter(logging.Formatter):
    """TEXT_FORMAT, then the record's `extra=` fields as key=value, strings JSON-quoted
    (review 42j: the text log showed "transition" with no scope, state or reason, and a
    value with a newline could forge a line)."""

    PLAIN = frozenset(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message",
                                                                              "asctime"}

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        fields = " ".join(f"{key}={json.dumps(value, ensure_ascii=False, default=str)}"
                          for key, value in vars(record).items() if key not in self.PLAIN)
        line = super().formatMessage(record)
        return f"{line} {fields}" if fields else line


class _Gap:
    """Queued where lines began to be dropped: the writer says there how many were."""


GAP = _Gap()


class _SidecarHandler(logging.handlers.QueueHandler):
    """Queues a record for its writer thread (`_Writer`), which formats and writes it,
    never waiting: a record that finds LINES queued is dropped and counted. Where a record
    is made, only its message and trace ids are fixed (an argument may change later), so
    its `extra=` values must not change after the call (every caller's are fresh); one
    with an exception or a stack is formatted there whole, its frames still live. Its JSON
    line cost the event loop 16 µs in a tight loop and several times that served, and a
    storm of stops makes a transition's line a hundred times a second.

    Review 43b: written on the event loop, a stderr nobody read (a hung log shipper, a
    terminal on hold) froze the loop once the pipe filled, and with it every check and
    the kill switch; a stop sent then was never read. No lock is held while a record is
    formatted or queued (a SimpleQueue, and not the handler's lock): review 43g, the loop
    thread held the handler's lock waiting for a Queue's, which the writer thread held
    while a collected object's finalizer logged, waiting for the handler's: the loop
    stopped for good. `flush` and `close` (logging.shutdown, at exit) wait for the
    writer, WAIT_S at most each."""

    LINES = 10_000  # queued at most: a few MB of lines, seconds of a storm
    OWN = 1_000  # more, for the sidecar's own warnings (its transitions): review 47b, a
    # flood of gRPC's errors, read slowly, left no room for a stop's line
    WAIT_S = 1.0

    def __init__(self, stream: IO[str]) -> None:
        super().__init__(queue.SimpleQueue())  # type: ignore[arg-type]
        self._drops = threading.RLock()  # the count and its gap only, never held to log
        self.dropped, self._gap = 0, False
        self.writer = _Writer(self, stream)
        self.writer.start()

    def handle(self, record: logging.LogRecord) -> bool:  # type: ignore[override]
        if not self.filter(record):
            return False
        self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if record.exc_info or record.stack_info:
                line: str | logging.LogRecord = self.format(record)
            else:  # the writer formats it: its message is fixed now (a dict logged alone
                if record.args:  # stays one: the JSON line takes its keys as fields)
                    record.msg, record.args = record.getMessage(), None
                line = record
        except Exception:  # noqa: BLE001 - logging's own contract: never raise
            self.handleError(record)
            return
        room = self.LINES + self.OWN if record.levelno >= logging.WARNING \
            and record.name.startswith("ess_sidecar") else self.LINES
        if self.queue.qsize() < room:  # type: ignore[attr-defined]
            self.queue.put_nowait(line)
        else:
            self._drop()

    def handleError(self, record: logging.LogRecord) -> None:
        self._drop()  # a record that cannot be formatted: counted, not written here

    def _drop(self) -> None:
        with self._drops:
            self.dropped += 1
            if self._gap:
                return
            self._gap = True
        self.queue.put_nowait(GAP)

    def take_dropped(self) -> int:
        with self._drops:
            dropped, self.dropped, self._gap = self.dropped, 0, False
        return dropped

    def written(self, timeout_s: float) -> bool:
        """Waits, up to `timeout_s`, until every line queued before the call is written."""
        done = threading.Event()
        self.queue.put_nowait(done)
        return done.wait(timeout_s)

    def flush(self) -> None:
        self.written(self.WAIT_S)

    def close(self) -> None:
        self.writer.stop_within(self.WAIT_S)
        super().close()


class _Writer(logging.handlers.QueueListener):
    """The thread that writes the queued lines to the stream, and may wait on it; where
    lines began to be dropped, a line saying how many were."""

    def __init__(self, handler: _SidecarHandler, stream: IO[str]) -> None:
        super().__init__(handler.queue)
        self.handler, self.stream = handler, stream

    def handle(self,  # type: ignore[override]
               item: str | logging.LogRecord | _Gap | threading.Event) -> None:
        if isinstance(item, threading.Event):  # written(): what came before it is
            item.set()
            return
        if isinstance(item, logging.LogRecord):
            try:
                item = self.handler.format(item)
            except Exception:  # noqa: BLE001 - said where its line would have been (review
                item = self.handler.format(logging.LogRecord(  # 62: a gap queued now came
                    __name__, logging.WARNING, __file__, 0, "a log line of %s could not be"
                    " formatted: dropped", (item.name,), None))  # after later lines)
        if item is GAP:
            item = self.handler.format(logging.LogRecord(
                __name__, logging.WARNING, __file__, 0, "%d log line(s) dropped from here"
                " on: stderr was not read", (self.handler.take_dropped(),), None))
        try:
            self._write(f"{item}\n")
        except (OSError, ValueError):  # closed, or a broken pipe: nowhere to say it
            pass

    def _write(self, text: str) -> None:
        """All of `text`, waiting for a stream left non-blocking by whoever started the
        process (review 43j: its lines past a full pipe were lost, unsaid)."""
        try:
            fd = self.stream.fileno()
        except (AttributeError, OSError, ValueError):  # no descriptor (a test's): as it is
            self.stream.write(text)
            self.stream.flush()
            return
        data = text.encode("utf-8", "replace")
        while data:
            try:
                data = data[os.write(fd, data):]
            except BlockingIOError:
                ready(fd, None, WRITABLE)

    def stop_within(self, timeout_s: float) -> None:
        """Writes what is queued, waiting no more than `timeout_s` on the stream."""
        thread = self._thread  # type: ignore[attr-defined]
        if thread is not None:
            self.queue.put_nowait(self._sentinel)  # type: ignore[attr-defined]
            thread.join(timeout_s)
            self._thread = None


def flush(timeout_s: float = 5.0) -> bool:
    """Waits, up to `timeout_s`, until every line logged before the call is written."""
    return all(handler.written(timeout_s) for handler in logging.getLogger().handlers
               if isinstance(handler, _SidecarHandler))


def configure_logging(format: str, level: str, stream: IO[str] | None = None) -> None:
    """Root logger: one line per record on `stream` (stderr), JSON (`format="json"`:
    time, level, event, logger, the call's `extra=` fields, trace_id / span_id inside a
    span, exception) or human text, written by a thread of its own (`flush` waits for
    it). Calling it again replaces the previous set-up, as it replaces a plain handler on
    the same stream (logging.basicConfig's)."""
    target = stream if stream is not None else sys.stderr
    handler = _SidecarHandler(target)
    if format == "json":
        handler.setFormatter(UtcJsonFormatter(list(JSON_KEYS)[:4], rename_fields=JSON_KEYS))
    elif format == "text":
        handler.setFormatter(TextFormatter())
    else:
        raise ValueError(f"log format must be 'json' or 'text', not {format!r}")
    handler.addFilter(TraceIds())  # on the handler: root logger filters skip child loggers
    root = logging.getLogger()
    # Replaces its own earlier handler, and a plain one on the same stream (basicConfig's):
    # two handlers would print every record twice, once not as JSON.
    for previous in [h for h in root.handlers if isinstance(h, _SidecarHandler) or
                     (type(h) is logging.StreamHandler and h.stream is target)]:
        root.removeHandler(previous)
        previous.close()
    root.addHandler(handler)
    logging.captureWarnings(True)  # Python's warnings too: written to stderr where raised
    root.setLevel(level)
    # apprise logs every send at INFO and every failed attempt itself; the alert sink logs
    # what matters (retries, give-ups) once.
    logging.getLogger("apprise").setLevel(logging.ERROR)
    _install(logging.getLogger("grpc._cython.cygrpc"), UndecodableMetadata())
    headers = MalformedTraceHeaders()  # one count for all its loggers
    for name in MalformedTraceHeaders.LOGGERS:
        _install(logging.getLogger(name), headers)


@contextlib.contextmanager
def descriptor_2_never_waits() -> Iterator[str]:
    """gRPC's core writes its own lines (its errors, at GRPC_VERBOSITY's level) to file
    descriptor 2 itself, with write(2), from its threads: with a stderr nobody read and
    its pipe full, they stopped there, and with them calls on every connection (review
    47h: 30 to 200 health calls with a malformed `grpc-timeout` held checks and Triggers
    about 1 s each, some past 5 s; known gap 19). Within this, descriptor 2 is the same
    pipe or terminal opened again, non-blocking: a line that finds it full is dropped,
    one that finds room is written as before, a crash's last words too (review 48c: a
    thread draining it lost them), and faulthandler writes a crash's traceback there.
    `sys.stderr`, so Python's own lines and the log's (written by a thread that waits),
    and the journal's syncer keep a blocking descriptor of it. A file never blocks (and
    faulthandler is on for it too). Yields "" then, or why descriptor 2 stays as it is
    (a socket, such as journald's, cannot be opened again; nor can a pipe or terminal
    another user owns: review 48e), for the caller to say once it logs."""
    mode = os.fstat(2).st_mode
    previous, enabled = sys.stderr, faulthandler.is_enabled()
    own, unguarded = -1, ""
    if stat.S_ISFIFO(mode) or stat.S_ISCHR(mode):
        try:
            own = os.open("/proc/self/fd/2", os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as error:
            unguarded = f"cannot be opened again non-blocking ({error.strerror})"
    elif not stat.S_ISREG(mode):
        unguarded = "is a socket, which cannot be opened again non-blocking"
    if own >= 0:
        sys.stderr = open(os.dup(2), "w", buffering=1, errors="backslashreplace")  # noqa: SIM115
        os.dup2(own, 2)
        os.close(own)
    if not unguarded:  # where a crash's traceback cannot wait on stderr
        faulthandler.enable(2)
    try:
        yield unguarded
    finally:
        if own >= 0:
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.flush()
            os.dup2(sys.stderr.fileno(), 2)  # blocking again; the log's handler keeps its copy
            sys.stderr = previous
        with contextlib.suppress(OSError, ValueError):  # (a test's stderr: no descriptor)
            if enabled:
                faulthandler.enable(previous)
            else:
                faulthandler.disable()
