"""The contract: buf lint passes and the generated Python matches proto/."""

from __future__ import annotations

import filecmp
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_buf_lint_passes() -> None:
    buf = ROOT / "node_modules" / ".bin" / "buf"
    assert buf.exists(), "buf is not installed: `make install` runs `npm ci`"
    result = subprocess.run([str(buf), "lint"], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


RELEASED = ROOT / "tests" / "integration" / "data" / "contract-0.1.0.binpb"


def test_no_wire_breaking_change_against_the_released_contract() -> None:
    """`buf breaking` (FILE rules) against the contract as released (an image built by
    `buf build -o` before the order lifecycle); the deliberate, non-wire breaks are in the
    README's changelog."""
    buf = ROOT / "node_modules" / ".bin" / "buf"
    result = subprocess.run([str(buf), "breaking", "--against", str(RELEASED)], cwd=ROOT,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def _generated(root: Path) -> set[Path]:
    return {p.relative_to(root) for p in (root / "ess").rglob("*")
            if p.is_file() and "__pycache__" not in p.parts}


def test_generated_python_is_not_stale(tmp_path: Path) -> None:
    subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_proto.py"), "--out",
                    str(tmp_path)], check=True, timeout=120)
    committed_root = ROOT / "clients" / "python"
    fresh, committed = _generated(tmp_path), _generated(committed_root)
    assert fresh == committed, "run `make proto`: generated files differ in name"
    stale = [str(p) for p in sorted(fresh)
             if not filecmp.cmp(tmp_path / p, committed_root / p, shallow=False)]
    assert not stale, f"run `make proto`: stale generated files {stale}"


def test_generated_go_is_not_stale_and_builds(tmp_path: Path) -> None:
    """Needs Go (the project's toolchain for clients/go): a missing `go` fails, loudly."""
    subprocess.run(["bash", str(ROOT / "scripts" / "gen_go.sh"), str(tmp_path)], check=True,
                   timeout=600, env={**os.environ, "PYTHON": sys.executable})
    committed = ROOT / "clients" / "go" / "essv1"
    fresh = sorted(p.name for p in (tmp_path / "essv1").iterdir())
    assert fresh == sorted(p.name for p in committed.iterdir())
    stale = [n for n in fresh if not filecmp.cmp(tmp_path / "essv1" / n, committed / n,
                                                   shallow=False)]
    assert not stale, f"run `make proto`: stale generated Go files {stale}"
    build = subprocess.run(["go", "build", "./..."], cwd=ROOT / "clients" / "go",
                           capture_output=True, text=True, timeout=600)
    assert build.returncode == 0, build.stderr
