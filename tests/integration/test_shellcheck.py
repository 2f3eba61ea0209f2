"""shellcheck over every provision step, lib.sh and any other shell script in the repository."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SKIP_DIRS = {".git", ".venv", ".pytest_cache", ".ruff_cache", ".mypy_cache", "build", "node_modules", "__pycache__"}


def shell_scripts() -> list[Path]:
    """*.sh files, plus extension-less files under provision/ whose shebang names a POSIX shell or bash."""
    found = set()
    for dirpath, dirnames, filenames in os.walk(REPO):
        dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS]
        for name in filenames:
            path = Path(dirpath) / name
            if path.suffix == ".sh":
                found.add(path)
            elif path.suffix == "" and "provision" in path.relative_to(REPO).parts and path.is_file():
                with path.open("rb") as f:
                    first = f.readline()
                if first.startswith(b"#!") and (b"bash" in first or first.rstrip().endswith((b"/sh", b" sh"))):
                    found.add(path)
    return sorted(found)


SCRIPTS = shell_scripts()


def test_provision_steps_are_found():
    """Every layer's steps and the shared library are among the scripts checked."""
    from nodeimage.layers import LAYERS

    found = {p.relative_to(REPO).as_posix() for p in SCRIPTS}
    assert "provision/lib.sh" in found
    for layer in LAYERS:
        steps = sorted((REPO / "provision" / layer.name).glob("[0-9][0-9]-*.sh"))
        assert steps, f"layer {layer.name} has no steps under provision/{layer.name}"
        assert {s.relative_to(REPO).as_posix() for s in steps} <= found


@pytest.mark.parametrize("script", SCRIPTS, ids=[str(p.relative_to(REPO)) for p in SCRIPTS])
def test_shellcheck_clean(script: Path):
    if shutil.which("shellcheck") is None:
        pytest.fail("shellcheck is not installed (Debian package shellcheck; `make deps`)")
    proc = subprocess.run(
        ["shellcheck", "--external-sources", "--format=gcc", str(script.relative_to(REPO))],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
