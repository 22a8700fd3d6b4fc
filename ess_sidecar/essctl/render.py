"""Output: rich for people (tables, coloured states), one JSON object per line for scripts."""

from __future__ import annotations

import json
import os
import re
import sys
import unicodedata
from collections.abc import Iterable
from typing import Any, TextIO

from google.protobuf.descriptor import EnumDescriptor, FieldDescriptor
from google.protobuf.message import Message
from rich.console import Console
from rich.prompt import Confirm
from rich.text import Text

from ess.v1 import guard_pb2 as pb

from ..domain.scopes import Scope
from .connection import Failed
from .times import from_timestamp, local, local_with_age, utc_iso

STATE_STYLES = {pb.STATE_ARMED: "bold green", pb.STATE_REDUCE_ONLY: "bold yellow",
                pb.STATE_TRIPPED: "bold red", pb.STATE_COOLING_DOWN: "bold magenta"}


class _Console(Console):
    gone = False  # its reader went away (a closed pipe)

    def on_broken_pipe(self) -> None:
        """A closed pipe: say nothing more, and go on. The command's exit status is its
        effect's: rich's own exits 1 at once, which would tell a script that a stop that
        went out failed (review 30), and so did a reset that was done, or an order that
        was allowed, when essctl raised here (review 51a: `essctl status | head -1` exited
        1, not 2). A command that only prints (watch) stops once its reader is `gone`."""
        self.quiet = self.gone = True
        _to_nowhere(self.file)


def _to_nowhere(stream: TextIO) -> None:
    """What is written to `stream` from now on goes nowhere."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())


def _console(stream: TextIO, stderr: bool) -> Console:
    # Piped output keeps whole lines: rich would otherwise wrap tables at 80 columns.
    wide = not stream.isatty() and "COLUMNS" not in os.environ
    return _Console(stderr=stderr, highlight=False, width=200 if wide else None)


class Output:
    """Where a command writes: people get rich text, --json gets JSON on stdout."""

    def __init__(self, json_mode: bool) -> None:
        self.json = json_mode
        self.console = _console(sys.stdout, stderr=False)
        self.errors = _console(sys.stderr, stderr=True)
        self._emitted_to_nobody = False

    @property
    def gone(self) -> bool:
        """Whether the reader of the output went away (a closed pipe): what is said since
        goes nowhere, and the command goes on to its exit status."""
        return self.console.gone or self._emitted_to_nobody

    def emit(self, document: dict[str, Any]) -> None:
        try:
            print(json.dumps(document), flush=True)
        except BrokenPipeError:  # as the console's on_broken_pipe
            self._emitted_to_nobody = True
            _to_nowhere(sys.stdout)

    def error(self, message: str) -> None:
        self.note(Text(f"essctl: {message}"))

    def note(self, message: str | Text) -> None:
        """A remark for the person (stderr), so it never mixes into --json output. Best
        effort: a stderr that cannot take it (a closed pipe) never stops a command, the
        kill switch above all (review 30)."""
        try:
            self.errors.print(message if isinstance(message, Text) else Text(message),
                              soft_wrap=True)
        except OSError:
            pass

    def line(self, *parts: str | Text) -> None:
        self.console.print(Text.assemble(*parts), soft_wrap=True)


def _prefix(enum: EnumDescriptor) -> str:
    """buf's STANDARD lint prefixes every value with its enum's name: State -> STATE_."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", enum.name).upper() + "_"


def enum_name(enum: EnumDescriptor, number: int) -> str:
    value = enum.values_by_number.get(number)
    return value.name.removeprefix(_prefix(enum)) if value else str(number)


def state_name(state: int) -> str:
    return enum_name(pb.State.DESCRIPTOR, state)


def state_text(state: int) -> Text:
    return Text(state_name(state), style=STATE_STYLES.get(state, ""))


def scope_name(scope: pb.Scope) -> str:
    kind = enum_name(pb.ScopeKind.DESCRIPTOR, scope.kind)
    return "GLOBAL" if scope.kind == pb.SCOPE_KIND_GLOBAL else f"{kind}:{scope.id}"


def say_no_answer(out: Output, what: str, described: str, message: str,
                  **fields: Any) -> None:
    """A command sent that got no answer (`described`: the error), and `message`: where
    things stand now, as text or as JSON with `fields` (essctl reset, orders clear)."""
    said = f"no answer to the {what} ({described}); {message}"
    if out.json:
        out.emit({"result": "no_answer", **fields, "message": said})
    else:
        out.line(Text("NO ANSWER", style="bold yellow"), f": {said}")


def scope_cell(scope: pb.Scope, style: str = "") -> Text:
    """A scope as a table shows it, marked when its id is not plain ASCII (review 36u: a
    halt of SYMBOL:АAPL, Cyrillic А, read as AAPL's in status and history)."""
    marked = "" if scope.id.isascii() else " (not ASCII)"
    return Text(scope_name(scope) + marked, style=style)


def non_ascii_notes(scopes: Iterable[pb.Scope]) -> list[str]:
    """non_ascii_note of each scope that has one, once."""
    return list(dict.fromkeys(note for scope in scopes if (note := non_ascii_note(scope))))


def non_ascii_note(scope: pb.Scope) -> str:
    """For a scope id that is not plain ASCII, every such character by name: a letter of
    another script can look like a Latin one ("ꓮAPL" is not "AAPL"), and neither the
    refusal of disguised ids nor a stop's cover of look-alikes (Unicode's confusables,
    stop 61) knows every one. Empty for an ASCII id."""
    if scope.id.isascii():
        return ""
    spelled = ", ".join(dict.fromkeys(
        f"U+{ord(c):04X} {unicodedata.name(c, '?')}" for c in scope.id if not c.isascii()))
    spelling = "so, in any case," if scope.kind == pb.SCOPE_KIND_SYMBOL else "so"
    return (f"note: {scope_name(scope)} is not plain ASCII ({spelled}): it holds orders"
            f" whose ids are spelled {spelling} or look like it by Unicode's confusables,"
            " and no others")


def scope_to_pb(scope: Scope) -> pb.Scope:
    # The domain's ScopeKind values are the proto's enum numbers.
    return pb.Scope(kind=int(scope.kind), id=scope.id)


def cause_text(cause: int, breaker: str = "", reason_code: int = 0, drill: bool = False) -> str:
    """Why: "TRIGGER (RISK_VIOLATION)", "BREAKER daily_drawdown_pct", ... and DRILL."""
    text = enum_name(pb.Cause.DESCRIPTOR, cause)
    if breaker:
        text += f" {breaker}"
    if reason_code:
        text += f" ({enum_name(pb.TriggerReason.DESCRIPTOR, reason_code)})"
    return text + (" DRILL" if drill else "")


def names(enum: EnumDescriptor, numbers: Any) -> str:
    return ", ".join(enum_name(enum, n) for n in numbers)


def when(message: Message, field: str) -> str:
    """Local time and age of a Timestamp field, or "" when it is unset."""
    return local_with_age(from_timestamp(getattr(message, field))) \
        if message.HasField(field) else ""


def local_time(message: Message, field: str) -> str:
    """Local time of a Timestamp field, or "" when it is unset."""
    return local(from_timestamp(getattr(message, field))) if message.HasField(field) else ""


def transition_text(previous: int, state: int) -> Text:
    return Text.assemble(state_text(previous), " → ", state_text(state))


def to_json(message: Message) -> dict[str, Any]:
    """Every field, snake_case: scopes as "STRATEGY:momo", enums without their prefix,
    times as UTC ISO 8601, unset messages and optional fields as null (review 57c: an
    older sidecar's answer, which never says whether a deregistration removed anything,
    read as saying it did not)."""
    return {field.name: _json_field(message, field) for field in message.DESCRIPTOR.fields}


def _json_field(message: Message, field: FieldDescriptor) -> Any:
    value = getattr(message, field.name)
    if field.is_repeated:
        return [_json_value(field, item) for item in value]
    if field.has_presence and not message.HasField(field.name):
        return None
    return _json_value(field, value)


def _json_value(field: FieldDescriptor, value: Any) -> Any:
    if field.type == FieldDescriptor.TYPE_ENUM:
        return enum_name(field.enum_type, value)
    if field.type != FieldDescriptor.TYPE_MESSAGE:
        return value
    if field.message_type.full_name == "ess.v1.Scope":
        return scope_name(value)
    if field.message_type.full_name == "google.protobuf.Timestamp":
        return utc_iso(from_timestamp(value))
    return to_json(value)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return os.isatty(stream.fileno())
    except (AttributeError, OSError, ValueError):  # closed, or not a file
        return False


def confirm(question: str, out: Output, no_tty: str) -> None:
    """Ask a person; raise Failed(no_tty) when nobody can answer (stdin is not a TTY, or
    neither stdout nor stderr is one to ask on) and Failed when the answer is not yes.
    Nothing has changed in either case. Asked on stdout when it is the terminal, else on
    stderr, and never once what came before the question went nowhere (review 51c: with
    stdout a closed pipe, the question was never seen, and a blind "y" did the reset)."""
    if not sys.stdin.isatty():
        raise Failed(no_tty)
    if out.gone:
        raise Failed("not confirmed: what it would change could not be shown (the output"
                     " is closed); nothing changed")
    # Where a person sees it: the file descriptors themselves (rich takes FORCE_COLOR for
    # a terminal: review 51e, the question went into a file and a blind "y" went ahead)
    if not out.json and _is_terminal(sys.stdout):
        asking = out.console
    elif _is_terminal(sys.stderr):
        asking = out.errors
    else:
        raise Failed(no_tty)
    try:
        agreed = Confirm.ask(Text(question), console=asking, default=False)
    except EOFError:
        agreed = False
    if asking.gone:  # type: ignore[attr-defined]  # the question itself went nowhere
        raise Failed("not confirmed: the question could not be shown; nothing changed")
    if not agreed:
        raise Failed("not confirmed; nothing changed")
