"""`make bench-peers` times OPA's REST API against the sidecar only once both give the same
decisions on its probe orders (benchmarks/peers/probes.py). This runs that check alone,
with real processes: the sidecar with the config the harness writes, OPA 1.22 with the Rego
policy kept in the repo, and the bare servers, so a change to the sidecar's rules or
settings that the policy or the harness no longer matches fails here, not at the next
benchmark run (review 44d: a setting the sidecar had come to refuse, and a price band the
policy did not model, had stopped `make bench-peers` before anything was timed).

OPA is built pinned by `make tools` (benchmarks/peers/install_opa.sh); missing, it fails."""

from __future__ import annotations

import subprocess
import sys

from tests.e2e.tools import ROOT


def test_every_subject_decides_the_probe_orders_as_expected() -> None:
    completed = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "peers" / "run.py"), "--probes-only"],
        capture_output=True, text=True, timeout=110, stdin=subprocess.DEVNULL, cwd=ROOT)
    assert completed.returncode == 0, f"{completed.stdout}\n{completed.stderr}"
    assert "every subject agrees" in completed.stdout
