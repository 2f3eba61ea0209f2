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


def _write_manifest(d: Path, outputs: list[dict[str, object]]) -> None:
    manifest = {"nodeimage_version": "0.1.0", "profile": "k8s-1.17", "arch": "amd64", "inputs": [], "outputs": outputs}
    (d / "build-manifest.json").write_text(json.dumps(manifest))


def _sbom_for(digest: str) -> str:
    from nodeimage.sbom import build_sbom

    doc = build_sbom(
        image_name="node.qcow2", image_sha256=digest, packages=[], lock_entries=[], profile="k8s-1.17", epoch=0
    )
    return json.dumps(doc)


@pytest.fixture
def build_dir(tmp_path: Path) -> Path:
    """A build directory as `invoke build` leaves it: qcow2, OVA, SBOM and the manifest listing them."""
    if shutil.which("qemu-img") is None:
        pytest.skip("qemu-img not installed (make deps)")
    from nodeimage.ova import write_ova

    d = tmp_path / "k8s-1.17"
    d.mkdir()
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", d / "node.qcow2", "64M"], check=True)
    write_ova(d / "node.qcow2", d / "node.ova", name="n", cpus=1, memory_mib=512, product={"profile": "p"}, epoch=0)
    (d / "node.spdx.json").write_text(_sbom_for(hashlib.sha256((d / "node.qcow2").read_bytes()).hexdigest()))
    outputs = [
        _record(d / "node.qcow2", "qcow2"),
        _record(d / "node.ova", "ova"),
        _record(d / "node.spdx.json", "spdx-json"),
    ]
    _write_manifest(d, outputs)
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


def test_a_failed_verify_never_says_it_succeeded(build_dir: Path) -> None:
    """The verdict comes after every check: no ✓ for the step when an output is damaged."""
    (build_dir / "node.qcow2").write_bytes(b"damaged")
    proc = _invoke_verify(build_dir)
    assert proc.returncode == 1
    assert "✓ Verifying" not in proc.stderr and "✗ Verifying" in proc.stderr
    assert proc.stderr.index("✗ Verifying") < proc.stderr.index("error:")
    assert "every output matches" not in proc.stdout


def test_missing_and_truncated_outputs_are_all_reported(build_dir: Path) -> None:
    (build_dir / "node.qcow2").unlink()
    ova = build_dir / "node.ova"
    ova.write_bytes(ova.read_bytes()[:100])
    with pytest.raises(NodeimageError) as err:
        verify_build(build_dir)
    text = str(err.value)
    assert "2 problems with the 3 outputs of" in text
    assert "node.qcow2: missing" in text
    assert f"{ova}: size 100 bytes, expected " in text


def test_an_ova_whose_mf_disagrees_with_its_disk_is_reported(build_dir: Path) -> None:
    """The manifest digest matches (the build recorded a broken OVA), but the OVA's own .mf does not."""
    ova = build_dir / "node.ova"
    data = bytearray(ova.read_bytes())
    key = b"SHA256(n-disk1.vmdk)= "
    at = data.index(key) + len(key)
    data[at : at + 1] = b"0" if data[at : at + 1] != b"0" else b"1"
    ova.write_bytes(bytes(data))
    outputs = json.loads((build_dir / "build-manifest.json").read_text())["outputs"]
    outputs[1] = _record(ova, "ova")
    _write_manifest(build_dir, outputs)
    with pytest.raises(NodeimageError, match=r"member n-disk1.vmdk has sha256 [0-9a-f]{64}, its .mf says"):
        verify_build(build_dir)


def test_an_sbom_of_another_image_is_reported(build_dir: Path) -> None:
    sbom = build_dir / "node.spdx.json"
    sbom.write_text(_sbom_for("00" * 32))
    outputs = json.loads((build_dir / "build-manifest.json").read_text())["outputs"]
    outputs[2] = _record(sbom, "spdx-json")
    _write_manifest(build_dir, outputs)
    with pytest.raises(NodeimageError, match="describes an image with sha256 .'0000"):
        verify_build(build_dir)


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
    (tree / "boot").mkdir()  # the writer makes grub.cfg boot the newest kernel: a stand-in file is enough
    (tree / "boot/vmlinuz-6.1.0-0-amd64").write_bytes(b"kernel")
    image = tmp_path / "node.qcow2"
    tree_to_disk(tree, image, size_gib=1, fs_uuid=fs_uuid, hash_seed=fs_uuid, epoch=1609459200)

    entries = load_lock(ROOT / "artifacts.lock.yaml").entries
    out = tmp_path / "node.spdx.json"
    write_sbom(image, out, entries=entries, images=(), profile="k8s-1.17", epoch=1609459200)
    doc = json.loads(out.read_text())
    names = {p["name"]: p for p in doc["packages"]}
    assert names["base-files"]["versionInfo"] == "12.4+deb12u5"
    assert names["cri-o-standin"]["versionInfo"] == "1.17.2"
    digest = hashlib.sha256(image.read_bytes()).hexdigest()
    assert doc["documentNamespace"].endswith(f"/{digest}")
    assert names["nodeimage-k8s-1.17"]["checksums"][0]["checksumValue"] == digest
    assert {e.name for e in entries} <= set(names)
    first = out.read_bytes()
    write_sbom(image, out, entries=entries, images=(), profile="k8s-1.17", epoch=1609459200)
    assert out.read_bytes() == first


# --- reproducibility report (nodeimage.repro) --------------------------------------------------------

FS_UUID = "0b7d9c1e-4a51-4a1c-9d0e-6e6f64650002"


def _fake_build(root: Path, side: str, machine_id: str, mode: int) -> Path:
    """A build directory with a real qcow2 and OVA made from a small tree, and its manifest."""
    from nodeimage.disk import tree_to_disk
    from nodeimage.ova import write_ova

    tree = root / f"tree-{side}"
    (tree / "etc").mkdir(parents=True)
    (tree / "boot").mkdir(parents=True)
    (tree / "boot/vmlinuz-6.1.0-0-amd64").write_bytes(b"kernel")
    (tree / "etc/machine-id").write_text(machine_id)
    (tree / "etc/hosts").write_text("127.0.0.1 localhost\n")
    (tree / "etc/hosts").chmod(mode)
    for p in [tree, *tree.rglob("*")]:
        os.utime(p, (1600000000, 1600000000), follow_symlinks=False)
    d = root / side / "k8s-1.17"
    d.mkdir(parents=True)
    tree_to_disk(tree, d / "node.qcow2", size_gib=1, fs_uuid=FS_UUID, hash_seed=FS_UUID, epoch=1609459200)
    write_ova(d / "node.qcow2", d / "node.ova", name="n", cpus=2, memory_mib=2048, product={"profile": "p"}, epoch=1)
    outputs = [_record(d / "node.qcow2", "qcow2"), _record(d / "node.ova", "ova")]
    (d / "build-manifest.json").write_text(json.dumps({"profile": "k8s-1.17", "inputs": [], "outputs": outputs}))
    return d


def _need_disk_tools() -> None:
    for prog in ("qemu-img", "mkfs.ext4", "debugfs", "grub-mkimage"):
        if shutil.which(prog) is None:
            pytest.skip(f"{prog} not installed (make deps)")


def test_repro_identical_builds(tmp_path: Path) -> None:
    _need_disk_tools()
    from nodeimage.repro import compare_builds

    a = _fake_build(tmp_path, "a", "0123\n", 0o644)
    b = _fake_build(tmp_path, "b", "0123\n", 0o644)
    report = compare_builds(a, b)
    assert report.identical, report.render()
    assert report.render().endswith("IDENTICAL: every output has the same sha256\n")


@pytest.mark.skipif(os.geteuid() != 0, reason="extracting a disk's files needs root (loop mount)")
def test_repro_names_each_differing_file(tmp_path: Path) -> None:
    _need_disk_tools()
    from nodeimage.repro import compare_builds

    a = _fake_build(tmp_path, "a", "0123\n", 0o644)
    b = _fake_build(tmp_path, "b", "4567\n", 0o600)
    report = compare_builds(a, b)
    assert not report.identical
    diffs = {d.path: d.changes for d in report.file_diffs["node.qcow2"]}
    assert set(diffs) == {"/etc/machine-id", "/etc/hosts"}, diffs
    assert diffs["/etc/hosts"] == ("mode 0644 != 0600",)
    assert diffs["/etc/machine-id"][0].startswith("content sha256 ")
    text = report.render()
    assert "DIFFERS    node.qcow2 (qcow2)" in text
    assert "DIFFERS    node.ova (ova)" in text
    assert "member n-disk1.vmdk: qemu-img compare says the disk content is different" in text
    assert text.endswith("NOT REPRODUCIBLE\n")
    if shutil.which("diffoscope"):
        assert "-0123" in report.detail["node.qcow2"] and "+4567" in report.detail["node.qcow2"]
    assert not list(tmp_path.glob("a/.nodeimage-repro-*"))  # scratch trees removed


def test_repro_container_only_difference(tmp_path: Path) -> None:
    """Same guest bytes in a differently laid-out qcow2: reported as such, without extracting trees."""
    _need_disk_tools()
    from nodeimage.repro import compare_builds

    a = _fake_build(tmp_path, "a", "0123\n", 0o644)
    b = tmp_path / "b" / "k8s-1.17"
    b.mkdir(parents=True)
    # Compressed clusters: same guest-visible content, different file.
    subprocess.run(["qemu-img", "convert", "-c", "-O", "qcow2", a / "node.qcow2", b / "node.qcow2"], check=True)
    (b / "build-manifest.json").write_text(json.dumps({"outputs": [_record(b / "node.qcow2", "qcow2")]}))
    (a / "build-manifest.json").write_text(json.dumps({"outputs": [_record(a / "node.qcow2", "qcow2")]}))
    report = compare_builds(a, b)
    assert not report.identical
    assert "only the qcow2 container (cluster layout) differs" in report.render()
    assert "node.qcow2" not in report.file_diffs
