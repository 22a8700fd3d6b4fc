"""The contract: buf lint passes and the generated Python matches proto/."""

from __future__ import annotations

import filecmp
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
