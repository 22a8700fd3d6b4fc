"""What a message protobuf refuses can still tell: which string in it is not UTF-8, and
the request id of a CheckOrderStream request that holds one. Protobuf refuses the whole
message for one such string (a C++ or Go executor can send them), so without this the
error could not name the field, and the stream could not answer that request alone."""

from __future__ import annotations

from google.protobuf import empty_pb2
from google.protobuf.descriptor import Descriptor, FieldDescriptor
from google.protobuf.message import DecodeError
from google.protobuf.unknown_fields import UnknownFieldSet

VARINT, LENGTH_DELIMITED = 0, 2  # wire types


def invalid_utf8(raw: bytes, descriptor: Descriptor) -> str | None:
    """The path of the first string field in `raw` (a `descriptor` message on the wire)
    that is not UTF-8, as "order.symbol" or "scopes[1].id"; None if there is none, or if
    `raw` is not protobuf at all. Read as unknown fields of an empty message: they are
    kept as bytes, unchecked."""
    fields = _fields(raw)
    if fields is None:
        return None
    seen: dict[int, int] = {}
    for field in fields:
        known = descriptor.fields_by_number.get(field.field_number)
        if known is None or field.wire_type != LENGTH_DELIMITED:
            continue  # not counted: protobuf skips it too (review 36c)
        index = seen[field.field_number] = seen.get(field.field_number, -1) + 1
        name = f"{known.name}[{index}]" if known.is_repeated else known.name
        if known.type == FieldDescriptor.TYPE_STRING:
            try:
                field.data.decode("utf-8")
            except UnicodeDecodeError:
                return name
        elif known.type == FieldDescriptor.TYPE_MESSAGE:
            inner = invalid_utf8(field.data, known.message_type)
            if inner is not None:
                return f"{name}.{inner}"
    return None


def request_id(raw: bytes) -> int:
    """The request_id (field 1) of a CheckOrderStreamRequest on the wire; 0 if none."""
    found = 0
    for field in _fields(raw) or ():
        if field.field_number == 1 and field.wire_type == VARINT:
            found = field.data  # the last one wins, as protobuf's own parse does
    return found


def _fields(raw: bytes) -> UnknownFieldSet | None:
    try:
        return UnknownFieldSet(empty_pb2.Empty.FromString(raw))
    except DecodeError:
        return None
