"""essctl: command line, global options, dispatch and exit codes."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import math
import os
import sys
import textwrap
import unicodedata
from collections.abc import Sequence
from typing import IO

import grpc

from .. import __version__
from ..domain.errors import InvalidArgument
from ..domain.ids import canonical_id, canonical_symbol
from ..domain.scopes import Scope
from . import commands, drill, heartbeats, orders, reset, status, tokens, watch
from .connection import DEFAULT_PORT, DEFAULT_TARGET, MAX_TIMEOUT_S, Exit, Failed, Options, \
    Sidecar, UsageError, describe
from .render import Output

DESCRIPTION = "Operate an ESS sidecar: see and change the emergency-stop state of trading."
EPILOG = """\
global options (--target, --token, --tls..., --timeout, --json) may be given before or
after the command.

environment: ESS_TARGET (default for --target), ESS_TOKEN (default for --token)

exit codes (every command):
  0    done; status: every scope ARMED; check: allowed; drill: PASS
  1    could not do it: sidecar unreachable, UNAUTHENTICATED, PERMISSION_DENIED,
       INVALID_ARGUMENT, any other RPC error (its code and the server's message on stderr)
  2    the answer is no: status: a scope is not ARMED; check: denied; reset: refused;
       drill: FAIL; orders clear: a named order was not working; heartbeats
       deregister: no such registration
  3    reset: waiting for a second operator's approval (four-eyes)
  64   usage error, including an id that is not canonical (spaces around it, invisible
       or control characters, not NFC): ids are checked before anything is sent
  130  interrupted (Ctrl-C); watch exits 0 on Ctrl-C
"""
GLOBAL_DEFAULTS = {"target": None, "token": None, "tls": False, "tls_ca": None,
                   "tls_cert": None, "tls_key": None, "tls_server_name": None,
                   "timeout": 5.0, "json": False}


class Parser(argparse.ArgumentParser):
    """argparse exits 2 on a usage error, which would read as "tripped": 64 instead. No
    abbreviated options: `--for` must not quietly mean --force."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(Exit.USAGE, f"{self.prog}: error: {message}\n")

    def _print_message(self, message: str, file: IO[str] | None = None) -> None:
        """Best effort: a reader gone (`essctl trigger --bad 2>&1 | head -1`) must not
        change what the exit status says (review 58c: 1, where no stop was sent, 64)."""
        with contextlib.suppress(BrokenPipeError):
            super()._print_message(message, file)


def _problem(error: InvalidArgument) -> str:
    """The error's message without the field it names (argparse names the option)."""
    return str(error).removeprefix(f"{error.field}: ")


def _typed(text: str) -> str:
    """What was typed, quoted; with non-ASCII, spelled out too: an invisible character
    must be seen to be deleted."""
    shown, spelled = repr(text), ascii(text)
    return shown if shown == spelled else f"{shown} (that is {spelled})"


def scope_arg(text: str) -> Scope:
    """A scope as the sidecar will see it: ids canonical (else exit 64), symbols in upper
    case ("symbol:aapl" is SYMBOL:AAPL)."""
    try:
        return Scope.parse(text)
    except InvalidArgument as error:
        what = f"its id {_problem(error)}" if error.field.endswith(".id") else _problem(error)
        raise argparse.ArgumentTypeError(f"{_typed(text)}: {what} (use global, account:ID,"
                                         " strategy:ID or symbol:ID)") from None


def id_arg(field: str, symbol: bool = False):  # noqa: ANN201
    """An argparse type for an id: canonical as typed (else exit 64, naming the problem);
    a symbol is folded to upper case."""
    canonical = canonical_symbol if symbol else canonical_id

    def parse(text: str) -> str:
        try:
            return canonical(text, field)
        except InvalidArgument as error:
            raise argparse.ArgumentTypeError(f"{_typed(text)} {_problem(error)}") from None
    parse.__name__ = field  # argparse names the type in some messages
    return parse


def positive(text: str) -> float:
    """A finite number > 0 (review 55f: `check --price inf` was sent, refused
    INVALID_ARGUMENT, exit 1, where every other bad argument is a usage error, 64)."""
    value = float(text)
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"must be a finite positive number, got {text}")
    return value


def seconds(text: str) -> float:
    """A wait: > 0 and at most MAX_TIMEOUT_S (gRPC cannot carry a deadline of 1e10 s: the
    call would fail unsent, a kill switch included)."""
    value = positive(text)
    if not value <= MAX_TIMEOUT_S:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_TIMEOUT_S:g} seconds, got"
                                         f" {text}")
    return value


def count(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {text}")
    return value


def _global_options() -> argparse.ArgumentParser:
    # SUPPRESS: an option given before the command is not overwritten by the
    # subcommand's default; the real defaults are filled in after parsing.
    common = Parser(add_help=False, argument_default=argparse.SUPPRESS)
    group = common.add_argument_group("global options")
    group.add_argument("--target", help=f"sidecar: host:port (port {DEFAULT_PORT} if none),"
                       " unix:PATH or a socket path (/PATH, ./PATH) (default $ESS_TARGET or"
                       f" {DEFAULT_TARGET})")
    group.add_argument("--token", help="bearer token (default $ESS_TOKEN)")
    group.add_argument("--tls", action="store_true", help="TLS on a TCP target")
    group.add_argument("--tls-ca", metavar="FILE", help="root CA PEM (default system roots)")
    group.add_argument("--tls-cert", metavar="FILE", help="client certificate PEM (mTLS)")
    group.add_argument("--tls-key", metavar="FILE", help="client private key PEM (mTLS)")
    group.add_argument("--tls-server-name", metavar="NAME",
                       help="expected server name in its certificate")
    group.add_argument("--timeout", type=seconds, metavar="SECONDS",
                       help="deadline of each call (default 5; not applied to watch)")
    group.add_argument("--json", action="store_true", help="machine-readable output")
    return common


def _parser() -> Parser:
    common = _global_options()
    parser = Parser(prog="essctl", description=DESCRIPTION, epilog=EPILOG, parents=[common],
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"essctl {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add = _adder(sub, common)
    status.add_parser(add)
    watch.add_parser(add, scope_arg, count)
    commands.add_trigger(add, scope_arg)
    reset.add_parser(add, scope_arg)
    commands.add_check(add, positive, id_arg)
    commands.add_history(add, scope_arg, count)
    drill.add_parser(add, scope_arg, seconds)
    orders.add_parser(add, common, id_arg)
    heartbeats.add_parser(add, common, id_arg, scope_arg)
    tokens.add_parser(add, common)
    return parser


def _adder(sub: argparse._SubParsersAction, common: Parser):  # noqa: ANN202
    """add(name, help) -> a subcommand parser that takes the global options too."""
    def add(name: str, help_text: str) -> Parser:
        return sub.add_parser(name, help=help_text, description=textwrap.fill(help_text),
                              parents=[common], epilog=EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    return add


def _options(args: argparse.Namespace) -> Options:
    for name, default in GLOBAL_DEFAULTS.items():
        if not hasattr(args, name):
            setattr(args, name, default)
    if args.target is not None:
        target, source = args.target, "--target"
    elif os.environ.get("ESS_TARGET"):
        target, source = os.environ["ESS_TARGET"], "ESS_TARGET"
    else:
        target, source = DEFAULT_TARGET, "the default target"
    # Stripped as the sidecar strips it: a token read from a secrets file ends in "\n", which
    # gRPC refuses in a header (INTERNAL), and the kill switch must not fail so. An empty
    # --token (`--token "$MISSPELT"`) is not given (review 58c: it overrode ESS_TOKEN, and
    # the stop went out with no token, refused).
    token = (args.token or "").strip()
    if not token and (token := os.environ.get("ESS_TOKEN", "").strip()) \
            and args.token is not None:
        with contextlib.suppress(OSError):
            print("essctl: --token is empty: the token in ESS_TOKEN is sent", file=sys.stderr)
    return Options(
        target=target, target_source=source, token=token,
        tls=args.tls, tls_ca=args.tls_ca, tls_cert=args.tls_cert, tls_key=args.tls_key,
        tls_server_name=args.tls_server_name, timeout=args.timeout)


def _run(args: argparse.Namespace, options: Options, out: Output) -> int:
    if getattr(args, "offline", False):
        return args.run(args, out)
    if getattr(args, "stops", False) and (unusable := options.unusable_token()) is not None:
        # The kill switch never refuses for what comes with it (review 37h): sent without
        # the token, a sidecar with authentication off stops; one with it says so.
        out.note(f"essctl: warning: {unusable}; sending the stop without it")
        options = dataclasses.replace(options, token="")
    options.validate()
    if options.token_in_clear():
        out.note(f"essctl: warning: the token is sent unencrypted to {options.target}"
                 " (use --tls)")
    with Sidecar(options, watch=getattr(args, "watch_channel", False)) as sidecar:
        return args.run(args, sidecar, out)


ONCE = ("--scope", "--target", "--token")  # a stop goes where, and as whom, it was typed
# Global options that take a value: the word after one is not the command.
VALUED = ("--target", "--token", "--tls-ca", "--tls-cert", "--tls-key", "--tls-server-name",
          "--timeout")
# Minus signs that are not Unicode dashes (Pd), and blanks that are letters to Python.
MINUSES, BLANKS = "\u02d7\u2212\u2796\ufe63\uff0d", "\u2800\u3164"
# Options whose value may be any word, `trigger` too.
WORDY = ("--reason", "--scope", "--code", "--directive")


def _is_trigger(word: str) -> bool:
    """`trigger`, or a near miss of it (`Trigger`, `triger`)."""
    return bool(difflib.get_close_matches(word.lower(), ["trigger"], cutoff=0.8))


def _asks_to_stop(words: list[str]) -> bool:
    """Whether the command line means a stop, however it is spelled: --panic, or a word
    like `trigger` that is not an option's value (review 39p: `triger` and `Trigger`
    said nothing; 39r: nor did `--targt HOST trigger`)."""
    return "--panic" in words or any(before not in VALUED + WORDY and _is_trigger(word)
                                     for before, word in zip([""] + words, words))


def _dashed(word: str) -> bool:
    """Whether `word` starts with a dash that is not `-`, or with `-` behind characters
    that do not show: a pasted option (`—target=B`), which argparse takes for a value."""
    shown = unicodedata.normalize("NFKC", word)
    shown = shown.lstrip("".join(c for c in shown if not c.isprintable() or c.isspace()
                                 or c in BLANKS))
    if not shown:
        return False
    if shown[0] == "-":
        return shown != word
    return unicodedata.category(shown[0]) == "Pd" or shown[0] in MINUSES


def _values(words: list[str], option: str) -> set[str]:
    """The values `option` is given in `words` (`--scope X`, `--scope=X`). An option of
    WORDY given none (bare, before another option, or `--scope=`) keeps the one before."""
    given = {words[i + 1] if word == option and i + 1 < len(words)
             and not words[i + 1].startswith("-") else word.partition("=")[2]
             for i, word in enumerate(words) if word == option or word.startswith(option + "=")}
    return given - {""} if option in WORDY else given


def _stop_problem(words: list[str]) -> str | None:
    """What is wrong with a stop's command line that argparse takes: an option of ONCE
    given twice with different values (argparse keeps the last: review 39n, `--scope
    global ... --scope strategy:s5` halted the strategy alone; but --panic halts GLOBAL
    whatever its scopes: review 39p), or a word that starts with a dash that is not `-`
    (a pasted `—target`, taken as a reason or a scope, sent the stop to the default
    sidecar: reviews 39n, 39p). Never a value: it may be a token."""
    for option in ONCE:
        if option == "--scope" and "--panic" in words:
            continue
        if len(values := _values(words, option)) > 1:
            return f"{option} given {len(values)} different values: which one is meant?"
    for index, word in enumerate(words):
        if _dashed(word):
            return (f"word {index + 1} starts with a dash that is not '-' (pasted?): an"
                    " option mistyped may send the stop elsewhere")
    return None


def main(argv: Sequence[str] | None = None) -> int:
    for name in ("stdout", "stderr"):  # closed when started (`>&-`, a bare daemon): Python
        if getattr(sys, name) is None:  # has None there, and the stop must still go out
            setattr(sys, name, open(os.devnull, "w"))  # noqa: SIM115 - for the process
    words = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    try:
        args = parser.parse_args(words)
        if getattr(args, "stops", False) and (problem := _stop_problem(words)) is not None:
            parser.error(problem)
    except SystemExit as stop:  # --help, --version (0) or a usage error (64)
        # A stop's command line that sent none says so (review 39f: exit 64, and never
        # said); so does one that asked for help beside its flags (review 39n: a reason
        # "-h" printed the help, exit 0).
        flags = [w for w in words if w not in ("-h", "--help", "--version")
                 and not _is_trigger(w)]
        if _asks_to_stop(words) and (stop.code or flags):
            with contextlib.suppress(BrokenPipeError):
                print("essctl: NO STOP WAS SENT: correct the command and send it again",
                      file=sys.stderr)
            return Exit.USAGE
        return int(stop.code or 0)
    options = _options(args)
    out = Output(args.json)
    try:
        if not getattr(args, "offline", False):
            options = options.resolved()  # the target as grpc dials it: exit 64 if unparsable
        return _run(args, options, out)
    except UsageError as error:
        out.error(f"usage: {error}" + ("; NO STOP WAS SENT" if getattr(args, "stops", False)
                                      else ""))
        return Exit.USAGE
    except Failed as error:
        out.error(str(error))
        return Exit.FAILED
    except grpc.RpcError as error:
        out.error(describe(error, options))
        return Exit.FAILED
    except KeyboardInterrupt:
        out.error("interrupted")
        return Exit.INTERRUPTED
    except BrokenPipeError:  # `essctl watch | head`: its reader went away, and it only
        return Exit.FAILED  # prints (a command with an effect goes on to its own status)


if __name__ == "__main__":
    sys.exit(main())
