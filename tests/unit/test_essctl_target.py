"""essctl's --target / $ESS_TARGET: the default port, socket paths, and usage errors."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from ess_sidecar.essctl.connection import UsageError, parse_target
from ess_sidecar.essctl.main import main


@pytest.mark.parametrize(("given", "dialled"), [
    ("127.0.0.1:50051", "127.0.0.1:50051"),
    ("localhost:6000", "localhost:6000"),
    ("localhost", "localhost:50051"),  # grpc alone would dial 443
    ("ess-sidecar.internal", "ess-sidecar.internal:50051"),
    ("10.0.0.7", "10.0.0.7:50051"),
    ("[::1]", "[::1]:50051"),
    ("[::1]:6000", "[::1]:6000"),
    ("::1", "[::1]:50051"),
    ("fe80::1%eth0", "[fe80::1%eth0]:50051"),
    ("unix:/tmp/ess.sock", "unix:/tmp/ess.sock"),
    ("UNIX:/tmp/ess.sock", "unix:/tmp/ess.sock"),
    ("unix:///tmp/ess.sock", "unix:///tmp/ess.sock"),
    ("unix-abstract:ess", "unix-abstract:ess"),
    ("/tmp/ess.sock", "unix:/tmp/ess.sock"),  # need not exist yet: the call says so
    ("./ess.sock", "unix:./ess.sock"),
    ("../run/ess.sock", "unix:../run/ess.sock"),
    ("dns:localhost", "dns:localhost:50051"),
    ("dns:///localhost:6000", "dns:///localhost:6000"),
    ("dns://8.8.8.8/ess.example.com", "dns://8.8.8.8/ess.example.com:50051"),
])
def test_a_target_is_dialled_as_grpc_spells_it(given: str, dialled: str) -> None:
    assert parse_target(given) == dialled


@pytest.fixture
def listening_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A real Unix socket named by a bare relative name ("ess.sock") in the working folder."""
    monkeypatch.chdir(tmp_path)
    with socket.socket(socket.AF_UNIX) as server:
        server.bind("ess.sock")
        yield "ess.sock"


def test_an_existing_socket_file_is_a_unix_target_even_without_a_slash(
        listening_socket: str, tmp_path: Path) -> None:
    assert parse_target(listening_socket) == "unix:ess.sock"
    (tmp_path / "plain.file").write_text("not a socket")
    assert parse_target("plain.file") == "plain.file:50051"  # a host name, as before


@pytest.mark.parametrize(("given", "why"), [
    ("", "empty"),
    ("localhost:", "port ''"),
    ("localhost:http", "port 'http'"),
    ("localhost:0", "port '0'"),
    ("localhost:65536", "port '65536'"),
    (":50051", "no host"),
    ("local host", "spaces"),
    ("[::1", "missing its ]"),
    ("[nope]:50051", "not an IPv6 address"),
    ("[::1]50051", ":PORT or nothing"),
    ("::1:50051:x", "in brackets"),
    ("http://localhost:50051", "http:// is not a scheme"),
    ("run/ess.sock", "not a host name"),
    ("unix:", "no path"),
    ("dns://8.8.8.8", "followed by /HOST"),
    ("-bad-", "not a host name"),
])
def test_an_unparsable_target_is_a_usage_error_listing_the_accepted_forms(
        given: str, why: str) -> None:
    with pytest.raises(UsageError) as raised:
        parse_target(given)
    message = str(raised.value)
    assert message.startswith(f"--target {given!r}: ")
    assert why in message
    for form in ("host:port", "port 50051", "[IPv6]:port", "unix:PATH", "socket path"):
        assert form in message


def test_the_usage_error_names_ess_target_when_the_target_came_from_it() -> None:
    with pytest.raises(UsageError, match=r"^ESS_TARGET 'a:b': "):
        parse_target("a:b", source="ESS_TARGET")


def test_essctl_exits_64_on_an_unparsable_target_before_dialling(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ESS_TARGET", raising=False)
    assert main(["--target", "localhost:http", "status"]) == 64
    assert "accepted: host:port" in capsys.readouterr().err
    monkeypatch.setenv("ESS_TARGET", "a:b")
    assert main(["status"]) == 64
    assert "ESS_TARGET 'a:b'" in capsys.readouterr().err


def test_offline_commands_do_not_parse_the_target(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """A stale $ESS_TARGET must not stop `essctl token new`, which dials nothing."""
    monkeypatch.setenv("ESS_TARGET", "a:b")
    assert main(["token", "new", "--role", "operator", "--name", "alice"]) == 0
    assert "token for alice" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [
    ["--timeout", "inf", "trigger", "--scope", "strategy:momo", "--reason", "r"],
    ["--timeout", "1e10", "trigger", "--scope", "strategy:momo", "--reason", "r"],
    ["drill", "--scope", "strategy:momo", "--timeout-s", "inf", "--yes"],
    ["history", "--since", "99999999999d"],
], ids=["timeout inf", "timeout 1e10", "drill timeout inf", "since overflows"])
def test_a_wait_or_time_no_call_can_carry_is_a_usage_error_before_dialling(
        argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    """Review 17: `--timeout inf` (or 1e10, beyond what gRPC can carry) made the kill
    switch fail DEADLINE_EXCEEDED unsent; the others ended in a traceback."""
    assert main(["--target", "127.0.0.1:1", *argv]) == 64
    err = capsys.readouterr().err
    assert "error: argument" in err and "Traceback" not in err


@pytest.mark.parametrize("token", ["ess_alice\u200b", "ess_alicé", "ess\talice"])
def test_a_token_no_header_can_carry_is_a_usage_error_naming_the_character(
        token: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Review 17: a pasted zero-width space gave "INTERNAL: Invalid metadata", which reads
    as the sidecar's fault, and nothing was sent. (A stop is sent without it: review 37h,
    tests/e2e/test_essctl.py.)"""
    monkeypatch.setenv("ESS_TOKEN", token)
    assert main(["--target", "127.0.0.1:1", "status"]) == 64
    bad = next(c for c in token if not " " <= c <= "~")
    assert f"U+{ord(bad):04X}" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["\udcff", "ess internal", "ess.\u0131nternal"],
                         ids=["undecodable byte", "space", "non-ASCII"])
def test_a_tls_server_name_no_certificate_holds_is_a_usage_error_that_sends_no_stop(
        name: str, capsys: pytest.CaptureFixture[str]) -> None:
    """Stop 39 left it: an undecodable byte in --tls-server-name (as a shell passes
    `$'\\xff'`) ended the kill switch in a traceback from gRPC's channel arguments."""
    argv = ["--target", "127.0.0.1:1", "--tls", "--tls-server-name", name,
            "trigger", "--panic", "--reason", "r"]
    assert main(argv) == 64
    err = capsys.readouterr().err
    assert "--tls-server-name" in err and "NO STOP WAS SENT" in err
    assert "Traceback" not in err
