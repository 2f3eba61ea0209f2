"""One error per fault: bad paths and filesystem faults on the user's paths, over the build-side tasks.

Each row runs a task from the command line with one fault and asserts: exit code 1, exactly one ``error:``
line naming the path, no traceback, and nothing written where the task was pointed (the seed, up and down
tasks have their own table in test_cli_faults_cluster.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mounting a read-only or a full tmpfs needs root")


@pytest.fixture
def places(tmp_path: Path) -> Iterator[dict[str, Path]]:
    """A small qcow2, a directory, a missing path, and (as root) a read-only and a full filesystem."""
    image = tmp_path / "node.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "256M"], check=True)
    subprocess.run(["qemu-io", "-c", "write -P 0x5a 0 64M", str(image)], check=True, capture_output=True)
    p = {"image": image, "dir": tmp_path / "a-dir", "missing": tmp_path / "missing", "file": tmp_path / "a-file"}
    p["dir"].mkdir()
    p["file"].write_text("not a directory\n")
    mounts = []
    if os.geteuid() == 0:
        for name, opts in (("ro", "ro,size=1m"), ("full", "size=256k")):
            point = tmp_path / name
            point.mkdir()
            subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(point)], check=True)
            mounts.append(point)
            p[name] = point
    try:
        yield p
    finally:
        for point in mounts:
            subprocess.run(["umount", "--lazy", str(point)], check=False)


def listing(path: Path) -> list[str]:
    return sorted(str(p.relative_to(path)) for p in path.rglob("*")) if path.is_dir() else []


CASES = [
    # (id, args with {placeholders}, text the one error must contain, directory that must stay as it was)
    ("ova-image-missing", ["ova", "--image={missing}", "--out={dir}/n.ova"], "{missing} does not exist", "dir"),
    ("ova-image-is-dir", ["ova", "--image={dir}", "--out={dir}/n.ova"], "{dir} is a directory", "dir"),
    ("ova-out-is-dir", ["ova", "--image={image}", "--out={dir}"], "the OVA {dir} is a directory", "dir"),
    ("ova-out-under-file", ["ova", "--image={image}", "--out={file}/n.ova"], "{file} is not", None),
    ("ova-cpus-not-int", ["ova", "--image={image}", "--cpus=abc"], "--cpus: 'abc' is not a whole number", None),
    ("ova-memory-too-small", ["ova", "--image={image}", "--memory=12"], "--memory: '12' is not a whole number", None),
    ("lock-is-dir", ["build", "--lock-file={dir}"], "the lock file {dir} is a directory", "dir"),
    ("lock-missing", ["fetch", "--lock-file={missing}"], "the lock file {missing} does not exist", None),
    ("lock-task-lock-is-dir", ["lock", "--lock-file={dir}"], "the lock file {dir} is a directory", "dir"),
    ("build-out-under-file", ["build", "--profile={profile}", "--lock-file={lock}", "--out={file}/out"],
     "output directory {file}/out is not writable", None),
    ("verify-missing", ["verify", "--build-dir={missing}"], "no build-manifest.json in {missing}", None),
    ("base-epoch-not-int", ["base", "--epoch=yesterday"], "--epoch: 'yesterday' is not a whole number", None),
    ("base-out-under-file", ["base", "--out={file}/base"], "the base image directory {file}/base is not writable",
     None),
    ("profile-is-dir", ["fetch", "--profile={dir}"], "{dir}", "dir"),
]
ROOT_CASES = [
    ("ova-out-read-only", ["ova", "--image={image}", "--out={ro}/n.ova"], "the OVA's directory {ro} is not writable",
     "ro"),
    ("ova-out-full", ["ova", "--image={image}", "--out={full}/n.ova"], "is there space in {full}?", "full"),
    ("build-out-read-only", ["build", "--profile={profile}", "--lock-file={lock}", "--out={ro}/out"],
     "output directory {ro}/out is not writable", "ro"),
    ("fetch-cache-read-only", ["fetch", "--profile={profile}", "--lock-file={lock}", "--mirror={mirror}"],
     "{ro}/partial: Read-only file system", "ro"),
]


def _run(case: tuple, places: dict[str, Path], tmp_path: Path, standins: tuple[Path, Path]) -> None:
    _, args, expected, keep = case
    values = {**{k: str(v) for k, v in places.items()}, "profile": "k8s-1.17-debian12",
              "lock": str(standins[0]), "mirror": str(standins[1])}  # fmt: skip
    cache = places["ro"] if "cache" in case[0] else tmp_path / "cache"
    env = {**os.environ, "NODEIMAGE_CACHE": str(cache)}
    before = listing(places[keep]) if keep else None
    proc = subprocess.run([sys.executable, "-m", "invoke", *(a.format(**values) for a in args)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)  # fmt: skip
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stderr.count("error:") == 1, proc.stderr
    assert expected.format(**values) in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    if keep:
        assert listing(places[keep]) == before, "something was left behind"


@pytest.fixture(scope="module")
def standins(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from tests.standins.make_standins import make_standins

    return make_standins(REPO / "artifacts.lock.yaml", tmp_path_factory.mktemp("standins"))


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_fault(case: tuple, places: dict[str, Path], tmp_path: Path, standins: tuple[Path, Path]) -> None:
    _run(case, places, tmp_path, standins)


@needs_root
@pytest.mark.parametrize("case", ROOT_CASES, ids=[c[0] for c in ROOT_CASES])
def test_filesystem_fault(case: tuple, places: dict[str, Path], tmp_path: Path, standins: tuple[Path, Path]) -> None:
    _run(case, places, tmp_path, standins)
