"""The sidecar as a user installs it: the repository's wheel, alone, in a fresh venv.

Nothing from the developer's editable installs may help: the wheel is built from a copy of
the files a clone has, installed with its dependencies from the index into a new venv without
system site packages, and its own `ess-sidecar` and `essctl` are run from outside the repo.
It needs the package index for the dependencies: about a minute when they come quickly.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from ess_sidecar.testing import SERVICE, SidecarProcess

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]  # a cold pip cache downloads a lot

ROOT = Path(__file__).resolve().parents[2]
CONFIG = "[limits]\nexposure_enabled = false\n"
PIP = ["-m", "pip", "--disable-pip-version-check", "--no-input", "--quiet"]
INSTALL_TIMEOUT_S = 600


def outside_env() -> dict[str, str]:
    """The test's environment without anything that would point the installed programs back
    at this repository or configure them (PYTHONPATH, ESS_*, a venv's activation)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV") and not k.startswith("ESS_")}
    return {**env, "COLUMNS": "250"}


def run(command: list[str | Path], cwd: Path,
        timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(part) for part in command], cwd=cwd, env=outside_env(),
                          capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def ok(result: subprocess.CompletedProcess[str], expected: int = 0) -> str:
    assert result.returncode == expected, (
        f"{' '.join(result.args)} exited {result.returncode}, expected {expected}\n"
        f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}")
    return result.stdout


def copy_of_the_clone(destination: Path) -> Path:
    """The files a clone of the work tree would have (tracked, plus new files not ignored),
    so nothing ignored (build/, *.egg-info, .venv) helps the build and the build leaves no
    litter in the repository."""
    listed = ok(run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                    ROOT, 60))
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():  # a tracked file may be deleted in the work tree
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return destination


def wait_serving(sidecar: SidecarProcess, timeout_s: float) -> None:
    """Health (asked on the Unix socket, waiting for it to open) or the process's exit,
    whichever comes first, within one deadline; an exit fails at once with the log."""
    process = sidecar.process
    assert process is not None
    settled = threading.Event()
    threading.Thread(target=lambda: (process.wait(), settled.set()), daemon=True).start()
    with grpc.insecure_channel(sidecar.uds_target) as channel:
        reply = health_pb2_grpc.HealthStub(channel).Check.future(
            health_pb2.HealthCheckRequest(service=SERVICE), timeout=timeout_s,
            wait_for_ready=True)
        reply.add_done_callback(lambda _: settled.set())
        settled.wait(timeout_s + 5)
        exited = process.poll()
        if exited is not None and not reply.done():
            reply.cancel()
            raise AssertionError(f"the installed ess-sidecar exited {exited} before SERVING:\n"
                                 f"{sidecar.output()}")
        try:
            status = reply.result(timeout=0)
        except (grpc.RpcError, grpc.FutureTimeoutError) as error:
            raise AssertionError(f"the installed ess-sidecar did not become SERVING ({error}):"
                                 f"\n{sidecar.output()}") from error
    assert status.status == health_pb2.HealthCheckResponse.SERVING, sidecar.output()


def test_the_built_wheel_alone_gives_a_working_sidecar_and_essctl(tmp_path: Path) -> None:
    source = copy_of_the_clone(tmp_path / "src")
    wheels = tmp_path / "wheels"
    ok(run([sys.executable, *PIP, "wheel", "--no-deps", "--wheel-dir", wheels, source],
           tmp_path, INSTALL_TIMEOUT_S))
    built = sorted(wheels.glob("ess_sidecar-*.whl"))
    assert len(built) == 1, f"expected one ess_sidecar wheel, got {sorted(wheels.iterdir())}"

    venv = tmp_path / "venv"
    ok(run([sys.executable, "-m", "venv", venv], tmp_path, 120))
    python, bin_dir = venv / "bin" / "python", venv / "bin"
    ok(run([python, *PIP, "install", "--no-compile", built[0]], tmp_path, INSTALL_TIMEOUT_S))

    # What runs is the venv's copy, not the repository's files; its decision domain is
    # compiled (setup.py, mypyc).
    where = ok(run([python, "-c", "import ess.v1.guard_pb2_grpc as g, ess_sidecar as s, "
                    "ess_sidecar.domain.engine as e; print(g.__file__); print(s.__file__); "
                    "print(e.__file__)"], tmp_path, 60))
    for line in where.splitlines():
        assert Path(line).is_relative_to(venv), f"imported from outside the venv: {where}"
    assert where.splitlines()[-1].endswith(".so"), f"the domain is not compiled: {where}"

    ok(run([bin_dir / "ess-sidecar", "check-config", source / "config" / "ess.example.toml"],
           tmp_path, 60))

    workdir = Path(tempfile.mkdtemp(prefix="ess-pkg-"))  # short: a Unix socket path is <108
    sidecar = SidecarProcess(workdir, CONFIG)
    try:
        with open(sidecar.log, "ab") as log:
            sidecar.process = subprocess.Popen(
                [str(bin_dir / "ess-sidecar"), "serve", "--config", str(sidecar.config),
                 "--listen", sidecar.tcp_target, "--uds", str(sidecar.uds), "--state",
                 str(sidecar.state)], cwd=workdir, env=outside_env(), stdout=log,
                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_serving(sidecar, timeout_s=30)
        # The journal's syncer, a child process, runs the venv's copy too.
        [syncer] = sidecar.children()
        argv = Path(f"/proc/{syncer}/cmdline").read_bytes().split(b"\0")
        assert b"ess_sidecar.adapters.storage.syncer" in argv[3], argv
        assert Path(argv[4].decode()).is_relative_to(venv), argv

        essctl = [bin_dir / "essctl", "--target", sidecar.uds_target]
        ok(run([*essctl, "status"], workdir, 30), expected=0)
        ok(run([*essctl, "trigger", "--scope", "strategy:momo", "--reason",
                "packaging test"], workdir, 30), expected=0)
        status = ok(run([*essctl, "status"], workdir, 30), expected=2)
        assert "STRATEGY:momo" in status and "TRIPPED" in status, status

        assert sidecar.terminate(timeout_s=30) == 0, sidecar.output()
    finally:
        sidecar.stop()
        shutil.rmtree(workdir, ignore_errors=True)
