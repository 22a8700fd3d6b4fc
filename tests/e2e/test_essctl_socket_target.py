"""essctl reaches a sidecar given a bare socket path as --target (no `unix:`)."""

from __future__ import annotations

import subprocess

import pytest

from ess_sidecar.testing import SidecarProcess
from tests.e2e.essctl_helpers import ESSCTL, clean_env

pytestmark = pytest.mark.e2e


def test_status_through_a_socket_path_given_without_unix(
        sidecar_process: SidecarProcess) -> None:
    sidecar = sidecar_process.start()
    for target, cwd in ((str(sidecar.uds), None),             # /abs/path/ess.sock
                        (sidecar.uds.name, sidecar.workdir)):  # ess.sock, an existing socket
        result = subprocess.run([*ESSCTL, "--target", target, "status"], cwd=cwd,
                                capture_output=True, text=True, timeout=30,
                                stdin=subprocess.DEVNULL, env=clean_env())
        assert result.returncode == 0, (target, result.stderr)
        assert "GLOBAL ARMED, all scopes ARMED" in result.stdout
