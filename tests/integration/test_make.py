"""The Makefile: `make help` lists every target, and `make test-real` stops here within seconds at the
unreachable upstream, naming it."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_make_help_lists_every_target() -> None:
    makefile = (REPO / "Makefile").read_text()
    targets = {m[1] for m in re.finditer(r"^([a-z][a-z-]*):", makefile, re.MULTILINE)}
    phony = set(re.search(r"^\.PHONY:(.*)$", makefile, re.MULTILINE)[1].split())  # type: ignore[index]
    assert targets == phony, "every target is .PHONY and the other way round"
    shown = subprocess.run(["make", "--no-print-directory", "help"], cwd=REPO, capture_output=True, text=True,
                           check=True).stdout  # fmt: skip
    listed = {m[1] for m in re.finditer(r"^make ([a-z-]+)", shown, re.MULTILINE)}
    assert listed == targets, f"make help misses {targets - listed}"


def _reaches(host: str) -> bool:
    try:
        socket.create_connection((host, 443), timeout=3).close()
    except OSError:
        return False
    return True


def test_test_real_stops_at_the_unreachable_upstream(tmp_path: Path) -> None:
    if _reaches("dl.k8s.io"):
        pytest.skip("this machine reaches upstream: run `make test-real` itself")
    lock = (REPO / "artifacts.lock.yaml").read_bytes()
    env = {**os.environ, "NODEIMAGE_CACHE": str(tmp_path / "cache")}
    env.pop("NODEIMAGE_MIRROR", None)
    proc = subprocess.run([sys.executable, "-m", "invoke", "test-real"], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=60, stdin=subprocess.DEVNULL)  # fmt: skip
    assert proc.returncode == 1
    assert "https://dl.k8s.io/v1.17.17/kubernetes-node-linux-amd64.tar.gz is unreachable" in proc.stderr
    assert proc.stderr.count("error:") == 1 and "Traceback" not in proc.stderr
    assert (REPO / "artifacts.lock.yaml").read_bytes() == lock
    assert not (REPO / "build" / "clusters" / "real").exists()
