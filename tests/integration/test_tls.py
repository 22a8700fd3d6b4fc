"""TLS and mutual TLS on the TCP address, with certificates from a throwaway CA."""

from __future__ import annotations

import datetime
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import grpc
import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, rsa
from cryptography.x509.oid import NameOID

from ess.v1 import guard_pb2 as pb
from ess.v1 import guard_pb2_grpc as pb_grpc
from ess_sidecar.adapters.auth.tokens import new_token, tokens_file_line
from ess_sidecar.domain.access import Role
from tests.integration.conftest import order, strategy_scope


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def pki(ca: trustme.CA, tmp_path: Path) -> dict[str, Any]:
    """Server certificate for 127.0.0.1, the CA's PEM, and an operator token."""
    server = ca.issue_cert("127.0.0.1", "localhost")
    server.private_key_pem.write_to_path(str(tmp_path / "server.key"))
    server.cert_chain_pems[0].write_to_path(str(tmp_path / "server.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    token = new_token()
    (tmp_path / "tokens.toml").write_text(
        "[tokens]\n" + tokens_file_line("alice", Role.OPERATOR, token) + "\n"
        '[certificates]\n"executor-1" = { role = "executor" }\n')
    return {"token": token, "ca": ca.cert_pem.bytes(), "dir": tmp_path}


def tls_sections(pki: dict[str, Any], mutual: bool = False) -> dict[str, Any]:
    folder = pki["dir"]
    server = {"listen": "127.0.0.1:0", "tls_cert": str(folder / "server.pem"),
              "tls_key": str(folder / "server.key")}
    if mutual:
        server["tls_client_ca"] = str(folder / "ca.pem")
    return {"server": server, "auth": {"tokens_file": str(folder / "tokens.toml")}}


def secure_stub(address: str, pki: dict[str, Any], client: Any = None) -> Any:
    key = client.private_key_pem.bytes() if client else None
    chain = client.cert_chain_pems[0].bytes() if client else None
    credentials = grpc.ssl_channel_credentials(pki["ca"], key, chain)
    channel = grpc.aio.secure_channel(address, credentials)
    return channel, pb_grpc.GuardServiceStub(channel)


async def test_tls_with_a_bearer_token(start_sidecar: Any, pki: dict[str, Any]) -> None:
    running = await start_sidecar(sync=False, **tls_sections(pki))
    tcp = running.sidecar.addresses[0]
    channel, stub = secure_stub(tcp, pki)
    async with channel:
        reply = await stub.Trigger(pb.TriggerRequest(scope=strategy_scope(), reason="tls"),
                                   metadata=(("authorization", f"Bearer {pki['token']}"),),
                                   timeout=5)
    assert reply.state == pb.STATE_TRIPPED
    async with grpc.aio.insecure_channel(tcp) as plain:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await pb_grpc.GuardServiceStub(plain).GetState(pb.GetStateRequest(), timeout=5)
    assert raised.value.code() is grpc.StatusCode.UNAVAILABLE


async def test_mutual_tls_maps_the_client_certificate_to_its_role(
        start_sidecar: Any, pki: dict[str, Any], ca: trustme.CA) -> None:
    running = await start_sidecar(sync=False, **tls_sections(pki, mutual=True))
    tcp = running.sidecar.addresses[0]
    channel, stub = secure_stub(tcp, pki, ca.issue_cert("executor-1", common_name="executor-1"))
    async with channel:
        await stub.CheckOrder(order(), timeout=5)
        await stub.Trigger(pb.TriggerRequest(scope=strategy_scope(), reason="mtls"), timeout=5)
        with pytest.raises(grpc.aio.AioRpcError) as denied:
            await stub.Reset(pb.ResetRequest(scope=strategy_scope(), reason="x", force=True),
                             timeout=5)
    assert denied.value.code() is grpc.StatusCode.PERMISSION_DENIED
    [trip] = running.app.guard.restricted()
    assert trip.actor == "executor-1"


@pytest.mark.parametrize("header", ["Bearer not-a-token", "Basic Zm9vOmJhcg==", "Bearer "])
async def test_a_stray_authorization_header_never_refuses_a_certified_stop(
        start_sidecar: Any, pki: dict[str, Any], ca: trustme.CA, header: str) -> None:
    """Review 31: with mutual TLS, a stale or malformed bearer header sent beside a client
    certificate that has a role refused the Trigger. The certificate alone is accepted,
    so it is here too; the header grants nothing of its own."""
    running = await start_sidecar(sync=False, **tls_sections(pki, mutual=True))
    tcp = running.sidecar.addresses[0]
    channel, stub = secure_stub(tcp, pki, ca.issue_cert("executor-1", common_name="executor-1"))
    async with channel:
        reply = await stub.Trigger(pb.TriggerRequest(scope=strategy_scope(), reason="stop"),
                                   metadata=(("authorization", header),), timeout=5)
        assert reply.state == pb.STATE_TRIPPED
        with pytest.raises(grpc.aio.AioRpcError) as denied:  # still the executor's role
            await stub.Reset(pb.ResetRequest(scope=strategy_scope(), reason="x", force=True),
                             metadata=(("authorization", header),), timeout=5)
    assert denied.value.code() is grpc.StatusCode.PERMISSION_DENIED
    [trip] = running.app.guard.restricted()
    assert trip.actor == "executor-1"
    channel, stub = secure_stub(tcp, pki, ca.issue_cert("mallory", common_name="mallory"))
    async with channel:  # a certificate with no role: the header's refusal stands
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.Trigger(pb.TriggerRequest(scope=strategy_scope(), reason="x"),
                               metadata=(("authorization", header),), timeout=5)
    assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED


async def test_a_weaker_token_beside_a_certificate_never_refuses_a_certified_stop(
        start_sidecar: Any, pki: dict[str, Any], ca: trustme.CA) -> None:
    """Review 40g: a valid token won over the connection's certificate, so a reconciler's
    token beside an executor's (or operator's) certificate refused the Trigger that the
    certificate alone was allowed. What the token's role may not do, the certificate's
    may; the token still names the caller for what its role may do."""
    recon = new_token()
    tokens = pki["dir"] / "tokens.toml"
    tokens.write_text(tokens.read_text().replace(
        "[certificates]", tokens_file_line("recon1", Role.RECONCILER, recon)
        + "\n[certificates]"))
    running = await start_sidecar(sync=False, **tls_sections(pki, mutual=True))
    tcp = running.sidecar.addresses[0]
    channel, stub = secure_stub(tcp, pki, ca.issue_cert("executor-1", common_name="executor-1"))
    bearer = (("authorization", f"Bearer {recon}"),)
    async with channel:
        reply = await stub.Trigger(pb.TriggerRequest(scope=strategy_scope(), reason="stop"),
                                   metadata=bearer, timeout=5)
        assert reply.state == pb.STATE_TRIPPED
        with pytest.raises(grpc.aio.AioRpcError) as denied:  # neither role may reset
            await stub.Reset(pb.ResetRequest(scope=strategy_scope(), reason="x", force=True),
                             metadata=bearer, timeout=5)
    assert denied.value.code() is grpc.StatusCode.PERMISSION_DENIED
    [trip] = running.app.guard.restricted()
    assert trip.actor == "executor-1"


async def test_mutual_tls_refuses_unknown_names_and_missing_certificates(
        start_sidecar: Any, pki: dict[str, Any], ca: trustme.CA) -> None:
    running = await start_sidecar(sync=False, **tls_sections(pki, mutual=True))
    tcp = running.sidecar.addresses[0]
    channel, stub = secure_stub(tcp, pki, ca.issue_cert("mallory", common_name="mallory"))
    async with channel:
        with pytest.raises(grpc.aio.AioRpcError) as unknown:
            await stub.Trigger(pb.TriggerRequest(scope=strategy_scope(), reason="x"), timeout=5)
    assert unknown.value.code() is grpc.StatusCode.UNAUTHENTICATED
    assert "mallory" in unknown.value.details()
    channel, stub = secure_stub(tcp, pki)
    async with channel:
        with pytest.raises(grpc.aio.AioRpcError) as no_cert:
            await stub.GetState(pb.GetStateRequest(), timeout=5)
    assert no_cert.value.code() is grpc.StatusCode.UNAVAILABLE
    assert running.app.guard.engine.version == 0


def _certificate(ca: trustme.CA, *common_names: str) -> Any:
    """A client certificate from `ca` whose subject holds these common names, as trustme's
    (which takes one, and no NUL in it)."""
    issuer = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
    signer = serialization.load_pem_private_key(ca.private_key_pem.bytes(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)
                                 for name in common_names]))
        .issuer_name(issuer.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .sign(signer, hashes.SHA256()))
    pem = certificate.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return SimpleNamespace(private_key_pem=SimpleNamespace(bytes=lambda: key_pem),
                           cert_chain_pems=[SimpleNamespace(bytes=lambda: pem)])


@pytest.mark.parametrize("common_names", [("executor-1\x00.evil",),
                                          ("mallory", "executor-1"),
                                          ("executor-1", "mallory")], ids=ascii)
async def test_a_certificate_names_one_principal_by_its_one_whole_common_name(
        start_sidecar: Any, pki: dict[str, Any], ca: trustme.CA,
        common_names: tuple[str, ...]) -> None:
    """Review 35: gRPC's common name ends at a NUL, so a certificate for
    "executor-1\\0.evil" (which a CA signing names by suffix issues) was executor-1's; of
    two common names the first counted. Such a certificate names no one."""
    running = await start_sidecar(sync=False, **tls_sections(pki, mutual=True))
    tcp = running.sidecar.addresses[0]
    channel, stub = secure_stub(tcp, pki, _certificate(ca, *common_names))
    async with channel:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.CheckOrder(order(), timeout=5)
    assert refused.value.code() is grpc.StatusCode.UNAUTHENTICATED, refused.value
    channel, stub = secure_stub(tcp, pki, _certificate(ca, "executor-1"))
    async with channel:  # the same way made, one whole name: executor-1, answered
        assert (await stub.CheckOrder(order(), timeout=5)).decision_id
    assert running.app.guard.engine.version == 0



@pytest.mark.parametrize("swap, key", [
    ({"tls_key": "other.key"}, "server.tls_key"),
    ({"tls_cert": "server.key", "tls_key": "server.pem"}, "server.tls_cert"),
    ({"tls_client_ca": "tokens.toml"}, "server.tls_client_ca"),
], ids=["another-certificate's-key", "swapped", "a-ca-that-is-no-certificate"])
def test_check_config_refuses_tls_files_openssl_cannot_use(
        pki: dict[str, Any], ca: trustme.CA, capsys: pytest.CaptureFixture[str],
        swap: dict[str, str], key: str) -> None:
    """Review 42f: check-config said OK, and serve then refused, blaming server.listen
    ("cannot bind ... in use by another process"). Each is refused naming its key."""
    from ess_sidecar.cli import main  # noqa: PLC0415
    folder = pki["dir"]
    ca.issue_cert("127.0.0.1").private_key_pem.write_to_path(str(folder / "other.key"))
    sections = tls_sections(pki, mutual=True)
    assert main(["check-config", str(_config(folder, sections))]) == 0
    sections["server"].update({name: str(folder / file) for name, file in swap.items()})
    assert main(["check-config", str(_config(folder, sections))]) == 2
    assert f"invalid configuration: {key}: " in capsys.readouterr().err


def _config(folder: Path, sections: dict[str, dict[str, str]]) -> Path:
    path = folder / "ess.toml"
    path.write_text("".join(f"[{section}]\n" + "".join(f'{name} = "{value}"\n'
                                                      for name, value in table.items())
                            for section, table in sections.items()))
    return path


def test_check_config_takes_tls_files_grpc_serves_with(pki: dict[str, Any]) -> None:
    """Review 42h: the check above, on OpenSSL's default security level, refused an
    RSA-1024 (or SHA-1) certificate that gRPC serves with (weak, and the operator's call)."""
    from ess_sidecar.cli import main  # noqa: PLC0415
    folder = pki["dir"]
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now).not_valid_after(now + datetime.timedelta(hours=1))
                   .sign(key, hashes.SHA256()))
    (folder / "weak.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (folder / "weak.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption()))
    sections = tls_sections(pki)
    sections["server"].update(tls_cert=str(folder / "weak.pem"), tls_key=str(folder / "weak.key"))
    assert main(["check-config", str(_config(folder, sections))]) == 0


def test_check_config_refuses_a_key_type_grpc_cannot_serve_with(
        pki: dict[str, Any], capsys: pytest.CaptureFixture[str]) -> None:
    """Review 42i: OpenSSL takes an Ed448 (or DSA, brainpool, RSA-PSS) key that gRPC
    does not: check-config said OK, and serve failed to bind. gRPC binds them once."""
    from ess_sidecar.cli import main  # noqa: PLC0415
    folder = pki["dir"]
    key = ed448.Ed448PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now).not_valid_after(now + datetime.timedelta(hours=1))
                   .sign(key, None))
    (folder / "ed448.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (folder / "ed448.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    sections = tls_sections(pki)
    sections["server"].update(tls_cert=str(folder / "ed448.pem"),
                              tls_key=str(folder / "ed448.key"))
    assert main(["check-config", str(_config(folder, sections))]) == 2
    assert "invalid configuration: server.tls_cert: gRPC cannot serve with" in \
        capsys.readouterr().err
    for elsewhere in ("192.0.2.1:50051", "[::1]:50051"):  # review 42l: a production config
        sections["server"]["listen"] = elsewhere  # checked on another host (TEST-NET-1)
        assert main(["check-config", str(_config(folder, sections))]) == 2, elsewhere
    sections["server"]["listen"] = "127.0.0.1:0"
    sections["store"] = {"path": str(folder / "state" / "ess.db")}  # serve: the bind says so
    served = subprocess.run([sys.executable, "-m", "ess_sidecar", "serve", "--config",
                             str(_config(folder, sections))], capture_output=True, text=True,
                            timeout=60)
    assert served.returncode == 2 and "or TLS files gRPC cannot serve with" in served.stderr
