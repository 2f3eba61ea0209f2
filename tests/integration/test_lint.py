"""Linters as tests, so `make test` fails on them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_ruff_clean() -> None:
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "."], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_packer_template_is_formatted() -> None:
    proc = subprocess.run(["packer", "fmt", "-check", "packer/"], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, f"packer fmt would change: {proc.stdout}"
