"""The first-boot status program that `invoke up` and the e2e run on each node, run here with sh.

A stand-in `cloud-init` on PATH plays the node's: it prints what
`cloud-init status --long` prints (cloud-init 22.4's format: a `status:`
line first), and can finish the bootstrap while it runs, which is the race a
slow guest produced (the bootstrap and cloud-init both finished during the
seconds `cloud-init status` took, and a node that had succeeded was
reported as never run).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from nodeimage.clusterwait import status_script


def _run(tmp_path: Path, cloud_init_status: str, *, finish: str = "", exit_code: int = 0) -> tuple[str, str]:
    success, failure = tmp_path / "bootstrap-success.complete", tmp_path / "bootstrap-failure"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "cloud-init"
    action = ""
    if finish == "ok":
        action = f"echo 'worker now' > {success}\n"
    elif finish == "failed":
        action = f"printf 'step: kubeadm-join\\n' > {failure}\n"
    fake.write_text(f"#!/bin/sh\n{action}printf '%s\\n' '{cloud_init_status}'\nexit {exit_code}\n")
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    proc = subprocess.run(
        ["sh", "-c", status_script(str(success), str(failure))], env=env, capture_output=True, text=True, check=True
    )
    first, _, rest = proc.stdout.partition("\n")
    return first, rest.strip()


def test_a_bootstrap_that_finishes_while_cloud_init_status_runs_is_ok(tmp_path: Path) -> None:
    assert _run(tmp_path, "status: done", finish="ok")[0] == "ok"


def test_a_failure_marker_is_reported_with_its_step(tmp_path: Path) -> None:
    assert _run(tmp_path, "status: done", finish="failed") == ("failed", "step: kubeadm-join")


def test_cloud_init_still_running_without_a_marker_is_running(tmp_path: Path) -> None:
    assert _run(tmp_path, "status: running")[0] == "running"


@pytest.mark.parametrize(("status", "code"), [("status: done", 0), ("status: error", 1)])
def test_cloud_init_finished_without_a_marker_is_not_run(tmp_path: Path, status: str, code: int) -> None:
    first, detail = _run(tmp_path, f"{status}\ndetail:\nDataSourceNoCloud", exit_code=code)
    assert first == "not-run"
    assert detail.startswith(status)
