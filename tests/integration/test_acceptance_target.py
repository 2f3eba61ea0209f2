"""The acceptance suite refuses a target that is not a node image with one error, instead of a run of failures
among which some tests pass."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("target", "message"), [
    ("missing", "no such directory"),
    ("empty", "not a nodeimage image tree (no etc/nodeimage-release in it)"),
])  # fmt: skip
def test_a_bad_chroot_target_is_one_usage_error(target: str, message: str, tmp_path: Path) -> None:
    root = tmp_path / target
    if target == "empty":
        (root / "etc").mkdir(parents=True)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", str(REPO / "tests" / "acceptance"),
         f"--hosts=chroot://{root}"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 4, proc.stdout + proc.stderr  # pytest's usage-error exit code
    assert message in proc.stderr
    assert "passed" not in proc.stdout and "failed" not in proc.stdout
