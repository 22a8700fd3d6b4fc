"""Start-up refuses what would leave the sidecar open: a non-loopback address without
authentication, four-eyes with no one to tell apart, half a TLS setup, a bad tokens file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ess_sidecar.adapters.auth.tokens import load_principals, new_token, tokens_file_line
from ess_sidecar.domain.access import Role
from ess_sidecar.domain.errors import InvalidConfig
from ess_sidecar.settings import is_loopback, load_settings


@pytest.fixture
def tokens_file(tmp_path: Path) -> str:
    path = tmp_path / "tokens.toml"
    path.write_text("[tokens]\n" + tokens_file_line("alice", Role.OPERATOR, new_token()) + "\n")
    return str(path)


@pytest.mark.parametrize("listen, loopback", [
    ("127.0.0.1:50051", True), ("127.9.9.9:1", True), ("[::1]:50051", True),
    ("localhost:50051", True), ("0.0.0.0:50051", False), ("[::]:50051", False),
    ("10.0.0.5:50051", False), ("ess.internal:50051", False)])
def test_which_addresses_count_as_loopback(listen: str, loopback: bool) -> None:
    assert is_loopback(listen) is loopback


def test_a_public_address_without_authentication_is_refused() -> None:
    with pytest.raises(InvalidConfig) as raised:
        load_settings(None, server={"listen": "0.0.0.0:50051"})
    assert raised.value.key == "server.listen" and "--insecure" in str(raised.value)


def test_a_public_address_is_served_with_tokens_or_when_told_insecure(tokens_file: str) -> None:
    load_settings(None, server={"listen": "0.0.0.0:50051"}, auth={"tokens_file": tokens_file})
    load_settings(None, server={"listen": "0.0.0.0:50051", "insecure": True})


def test_a_public_fanout_address_needs_authentication_too(tokens_file: str) -> None:
    """The fan-out process serves every scope's state to whoever reaches it."""
    with pytest.raises(InvalidConfig) as raised:
        load_settings(None, watch={"fanout_listen": "0.0.0.0:50052"})
    assert raised.value.key == "watch.fanout_listen" and "--insecure" in str(raised.value)
    load_settings(None, watch={"fanout_listen": "0.0.0.0:50052"},
                  auth={"tokens_file": tokens_file})
    load_settings(None, watch={"fanout_listen": "0.0.0.0:50052"}, server={"insecure": True})
    load_settings(None, watch={"fanout_listen": "127.0.0.1:50052"})


@pytest.mark.parametrize("settings, key", [
    ({"watch": {"fanout_listen": "127.0.0.1:50051"}}, "watch.fanout_listen"),
    ({"watch": {"fanout_listen": "127.0.0.1:9464"},
      "telemetry": {"metrics_listen": "127.0.0.1:9464"}}, "watch.fanout_listen"),
    ({"watch": {"fanout_uds": "/tmp/ess.sock"}, "server": {"uds": "/tmp/ess.sock"}},
     "watch.fanout_uds"),
    ({"watch": {"fanout_listen": "127.0.0.1:99999"}}, "watch.fanout_listen"),
    ({"watch": {"fanout_uds": "/tmp/%41.sock"}}, "watch.fanout_uds"),
], ids=["the sidecar's port", "the metrics port", "the sidecar's socket", "no port",
        "a percent sign"])
def test_a_fanout_address_that_cannot_be_served_is_refused(settings: dict, key: str) -> None:
    with pytest.raises(InvalidConfig) as raised:
        load_settings(None, **settings).check_serves()
    assert raised.value.key == key, raised.value


def test_four_eyes_needs_authentication(tokens_file: str) -> None:
    with pytest.raises(InvalidConfig) as raised:
        load_settings(None, reset={"require_approvals": 2})
    assert raised.value.key == "reset.require_approvals"
    load_settings(None, reset={"require_approvals": 2}, auth={"tokens_file": tokens_file})


@pytest.mark.parametrize("server, key", [
    ({"tls_cert": "c.pem"}, "server.tls_key"),
    ({"tls_key": "k.pem"}, "server.tls_cert"),
    ({"tls_client_ca": "ca.pem"}, "server.tls_client_ca"),
    ({"tls_cert": "c.pem", "tls_key": "k.pem", "tls_client_ca": "ca.pem"},
     "server.tls_client_ca"),  # client certificates get their roles from the tokens file
])
def test_half_a_tls_setup_is_refused(server: dict, key: str) -> None:
    with pytest.raises(InvalidConfig) as raised:
        load_settings(None, server=server)
    assert raised.value.key == key


@pytest.mark.parametrize("text, key", [
    ('[tokens]\nalice = { role = "operator", sha256 = "abc" }\n', "tokens.alice.sha256"),
    (f'[tokens]\nalice = {{ role = "boss", sha256 = "{"0" * 64}" }}\n', "tokens.alice.role"),
    (f'[tokens]\nalice = {{ role = "admin", sha256 = "{"0" * 64}" }}\n', "tokens.alice.role"),
    (f'[tokens]\nalice = {{ role = "operator", sha256 = "{"0" * 64}", x = 1 }}\n',
     "tokens.alice"),
    (f'[tokens]\na = {{ role = "operator", sha256 = "{"0" * 64}" }}\n'
     f'b = {{ role = "executor", sha256 = "{"0" * 64}" }}\n', "tokens.b.sha256"),
    ('[users]\n', "users"),
    ('[tokens]\n', "names no principal"),  # review 58c: every call, a stop too, refused
    ('', "names no principal"),
    ('[tokens\n', "auth.tokens_file"),
    # review 17: one person, two spellings, would be both operators of a four-eyes reset
    (f'[tokens]\nalice = {{ role = "operator", sha256 = "{"0" * 64}" }}\n'
     f'Alice = {{ role = "operator", sha256 = "{"1" * 64}" }}\n', "tokens.Alice"),
    (f'[tokens]\nalice = {{ role = "operator", sha256 = "{"0" * 64}" }}\n'
     '[certificates]\nALICE = { role = "operator" }\n', "certificates.ALICE"),
])
def test_a_bad_tokens_file_names_the_key(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "tokens.toml"
    path.write_text(text)
    with pytest.raises(InvalidConfig) as raised:
        load_principals(path)
    assert key in str(raised.value)


def test_serve_refuses_a_public_address_without_authentication(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ess_sidecar", "serve", "--listen", "0.0.0.0:0", "--state",
         str(tmp_path / "ess.db")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "server.listen" in result.stderr and "--insecure" in result.stderr
    assert not (tmp_path / "ess.db").exists()


def test_check_config_checks_the_tokens_file(tmp_path: Path) -> None:
    (tmp_path / "tokens.toml").write_text('[tokens]\nbob = { role = "root" }\n')
    config = tmp_path / "ess.toml"
    config.write_text(f'[auth]\ntokens_file = "{tmp_path / "tokens.toml"}"\n')
    result = subprocess.run([sys.executable, "-m", "ess_sidecar", "check-config", str(config)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "tokens.bob" in result.stderr


def test_check_config_checks_the_alert_urls(tmp_path: Path) -> None:
    config = tmp_path / "ess.toml"
    config.write_text('[alerts]\nurls = ["json://127.0.0.1:9/hook", "nosuchscheme://x"]\n')
    result = subprocess.run([sys.executable, "-m", "ess_sidecar", "check-config", str(config)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "alerts.urls[1]" in result.stderr


def test_check_config_reads_the_tls_files_it_names(tmp_path: Path) -> None:
    """Review 34: check-config said OK to TLS files serve could not read."""
    config = tmp_path / "ess.toml"
    config.write_text(f'[server]\ntls_cert = "{tmp_path / "cert.pem"}"\n'
                      f'tls_key = "{tmp_path / "key.pem"}"\n')
    result = subprocess.run([sys.executable, "-m", "ess_sidecar", "check-config", str(config)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "server.tls_key: cannot read" in result.stderr


def test_check_config_takes_the_flags_serve_takes(tmp_path: Path) -> None:
    """Review 34: an edited tokens file given by --tokens-file, as the README starts the
    sidecar, could not be checked before the restart."""
    (tmp_path / "tokens.toml").write_text('[tokens]\nbob = { role = "root" }\n')
    config = tmp_path / "ess.toml"
    config.write_text("")
    result = subprocess.run([sys.executable, "-m", "ess_sidecar", "check-config", str(config),
                             "--tokens-file", str(tmp_path / "tokens.toml")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "tokens.bob" in result.stderr
