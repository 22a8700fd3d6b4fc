"""Times: ISO 8601 or a duration back from now in; local time with its offset out."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from google.protobuf.timestamp_pb2 import Timestamp

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_RELATIVE = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")


def parse_when(text: str, now: datetime | None = None) -> datetime:
    """"2026-11-21T10:00:00Z" (naive means UTC) or "90s" / "15m" / "2h" / "7d" ago.
    Raises ValueError with what is accepted."""
    found = _RELATIVE.fullmatch(text.strip())
    if found:
        try:
            ago = timedelta(seconds=float(found.group(1)) * _UNITS[found.group(2)])
            return (now or datetime.now(UTC)) - ago
        except OverflowError:
            raise ValueError(f"{text!r} goes back before the year 1") from None
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is neither ISO 8601 (2026-11-21T10:00:00Z) nor a"
                         " duration back from now (90s, 15m, 2h, 7d)") from None
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when
    try:  # in UTC it must still be a time (review 36u: 0001-01-01T00:00+01:00 is year 0)
        when.astimezone(UTC)
    except OverflowError:
        raise ValueError(f"{text!r} is out of range in UTC") from None
    return when


def to_timestamp(when: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(when.astimezone(UTC))
    return stamp


def from_timestamp(stamp: Timestamp) -> datetime:
    return stamp.ToDatetime(tzinfo=UTC)


def utc_iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def local(when: datetime) -> str:
    """Local wall-clock time with its UTC offset: what the person on call reads."""
    return when.astimezone().isoformat(sep=" ", timespec="seconds")


def duration(seconds: float) -> str:
    """Short and exact enough to act on: 850ms, 12s, 4m59s, 1h02m, 3d04h."""
    seconds = abs(seconds)
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    whole = int(seconds)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


def relative(when: datetime, now: datetime | None = None) -> str:
    """"4m59s ago" or "in 4m59s"."""
    delta = (when - (now or datetime.now(UTC))).total_seconds()
    return f"in {duration(delta)}" if delta > 0 else f"{duration(delta)} ago"


def local_with_age(when: datetime) -> str:
    return f"{local(when)} ({relative(when)})"
