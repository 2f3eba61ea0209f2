"""`invoke clean`: build outputs go, nothing else does (cluster secrets, the checkout, files nodeimage did not make)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nodeimage.outputs import MARKER

REPO = Path(__file__).resolve().parents[2]


def invoke(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=120, stdin=subprocess.DEVNULL)  # fmt: skip


def _root(tmp_path: Path) -> Path:
    """An output root as builds leave it: marked, a build, a base image, a cluster, a file of the user's."""
    root = tmp_path / "out"
    (root / "k8s-1.17").mkdir(parents=True)
    (root / MARKER).write_text("made by nodeimage\n")
    (root / "k8s-1.17" / "build-manifest.json").write_text("{}")
    (root / "k8s-1.17" / "node.qcow2").write_bytes(b"x")
    (root / "base").mkdir()
    (root / "base" / "debian-bookworm-amd64.qcow2").write_bytes(b"x")
    (root / "clusters" / "prod").mkdir(parents=True)
    (root / "clusters" / "prod" / "ca.key").write_text("secret")
    (root / "notes.txt").write_text("mine")
    return root


def test_clean_removes_builds_and_keeps_cluster_secrets_and_user_files(tmp_path: Path) -> None:
    root = _root(tmp_path)
    proc = invoke(["clean", f"--out={root}"])
    assert proc.returncode == 0, proc.stderr
    assert not (root / "k8s-1.17").exists() and not (root / "base").exists()
    assert (root / "clusters" / "prod" / "ca.key").read_text() == "secret"
    assert (root / "notes.txt").read_text() == "mine"
    assert "kept" in proc.stderr and "invoke down --purge" in proc.stderr


@pytest.mark.parametrize("target", ["checkout", "parent", "unmarked"])
def test_clean_refuses_what_nodeimage_did_not_create(target: str, tmp_path: Path) -> None:
    unmarked = tmp_path / "downloads"
    (unmarked / "k8s-1.17").mkdir(parents=True)
    (unmarked / "k8s-1.17" / "build-manifest.json").write_text("{}")
    out = {"checkout": str(REPO), "parent": str(REPO.parent), "unmarked": str(unmarked)}[target]
    before = sorted(p.name for p in Path(out).iterdir())
    proc = invoke(["clean", f"--out={out}"])
    assert proc.returncode == 1
    assert proc.stderr.count("error:") == 1 and "refusing to clean" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in Path(out).iterdir()) == before


def test_a_build_creates_and_marks_its_output_root_but_not_an_existing_directory(tmp_path: Path) -> None:
    from nodeimage.config import check_writable_dir

    fresh = tmp_path / "new" / "out"
    check_writable_dir(fresh, "output directory", output_root=True)
    assert (fresh / MARKER).is_file()
    existing = tmp_path / "existing"
    existing.mkdir()
    check_writable_dir(existing, "output directory", output_root=True)
    assert not (existing / MARKER).exists()


def test_the_work_directory_of_a_running_build_is_kept(tmp_path: Path) -> None:
    root = _root(tmp_path)
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        running = root / f".work-k8s-1.17-{sleeper.pid}"
        running.mkdir()
        proc = invoke(["clean", f"--out={root}"])
        assert proc.returncode == 0, proc.stderr
        assert running.is_dir()
    finally:
        sleeper.kill()
        sleeper.wait()


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_a_killed_builds_work_directory_goes_with_its_mounts_and_processes(tmp_path: Path) -> None:
    """What SIGKILL leaves: a mount and a process (here a stand-in for qemu) working in the scratch directory."""
    root = _root(tmp_path)
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = root / f".work-k8s-1.17-{dead.pid}"
    (stale / "mnt").mkdir(parents=True)
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", stale / "mnt"], check=True)
    (stale / "mnt" / "inside").write_text("x")
    orphan = subprocess.Popen(["sleep", "300"], cwd=stale)
    try:
        proc = invoke(["clean", f"--out={root}"])
        assert proc.returncode == 0, proc.stderr
        assert not stale.exists()
        deadline = time.monotonic() + 15
        while orphan.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert orphan.poll() is not None, "the orphan in the stale work directory still runs"
        with open("/proc/self/mountinfo") as f:
            assert str(stale) not in f.read()
    finally:
        if orphan.poll() is None:
            orphan.kill()
        subprocess.run(["umount", "--lazy", stale / "mnt"], check=False, capture_output=True)


def test_clean_cache_empties_the_caches_by_name_and_nothing_else(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    for part in ("sha256/ab", "layers/os-x.qcow2", "partial/y.part", "probe/z.json"):
        (cache / part).parent.mkdir(parents=True, exist_ok=True)
        (cache / part).write_text("x")
    (cache / "my-notes.txt").write_text("mine")
    root = _root(tmp_path)
    proc = invoke(["clean", f"--out={root}", "--cache"], env={"NODEIMAGE_CACHE": str(cache)})
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in cache.iterdir()) == ["my-notes.txt"]
