"""The containerDisk format: an oci-archive holding the qcow2 at /disk/<name>, the same bytes on every write,
and a check that reads the archive back (index → manifest → config and layer) and names what was tampered with.

The disk here is not a qcow2 (the writer does not look inside it); tests/integration/test_containerdisk.py
writes a real one and reads the archive with skopeo and umoci.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import tarfile
from pathlib import Path

import pytest

from nodeimage import formats
from nodeimage.formats import Recorded
from nodeimage.formats.containerdisk import (
    CONTAINERDISK,
    DISK_MODE,
    DISK_UID,
    check_archive,
    compare_archives,
    write_containerdisk,
)
from nodeimage.log import NodeimageError
from nodeimage.ociarchive import LAYER_MEDIA_TYPE, tar_header
from nodeimage.profiles import parse_formats

EPOCH = 1609459200  # 2021-01-01T00:00:00Z
DISK = "nodeimage-test.qcow2"
TAG = "test-v1.36.4"
# larger than the writer's 4 MiB chunk and not a multiple of 512, so chunking and padding are exercised
SIZE = 4 * 1024 * 1024 + 12345


@pytest.fixture(scope="module")
def disk(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("disk") / "node.qcow2"
    path.write_bytes(random.Random(11).randbytes(SIZE))
    return path


def write(disk: Path, out: Path, *, epoch: int = EPOCH, tag: str = TAG) -> Path:
    write_containerdisk(disk, out, disk=DISK, tag=tag, epoch=epoch, arch="amd64")
    return out


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def blob(tf: tarfile.TarFile, digest: str) -> bytes:
    fh = tf.extractfile(f"blobs/sha256/{digest.removeprefix('sha256:')}")
    assert fh is not None
    return fh.read()


def test_archive_is_an_oci_layout_whose_one_image_holds_the_disk(disk: Path, tmp_path: Path) -> None:
    out = write(disk, tmp_path / "cd.tar")
    with tarfile.open(out) as tf:
        names = tf.getnames()
        assert names[:2] == ["blobs", "blobs/sha256"]  # tarfile drops the trailing slash
        assert names[-2:] == ["index.json", "oci-layout"]
        assert json.loads(tf.extractfile("oci-layout").read()) == {"imageLayoutVersion": "1.0.0"}  # type: ignore[union-attr]
        index = json.loads(tf.extractfile("index.json").read())  # type: ignore[union-attr]
        (desc,) = index["manifests"]
        assert desc["annotations"] == {"org.opencontainers.image.ref.name": TAG}
        assert desc["platform"] == {"architecture": "amd64", "os": "linux"}
        manifest_bytes = blob(tf, desc["digest"])
        assert desc["digest"] == "sha256:" + hashlib.sha256(manifest_bytes).hexdigest()
        assert desc["size"] == len(manifest_bytes)
        manifest = json.loads(manifest_bytes)
        config = json.loads(blob(tf, manifest["config"]["digest"]))
        assert (config["os"], config["architecture"], config["created"]) == ("linux", "amd64", "2021-01-01T00:00:00Z")
        (layer_desc,) = manifest["layers"]
        assert layer_desc["mediaType"] == LAYER_MEDIA_TYPE
        assert config["rootfs"] == {"type": "layers", "diff_ids": [layer_desc["digest"]]}
        layer = blob(tf, layer_desc["digest"])
        assert "sha256:" + hashlib.sha256(layer).hexdigest() == layer_desc["digest"]
        assert len(layer) == layer_desc["size"]
    with tarfile.open(fileobj=io.BytesIO(layer)) as inner:
        entries = inner.getmembers()
        assert [e.name for e in entries] == ["disk", f"disk/{DISK}"]
        d, f = entries
        assert d.isdir() and (d.uid, d.gid, d.mode) == (0, 0, 0o755)
        assert f.isreg() and (f.uid, f.gid, f.mode) == (DISK_UID, 107, DISK_MODE)
        assert inner.extractfile(f).read() == disk.read_bytes()  # type: ignore[union-attr]


def test_every_header_is_fixed_and_plain_ustar(disk: Path, tmp_path: Path) -> None:
    out = write(disk, tmp_path / "cd.tar", epoch=EPOCH + 7)
    with tarfile.open(out) as tf:
        members = tf.getmembers()
        layer_name = next(m.name for m in members if m.size > SIZE)
        layer = tf.extractfile(layer_name).read()  # type: ignore[union-attr]
    with tarfile.open(fileobj=io.BytesIO(layer)) as inner:
        entries = inner.getmembers()
    for m in [*members, *entries]:
        assert m.mtime == EPOCH + 7, m.name
        assert (m.uname, m.gname) == ("", ""), m.name
        assert m.pax_headers == {}, m.name
    assert {(m.uid, m.gid) for m in members} == {(0, 0)}
    assert out.stat().st_size % tarfile.RECORDSIZE == 0


def test_two_writes_are_byte_identical_and_do_not_depend_on_the_disk_files_metadata(disk: Path, tmp_path: Path) -> None:
    a = write(disk, tmp_path / "a.tar")
    os.utime(disk, (EPOCH + 99, EPOCH + 99))
    b = write(disk, tmp_path / "b.tar")
    assert a.read_bytes() == b.read_bytes()


@pytest.mark.parametrize(("change", "value"), [("epoch", EPOCH + 1), ("tag", "other-v1.36.4")])
def test_the_epoch_and_the_tag_reach_the_bytes(disk: Path, tmp_path: Path, change: str, value: object) -> None:
    base = write(disk, tmp_path / "a.tar")
    other = write(disk, tmp_path / "b.tar", **{change: value})  # type: ignore[arg-type]
    assert sha(base) != sha(other)


def test_a_disk_of_8_gib_or_more_gets_a_pax_size_record_and_nothing_else() -> None:
    header = tar_header("blobs/sha256/" + "0" * 64, size=9 * 1024**3, mode=0o644, mtime=EPOCH)
    ti = tarfile.TarInfo.frombuf(header[-tarfile.BLOCKSIZE :], "utf-8", "strict")
    assert len(header) == 3 * tarfile.BLOCKSIZE  # pax header, its record, the ustar header
    records = header[tarfile.BLOCKSIZE : 2 * tarfile.BLOCKSIZE].rstrip(b"\0")
    assert records == f"{len('21 size=9663676416') + 1} size=9663676416\n".encode()
    assert ti.name.endswith("0" * 64)


def test_check_accepts_an_intact_archive(disk: Path, tmp_path: Path) -> None:
    out = write(disk, tmp_path / "cd.tar")
    assert check_archive(out, {sha(disk)}, arch="amd64") == []


def _rewrite(src: Path, dst: Path, name: str, edit: object) -> None:
    """Copy the archive, replacing member ``name``'s content by ``edit(content)`` (same size)."""
    data = bytearray(src.read_bytes())
    with tarfile.open(src) as tf:
        m = tf.getmember(name)
        start = m.offset_data
        content = bytes(data[start : start + m.size])
    new = edit(content)  # type: ignore[operator]
    assert len(new) == len(content)
    data[start : start + m.size] = new
    dst.write_bytes(bytes(data))


def _names(path: Path) -> dict[str, str]:
    with tarfile.open(path) as tf:
        index = json.loads(tf.extractfile("index.json").read())  # type: ignore[union-attr]
        manifest_digest = index["manifests"][0]["digest"]
        manifest = json.loads(blob(tf, manifest_digest))
    return {
        "manifest": "blobs/sha256/" + manifest_digest[7:],
        "config": "blobs/sha256/" + manifest["config"]["digest"][7:],
        "layer": "blobs/sha256/" + manifest["layers"][0]["digest"][7:],
    }


def test_a_tampered_config_blob_is_reported_by_name(disk: Path, tmp_path: Path) -> None:
    good = write(disk, tmp_path / "good.tar")
    bad = tmp_path / "bad.tar"
    config = _names(good)["config"]
    _rewrite(good, bad, config, lambda c: c.replace(b'"amd64"', b'"arm64"'))
    problems = check_archive(bad, {sha(disk)})
    assert any(config in p and "is not its name" in p for p in problems), problems


def test_a_tampered_disk_inside_the_layer_is_reported_twice(disk: Path, tmp_path: Path) -> None:
    good = write(disk, tmp_path / "good.tar")
    bad = tmp_path / "bad.tar"
    layer = _names(good)["layer"]
    # the disk's first byte, right after the layer's two headers
    _rewrite(good, bad, layer, lambda c: c[:1024] + bytes([c[1024] ^ 0xFF]) + c[1025:])
    problems = check_archive(bad, {sha(disk)})
    assert any(layer in p and "is not its name" in p for p in problems), problems
    assert any(f"/disk/{DISK} has sha256" in p for p in problems), problems


def test_check_compares_the_disk_with_the_builds_qcow2(disk: Path, tmp_path: Path) -> None:
    out = write(disk, tmp_path / "cd.tar")
    problems = check_archive(out, {"0" * 64})
    assert problems == [f"{out}: /disk/{DISK} has sha256 {sha(disk)}, the build's qcow2 is {['0' * 64]}"]


def test_check_reports_an_index_that_points_at_a_missing_manifest(disk: Path, tmp_path: Path) -> None:
    good = write(disk, tmp_path / "good.tar")
    bad = tmp_path / "bad.tar"
    manifest = _names(good)["manifest"]
    _rewrite(good, bad, "index.json", lambda c: c.replace(manifest[-64:].encode(), b"f" * 64))
    problems = check_archive(bad, {sha(disk)})
    assert any("which the archive lacks" in p for p in problems), problems


def test_check_rejects_a_file_that_is_not_a_tar(tmp_path: Path) -> None:
    bad = tmp_path / "bad.tar"
    bad.write_bytes(b"not a tar" * 100)
    assert check_archive(bad, {"0" * 64}) != []


def test_format_check_uses_the_manifests_qcow2_digest(disk: Path, tmp_path: Path) -> None:
    out = write(disk, tmp_path / "cd.tar")
    qcow2 = Recorded("node.qcow2", sha(disk), SIZE, "qcow2")
    other = Recorded("node.qcow2", "1" * 64, SIZE, "qcow2")
    assert CONTAINERDISK.check(out, [qcow2], tmp_path) == []
    assert CONTAINERDISK.check(out, [other], tmp_path) != []
    assert CONTAINERDISK.check(out, [], tmp_path) != []


def test_compare_names_the_epoch_as_the_difference(disk: Path, tmp_path: Path) -> None:
    a = write(disk, tmp_path / "a.tar")
    b = write(disk, tmp_path / "b.tar", epoch=EPOCH + 60)
    notes = compare_archives(a, b)
    assert any(n.startswith("config: created:") for n in notes), notes
    assert any("mtime 1609459200 != 1609459260" in n for n in notes), notes
    assert any("the disk inside is the same" in n for n in notes), notes
    assert compare_archives(a, a) == []


def test_compare_says_when_the_disk_itself_differs(disk: Path, tmp_path: Path) -> None:
    other_disk = tmp_path / "other.qcow2"
    other_disk.write_bytes(disk.read_bytes()[:-1] + b"\x00")
    a = write(disk, tmp_path / "a.tar")
    b = write(other_disk, tmp_path / "b.tar")
    notes = compare_archives(a, b)
    assert any("the disk inside differs" in n for n in notes), notes


def test_nothing_is_left_behind_when_the_disk_is_missing(tmp_path: Path) -> None:
    with pytest.raises(NodeimageError, match="disk image not found"):
        write(tmp_path / "absent.qcow2", tmp_path / "cd.tar")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("tag", ["", "-leading-dash", "has space", "x" * 129])
def test_a_tag_outside_the_reference_grammar_is_refused(disk: Path, tmp_path: Path, tag: str) -> None:
    with pytest.raises(NodeimageError, match="invalid image tag"):
        write(disk, tmp_path / "cd.tar", tag=tag)
    assert not (tmp_path / "cd.tar").exists()


def test_the_format_is_registered_and_selectable() -> None:
    assert formats.get("containerdisk") is CONTAINERDISK
    assert CONTAINERDISK.filename == "node.containerdisk.tar"
    assert "containerdisk" in formats.selectable()
    assert parse_formats("containerdisk") == ("qcow2", "containerdisk")
    assert [f.name for f in formats.resolve(["containerdisk"])] == ["qcow2", "spdx-json", "containerdisk"]
