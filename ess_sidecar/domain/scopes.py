"""Scopes: what a state applies to (GLOBAL, ACCOUNT:<id>, STRATEGY:<id>, SYMBOL:<id>)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from .errors import InvalidArgument
from .ids import MAX_ID_LENGTH, blank, canonical_id, canonical_symbol

__all__ = ["GLOBAL", "MAX_ID_LENGTH", "Scope", "ScopeKind", "check_id", "check_text",
           "make_scope", "sanitized_text"]


class ScopeKind(enum.IntEnum):
    GLOBAL = 1
    ACCOUNT = 2
    STRATEGY = 3
    SYMBOL = 4


@dataclass(frozen=True, slots=True)
class Scope:
    kind: ScopeKind
    id: str = ""

    def __str__(self) -> str:
        return "GLOBAL" if self.kind is ScopeKind.GLOBAL else f"{self.kind.name}:{self.id}"

    @classmethod
    def parse(cls, text: str, field: str = "scope") -> Scope:
        """Parse "GLOBAL" or "KIND:id": the kind in ASCII letters, in any case, ASCII
        spaces around it let go (review 35: "ſymbol" was SYMBOL, Unicode's upper case of
        the long s being S)."""
        kind_name, _, ident = text.partition(":")
        kind_name = kind_name.strip(" \t")
        kind = ScopeKind.__members__.get(kind_name.upper()) if kind_name.isascii() else None
        if kind is None:
            raise InvalidArgument(field, f"unknown scope kind in {text!r}")
        return make_scope(kind, ident, field)


GLOBAL = Scope(ScopeKind.GLOBAL)


check_id = canonical_id  # every id but a symbol (ids.py says why and how)


def make_scope(kind: ScopeKind, ident: str, field: str = "scope") -> Scope:
    """Build a validated scope: GLOBAL takes no id, every other kind requires a canonical
    one (a symbol's folded to upper case)."""
    if kind is ScopeKind.GLOBAL:
        if ident:
            raise InvalidArgument(f"{field}.id", "must be empty for GLOBAL")
        return GLOBAL
    canonical = canonical_symbol if kind is ScopeKind.SYMBOL else canonical_id
    return Scope(kind, canonical(ident, f"{field}.id"))


MAX_TEXT_LENGTH = 1024


def check_text(value: str, field: str, required: bool = False) -> str:
    """Free text such as a reason: at most 1024 characters, no control characters but
    newlines and tabs; `required`, something visible (review 41c: a reason of U+2800 or
    U+3164 alone was the audit trail's why)."""
    if required and blank(value):
        raise InvalidArgument(field, "is required" if not value.strip() else
                              "is required: it has nothing visible")
    if len(value) > MAX_TEXT_LENGTH:
        raise InvalidArgument(field, f"is longer than {MAX_TEXT_LENGTH} characters")
    if not value.replace("\n", " ").replace("\t", " ").isprintable():
        raise InvalidArgument(field, "has control characters")
    return value


def sanitized_text(value: str, limit: int = MAX_TEXT_LENGTH) -> str:
    """Free text that must never be refused (a kill switch's reason): every control or
    format character but newline and tab written out as an escape (`\\x1b`, `\\r`), and
    the text cut to `limit` characters with a note of how long it was."""
    if value.replace("\n", " ").replace("\t", " ").isprintable() and len(value) <= limit:
        return value
    # Each character is one or more of the text: those past `limit` are never shown, and
    # not looked at (review 34: a reason of 4 million escaped whole held a Trigger 2 s).
    cleaned = "".join(c if c in "\n\t" or c.isprintable()
                      else c.encode("unicode_escape").decode("ascii") for c in value[:limit])
    if len(cleaned) <= limit and len(value) <= limit:
        return cleaned
    note = f" [… cut; {len(value)} characters given]"
    return cleaned[:limit - len(note)] + note
