"""The third-party gRPC tools the interop tests drive: grpcurl, grpc_health_probe and ghz,
built pinned by `make tools` (scripts/install_tools.sh) into .tools/bin."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOOLS_BIN = ROOT / ".tools" / "bin"


def tool(name: str) -> str:
    """The path of `name`: the pinned build in .tools/bin first, else one on PATH. A
    missing tool fails the test: these tests are how interop is proven, never skipped."""
    pinned = TOOLS_BIN / name
    if pinned.is_file() and os.access(pinned, os.X_OK):
        return str(pinned)
    if found := shutil.which(name):
        return found
    pytest.fail(f"{name} is not in {TOOLS_BIN} nor on PATH: run `make tools` (it builds"
                " grpcurl, grpc_health_probe and ghz with Go, pinned by"
                " scripts/install_tools.sh)", pytrace=False)


def run(name: str, *args: str, timeout_s: float = 60.0,
        check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a tool to its end; with `check`, a non-zero exit fails with its output."""
    completed = subprocess.run([tool(name), *args], capture_output=True, text=True,
                               timeout=timeout_s, stdin=subprocess.DEVNULL)
    if check and completed.returncode != 0:
        raise AssertionError(f"{name} {' '.join(args)} exited {completed.returncode}:\n"
                             f"{completed.stdout}\n{completed.stderr}")
    return completed
