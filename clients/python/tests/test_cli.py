"""ess-check's and ess-smoke's grammar (tests/clients/smoke.py's docstring), without a
sidecar."""

from __future__ import annotations

import argparse

import pytest

from ess_client import cli


@pytest.mark.parametrize("text", [
    "localhost:1", "a.b-c.d:65535", "[::1]:50051", "[::ffff:1.2.3.4]:1", "127.0.0.1:50051",
    "0.0.0.0:1", "localhost.:1", "a" * 63 + ":1", "unix:ess.sock", "unix:///abs",
    "my-host.example.com:1", "0x.example:1", "1.example:1",
    "unix:/tmp/a b", "unix:/tmp/" + "x" * 102])
def test_a_target_in_the_grammar_is_taken(text: str) -> None:
    assert cli._target(text) == text


# Review 52d: names (`_`, all-digit ones gRPC reads its own way), IPv6 literals the parser
# refuses, and unix paths other clients read apart (URI syntax, `//host`, non-ASCII).
@pytest.mark.parametrize("text", [
    "_:1", "-:1", "..:1", "a..b:1", "a-.b:1", "a" * 64 + ":1", "[1.2.3.4]:1", "[::1::]:1",
    "127.1:1", "2130706433:1", "256.1.1.1:1", "01.2.3.4:1", "1.2.3.4.:1", "unix:q?x.sock",
    "unix:a%2fb", "unix:a#b", "unix://host/x", "unix:////x", "unix://", "unix:/tmp/é",
    # review 52e: a numeric last label (URL standard) unless the host is a dotted quad
    "0x7f000001:1", "0x7f.1:1", "0X7F.0.0.1:1", "1.2.3.0x4:1", "example.1:1", "a.0x:1",
    "a.1b:1", "localhost.1x:1", "1b:1"])
def test_a_target_outside_the_new_grammar_is_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        cli._target(text)


@pytest.mark.parametrize("text", [
    "h" * 100_000 + ":1", "h" * 254 + ":1", "héllo:1", "[fe80::1%lo]:1", "[]:1", "h:0",
    "h:65536", "h:000001", "h:70000/", "\u2028localhost:1", "unix:", "unix:/tmp/a\nb",
    "unix:/tmp/a\u2028b", "unix:/tmp/a\x85b", "unix: /tmp/x", "unix:/tmp/" + "x" * 103,
    "unix:/tmp/" + "é" * 52])
def test_a_target_outside_the_grammar_is_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        cli._target(text)


def test_a_subnormal_number_is_a_number() -> None:
    assert cli._positive("5e-324") > 0


@pytest.mark.parametrize("text", ["5e-324", "1e-7", "0.0009", "9" * 100_000])
def test_a_deadline_under_a_microsecond_or_overflowing_is_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        cli._deadline_ms(text)


@pytest.mark.parametrize("text", ["1" + "0" * 803 + "e-790", "1" + "0" * 1000 + "e-1000",
                                  "1." + "0" * 63])
def test_a_number_longer_than_64_characters_is_refused(text: str) -> None:
    # Review 52d: Go's ParseFloat read the first as far less than 1e13, and allowed it.
    with pytest.raises(argparse.ArgumentTypeError, match="longer than 64"):
        cli._positive(text)
    assert cli._positive("1." + "0" * 62) == 1


def test_the_shortest_deadline_is_a_microsecond() -> None:
    assert cli._deadline_ms("0.001") == 0.001


def test_smoke_lines_split_on_ascii_whitespace_only() -> None:
    assert cli._WORD.findall(" a\u2028b\x85c\t\x0bd\f\re\n") == ["a\u2028b\x85c", "d", "e"]


def test_a_token_the_client_refuses_is_a_usage_error_naming_the_token(
        capsys: pytest.CaptureFixture[str]) -> None:
    """A token with a control character (a file's bytes) is refused by the library: that
    is the --token flag's error, not the target's."""
    with pytest.raises(SystemExit) as done:
        cli.check_main(["--target", "127.0.0.1:1", "--token", "ab\x01c", "--account", "a",
                        "--strategy", "s", "--symbol", "X", "--side", "buy", "--qty", "1",
                        "--price", "1", "--coid", "c"])
    assert done.value.code == cli.EX_USAGE
    assert "argument --token:" in capsys.readouterr().err.splitlines()[-1]


def test_a_value_that_is_not_utf8_is_a_usage_error_naming_its_flag(
        capsys: pytest.CaptureFixture[str]) -> None:
    """Review 52d: argv's bytes that are not UTF-8 (a lone surrogate, by surrogateescape)
    reached the library, which failed closed on the coid."""
    with pytest.raises(SystemExit) as done:
        cli.check_main(["--target", "127.0.0.1:1", "--account", "a", "--strategy", "s",
                        "--symbol", "X", "--side", "buy", "--qty", "1", "--price", "1",
                        "--coid", "o-\udcff"])
    assert done.value.code == cli.EX_USAGE
    assert "argument --coid:" in capsys.readouterr().err.splitlines()[-1]
