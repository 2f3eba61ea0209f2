"""Faults on a real build (issue 8): killed with SIGKILL mid-packer and mid-normalise, and two builds at once.

After a SIGKILL nothing of the killed build can clean up: its packer and qemu run on (they have sessions
of their own, so that Ctrl-C stops them in order), so do the programs it ran (mke2fs writing the new
filesystem), and a loop mount it held stays (GPT bases). The next build of the profile must stop and
remove all of that and succeed. These builds share the e2e build's caches, so after the kill they
take their OS and stack layers from the cache and cost about a minute each.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from nodeimage.fsutil import mounts_under, processes_using
from tests.e2e.conftest import PROFILE, REPO, E2EBuild

pytestmark = pytest.mark.e2e


def _args(b: E2EBuild, out: Path, *extra: str) -> list[str]:
    args = [a for a in b.invoke_args() if not a.startswith(("--out=", "--suite-args=", "--formats="))]
    return [sys.executable, "-m", "invoke", "build", *args, f"--out={out}", "--formats=qcow2", "--skip-suite",
            *extra]  # fmt: skip


def _kill_when(b: E2EBuild, env: dict[str, str], out: Path, marker: str, *extra: str, busy: bool = False) -> str:
    """Start a build, SIGKILL it (only the invoke process) once ``marker`` appears (and, with ``busy``, once a
    program of its own works in its work directory); return what it printed."""
    proc = subprocess.Popen(_args(b, out, *extra), cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    assert proc.stdout is not None
    seen = []
    deadline = time.monotonic() + 900
    for line in proc.stdout:
        seen.append(line)
        if marker in line or time.monotonic() > deadline:
            break
    until = time.monotonic() + 30
    while busy and time.monotonic() < until and not any(processes_using(w) for w in _work_dirs(out)):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    text = "".join(seen)
    assert marker in text, text[-3000:]
    return text


def _work_dirs(out: Path) -> list[Path]:
    return list(out.glob(".work-*"))


def _rebuild(b: E2EBuild, env: dict[str, str], out: Path) -> str:
    proc = subprocess.run(_args(b, out), cwd=REPO, env=env, capture_output=True, text=True, timeout=1800,
                          stdin=subprocess.DEVNULL)  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stderr


def _prepare(b: E2EBuild, tmp_path: Path) -> Path:
    out = tmp_path / "out"
    out.mkdir()
    (out / "base").symlink_to(b.out_root / "base")
    return out


def test_sigkill_mid_packer_leaves_nothing_the_next_build_does_not_clean(
    e2e_build: E2EBuild, e2e_env: dict[str, str], tmp_path: Path
) -> None:
    out = _prepare(e2e_build, tmp_path)
    _kill_when(e2e_build, e2e_env, out, "Waiting for SSH", "--force")
    (stale,) = _work_dirs(out)
    orphans = processes_using(stale)
    assert orphans, "a SIGKILLed build leaves its packer and qemu running (this test would show nothing)"
    log = _rebuild(e2e_build, e2e_env, out)
    assert f"removing {stale}, left by a build that did not finish" in log
    assert not stale.exists() and not _work_dirs(out)
    assert not [p for p in orphans if Path(f"/proc/{p}").exists()], "the killed build's processes still run"
    assert (out / PROFILE / "node.qcow2").is_file()


@pytest.mark.skipif(os.geteuid() != 0, reason="the normalise phase loop-mounts the image (root)")
def test_sigkill_mid_normalise_and_a_second_build_at_once(
    e2e_build: E2EBuild, e2e_env: dict[str, str], tmp_path: Path
) -> None:
    """Killed while mke2fs writes the new filesystem: mke2fs runs on, orphaned, in the work directory."""
    out = _prepare(e2e_build, tmp_path)
    _kill_when(e2e_build, e2e_env, out, "Making ext4 filesystem", busy=True)
    (stale,) = _work_dirs(out)
    orphans = processes_using(stale)
    assert orphans, "a build killed in normalise leaves its mke2fs running (this test would show nothing)"
    logs: dict[str, str] = {}

    def run(name: str) -> None:
        logs[name] = _rebuild(e2e_build, e2e_env, out)

    first = threading.Thread(target=run, args=("first",))
    first.start()
    time.sleep(3)  # the first one holds the profile's lock by now
    run("second")
    first.join()
    both = logs["first"] + logs["second"]
    assert f"removing {stale}" in both
    assert not stale.exists() and not _work_dirs(out) and not mounts_under(out)
    assert not [p for p in orphans if Path(f"/proc/{p}").exists()], "the killed build's processes still run"
    assert "is running; waiting for it" in both  # the second waited instead of building beside the first
    assert "up to date" in logs["second"]
    subprocess.run(["qemu-img", "check", str(out / PROFILE / "node.qcow2")], check=True, capture_output=True)
