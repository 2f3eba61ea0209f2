"""Container images with real parts: a real registry on the loopback (docker-registry), skopeo, a real store.

The images are the small stand-ins of tests/standins/make_standins.py, under the real names and tags. These
tests show what `invoke lock` records for a tag, that a build refuses a tampered image before anything is
baked, and that a real reader (skopeo against the baked containers-storage) lists what the lock pins.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from nodeimage.images import Mirror, bake, list_store, stage_images
from nodeimage.lock import load_lock
from nodeimage.log import NodeimageError
from tests.standins.make_standins import images_dir, make_standins, standin_image
from tests.standins.registry import push_images, running_registry

REPO = Path(__file__).resolve().parents[2]
PAUSE = "registry.k8s.io/pause:3.1"
PLATFORM = "linux/amd64"

pytestmark = pytest.mark.skipif(
    shutil.which("skopeo") is None or shutil.which("docker-registry") is None,
    reason="skopeo and docker-registry are needed (make deps)",
)


@pytest.fixture(scope="module")
def standins(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The stand-in lock and its OCI-layout image directory."""
    lock, _ = make_standins(REPO / "artifacts.lock.yaml", tmp_path_factory.mktemp("standins"))
    return lock, images_dir(lock)


@pytest.fixture(scope="module")
def registry(standins: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory):
    with running_registry(tmp_path_factory.mktemp("registry")) as url:
        push_images(standins[1], url)
        yield url


def invoke(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NODEIMAGE_CACHE": str(tmp_path / "cache")}
    for name in ("NODEIMAGE_MIRROR", "NODEIMAGE_REGISTRY_MIRROR"):
        env.pop(name, None)
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300, stdin=subprocess.DEVNULL)  # fmt: skip


def _unpinned_copy(lock: Path, tmp_path: Path, refs: list[str]) -> Path:
    data = yaml.safe_load(lock.read_text())
    for ref in refs:
        data["images"][ref]["platforms"][PLATFORM].update(digest=None, size=None)
    out = tmp_path / "lock.yaml"
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out


@pytest.mark.parametrize("where", ["registry", "oci-directory"])
def test_lock_records_the_digest_the_mirror_serves_for_the_tag(
    where: str, standins: tuple[Path, Path], registry: str, tmp_path: Path
) -> None:
    lock, images = standins
    expected = load_lock(lock).image(PAUSE, PLATFORM)
    unpinned = _unpinned_copy(lock, tmp_path, [PAUSE])
    mirror = registry if where == "registry" else str(images)
    proc = invoke(["lock", "--images-only", f"--names={PAUSE}", f"--registry-mirror={mirror}",
                   f"--lock-file={unpinned}"], tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    got = load_lock(unpinned).image(PAUSE, PLATFORM)
    assert (got.digest, got.size, got.digest_source) == (expected.digest, expected.size, "trust-on-first-use")
    assert expected.digest in proc.stderr + proc.stdout


def test_refresh_refuses_a_published_digest_that_changed(standins: tuple[Path, Path], registry: str,
                                                         tmp_path: Path) -> None:  # fmt: skip
    lock, _ = standins
    data = yaml.safe_load(lock.read_text())
    data["images"][PAUSE]["platforms"][PLATFORM].update(digest="sha256:" + "1" * 64, digest_source="upstream")
    changed = tmp_path / "lock.yaml"
    changed.write_text(yaml.safe_dump(data, sort_keys=False))
    before = changed.read_bytes()
    proc = invoke(["lock", "--images-only", "--refresh", f"--names={PAUSE}", f"--registry-mirror={registry}",
                   f"--lock-file={changed}"], tmp_path)  # fmt: skip
    assert proc.returncode == 1
    assert f"the lock pins sha256:{'1' * 64} (upstream)" in proc.stderr
    assert changed.read_bytes() == before


def test_a_tag_that_moved_on_the_mirror_stops_the_build_before_anything_is_baked(
    standins: tuple[Path, Path], tmp_path: Path
) -> None:
    """An OCI-directory mirror serves by tag: an image that is not the pinned one is refused by its digest."""
    lock, images = standins
    tampered = tmp_path / "images"
    shutil.copytree(images, tampered)
    layout = tampered / "registry.k8s.io" / "pause"
    shutil.rmtree(layout)
    standin_image("registry.k8s.io/pause:3.1-tampered", layout)  # other bytes under the same name
    index = json.loads((layout / "index.json").read_text())
    index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"] = "3.1"
    (layout / "index.json").write_text(json.dumps(index))
    entries = load_lock(lock).images
    with pytest.raises(NodeimageError, match=r"digest mismatch for the container image registry.k8s.io/pause:3.1"):
        stage_images(entries, tmp_path / "staging", Mirror(path=tampered))
    pause = load_lock(lock).image(PAUSE, PLATFORM)
    assert not (tmp_path / "staging" / pause.digest.replace(":", "-")).exists()  # a bad copy is never kept
    assert not list((tmp_path / "staging").glob(".*part*"))


def test_staged_images_are_reused_by_digest(standins: tuple[Path, Path], tmp_path: Path) -> None:
    """The staging area is a cache: a second build copies nothing, and a copy that no longer matches is redone."""
    lock, images = standins
    entries = load_lock(lock).images
    first = stage_images(entries, tmp_path / "staging", Mirror(path=images))
    stamp = {ref: (p / "index.json").stat().st_mtime_ns for ref, p in first.items()}
    again = stage_images(entries, tmp_path / "staging", Mirror(path=images))
    assert again == first
    assert {ref: (p / "index.json").stat().st_mtime_ns for ref, p in again.items()} == stamp
    broken = first[PAUSE]
    (broken / "index.json").write_text('{"schemaVersion": 2, "manifests": []}')  # a damaged cache entry
    redone = stage_images(entries, tmp_path / "staging", Mirror(path=images))
    assert redone[PAUSE] == broken
    assert (broken / "index.json").stat().st_mtime_ns != stamp[PAUSE]
    assert json.loads((broken / "index.json").read_text())["manifests"][0]["digest"] == (
        load_lock(lock).image(PAUSE, PLATFORM).digest
    )


def test_a_build_with_a_tampered_image_fails_before_the_base_image(standins: tuple[Path, Path], registry: str,
                                                                   tmp_path: Path) -> None:  # fmt: skip
    """The whole build, from the command line: the image step fails, nothing is published, no VM booted."""
    lock, _ = standins
    data = yaml.safe_load(lock.read_text())
    wrong = "sha256:" + hashlib.sha256(b"not the pause image").hexdigest()
    data["images"][PAUSE]["platforms"][PLATFORM]["digest"] = wrong
    bad = tmp_path / "lock.yaml"
    bad.write_text(yaml.safe_dump(data, sort_keys=False))
    out = tmp_path / "out"
    proc = invoke(["build", "--profile=k8s-1.17-debian12", f"--lock-file={bad}", f"--mirror={lock.parent / 'mirror'}",
                   f"--registry-mirror={registry}", f"--out={out}"], tmp_path)  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert f"cannot copy the container image {PAUSE} pinned at {wrong}" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "base image" not in proc.stderr and "packer" not in proc.stderr
    assert not (out / "k8s-1.17-debian12").exists()
    assert not list(out.glob(".work-*"))


@pytest.mark.skipif(os.geteuid() != 0, reason="baking runs skopeo in a mount namespace of its own (root)")
def test_baked_store_is_read_back_by_skopeo_with_the_pinned_digests(standins: tuple[Path, Path],
                                                                    tmp_path: Path) -> None:  # fmt: skip
    lock, images = standins
    entries = load_lock(lock).images
    staged = stage_images(entries, tmp_path / "staging", Mirror(path=images))
    trees = []
    for side in ("a", "b"):
        tree = tmp_path / side
        tree.mkdir()
        bake(tree, entries, staged, epoch=1609459200)
        trees.append(tree)
    store = trees[0] / "var/lib/containers/storage"
    listed = {name: image["digest"] for image in list_store(store) for name in image["names"]}  # type: ignore[union-attr]
    assert listed == {e.ref: e.digest for e in entries}
    runroot = tmp_path / "runroot"
    for entry in entries:
        proc = subprocess.run(
            ["unshare", "--mount", "--propagation", "private", "skopeo", "inspect", "--raw",
             f"containers-storage:[overlay@{store}+{runroot}]{entry.ref}"],
            capture_output=True, check=True, timeout=120,
        )  # fmt: skip
        assert "sha256:" + hashlib.sha256(proc.stdout).hexdigest() == entry.digest, entry.ref

    def files(root: Path) -> dict[str, str]:
        out = {}
        for p in sorted(root.rglob("*")):
            rel = p.relative_to(root).as_posix()
            if p.is_symlink():
                out[rel] = "-> " + os.readlink(p)
            elif p.is_file():
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                out[rel] = "dir"
        return out

    before = files(trees[1])
    assert files(trees[0]) == before  # the same images give the same store, byte for byte
