"""Each language's client against one live sidecar over its Unix socket, in one run:
`make bench-clients` (after `make clients`).

Every client's `clients/<lang>/bin/ess-bench` checks 10,000 orders (after 1,000 unmeasured)
through its library's long-lived CheckOrderStream, 1 and then 8 in flight, and prints its
p50/p99 and rate. Rounds go language by language, interleaved, so that the machine's load
falls on all of them alike; the table gives each figure's median over the rounds. The
sidecar's limits that would deny a stream of benchmark orders are off (exposure, rate,
identical orders, working-order caps): every check must be ALLOWED, or ess-bench fails."""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from ess_sidecar.testing import SidecarProcess  # noqa: E402

CONFIG = """
[limits]
exposure_enabled = false
max_orders_per_second = 0
duplicate_identical_orders = 0
max_working_orders_per_account = 0
max_working_orders_per_strategy = 0
[telemetry]
enabled = true
"""


def languages() -> list[str]:
    found = sorted(p.parent.parent.name for p in ROOT.glob("clients/*/bin/ess-bench"))
    return ["python"] + [lang for lang in found if lang != "python"]


def bench(lang: str, target: str, checks: int, inflight: int) -> dict[str, float]:
    program = ROOT / "clients" / lang / "bin" / "ess-bench"
    done = subprocess.run([str(program), "--target", target, "--checks", str(checks),
                           "--inflight", str(inflight)], capture_output=True, text=True,
                          timeout=900)
    if done.returncode != 0:
        raise SystemExit(f"{lang} ess-bench failed: {done.stdout}{done.stderr}")
    line = done.stdout.strip().splitlines()[-1]  # p50_us=.. p99_us=.. checks_per_s=.. [more]
    fields = dict(part.split("=", 1) for part in line.split() if "=" in part)
    return {key: float(fields[key]) for key in ("p50_us", "p99_us", "checks_per_s")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--inflight", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args()
    langs = languages()
    workdir = Path(tempfile.mkdtemp(prefix="ess-bench-clients-"))
    results: dict[tuple[str, int], list[dict[str, float]]] = {}
    sidecar = SidecarProcess(workdir, CONFIG).start()
    try:
        for _ in range(args.rounds):
            for inflight in args.inflight:
                for lang in langs:
                    figures = bench(lang, sidecar.uds_target, args.checks, inflight)
                    results.setdefault((lang, inflight), []).append(figures)
    finally:
        sidecar.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"# Clients over UDS, {args.checks} checks per run, median of {args.rounds}"
          f" interleaved rounds; {platform.machine()}, {platform.python_version()}\n")
    print("| client | in flight | p50 µs | p99 µs | checks/s |")
    print("|---|---|---|---|---|")
    for (lang, inflight), runs in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        median = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
        print(f"| {lang} | {inflight} | {median['p50_us']:.0f} | {median['p99_us']:.0f} |"
              f" {median['checks_per_s']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
