"""What protects the TCP address: TLS credentials, and a loud start-up word when nothing does."""

from __future__ import annotations

import logging
import pathlib
import ssl
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import grpc

from ...domain.errors import InvalidConfig
from ...settings import ServerSettings, Settings, is_loopback
from .auth import Authenticator

log = logging.getLogger(__name__)


def server_credentials(server: ServerSettings) -> grpc.ServerCredentials | None:
    """TLS for the TCP address when a certificate is configured; mutual TLS (clients must
    present a certificate signed by tls_client_ca) when that is set too. Raises
    InvalidConfig naming the key of a file that cannot be read."""
    pems = server_pems(server)
    return credentials_of(*pems) if pems is not None else None


def server_pems(server: ServerSettings) -> tuple[bytes, bytes, bytes | None] | None:
    """The key, certificate chain and client CA (None: no mutual TLS) as read now, checked;
    None without TLS. Raises InvalidConfig naming the key of a file that cannot be used."""
    if not server.tls_cert:
        return None
    key, cert = _read_pem(server, "tls_key"), _read_pem(server, "tls_cert")
    client_ca = _read_pem(server, "tls_client_ca") if server.tls_client_ca else None
    _check_pems(server)
    return key, cert, client_ca


def credentials_of(key: bytes, cert: bytes, client_ca: bytes | None) -> grpc.ServerCredentials:
    return grpc.ssl_server_credentials([(key, cert)], root_certificates=client_ca,
                                       require_client_auth=client_ca is not None)


def check_grpc_serves(server: ServerSettings, credentials: grpc.ServerCredentials) -> bool:
    """For check-config: InvalidConfig if gRPC cannot serve with the TLS files; False if
    no address binds here to try them. gRPC takes fewer key types than OpenSSL (review
    42i: DSA, Ed448, brainpool, secp256k1 and RSA-PSS keys passed check-config, and serve
    failed to bind), so a server never started binds port 0 with them, on the first of
    server.listen's host and the loopbacks that binds without them (42k: an IPv6-only
    loopback is no key's fault; 42l: nor a host this machine is not, as when a build
    host checks a production config). Not at serve: a server never started keeps its
    port open (42k); serve's own bind error names the same cause."""
    probe = grpc.server(ThreadPoolExecutor(max_workers=1))
    try:
        for host in dict.fromkeys((server.listen.rpartition(":")[0], "127.0.0.1", "[::1]")):
            if _binds(lambda: probe.add_insecure_port(f"{host}:0")):
                if _binds(lambda: probe.add_secure_port(f"{host}:0", credentials)):
                    return True
                raise InvalidConfig("server.tls_cert", f"gRPC cannot serve with"
                                    f" {server.tls_cert} and {server.tls_key} (a key type it"
                                    " does not take: DSA, Ed448, an RSA-PSS key, a curve"
                                    " other than P-256, P-384 or P-521?)")
        return False
    finally:
        probe.stop(None)


def _binds(add_port: Callable[[], int]) -> bool:
    try:
        return add_port() != 0
    except RuntimeError:  # grpcio's "Failed to bind to address ..."
        return False


def _check_pems(server: ServerSettings) -> None:
    """InvalidConfig naming the file OpenSSL cannot use: gRPC finds out only when it binds,
    and serve then blamed server.listen, check-config saying OK (review 42f: a key of
    another certificate, the two swapped, a client CA that is no certificate)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # What gRPC serves, not what this Python's OpenSSL would choose to (review 42h: its
    # default security level refused an RSA-1024 or SHA-1 certificate gRPC served with).
    context.set_ciphers("DEFAULT:@SECLEVEL=0")
    _openssl(server, "tls_cert", "no PEM certificate",
             lambda: context.load_verify_locations(cafile=server.tls_cert))
    _openssl(server, "tls_key", "no unencrypted PEM key OpenSSL takes for tls_cert's",
             lambda: context.load_cert_chain(server.tls_cert, server.tls_key,
                                             password=_no_password))
    if server.tls_client_ca:
        _openssl(server, "tls_client_ca", "no PEM certificate",
                 lambda: context.load_verify_locations(cafile=server.tls_client_ca))


def _openssl(server: ServerSettings, key: str, lacking: str, load: Callable[[], None]) -> None:
    try:
        load()
    except ssl.SSLError as error:
        raise InvalidConfig(f"server.{key}", f"{getattr(server, key)} holds {lacking}"
                            f" ({error.reason or error})") from None


def _no_password() -> bytes:
    return b""  # gRPC takes no encrypted key: never a prompt on the terminal


def _read_pem(server: ServerSettings, key: str) -> bytes:
    path = getattr(server, key)
    try:
        return pathlib.Path(path).read_bytes()
    except OSError as error:
        raise InvalidConfig(f"server.{key}", f"cannot read {path}: {error}") from None


def warn_about_security(settings: Settings, authenticator: Authenticator | None) -> None:
    """Say at start-up what protects the sidecar, loudly when nothing does."""
    server = settings.server
    if authenticator is None:
        log.warning("authentication is OFF (no auth.tokens_file): any caller that can reach"
                    " %s may trigger and reset", " or ".join(
                        a for a in (server.listen, server.uds and f"unix:{server.uds}") if a))
    else:  # a tokens file that names no principal is refused (load_principals)
        log.info("authentication on: %d token(s), %d certificate name(s)",
                 len(authenticator.principals.tokens),
                 len(authenticator.principals.certificates))
    if server.listen and not server.tls_cert and not is_loopback(server.listen):
        log.warning("%s is served without TLS: bearer tokens and orders cross the network"
                    " in clear text", server.listen)
