"""The containerDisk read by real OCI tools: skopeo (inspect, copy to an OCI layout and through a real registry,
the README's push recipe) and umoci (unpacks the layer as a runtime would, ownership and mode included); and
`invoke verify` / `invoke repro` on build directories holding one.

Each reader must find the qcow2's own bytes at /disk/<name>, and qemu-img must see in them what KubeVirt's
virt-launcher accepts: a qcow2 without a backing file (kubevirt/kubevirt@v1.9.0 pkg/os/disk/validation.go:15-35).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import random
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

from nodeimage.formats.containerdisk import CONTAINERDISK, DISK_GID, DISK_MODE, DISK_UID, write_containerdisk
from nodeimage.log import NodeimageError
from nodeimage.repro import compare_builds
from nodeimage.verify import MANIFEST_NAME, verify_build
from tests.standins.registry import running_registry

EPOCH = 1609459200
DISK = "nodeimage-k8s-1.36.qcow2"
TAG = "k8s-1.36-v1.36.4"

needs_skopeo = pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed (Debian: skopeo)")
needs_qemu_img = pytest.mark.skipif(shutil.which("qemu-img") is None, reason="qemu-img is not installed")
pytestmark = [needs_qemu_img]


def sh(*args: str | Path) -> str:
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, f"{args}: {proc.stdout}{proc.stderr}"
    return proc.stdout


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def make_qcow2(path: Path, seed: int) -> Path:
    raw = path.with_suffix(".raw")
    raw.write_bytes(random.Random(seed).randbytes(3 * 1024 * 1024 + 4096))
    sh("qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", raw, path)
    raw.unlink()
    return path


@pytest.fixture(scope="module")
def qcow2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_qcow2(tmp_path_factory.mktemp("img") / "node.qcow2", seed=3)


@pytest.fixture(scope="module")
def archive(qcow2: Path) -> tuple[Path, dict[str, str]]:
    out = qcow2.parent / "node.containerdisk.tar"
    w = write_containerdisk(qcow2, out, disk=DISK, tag=TAG, epoch=EPOCH)
    return out, {"manifest": w.manifest_digest, "layer": w.layer_digest, "config": w.config_digest}


def read_layout_disk(layout: Path, tag: str) -> tuple[bytes, tarfile.TarInfo, str, str]:
    """From an OCI layout a tool wrote: the disk's bytes and header, the layer's media type and its diff_id
    (the digest of the uncompressed layer, whatever compression the tool chose)."""
    index = json.loads((layout / "index.json").read_text())
    (desc,) = [
        d for d in index["manifests"] if d.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag
    ]
    blobs = layout / "blobs" / "sha256"
    manifest = json.loads((blobs / desc["digest"][7:]).read_bytes())
    (layer,) = manifest["layers"]
    data = (blobs / layer["digest"][7:]).read_bytes()
    assert "sha256:" + hashlib.sha256(data).hexdigest() == layer["digest"]
    if layer["mediaType"].endswith("+gzip"):
        data = gzip.decompress(data)
    with tarfile.open(fileobj=io.BytesIO(data)) as tf:
        (entry,) = [m for m in tf.getmembers() if m.isreg()]
        assert entry.name == f"disk/{DISK}"
        content = tf.extractfile(entry).read()  # type: ignore[union-attr]
    return content, entry, layer["mediaType"], "sha256:" + hashlib.sha256(data).hexdigest()


def assert_kubevirt_accepts(disk_bytes: bytes, tmp_path: Path) -> None:
    path = tmp_path / "extracted.qcow2"
    path.write_bytes(disk_bytes)
    info = json.loads(sh("qemu-img", "info", "--output", "json", path))
    assert info["format"] == "qcow2"
    assert "backing-filename" not in info


@needs_skopeo
def test_skopeo_inspect_reads_the_image(archive: tuple[Path, dict[str, str]]) -> None:
    path, digests = archive
    info = json.loads(sh("skopeo", "inspect", f"oci-archive:{path}"))
    assert info["Digest"] == digests["manifest"]
    assert (info["Architecture"], info["Os"], info["Created"]) == ("amd64", "linux", "2021-01-01T00:00:00Z")
    assert info["Layers"] == [digests["layer"]]
    raw = subprocess.run(["skopeo", "inspect", "--raw", f"oci-archive:{path}:{TAG}"], capture_output=True, check=True)
    assert "sha256:" + hashlib.sha256(raw.stdout).hexdigest() == digests["manifest"]
    config = json.loads(sh("skopeo", "inspect", "--config", f"oci-archive:{path}"))
    assert config["rootfs"]["diff_ids"] == [digests["layer"]]


@needs_skopeo
@pytest.mark.parametrize("preserve", [False, True], ids=["recompressed", "preserve-digests"])
def test_skopeo_copies_it_to_an_oci_layout_with_the_disk_intact(
    archive: tuple[Path, dict[str, str]], qcow2: Path, tmp_path: Path, preserve: bool
) -> None:
    path, digests = archive
    flags = ["--preserve-digests"] if preserve else []
    sh("skopeo", "copy", "--quiet", *flags, f"oci-archive:{path}", f"oci:{tmp_path / 'layout'}:{TAG}")
    content, entry, media_type, diff_id = read_layout_disk(tmp_path / "layout", TAG)
    assert diff_id == digests["layer"]  # the same layer, compressed or not
    assert (entry.uid, entry.gid, entry.mode) == (DISK_UID, DISK_GID, DISK_MODE)
    assert content == qcow2.read_bytes()
    if preserve:
        assert media_type == "application/vnd.oci.image.layer.v1.tar"
    assert_kubevirt_accepts(content, tmp_path)


@needs_skopeo
@pytest.mark.skipif(shutil.which("umoci") is None, reason="umoci is not installed (Debian: umoci)")
@pytest.mark.skipif(os.geteuid() != 0, reason="umoci applies the layer's owners only as root")
def test_umoci_unpacks_the_disk_owned_by_qemu_and_read_only(
    archive: tuple[Path, dict[str, str]], qcow2: Path, tmp_path: Path
) -> None:
    path, _ = archive
    sh("skopeo", "copy", "--quiet", f"oci-archive:{path}", f"oci:{tmp_path / 'layout'}:{TAG}")
    sh("umoci", "unpack", "--image", f"{tmp_path / 'layout'}:{TAG}", tmp_path / "bundle")
    disk_dir = tmp_path / "bundle" / "rootfs" / "disk"
    assert [p.name for p in disk_dir.iterdir()] == [DISK]  # KubeVirt wants exactly one file in /disk
    st = (disk_dir / DISK).stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (DISK_UID, DISK_GID, DISK_MODE)
    assert sha(disk_dir / DISK) == sha(qcow2)


@needs_skopeo
@pytest.mark.skipif(shutil.which("docker-registry") is None, reason="docker-registry is not installed")
@pytest.mark.parametrize("preserve", [False, True], ids=["gzip-in-transit", "preserve-digests"])
def test_the_readme_push_recipe_reaches_a_registry_and_back(
    archive: tuple[Path, dict[str, str]], qcow2: Path, tmp_path: Path, preserve: bool
) -> None:
    path, digests = archive
    flags = ["--preserve-digests"] if preserve else []
    with running_registry(tmp_path / "registry") as url:
        ref = f"docker://{url.removeprefix('http://')}/nodeimage/node:{TAG}"
        # README: skopeo copy [--preserve-digests] oci-archive:node.containerdisk.tar docker://REGISTRY/IMAGE:TAG
        sh("skopeo", "copy", "--quiet", *flags, "--dest-tls-verify=false", f"oci-archive:{path}", ref)
        pushed = json.loads(sh("skopeo", "inspect", "--tls-verify=false", ref))
        raw = json.loads(sh("skopeo", "inspect", "--tls-verify=false", "--raw", ref))
        config = json.loads(sh("skopeo", "inspect", "--tls-verify=false", "--config", ref))
        sh("skopeo", "copy", "--quiet", "--src-tls-verify=false", ref, f"oci:{tmp_path / 'pulled'}:{TAG}")
    assert config["rootfs"]["diff_ids"] == [digests["layer"]]
    if preserve:  # the registry serves the build's own, reproducible digest
        assert pushed["Digest"] == digests["manifest"]
    else:  # skopeo compressed the layer on the way: another digest, the same layer content
        assert raw["layers"][0]["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
        assert pushed["Digest"] != digests["manifest"]
    content, entry, _, diff_id = read_layout_disk(tmp_path / "pulled", TAG)
    assert diff_id == digests["layer"]
    assert (entry.uid, entry.gid, entry.mode) == (DISK_UID, DISK_GID, DISK_MODE)
    assert content == qcow2.read_bytes()


def build_dir(where: Path, qcow2: Path, *, disk_in_archive: Path, epoch: int = EPOCH) -> Path:
    """A build directory as `invoke build` publishes it: the outputs and a manifest recording them."""
    where.mkdir(parents=True)
    shutil.copyfile(qcow2, where / "node.qcow2")
    write_containerdisk(disk_in_archive, where / CONTAINERDISK.filename, disk=DISK, tag=TAG, epoch=epoch)
    outputs = [
        {"path": name, "format": fmt, "sha256": sha(where / name), "size": (where / name).stat().st_size}
        for name, fmt in (("node.qcow2", "qcow2"), (CONTAINERDISK.filename, "containerdisk"))
    ]
    (where / MANIFEST_NAME).write_text(json.dumps({"profile": "k8s-1.36", "outputs": outputs}))
    return where


def test_verify_accepts_a_build_whose_containerdisk_holds_its_qcow2(qcow2: Path, tmp_path: Path) -> None:
    d = build_dir(tmp_path / "build", qcow2, disk_in_archive=qcow2)
    assert [o.format for o in verify_build(d)] == ["qcow2", "containerdisk"]


def test_verify_rejects_a_containerdisk_holding_another_disk(qcow2: Path, tmp_path: Path) -> None:
    other = make_qcow2(tmp_path / "other.qcow2", seed=4)
    d = build_dir(tmp_path / "build", qcow2, disk_in_archive=other)
    with pytest.raises(NodeimageError) as exc:
        verify_build(d)
    assert f"/disk/{DISK} has sha256 {sha(other)}" in exc.value.message
    assert sha(qcow2) in exc.value.message


def test_repro_explains_a_containerdisk_that_differs_only_in_its_epoch(qcow2: Path, tmp_path: Path) -> None:
    a = build_dir(tmp_path / "a", qcow2, disk_in_archive=qcow2)
    b = build_dir(tmp_path / "b", qcow2, disk_in_archive=qcow2, epoch=EPOCH + 3600)
    report = compare_builds(a, b, scratch=tmp_path)
    assert not report.identical
    notes = report.notes[CONTAINERDISK.filename]
    assert any(n.startswith("config: created:") for n in notes), notes
    assert any("the disk inside is the same" in n for n in notes), notes
    assert "identical  node.qcow2" in report.render()
