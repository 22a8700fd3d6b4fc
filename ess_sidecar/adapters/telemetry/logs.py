"""Structured logs: one JSON object per line on stderr, with the current trace's ids."""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import IO

from opentelemetry import trace
from pythonjsonlogger.json import JsonFormatter

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


class _SidecarHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler configure_logging installed, so a second call replaces it."""


def configure_logging(format: str, level: str, stream: IO[str] | None = None) -> None:
    """Root logger: one line per record on `stream` (stderr), JSON (`format="json"`:
    time, level, event, logger, the call's `extra=` fields, trace_id / span_id inside a
    span, exception) or human text. Calling it again replaces the previous set-up, as it
    replaces a plain handler on the same stream (logging.basicConfig's)."""
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
    root.addHandler(handler)
    root.setLevel(level)
    # apprise logs every send at INFO and every failed attempt itself; the alert sink logs
    # what matters (retries, give-ups) once.
    logging.getLogger("apprise").setLevel(logging.ERROR)
    _install(logging.getLogger("grpc._cython.cygrpc"), UndecodableMetadata())
    headers = MalformedTraceHeaders()  # one count for all its loggers
    for name in MalformedTraceHeaders.LOGGERS:
        _install(logging.getLogger(name), headers)
