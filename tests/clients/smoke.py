r"""The smoke test every client passes, in any language, against a live `ess-sidecar serve`.

A client ships two programs in clients/<lang>/bin (`make clients` builds them):
- `ess-check`, the example (README): one check, one line, exit 0 allowed / 2 denied / 64
  usage;
- `ess-smoke --target T [--token T] [--deadline-ms N]`: ONE long-lived client of the
  library, connected before it reads stdin; for each stdin line `check ACCOUNT STRATEGY
  SYMBOL SIDE QTY PRICE COID [DEADLINE_MS]` (the check's own deadline, else --deadline-ms)
  it prints `<microseconds the library call took> <the ess-check line>`.

The checks whose answer is the point get a generous deadline (a loaded 2-core machine can
take more than 5 ms for a first message); the fail-closed ones keep the default 5 ms.

Through both: an order is allowed; after a Trigger of its strategy it is denied
SCOPE_TRIPPED, on one line whatever lines the trip's reason holds; with the sidecar
killed it is denied CLIENT_FAIL_CLOSED within the deadline plus 50 ms (the library call,
timed by the client itself: process start excluded); with the sidecar back, it is allowed
again once the client has reconnected by itself.

A stop is never refused for what comes with it (trigger_test): the Python, Go and
TypeScript clients' ess-smoke also read
`trigger SCOPE MODE CODE DIRECTIVES REASON_HEX` (DIRECTIVES comma-separated; `-` for the
default, none or an empty reason; a number is sent as a number; REASON_HEX the reason's
bytes, read as the language reads text it is given: raw bytes where strings are bytes
(Python: surrogateescape), UTF-16LE code units in JavaScript) and calls the library's trigger, printing `STATE
VERSION` (e.g. `TRIPPED 3`), or `ERROR CODE` / `RAISED WHAT` when it did not return.

Bad arguments are usage errors (exit 64, the flag named on stderr's last line, whatever
lines the value holds), at once: a value that is not valid UTF-8 (one with U+FFFD in Java and
TypeScript, which read such bytes so), an empty --coid (else the library would make one up that
ess-check never prints), an empty --target, --help beside an order's flags (0 would read
as allowed), and a --deadline-ms that is not a finite number of at least 0.001 (a
microsecond) and at most an hour; ess-smoke refuses the same, and a bad DEADLINE_MS on a
line, rather than crash or hang. ess-smoke splits its input into lines on \n only (a \r before
it dropped) and its lines into words on ASCII whitespace only (space, \t, \n, \v, \f, \r); a
line that is not UTF-8 is answered (the check fails closed) or a usage error, never a stop.

One grammar in every language (review 52a: each read `1_0`, `0x10`, `1d` or ` 1` its own
way, and a typo in a target looked like an outage): a number (--qty, --price, --deadline-ms;
QTY, PRICE, DEADLINE_MS on a line) is plain decimal as given, no spaces,
`[+]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?` of at most 64 characters (review 52d:
Go's ParseFloat misread one of 800 digits, 1e13 as a far smaller number, and allowed it; the
bound bounds every parser; a subnormal one is a number: the sidecar judges it); a target is `HOST:PORT` or `unix:PATH`. HOST (review 52d: gRPC's
resolvers read `127.1` and `2130706433` their own ways) is a dotted quad (4 parts of 0-255, no
leading zero), an RFC 1123 name (dot-separated labels of 1-63 of `[A-Za-z0-9-]`, not led or
ended by `-`, at most 253 characters, one trailing dot allowed; its last label led by a
letter: review 52e, a numeric one is an address to the URL standard, and `0x7f.1` reached
127.0.0.1 in two clients; review 53b, Java's URI refused `a.1b`) or `[IPv6]`
(`[0-9A-Fa-f:.]`, no zone, a literal the language's own parser takes); a host is given to
gRPC as `dns:///HOST:PORT` (review 53b: `unix-abstract:N` reached a socket); PORT 1-65535, 1-5 digits. PATH is 1-107 bytes (the kernel's sun_path with its NUL)
of printable ASCII (0x20-0x7E; review 52d: Java refused non-ASCII paths that worked), not
led or ended by a space, none of `%`, `?`, `#` (URI syntax to some: `q?x.sock` reached `q`),
and `//` only as `///` then a name (`unix:///abs`; the clients read `//host/x` apart).
Anything else is a usage error, and so is a target the library's client refuses all the
same."""

from __future__ import annotations

import itertools
import random
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc

from ess.v1 import guard_pb2 as pb
from ess.v1 import guard_pb2_grpc as pb_grpc
from ess_sidecar.testing import SidecarProcess

ROOT = Path(__file__).resolve().parents[2]
CONFIG = "[limits]\nexposure_enabled = false\nduplicate_identical_orders = 0\n"
DEADLINE_MS = 5  # the clients' default
ANSWER_MS = 2000  # for checks whose answer, not its speed, is tested
SLACK_MS = 50  # the bound over the deadline
RECONNECT_S = 15.0  # how long the client may take to find a restarted sidecar
USAGE_S = 10  # a usage error is reported at once: no connecting, no waiting (JVM start incl.)
BAD_DEADLINES_MS = ("inf", "nan", "-1", "0", "1e300", "5e-324", "1e-7", "0.0009")
# Numbers some language read as one the operator did not write (1_0 as 10, 0x10 as 16, 1d,
# 0x1p4, a full-width 1, ' 1'); one with a newline (the error must still name the flag on its
# last line); one of 100,000 digits (C++'s regex recursed per character and crashed); longer
# than 64 characters (Go misread the 803-digit one as far less than 1e13; 65 is one too many);
# those without ASCII whitespace are tried on ess-smoke's lines too, U+0085 and U+2028 part of a
# word there (some split on them).
BAD_NUMBERS = ("1_0", "0x10", "1d", "0x1p4", "\uff11", "1e", ".", "1..5", "++1", "Infinity",
               " 1", "1 ", "", "1\n2", "9" * 100_000, "1\u2028", "1\u0085",
               "1" + "0" * 803 + "e-790", "1" + "0" * 1000 + "e-1000", "1." + "0" * 63)
GOOD_NUMBERS = ("1", "1.5", ".5", "1e3", "+2", "100", "2.", "1." + "0" * 62)  # 64 chars
GOOD_DEADLINES_MS = ("2000", "2000.5", ".2e4", "2E3", "+2000", "3000", "2000.",
                     "2000." + "0" * 59)
# Not usage errors, though the sidecar may deny them or the check fail closed: a subnormal
# quantity or price (C++'s strtod flags them ERANGE), the shortest deadline.
TAKEN_NUMBERS = ("5e-324", "1e-310")
SHORTEST_DEADLINE_MS = "0.001"
UNIX_PATH_107 = "unix:/tmp/" + "x" * 102  # the longest path sun_path holds
BAD_TARGETS = ("127.0.0.1:abc", "127.0.0.1:99999", "127.0.0.1:0", "unix:", "unix: /tmp/x",
               "127.0.0.1", " 127.0.0.1:50051", "127.0.0.1:50051 ", "http://h:1", "dns:///h:1",
               "h:1/x", "::1:50051", "[::1]", ":50051", "h:70000/", "h:123456",
               "h" * 100_000 + ":1", "\u2028localhost:1", "localhost:1\n", "h\u0085:1",
               "héllo:1", "[fe80::1%lo]:1", "[::1%25lo]:1", "[]:1", "[v1.x]:1",
               "unix:/tmp/a\nb.sock", "unix:/tmp/a\u2028b.sock", "unix:/tmp/a\x7fb",
               "unix:/tmp/a\u0085b", "unix:/tmp/x ", UNIX_PATH_107 + "x",
               "unix:/tmp/" + "x" * 195, "unix:/tmp/" + "é" * 52,
               # review 52d: names gRPC reads its own way, literals, URI syntax, //host
               "_:1", "-:1", "..:1", "a..b:1", "a-.b:1", "a" * 64 + ":1", "[1.2.3.4]:1",
               "[::1::]:1", "127.1:1", "2130706433:1", "256.1.1.1:1", "01.2.3.4:1",
               "unix:q?x.sock", "unix:a%2fb", "unix:a#b", "unix://host/x", "unix:////x",
               "unix://", "unix:/tmp/é",
               # review 52e: a numeric last label (the URL standard's rule) unless a quad
               "0x7f000001:1", "0x7f.1:1", "0X7F.0.0.1:1", "1.2.3.0x4:1",
               # review 53b: Java's URI refused a last label led by a digit: none may be
               "a.1b:1", "localhost.1x:1", "a.9z-y:1", "a.0x1g:1", "1b:1")
_WORD = re.compile(r"[^ \t\n\x0b\f\r]+")  # ess-smoke's words
_ids = itertools.count(1)


def binary(lang: str, name: str) -> Path:
    """clients/<lang>/bin/<name>; a missing one fails the test: run `make clients`."""
    path = ROOT / "clients" / lang / "bin" / name
    assert path.exists(), f"{path} is missing: run `make clients`"
    return path


class Smoke:
    """A running ess-smoke: one client, driven line by line."""

    def __init__(self, program: Path, target: str) -> None:
        self.process = subprocess.Popen(
            [str(program), "--target", target, "--deadline-ms", str(DEADLINE_MS)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def check(self, strategy: str, deadline_ms: int = DEADLINE_MS) -> tuple[int, str]:
        """(microseconds, the ess-check line) for one buy of 1 at 100."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(f"check acc-1 {strategy} AAPL buy 1 100 smoke-{next(_ids)}"
                                 f" {deadline_ms}\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        assert answer, f"ess-smoke ended: {self.process.stderr.read() if self.process.stderr else ''}"
        elapsed, _, text = answer.strip().partition(" ")
        return int(elapsed), text

    def command(self, text: str) -> str:
        """The answer line to one stdin line."""
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(f"{text}\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        assert answer, f"ess-smoke ended: {self.process.stderr.read() if self.process.stderr else ''}"
        return answer.strip()

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


def check_args(target: str, strategy: str = "momo", deadline_ms: object = ANSWER_MS,
               **overrides: str) -> list[str]:
    """ess-check's arguments for one buy of 1 at 100; `overrides` replace flags by name."""
    flags = {"target": target, "account": "acc-1", "strategy": strategy, "symbol": "AAPL",
             "side": "buy", "qty": "1", "price": "100", "coid": f"check-{next(_ids)}",
             "deadline-ms": str(deadline_ms), **overrides}
    return [arg for name, value in flags.items() for arg in (f"--{name}", value)]


def run_check(program: Path, target: str, strategy: str, deadline_ms: int = ANSWER_MS,
              ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(program), *check_args(target, strategy, deadline_ms)],
                          capture_output=True, text=True, timeout=60)


def expect_usage_error(command: list[str], named: str, stdin: str = "") -> None:
    """`command` exits 64 within USAGE_S, naming `named` on the last line of its stderr
    (the error; the synopsis above it names every flag)."""
    result = subprocess.run(command, input=stdin, capture_output=True, text=True,
                            timeout=USAGE_S)
    assert result.returncode == 64, result
    lines = result.stderr.strip().splitlines()
    assert lines and named in lines[-1], (named, result)


def usage_errors(check: Path, smoke_program: Path, target: str) -> None:
    """Empty ids and targets, and deadlines that are not a sane number of ms, are refused."""
    for coid in ("", "  "):
        expect_usage_error([str(check), *check_args(target, coid=coid)], "--coid")
    expect_usage_error([str(check), *check_args("")], "--target")
    # Review 52d: argv's bytes that are not UTF-8 (os.fsencode's surrogateescape): Go, C++,
    # Rust and Python refuse the bytes, the JVM and node the U+FFFD they read them as.
    for flag in ("coid", "account", "token"):
        expect_usage_error([str(check), *check_args(target, **{flag: "o-\udcff"})], f"--{flag}")
    expect_usage_error([str(smoke_program), "--target", ""], "--target")
    # Help exits 0, the "allowed" code: beside an order's flags it is a usage error
    # (review 40a: `ess-check ... --help && send_order` sent).
    expect_usage_error([str(check), *check_args(target), "--help"], "--help")
    for deadline_ms in BAD_DEADLINES_MS:
        expect_usage_error([str(check), *check_args(target, deadline_ms=deadline_ms)],
                           "--deadline-ms")
        expect_usage_error([str(smoke_program), "--target", target, "--deadline-ms",
                            deadline_ms], "--deadline-ms")
        expect_usage_error([str(smoke_program), "--target", target],
                           "DEADLINE_MS", f"check acc-1 momo AAPL buy 1 100 bad-{next(_ids)}"
                           f" {deadline_ms}\n")
    grammar_errors(check, smoke_program, target)
    line_errors(smoke_program, target)


def line_errors(smoke_program: Path, target: str) -> None:
    """ess-smoke splits lines on \\n only (review 52d: Java's and TypeScript's broke a line at a
    bare \\r, checking two orders where the others refused one line of too many words); a
    line that is not UTF-8 is denied (a check failing closed) or refused, never a silent
    stop (Rust's exited 0) nor ALLOWED under another coid (review 52e: Java and TypeScript
    read U+FFFD in its place)."""
    order = "check acc-1 momo AAPL buy 1 100"
    expect_usage_error([str(smoke_program), "--target", target], "check",
                       f"{order} cr-{next(_ids)}\r{order} cr-{next(_ids)}\n")
    done = subprocess.run([str(smoke_program), "--target", target],
                          input=f"{order} bad-".encode() + b"\xff 1\n", capture_output=True,
                          timeout=USAGE_S + 10)
    answered = done.returncode == 0 and done.stdout.split()[1:2] == [b"DENIED"]
    refused = done.returncode == 64 and b"UTF-8" in done.stderr.strip().splitlines()[-1]
    assert answered or refused, done


def grammar_errors(check: Path, smoke_program: Path, target: str) -> None:
    """Numbers and targets outside the one grammar (the docstring above) are refused."""
    for number in BAD_NUMBERS:
        for flag in ("qty", "price", "deadline-ms"):
            expect_usage_error([str(check), *check_args(target, **{flag: number})],
                               f"--{flag}")
    for number in (n for n in BAD_NUMBERS if n and _WORD.fullmatch(n)):  # fits a line
        coid = f"bad-{next(_ids)}"
        for field, order in (("QTY", f"{number} 100 {coid}"), ("PRICE", f"1 {number} {coid}"),
                             ("DEADLINE_MS", f"1 100 {coid} {number}")):
            expect_usage_error([str(smoke_program), "--target", target], field,
                               f"check acc-1 momo AAPL buy {order}\n")
    for bad in BAD_TARGETS:
        expect_usage_error([str(check), *check_args(bad)], "--target")
        expect_usage_error([str(smoke_program), "--target", bad], "--target")


def accepted_forms(check: Path, smoke_program: Path, process: SidecarProcess) -> None:
    """The grammar's good forms are taken: numbers, and targets by name, IPv6 or a socket
    path relative to the working directory (`[::1]` may fail closed: the sidecar listens on
    127.0.0.1, so it is only not a usage error)."""
    for number, deadline_ms in zip(GOOD_NUMBERS, GOOD_DEADLINES_MS, strict=True):
        allowed = subprocess.run([str(check), *check_args(
            process.tcp_target, qty=number, price=number, deadline_ms=deadline_ms)],
            capture_output=True, text=True, timeout=60)
        assert allowed.returncode == 0 and allowed.stdout.startswith("ALLOWED "), allowed
    smoke = Smoke(smoke_program, process.uds_target)
    try:
        for number, deadline_ms in zip(GOOD_NUMBERS, GOOD_DEADLINES_MS, strict=True):
            answer = smoke.command(f"check acc-1 momo AAPL buy {number} {number}"
                                   f" good-{next(_ids)} {deadline_ms}")
            assert answer.split()[1] == "ALLOWED", answer
    finally:
        smoke.close()
    for target, cwd in ((f"localhost:{process.port}", None), ("unix:ess.sock", process.workdir),
                        (f"127.0.0.1:{process.port}", None), (f"unix://{process.uds}", None)):
        allowed = subprocess.run([str(check), *check_args(target)], cwd=cwd,
                                 capture_output=True, text=True, timeout=60)
        assert allowed.returncode == 0 and allowed.stdout.startswith("ALLOWED "), allowed
    for target in (f"[::1]:{process.port}", f"[::ffff:127.0.0.1]:{process.port}",
                   UNIX_PATH_107, "my-host.example.com:1", "0x.example:1"):
        taken = subprocess.run([str(check), *check_args(target, deadline_ms=5)],
                               capture_output=True, text=True, timeout=60)
        assert taken.returncode in (0, 2), taken
    taken_numbers(check, smoke_program, process)
    scheme_hosts(check)


def scheme_hosts(check: Path) -> None:
    """A host that is one of gRPC's schemes is a host, looked up by name: it reaches no Unix
    socket (review 53b: gRPC read `unix-abstract:N` as the abstract socket "N" and `UNIX:N`
    as the socket file ./N in the Python, Go and C++ clients, which then checked with
    whatever answered there). Listeners at both places fail the test if anything connects."""
    with tempfile.TemporaryDirectory(prefix="ess-scheme-") as cwd:
        port = random.SystemRandom().randrange(1024, 65536)  # the abstract name: unique
        listeners = []
        for address in (f"\0{port}", f"{cwd}/{port}"):
            listener = socket.socket(socket.AF_UNIX)
            listener.bind(address)
            listener.listen(8)
            listener.setblocking(False)
            listeners.append(listener)
        try:
            for host in ("unix-abstract", "UNIX-ABSTRACT", "UNIX", "Unix", "dns", "ipv4"):
                taken = subprocess.run([str(check), *check_args(f"{host}:{port}",
                                                                deadline_ms=200)],
                                       cwd=cwd, capture_output=True, text=True, timeout=60)
                assert taken.returncode == 2, (host, taken)  # looked up, and failed closed
                assert "CLIENT_FAIL_CLOSED" in taken.stdout, (host, taken)
                for listener in listeners:
                    try:
                        reached = listener.accept()[0]
                    except BlockingIOError:
                        continue
                    reached.close()
                    raise AssertionError(f"{host}:{port} reached {listener.getsockname()!r}")
        finally:
            for listener in listeners:
                listener.close()


def taken_numbers(check: Path, smoke_program: Path, process: SidecarProcess) -> None:
    """Subnormal quantities and prices and the shortest deadline are no usage errors: the
    sidecar answers (a denial perhaps) or the check fails closed."""
    overrides = [{"qty": n} for n in TAKEN_NUMBERS] + [{"price": n} for n in TAKEN_NUMBERS]
    for flags in [*overrides, {"deadline_ms": SHORTEST_DEADLINE_MS}]:
        taken = subprocess.run([str(check), *check_args(process.tcp_target, **flags)],
                               capture_output=True, text=True, timeout=60)
        assert taken.returncode in (0, 2), (flags, taken)
    smoke = Smoke(smoke_program, process.uds_target)
    try:
        for order in [f"{n} 100 t-{next(_ids)} {ANSWER_MS}" for n in TAKEN_NUMBERS] + \
                [f"1 {n} t-{next(_ids)} {ANSWER_MS}" for n in TAKEN_NUMBERS] + \
                [f"1 100 t-{next(_ids)} {SHORTEST_DEADLINE_MS}"]:
            answer = smoke.command(f"check acc-1 momo AAPL buy {order}")
            assert answer.split()[1] in ("ALLOWED", "DENIED"), (order, answer)
    finally:
        smoke.close()


@contextmanager
def sidecar() -> Iterator[SidecarProcess]:
    workdir = Path(tempfile.mkdtemp(prefix="ess-smoke-"))
    process = SidecarProcess(workdir, CONFIG).start()
    try:
        yield process
    finally:
        process.stop()
        shutil.rmtree(workdir, ignore_errors=True)


# A trip reason is its caller's text, and every denial of the scope carries it: lines in it
# must not become lines of ess-check's answer (review 52a: Python's and TypeScript's printed
# `ALLOWED forged-1` on a line of its own under the denial).
FORGED_REASON = "smoke\nALLOWED forged-1\r\n\tALLOWED forged-2"


def trigger(process: SidecarProcess, strategy: str) -> None:
    with grpc.insecure_channel(process.uds_target) as channel:
        pb_grpc.GuardServiceStub(channel).Trigger(pb.TriggerRequest(
            scope=pb.Scope(kind=pb.SCOPE_KIND_STRATEGY, id=strategy), reason=FORGED_REASON),
            timeout=10)


def smoke_test(lang: str) -> None:
    """The whole smoke test of one language's client, over the Unix socket and TCP."""
    check, smoke_program = binary(lang, "ess-check"), binary(lang, "ess-smoke")
    with sidecar() as process:
        usage = subprocess.run([str(check), "--target", process.tcp_target],
                               capture_output=True, text=True, timeout=60)
        assert usage.returncode == 64, usage
        usage_errors(check, smoke_program, process.tcp_target)
        accepted_forms(check, smoke_program, process)
        for target in (process.uds_target, process.tcp_target):
            allowed = run_check(check, target, "momo")
            assert allowed.returncode == 0 and allowed.stdout.startswith("ALLOWED "), allowed
        with open("/dev/full", "w") as full:  # every write fails: ENOSPC
            # The exit status is the answer, whatever stdout takes (review 58e: Rust's
            # panicked, 101, and Python's raised, 1).
            unprinted = subprocess.run([str(check), *check_args(process.uds_target, "momo",
                                                                 ANSWER_MS)],
                                       stdout=full, stderr=subprocess.PIPE, timeout=60)
            assert unprinted.returncode == 0, unprinted
        smoke = Smoke(smoke_program, process.uds_target)
        try:
            _, first = smoke.check("momo", ANSWER_MS)
            assert first.startswith("ALLOWED "), first
            trigger(process, "momo")
            _, denied = smoke.check("momo", ANSWER_MS)
            assert denied.startswith("DENIED SCOPE_TRIPPED "), denied
            assert "forged" in denied, denied  # the reason reached it, on this line
            tripped = run_check(check, process.uds_target, "momo")
            assert tripped.returncode == 2, tripped
            assert tripped.stdout.startswith("DENIED SCOPE_TRIPPED "), tripped
            assert tripped.stdout.count("\n") == 1 and "forged-2" in tripped.stdout, tripped
            _, after = smoke.check("momo", ANSWER_MS)  # its answer, not the reason's lines
            assert after.startswith("DENIED SCOPE_TRIPPED "), after
            process.kill()
            for _ in range(3):
                elapsed_us, down = smoke.check("other")
                assert down.startswith("DENIED CLIENT_FAIL_CLOSED"), down
                assert elapsed_us <= (DEADLINE_MS + SLACK_MS) * 1000, (elapsed_us, down)
            unreachable = run_check(check, process.uds_target, "other", DEADLINE_MS)
            assert unreachable.returncode == 2, unreachable
            assert unreachable.stdout.startswith("DENIED CLIENT_FAIL_CLOSED"), unreachable
            process.start()
            deadline = time.monotonic() + RECONNECT_S
            while True:
                _, again = smoke.check("other", ANSWER_MS)
                if again.startswith("ALLOWED "):
                    break
                assert again.startswith("DENIED CLIENT_FAIL_CLOSED"), again
                assert time.monotonic() < deadline, "the client never reconnected"
        finally:
            smoke.close()


# Text that is not valid: bytes that are not UTF-8, as a byte-string language reads them
# from a file or a socket; a lone surrogate in a UTF-16 language's string (JavaScript's).
NOT_UTF8 = b"stop \xff\xfe\xc3( now"
LONE_SURROGATE_UTF16 = "stop ".encode("utf-16-le") + b"\x00\xd8" + " now".encode("utf-16-le")
MAX_REASON_CHARS = 1024  # the sidecar's bound (ess_sidecar/domain/scopes.py)


def reasons(process: SidecarProcess) -> dict[str, pb.ScopeState]:
    """Every strategy scope that is not ARMED, by id (GetState)."""
    with grpc.insecure_channel(process.uds_target) as channel:
        state = pb_grpc.GuardServiceStub(channel).GetState(pb.GetStateRequest(), timeout=10)
    return {s.scope.id: s for s in state.scopes if s.scope.kind == pb.SCOPE_KIND_STRATEGY}


def trigger_test(lang: str, encoding: str = "utf-8") -> None:
    """The client's trigger never refuses a stop for what comes with it: a reason that is
    not valid text (U+FFFD), one of 5 MiB (cut to the sidecar's bound), an unknown mode
    (HALT), reason code (USER_INITIATED) or directive (left out), each noted in the reason;
    an unknown number within int32 passes to the sidecar, which notes it. A scope it
    cannot read is still refused. `encoding`: the language's strings' (REASON_HEX)."""
    bad_reason = NOT_UTF8 if encoding == "utf-8" else LONE_SURROGATE_UTF16

    def hexed(text: str) -> str:
        return text.encode(encoding).hex()

    with sidecar() as process:
        smoke = Smoke(binary(lang, "ess-smoke"), process.uds_target)
        try:
            def tripped(line: str) -> None:
                answer = smoke.command(line)
                assert answer.startswith("TRIPPED "), (line[:120], answer)

            tripped(f"trigger STRATEGY:bad-text - - - {bad_reason.hex()}")
            tripped(f"trigger STRATEGY:panic PANIC - - {hexed('why')}")
            tripped("trigger STRATEGY:names halt RISK CANCEL_ALL,cancel-open-orders -")
            tripped("trigger STRATEGY:numbers 99 77 1,42 -")
            tripped(f"trigger STRATEGY:huge PANIC - - {hexed('x') * (5 << 20)}")
            tripped(f"trigger STRATEGY:huge-numbers 1 - - {hexed('y') * (5 << 20)}")
            refused = smoke.command("trigger NOPE:x - - - -")
            assert refused.startswith(("ERROR ", "RAISED ")), refused
            stored = reasons(process)
            assert "\ufffd" in stored["bad-text"].reason, stored["bad-text"]
            assert stored["bad-text"].reason.startswith("stop "), stored["bad-text"]
            panic = stored["panic"]
            assert panic.state == pb.STATE_TRIPPED, panic
            assert panic.reason.startswith("why"), panic
            assert "mode PANIC unknown: halted" in panic.reason, panic
            names = stored["names"]
            assert "reason_code RISK unknown: user-initiated" in names.reason, names
            assert "directive CANCEL_ALL unknown: left out" in names.reason, names
            assert names.reason_code == pb.TRIGGER_REASON_USER_INITIATED, names
            assert list(names.directives) == [pb.DIRECTIVE_CANCEL_OPEN_ORDERS], names
            numbers = stored["numbers"]  # the sidecar's own notes: the numbers reached it
            assert "unknown mode 99: HALT" in numbers.reason, numbers
            assert "unknown reason_code 77" in numbers.reason, numbers
            assert "unknown directive 42 left out" in numbers.reason, numbers
            huge = stored["huge"]
            assert len(huge.reason) <= MAX_REASON_CHARS, len(huge.reason)
            assert huge.reason.startswith("xxx"), huge.reason[:40]
            assert "mode PANIC unknown: halted" in huge.reason, huge.reason[-200:]
            huge = stored["huge-numbers"]
            assert len(huge.reason) <= MAX_REASON_CHARS, len(huge.reason)
            assert huge.reason.startswith("yyy"), huge.reason[:40]
        finally:
            smoke.close()
