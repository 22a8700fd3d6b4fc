"""Structured logs: one JSON object per line on stderr, with the current trace's ids."""

from __future__ import annotations

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


class UndecodableMetadata(logging.Filter):
    """gRPC logs each metadata value that is not UTF-8 at ERROR, with the value and a
    traceback, for every call (review 36c: 200 calls with a stray byte wrote 167 KB, and a
    bearer token with one in its value was logged in clear). Such a record becomes a
    WARNING that never shows the value, at most one every `every_s`, with how many since."""

    MESSAGE = "Invalid encoding on %s"  # grpc/_cython/_cygrpc/grpc_string.pyx.pxi

    def __init__(self, every_s: float = 1.0) -> None:
        super().__init__()
        self._every_s, self._logged_at, self._unlogged = every_s, -every_s, 0

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg != self.MESSAGE:
            return True
        self._unlogged += 1
        now = time.monotonic()
        if now - self._logged_at < self._every_s:
            return False
        record.msg = "a call's metadata held a value that is not UTF-8 (not logged): %d such" \
            " value(s) since the last line"
        record.args, record.exc_info, record.exc_text = (self._unlogged,), None, None
        record.levelno, record.levelname = logging.WARNING, "WARNING"
        self._logged_at, self._unlogged = now, 0
        return True


class UtcJsonFormatter(JsonFormatter):
    """time as ISO 8601 UTC with milliseconds: 2025-01-31T12:00:00.123Z."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{seconds}.{int(record.msecs):03d}Z"


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
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
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
    grpc_core = logging.getLogger("grpc._cython.cygrpc")
    for previous in [f for f in grpc_core.filters if isinstance(f, UndecodableMetadata)]:
        grpc_core.removeFilter(previous)
    grpc_core.addFilter(UndecodableMetadata())
