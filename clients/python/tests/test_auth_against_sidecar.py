"""GuardClient against a sidecar with authentication on: a token or a TLS channel, and a
refusal that is a denial even for a fail-open client."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
import trustme
from conftest import CONFIG, RELAXED_TIMEOUT_S, SidecarProcess

from ess_client import Failure, GuardClient
from ess_sidecar.adapters.auth.tokens import new_token, tokens_file_line
from ess_sidecar.domain.access import Role

ORDER = dict(account="acc-1", strategy="momo", symbol="AAPL", side="BUY", quantity=10.0,
             price=100.0)
TOKEN = new_token()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def secured(ca: trustme.CA) -> Iterator[SidecarProcess]:
    """A sidecar whose TCP address is TLS, with one executor token."""
    workdir = Path(tempfile.mkdtemp(prefix="ess-client-auth-"))
    (workdir / "tokens.toml").write_text(
        "[tokens]\n" + tokens_file_line("exec-1", Role.EXECUTOR, TOKEN) + "\n")
    cert = ca.issue_cert("127.0.0.1")
    cert.private_key_pem.write_to_path(str(workdir / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(workdir / "cert.pem"))
    config = (f'{CONFIG}[auth]\ntokens_file = "{workdir / "tokens.toml"}"\n'
              f'[server]\ntls_cert = "{workdir / "cert.pem"}"\n'
              f'tls_key = "{workdir / "key.pem"}"\n')
    process = SidecarProcess(workdir, config).start()
    yield process
    process.stop()
    shutil.rmtree(workdir, ignore_errors=True)


async def test_a_client_with_its_token_gets_decisions_and_is_the_actor(
        secured: SidecarProcess) -> None:
    async with GuardClient(secured.uds_target, token=TOKEN,
                           check_timeout_s=RELAXED_TIMEOUT_S) as client:
        assert (await client.check(**ORDER)).allowed
        await client.trigger("STRATEGY:momo", reason="stop")
        state = await client.get_state()
    assert [s.actor for s in state.scopes] == ["exec-1"]


@pytest.mark.parametrize("fail_open", [False, True])
async def test_a_client_without_a_valid_token_is_denied_even_when_fail_open(
        secured: SidecarProcess, fail_open: bool) -> None:
    async with GuardClient(secured.uds_target, token=new_token(), fail_open=fail_open,
                           check_timeout_s=RELAXED_TIMEOUT_S) as client:
        verdict = await client.check(**ORDER)
    assert (verdict.allowed, verdict.failure) == (False, Failure.REFUSED)


async def test_a_refused_stream_opened_by_connect_is_never_allowed_fail_open(
        secured: SidecarProcess) -> None:
    """Review 54e: with connect() first, the stream was refused while its first request
    was being sent, and grpcio's core ended it INTERNAL ("Internal error from Core"), which
    read as a broken connection: a fail-open client allowed about 1 check in 6. A stream
    whose headers never came was never the sidecar's: its INTERNAL is no connectivity."""
    verdicts = []
    for _ in range(30):
        async with GuardClient(secured.uds_target, token=new_token(), fail_open=True,
                               check_timeout_s=RELAXED_TIMEOUT_S) as client:
            await client.connect(timeout_s=1.0)  # no headers come: the check goes out
            verdicts.append(await client.check(**ORDER))  # as the refusal does, after 1 s
    assert [v for v in verdicts if v.allowed] == []
    assert {v.failure for v in verdicts} <= {Failure.REFUSED}


async def test_a_client_over_tls(secured: SidecarProcess, ca: trustme.CA) -> None:
    credentials = grpc.ssl_channel_credentials(ca.cert_pem.bytes())
    async with GuardClient(secured.tcp_target, token=TOKEN, credentials=credentials,
                           check_timeout_s=RELAXED_TIMEOUT_S) as client:
        assert (await client.check(**ORDER)).allowed


async def test_a_heartbeat_refused_unauthenticated_stops_and_says_why(
        secured: SidecarProcess) -> None:
    """Review 54b: as TypeScript's, a heartbeat with a token the sidecar does not take is
    never registered: beating on would trip nothing; it stops, `refused` set."""
    async with GuardClient(secured.uds_target, token=new_token()) as client:
        beat = client.start_heartbeat("exec-1", "STRATEGY:momo", 5_000, interval_s=0.02)
        await asyncio.wait_for(beat.stopped(), 10)
    assert not beat.running and beat.sent == 0 and beat.failures == 1
    assert isinstance(beat.refused, grpc.aio.AioRpcError)
    assert beat.refused.code() == grpc.StatusCode.UNAUTHENTICATED
