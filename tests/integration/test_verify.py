"""Provenance with real files: verify_build / `invoke verify`, and the SBOM of a real disk."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from nodeimage.log import NodeimageError
from nodeimage.verify import verify_build

ROOT = Path(__file__).resolve().parents[2]
STATUS = """\
Package: base-files
Status: install ok installed
Architecture: amd64
Version: 12.4+deb12u5
Maintainer: Santiago Vila <sanvila@debian.org>

Package: cri-o-standin
Status: install ok installed
Architecture: amd64
Version: 1.17.2
"""


def _record(path: Path, fmt: str) -> dict[str, object]:
    data = path.read_bytes()
    return {"path": path.name, "format": fmt, "sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


@pytest.fixture
def build_dir(tmp_path: Path) -> Path:
    d = tmp_path / "k8s-1.17"
    d.mkdir()
    (d / "node.qcow2").write_bytes(os.urandom(256 * 1024))
    (d / "node.ova").write_bytes(os.urandom(64 * 1024))
    manifest = {
        "nodeimage_version": "0.1.0",
        "profile": "k8s-1.17",
        "arch": "amd64",
        "inputs": [],
        "outputs": [_record(d / "node.qcow2", "qcow2"), _record(d / "node.ova", "ova")],
    }
    (d / "build-manifest.json").write_text(json.dumps(manifest))
    return d


def _invoke_verify(build_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "invoke", "verify", "--build-dir", str(build_dir)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


def test_intact_build_verifies(build_dir: Path) -> None:
    verify_build(build_dir)
    proc = _invoke_verify(build_dir)
    assert proc.returncode == 0, proc.stderr
    assert "every output matches" in proc.stdout


def test_one_flipped_byte_is_named_with_both_digests(build_dir: Path) -> None:
    image = build_dir / "node.qcow2"
    expected = hashlib.sha256(image.read_bytes()).hexdigest()
    with image.open("r+b") as fh:
        fh.seek(1000)
        byte = fh.read(1)
        fh.seek(1000)
        fh.write(bytes([byte[0] ^ 1]))
    actual = hashlib.sha256(image.read_bytes()).hexdigest()
    with pytest.raises(NodeimageError) as err:
        verify_build(build_dir)
    assert f"{image}: sha256 {actual}, expected {expected}" in str(err.value)
    proc = _invoke_verify(build_dir)
    assert proc.returncode == 1
    assert "node.qcow2: sha256" in proc.stderr and expected in proc.stderr


def test_missing_and_truncated_outputs_are_all_reported(build_dir: Path) -> None:
    (build_dir / "node.qcow2").unlink()
    ova = build_dir / "node.ova"
    ova.write_bytes(ova.read_bytes()[:100])
    with pytest.raises(NodeimageError) as err:
        verify_build(build_dir)
    text = str(err.value)
    assert "2 of 2 outputs do not match" in text
    assert "node.qcow2: missing" in text
    assert f"{ova}: size 100 bytes, expected {64 * 1024}" in text


@pytest.mark.parametrize(
    ("outputs", "message"),
    [
        ([{"path": "../etc/passwd", "sha256": "0" * 64, "size": 1}], "must be a relative path inside"),
        ([{"path": "/etc/passwd", "sha256": "0" * 64, "size": 1}], "must be a relative path inside"),
        ([{"path": "node.qcow2", "sha256": "ABC", "size": 1}], "sha256 must be 64 lowercase hex"),
        ([{"path": "node.qcow2", "sha256": "0" * 64, "size": "1"}], "size must be a byte count"),
        ([], "'outputs' must be a non-empty list"),
    ],
)
def test_malformed_manifest_is_rejected(tmp_path: Path, outputs: list[object], message: str) -> None:
    (tmp_path / "build-manifest.json").write_text(json.dumps({"outputs": outputs}))
    with pytest.raises(NodeimageError, match=message):
        verify_build(tmp_path)


def test_missing_manifest_names_the_directory(tmp_path: Path) -> None:
    with pytest.raises(NodeimageError, match=f"no build-manifest.json in {tmp_path}"):
        verify_build(tmp_path)


def test_sbom_of_a_real_disk(tmp_path: Path) -> None:
    """write_sbom reads dpkg's status out of a real partitioned ext4 qcow2 (nodeimage.disk, debugfs)."""
    for prog in ("qemu-img", "mkfs.ext4", "debugfs", "grub-mkimage"):
        if shutil.which(prog) is None:
            pytest.skip(f"{prog} not installed (make deps)")
    from nodeimage.disk import tree_to_disk
    from nodeimage.lock import load_lock
    from nodeimage.sbom import write_sbom

    fs_uuid = "0b7d9c1e-4a51-4a1c-9d0e-6e6f64650001"
    tree = tmp_path / "tree"
    (tree / "var/lib/dpkg").mkdir(parents=True)
    (tree / "var/lib/dpkg/status").write_text(STATUS)
    (tree / "usr/lib").mkdir(parents=True)
    (tree / "usr/lib/os-release").write_text('ID=debian\nVERSION_ID="12"\nPRETTY_NAME="Debian GNU/Linux 12"\n')
    (tree / "etc").mkdir()
    (tree / "etc/os-release").symlink_to("../usr/lib/os-release")
    (tree / "boot/grub").mkdir(parents=True)  # a grub.cfg naming the UUID: no kernel needed for this disk
    (tree / "boot/grub/grub.cfg").write_text(f"search --fs-uuid --set=root {fs_uuid}\n")
    image = tmp_path / "node.qcow2"
    tree_to_disk(tree, image, size_gib=1, fs_uuid=fs_uuid, hash_seed=fs_uuid, epoch=1609459200)

    entries = load_lock(ROOT / "artifacts.lock.yaml").entries
    out = tmp_path / "node.spdx.json"
    write_sbom(image, entries, out, profile="k8s-1.17", epoch=1609459200)
    doc = json.loads(out.read_text())
    names = {p["name"]: p for p in doc["packages"]}
    assert names["base-files"]["versionInfo"] == "12.4+deb12u5"
    assert names["cri-o-standin"]["versionInfo"] == "1.17.2"
    digest = hashlib.sha256(image.read_bytes()).hexdigest()
    assert doc["documentNamespace"].endswith(f"/{digest}")
    assert names["nodeimage-k8s-1.17"]["checksums"][0]["checksumValue"] == digest
    assert {e.name for e in entries} <= set(names)
    first = out.read_bytes()
    write_sbom(image, entries, out, profile="k8s-1.17", epoch=1609459200)
    assert out.read_bytes() == first
