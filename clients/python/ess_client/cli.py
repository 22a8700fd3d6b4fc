"""`ess-check`, the example every client ships, and `ess-smoke`, the driver of the
cross-language smoke test (tests/clients/smoke.py), on ess_client.

    ess-check --target HOST:PORT|unix:PATH [--token T] --account A --strategy S --symbol X
              --side buy|sell --qty Q --price P --coid ID [--deadline-ms N]

prints `ALLOWED <decision_id>` (exit 0) or `DENIED <REASON> <message>` (exit 2; a check
that could not be decided is `DENIED CLIENT_FAIL_CLOSED <why>`), and exits 64 on a usage
error."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ipaddress
import math
import re
import sys
import time
from collections.abc import Callable

import grpc

from ess.v1 import guard_pb2 as pb

from .client import GuardClient
from .verdict import Verdict

EX_USAGE = 64
FAIL_CLOSED = "CLIENT_FAIL_CLOSED"
# A longer deadline is a typo: a check waits for an answer in milliseconds, not hours; a
# shorter one than a microsecond is one too, and rounds to no deadline at all (5e-324).
MAX_DEADLINE_MS = 3_600_000.0
MIN_DEADLINE_MS = 0.001
MAX_HOST_CHARS = 253  # DNS's longest name
# A number's text: bounds every parser (review 52d: Go's ParseFloat misread one of 800
# digits, 1e13 as a far smaller number, and allowed it).
MAX_NUMBER_CHARS = 64
MAX_UNIX_PATH_BYTES = 107  # sun_path holds 108 bytes with the NUL
# The one grammar of every client's programs (tests/clients/smoke.py): float() alone takes
# `1_0` as 10, ` 1` and full-width digits, numbers the operator did not write.
_NUMBER = re.compile(r"[+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?")
# HOST (review 52d): a dotted quad, an RFC 1123 name (a numeric last label only as a dotted
# quad: gRPC's resolvers read `127.1` and `2130706433` their own ways) or [IPv6].
_OCTET = "(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_IPV4 = re.compile(rf"{_OCTET}(\.{_OCTET}){{3}}")
_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
# review 52e: a name ending in a number is an address to the URL standard (`0x7f.1` reached
# 127.0.0.1 in two clients), so only a dotted quad may end in one; review 53b: a last label
# that starts with a digit (`a.1b`) Java's URI refused, so a name's last label starts with a
# letter (RFC 2396's toplabel), which covers both.
_IPV6 = re.compile(r"[0-9A-Fa-f:.]+")
# PATH (review 52d): printable ASCII, none of `%`, `?`, `#` (gRPC's URI syntax reaches
# another file: `q?x.sock` is `q`); `//` only as `///abs` (the clients read `//host/x` apart).
_UNIX_PATH = re.compile(r"(?!//)[!-~]([ -~]*[!-~])?|///[!-.0-~]([ -~]*[!-~])?")
_PORT = re.compile(r"[0-9]{1,5}")
# ess-smoke's words: split on ASCII whitespace only, as every client's ess-smoke does
# (str.split() also splits on U+0085 and U+2028, inside what would be one field elsewhere).
_WORD = re.compile(r"[^ \t\n\x0b\f\r]+")
_SURROGATE = re.compile("[\ud800-\udfff]")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse exits 2, which means "denied" here
        self.print_usage(sys.stderr)
        print(f"{self.prog}: {message}", file=sys.stderr)
        sys.exit(EX_USAGE)


def _positive(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARS:
        raise argparse.ArgumentTypeError(f"longer than {MAX_NUMBER_CHARS} characters")
    if not _NUMBER.fullmatch(text):
        raise argparse.ArgumentTypeError(f"not a plain decimal number: {text!r}")
    value = float(text)
    if not 0 < value < math.inf:  # NaN fails too
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def _deadline_ms(text: str) -> float:
    """A deadline in ms: finite, at least a microsecond and at most an hour (a usage error,
    not the client's ValueError later)."""
    value = _positive(text)
    if value < MIN_DEADLINE_MS:
        raise argparse.ArgumentTypeError(f"must be at least {MIN_DEADLINE_MS}, got {text}")
    if value > MAX_DEADLINE_MS:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_DEADLINE_MS:.0f}, got {text}")
    return value


def _nonblank(text: str) -> str:
    # An empty --coid would have the library make one up that ess-check never prints.
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def _target(text: str) -> str:
    """HOST:PORT or unix:PATH, else a usage error: a typo must not look like an outage
    (a check that fails closed)."""
    if not _is_target(text):
        raise argparse.ArgumentTypeError(f"expected HOST:PORT or unix:PATH, got {text!r}")
    return text


def _is_target(text: str) -> bool:
    """The grammar of tests/clients/smoke.py: HOST (`_is_host`), PORT 1-65535; PATH 1-107
    characters of printable ASCII (a longer one never connects), not led or ended by a
    space, no `%`, `?` or `#`, and `//` only as `///` then a name."""
    if text.startswith("unix:"):
        path = text.removeprefix("unix:")
        return (len(path) <= MAX_UNIX_PATH_BYTES and _UNIX_PATH.fullmatch(path) is not None
                and not any(c in path for c in "%?#"))
    host, _, port = text.rpartition(":")
    return (_is_host(host) and _PORT.fullmatch(port) is not None
            and 1 <= int(port) <= 65535)


def _is_host(host: str) -> bool:
    """A dotted quad, an RFC 1123 name of at most 253 characters (one trailing dot may end
    it; its last label starting with a letter), or [IPv6] by
    ipaddress's reading."""
    if host.startswith("[") and host.endswith("]"):
        inside = host[1:-1]
        if not _IPV6.fullmatch(inside) or ":" not in inside:
            return False
        try:
            ipaddress.IPv6Address(inside)
        except ValueError:
            return False
        return True
    if _IPV4.fullmatch(host):
        return True
    labels = host.removesuffix(".").split(".")
    return (len(host) <= MAX_HOST_CHARS and all(_LABEL.fullmatch(x) for x in labels)
            and labels[-1][:1].isalpha())


def _dialled(target: str) -> str:
    """The target as gRPC is given it: HOST:PORT as `dns:///HOST:PORT`, where gRPC would
    read a host that is one of its schemes as the scheme (review 53b: `unix-abstract:1`
    reached the abstract Unix socket "1", `UNIX:1` the socket file ./1)."""
    return target if target.startswith("unix:") else f"dns:///{target}"


def _client(prog: str, target: str, **options: object) -> GuardClient:
    """GuardClient(target, ...); a target (or a token) it refuses all the same is a usage
    error, not a traceback."""
    try:
        return GuardClient(_dialled(target), **options)  # type: ignore[arg-type]
    except ValueError as error:
        # The library's own words say which: its target, or the token's metadata; anything
        # else names the construction's flags rather than blame one it was not (review 52d).
        text = str(error)
        flag = ("--target" if text.startswith("target ") else
                "--token" if text.startswith("metadata") else "--target/--token/--deadline-ms")
        print(f"{prog}: argument {flag}: {error}", file=sys.stderr)
        sys.exit(EX_USAGE)


def _parse(parser: argparse.ArgumentParser, words: list[str] | None) -> argparse.Namespace:
    """parser.parse_args(words); a value with a lone surrogate (argv's bytes that are not
    UTF-8, by surrogateescape) is a usage error naming its flag (review 52d), not a check
    that fails closed."""
    args = parser.parse_args(words)
    for name, value in vars(args).items():
        if isinstance(value, str) and _SURROGATE.search(value):
            parser.error(f"argument --{name.replace('_', '-')}: not valid UTF-8: {value!r}")
    return args


def _check_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ess-check", description="Ask an ESS sidecar whether an order may be"
                     " sent; exit 0 allowed, 2 denied, 64 usage error.")
    parser.add_argument("--target", required=True, type=_target,
                        help="HOST:PORT or unix:PATH")
    parser.add_argument("--token", default="", help="bearer token")
    for name in ("account", "strategy", "symbol"):
        parser.add_argument(f"--{name}", required=True)
    parser.add_argument("--coid", required=True, type=_nonblank, help="client_order_id")
    parser.add_argument("--side", required=True, choices=("buy", "sell"))
    parser.add_argument("--qty", required=True, type=_positive)
    parser.add_argument("--price", required=True, type=_positive)
    parser.add_argument("--deadline-ms", type=_deadline_ms, default=5.0,
                        help="per-check deadline (default 5)")
    return parser


def line(verdict: Verdict) -> str:
    """The one line ess-check prints for a verdict: whatever the sidecar's text holds, one
    line, each run of whitespace or unprintable characters one space (review 52a: a trip
    reason with a newline printed a second line reading `ALLOWED <id>` under the denial)."""
    if verdict.allowed:
        return _one_line(f"ALLOWED {verdict.decision_id}")
    reason = FAIL_CLOSED if verdict.failure is not None else verdict.reason_name
    return _one_line(f"DENIED {reason} {verdict.message}")


def _one_line(text: str) -> str:
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())


async def _check(args: argparse.Namespace) -> Verdict:
    async with _client("ess-check", args.target, token=args.token or None,
                       check_timeout_s=args.deadline_ms / 1000, log_interval_s=3600) as client:
        await client.connect(timeout_s=1.0)  # connecting is not the check's deadline
        return await client.check(account=args.account, strategy=args.strategy,
                                  symbol=args.symbol, side=args.side, quantity=args.qty,
                                  price=args.price, client_order_id=args.coid)


def check_main(argv: list[str] | None = None) -> int:
    words = sys.argv[1:] if argv is None else argv
    try:
        args = _parse(_check_parser(), words)
    except SystemExit as done:  # help exits 0, which means "allowed" here: beside an
        if not done.code and set(words) - {"-h", "--help"}:  # order's flags, a usage
            print("ess-check: --help given with other arguments: nothing was checked",
                  file=sys.stderr)  # error (review 40a: `ess-check ... --help && send`)
            return EX_USAGE
        raise
    verdict = asyncio.run(_check(args))
    with contextlib.suppress(OSError):  # a stdout that cannot take it: the exit status is
        print(line(verdict), flush=True)  # the answer (review 58e: exit 1)
    return 0 if verdict.allowed else 2


def smoke_main(argv: list[str] | None = None) -> int:
    """One long-lived client; stdin `check ACCOUNT STRATEGY SYMBOL SIDE QTY PRICE COID
    [DEADLINE_MS]`, one answer line each: the microseconds the check call took, then the
    ess-check line."""
    parser = _Parser(prog="ess-smoke")
    parser.add_argument("--target", required=True, type=_target)
    parser.add_argument("--token", default="")
    parser.add_argument("--deadline-ms", type=_deadline_ms, default=5.0)
    args = _parse(parser, argv)
    return asyncio.run(_smoke(args))


async def _smoke(args: argparse.Namespace) -> int:
    loop = asyncio.get_running_loop()
    async with _client("ess-smoke", args.target, token=args.token or None,
                       check_timeout_s=args.deadline_ms / 1000) as client:
        await client.connect(timeout_s=5.0)  # as an executor does when it starts
        while text := await loop.run_in_executor(None, sys.stdin.readline):
            if not (command := _WORD.findall(text)):
                continue
            if command[0] == "trigger":
                print(await _smoke_trigger(client, command), flush=True)
                continue
            try:
                account, strategy, symbol, side, qty, price, coid, deadline_s = \
                    _smoke_line(command)
            except (ValueError, argparse.ArgumentTypeError) as error:
                print(f"ess-smoke: {error}: {text.strip()!r}", file=sys.stderr)
                return EX_USAGE
            started = time.perf_counter()
            verdict = await client.check(account=account, strategy=strategy, symbol=symbol,
                                         side=side, quantity=qty, price=price,
                                         client_order_id=coid, timeout_s=deadline_s)
            elapsed_us = int((time.perf_counter() - started) * 1e6)
            print(f"{elapsed_us} {line(verdict)}", flush=True)
    return 0


async def _smoke_trigger(client: GuardClient, command: list[str]) -> str:
    """`trigger SCOPE MODE CODE DIRECTIVES REASON_HEX` (DIRECTIVES comma-separated, `-`
    for none or an empty reason; REASON_HEX the reason's bytes, read as a program reads
    bytes it is given: os.fsdecode's surrogateescape): `STATE VERSION`, or `ERROR CODE`
    or `RAISED TYPE` when the call did not return."""
    words = [*command[1:], "-", "-", "-", "-", "-"][:5]
    scope, mode, code, directives, reason_hex = ("" if w == "-" else w for w in words)
    reason = bytes.fromhex(reason_hex).decode("utf-8", "surrogateescape")
    mode_given, code_given = (int(w) if w.lstrip("-").isdigit() else w or 1
                              for w in (mode, code))
    try:
        answer = await client.trigger(scope, reason, reason_code=code_given, mode=mode_given,
                                      directives=[int(d) if d.lstrip("-").isdigit() else d
                                                  for d in directives.split(",") if d])
    except grpc.aio.AioRpcError as error:
        return f"ERROR {error.code().name}"
    except Exception as error:  # noqa: BLE001 - the test reads what happened
        return f"RAISED {type(error).__name__}"
    return f"{pb.State.Name(answer.state).removeprefix('STATE_')} {answer.state_version}"


def _smoke_line(command: list[str]) -> tuple[str, str, str, str, float, float, str,
                                             float | None]:
    """`check ACCOUNT STRATEGY SYMBOL SIDE QTY PRICE COID [DEADLINE_MS]`: the order, and
    the check's deadline in s (None: the client's); ValueError if it cannot be read."""
    if command[0] != "check" or not 8 <= len(command) <= 9:
        raise ValueError("expected 'check ACCOUNT STRATEGY SYMBOL SIDE QTY PRICE COID"
                         " [DEADLINE_MS]'")
    account, strategy, symbol, side, qty, price, coid = command[1:8]
    deadline_s = _field("DEADLINE_MS", _deadline_ms, command[8]) / 1000 \
        if len(command) > 8 else None
    return (account, strategy, symbol, side, _field("QTY", _positive, qty),
            _field("PRICE", _positive, price), coid, deadline_s)


def _field(name: str, read: Callable[[str], float], text: str) -> float:
    """`read(text)`; ValueError naming the field if it cannot be read."""
    try:
        return read(text)
    except argparse.ArgumentTypeError as error:
        raise ValueError(f"bad {name}: {error}") from None


def bench_main(argv: list[str] | None = None) -> int:
    """`ess-bench --target T --checks N --inflight K`: N measured checks (after --warmup
    unmeasured ones) through one client's stream, K in flight; prints
    `p50_us=.. p99_us=.. checks_per_s=..`; exit 1 if any check was not allowed."""
    parser = _Parser(prog="ess-bench")
    parser.add_argument("--target", required=True, type=_target)
    parser.add_argument("--token", default="")
    parser.add_argument("--checks", type=int, default=10_000)
    parser.add_argument("--warmup", type=int, default=1_000)
    parser.add_argument("--inflight", type=int, default=1)
    parser.add_argument("--deadline-ms", type=_deadline_ms, default=1000.0,
                        help="per-check deadline (high: measure, do not deny)")
    args = _parse(parser, argv)
    if args.checks < 1 or args.inflight < 1 or args.warmup < 0:
        parser.error("--checks and --inflight must be >= 1, --warmup >= 0")
    return asyncio.run(_bench(args))


async def _bench(args: argparse.Namespace) -> int:
    async with _client("ess-bench", args.target, token=args.token or None,
                       check_timeout_s=args.deadline_ms / 1000) as client:
        await client.connect(timeout_s=5.0)
        denied = await _run_checks(client, args.warmup, args.inflight, [])
        latencies: list[float] = []
        started = time.perf_counter()
        denied += await _run_checks(client, args.checks, args.inflight, latencies)
        elapsed = time.perf_counter() - started
    latencies.sort()
    p50, p99 = (latencies[min(len(latencies) - 1, int(q * len(latencies)))] for q in (0.5, 0.99))
    print(f"p50_us={p50 * 1e6:.0f} p99_us={p99 * 1e6:.0f}"
          f" checks_per_s={len(latencies) / elapsed:.0f}")
    if denied:
        print(f"{denied} checks were not allowed", file=sys.stderr)
    return 1 if denied else 0


async def _run_checks(client: GuardClient, count: int, inflight: int,
                      latencies: list[float]) -> int:
    """`count` checks by `inflight` workers sharing the client; how many were not allowed."""
    remaining, denied = [count], [0]

    async def worker() -> None:
        while remaining[0] > 0:
            remaining[0] -= 1
            started = time.perf_counter()
            verdict = await client.check(account="bench-acc", strategy="bench",
                                         symbol="BENCH", side="buy", quantity=1, price=100)
            latencies.append(time.perf_counter() - started)
            denied[0] += not verdict.allowed

    await asyncio.gather(*(worker() for _ in range(inflight)))
    return denied[0]
